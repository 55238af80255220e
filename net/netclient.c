/*
 * The client transport: gate handshake on the ENet host's own socket, then
 * an ENet connection from the same address, sealed both ways. Everything
 * runs inside kz_netclient_update on the caller's thread.
 *
 * Resume (docs/PROTOCOL.md, "Resume", client behaviour): the server's
 * TICKET message is taken here and never handed to the application. With
 * a ticket, a path that broke (no authenticated datagram for
 * resume_silence_ms, kz_netclient_rebind, or the world's client seeing its
 * inputs go unacknowledged) is resumed: RESUMEs go to the gate every
 * resend_ms, answering a CHALLENGE at once, until a RESUMED of a later path
 * opens (back to CONNECTED with the next ticket), fresh evidence shows the
 * path healed, or the session is lost (DENY KZ_DENY_NO_SESSION, or the
 * grace passed since the last fresh evidence). ENet keeps running on the
 * same, possibly new, socket throughout.
 *
 * What counts as hearing the server: a sealed message that kz_netclient_poll
 * opens past the replay window (or a RESUMED that hands over a later
 * ticket). A valid ENet MAC alone is not enough: a captured server datagram
 * replayed from the server's address still carries a valid MAC, and must
 * not keep a dead path looking alive.
 *
 * CHALLENGE and DENY are not authenticated. One that answers a RESUME
 * echoes that RESUME's proof, which only someone who sees our RESUMEs can
 * copy; the client keeps the proofs of its last KZ__PROOFS_KEPT RESUMEs in
 * the attempt and takes no CHALLENGE or DENY without one of them. An
 * on-path attacker who reads our RESUMEs can still answer them; it could
 * also just drop them, which ends in the grace as well.
 */
#include <enet/enet.h>
#include <sodium.h>
#include <string.h>

#include <kizuna/transport.h>

#include "enet_mac.h"
#include "enet_tune.h"
#include "gate.h"
#include "netclient.h"
#include "resume.h"
#include "seal.h"

#define KZ__CLIENT_QUEUE 256u
/* RESUMEs of an attempt whose proof a CHALLENGE or DENY may echo: enough
 * for the replies of a few resend intervals still on their way. */
#define KZ__PROOFS_KEPT 4u
/* Where a RESUME's proof sits, and so the echo in a reply. */
#define KZ__RESUME_PROOF_AT (KZ_GATE_RESUME_FIXED_BYTES - KZ_RESUME_PROOF_BYTES)

/*
 * What the client holds for resume, and the attempt in progress. The
 * ticket and grace come from the server (TICKET, then each RESUMED); the
 * rest belongs to one attempt and is cleared by kz__resume_attempt_reset.
 */
typedef struct kz__client_resume {
    uint8_t ticket[KZ_TICKET_BYTES];
    uint32_t grace_ms;           /* 0: no ticket (the server has resume off) */
    /* the attempt */
    uint8_t cookie[KZ_COOKIE_BYTES];
    uint32_t has_cookie;
    uint32_t cookie_fresh;       /* a new cookie not yet sent back */
    uint32_t answered;           /* a challenge was answered since the last timed send */
    uint32_t cookie_sent;        /* a RESUME with a cookie went out: the server may
                                    have moved the session and used up our ticket */
    uint32_t rebound;            /* the socket moved in this attempt */
    uint32_t refused;            /* a DENY KZ_DENY_NO_SESSION answered a RESUME */
    uint32_t confirming;         /* CONNECTED again, still asking for the new ticket */
    uint32_t confirmed;          /* a RESUMED named the ticket we hold: nothing to ask */
    uint32_t uplink;             /* started because our datagrams go unacknowledged:
                                    the server's datagrams do not show a healed path */
    kz_time_ns uplink_since;     /* then: the last moment the server was known to hear us */
    kz_time_ns started_at;       /* when the attempt began */
    kz_time_ns spoke_at;         /* the server's last sign of life in the attempt (0:
                                    none): a sealed message, a RESUMED that opened, an
                                    echoed CHALLENGE or DENY */
    kz_time_ns next_send;
    kz_time_ns confirm_until;
    /* The proofs of the last RESUMEs sent, and whether each carried a
     * cookie (a DENY can only answer one that did). */
    uint8_t proofs[KZ__PROOFS_KEPT][KZ_RESUME_PROOF_BYTES];
    uint8_t proof_cookie[KZ__PROOFS_KEPT];
    uint32_t n_proofs, next_proof;
} kz__client_resume;

/*
 * A failover (docs/PROTOCOL.md 4a, "Resume elsewhere"): the session's
 * server left a RESUME unanswered for KZ_RESUME_ELSEWHERE_MS (or denied
 * it), so the token's other addresses are tried, in rounds, with the
 * first connect's handshake. Until one ACCEPTs, the old session and its
 * RESUMEs go on (`home_gone` 0: the state stays RESUMING); from the
 * ACCEPT on, the old session is dropped and the state is HANDSHAKE or
 * CONNECTING/CONNECTED underneath, shown as RESUMING, until the new
 * session's first message (`opened` while its ENet connection is being
 * opened or waits for it). Cleared by kz__move_reset.
 */
typedef struct kz__client_move {
    uint32_t active;
    uint32_t home;             /* index of the silent server's address: skipped */
    uint32_t at;               /* index of the address being tried */
    uint32_t pos;              /* its place in the round, 0..n_addrs - 2 */
    uint32_t home_gone;        /* an address accepted: the old session was dropped */
    uint32_t opened;           /* the new session's ENet connection is up or coming */
    uint32_t refused;          /* the silent server denied the resume (no session) */
    uint32_t grace_ms;         /* the old session's grace */
    kz_time_ns since;          /* the old server last heard: the grace counts from here */
    kz_time_ns round_started;  /* the round's connect budget counts from here */
    kz_time_ns until;          /* when the address's share ends */
    kz_time_ns next_send;      /* the next REQUEST */
    ENetAddress addr;          /* addrs[at] */
    /* The old session's handshake results, which an ACCEPT overwrites in
     * `hs`: put back if the old session comes back after all. */
    uint64_t home_session_id;
    uint32_t home_slot;
    uint16_t home_port, home_timeout_s;
    uint8_t home_alg;
} kz__client_move;

/* Session ids this client used under its token's keys, which a new
 * session must not repeat: a session's keys and nonces derive from its
 * id (seal.c, enet_mac.c), so a repeated id would reuse nonces under one
 * key. A ring: the check covers the last KZ__IDS_KEPT sessions. */
#define KZ__IDS_KEPT 16u

struct kz_netclient {
    kz_netclient_config cfg;
    ENetHost *host;
    ENetPeer *peer;
    ENetAddress gate_addr;   /* the address being tried, then the one admitted */
    /* The gate addresses the handshake tries in order: the token's IPv4
     * addresses, or cfg.server alone. addr_pos is each one's position in
     * the token's list; `at` the one being tried (kept once admitted). */
    kz_address addrs[KZ_TOKEN_MAX_ADDRESSES];
    uint8_t addr_pos[KZ_TOKEN_MAX_ADDRESSES];
    uint32_t n_addrs, at;
    kz_time_ns addr_until;   /* when the current address's share ends */
    kz__handshake hs;
    kz__seal tx, rx;
    kz__replay window;
    kz__enet_mac_pair mac;   /* ENet datagram MACs, from the ACCEPT on */
    uint32_t mac_set;
    uint32_t rx_tag, rx_verified;
    uint32_t state;
    uint32_t reason;
    kz_time_ns started, next_send, now;
    kz_time_ns last_heard;   /* now of the last fresh evidence from the server */
    uint32_t heard;          /* fresh evidence since the last resume step */
    uint32_t silence_ms;     /* resume_silence_ms as used: clamped to the grace */
    kz__client_resume resume;
    kz__client_move move;
    uint32_t serial;         /* kz_netclient_serial: 1, +1 per failover */
    uint64_t used_ids[KZ__IDS_KEPT];
    uint32_t n_used_ids;
    /* Received ENet packets waiting for poll, opened one at a time. */
    ENetPacket *queue[KZ__CLIENT_QUEUE];
    uint8_t queue_channel[KZ__CLIENT_QUEUE];
    uint32_t q_head, q_count;
    ENetPacket *held;
    uint8_t plain[KZ_MAX_MESSAGE_BYTES];
    kz_counters counters;
    kz_counter_block c;
    kz_counters resume_counters;
    kz_counter_block rc;
};

static const char *const kz__client_counter_names[KZ_NET_C_COUNT] = {
#define KZ__NET_NAME(id, name) name,
    KZ_NET_COUNTERS(KZ__NET_NAME)
#undef KZ__NET_NAME
};

