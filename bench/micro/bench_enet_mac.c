/*
 * ENet datagram authentication: what the keyed MAC in ENet's checksum field
 * costs per datagram, side by side with ENet's own CRC32 (which it
 * replaces) and with sealing the same bytes, at three datagram sizes. Send
 * side: the tag over ENet's scattered buffers (header + two command
 * buffers, flattened as the callback does); receive side: the check in the
 * intercept (field swapped, tag computed, field restored).
 *
 *   kz-bench-enet_mac      KZ_BENCH_RUNS=N sets the runs (default 7)
 */
#include <enet/enet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kzb_util.h"
#include "net/enet_mac.h"

#define DATAGRAMS 200000u

static kz__enet_mac bench_key(void)
{
    kz__enet_mac k;
    static const uint8_t master[KZ_KEY_BYTES] = "bench-key-0123456789abcdefghijkl";
    kz__enet_mac_derive(&k, master, 42);
    return k;
}

/* ENet's send buffers for a datagram of `size` bytes: a 8-byte header
 * (peer id, sent time, checksum field) and the rest in two commands. */
static size_t split(uint8_t *d, size_t size, ENetBuffer b[3])
{
    size_t rest = size - 8, first = rest / 3;
    b[0] = (ENetBuffer){.data = d, .dataLength = 8};
    b[1] = (ENetBuffer){.data = d + 8, .dataLength = first};
    b[2] = (ENetBuffer){.data = d + 8 + first, .dataLength = rest - first};
    return 3;
}

static double per_datagram(int what, size_t size)
{
    uint8_t d[1200];
    for (size_t i = 0; i < sizeof d; i++)
        d[i] = (uint8_t)(i * 31 + 7);
    d[0] = 0x80; /* sent time present */
    ENetBuffer b[3];
    size_t nb = split(d, size, b);
    kz__enet_mac k = bench_key();
    kz__enet_header h;
    if (!kz__enet_header_parse(d, size, &h))
        abort();
    uint64_t acc = 0, t0 = kzb_now_ns();
    for (uint32_t i = 0; i < DATAGRAMS; i++) {
        d[9] = (uint8_t)i;
        uint32_t tag;
        if (what == 0)
            acc += enet_crc32(b, nb);
        else if (what == 1)
            acc += kz__enet_mac_buffers(&k, b, nb);
        else
            acc += (uint64_t)kz__enet_mac_check(&k, d, size, &h, 0x1234u, &tag) + tag;
    }
    uint64_t t1 = kzb_now_ns();
    kzb_sink(acc);
    return (double)(t1 - t0) / DATAGRAMS / 1000.0;
}

int main(int argc, char **argv)
{
    kzb_begin(argc, argv, "ENet datagram authentication: cost per datagram, one core");
    if (enet_initialize() != 0 || sodium_init() < 0)
        return 1;
    size_t runs = kzb_runs();
    double v[64];
    static const size_t sizes[] = {64, 314, 1200};
    static const char *const what[] = {"ENet CRC32 (replaced)", "MAC send (3 buffers)",
                                       "MAC check (receive)"};
    for (size_t s = 0; s < 3; s++)
        for (int w = 0; w < 3; w++) {
            char name[64];
            snprintf(name, sizeof name, "%s %zu B", what[w], sizes[s]);
            /* Interleaved per run, so the machine's noise hits all alike. */
            for (size_t i = 0; i < runs; i++)
                v[i] = per_datagram(w, sizes[s]);
            kzb_report(name, "us/datagram", v, runs);
        }
    kzb_end();
    return 0;
}
