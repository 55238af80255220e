/*
 * The gate (internal to net/): the server's handshake, run on every
 * datagram before ENet parses a byte of it.
 *
 * Contract with the transport: for each received datagram the transport
 * calls kz__gate_datagram. KZ_GATE_REPLY means "send reply[0..reply_len) to
 * the source, then drop the datagram"; KZ_GATE_PASS means the datagram is
 * not a gate datagram and comes from an address holding a session slot, so
 * ENet may process it; KZ_GATE_DROP means discard it without a reply (the
 * reason is counted). ENet therefore never allocates a peer for an address
 * that has not proven it receives our datagrams and presented a valid token.
 *
 * The handshake (docs/PROTOCOL.md, "Gate"):
 *   1. REQUEST without cookie -> cheap checks -> CHALLENGE (a stateless
 *      cookie bound to the source address and a 10 s time bucket).
 *   2. REQUEST with a valid cookie -> signature and sealed-key checks, token
 *      reuse, client id uniqueness, a free slot -> ACCEPT (session id, AEAD
 *      algorithm, ENet port, sealed under the client's gate key).
 *   3. The client connects with ENet from the same address; the transport
 *      calls kz__gate_mark_connected. A pending slot that sees no connect
 *      within pending_timeout is freed by kz__gate_expire.
 * Public-key work happens only after step 1 proved the address, always (not
 * only under load): the extra round trip is cheap and the rule is simple.
 * Every reply is smaller than the fixed-size request that caused it.
 *
 * Memory is fixed at creation from max_sessions; nothing a peer sends
 * allocates. Threading: one thread at a time (the I/O thread that owns the
 * port the gate listens on).
 */
#ifndef KZ_NET_GATE_H
#define KZ_NET_GATE_H

#include <kizuna/clock.h>
#include <kizuna/counters.h>
#include <kizuna/log.h>
#include <kizuna/token.h>

#include "enet_mac.h"
#include "resume.h"

#define KZ_GATE_MAX_PORTS 16u
#define KZ_GATE_DEFAULT_RATE 100u

/* Drop reasons and events, one counter each. */
#define KZ_GATE_COUNTERS(X)                                                    \
    X(RX_DATAGRAMS, "rx_datagrams")                                            \
    X(RX_BYTES, "rx_bytes")                                                    \
    X(TX_BYTES, "tx_bytes")                                                    \
    X(PASSED, "passed_to_enet")                                                \
    X(DROP_ENET_CONNECT, "drop_enet_connect_refused")                          \
    X(DROP_ENET_CONNECT_MAC, "drop_enet_connect_bad_mac")                      \
    X(DROP_UNVALIDATED, "drop_unvalidated_source")                             \
    X(DROP_SIZE, "drop_size")                                                  \
    X(DROP_VERSION, "drop_version")                                            \
    X(DROP_TYPE, "drop_type")                                                  \
    X(DROP_RATE, "drop_rate_limited")                                          \
    X(DROP_REQUEST_FORMAT, "drop_request_format")                              \
    X(DROP_TOKEN_MALFORMED, "drop_token_malformed")                            \
    X(DROP_TOKEN_VERSION, "drop_token_version")                                \
    X(DROP_TOKEN_PROTOCOL, "drop_token_protocol")                              \
    X(DROP_TOKEN_EXPIRED, "drop_token_expired")                                \
    X(DROP_TOKEN_FUTURE, "drop_token_not_yet_valid")                           \
    X(DROP_TOKEN_SERVER, "drop_token_wrong_server")                            \
    X(DROP_TOKEN_SIGNATURE, "drop_token_bad_signature")                        \
    X(DROP_TOKEN_KEYS, "drop_token_bad_keys")                                  \
    X(DROP_PROOF, "drop_request_proof")                                        \
    X(DROP_NO_CIPHER, "drop_no_common_cipher")                                 \
    X(DROP_TOKEN_REUSE, "drop_token_reuse")                                    \
    X(DROP_CLIENT_IN_USE, "drop_client_in_use")                                \
    X(DROP_ADDR_IN_USE, "drop_address_has_other_session")                      \
    X(DROP_FULL, "drop_server_full")                                           \
    X(DROP_DRAINING, "drop_server_shutting_down")                              \
    X(DROP_UNAVAILABLE, "drop_server_unavailable")                             \
    X(BAD_COOKIE, "cookie_invalid_rechallenged")                               \
    X(CHALLENGES, "challenges_sent")                                           \
    X(ACCEPTS, "accepts_sent")                                                 \
    X(DENIES, "denies_sent")                                                   \
    X(VERIFIES, "token_verifications")                                         \
    X(PENDING_EXPIRED, "pending_expired")                                      \
    X(PENDING_CANCELLED, "pending_cancelled_draining")                        \
    X(RESUME_OFF, "resume_refused_off")                                        \
    X(RESUME_TICKET, "resume_refused_ticket")                                  \
    X(RESUME_PROOF, "resume_refused_proof")                                    \
    X(RESUME_SAME, "resume_same_path")                                         \
    X(RESUME_RESENT, "resume_resent")                                          \
    X(RESUMES, "resumes")                                                      \
    X(REPLACED, "sessions_replaced")                                           \
    X(REPLACE_WAITS, "replace_waits")

