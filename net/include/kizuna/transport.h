/*
 * Secure transport over ENet: the server's I/O side and the client.
 *
 * kz_netserver owns an ENet host behind the gate (docs/PROTOCOL.md): only
 * clients holding a valid connect token get an ENet peer, and every
 * application message is sealed per direction. It hands the application
 * (the simulation thread) fixed-size message records through SPSC rings;
 * payloads live in buffer pools allocated at creation, so the steady state
 * allocates nothing on Kizuna's side (ENet still allocates its packets).
 *
 * Two modes, one pipeline:
 *   threaded     I/O threads run the ENet hosts (one host, port and pair of
 *                rings per thread, so one process can serve more than
 *                ENet's 4095 peers per host); the application calls
 *                kz_netserver_poll / kz_netserver_send from ONE other thread.
 *   single       no thread: the caller runs kz_netserver_service(s, now)
 *                itself, then poll/send, all on one thread. Tests use it.
 *
 * kz_netclient is caller-driven (no hidden threads): kz_netclient_update
 * does the handshake, ENet service and flushing; poll/send on the same
 * thread. ENet 1.3 speaks IPv4 only, so the transport does too.
 *
 * Channels (ENet channel ids): KZ_CHANNEL_SNAPSHOT unreliable unsequenced,
 * KZ_CHANNEL_INPUT unreliable, KZ_CHANNEL_EVENT reliable ordered,
 * KZ_CHANNEL_VOICE unreliable.
 */
#ifndef KZ_TRANSPORT_H
#define KZ_TRANSPORT_H

#include <kizuna/alloc.h>
#include <kizuna/clock.h>
#include <kizuna/counters.h>
#include <kizuna/log.h>
#include <kizuna/token.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KZ_CHANNEL_SNAPSHOT 0u
#define KZ_CHANNEL_INPUT 1u
#define KZ_CHANNEL_EVENT 2u
#define KZ_CHANNEL_VOICE 3u
#define KZ_CHANNEL_COUNT 4u

#define KZ_NETMSG_CONNECT 1u     /* data: a kz_token_info of the new session */
#define KZ_NETMSG_DISCONNECT 2u  /* data: none. The slot stays reserved until the
                                    application polls this notice; whatever it
                                    queued for the slot before is dropped, never
                                    delivered to the slot's next holder. Do not
                                    send to the slot after polling it. */
#define KZ_NETMSG_DATA 3u
/* Resume (docs/PROTOCOL.md, "Resume"), only when resume_grace_ms is set:
 * the session in `slot` went silent for KZ_DETACH_SILENCE_MS (DETACH: its
 * avatar should stand still), or came back (RESUME: heard again, or moved
 * to a new address). Neither ends the session; a session silent for the
 * grace ends with a DISCONNECT. A DETACH is always followed by a RESUME or
 * a DISCONNECT; a RESUME may come without a DETACH (a quick move). */
#define KZ_NETMSG_DETACH 4u
#define KZ_NETMSG_RESUME 5u

/* One message between the transport and the application. `data` is valid
 * until the next poll on the same object. */
typedef struct kz_netmsg {
    uint32_t slot;        /* session slot, < max_clients */
    uint8_t kind;         /* KZ_NETMSG_* */
    uint8_t channel;
    uint8_t type;         /* application message type */
    uint8_t reserved;
    uint32_t len;
    const uint8_t *data;
    kz_time_ns received;  /* DATA: when the I/O side took the datagram off the
                             socket (the transport's clock, the `now` of the
                             service pass that received it); 0 otherwise */
} kz_netmsg;

/* Wall-clock source for token expiry (Unix seconds). */
typedef uint64_t (*kz_unix_time_fn)(void *ctx);