static const char *const kz__resume_counter_names[KZ_NETCLIENT_C_COUNT] = {
#define KZ__NETCLIENT_NAME(id, name) name,
    KZ_NETCLIENT_COUNTERS(KZ__NETCLIENT_NAME)
#undef KZ__NETCLIENT_NAME
};

static _Thread_local kz_netclient *kz__updating;

/* The failover (below) as the resume and ENet handlers need it. */
static void kz__move_cancel(kz_netclient *c, const char *why);
static int kz__move_session_ended(kz_netclient *c, uint32_t data);

/* An ENet datagram for the client: dropped (1) unless it names our one
 * peer and carries a valid MAC under the server-to-client ENet key
 * (enet_mac.h), so nobody but the server can end, stall or confuse the
 * connection. */
static int kz__client_intercept_enet(kz_netclient *c, ENetHost *host)
{
    kz__enet_header h;
    c->rx_verified = 0;
    if (!kz__enet_header_parse(host->receivedData, host->receivedDataLength, &h)) {
        kz_counter_inc(c->c, KZ_NET_C_DROP_ENET_MALFORMED);
        return 1;
    }
    if (!c->mac_set || c->peer == NULL || h.peer_id != c->peer->incomingPeerID ||
        host->receivedAddress.host != c->peer->address.host ||
        host->receivedAddress.port != c->peer->address.port) {
        kz_counter_inc(c->c, KZ_NET_C_DROP_ENET_PEER);
        return 1;
    }
    if (!kz__enet_mac_check(&c->mac.server_to_client, host->receivedData,
                            host->receivedDataLength, &h, c->peer->connectID, &c->rx_tag)) {
        kz_counter_inc(c->c, KZ_NET_C_DROP_ENET_MAC);
        return 1;
    }
    /* Authentic, but perhaps a replay: ENet's own sequencing decides what
     * it delivers, and poll's replay window what counts as heard. */
    c->rx_verified = 1;
    return 0;
}

/* ENet's checksum callback on the client: the tag the intercept verified
 * for a received datagram, the client-to-server MAC for one being sent. */
static enet_uint32 kz__client_checksum(const ENetBuffer *b, size_t n)
{
    kz_netclient *c = kz__updating;
    if (c == NULL || !c->mac_set)
        return 0;
    if (kz__enet_checksum_is_receive(c->host, b, n)) {
        uint32_t verified = c->rx_verified;
        c->rx_verified = 0;
        return verified ? c->rx_tag : ~c->rx_tag;
    }
    return kz__enet_mac_buffers(&c->mac.client_to_server, b, n);
}

/* ---- resume: the gate's replies --------------------------------------- */

/* Clears the attempt; the ticket and grace stay. */
static void kz__resume_attempt_reset(kz__client_resume *r)
{
    sodium_memzero(r->cookie, sizeof r->cookie);
    r->has_cookie = 0;
    r->cookie_fresh = 0;
    r->answered = 0;
    r->cookie_sent = 0;
    r->rebound = 0;
    r->refused = 0;
    r->confirming = 0;
    r->confirmed = 0;
    r->uplink = 0;
    r->uplink_since = 0;
    r->started_at = 0;
    r->spoke_at = 0;
    r->next_send = 0;
    r->confirm_until = 0;
    sodium_memzero(r->proofs, sizeof r->proofs);
    memset(r->proof_cookie, 0, sizeof r->proof_cookie);
    r->n_proofs = 0;
    r->next_proof = 0;
}

/* How long the server has been silent at `now`: 0 when the clock went
 * backwards (a clock is the application's; a step back must not read as
 * an age of centuries). */
static kz_time_ns kz__since(kz_time_ns now, kz_time_ns then)
{
    return now > then ? now - then : 0;
}

/* Fresh evidence from the server: a sealed message past the replay
 * window, or a RESUMED that handed over a later ticket. */
static void kz__client_heard(kz_netclient *c)
{
    c->heard = 1;
    c->last_heard = c->now;
}

/* Remembers the proof of a RESUME just sent. */
static void kz__resume_keep_proof(kz__client_resume *r, const uint8_t *resume, uint32_t cookie)
{
    memcpy(r->proofs[r->next_proof], resume + KZ__RESUME_PROOF_AT, KZ_RESUME_PROOF_BYTES);
    r->proof_cookie[r->next_proof] = (uint8_t)cookie;
    r->next_proof = (r->next_proof + 1) % KZ__PROOFS_KEPT;
    if (r->n_proofs < KZ__PROOFS_KEPT)
        r->n_proofs++;
}

/* The index of the kept proof equal to `echo` (every kept proof compared
 * in constant time), or -1. */
static int kz__resume_echo_index(const kz__client_resume *r, const uint8_t *echo)
{
    int found = -1;
    for (uint32_t i = 0; i < r->n_proofs; i++)
        if (sodium_memcmp(r->proofs[i], echo, KZ_RESUME_PROOF_BYTES) == 0)
            found = (int)i;
    return found;
}

/* Forgets the ticket too (the session is over). */
static void kz__resume_reset(kz__client_resume *r)
{
    kz__resume_attempt_reset(r);
    sodium_memzero(r->ticket, sizeof r->ticket);
    r->grace_ms = 0;
}

/* What a RESUMED that opened under our key says of the ticket `held`. */
enum { KZ__RESUMED_STALE, KZ__RESUMED_SAME, KZ__RESUMED_LATER };

/* Ticket `got` of the same session and slot as `held`: a later path (the
 * server moved the session: the RESUMED is the first of its kind we see,
 * since taking it makes any copy stale), or the very ticket we hold (the
 * server found us where the session already was, or a copy of such a
 * RESUMED; nothing tells the two apart). Anything else, an older path
 * included, is stale. Paths compare with the half-range rule. */
static int kz__resume_ticket_answers(const uint8_t held[KZ_TICKET_BYTES],
                                     const uint8_t got[KZ_TICKET_BYTES])
{
    kz__ticket h, g;
    kz__ticket_unpack(held, &h);
    kz__ticket_unpack(got, &g);
    if (g.session_id != h.session_id || g.slot != h.slot)
        return KZ__RESUMED_STALE;
    if (g.path == h.path)
        return sodium_memcmp(held, got, KZ_TICKET_BYTES) == 0 ? KZ__RESUMED_SAME
                                                              : KZ__RESUMED_STALE;
    return (int32_t)(g.path - h.path) > 0 ? KZ__RESUMED_LATER : KZ__RESUMED_STALE;
}

/* A RESUMED naming the ticket we hold: it may be a copy, so it proves
 * nothing about the path now. It only confirms the ticket, and only when
 * this attempt sent a RESUME with a cookie (which the server may have
 * used to move the session); after a rebind the session cannot already be
 * at our new address. */
static void kz__resume_take_same(kz_netclient *c)
{
    kz__client_resume *r = &c->resume;
    if (!r->cookie_sent || r->rebound) {
        kz_counter_inc(c->rc, KZ_NETCLIENT_C_DROP_RESUMED_UNASKED);
        return;
    }
    kz_counter_inc(c->rc, KZ_NETCLIENT_C_TICKETS_CONFIRMED);
    if (r->confirming)
        kz__resume_attempt_reset(r);
    else
        r->confirmed = 1;
}

static void kz__resume_take_resumed(kz_netclient *c, const uint8_t *d, size_t n)
{
    kz__client_resume *r = &c->resume;
    uint8_t t[KZ_TICKET_BYTES];
    if (kz__resumed_open(&c->hs.token.keys, d, n, t) != KZ_OK) {
        kz_counter_inc(c->rc, KZ_NETCLIENT_C_DROP_RESUMED_AUTH);
        return;
    }
    r->spoke_at = c->now; /* sealed by the server, if perhaps a copy */
    int kind = kz__resume_ticket_answers(r->ticket, t);
    if (kind != KZ__RESUMED_LATER) {
        sodium_memzero(t, sizeof t);
        if (kind == KZ__RESUMED_SAME)
            kz__resume_take_same(c);
        else
            kz_counter_inc(c->rc, KZ_NETCLIENT_C_DROP_RESUMED_STALE);
        return;
    }
    memcpy(r->ticket, t, sizeof t);
    sodium_memzero(t, sizeof t);
    /* Only the server can seal it, and a later ticket is taken once: the
     * session moved to where our RESUMEs come from. */
    kz__client_heard(c);
    kz__move_cancel(c, "the session moved on its own server");
    if (c->state == KZ_NETCLIENT_RESUMING) {
        kz_counter_inc(c->rc, KZ_NETCLIENT_C_RESUMES_SUCCEEDED);
        kz_logf(&c->cfg.log, KZ_LOG_INFO, "net", "client: session resumed");
        c->state = KZ_NETCLIENT_CONNECTED;
    }
    kz__resume_attempt_reset(r);
}