enum {
#define KZ__GATE_ENUM(id, name) KZ_GATE_C_##id,
    KZ_GATE_COUNTERS(KZ__GATE_ENUM)
#undef KZ__GATE_ENUM
    KZ_GATE_C_COUNT
};

typedef struct kz__gate_config {
    kz_token_verifier verifier;
    uint32_t max_sessions;        /* pending + connected slots; required */
    /* Token verifications allowed per second per source IP, and the bucket
     * size. Charged only after the cookie proved the address (challenges
     * are never limited per source: a spoofer could otherwise spend a
     * victim's budget). Clients behind one NAT share it, so it is generous:
     * at the default a single IP can make the gate spend about 1% of a
     * core on signature checks. */
    uint32_t challenge_rate;      /* 0 = KZ_GATE_DEFAULT_RATE */
    uint32_t challenge_burst;     /* 0 = 2 * rate */
    uint32_t rate_buckets;        /* power of two; 0 = 65536 */
    uint32_t pending_timeout_ms;  /* 0 = 30000 (an ENet connect under heavy loss is slow) */
    uint32_t n_ports;             /* ENet ports handed out round-robin; >= 1 */
    uint16_t ports[KZ_GATE_MAX_PORTS];
    uint32_t disable_aes;         /* non-zero: offer ChaCha20 only */
    /* Resume (docs/PROTOCOL.md, "Resume"): 0 = off, else the grace the
     * transport holds a silent session for. When on, a session may move
     * to a new address with a RESUME, and a verified REQUEST for a client
     * id that holds a session replaces that session. */
    uint32_t resume_grace_ms;
    kz_log log;
    kz_allocator alloc;
} kz__gate_config;

typedef enum kz__gate_action {
    KZ_GATE_PASS,
    KZ_GATE_DROP,
    KZ_GATE_REPLY,
    KZ_GATE_VERIFY   /* kz__gate_datagram_begin only: run the job, then finish it */
} kz__gate_action;

#define KZ_SLOT_FREE 0u
#define KZ_SLOT_PENDING 1u
#define KZ_SLOT_CONNECTED 2u