typedef struct kz_netserver_config {
    kz_token_verifier verifier;
    uint32_t bind_ip;            /* IPv4, network order; 0 = any */
    uint16_t port;               /* first port; 0 = pick free ones (kz_netserver_port) */
    uint32_t max_clients;        /* in all, 1..4095 per I/O thread; required */
    uint32_t threaded;           /* non-zero: run I/O threads */
    uint32_t io_threads;         /* ENet hosts, one thread and port each (port, port+1,
                                    ...); 0 = 1; at most 16; single-threaded mode
                                    services them all on the caller's thread */
    uint32_t ring_capacity;      /* buffers per direction and host, power of two up
                                    to 65536; 0 = 4096 */
    uint32_t disable_aes;        /* non-zero: ChaCha20-Poly1305 only */
    uint32_t resume_grace_ms;    /* 0 = resume off; else sessions survive address
                                    changes and silence up to this long
                                    (KZ_RESUME_GRACE_MIN_MS..KZ_RESUME_GRACE_MAX_MS), and
                                    a restarted client replaces its old session */
    uint32_t gate_rate_per_ip;   /* token verifications per source IP per second
                                    (after the address proved itself), burst twice
                                    that; 0 = 100. Raise it only where many clients
                                    share one address (load tests on one machine). */
    kz_clock clock;              /* threaded mode's time; zero = system clock */
    kz_unix_time_fn unix_time;   /* zero = time(NULL) */
    void *unix_time_ctx;
    kz_log log;
    kz_allocator alloc;
} kz_netserver_config;

typedef struct kz_netserver kz_netserver;

/* Creates the host, the gate and the pools, and starts the I/O thread in
 * threaded mode. NULL on failure (logged). */
KZ_API kz_netserver *kz_netserver_create(const kz_netserver_config *cfg);
/* Stops the I/O thread, disconnects every peer, frees everything. */
KZ_API void kz_netserver_destroy(kz_netserver *s);
/* The UDP port of the first ENet host, where clients send their gate
 * requests (the gate then names the port of the host that serves them). */
KZ_API uint16_t kz_netserver_port(const kz_netserver *s);
/* The port of I/O host `i` (< io_threads), or 0. */
KZ_API uint16_t kz_netserver_port_of(const kz_netserver *s, uint32_t i);

/* Single-threaded mode: receive, run the gate, seal and send what the
 * application queued, service ENet. Returns 0; no-op in threaded mode. */
KZ_API int kz_netserver_service(kz_netserver *s, kz_time_ns now);

/* Application thread: the next message (0) or KZ_EEMPTY. */
KZ_API KZ_MUST_CHECK int kz_netserver_poll(kz_netserver *s, kz_netmsg *msg);
/* Application thread: queues `data` for `slot` on `channel`. Returns 0,
 * KZ_EINVAL (bad channel, len > KZ_MAX_MESSAGE_BYTES), KZ_ESTATE (the
 * application does not hold the slot: no CONNECT polled for it, or its
 * DISCONNECT already polled) or KZ_EFULL (the outbound ring is full; the
 * message is dropped and counted). */
KZ_API KZ_MUST_CHECK int kz_netserver_send(kz_netserver *s, uint32_t slot, uint8_t channel,
                                           uint8_t type, const void *data, uint32_t len);
/* Application thread: ends the session in `slot` with `reason` (the
 * client sees it in its disconnect). */
KZ_API int kz_netserver_kick(kz_netserver *s, uint32_t slot, uint32_t reason);

/*
 * Any thread: replaces the trusted backend keys (1..KZ_TOKEN_MAX_BACKEND_KEYS,
 * the verifier's backend_pk rule). Tokens verified from now on must be
 * signed by one of them; connected sessions stay. 0 or KZ_EINVAL.
 */
KZ_API KZ_MUST_CHECK int kz_netserver_trust(kz_netserver *s,
                                            const uint8_t (*keys)[KZ_SIGN_PUBLIC_KEY_BYTES],
                                            uint32_t n);
/*
 * Any thread: while not accepting (a server draining before it stops),
 * the gate denies new sessions with KZ_DENY_SHUTTING_DOWN, so clients
 * learn at once instead of timing out. Connected sessions stay; slots
 * granted but not yet connected are freed at once (they are not clients,
 * and kz_netserver_sessions no longer counts them).
 */
