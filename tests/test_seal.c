/*
 * Sealed packets and the replay window: round trips with both algorithms,
 * every byte flipped, wrong key/session/direction, replays inside and
 * outside the window, sequences near UINT64_MAX and the nonce limit,
 * reordering and duplication delivered exactly once.
 */
#define _GNU_SOURCE /* memmem */
#include <criterion/criterion.h>
#include <string.h>

#include "net/seal.h"

static void keys(uint8_t a[KZ_KEY_BYTES], uint8_t b[KZ_KEY_BYTES])
{
    cr_assert_eq(sodium_init() >= 0, 1);
    randombytes_buf(a, KZ_KEY_BYTES);
    randombytes_buf(b, KZ_KEY_BYTES);
}

static uint8_t algs[2] = {KZ_AEAD_CHACHA20, KZ_AEAD_AES256GCM};

static size_t n_algs(void)
{
    return kz__aead_aes_available() ? 2 : 1;
}

Test(seal, round_trip_both_algorithms_and_sizes)
{
    uint8_t k[KZ_KEY_BYTES], unused[KZ_KEY_BYTES];
    keys(k, unused);
    for (size_t a = 0; a < n_algs(); a++) {
        kz__seal tx, rx;
        cr_assert_eq(kz__seal_init(&tx, k, algs[a], 99), KZ_OK);
        cr_assert_eq(kz__seal_init(&rx, k, algs[a], 99), KZ_OK);
        kz__replay win;
        kz__replay_init(&win);
        static const size_t sizes[] = {0, 1, 64, 300, 1200};
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            uint8_t plain[1200], pkt[1200 + KZ_SEAL_OVERHEAD], out[1200];
            for (size_t j = 0; j < sizes[i]; j++)
                plain[j] = (uint8_t)(j * 7 + i);
            size_t pkt_len = 0, out_len = 0;
            uint8_t type = 0;
            cr_assert_eq(kz__seal_packet(&tx, 3, plain, sizes[i], pkt, sizeof pkt, &pkt_len), KZ_OK);
            cr_assert_eq(pkt_len, sizes[i] + KZ_SEAL_OVERHEAD);
            cr_assert_eq(kz__open_packet(&rx, &win, pkt, pkt_len, &type, out, sizeof out, &out_len),
                         KZ_OK, "alg %u size %zu", algs[a], sizes[i]);
            cr_assert_eq(type, 3);
            cr_assert_eq(out_len, sizes[i]);
            cr_assert_arr_eq(out, plain, sizes[i]);
            if (sizes[i] >= 16)
                cr_assert(memmem(pkt, pkt_len, plain, 16) == NULL, "plaintext visible on the wire");
        }
    }
}

Test(seal, every_flipped_byte_is_refused_and_leaves_the_window_alone)
{
    uint8_t k[KZ_KEY_BYTES], unused[KZ_KEY_BYTES];
    keys(k, unused);
    for (size_t a = 0; a < n_algs(); a++) {
        kz__seal tx, rx;
        cr_assert_eq(kz__seal_init(&tx, k, algs[a], 5), KZ_OK);
        cr_assert_eq(kz__seal_init(&rx, k, algs[a], 5), KZ_OK);
        kz__replay win, before;
        kz__replay_init(&win);
        uint8_t plain[100], pkt[100 + KZ_SEAL_OVERHEAD], out[100], type;
        memset(plain, 'P', sizeof plain);
        size_t pkt_len, out_len;
        /* Let the window hold some history first. */
        for (int i = 0; i < 10; i++) {
            cr_assert_eq(kz__seal_packet(&tx, 1, plain, sizeof plain, pkt, sizeof pkt, &pkt_len), KZ_OK);
            cr_assert_eq(kz__open_packet(&rx, &win, pkt, pkt_len, &type, out, sizeof out, &out_len), KZ_OK);
        }
        cr_assert_eq(kz__seal_packet(&tx, 1, plain, sizeof plain, pkt, sizeof pkt, &pkt_len), KZ_OK);
        for (size_t i = 0; i < pkt_len; i++) {
            for (int bit = 0; bit < 8; bit++) {
                pkt[i] ^= (uint8_t)(1u << bit);
                memcpy(&before, &win, sizeof win);
                memset(out, 0xee, sizeof out);
                int rc = kz__open_packet(&rx, &win, pkt, pkt_len, &type, out, sizeof out, &out_len);
                cr_assert(rc == KZ_EAUTH || rc == KZ_EREPLAY, "byte %zu bit %d: rc %d", i, bit, rc);
                cr_assert_arr_eq(&before, &win, sizeof win, "window moved on a bad packet");
                cr_assert(memchr(out, 'P', sizeof out) == NULL, "plaintext left behind");
                pkt[i] ^= (uint8_t)(1u << bit);
            }
        }
        cr_assert_eq(kz__open_packet(&rx, &win, pkt, pkt_len, &type, out, sizeof out, &out_len), KZ_OK);
    }
}