/* A DENY that echoed the proof of RESUME `at`. The gate denies a RESUME
 * only after its cookie checked out, so one echoing a RESUME without a
 * cookie was not the gate's. */
static void kz__resume_take_deny(kz_netclient *c, uint8_t reason, int at)
{
    kz__client_resume *r = &c->resume;
    if (reason != KZ_DENY_NO_SESSION) {
        kz_counter_inc(c->rc, KZ_NETCLIENT_C_DROP_DENY_REASON);
    } else if (!r->proof_cookie[at]) {
        kz_counter_inc(c->rc, KZ_NETCLIENT_C_DROP_DENY_UNPROVEN);
    } else if (c->state == KZ_NETCLIENT_RESUMING) {
        r->refused = 1;
    } else {
        /* Confirming: the session is alive (its datagrams authenticate)
         * but the gate will not name its ticket; stop asking. */
        kz_counter_inc(c->rc, KZ_NETCLIENT_C_CONFIRMS_FAILED);
        kz__resume_attempt_reset(r);
    }
}

static void kz__resume_take_challenge(kz_netclient *c, const uint8_t *d)
{
    kz__client_resume *r = &c->resume;
    const uint8_t *cookie = d + KZ_GATE_HEADER_BYTES;
    /* The session's own gate is alive and will take the RESUME back. */
    kz__move_cancel(c, "its own server answered");
    if (r->has_cookie && sodium_memcmp(r->cookie, cookie, KZ_COOKIE_BYTES) == 0)
        return; /* the same cookie again: it goes out with the next RESUME */
    memcpy(r->cookie, cookie, KZ_COOKIE_BYTES);
    r->has_cookie = 1;
    r->cookie_fresh = 1;
}

/* A CHALLENGE or DENY of `with_echo` bytes, the last 16 the echo: the
 * index of the RESUME it answers, or -1 (dropped and counted). One of the
 * handshake's sizes has no echo: it answers a REQUEST, not a RESUME. */
static int kz__resume_echoed(kz_netclient *c, const uint8_t *d, size_t n, size_t with_echo)
{
    if (n + KZ_RESUME_PROOF_BYTES == with_echo) {
        kz_counter_inc(c->rc, KZ_NETCLIENT_C_DROP_GATE_NO_ECHO);
        return -1;
    }
    if (n != with_echo) {
        kz_counter_inc(c->rc, KZ_NETCLIENT_C_DROP_GATE_MALFORMED);
        return -1;
    }
    int at = kz__resume_echo_index(&c->resume, d + n - KZ_RESUME_PROOF_BYTES);
    if (at < 0)
        kz_counter_inc(c->rc, KZ_NETCLIENT_C_DROP_GATE_BAD_ECHO);
    else
        c->resume.spoke_at = c->now; /* whoever answered saw our RESUME */
    return at;
}

/* A gate datagram (from the gate's address) while resuming or confirming. */
static void kz__resume_receive(kz_netclient *c, const uint8_t *d, size_t n)
{
    int at;
    if (n < KZ_GATE_HEADER_BYTES || d[3] != KZ_PROTOCOL_VERSION) {
        kz_counter_inc(c->rc, KZ_NETCLIENT_C_DROP_GATE_MALFORMED);
    } else if (d[2] == KZ_GATE_RESUMED) {
        kz__resume_take_resumed(c, d, n);
    } else if (d[2] == KZ_GATE_CHALLENGE) {
        if (kz__resume_echoed(c, d, n, KZ_GATE_RESUME_CHALLENGE_BYTES) >= 0)
            kz__resume_take_challenge(c, d);
    } else if (d[2] == KZ_GATE_DENY) {
        if ((at = kz__resume_echoed(c, d, n, KZ_GATE_RESUME_DENY_BYTES)) >= 0)
            kz__resume_take_deny(c, d[KZ_GATE_HEADER_BYTES], at);
    } else {
        kz_counter_inc(c->rc, KZ_NETCLIENT_C_DROP_GATE_MALFORMED);
    }
}

/* Gate replies arrive on the ENet socket; take them before ENet does.
 * Only the gate's own address speaks for the gate, as in the handshake. */
static void kz__client_on_gate(kz_netclient *c, const ENetAddress *from, const uint8_t *d,
                               size_t n)
{
    const kz__client_move *m = &c->move;
    if (m->active && !m->opened && from->host == m->addr.host && from->port == m->addr.port) {
        /* The failover's handshake (its DENY is only a hint to move on,
         * never the session's end, so c->reason stays). */
        if (kz__handshake_receive(&c->hs, d, n) != KZ_OK)
            kz_counter_inc(c->rc, KZ_NETCLIENT_C_DROP_GATE_HANDSHAKE);
    } else if (from->host != c->gate_addr.host || from->port != c->gate_addr.port) {
        kz_counter_inc(c->rc, KZ_NETCLIENT_C_DROP_GATE_SOURCE);
    } else if (c->state == KZ_NETCLIENT_HANDSHAKE && !m->active) {
        if (kz__handshake_receive(&c->hs, d, n) != KZ_OK)
            kz_counter_inc(c->rc, KZ_NETCLIENT_C_DROP_GATE_HANDSHAKE);
        if (c->hs.deny_reason)
            c->reason = c->hs.deny_reason;
    } else if (c->state == KZ_NETCLIENT_RESUMING || c->resume.confirming) {
        kz__resume_receive(c, d, n);
    } else {
        kz_counter_inc(c->rc, KZ_NETCLIENT_C_DROP_GATE_UNEXPECTED);
    }
}

static int kz__client_intercept(ENetHost *host, ENetEvent *event)
{
    (void)event;
    kz_netclient *c = kz__updating;
    const uint8_t *d = host->receivedData;
    size_t n = host->receivedDataLength;
    if (c == NULL)
        return 1;
    if (n < 2 || d[0] != KZ_GATE_MARK0 || d[1] != KZ_GATE_MARK1)
        return kz__client_intercept_enet(c, host);
    kz__client_on_gate(c, &host->receivedAddress, d, n);
    return 1;
}

/* Points the handshake at address `at` (a gate_addr only: nothing is
 * sent or counted). */
static void kz__client_aim(kz_netclient *c, uint32_t at)
{
    c->at = at;
    memcpy(&c->gate_addr.host, c->addrs[at].ip, 4);
    c->gate_addr.port = c->addrs[at].port;
}

/* The addresses to try: cfg.server alone, or every IPv4 address of the
 * token in its order (the client speaks IPv4 only; others are skipped). */
static int kz__client_pick_server(kz_netclient *c)
{
    c->n_addrs = 0;
    if (c->cfg.server.family != 0) {
        if (c->cfg.server.family != KZ_ADDR_IPV4)
            return KZ_EINVAL;
        c->addrs[0] = c->cfg.server;
        c->addr_pos[0] = 0;
        c->n_addrs = 1;
    } else {
        kz_token_info info;
        if (kz_token_parse(c->hs.token.token, c->hs.token.token_len, &info) != KZ_OK)
            return KZ_EPROTO;
        for (uint32_t i = 0; i < info.n_addresses && i < KZ_TOKEN_MAX_ADDRESSES; i++)
            if (info.addresses[i].family == KZ_ADDR_IPV4) {
                c->addrs[c->n_addrs] = info.addresses[i];
                c->addr_pos[c->n_addrs++] = (uint8_t)i;
            }
        sodium_memzero(&info, sizeof info);
    }
    if (c->n_addrs == 0)
        return KZ_EINVAL;
    kz__client_aim(c, 0);
    return KZ_OK;
}