/* One session slot: what the transport and the world need of a client. */
typedef struct kz__gate_slot {
    uint32_t state;
    uint8_t alg;
    uint16_t port;
    kz_address addr;
    uint64_t session_id;
    kz_time_ns pending_deadline;
    uint8_t token_hash[16];       /* BLAKE2b-128 of the whole token */
    uint32_t connect_tag;         /* expected in the ENet CONNECT's data field */
    uint32_t connect_id_set;      /* an ENet CONNECT was let through ... */
    uint8_t connect_id[4];        /* ... with this connectID; only it may follow */
    kz__enet_mac_pair mac;        /* ENet datagram MAC keys of this session */
    kz_session_keys keys;
    kz_token_info info;
    /* Resume: the ticket of the session's current path, the previous
     * path's secret (its RESUMED may be sent again to the address the
     * session moved to), and two one-way flags. */
    kz__ticket ticket;
    uint8_t prev_secret[16];
    /* The cookie of the REQUEST that admitted the session: the same
     * REQUEST replayed (by anyone on the path, or duplicated by the
     * network) carries it, a restarted client never does. */
    uint8_t admit_cookie[KZ_COOKIE_BYTES];
    uint8_t ending;               /* kicked, closed or past its grace: no ticket works */
    uint8_t replace;              /* a verified connect of the same client replaces it:
                                     the host serving it must end it */
    uint8_t silent;               /* the host found it silent (detached): only such
                                     a session may be replaced */
} kz__gate_slot;

typedef struct kz__gate kz__gate;

/* Returns NULL on bad config (logged) or out of memory. */
kz__gate *kz__gate_create(const kz__gate_config *cfg);
void kz__gate_destroy(kz__gate *g);

/* A proven request's fields, pointing into the datagram. */
typedef struct kz__request {
    uint8_t aead_mask;
    uint16_t token_len;
    const uint8_t *cookie;
    const uint8_t *proof;
    const uint8_t *token;
} kz__request;

/*
 * The public-key work of one proven request (signature check, sealed keys,
 * proof of key possession), taken out of the gate so that a transport
 * guarding the gate with a lock runs it outside the lock: no lock is held
 * across cryptography. Holds a copy of the verifier (with the server's
 * secret key) and, after the run, the session keys; kz__gate_job_finish
 * wipes it. Its request points into the datagram, which must outlive it.
 */
typedef struct kz__gate_job {
    kz_address from;
    kz__request request;
    uint8_t token_hash[16];
    kz_token_verifier verifier;
    kz_token_verdict verdict;
    int proof_ok;
    kz_token_info info;
    kz_session_keys keys;
} kz__gate_job;

/* The whole handshake step for one datagram, on one thread (begin, run and
 * finish in turn). */
kz__gate_action kz__gate_datagram(kz__gate *g, const kz_address *from, const uint8_t *data,
                                  size_t len, kz_time_ns now, uint64_t unix_now, uint8_t *reply,
                                  size_t reply_cap, size_t *reply_len);
/* The same in three steps: begin (under the caller's lock) answers like
 * kz__gate_datagram, or KZ_GATE_VERIFY with *job filled; the caller then
 * runs kz__gate_job_run without the lock (it touches only the job), and
 * kz__gate_job_finish under the lock again, which checks the tables anew,
 * claims a slot or refuses, and wipes the job. */
kz__gate_action kz__gate_datagram_begin(kz__gate *g, const kz_address *from,
                                        const uint8_t *data, size_t len, kz_time_ns now,
                                        uint64_t unix_now, uint8_t *reply, size_t reply_cap,
                                        size_t *reply_len, kz__gate_job *job);
void kz__gate_job_run(kz__gate_job *job, uint64_t unix_now);
kz__gate_action kz__gate_job_finish(kz__gate *g, kz__gate_job *job, kz_time_ns now,
                                    uint64_t unix_now, uint8_t *reply, size_t reply_cap,
                                    size_t *reply_len);

/* The ENet connect from `from` completed: marks its slot connected and
 * returns the slot index, or -1 when the address holds no pending slot
 * (the transport must then reset the peer). */
int32_t kz__gate_mark_connected(kz__gate *g, const kz_address *from);
/* The session in `slot` ended: frees the slot (the token stays recorded as
 * used until it expires). */
void kz__gate_release(kz__gate *g, uint32_t slot);
/* The session in `slot` is ending (kicked, closed by its player, past its
 * grace): from now on no ticket of it works. */
void kz__gate_end(kz__gate *g, uint32_t slot);
/* The host serving `slot` found its session silent (1, detached) or heard
 * it again (0). */
void kz__gate_set_silent(kz__gate *g, uint32_t slot, int silent);
/* Sessions marked for replacement and not yet released (0: nothing for a
 * host to look for). */
