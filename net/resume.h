/*
 * Resume: the datagrams and the message that move a live session to a new
 * address (docs/PROTOCOL.md, "Resume"). Shared by the gate (server) and
 * the client transport; internal to net/.
 *
 * A session keeps its ENet peer, its sealed channel and its keys when it
 * moves: only the address changes, as a QUIC connection migrates. So no
 * key serves two paths with two nonce sequences: each direction's sealed
 * sequence numbers and ENet MACs simply continue.
 *
 * Every parser here takes untrusted bytes of any length and never reads
 * outside them (tests/fuzz/fuzz_resume.c).
 */
#ifndef KZ_NET_RESUME_H
#define KZ_NET_RESUME_H

#include <stddef.h>
#include <stdint.h>

#include <kizuna/token.h>

/* A ticket, as the server keeps it and the client carries it (opaque to
 * the client): which slot, which path of the session, which session. */
typedef struct kz__ticket {
    uint32_t slot;
    uint32_t path;            /* +1 each time the session moves */
    uint64_t session_id;
    uint8_t secret[16];       /* random, fresh for every path */
} kz__ticket;

void kz__ticket_pack(const kz__ticket *t, uint8_t out[KZ_TICKET_BYTES]);
void kz__ticket_unpack(const uint8_t in[KZ_TICKET_BYTES], kz__ticket *t);

/* A RESUME's fields, pointing into the datagram. */
typedef struct kz__resume {
    const uint8_t *cookie;    /* KZ_COOKIE_BYTES, all zero when the client has none */
    const uint8_t *ticket;    /* KZ_TICKET_BYTES */
    const uint8_t *proof;     /* KZ_RESUME_PROOF_BYTES */
} kz__resume;

/* Writes a RESUME (KZ_GATE_RESUME_BYTES) for `ticket`, with `cookie` (NULL
 * for none) and the proof under the client-to-server key. */
size_t kz__resume_build(const kz_session_keys *keys, const uint8_t *cookie,
                        const uint8_t ticket[KZ_TICKET_BYTES], uint8_t out[KZ_GATE_RESUME_BYTES]);
/* Splits a gate datagram of type RESUME. KZ_OK; KZ_ERANGE when the size is
 * not KZ_GATE_RESUME_BYTES; KZ_EPROTO when a reserved or padding byte is
 * not zero (one encoding per datagram). The header (mark, type, version)
 * is the caller's to check. */
int kz__resume_parse(const uint8_t *d, size_t len, kz__resume *out);
/* 1 when the RESUME `d` (already parsed) carries the proof of the holder
 * of `keys`; constant time. */
int kz__resume_proof_ok(const kz_session_keys *keys, const uint8_t d[KZ_GATE_RESUME_BYTES]);

/* RESUMED: the next ticket, sealed for the holder of the
 * server-to-client key. */
size_t kz__resumed_seal(const kz_session_keys *keys, const uint8_t ticket[KZ_TICKET_BYTES],
                        uint8_t out[KZ_GATE_RESUMED_BYTES]);
/* KZ_OK and the ticket, or KZ_EAUTH (wrong size, header or tag) with
 * `ticket` left as it was, so a forged RESUMED cannot wipe the ticket a
 * client holds. */
int kz__resumed_open(const kz_session_keys *keys, const uint8_t *d, size_t len,
                     uint8_t ticket[KZ_TICKET_BYTES]);

/* The TICKET message body: ticket and grace. Decode: KZ_OK, or KZ_EPROTO
 * for a wrong size or a grace outside KZ_RESUME_GRACE_MIN_MS..MAX_MS. */
void kz__ticket_msg_encode(const uint8_t ticket[KZ_TICKET_BYTES], uint32_t grace_ms,
                           uint8_t out[KZ_TICKET_MSG_BYTES]);
int kz__ticket_msg_decode(const uint8_t *d, size_t len, uint8_t ticket[KZ_TICKET_BYTES],
                          uint32_t *grace_ms);

#endif /* KZ_NET_RESUME_H */