Test(seal, wrong_key_session_or_direction_fails)
{
    uint8_t c2s[KZ_KEY_BYTES], s2c[KZ_KEY_BYTES];
    keys(c2s, s2c);
    kz__seal tx, rx_other_dir, rx_other_session;
    cr_assert_eq(kz__seal_init(&tx, c2s, KZ_AEAD_CHACHA20, 1), KZ_OK);
    cr_assert_eq(kz__seal_init(&rx_other_dir, s2c, KZ_AEAD_CHACHA20, 1), KZ_OK);
    cr_assert_eq(kz__seal_init(&rx_other_session, c2s, KZ_AEAD_CHACHA20, 2), KZ_OK);
    kz__replay win;
    kz__replay_init(&win);
    uint8_t pkt[64], out[64], type;
    size_t len, out_len;
    cr_assert_eq(kz__seal_packet(&tx, 1, (const uint8_t *)"hello", 5, pkt, sizeof pkt, &len), KZ_OK);
    cr_assert_eq(kz__open_packet(&rx_other_dir, &win, pkt, len, &type, out, sizeof out, &out_len), KZ_EAUTH);
    cr_assert_eq(kz__open_packet(&rx_other_session, &win, pkt, len, &type, out, sizeof out, &out_len), KZ_EAUTH);
    if (kz__aead_aes_available()) {
        kz__seal rx_other_alg;
        cr_assert_eq(kz__seal_init(&rx_other_alg, c2s, KZ_AEAD_AES256GCM, 1), KZ_OK);
        cr_assert_eq(kz__open_packet(&rx_other_alg, &win, pkt, len, &type, out, sizeof out, &out_len), KZ_EAUTH);
    }
}

Test(seal, sizes_around_the_header_are_refused_cleanly)
{
    uint8_t k[KZ_KEY_BYTES], unused[KZ_KEY_BYTES];
    keys(k, unused);
    kz__seal rx;
    cr_assert_eq(kz__seal_init(&rx, k, KZ_AEAD_CHACHA20, 1), KZ_OK);
    kz__replay win;
    kz__replay_init(&win);
    uint8_t pkt[KZ_SEAL_OVERHEAD + 1] = {0}, out[8], type;
    size_t out_len;
    for (size_t n = 0; n < KZ_SEAL_OVERHEAD; n++)
        cr_assert_eq(kz__open_packet(&rx, &win, pkt, n, &type, out, sizeof out, &out_len), KZ_EPROTO);
    cr_assert_eq(kz__open_packet(&rx, &win, pkt, KZ_SEAL_OVERHEAD, &type, out, sizeof out, &out_len),
                 KZ_EAUTH, "header and tag only: a forged empty packet");
    cr_assert_eq(kz__open_packet(&rx, &win, pkt, KZ_SEAL_OVERHEAD + 1, &type, out, 0, &out_len),
                 KZ_EOVERFLOW);
    cr_assert_eq(kz__seal_init(&rx, k, 9, 1), KZ_EINVAL);
}

/* ---- replay window ------------------------------------------------------ */

