/*
 * Keyed MAC in ENet's checksum field: see enet_mac.h. Tuned for the
 * server's I/O threads, which run it once per datagram each way: one
 * SipHash-2-4 pass over at most an MTU of bytes, copied into a stack buffer
 * when ENet hands over several buffers.
 */
#include "enet_mac.h"

#include <string.h>

#include "bytes.h"

void kz__enet_mac_derive(kz__enet_mac *out, const uint8_t master[KZ_KEY_BYTES],
                         uint64_t session_id)
{
    uint8_t sub[KZ_KEY_BYTES], msg[8];
    crypto_kdf_derive_from_key(sub, sizeof sub, KZ_KDF_ID_ENET_MAC, KZ_KDF_CONTEXT, master);
    kz__store_u64(msg, session_id);
    crypto_generichash(out->key, sizeof out->key, msg, sizeof msg, sub, sizeof sub);
    sodium_memzero(sub, sizeof sub);
}

void kz__enet_mac_pair_derive(kz__enet_mac_pair *out, const kz_session_keys *keys,
                              uint64_t session_id)
{
    kz__enet_mac_derive(&out->client_to_server, keys->client_to_server, session_id);
    kz__enet_mac_derive(&out->server_to_client, keys->server_to_client, session_id);
}

int kz__enet_header_parse(const uint8_t *d, size_t len, kz__enet_header *h)
{
    if (len < KZ_ENET_PEER_FIELD_BYTES)
        return 0;
    uint16_t field = (uint16_t)(d[0] << 8 | d[1]); /* ENet sends it big-endian */
    size_t at = KZ_ENET_PEER_FIELD_BYTES;
    if (field & ENET_PROTOCOL_HEADER_FLAG_SENT_TIME)
        at += KZ_ENET_SENT_TIME_BYTES;
    if (len < at + KZ_ENET_CHECKSUM_BYTES)
        return 0;
    h->peer_id = field & KZ_ENET_PEER_ID_MASK;
    h->checksum_at = at;
    return 1;
}

static uint32_t kz__enet_mac_bytes(const kz__enet_mac *k, const uint8_t *d, size_t len)
{
    /* The field carries the first four bytes of the SipHash output, in
     * that order on every machine: ENet copies the returned value into the
     * field with memcpy, so the value is built the same way. */
    uint8_t out[crypto_shorthash_BYTES];
    uint32_t tag;
    crypto_shorthash(out, d, len, k->key);
    memcpy(&tag, out, sizeof tag);
    return tag;
}

uint32_t kz__enet_mac_buffers(const kz__enet_mac *k, const ENetBuffer *b, size_t n)
{
    if (n == 1)
        return kz__enet_mac_bytes(k, b[0].data, b[0].dataLength);
    uint8_t flat[ENET_PROTOCOL_MAXIMUM_MTU];
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (b[i].dataLength > sizeof flat - len)
            return 0;
        memcpy(flat + len, b[i].data, b[i].dataLength);
        len += b[i].dataLength;
    }
    return kz__enet_mac_bytes(k, flat, len);
}

int kz__enet_mac_check(const kz__enet_mac *k, uint8_t *d, size_t len, const kz__enet_header *h,
                       uint32_t connect_id, uint32_t *tag)
{
    uint32_t sent;
    uint8_t *field = d + h->checksum_at;
    memcpy(&sent, field, sizeof sent);
    memcpy(field, &connect_id, sizeof connect_id);
    uint32_t want = kz__enet_mac_bytes(k, d, len);
    memcpy(field, &sent, sizeof sent);
    *tag = sent;
    /* Constant time, although a tag that fails tells a forger little: it
     * differs per datagram and is never echoed. */
    return sodium_memcmp(&sent, &want, sizeof want) == 0;
}

uint32_t kz__enet_outgoing_connect_id(const ENetBuffer *b, size_t n)
{
    uint32_t id = 0;
    if (n >= 1 && b[0].dataLength >= KZ_ENET_PEER_FIELD_BYTES + KZ_ENET_CHECKSUM_BYTES)
        memcpy(&id, (const uint8_t *)b[0].data + b[0].dataLength - KZ_ENET_CHECKSUM_BYTES,
               sizeof id);
    return id;
}