KZ_API void kz_netserver_set_accepting(kz_netserver *s, int32_t accepting);
/*
 * Any thread: the same with the reason new sessions are denied with: a
 * KZ_DENY_* (KZ_DENY_SHUTTING_DOWN for a drain, KZ_DENY_UNAVAILABLE while
 * the server cannot take anyone for now), or 0 to accept again.
 */
KZ_API void kz_netserver_set_refusal(kz_netserver *s, uint32_t deny_reason);

/* Counters of the gate and the transport (names via kz_counters_name). */
KZ_API const kz_counters *kz_netserver_gate_counters(const kz_netserver *s);
KZ_API const kz_counters *kz_netserver_counters(const kz_netserver *s);
/* Sessions currently pending or connected. */
KZ_API uint32_t kz_netserver_sessions(const kz_netserver *s);

/* ---- client ------------------------------------------------------------- */

#define KZ_NETCLIENT_HANDSHAKE 1u
#define KZ_NETCLIENT_CONNECTING 2u
#define KZ_NETCLIENT_CONNECTED 3u
#define KZ_NETCLIENT_DISCONNECTED 4u  /* ended by the server, timed out, or lost */
#define KZ_NETCLIENT_FAILED 5u        /* handshake never completed */
/* The path broke (kz_netclient_rebind, or resume_silence_ms without an
 * authenticated datagram) and the client is resuming the session
 * (docs/PROTOCOL.md, "Resume"): it sends RESUMEs to the gate until the
 * session is back (CONNECTED) or lost (DISCONNECTED with a KZ_LOST_*
 * reason), and when that server stays silent tries the token's other
 * addresses (a failover: kz_netclient_serial). Only with a server that
 * gave a resume ticket. Sends are still queued: ENet delivers the
 * reliable ones once the session has moved. */
#define KZ_NETCLIENT_RESUMING 6u

/* Reasons of a DISCONNECTED the client decided itself, while resuming.
 * They share kz_netclient_reason with the server's kick reasons
 * (KZ_KICK_*) and the gate's KZ_DENY_* (FAILED only): kick and deny codes
 * stay below 16, and 16 up are the client's own. */
#define KZ_LOST_RESUME_REFUSED 16u  /* the server no longer holds the session
                                       (DENY KZ_DENY_NO_SESSION: it ended, was
                                       kicked, or resume is off) */
#define KZ_LOST_RESUME_TIMEOUT 17u  /* nothing heard from the server for the
                                       grace it announced: it has ended the
                                       session */

#define KZ_NETCLIENT_DEFAULT_SILENCE_MS 1500u
/* With several addresses to try, the least time each one gets for an
 * ACCEPT (kz_netclient_config.connect_timeout_ms is raised to
 * n x this when shorter). */
#define KZ_NETCLIENT_MIN_ADDRESS_MS 1000u
/* Failover (docs/PROTOCOL.md 4a, "Resume elsewhere"): a RESUME to the
 * session's server that has had no answer at all (no CHALLENGE, RESUMED,
 * DENY or sealed message) for this long, with a token that lists other
 * addresses, starts a new session through them (kz_netclient_serial). */
#define KZ_RESUME_ELSEWHERE_MS 400u

typedef struct kz_netclient_config {
    kz_address server;            /* IPv4 gate address; zero = the token's IPv4
                                     addresses, tried in order */
    uint32_t connect_timeout_ms;  /* 0 = 5000; the handshake's whole time over
                                     every address (see kz_netclient_server) */
    uint32_t resend_ms;           /* handshake and RESUME resend; 0 = 250 */
    uint32_t disable_aes;
    uint32_t resume_silence_ms;   /* with a resume ticket: start resuming after this
                                     long without an authenticated datagram from
                                     the server; 0 = KZ_NETCLIENT_DEFAULT_SILENCE_MS.
                                     Once the ticket names the grace, the value
                                     used is at most grace/2 and at least
                                     2 x resend_ms (logged once when changed). */
    kz_log log;
    kz_allocator alloc;
} kz_netclient_config;

typedef struct kz_netclient kz_netclient;