Test(replay, accepts_each_sequence_once_within_the_window)
{
    kz__replay r;
    kz__replay_init(&r);
    cr_assert_eq(kz__replay_check(&r, 0), KZ_OK);
    kz__replay_update(&r, 0);
    cr_assert_eq(kz__replay_check(&r, 0), KZ_EREPLAY);
    kz__replay_update(&r, 5000);
    cr_assert_eq(kz__replay_check(&r, 5000), KZ_EREPLAY);
    cr_assert_eq(kz__replay_check(&r, 5000 - KZ_REPLAY_WINDOW + 1), KZ_OK, "oldest in window");
    cr_assert_eq(kz__replay_check(&r, 5000 - KZ_REPLAY_WINDOW), KZ_EREPLAY, "just outside");
    cr_assert_eq(kz__replay_check(&r, 0), KZ_EREPLAY, "far too old");
    cr_assert_eq(kz__replay_check(&r, 4999), KZ_OK);
    kz__replay_update(&r, 4999);
    cr_assert_eq(kz__replay_check(&r, 4999), KZ_EREPLAY);
    cr_assert_geq(KZ_REPLAY_WINDOW, 1024, "the window must hold at least 1024 packets");
}

Test(replay, jumps_clear_stale_bits)
{
    kz__replay r;
    kz__replay_init(&r);
    for (uint64_t s = 0; s < 3000; s++)
        kz__replay_update(&r, s);
    /* Jump by exactly one ring, and by part of one: bits of old sequences
     * that share word slots with new ones must not read as "seen". */
    kz__replay_update(&r, 3000 + KZ__REPLAY_BITS);
    for (uint64_t s = 3001 + 64; s < 3000 + KZ__REPLAY_BITS; s++)
        cr_assert_eq(kz__replay_check(&r, s), KZ_OK, "seq %llu", (unsigned long long)s);
    kz__replay_update(&r, 3000 + KZ__REPLAY_BITS + 100);
    cr_assert_eq(kz__replay_check(&r, 3000 + KZ__REPLAY_BITS + 50), KZ_OK);
}

Test(replay, sequences_near_uint64_max)
{
    kz__replay r;
    kz__replay_init(&r);
    uint64_t top = UINT64_MAX;
    for (uint64_t s = top - 100; s != top; s++) {
        cr_assert_eq(kz__replay_check(&r, s), KZ_OK);
        kz__replay_update(&r, s);
    }
    cr_assert_eq(kz__replay_check(&r, top), KZ_OK);
    kz__replay_update(&r, top);
    for (uint64_t s = top - 100;; s++) {
        cr_assert_eq(kz__replay_check(&r, s), KZ_EREPLAY, "seq max-%llu", (unsigned long long)(top - s));
        if (s == top)
            break;
    }
    cr_assert_eq(kz__replay_check(&r, 0), KZ_EREPLAY, "no wrap to zero");
}

Test(seal, nonce_limit_stops_sealing_and_every_packet_near_it_arrives_once)
{
    uint8_t k[KZ_KEY_BYTES], unused[KZ_KEY_BYTES];
    keys(k, unused);
    kz__seal tx, rx;
    cr_assert_eq(kz__seal_init(&tx, k, KZ_AEAD_CHACHA20, 7), KZ_OK);
    cr_assert_eq(kz__seal_init(&rx, k, KZ_AEAD_CHACHA20, 7), KZ_OK);
    kz__replay win;
    kz__replay_init(&win);
    tx.next_seq = UINT64_MAX - 3;
    uint8_t pkt[4][64], out[64], type;
    size_t len[4], out_len;
    for (int i = 0; i < 4; i++)
        cr_assert_eq(kz__seal_packet(&tx, 1, (const uint8_t *)"x", 1, pkt[i], 64, &len[i]), KZ_OK);
    cr_assert_eq(kz__seal_packet(&tx, 1, (const uint8_t *)"x", 1, out, 64, &out_len), KZ_EEXPIRED,
                 "sequence UINT64_MAX was the last one");
    /* Deliver in reverse, each twice. */
    for (int i = 3; i >= 0; i--) {
        cr_assert_eq(kz__open_packet(&rx, &win, pkt[i], len[i], &type, out, 64, &out_len), KZ_OK);
        cr_assert_eq(kz__open_packet(&rx, &win, pkt[i], len[i], &type, out, 64, &out_len), KZ_EREPLAY);
    }
}

