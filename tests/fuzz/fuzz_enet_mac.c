/*
 * Fuzz target for ENet datagram authentication (net/enet_mac.c): every
 * datagram that is not a gate datagram reaches kz__enet_header_parse and
 * kz__enet_mac_check in the transports' intercepts before ENet reads it.
 * Invariants: parsing never reads past the datagram; the checksum field
 * lies inside it; the check leaves the datagram exactly as it came; a
 * datagram whose field holds its own tag verifies, and no other value of
 * the field does (the fuzzer cannot know the key).
 */
#include <stdlib.h>
#include <string.h>

#include "net/enet_mac.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static kz__enet_mac key;
    static int ready;
    if (!ready) {
        uint8_t master[KZ_KEY_BYTES] = {1, 2, 3};
        kz__enet_mac_derive(&key, master, 99);
        ready = 1;
    }
    if (size > ENET_PROTOCOL_MAXIMUM_MTU)
        return 0;
    uint8_t d[ENET_PROTOCOL_MAXIMUM_MTU];
    memcpy(d, data, size);
    kz__enet_header h;
    if (!kz__enet_header_parse(d, size, &h))
        return 0;
    if (h.checksum_at + KZ_ENET_CHECKSUM_BYTES > size || h.peer_id > ENET_PROTOCOL_MAXIMUM_PEER_ID)
        abort();
    uint32_t tag, connect_id = size >= 8 ? (uint32_t)d[size - 1] * 0x01010101u : 0;
    int ok = kz__enet_mac_check(&key, d, size, &h, connect_id, &tag);
    if (memcmp(d, data, size) != 0)
        abort();
    /* Put the right tag in the field: it must verify, and only it. */
    memcpy(d + h.checksum_at, &connect_id, sizeof connect_id);
    ENetBuffer b = {.data = d, .dataLength = size};
    uint32_t want = kz__enet_mac_buffers(&key, &b, 1);
    memcpy(d + h.checksum_at, &want, sizeof want);
    if (!kz__enet_mac_check(&key, d, size, &h, connect_id, &tag) || tag != want)
        abort();
    if (ok && memcmp(data + h.checksum_at, &want, sizeof want) != 0)
        abort();
    return 0;
}