/* NULL on failure (logged): bad token file, no IPv4 address, no socket. */
KZ_API kz_netclient *kz_netclient_create(const kz_netclient_config *cfg,
                                         const kz_connect_token *token);
KZ_API void kz_netclient_destroy(kz_netclient *c);
/* Handshake, ENet service and flush. Call every frame. */
KZ_API int kz_netclient_update(kz_netclient *c, kz_time_ns now);
KZ_API uint32_t kz_netclient_state(const kz_netclient *c);
/* Why the last state change to DISCONNECTED or FAILED happened: the
 * server's kick reason, a KZ_DENY_* from the gate, a KZ_LOST_*, or 0. */
KZ_API uint32_t kz_netclient_reason(const kz_netclient *c);
/* Seals and queues a message. 0, KZ_EINVAL (channel, len), KZ_ESTATE (not
 * CONNECTED or RESUMING, or a failover's new session has not sent its
 * first message: kz_netclient_serial), KZ_ENOMEM, KZ_EEXPIRED (nonces
 * used up), KZ_EIO. */
KZ_API KZ_MUST_CHECK int kz_netclient_send(kz_netclient *c, uint8_t channel, uint8_t type,
                                           const void *data, uint32_t len);
/* The next received message (0) or KZ_EEMPTY; slot is 0. Messages of type
 * KZ_MSG_TICKET are the transport's own (the server's resume tickets, on
 * the event channel): taken here, never returned, and a malformed one is
 * dropped and counted, so applications must not use that type. */
KZ_API KZ_MUST_CHECK int kz_netclient_poll(kz_netclient *c, kz_netmsg *msg);
KZ_API const kz_counters *kz_netclient_counters(const kz_netclient *c);
/* The session slot and id the gate gave (valid once CONNECTING). */
KZ_API uint32_t kz_netclient_slot(const kz_netclient *c);
/*
 * The gate address the handshake is trying, or once admitted the one the
 * session lives on (resume keeps it), into *out (may be NULL); returns its
 * position in the token's address list (0 with config.server set).
 *
 * Without config.server the client tries the token's IPv4 addresses in
 * order, each from scratch (a cookie goes back only to the address that
 * gave it). It moves on when an address gives no ACCEPT within its share of
 * the connect time, or at once when it answers DENY KZ_DENY_SERVER_FULL,
 * KZ_DENY_SHUTTING_DOWN or KZ_DENY_UNAVAILABLE. Shares: the connect lasts
 * connect_timeout_ms, raised to n x KZ_NETCLIENT_MIN_ADDRESS_MS for n > 1
 * addresses; each address gets half of what is left, less if the ones
 * after it would get under KZ_NETCLIENT_MIN_ADDRESS_MS each, never less than
 * that itself; the last gets the rest. FAILED comes only after the last
 * address's share, with the last DENY heard from any address as reason (0
 * when none denied). Counters: connect_addresses_tried,
 * connect_moved_on_no_accept, connect_moved_on_deny. During a failover
 * (kz_netclient_serial): the old session's address until another
 * address ACCEPTs, then that one's.
 */
KZ_API uint32_t kz_netclient_server(const kz_netclient *c, kz_address *out);
/*
 * Call when the OS reports a network change: opens a new UDP socket bound
 * to `local` (IPv4; port 0 = any port; NULL = any address and port), moves
 * the ENet host onto it, closes the old one, and starts resuming at once
 * (state RESUMING; a failover that has not dropped the old session yet is
 * cancelled). 0; KZ_EINVAL (`local` is not IPv4); KZ_ESTATE (not
 * CONNECTED or RESUMING, or the server gave no resume ticket, or a
 * failover is opening a new session: the session stays on its socket);
 * KZ_EIO (the socket could not be opened or bound: nothing changed).
 */