int kz__netclient_open(const kz_netclient_config *cfg, const kz_connect_token *token,
                       kz_netclient **out)
{
    kz_netclient_config conf = *cfg;
    *out = NULL;
    kz_allocator_resolve(&conf.alloc);
    if (conf.connect_timeout_ms == 0)
        conf.connect_timeout_ms = 5000;
    if (conf.resend_ms == 0)
        conf.resend_ms = 250;
    if (conf.resume_silence_ms == 0)
        conf.resume_silence_ms = KZ_NETCLIENT_DEFAULT_SILENCE_MS;
    kz_netclient *c = kz_calloc(&conf.alloc, sizeof *c, 64);
    if (c == NULL) {
        kz_logf(&conf.log, KZ_LOG_ERROR, "net", "client: %s", kz_strerror(KZ_ENOMEM));
        return KZ_ENOMEM;
    }
    c->cfg = conf;
    int rc = kz__handshake_init(&c->hs, token);
    if (rc == KZ_OK && conf.disable_aes)
        c->hs.aead_mask = KZ_AEAD_BIT_CHACHA20;
    if (rc == KZ_OK)
        rc = kz__client_pick_server(c);
    if (rc == KZ_OK)
        rc = kz_counters_init(&c->counters, KZ_NET_C_COUNT, 1, kz__client_counter_names,
                              &conf.alloc);
    if (rc == KZ_OK)
        rc = kz_counters_init(&c->resume_counters, KZ_NETCLIENT_C_COUNT, 1,
                              kz__resume_counter_names, &conf.alloc);
    if (rc == KZ_OK && (enet_initialize() != 0 ||
                        !(c->host = enet_host_create(NULL, 1, KZ_CHANNEL_COUNT, 0, 0))))
        rc = KZ_EIO;
    if (rc != KZ_OK) {
        kz_logf(&conf.log, KZ_LOG_ERROR, "net", "client: %s", kz_strerror(rc));
        kz_netclient_destroy(c);
        return rc;
    }
    c->c = kz_counters_block(&c->counters, 0);
    c->rc = kz_counters_block(&c->resume_counters, 0);
    c->host->checksum = kz__client_checksum;
    c->host->intercept = kz__client_intercept;
    c->host->mtu = KZ_MTU;
    c->host->maximumPacketSize = KZ_ENET_MAX_PACKET_BYTES;
    c->host->maximumWaitingData = KZ_ENET_MAX_WAITING_BYTES;
    c->state = KZ_NETCLIENT_HANDSHAKE;
    c->started = UINT64_MAX; /* set by the first update */
    c->serial = 1;
    c->silence_ms = conf.resume_silence_ms;
    *out = c;
    return KZ_OK;
}

kz_netclient *kz_netclient_create(const kz_netclient_config *cfg, const kz_connect_token *token)
{
    kz_netclient *c;
    return kz__netclient_open(cfg, token, &c) == KZ_OK ? c : NULL;
}

static void kz__client_drop_queue(kz_netclient *c)
{
    while (c->q_count) {
        enet_packet_destroy(c->queue[c->q_head]);
        c->q_head = (c->q_head + 1) % KZ__CLIENT_QUEUE;
        c->q_count--;
    }
    if (c->held) {
        enet_packet_destroy(c->held);
        c->held = NULL;
    }
}

void kz_netclient_destroy(kz_netclient *c)
{
    if (c == NULL)
        return;
    kz__client_drop_queue(c);
    if (c->host) {
        if (c->peer &&
            (c->state == KZ_NETCLIENT_CONNECTED || c->state == KZ_NETCLIENT_RESUMING)) {
            kz__updating = c; /* the MAC callback needs the client */
            enet_peer_disconnect_now(c->peer, 0);
            enet_host_flush(c->host);
            kz__updating = NULL;
        }
        enet_host_destroy(c->host);
    }
    if (c->counters.cells)
        kz_counters_fini(&c->counters);
    if (c->resume_counters.cells)
        kz_counters_fini(&c->resume_counters);
    kz_allocator a = c->cfg.alloc;
    sodium_memzero(c, sizeof *c);
    kz_free(&a, c, sizeof *c);
}

static void kz__client_send_request(kz_netclient *c, const ENetAddress *to)
{
    uint8_t req[KZ_GATE_REQUEST_BYTES];
    size_t n = kz__handshake_request(&c->hs, req);
    ENetBuffer b = {.data = req, .dataLength = n};
    enet_socket_send(c->host->socket, to, &b, 1);
}

/* 1 when the ACCEPT's session id was used before under these keys (then
 * the session must not open), else records it and returns 0. */
static int kz__client_id_reused(kz_netclient *c)
{
    uint32_t kept = c->n_used_ids < KZ__IDS_KEPT ? c->n_used_ids : KZ__IDS_KEPT;
    for (uint32_t i = 0; i < kept; i++)
        if (c->used_ids[i] == c->hs.session_id)
            return 1;
    c->used_ids[c->n_used_ids++ % KZ__IDS_KEPT] = c->hs.session_id;
    return 0;
}

/* After the accept: ENet connect from this same socket to the given port. */
static void kz__client_start_enet(kz_netclient *c)
{
    /* Port 0: ENet listens on the gate's own socket, so connect to the very
     * address the handshake went to (which may be a relay or a NAT). */
    ENetAddress to = {.host = c->gate_addr.host,
                      .port = c->hs.port ? c->hs.port : c->gate_addr.port};
    const kz_session_keys *k = &c->hs.token.keys;
    if (kz__client_id_reused(c)) {
        kz_counter_inc(c->rc, KZ_NETCLIENT_C_DROP_SESSION_ID_REUSED);
        c->state = KZ_NETCLIENT_FAILED;
        return;
    }
    kz__enet_mac_pair_derive(&c->mac, k, c->hs.session_id);
    c->mac_set = 1;
    if (kz__seal_init(&c->tx, k->client_to_server, c->hs.alg, c->hs.session_id) != KZ_OK ||
        kz__seal_init(&c->rx, k->server_to_client, c->hs.alg, c->hs.session_id) != KZ_OK ||
        !(c->peer = enet_host_connect(c->host, &to, KZ_CHANNEL_COUNT,
                                      kz__connect_tag(k, c->hs.session_id)))) {
        c->state = KZ_NETCLIENT_FAILED;
        return;
    }
    kz__enet_peer_setup(c->peer, kz__session_timeout_ms(c->hs.timeout_seconds));
    kz__replay_init(&c->window);
    c->state = KZ_NETCLIENT_CONNECTING;
}

static void kz__client_on_receive(kz_netclient *c, uint8_t channel, ENetPacket *pkt)
{
    kz_counter_inc(c->c, KZ_NET_C_RX_PACKETS);
    kz_counter_add(c->c, KZ_NET_C_RX_BYTES, pkt->dataLength);
    if (c->q_count == KZ__CLIENT_QUEUE) {
        kz_counter_inc(c->c, KZ_NET_C_DROP_INBOUND_FULL);
        enet_packet_destroy(pkt);
        return;
    }
    uint32_t at = (c->q_head + c->q_count++) % KZ__CLIENT_QUEUE;
    c->queue[at] = pkt;
    c->queue_channel[at] = channel;
}

/* ENet ended the peer: the server's DISCONNECT (its reason in `data`, in
 * an authenticated datagram), or ENet's own timeout (data 0). With a
 * ticket held, a reason 0 is the end of the grace as the client knows it:
 * the server's own end-of-grace DISCONNECT (reason 0) while we resume (we
 * know the server has not heard us: our datagrams went unanswered or
 * unacknowledged), or ENet's timeout after the grace without hearing the
 * server. Both are told as KZ_LOST_RESUME_TIMEOUT. */
static void kz__client_on_disconnect(kz_netclient *c, uint32_t data)
{
    if (kz__move_session_ended(c, data))
        return;
    int live = c->state == KZ_NETCLIENT_CONNECTED || c->state == KZ_NETCLIENT_RESUMING;
    kz_time_ns grace = (kz_time_ns)c->resume.grace_ms * KZ_NS_PER_MS;
    c->reason = data;
    if (live && data == 0 && c->resume.grace_ms &&
        (c->state == KZ_NETCLIENT_RESUMING || kz__since(c->now, c->last_heard) >= grace)) {
        c->reason = KZ_LOST_RESUME_TIMEOUT;
        kz_counter_inc(c->rc, KZ_NETCLIENT_C_RESUMES_TIMED_OUT);
    }
    c->state = live ? KZ_NETCLIENT_DISCONNECTED : KZ_NETCLIENT_FAILED;
    c->peer = NULL;
    kz__resume_reset(&c->resume);
}

static void kz__client_dispatch(kz_netclient *c, ENetEvent *ev)
{
    switch (ev->type) {
    case ENET_EVENT_TYPE_CONNECT:
        kz__enet_unthrottle(ev->peer);
        c->state = KZ_NETCLIENT_CONNECTED;
        break;
    case ENET_EVENT_TYPE_RECEIVE:
        kz__client_on_receive(c, ev->channelID, ev->packet);
        break;
    case ENET_EVENT_TYPE_DISCONNECT:
        kz__client_on_disconnect(c, ev->data);
        break;
    default:
        break;
    }
}

/* ---- the handshake: the token's addresses in order ----------------------
 *
 * One address: it has the whole connect_timeout_ms, as ever. Several: the
 * connect may last max(connect_timeout_ms, n x KZ_NETCLIENT_MIN_ADDRESS_MS)
 * from the first update; each address in turn gets half of what is left,
 * but never so much that the ones after it would get less than
 * KZ_NETCLIENT_MIN_ADDRESS_MS each, and never less than that itself (the
 * last gets all that is left). So the first gets the most (5 s and three
 * addresses: 2.5 s, 1.25 s, 1.25 s). The client moves on when the share
 * passes without an ACCEPT, or at once on a DENY that says this server
 * takes no one (full, shutting down, unavailable): a DENY is not
 * authenticated, so it is only a hint, and moving on to another address
 * of the same world is always safe. The last address is kept until its
 * share ends whatever it answers, and FAILED carries the last DENY heard
 * from any address (0 when none denied). */

