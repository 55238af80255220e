/*
 * Fuzz target for the sealed-packet opener, the first code that touches
 * every datagram of an established session. The key is fixed, so seeds that
 * are valid packets let mutations reach the replay and decrypt paths.
 * Invariants: an input that opens must re-seal to the identical bytes (same
 * key, session and sequence), must be refused when replayed, and a refused
 * input leaves the replay window as it was.
 */
#include <stdlib.h>
#include <string.h>

#include "net/bytes.h"
#include "net/seal.h"

static const uint8_t key[KZ_KEY_BYTES] = "kizuna-fuzz-key-0123456789abcdef";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static kz__seal rx;
    static int ready;
    if (!ready) {
        if (kz__seal_init(&rx, key, KZ_AEAD_CHACHA20, 42) != KZ_OK)
            abort();
        ready = 1;
    }
    kz__replay win, before;
    kz__replay_init(&win);
    kz__replay_update(&win, 1000); /* some history: 1000 seen */
    memcpy(&before, &win, sizeof win);
    uint8_t plain[4096], type;
    size_t plain_len = 0;
    int rc = kz__open_packet(&rx, &win, data, size, &type, plain, sizeof plain, &plain_len);
    if (rc != KZ_OK) {
        if (memcmp(&before, &win, sizeof win) != 0)
            abort();
        return 0;
    }
    kz__seal tx;
    if (kz__seal_init(&tx, key, KZ_AEAD_CHACHA20, 42) != KZ_OK)
        abort();
    tx.next_seq = kz__load_u64(data + 1);
    uint8_t again[4096 + KZ_SEAL_OVERHEAD];
    size_t len = 0;
    if (kz__seal_packet(&tx, type, plain, plain_len, again, sizeof again, &len) != KZ_OK ||
        len != size || memcmp(again, data, size) != 0)
        abort();
    if (kz__open_packet(&rx, &win, data, size, &type, plain, sizeof plain, &plain_len) !=
        KZ_EREPLAY)
        abort();
    return 0;
}