KZ_API KZ_MUST_CHECK int kz_netclient_rebind(kz_netclient *c, const kz_address *local);
/*
 * Which session the messages polled belong to: 1 for the first, +1 each
 * time the client opened a new session through another address of its
 * token after its server went silent (failover, docs/PROTOCOL.md 4a,
 * "Resume elsewhere"). It changes just before kz_netclient_poll returns
 * the new session's first message (the state turns CONNECTED then); the
 * new server knows nothing of the old session's messages, baselines or
 * acknowledgements, and reliable messages queued on the old one are
 * lost.
 *
 * The failover, as the application sees it: the state stays RESUMING.
 * The token's other addresses are tried in its order from the one after
 * the silent server's (wrapping, skipping the silent one), each from
 * scratch with the first connect's handshake and time shares (the
 * budget of the first connect over the n - 1 others), moving on when an
 * address's share passes without the new session's first message or at
 * once on DENY server full, shutting down or unavailable; a round that
 * ends starts another. RESUMEs to the silent server go on until another
 * address ACCEPTs: an answer from it first (CHALLENGE, RESUMED, a sealed
 * message) cancels the failover and the session resumes there. From the
 * ACCEPT on, the old session is dropped: kz_netclient_send returns
 * KZ_ESTATE and kz_netclient_rebind KZ_ESTATE until the new session's
 * first message. A new session ended with KZ_KICK_REPLACED before its
 * first message (the world still holds the old path as live) is tried
 * again on the same address every resend_ms within its share. The
 * session is lost (DISCONNECTED) when the old session's grace has passed
 * since the old server was last heard: KZ_LOST_RESUME_REFUSED if the
 * old server denied the resume, else KZ_LOST_RESUME_TIMEOUT. A token
 * with one IPv4 address, or config.server set, never fails over.
 */
KZ_API uint32_t kz_netclient_serial(const kz_netclient *c);
/* The `now` of the update before the last fresh evidence from the server
 * (0 before the first): a sealed message that kz_netclient_poll opened past
 * its replay window, or a RESUMED that handed over a later ticket. A
 * datagram that only passes ENet's MAC (it may be a replay) does not count,
 * so an application with a ticket must poll every frame. */
KZ_API kz_time_ns kz_netclient_last_heard(const kz_netclient *c);

/* The client's own counters: gate replies, resume tickets and resumes,
 * the addresses tried, failovers (kz_netclient_resume_counters; ids
 * KZ_NETCLIENT_C_<ID>). */
#define KZ_NETCLIENT_COUNTERS(X)                           \
    X(TICKETS, "resume_tickets_received")                  \
    X(DROP_TICKET, "drop_ticket_malformed")                \
    X(RESUMES_STARTED, "resumes_started")                  \
    X(RESUMES_SUCCEEDED, "resumes_succeeded")              \
    X(RESUMES_HEALED, "resumes_healed")                    \
    X(RESUMES_REFUSED, "resumes_refused")                  \
    X(RESUMES_TIMED_OUT, "resumes_timed_out")              \
    X(RESUME_SENT, "resume_datagrams_sent")                \
    X(DROP_RESUME_SEND, "drop_resume_send_failed")         \
    X(CONFIRMS_FAILED, "resume_ticket_confirms_failed")    \
    X(REBINDS, "rebinds")                                  \
    X(REBIND_FAILED, "rebinds_failed")                     \
    X(DROP_GATE_SOURCE, "drop_gate_wrong_source")          \
    X(DROP_GATE_UNEXPECTED, "drop_gate_unexpected")        \
    X(DROP_RESUMED_AUTH, "drop_resumed_bad_seal")          \
    X(DROP_RESUMED_STALE, "drop_resumed_stale")            \
    X(DROP_DENY_UNPROVEN, "drop_deny_before_cookie")       \
    X(DROP_GATE_MALFORMED, "drop_gate_malformed")          \
    X(DROP_GATE_HANDSHAKE, "drop_gate_handshake_refused")  \
    X(DROP_GATE_NO_ECHO, "drop_gate_reply_without_echo")   \
    X(DROP_GATE_BAD_ECHO, "drop_gate_reply_unknown_echo")  \
    X(DROP_DENY_REASON, "drop_deny_other_reason")          \
    X(DROP_RESUMED_UNASKED, "drop_resumed_same_unasked")   \
    X(TICKETS_CONFIRMED, "resume_tickets_confirmed")       \
    X(UPLINK_STALLS, "resumes_started_uplink")             \
    X(ADDRESSES_TRIED, "connect_addresses_tried")          \
    X(MOVED_ON_SILENCE, "connect_moved_on_no_accept")      \
    X(MOVED_ON_DENY, "connect_moved_on_deny")              \
    X(FAILOVERS_STARTED, "failovers_started")              \
    X(FAILOVERS_SUCCEEDED, "failovers_succeeded")          \
    X(FAILOVERS_CANCELLED, "failovers_cancelled")          \
    X(FAILOVER_TRIED, "failover_addresses_tried")          \
    X(FAILOVER_ON_SILENCE, "failover_moved_on_no_session") \
    X(FAILOVER_ON_DENY, "failover_moved_on_deny")          \
    X(FAILOVER_ON_END, "failover_moved_on_session_ended")  \
    X(FAILOVER_REPLACED, "failover_retries_replaced")      \
    X(FAILOVER_ROUNDS, "failover_rounds_again")            \
    X(DROP_SESSION_ID_REUSED, "drop_accept_session_id_reused")