/* The DENYs after which another address is worth trying at once. */
static int kz__deny_moves_on(uint32_t reason)
{
    return reason == KZ_DENY_SERVER_FULL || reason == KZ_DENY_SHUTTING_DOWN ||
           reason == KZ_DENY_UNAVAILABLE;
}

/* ms of the connect budget for the address being started, the one at
 * position `pos` of the `count` tried in order, when `left_ms` of the
 * budget are left. (A failover's round uses it for the n - 1 others.) */
static uint64_t kz__address_share_ms(uint32_t pos, uint32_t count, uint64_t left_ms)
{
    const uint64_t least = KZ_NETCLIENT_MIN_ADDRESS_MS;
    if (count == 1)
        return left_ms;
    if (pos + 1 >= count)
        return left_ms > least ? left_ms : least;
    uint64_t keep = (uint64_t)(count - 1 - pos) * least;
    uint64_t share = left_ms / 2;
    if (left_ms >= keep && share > left_ms - keep)
        share = left_ms - keep;
    return share > least ? share : least;
}

/* The whole connect budget in ms over `count` addresses (see above). */
static uint64_t kz__connect_budget_ms(const kz_netclient *c, uint32_t count)
{
    uint64_t least = (uint64_t)count * KZ_NETCLIENT_MIN_ADDRESS_MS;
    if (count > 1 && least > c->cfg.connect_timeout_ms)
        return least;
    return c->cfg.connect_timeout_ms;
}

/* Starts the handshake with address `at` from scratch: no cookie (a cookie
 * is one gate's word for one source address; it is never shown to
 * another), no DENY, a REQUEST at once. */
static void kz__client_try_address(kz_netclient *c, uint32_t at, kz_time_ns now)
{
    kz_time_ns end = c->started + kz__connect_budget_ms(c, c->n_addrs) * KZ_NS_PER_MS;
    kz__client_aim(c, at);
    sodium_memzero(c->hs.cookie, sizeof c->hs.cookie);
    c->hs.has_cookie = 0;
    c->hs.deny_reason = 0;
    uint64_t share_ms = kz__address_share_ms(at, c->n_addrs, kz__since(end, now) / KZ_NS_PER_MS);
    c->addr_until = now + share_ms * KZ_NS_PER_MS;
    c->next_send = now;
    kz_counter_inc(c->rc, KZ_NETCLIENT_C_ADDRESSES_TRIED);
}

static void kz__client_handshake_step(kz_netclient *c, kz_time_ns now)
{
    if (c->hs.state == KZ_HS_ACCEPTED) {
        kz__client_start_enet(c);
        return;
    }
    int last = c->at + 1 >= c->n_addrs;
    int denied = !last && kz__deny_moves_on(c->hs.deny_reason);
    if (now >= c->addr_until && last) {
        kz_logf(&c->cfg.log, KZ_LOG_INFO, "net", "client: no ACCEPT from any of %u address(es)",
                c->n_addrs);
        c->state = KZ_NETCLIENT_FAILED;
        return;
    }
    if (now >= c->addr_until || denied) {
        kz_counter_inc(c->rc, denied ? KZ_NETCLIENT_C_MOVED_ON_DENY : KZ_NETCLIENT_C_MOVED_ON_SILENCE);
        kz_logf(&c->cfg.log, KZ_LOG_INFO, "net", "client: address %u of %u %s; trying the next",
                c->at + 1, c->n_addrs, denied ? "takes no one new" : "gave no ACCEPT in its time");
        kz__client_try_address(c, c->at + 1, now);
    }
    if (now >= c->next_send) {
        kz__client_send_request(c, &c->gate_addr);
        c->next_send = now + (kz_time_ns)c->cfg.resend_ms * KZ_NS_PER_MS;
    }
}

/* ---- resume: the client's side ------------------------------------------ */

static void kz__resume_send(kz_netclient *c)
{
    kz__client_resume *r = &c->resume;
    uint8_t d[KZ_GATE_RESUME_BYTES];
    size_t n = kz__resume_build(&c->hs.token.keys, r->has_cookie ? r->cookie : NULL, r->ticket, d);
    ENetBuffer b = {.data = d, .dataLength = n};
    if (enet_socket_send(c->host->socket, &c->gate_addr, &b, 1) == (int)n) {
        kz_counter_inc(c->rc, KZ_NETCLIENT_C_RESUME_SENT);
        kz__resume_keep_proof(r, d, r->has_cookie);
        if (r->has_cookie)
            r->cookie_sent = 1;
    } else {
        /* No route yet on a network being brought up: the next resend
         * tries again. */
        kz_counter_inc(c->rc, KZ_NETCLIENT_C_DROP_RESUME_SEND);
    }
    r->cookie_fresh = 0;
}

/* Enters RESUMING with a fresh attempt (a cookie is bound to the address
 * it was given to, so none is carried over) and sends the first RESUME. */
static void kz__resume_start(kz_netclient *c, uint32_t rebound, const char *why)
{
    kz__client_resume *r = &c->resume;
    kz__resume_attempt_reset(r);
    r->rebound = rebound;
    r->started_at = c->now;
    c->heard = 0; /* what came before the break shows nothing about the path now */
    c->state = KZ_NETCLIENT_RESUMING;
    kz_counter_inc(c->rc, KZ_NETCLIENT_C_RESUMES_STARTED);
    kz_logf(&c->cfg.log, KZ_LOG_INFO, "net", "client: resuming the session (%s)", why);
    kz__resume_send(c);
    r->next_send = c->now + (kz_time_ns)c->cfg.resend_ms * KZ_NS_PER_MS;
}

/* The session is lost: the server no longer holds it. ENet's peer is
 * dropped without a word (the server has nothing to be told). */
static void kz__resume_lose(kz_netclient *c, uint32_t reason, uint32_t counter)
{
    kz_counter_inc(c->rc, counter);
    kz_logf(&c->cfg.log, KZ_LOG_INFO, "net", "client: session lost: %s",
            reason == KZ_LOST_RESUME_REFUSED ? "the server no longer holds it"
                                             : "no answer within the grace");
    c->reason = reason;
    c->state = KZ_NETCLIENT_DISCONNECTED;
    if (c->peer) {
        enet_peer_reset(c->peer);
        c->peer = NULL;
    }
    kz__resume_reset(&c->resume);
    kz__move_cancel(c, NULL);
}

/* Fresh evidence arrived while resuming: the path works. If a RESUME with
 * a cookie went out, the server may have moved the session and used up
 * our ticket while its RESUMED was lost, so we keep asking (from this
 * same address, which the gate answers with the current ticket) for up to
 * the grace, unless a RESUMED already named the ticket we hold. */
static void kz__resume_healed(kz_netclient *c)
{
    kz__client_resume *r = &c->resume;
    kz_counter_inc(c->rc, KZ_NETCLIENT_C_RESUMES_HEALED);
    kz_logf(&c->cfg.log, KZ_LOG_INFO, "net", "client: the path works again");
    kz__move_cancel(c, "its own server was heard");
    c->state = KZ_NETCLIENT_CONNECTED;
    if (!r->cookie_sent || r->confirmed) {
        kz__resume_attempt_reset(r);
        return;
    }
    /* The address is the same, so the cookie still holds. */
    r->confirming = 1;
    r->refused = 0;
    r->answered = 0;
    r->uplink = 0;
    r->confirm_until = c->now + (kz_time_ns)r->grace_ms * KZ_NS_PER_MS;
    r->next_send = c->now;
}

/* Sends what is due: a challenge's answer at once (at most one between
 * two timed sends, so forged challenges cannot make us send faster than
 * twice per resend_ms), else the timed resend. */
static void kz__resume_pace(kz_netclient *c, kz_time_ns now)
{
    kz__client_resume *r = &c->resume;
    if (r->cookie_fresh && !r->answered) {
        kz__resume_send(c);
        r->answered = 1;
    } else if (now >= r->next_send) {
        kz__resume_send(c);
        r->answered = 0;
        r->next_send = now + (kz_time_ns)c->cfg.resend_ms * KZ_NS_PER_MS;
    }
}

/* How long the path has been broken as far as we know: since the last
 * fresh evidence from the server, or, for a break of our uplink, since
 * the server last acknowledged us. */
static kz_time_ns kz__resume_broken_for(const kz_netclient *c, kz_time_ns now)
{
    const kz__client_resume *r = &c->resume;
    kz_time_ns since = c->last_heard;
    if (r->uplink && r->uplink_since < since)
        since = r->uplink_since;
    return kz__since(now, since);
}