static uint64_t rng(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

Test(seal, reorder_and_duplication_deliver_each_packet_exactly_once)
{
    uint8_t k[KZ_KEY_BYTES], unused[KZ_KEY_BYTES];
    keys(k, unused);
    kz__seal tx, rx;
    cr_assert_eq(kz__seal_init(&tx, k, KZ_AEAD_CHACHA20, 11), KZ_OK);
    cr_assert_eq(kz__seal_init(&rx, k, KZ_AEAD_CHACHA20, 11), KZ_OK);
    kz__replay win;
    kz__replay_init(&win);
    enum { N = 20000 };
    static uint8_t pkts[N][8 + KZ_SEAL_OVERHEAD];
    static size_t lens[N];
    static uint32_t order[N + N / 50];
    static uint8_t seen[N];
    for (uint32_t i = 0; i < N; i++) {
        uint8_t body[8];
        memcpy(body, &i, 4);
        memcpy(body + 4, "data", 4);
        cr_assert_eq(kz__seal_packet(&tx, 1, body, 8, pkts[i], sizeof pkts[i], &lens[i]), KZ_OK);
    }
    /* 25% of packets swap with one up to 50 places later; 1% are sent twice. */
    uint64_t s = 1;
    size_t n = 0;
    for (uint32_t i = 0; i < N; i++)
        order[n++] = i;
    for (uint32_t i = 0; i < N; i++)
        if (rng(&s) % 4 == 0) {
            uint32_t j = i + 1 + (uint32_t)(rng(&s) % 50);
            if (j < N) {
                uint32_t t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
        }
    for (uint32_t i = 0; i < N / 100; i++) {
        uint32_t at = (uint32_t)(rng(&s) % n);
        memmove(&order[at + 1], &order[at], (n - at) * sizeof order[0]);
        n++;
    }
    size_t delivered = 0, refused = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t out[8], type;
        size_t out_len;
        int rc = kz__open_packet(&rx, &win, pkts[order[i]], lens[order[i]], &type, out, 8, &out_len);
        if (rc == KZ_OK) {
            uint32_t id;
            memcpy(&id, out, 4);
            cr_assert_eq(id, order[i]);
            cr_assert_eq(seen[id], 0, "packet %u delivered twice", id);
            seen[id] = 1;
            delivered++;
        } else {
            cr_assert_eq(rc, KZ_EREPLAY);
            refused++;
        }
    }
    cr_assert_eq(delivered, N, "every packet delivered");
    cr_assert_eq(refused, N / 100, "every duplicate refused");
}

Test(seal, each_session_of_a_token_gets_its_own_keys)
{
    uint8_t k[KZ_KEY_BYTES], unused[KZ_KEY_BYTES];
    keys(k, unused);
    kz__seal first, second, other_cipher;
    cr_assert_eq(kz__seal_init(&first, k, KZ_AEAD_CHACHA20, 1), KZ_OK);
    cr_assert_eq(kz__seal_init(&second, k, KZ_AEAD_CHACHA20, 2), KZ_OK);
    cr_assert(memcmp(first.key, second.key, KZ_KEY_BYTES) != 0,
              "same master, another session: another key");
    if (kz__aead_aes_available()) {
        cr_assert_eq(kz__seal_init(&other_cipher, k, KZ_AEAD_AES256GCM, 1), KZ_OK);
        cr_assert(memcmp(first.key, other_cipher.key, KZ_KEY_BYTES) != 0,
                  "same session, another cipher: another key");
    }
    /* Both sessions start at sequence 0; their first packets must differ. */
    uint8_t a[64], b[64];
    size_t la, lb;
    cr_assert_eq(kz__seal_packet(&first, 1, (const uint8_t *)"same text", 9, a, sizeof a, &la), KZ_OK);
    cr_assert_eq(kz__seal_packet(&second, 1, (const uint8_t *)"same text", 9, b, sizeof b, &lb), KZ_OK);
    cr_assert(memcmp(a + KZ_SEAL_HEADER_BYTES, b + KZ_SEAL_HEADER_BYTES, 9) != 0,
              "no keystream shared between sessions");
}