enum {
#define KZ__NETCLIENT_ENUM(id, name) KZ_NETCLIENT_C_##id,
    KZ_NETCLIENT_COUNTERS(KZ__NETCLIENT_ENUM)
#undef KZ__NETCLIENT_ENUM
    KZ_NETCLIENT_C_COUNT
};

KZ_API const kz_counters *kz_netclient_resume_counters(const kz_netclient *c);

/* UDP traffic of a client since creation: datagram payload bytes (ENet
 * headers, seals and all; no IP/UDP headers) and datagrams. */
typedef struct kz_net_traffic {
    uint64_t bytes_in, bytes_out;
    uint64_t packets_in, packets_out;
} kz_net_traffic;
KZ_API void kz_netclient_traffic(const kz_netclient *c, kz_net_traffic *out);

/* Transport counters (server and client). */
#define KZ_NET_COUNTERS(X)                         \
    X(RX_PACKETS, "rx_packets")                    \
    X(TX_PACKETS, "tx_packets")                    \
    X(RX_BYTES, "rx_bytes")                        \
    X(TX_BYTES, "tx_bytes")                        \
    X(DROP_AUTH, "drop_auth_failure")              \
    X(DROP_REPLAY, "drop_replay")                  \
    X(DROP_MALFORMED, "drop_malformed_packet")     \
    X(DROP_INBOUND_FULL, "drop_inbound_ring_full") \
    X(DROP_OUTBOUND_FULL, "drop_outbound_full")    \
    X(DROP_NO_SESSION, "drop_no_session")          \
    X(DROP_ENET_MAC, "drop_enet_bad_mac")          \
    X(DROP_ENET_PEER, "drop_enet_unknown_peer")    \
    X(DROP_ENET_MALFORMED, "drop_enet_malformed")  \
    X(DROP_PACKET_ALLOC, "drop_packet_alloc")      \
    X(DROP_ENET_SEND, "drop_enet_send_refused")    \
    X(SESSIONS_OPENED, "sessions_opened")          \
    X(SESSIONS_CLOSED, "sessions_closed")          \
    X(CONNECT_REFUSED, "enet_connect_refused")     \
    X(NONCE_EXHAUSTED, "nonce_exhausted")          \
    X(SESSIONS_DETACHED, "sessions_detached")      \
    X(SESSIONS_ATTACHED, "sessions_reattached")    \
    X(SESSIONS_MOVED, "sessions_moved")            \
    X(SESSIONS_GRACE_ENDED, "sessions_grace_ended") \
    X(SESSIONS_REPLACED, "sessions_replaced")      \
    X(DROP_NOTICE_FULL, "drop_notice_ring_full")

enum {
#define KZ__NET_ENUM(id, name) KZ_NET_C_##id,
    KZ_NET_COUNTERS(KZ__NET_ENUM)
#undef KZ__NET_ENUM
    KZ_NET_C_COUNT
};

#ifdef __cplusplus
}
#endif

#endif /* KZ_TRANSPORT_H */