/* ---- failover: a new session through another address --------------------
 *
 * docs/PROTOCOL.md 4a, "Resume elsewhere", and kz_netclient_serial. The
 * handshake is the first connect's, one address at a time from scratch
 * (the cookie of one address is never shown to another), with shares of
 * a budget counted from each round's start over the n - 1 addresses
 * other than the silent server's. The failover ends when the old
 * session's grace has passed since its server was last heard: the world
 * has let the avatar go by then. */

static void kz__move_reset(kz__client_move *m)
{
    memset(m, 0, sizeof *m);
}

/* Ends a failover that has not dropped the old session (its server came
 * back, the application moved the socket, the session ended): the
 * handshake is abandoned, late replies from that address are dropped as
 * from a stranger. `why` NULL: nothing to count or log. */
static void kz__move_cancel(kz_netclient *c, const char *why)
{
    kz__client_move *m = &c->move;
    if (!m->active || m->home_gone)
        return;
    if (why) {
        kz_counter_inc(c->rc, KZ_NETCLIENT_C_FAILOVERS_CANCELLED);
        kz_logf(&c->cfg.log, KZ_LOG_INFO, "net", "client: failover cancelled: %s", why);
    }
    sodium_memzero(c->hs.cookie, sizeof c->hs.cookie);
    c->hs.has_cookie = 0;
    c->hs.deny_reason = 0;
    c->hs.state = KZ_HS_ACCEPTED; /* the session's own handshake, long done */
    c->hs.session_id = m->home_session_id;
    c->hs.slot = m->home_slot;
    c->hs.port = m->home_port;
    c->hs.timeout_seconds = m->home_timeout_s;
    c->hs.alg = m->home_alg;
    kz__move_reset(m);
}

/* Points the failover's handshake at address `at`, from scratch; the
 * share is the caller's. */
static void kz__move_aim(kz_netclient *c, uint32_t at, kz_time_ns next_send)
{
    kz__client_move *m = &c->move;
    m->at = at;
    memcpy(&m->addr.host, c->addrs[at].ip, 4);
    m->addr.port = c->addrs[at].port;
    sodium_memzero(c->hs.cookie, sizeof c->hs.cookie);
    c->hs.has_cookie = 0;
    c->hs.deny_reason = 0;
    c->hs.state = KZ_HS_REQUESTING;
    m->next_send = next_send;
    kz_counter_inc(c->rc, KZ_NETCLIENT_C_FAILOVER_TRIED);
}

/* 1 when address `i` is the silent server's (or the same IP and port
 * listed again): the failover passes over it. */
static int kz__move_skips(const kz_netclient *c, uint32_t i)
{
    const kz_address *h = &c->addrs[c->move.home];
    return i == c->move.home ||
           (memcmp(c->addrs[i].ip, h->ip, 4) == 0 && c->addrs[i].port == h->port);
}

/* The address after `from` in the token's order, wrapping, that the
 * failover may try; n_addrs when there is none. */
static uint32_t kz__move_after(const kz_netclient *c, uint32_t from)
{
    for (uint32_t k = 1; k < c->n_addrs; k++) {
        uint32_t i = (from + k) % c->n_addrs;
        if (!kz__move_skips(c, i))
            return i;
    }
    return c->n_addrs;
}

/* Tries the address at position `pos` of the round, `at`, with its share. */
static void kz__move_try(kz_netclient *c, uint32_t pos, uint32_t at, kz_time_ns now)
{
    kz__client_move *m = &c->move;
    uint32_t count = c->n_addrs - 1u;
    kz_time_ns end = m->round_started + kz__connect_budget_ms(c, count) * KZ_NS_PER_MS;
    m->pos = pos;
    uint64_t share_ms = kz__address_share_ms(pos, count, kz__since(end, now) / KZ_NS_PER_MS);
    m->until = now + share_ms * KZ_NS_PER_MS;
    kz__move_aim(c, at, now);
}

/* On to the next address; after the round's last, a new round (the
 * world may only now have let the old path go, or the network come
 * back). */
static void kz__move_next(kz_netclient *c, kz_time_ns now)
{
    kz__client_move *m = &c->move;
    uint32_t next = kz__move_after(c, m->at);
    if (m->pos + 2u > c->n_addrs - 1u || next == c->n_addrs) {
        kz_counter_inc(c->rc, KZ_NETCLIENT_C_FAILOVER_ROUNDS);
        m->round_started = now;
        kz__move_try(c, 0, kz__move_after(c, m->home), now);
        return;
    }
    kz__move_try(c, m->pos + 1u, next, now);
}

/* Whether the failover should start: RESUMING with a token of several
 * addresses, and the session's server denied the resume or has shown no
 * life for KZ_RESUME_ELSEWHERE_MS of RESUMEs (a live gate answers every
 * RESUME, so a resume that goes on normally never waits that long). */
static int kz__move_due(const kz_netclient *c, kz_time_ns now)
{
    const kz__client_resume *r = &c->resume;
    if (c->state != KZ_NETCLIENT_RESUMING || c->move.active || c->n_addrs < 2)
        return 0;
    kz_time_ns since = r->spoke_at > r->started_at ? r->spoke_at : r->started_at;
    return r->refused ||
           kz__since(now, since) >= (kz_time_ns)KZ_RESUME_ELSEWHERE_MS * KZ_NS_PER_MS;
}

static void kz__move_start(kz_netclient *c, kz_time_ns now)
{
    kz__client_move *m = &c->move;
    kz__move_reset(m);
    m->active = 1;
    m->home = c->at;
    if (kz__move_after(c, m->home) == c->n_addrs) {
        kz__move_reset(m); /* every other address is this one again */
        return;
    }
    m->refused = c->resume.refused;
    m->grace_ms = c->resume.grace_ms;
    m->home_session_id = c->hs.session_id;
    m->home_slot = c->hs.slot;
    m->home_port = c->hs.port;
    m->home_timeout_s = c->hs.timeout_seconds;
    m->home_alg = c->hs.alg;
    m->since = now - kz__resume_broken_for(c, now);
    m->round_started = now;
    kz_counter_inc(c->rc, KZ_NETCLIENT_C_FAILOVERS_STARTED);
    kz_logf(&c->cfg.log, KZ_LOG_INFO, "net", "client: address %u %s; trying the others",
            c->addr_pos[m->home] + 1u, m->refused ? "no longer holds the session"
                                                  : "left the RESUMEs unanswered");
    kz__move_try(c, 0, kz__move_after(c, m->home), now);
}

/* An address ACCEPTed: the old session is dropped for good (its peer
 * reset without a word, its queued messages and ticket forgotten) and
 * the new one's ENet connection opens. */
static void kz__move_open(kz_netclient *c, kz_time_ns now)
{
    kz__client_move *m = &c->move;
    if (c->peer) {
        enet_peer_reset(c->peer);
        c->peer = NULL;
    }
    kz__client_drop_queue(c);
    kz__resume_reset(&c->resume);
    c->heard = 0;
    m->home_gone = 1;
    m->opened = 1;
    kz__client_aim(c, m->at);
    kz__client_start_enet(c);
    if (c->state != KZ_NETCLIENT_CONNECTING) {
        m->opened = 0;
        c->state = KZ_NETCLIENT_HANDSHAKE;
        kz__move_next(c, now);
    }
}

/* The new session's ENet peer was ended (the server's DISCONNECT with
 * its reason, or ENet's timeout) before its first message: 1 when the
 * failover took it. KZ_KICK_REPLACED means the world still holds the
 * session on its old path as live (the old server has not yet seen it
 * go silent, KZ_DETACH_SILENCE_MS): the same address is asked again
 * after resend_ms. Anything else moves on. Outside a failover, or for
 * the old session's peer before an ACCEPT (the session is over), 0. */
static int kz__move_session_ended(kz_netclient *c, uint32_t data)
{
    kz__client_move *m = &c->move;
    if (!m->active)
        return 0;
    if (!m->opened) {
        kz__move_cancel(c, NULL);
        return 0;
    }
    c->peer = NULL;
    c->state = KZ_NETCLIENT_HANDSHAKE;
    m->opened = 0;
    kz__resume_reset(&c->resume); /* the new session's ticket, if one came */
    if (data == KZ_KICK_REPLACED) {
        kz_counter_inc(c->rc, KZ_NETCLIENT_C_FAILOVER_REPLACED);
        kz__move_aim(c, m->at, c->now + (kz_time_ns)c->cfg.resend_ms * KZ_NS_PER_MS);
        return 1;
    }
    kz_counter_inc(c->rc, KZ_NETCLIENT_C_FAILOVER_ON_END);
    kz_logf(&c->cfg.log, KZ_LOG_INFO, "net", "client: address %u ended the new session (%u)",
            c->addr_pos[m->at] + 1u, data);
    kz__move_next(c, c->now);
    return 1;
}

