/*
 * ENet datagram authentication (internal to net/).
 *
 * ENet's control commands (CONNECT, VERIFY_CONNECT, DISCONNECT, PING,
 * throttle and bandwidth settings, acknowledgements and the reliable
 * sequence numbers) travel outside Kizuna's sealed packets. ENet protects
 * each datagram only with a 32-bit checksum over the datagram with the
 * peer's connectID in the checksum field, and the connectID is on the wire
 * in clear, so anyone who sees one datagram can forge the rest. Kizuna
 * replaces that checksum with a keyed MAC: SipHash-2-4 (libsodium's
 * crypto_shorthash) under a per-session, per-direction 16-byte key,
 * computed over exactly the bytes ENet would checksum (the whole datagram
 * with the connectID, or 0 for a CONNECT, in the checksum field), truncated
 * to the field's 32 bits (the low half of the little-endian 64-bit output).
 *
 * Receivers verify the MAC in ENet's intercept callback, before ENet reads
 * a command: a datagram that fails is dropped and counted and changes no
 * state. ENet then calls the checksum callback on the same bytes and is
 * given back the tag that was just verified.
 *
 * What the 32-bit field allows: a blind forger succeeds once in 2^32
 * tries per datagram, so forging one command costs about 2^31 datagrams
 * aimed at one session's exact address, peer id and connectID; the flood
 * shows in drop_enet_mac long before. Replayed datagrams pass the MAC; ENet
 * discards repeated reliable and unsequenced commands by their sequence
 * windows, and the sealed layer's replay window rejects repeated
 * application data (docs/PROTOCOL.md, "ENet datagram authentication").
 */
#ifndef KZ_NET_ENET_MAC_H
#define KZ_NET_ENET_MAC_H

#include <enet/enet.h>
#include <sodium.h>
#include <stddef.h>
#include <stdint.h>

#include <kizuna/protocol.h>
#include <kizuna/token.h>

#define KZ_ENET_MAC_KEY_BYTES crypto_shorthash_KEYBYTES

/* The ENet header as Kizuna's hosts send it: peer id and flags (2 bytes,
 * big-endian), a sent time (2) when ENET_PROTOCOL_HEADER_FLAG_SENT_TIME is
 * set, then the 32-bit checksum field. Named from ENet's own layout. */
#define KZ_ENET_PEER_FIELD_BYTES offsetof(ENetProtocolHeader, sentTime)
#define KZ_ENET_SENT_TIME_BYTES (sizeof(ENetProtocolHeader) - KZ_ENET_PEER_FIELD_BYTES)
#define KZ_ENET_CHECKSUM_BYTES sizeof(enet_uint32)
#define KZ_ENET_PEER_ID_MASK \
    ((uint16_t) ~(ENET_PROTOCOL_HEADER_FLAG_MASK | ENET_PROTOCOL_HEADER_SESSION_MASK))
_Static_assert(KZ_ENET_PEER_FIELD_BYTES == 2 && KZ_ENET_SENT_TIME_BYTES == 2,
               "ENet 1.3 header: peer id (2), sent time (2)");

typedef struct kz__enet_mac {
    uint8_t key[KZ_ENET_MAC_KEY_BYTES];
} kz__enet_mac;

/* The two directions' MAC keys of one session. */
typedef struct kz__enet_mac_pair {
    kz__enet_mac client_to_server;
    kz__enet_mac server_to_client;
} kz__enet_mac_pair;

/* A parsed ENet header: where the checksum field is and whom it names. */
typedef struct kz__enet_header {
    uint16_t peer_id;        /* without flag and session bits */
    size_t checksum_at;      /* offset of the 32-bit checksum field */
} kz__enet_header;

/* Derives one direction's MAC key from that direction's 32-byte master key
 * (the token's session key) and the session id:
 *   sub = crypto_kdf(master, KZ_KDF_ID_ENET_MAC, KZ_KDF_CONTEXT), 32 bytes
 *   key = BLAKE2b-128(key = sub, message = session id, 8 bytes LE) */
void kz__enet_mac_derive(kz__enet_mac *out, const uint8_t master[KZ_KEY_BYTES],
                         uint64_t session_id);
/* Both directions from the token's session keys. */
void kz__enet_mac_pair_derive(kz__enet_mac_pair *out, const kz_session_keys *keys,
                              uint64_t session_id);

/* Parses the header of datagram d[0..len). 0 when it is too short to hold
 * a header and its checksum field (the datagram must be dropped). */
int kz__enet_header_parse(const uint8_t *d, size_t len, kz__enet_header *h);

/* The tag of a datagram given as ENet's send buffers (the checksum field
 * already holding the connectID, as ENet fills it before calling its
 * checksum callback). Datagrams longer than ENET_PROTOCOL_MAXIMUM_MTU get
 * tag 0 (ENet never sends them). */
uint32_t kz__enet_mac_buffers(const kz__enet_mac *k, const ENetBuffer *b, size_t n);

/* Verifies received datagram d[0..len) with header `h`: the field is set to
 * `connect_id` (raw, as ENet stores it), the tag computed, and the field
 * restored. 1 and *tag when the datagram's field holds the right tag. */
int kz__enet_mac_check(const kz__enet_mac *k, uint8_t *d, size_t len, const kz__enet_header *h,
                       uint32_t connect_id, uint32_t *tag);

/* Where ENet's checksum callback is asked about a received datagram (the
 * one buffer is the host's receivedData) rather than one being sent. */
static inline int kz__enet_checksum_is_receive(const ENetHost *host, const ENetBuffer *b,
                                               size_t n)
{
    return n == 1 && b[0].data == host->receivedData;
}

/* The connectID in the checksum field of a datagram being sent (the last
 * four bytes of the header buffer, buffers[0]); 0 if it does not fit. */
uint32_t kz__enet_outgoing_connect_id(const ENetBuffer *b, size_t n);

#endif /* KZ_NET_ENET_MAC_H */
