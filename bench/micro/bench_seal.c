/*
 * Sealed packets: the cost of sealing and opening one packet (seal on the
 * sender, replay check + authenticate + decrypt + window update on the
 * receiver), per algorithm and packet size. Target: <= 0.5 us per packet at
 * <= 300 bytes.
 *
 *   kz-bench-seal          KZ_BENCH_RUNS=N sets the runs (default 7)
 */
#include <stdio.h>
#include <stdlib.h>

#include "kzb_util.h"
#include "net/seal.h"

#define PACKETS 200000u

static double seal_open(uint8_t alg, size_t size)
{
    static const uint8_t key[KZ_KEY_BYTES] = "bench-key-0123456789abcdefghijkl";
    kz__seal tx, rx;
    kz__replay win;
    if (kz__seal_init(&tx, key, alg, 1) != KZ_OK || kz__seal_init(&rx, key, alg, 1) != KZ_OK)
        abort();
    kz__replay_init(&win);
    uint8_t plain[1200] = {1}, pkt[1200 + KZ_SEAL_OVERHEAD], out[1200], type;
    size_t len, out_len;
    uint64_t t0 = kzb_now_ns();
    for (uint32_t i = 0; i < PACKETS; i++) {
        plain[0] = (uint8_t)i;
        if (kz__seal_packet(&tx, 1, plain, size, pkt, sizeof pkt, &len) != KZ_OK ||
            kz__open_packet(&rx, &win, pkt, len, &type, out, sizeof out, &out_len) != KZ_OK)
            abort();
    }
    uint64_t t1 = kzb_now_ns();
    kzb_sink(out[0]);
    return (double)(t1 - t0) / PACKETS / 1000.0;
}

int main(int argc, char **argv)
{
    kzb_begin(argc, argv, "sealed packets: seal + open per packet, one core");
    size_t runs = kzb_runs();
    double v[64];
    static const size_t sizes[] = {64, 300, 1200};
    uint8_t algs[] = {KZ_AEAD_CHACHA20, KZ_AEAD_AES256GCM};
    const char *names[] = {"chacha20-poly1305", "aes-256-gcm"};
    for (size_t a = 0; a < 2; a++) {
        if (algs[a] == KZ_AEAD_AES256GCM && !kz__aead_aes_available()) {
            printf("aes-256-gcm: not available on this CPU\n");
            continue;
        }
        for (size_t s = 0; s < 3; s++) {
            char name[64];
            snprintf(name, sizeof name, "%s %zu B", names[a], sizes[s]);
            for (size_t i = 0; i < runs; i++)
                v[i] = seal_open(algs[a], sizes[s]);
            kzb_report(name, "us/pkt", v, runs);
        }
    }
    kzb_end();
    return 0;
}