/* The new session's first message: the failover is over. */
static void kz__move_done(kz_netclient *c)
{
    kz_counter_inc(c->rc, KZ_NETCLIENT_C_FAILOVERS_SUCCEEDED);
    kz_logf(&c->cfg.log, KZ_LOG_INFO, "net", "client: the session goes on through address %u",
            c->addr_pos[c->at] + 1u);
    kz__move_reset(&c->move);
    c->serial++;
}

/* The failover's handshake, once per update (`had_cookie`: the cookie
 * before this service pass, so a CHALLENGE is answered at once). */
static void kz__move_handshake(kz_netclient *c, kz_time_ns now, uint32_t had_cookie)
{
    kz__client_move *m = &c->move;
    if (c->hs.state == KZ_HS_ACCEPTED) {
        kz__move_open(c, now);
        return;
    }
    int denied = kz__deny_moves_on(c->hs.deny_reason);
    if (now >= m->until || denied) {
        kz_counter_inc(c->rc, denied ? KZ_NETCLIENT_C_FAILOVER_ON_DENY
                                     : KZ_NETCLIENT_C_FAILOVER_ON_SILENCE);
        kz__move_next(c, now);
        had_cookie = 0;
    }
    if ((!had_cookie && c->hs.has_cookie) || now >= m->next_send) {
        kz__client_send_request(c, &m->addr);
        m->next_send = now + (kz_time_ns)c->cfg.resend_ms * KZ_NS_PER_MS;
    }
}

/* The failover's timers, after each service pass: the grace, the new
 * session's share, the handshake. */
static void kz__move_step(kz_netclient *c, kz_time_ns now, uint32_t had_cookie)
{
    kz__client_move *m = &c->move;
    if (!m->active)
        return;
    if (m->home_gone && kz__since(now, m->since) >= (kz_time_ns)m->grace_ms * KZ_NS_PER_MS) {
        uint32_t refused = m->refused;
        kz__move_reset(m);
        if (refused)
            kz__resume_lose(c, KZ_LOST_RESUME_REFUSED, KZ_NETCLIENT_C_RESUMES_REFUSED);
        else
            kz__resume_lose(c, KZ_LOST_RESUME_TIMEOUT, KZ_NETCLIENT_C_RESUMES_TIMED_OUT);
        return;
    }
    if (m->opened) {
        if (now < m->until)
            return;
        /* No first message in its time: dropped without a word, as the
         * old session was. */
        kz_counter_inc(c->rc, KZ_NETCLIENT_C_FAILOVER_ON_SILENCE);
        if (c->peer) {
            enet_peer_reset(c->peer);
            c->peer = NULL;
        }
        kz__client_drop_queue(c);
        kz__resume_reset(&c->resume);
        m->opened = 0;
        c->state = KZ_NETCLIENT_HANDSHAKE;
        kz__move_next(c, now);
        return;
    }
    kz__move_handshake(c, now, had_cookie);
}

/* After each service pass: detect a broken path, end or pace an attempt.
 * Messages still queued for poll may be fresh evidence, so silence is not
 * judged until they have been opened. A resume of a broken uplink is not
 * healed by the server's datagrams (they came all along), only by the
 * world's client seeing its inputs acknowledged again
 * (kz__netclient_uplink_ok) or by a RESUMED that moves the session. */
static void kz__resume_step(kz_netclient *c, kz_time_ns now)
{
    kz__client_resume *r = &c->resume;
    kz_time_ns silent = kz__since(now, c->last_heard);
    uint32_t heard = c->heard;
    c->heard = 0;
    if (c->move.home_gone)
        return; /* a failover opens a new session: its timers rule */
    if (heard)
        r->spoke_at = now;
    if (c->state == KZ_NETCLIENT_RESUMING && heard && !r->uplink)
        kz__resume_healed(c);
    if (c->state == KZ_NETCLIENT_CONNECTED && r->grace_ms && c->q_count == 0 &&
        silent >= (kz_time_ns)c->silence_ms * KZ_NS_PER_MS) {
        kz__resume_start(c, 0, "the server went silent");
        return;
    }
    if (c->state == KZ_NETCLIENT_RESUMING) {
        if (kz__move_due(c, now))
            kz__move_start(c, now);
        if (c->move.active && r->refused)
            c->move.refused = 1; /* no more RESUMEs: the server has no session */
        if (r->refused && !c->move.active)
            kz__resume_lose(c, KZ_LOST_RESUME_REFUSED, KZ_NETCLIENT_C_RESUMES_REFUSED);
        else if (kz__resume_broken_for(c, now) >= (kz_time_ns)r->grace_ms * KZ_NS_PER_MS)
            kz__resume_lose(c, c->move.refused ? KZ_LOST_RESUME_REFUSED : KZ_LOST_RESUME_TIMEOUT,
                            c->move.refused ? KZ_NETCLIENT_C_RESUMES_REFUSED
                                            : KZ_NETCLIENT_C_RESUMES_TIMED_OUT);
        else if (!r->refused)
            kz__resume_pace(c, now);
    } else if (c->state == KZ_NETCLIENT_CONNECTED && r->confirming) {
        if (now >= r->confirm_until) {
            kz_counter_inc(c->rc, KZ_NETCLIENT_C_CONFIRMS_FAILED);
            kz__resume_attempt_reset(r);
        } else {
            kz__resume_pace(c, now);
        }
    }
}

int kz_netclient_update(kz_netclient *c, kz_time_ns now)
{
    if (c->started == UINT64_MAX) {
        c->started = now;
        kz__client_try_address(c, 0, now);
    }
    c->now = now;
    kz__updating = c;
    /* Read before servicing: a challenge received during the service must
     * be answered in this same update, not after the resend interval. */
    uint32_t had_cookie = c->hs.has_cookie;
    ENetEvent ev;
    int rc = enet_host_service(c->host, &ev, 0);
    while (rc > 0) {
        kz__client_dispatch(c, &ev);
        rc = enet_host_check_events(c->host, &ev);
    }
    if (c->state == KZ_NETCLIENT_HANDSHAKE && !c->move.active) {
        kz__client_handshake_step(c, now);
        if (!had_cookie && c->hs.has_cookie && c->state == KZ_NETCLIENT_HANDSHAKE) {
            kz__client_send_request(c, &c->gate_addr);
            c->next_send = now + (kz_time_ns)c->cfg.resend_ms * KZ_NS_PER_MS;
        }
    }
    kz__resume_step(c, now);
    kz__move_step(c, now, had_cookie);
    if (c->peer && (c->state == KZ_NETCLIENT_CONNECTING || c->state == KZ_NETCLIENT_CONNECTED ||
                    c->state == KZ_NETCLIENT_RESUMING))
        kz__enet_cap_rto(c->peer);
    enet_host_flush(c->host);
    kz__updating = NULL;
    return KZ_OK;
}

uint32_t kz_netclient_state(const kz_netclient *c)
{
    /* A failover that dropped the old session is still a resume to the
     * application, whatever the new session's handshake is at. */
    return c->move.home_gone ? KZ_NETCLIENT_RESUMING : c->state;
}

uint32_t kz_netclient_serial(const kz_netclient *c)
{
    return c->serial;
}

uint32_t kz_netclient_reason(const kz_netclient *c)
{
    return c->reason;
}

uint32_t kz_netclient_server(const kz_netclient *c, kz_address *out)
{
    if (out)
        *out = c->addrs[c->at];
    return c->addr_pos[c->at];
}

uint32_t kz_netclient_slot(const kz_netclient *c)
{
    return c->hs.slot;
}

void kz_netclient_traffic(const kz_netclient *c, kz_net_traffic *out)
{
    memset(out, 0, sizeof *out);
    if (!c->host)
        return;
    out->bytes_in = c->host->totalReceivedData;
    out->bytes_out = c->host->totalSentData;
    out->packets_in = c->host->totalReceivedPackets;
    out->packets_out = c->host->totalSentPackets;
}

int kz_netclient_send(kz_netclient *c, uint8_t channel, uint8_t type, const void *data,
                      uint32_t len)
{
    if (channel >= KZ_CHANNEL_COUNT || len > KZ_MAX_MESSAGE_BYTES)
        return KZ_EINVAL;
    /* Nothing goes to a failover's new session before its first message:
     * that server has not yet taken the session (it may still refuse it). */
    if ((c->state != KZ_NETCLIENT_CONNECTED && c->state != KZ_NETCLIENT_RESUMING) ||
        c->move.home_gone)
        return KZ_ESTATE;
    enet_uint32 flags = channel == KZ_CHANNEL_EVENT      ? ENET_PACKET_FLAG_RELIABLE
                        : channel == KZ_CHANNEL_SNAPSHOT ? ENET_PACKET_FLAG_UNSEQUENCED
                                                         : 0;
    ENetPacket *pkt = enet_packet_create(NULL, len + KZ_SEAL_OVERHEAD, flags);
    size_t out_len;
    if (pkt == NULL)
        return KZ_ENOMEM;
    int rc = kz__seal_packet(&c->tx, type, data, len, pkt->data, pkt->dataLength, &out_len);
    if (rc != KZ_OK || enet_peer_send(c->peer, channel, pkt) != 0) {
        enet_packet_destroy(pkt);
        return rc != KZ_OK ? rc : KZ_EIO;
    }
    kz_counter_inc(c->c, KZ_NET_C_TX_PACKETS);
    kz_counter_add(c->c, KZ_NET_C_TX_BYTES, pkt->dataLength);
    return KZ_OK;
}