uint32_t kz__gate_replacing(const kz__gate *g);
/* The slot the last datagram handled moved to a new address (a RESUME),
 * or -1; reset by every kz__gate_datagram_begin. */
int32_t kz__gate_moved_slot(const kz__gate *g);
/* Frees pending slots whose deadline passed; checks a bounded number of
 * slots per call (call it every service loop). */
void kz__gate_expire(kz__gate *g, kz_time_ns now);

/* Replaces the trusted backend keys (1..KZ_TOKEN_MAX_BACKEND_KEYS): tokens
 * verified from now on must be signed by one of them; sessions already
 * admitted are not touched. 0 or KZ_EINVAL. */
int kz__gate_trust(kz__gate *g, const uint8_t (*keys)[KZ_SIGN_PUBLIC_KEY_BYTES], uint32_t n);
/* While not accepting, valid requests for a new session are denied with
 * KZ_DENY_SHUTTING_DOWN. Turning acceptance off also frees every slot that
 * was granted but has not connected (its ENet connect will be refused);
 * connected sessions stay. */
void kz__gate_set_accepting(kz__gate *g, int accepting);
/* The same with the reason new sessions are denied with (a KZ_DENY_*;
 * 0 accepts again). */
void kz__gate_refuse(kz__gate *g, uint8_t deny_reason);

const kz__gate_slot *kz__gate_slot_at(const kz__gate *g, uint32_t slot);
/* The slot held by address `from`, or -1. */
int32_t kz__gate_slot_index(const kz__gate *g, const kz_address *from);
const kz_counters *kz__gate_counters(const kz__gate *g);
uint32_t kz__gate_sessions(const kz__gate *g);
/* Bytes of memory the gate holds (fixed at creation). */
size_t kz__gate_footprint(const kz__gate *g);

/* The REQUEST's proof of key possession: BLAKE2b-128 keyed with
 * KDF(client-to-server master, KZ_KDF_ID_REQUEST) over the cookie and the
 * token's signature. Whoever copies a token off the wire cannot make it. */
void kz__request_proof(const kz_session_keys *keys, const uint8_t cookie[KZ_COOKIE_BYTES],
                       const uint8_t *token, size_t token_len,
                       uint8_t out[KZ_REQUEST_PROOF_BYTES]);

/* The value a client puts in its ENet CONNECT's data field: 32 bits of a
 * MAC of the session id under the request key. Only the holder of the
 * token's keys knows it, so nobody else (not even someone spoofing the
 * client's address) can open an ENet peer for the slot. */
uint32_t kz__connect_tag(const kz_session_keys *keys, uint64_t session_id);

/* ---- client side --------------------------------------------------------- */

#define KZ_HS_REQUESTING 0u
#define KZ_HS_ACCEPTED 1u
#define KZ_HS_DENIED 2u

typedef struct kz__handshake {
    kz_connect_token token;
    uint8_t aead_mask;
    uint8_t has_cookie;
    uint8_t cookie[KZ_COOKIE_BYTES];
    uint32_t state;
    uint32_t deny_reason;
    /* Filled on ACCEPT. */
    uint64_t session_id;
    uint8_t alg;
    uint16_t port;
    uint32_t slot;
    uint16_t timeout_seconds;
} kz__handshake;

/* Prepares a handshake for `token`. Returns 0, or KZ_EPROTO when the token
 * file does not parse. */
int kz__handshake_init(kz__handshake *h, const kz_connect_token *token);
/* Writes the next REQUEST (KZ_GATE_REQUEST_BYTES) into out. */
size_t kz__handshake_request(const kz__handshake *h, uint8_t out[KZ_GATE_REQUEST_BYTES]);
/* Handles a datagram from the server. Returns 0 when it was a gate reply
 * that changed the state (cookie stored, accepted, denied), KZ_EAGAIN when
 * it was ignored (not a gate datagram, malformed, forged accept). */
int kz__handshake_receive(kz__handshake *h, const uint8_t *data, size_t len);

#endif /* KZ_NET_GATE_H */
