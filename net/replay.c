#include "replay.h"

#include <string.h>

void kz__replay_init(kz__replay *r)
{
    memset(r, 0, sizeof *r);
}

static uint64_t *kz__replay_word(kz__replay *r, uint64_t seq)
{
    return &r->words[(seq / 64) % KZ__REPLAY_WORDS];
}

int kz__replay_check(const kz__replay *r, uint64_t seq)
{
    if (!r->any || seq > r->newest)
        return KZ_OK;
    if (r->newest - seq >= KZ_REPLAY_WINDOW)
        return KZ_EREPLAY; /* too old to tell: refuse */
    uint64_t word = r->words[(seq / 64) % KZ__REPLAY_WORDS];
    return (word >> (seq % 64)) & 1 ? KZ_EREPLAY : KZ_OK;
}

void kz__replay_update(kz__replay *r, uint64_t seq)
{
    if (!r->any) {
        r->any = 1;
        r->newest = seq;
        memset(r->words, 0, sizeof r->words);
    } else if (seq > r->newest) {
        /* Clear the words strictly after the newest's word, up to and
         * including the new one's; if it moved a whole ring or more, all. */
        uint64_t from = r->newest / 64, to = seq / 64;
        uint64_t passed = to - from;
        if (passed >= KZ__REPLAY_WORDS)
            memset(r->words, 0, sizeof r->words);
        else
            for (uint64_t w = from + 1; w <= to; w++)
                r->words[w % KZ__REPLAY_WORDS] = 0;
        r->newest = seq;
    }
    *kz__replay_word(r, seq) |= 1ull << (seq % 64);
}