/* resume_silence_ms as used once the server's grace is known: at least
 * two resend intervals (a silence shorter than that is one lost datagram,
 * not a broken path) and at most half the grace (a resume must have time
 * to finish before the server gives up; when the two disagree, only this
 * one holds). Logged once when it changes. */
static void kz__client_clamp_silence(kz_netclient *c)
{
    uint32_t want = c->cfg.resume_silence_ms, ms = want;
    uint32_t most = c->resume.grace_ms / 2u;
    uint64_t least = 2u * (uint64_t)c->cfg.resend_ms;
    if (ms < least && least <= most)
        ms = (uint32_t)least;
    if (ms > most)
        ms = most;
    if (ms != c->silence_ms && ms != want)
        kz_logf(&c->cfg.log, KZ_LOG_WARN, "net",
                "client: resume_silence_ms %u used as %u (grace %u ms, resend %u ms)", want, ms,
                c->resume.grace_ms, c->cfg.resend_ms);
    c->silence_ms = ms;
}

/* A TICKET (opened and authentic): the transport's own, stored and never
 * handed on. Resume is on from now, so ENet's timeout is raised to outlive
 * the grace. */
static void kz__client_take_ticket(kz_netclient *c, uint8_t channel, size_t len)
{
    kz__client_resume *r = &c->resume;
    uint8_t t[KZ_TICKET_BYTES];
    uint32_t grace;
    kz__ticket parsed;
    if (channel != KZ_CHANNEL_EVENT || kz__ticket_msg_decode(c->plain, len, t, &grace) != KZ_OK) {
        kz_counter_inc(c->rc, KZ_NETCLIENT_C_DROP_TICKET);
        sodium_memzero(c->plain, len);
        return;
    }
    sodium_memzero(c->plain, len);
    kz__ticket_unpack(t, &parsed);
    if (parsed.session_id != c->hs.session_id) {
        kz_counter_inc(c->rc, KZ_NETCLIENT_C_DROP_TICKET);
        sodium_memzero(t, sizeof t);
        return;
    }
    memcpy(r->ticket, t, sizeof t);
    sodium_memzero(t, sizeof t);
    sodium_memzero(&parsed, sizeof parsed);
    r->grace_ms = grace;
    kz__client_clamp_silence(c);
    kz_counter_inc(c->rc, KZ_NETCLIENT_C_TICKETS);
    uint32_t timeout = kz__session_timeout_ms(c->hs.timeout_seconds);
    if (timeout < grace + KZ_RESUME_TIMEOUT_MARGIN_MS)
        timeout = grace + KZ_RESUME_TIMEOUT_MARGIN_MS;
    if (c->peer)
        kz__enet_peer_setup(c->peer, timeout);
}

int kz_netclient_poll(kz_netclient *c, kz_netmsg *msg)
{
    if (c->held) {
        enet_packet_destroy(c->held);
        c->held = NULL;
    }
    while (c->q_count) {
        ENetPacket *pkt = c->queue[c->q_head];
        uint8_t channel = c->queue_channel[c->q_head];
        c->q_head = (c->q_head + 1) % KZ__CLIENT_QUEUE;
        c->q_count--;
        uint8_t type;
        size_t len;
        int rc = kz__open_packet(&c->rx, &c->window, pkt->data, pkt->dataLength, &type,
                                 c->plain, sizeof c->plain, &len);
        enet_packet_destroy(pkt);
        if (rc == KZ_OK)
            kz__client_heard(c);
        if (rc == KZ_OK && type == KZ_MSG_TICKET) {
            kz__client_take_ticket(c, channel, len);
            continue;
        }
        if (rc == KZ_OK) {
            if (c->move.opened)
                kz__move_done(c); /* the new server speaks for the session */
            *msg = (kz_netmsg){0, KZ_NETMSG_DATA, channel, type, 0, (uint32_t)len, c->plain, c->now};
            return KZ_OK;
        }
        kz_counter_inc(c->c, rc == KZ_EREPLAY ? KZ_NET_C_DROP_REPLAY : KZ_NET_C_DROP_AUTH);
    }
    return KZ_EEMPTY;
}

const kz_counters *kz_netclient_counters(const kz_netclient *c)
{
    return &c->counters;
}

const kz_counters *kz_netclient_resume_counters(const kz_netclient *c)
{
    return &c->resume_counters;
}

kz_time_ns kz_netclient_last_heard(const kz_netclient *c)
{
    return c->last_heard;
}

/* A UDP socket as ENet's host_create makes one, bound to `at`. */
static ENetSocket kz__client_socket_open(const ENetAddress *at)
{
    ENetSocket s = enet_socket_create(ENET_SOCKET_TYPE_DATAGRAM);
    if (s == ENET_SOCKET_NULL)
        return s;
    if (enet_socket_bind(s, at) < 0 || enet_socket_set_option(s, ENET_SOCKOPT_NONBLOCK, 1) < 0) {
        enet_socket_destroy(s);
        return ENET_SOCKET_NULL;
    }
    /* Buffer sizes are a wish, as in ENet: a smaller grant still works. */
    (void)enet_socket_set_option(s, ENET_SOCKOPT_RCVBUF, ENET_HOST_RECEIVE_BUFFER_SIZE);
    (void)enet_socket_set_option(s, ENET_SOCKOPT_SNDBUF, ENET_HOST_SEND_BUFFER_SIZE);
    return s;
}

int kz_netclient_rebind(kz_netclient *c, const kz_address *local)
{
    if (local && local->family != KZ_ADDR_IPV4)
        return KZ_EINVAL;
    if ((c->state != KZ_NETCLIENT_CONNECTED && c->state != KZ_NETCLIENT_RESUMING) ||
        !c->resume.grace_ms || c->move.home_gone)
        return KZ_ESTATE;
    ENetAddress at = {.host = ENET_HOST_ANY, .port = 0};
    if (local) {
        memcpy(&at.host, local->ip, 4);
        at.port = local->port;
    }
    ENetSocket s = kz__client_socket_open(&at);
    if (s == ENET_SOCKET_NULL) {
        kz_counter_inc(c->rc, KZ_NETCLIENT_C_REBIND_FAILED);
        kz_logf(&c->cfg.log, KZ_LOG_WARN, "net", "client: no socket on the new address");
        return KZ_EIO;
    }
    enet_socket_destroy(c->host->socket);
    c->host->socket = s;
    if (enet_socket_get_address(s, &c->host->address) < 0)
        c->host->address = at;
    kz_counter_inc(c->rc, KZ_NETCLIENT_C_REBINDS);
    /* A failover's cookie was for the old socket's address: from the new
     * one, the session's own server is asked first again. */
    kz__move_cancel(c, "the application moved the socket");
    kz__resume_start(c, 1, "the application moved it to a new address");
    return KZ_OK;
}

int kz__netclient_ticket(const kz_netclient *c, uint8_t out[KZ_TICKET_BYTES], uint32_t *grace_ms)
{
    if (!c->resume.grace_ms)
        return 0;
    memcpy(out, c->resume.ticket, KZ_TICKET_BYTES);
    *grace_ms = c->resume.grace_ms;
    return 1;
}

uint32_t kz__netclient_enet_timeout(const kz_netclient *c)
{
    return c->peer ? c->peer->timeoutMaximum : 0;
}

uint32_t kz__netclient_silence_ms(const kz_netclient *c)
{
    return c->silence_ms;
}

int kz__netclient_resume_uplink(kz_netclient *c, kz_time_ns acked_at)
{
    if (c->state != KZ_NETCLIENT_CONNECTED || !c->resume.grace_ms || c->move.active)
        return 0;
    kz_counter_inc(c->rc, KZ_NETCLIENT_C_UPLINK_STALLS);
    kz__resume_start(c, 0, "the server stopped acknowledging our inputs");
    c->resume.uplink = 1;
    c->resume.uplink_since = acked_at;
    return 1;
}

void kz__netclient_uplink_ok(kz_netclient *c)
{
    if (c->state == KZ_NETCLIENT_RESUMING && c->resume.uplink) {
        c->resume.uplink = 0;
        kz__resume_healed(c);
    }
}
