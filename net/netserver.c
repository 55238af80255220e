/*
 * The server transport: ENet host behind the gate, sealed sessions, SPSC
 * rings and buffer pools to and from the application thread.
 *
 * Data flow (threaded mode; single-threaded mode runs the same functions on
 * the caller's thread):
 *
 *   I/O thread:  UDP -> intercept (gate) -> ENet -> open -> inbound ring
 *   app thread:  poll inbound ring, release buffers to in_free;
 *                send: take a buffer from out_free, fill, outbound ring
 *   I/O thread:  drain outbound ring -> seal -> enet_peer_send; return
 *                buffers to out_free
 *
 * Every ring has exactly one producer and one consumer thread. Buffers are
 * indices into pools allocated at creation: nothing on Kizuna's side
 * allocates per packet.
 */
#include <enet/enet.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include <kizuna/ring.h>
#include <kizuna/transport.h>

#include "core/assert.h"
#include "enet_tune.h"
#include "gate.h"
#include "seal.h"

#define KZ__IO_BLOCK 0u   /* counter block of the I/O side */
#define KZ__APP_BLOCK 1u  /* counter block of the application side */
#define KZ__OUT_KICK 0xFFu

/* Ring record: which buffer holds what. */
typedef struct kz__msgref {
    uint32_t slot;
    uint32_t len;
    uint32_t buf;     /* pool index */
    uint8_t kind;
    uint8_t channel;
    uint8_t type;
    uint8_t pad;
} kz__msgref;

typedef struct kz__session {
    ENetPeer *peer;
    kz__seal tx;          /* server-to-client */
    kz__seal rx;          /* client-to-server */
    kz__replay window;
    uint32_t auth_failures;
    uint32_t active;
} kz__session;

/* A pool of `count` buffers of `size` bytes and the two rings that pass
 * their indices around. */
typedef struct kz__pool {
    uint8_t *bytes;
    uint32_t count;
    uint32_t size;
} kz__pool;

struct kz_netserver {
    kz_netserver_config cfg;
    ENetHost *host;
    kz__gate *gate;
    kz__session *sessions;
    kz__pool in_pool, out_pool;
    kz_spsc in_ring, in_free, out_ring, out_free;
    uint32_t held_in;         /* buffer of the last polled message, or UINT32_MAX */
    kz_counters counters;
    kz_counter_block io, app;
    pthread_t thread;
    atomic_int stop;
    atomic_uint n_sessions;   /* published by the I/O side each pass */
    int thread_started;
    kz_time_ns now;           /* I/O side's current time */
    kz_time_ns next_rto_cap;
    uint8_t reply[KZ_GATE_REQUEST_BYTES];
};

static const char *const kz__net_counter_names[KZ_NET_C_COUNT] = {
#define KZ__NET_NAME(id, name) name,
    KZ_NET_COUNTERS(KZ__NET_NAME)
#undef KZ__NET_NAME
};

/* ENet's intercept callback has no user pointer; the server being serviced
 * on this thread is kept here for the duration of enet_host_service. */
static _Thread_local kz_netserver *kz__serving;

/* ---- small helpers -------------------------------------------------------- */

static uint64_t kz__default_unix_time(void *ctx)
{
    (void)ctx;
    return (uint64_t)time(NULL);
}

static kz_address kz__from_enet(const ENetAddress *e)
{
    kz_address a;
    memset(&a, 0, sizeof a);
    a.family = KZ_ADDR_IPV4;
    memcpy(a.ip, &e->host, 4); /* ENet keeps the address in network order */
    a.port = e->port;
    return a;
}

/* Pushes where the design guarantees room: every buffer index lives in
 * exactly one ring (or is held by one side), and rings are as large as the
 * pools. A failure here is a bug, not a network condition. */
static void kz__push_sure(kz_spsc *r, const void *elem)
{
    uint32_t pushed = kz_spsc_push_n(r, elem, 1);
    KZ_ASSERT(pushed == 1);
}

static uint8_t *kz__pool_at(const kz__pool *p, uint32_t idx)
{
    return p->bytes + (size_t)idx * p->size;
}

static int kz__ring_init_all(kz_netserver *s, uint32_t cap)
{
    const kz_allocator *a = &s->cfg.alloc;
    if (kz_spsc_init(&s->in_ring, cap, sizeof(kz__msgref), a) ||
        kz_spsc_init(&s->in_free, cap, sizeof(uint32_t), a) ||
        kz_spsc_init(&s->out_ring, cap, sizeof(kz__msgref), a) ||
        kz_spsc_init(&s->out_free, cap, sizeof(uint32_t), a))
        return KZ_ENOMEM;
    for (uint32_t i = 0; i < cap; i++) {
        kz__push_sure(&s->in_free, &i);
        kz__push_sure(&s->out_free, &i);
    }
    return KZ_OK;
}

static int kz__pools_init(kz_netserver *s, uint32_t cap)
{
    s->in_pool = (kz__pool){NULL, cap, KZ_MAX_MESSAGE_BYTES};
    s->out_pool = (kz__pool){NULL, cap, KZ_MAX_MESSAGE_BYTES};
    s->in_pool.bytes = kz_alloc(&s->cfg.alloc, (size_t)cap * KZ_MAX_MESSAGE_BYTES, 64);
    s->out_pool.bytes = kz_alloc(&s->cfg.alloc, (size_t)cap * KZ_MAX_MESSAGE_BYTES, 64);
    return s->in_pool.bytes && s->out_pool.bytes ? KZ_OK : KZ_ENOMEM;
}

/* ---- I/O side: inbound ---------------------------------------------------- */

/* Hands a message to the application; the payload is copied into a pool
 * buffer. Counts and drops it when the application is behind. */
static void kz__deliver(kz_netserver *s, uint32_t slot, uint8_t kind, uint8_t channel,
                        uint8_t type, const void *data, uint32_t len)
{
    uint32_t buf;
    if (kz_spsc_pop(&s->in_free, &buf) != KZ_OK) {
        kz_counter_inc(s->io, KZ_NET_C_DROP_INBOUND_FULL);
        return;
    }
    if (len)
        memcpy(kz__pool_at(&s->in_pool, buf), data, len);
    kz__msgref m = {slot, len, buf, kind, channel, type, 0};
    /* Cannot fail: in_ring and in_free have the same capacity and every
     * buffer is in exactly one of them or held by the application. */
    kz__push_sure(&s->in_ring, &m);
}

static int kz__intercept(ENetHost *host, ENetEvent *event)
{
    (void)event;
    kz_netserver *s = kz__serving;
    kz_address from = kz__from_enet(&host->receivedAddress);
    size_t rlen = 0;
    kz__gate_action act = kz__gate_datagram(s->gate, &from, host->receivedData,
                                            host->receivedDataLength, s->now,
                                            s->cfg.unix_time(s->cfg.unix_time_ctx), s->reply,
                                            sizeof s->reply, &rlen);
    if (act == KZ_GATE_PASS)
        return 0;
    if (act == KZ_GATE_REPLY) {
        ENetBuffer b = {.data = s->reply, .dataLength = rlen};
        enet_socket_send(host->socket, &host->receivedAddress, &b, 1);
    }
    return 1; /* consumed: ENet never sees it */
}

static void kz__on_connect(kz_netserver *s, ENetPeer *peer)
{
    kz_address from = kz__from_enet(&peer->address);
    int32_t slot = kz__gate_mark_connected(s->gate, &from);
    if (slot < 0) {
        /* Cannot happen through the intercept, but never trust it blindly. */
        kz_counter_inc(s->io, KZ_NET_C_CONNECT_REFUSED);
        enet_peer_reset(peer);
        return;
    }
    const kz__gate_slot *g = kz__gate_slot_at(s->gate, (uint32_t)slot);
    kz__session *ss = &s->sessions[slot];
    if (kz__seal_init(&ss->tx, g->keys.server_to_client, g->alg, g->session_id) != KZ_OK ||
        kz__seal_init(&ss->rx, g->keys.client_to_server, g->alg, g->session_id) != KZ_OK) {
        enet_peer_reset(peer);
        kz__gate_release(s->gate, (uint32_t)slot);
        return;
    }
    kz__replay_init(&ss->window);
    ss->peer = peer;
    kz__enet_peer_setup(peer, KZ_ENET_SESSION_TIMEOUT_MS);
    ss->auth_failures = 0;
    ss->active = 1;
    peer->data = (void *)(uintptr_t)(slot + 1);
    kz_counter_inc(s->io, KZ_NET_C_SESSIONS_OPENED);
    kz__deliver(s, (uint32_t)slot, KZ_NETMSG_CONNECT, 0, 0, &g->info, sizeof g->info);
}

static void kz__close_session(kz_netserver *s, uint32_t slot)
{
    kz__session *ss = &s->sessions[slot];
    if (!ss->active)
        return;
    if (ss->peer)
        ss->peer->data = NULL;
    kz__seal_fini(&ss->tx);
    kz__seal_fini(&ss->rx);
    memset(ss, 0, sizeof *ss);
    kz__gate_release(s->gate, slot);
    kz_counter_inc(s->io, KZ_NET_C_SESSIONS_CLOSED);
    kz__deliver(s, slot, KZ_NETMSG_DISCONNECT, 0, 0, NULL, 0);
}

static void kz__on_receive(kz_netserver *s, ENetPeer *peer, uint8_t channel, ENetPacket *pkt)
{
    uintptr_t tag = (uintptr_t)peer->data;
    kz_counter_inc(s->io, KZ_NET_C_RX_PACKETS);
    if (tag == 0) {
        kz_counter_inc(s->io, KZ_NET_C_DROP_NO_SESSION);
        return;
    }
    uint32_t slot = (uint32_t)(tag - 1);
    kz__session *ss = &s->sessions[slot];
    uint8_t plain[KZ_MAX_MESSAGE_BYTES], type;
    size_t len;
    int rc = kz__open_packet(&ss->rx, &ss->window, pkt->data, pkt->dataLength, &type, plain,
                             sizeof plain, &len);
    if (rc == KZ_OK) {
        kz__deliver(s, slot, KZ_NETMSG_DATA, channel, type, plain, (uint32_t)len);
        return;
    }
    kz_counter_inc(s->io, rc == KZ_EREPLAY ? KZ_NET_C_DROP_REPLAY
                          : rc == KZ_EAUTH ? KZ_NET_C_DROP_AUTH
                                           : KZ_NET_C_DROP_MALFORMED);
    if (rc != KZ_EREPLAY && ++ss->auth_failures >= s->cfg.max_auth_failures) {
        kz_counter_inc(s->io, KZ_NET_C_CLOSED_AUTH);
        kz_logf(&s->cfg.log, KZ_LOG_INFO, "net", "slot %u closed after %u bad packets", slot,
                ss->auth_failures);
        enet_peer_disconnect_now(peer, 0);
        kz__close_session(s, slot);
    }
}

static void kz__on_disconnect(kz_netserver *s, ENetPeer *peer)
{
    uintptr_t tag = (uintptr_t)peer->data;
    if (tag != 0)
        kz__close_session(s, (uint32_t)(tag - 1));
}

/* ---- I/O side: outbound --------------------------------------------------- */

static enet_uint32 kz__channel_flags(uint8_t channel)
{
    if (channel == KZ_CHANNEL_EVENT)
        return ENET_PACKET_FLAG_RELIABLE;
    if (channel == KZ_CHANNEL_SNAPSHOT)
        return ENET_PACKET_FLAG_UNSEQUENCED;
    return 0;
}

static void kz__send_one(kz_netserver *s, const kz__msgref *m)
{
    kz__session *ss = &s->sessions[m->slot];
    if (!ss->active) {
        kz_counter_inc(s->io, KZ_NET_C_DROP_NO_SESSION);
        return;
    }
    if (m->kind == KZ__OUT_KICK) {
        enet_peer_disconnect_later(ss->peer, m->len);
        return;
    }
    ENetPacket *pkt = enet_packet_create(NULL, m->len + KZ_SEAL_OVERHEAD,
                                         kz__channel_flags(m->channel));
    size_t out_len;
    if (pkt == NULL)
        return;
    int rc = kz__seal_packet(&ss->tx, m->type, kz__pool_at(&s->out_pool, m->buf), m->len,
                             pkt->data, pkt->dataLength, &out_len);
    if (rc != KZ_OK) {
        kz_counter_inc(s->io, KZ_NET_C_NONCE_EXHAUSTED);
        enet_packet_destroy(pkt);
        enet_peer_disconnect_later(ss->peer, 0);
        return;
    }
    if (enet_peer_send(ss->peer, m->channel, pkt) != 0)
        enet_packet_destroy(pkt);
    else
        kz_counter_inc(s->io, KZ_NET_C_TX_PACKETS);
}

static void kz__drain_outbound(kz_netserver *s)
{
    kz__msgref batch[64];
    uint32_t n;
    while ((n = kz_spsc_pop_n(&s->out_ring, batch, 64)) > 0) {
        for (uint32_t i = 0; i < n; i++) {
            kz__send_one(s, &batch[i]);
            kz__push_sure(&s->out_free, &batch[i].buf);
        }
    }
}

/* ---- I/O side: the loop --------------------------------------------------- */

static void kz__dispatch(kz_netserver *s, ENetEvent *ev)
{
    switch (ev->type) {
    case ENET_EVENT_TYPE_CONNECT:
        kz__on_connect(s, ev->peer);
        break;
    case ENET_EVENT_TYPE_RECEIVE:
        kz__on_receive(s, ev->peer, ev->channelID, ev->packet);
        enet_packet_destroy(ev->packet);
        break;
    case ENET_EVENT_TYPE_DISCONNECT:
        kz__on_disconnect(s, ev->peer);
        break;
    default:
        break;
    }
}

static void kz__cap_timeouts(kz_netserver *s, kz_time_ns now);

/* One pass: send what is queued, receive and dispatch until ENet has
 * nothing more (or `wait_ms` passes with nothing), expire stale slots. */
static void kz__io_pass(kz_netserver *s, kz_time_ns now, enet_uint32 wait_ms)
{
    ENetEvent ev;
    s->now = now;
    kz__serving = s;
    kz__drain_outbound(s);
    int rc = enet_host_service(s->host, &ev, wait_ms);
    while (rc > 0) {
        kz__dispatch(s, &ev);
        rc = enet_host_check_events(s->host, &ev);
    }
    kz__drain_outbound(s);
    enet_host_flush(s->host);
    kz__serving = NULL;
    kz__gate_expire(s->gate, now);
    kz__cap_timeouts(s, now);
    atomic_store_explicit(&s->n_sessions, kz__gate_sessions(s->gate), memory_order_relaxed);
}

/* Every 100 ms, cap retransmission timeouts of a share of the peers, so a
 * pass stays cheap with thousands of peers (enet_tune.h says why). */
static void kz__cap_timeouts(kz_netserver *s, kz_time_ns now)
{
    if (now < s->next_rto_cap)
        return;
    s->next_rto_cap = now + 100 * KZ_NS_PER_MS;
    /* Connecting peers too: ENet's handshake commands are reliable and
     * would otherwise back off and give up under heavy loss. */
    for (size_t i = 0; i < s->host->peerCount; i++) {
        ENetPeer *p = &s->host->peers[i];
        if (p->state == ENET_PEER_STATE_DISCONNECTED || p->state == ENET_PEER_STATE_ZOMBIE)
            continue;
        kz__enet_peer_setup(p, KZ_ENET_SESSION_TIMEOUT_MS);
        kz__enet_cap_rto(p);
    }
}

static void *kz__io_thread(void *arg)
{
    kz_netserver *s = arg;
    while (!atomic_load_explicit(&s->stop, memory_order_acquire))
        kz__io_pass(s, kz_clock_now(&s->cfg.clock), 1);
    return NULL;
}

int kz_netserver_service(kz_netserver *s, kz_time_ns now)
{
    if (!s->cfg.threaded)
        kz__io_pass(s, now, 0);
    return KZ_OK;
}

/* ---- application side ----------------------------------------------------- */

int kz_netserver_poll(kz_netserver *s, kz_netmsg *msg)
{
    if (s->held_in != UINT32_MAX) {
        kz__push_sure(&s->in_free, &s->held_in);
        s->held_in = UINT32_MAX;
    }
    kz__msgref m;
    if (kz_spsc_pop(&s->in_ring, &m) != KZ_OK)
        return KZ_EEMPTY;
    s->held_in = m.buf;
    *msg = (kz_netmsg){m.slot, m.kind, m.channel, m.type, 0, m.len,
                       kz__pool_at(&s->in_pool, m.buf)};
    return KZ_OK;
}

static int kz__queue_out(kz_netserver *s, const kz__msgref *tmpl, const void *data)
{
    uint32_t buf;
    if (kz_spsc_pop(&s->out_free, &buf) != KZ_OK) {
        kz_counter_inc(s->app, KZ_NET_C_DROP_OUTBOUND_FULL);
        return KZ_EFULL;
    }
    kz__msgref m = *tmpl;
    m.buf = buf;
    if (data && m.len)
        memcpy(kz__pool_at(&s->out_pool, buf), data, m.len);
    kz__push_sure(&s->out_ring, &m);
    return KZ_OK;
}

int kz_netserver_send(kz_netserver *s, uint32_t slot, uint8_t channel, uint8_t type,
                      const void *data, uint32_t len)
{
    if (slot >= s->cfg.max_clients || channel >= KZ_CHANNEL_COUNT || len > KZ_MAX_MESSAGE_BYTES)
        return KZ_EINVAL;
    kz__msgref m = {slot, len, 0, KZ_NETMSG_DATA, channel, type, 0};
    return kz__queue_out(s, &m, data);
}

int kz_netserver_kick(kz_netserver *s, uint32_t slot, uint32_t reason)
{
    if (slot >= s->cfg.max_clients)
        return KZ_EINVAL;
    kz__msgref m = {slot, reason, 0, KZ__OUT_KICK, 0, 0, 0};
    return kz__queue_out(s, &m, NULL);
}

/* ---- lifecycle ------------------------------------------------------------ */

static int kz__config_resolve(kz_netserver_config *c)
{
    if (c->max_clients == 0 || c->max_clients > ENET_PROTOCOL_MAXIMUM_PEER_ID)
        return KZ_EINVAL;
    if (c->ring_capacity == 0)
        c->ring_capacity = 4096;
    if (c->ring_capacity & (c->ring_capacity - 1))
        return KZ_EINVAL;
    if (c->max_auth_failures == 0)
        c->max_auth_failures = 16;
    if (c->clock.now_ns == NULL)
        c->clock = kz_clock_system();
    if (c->unix_time == NULL)
        c->unix_time = kz__default_unix_time;
    kz_allocator_resolve(&c->alloc);
    return KZ_OK;
}

static ENetHost *kz__host_create(const kz_netserver_config *c)
{
    ENetAddress addr = {.host = c->bind_ip, .port = c->port};
    ENetHost *h = enet_host_create(&addr, c->max_clients, KZ_CHANNEL_COUNT, 0, 0);
    if (h == NULL)
        return NULL;
    h->checksum = enet_crc32;
    h->intercept = kz__intercept;
    h->mtu = KZ_MTU;
    h->maximumPacketSize = KZ_ENET_MAX_PACKET_BYTES;
    h->maximumWaitingData = KZ_ENET_MAX_WAITING_BYTES;
    h->duplicatePeers = c->max_clients; /* the gate decides who may connect */
    return h;
}

static kz__gate *kz__gate_for(const kz_netserver *s)
{
    kz__gate_config g;
    memset(&g, 0, sizeof g);
    g.verifier = s->cfg.verifier;
    g.max_sessions = s->cfg.max_clients;
    g.n_ports = 1;
    g.ports[0] = 0; /* the gate and ENet share this socket: "same address" */
    g.disable_aes = s->cfg.disable_aes;
    g.log = s->cfg.log;
    g.alloc = s->cfg.alloc;
    return kz__gate_create(&g);
}

static int kz__server_build(kz_netserver *s)
{
    if (enet_initialize() != 0)
        return KZ_EIO;
    s->host = kz__host_create(&s->cfg);
    if (s->host == NULL)
        return KZ_EIO;
    /* ENet reports the bound port; for port 0 ask the socket. */
    if (s->host->address.port == 0) {
        ENetAddress bound;
        if (enet_socket_get_address(s->host->socket, &bound) == 0)
            s->host->address.port = bound.port;
    }
    s->gate = kz__gate_for(s);
    s->sessions = kz_calloc(&s->cfg.alloc, (size_t)s->cfg.max_clients * sizeof *s->sessions, 64);
    if (!s->gate || !s->sessions || kz__pools_init(s, s->cfg.ring_capacity) ||
        kz__ring_init_all(s, s->cfg.ring_capacity) ||
        kz_counters_init(&s->counters, KZ_NET_C_COUNT, 2, kz__net_counter_names, &s->cfg.alloc))
        return KZ_ENOMEM;
    s->io = kz_counters_block(&s->counters, KZ__IO_BLOCK);
    s->app = kz_counters_block(&s->counters, KZ__APP_BLOCK);
    s->held_in = UINT32_MAX;
    return KZ_OK;
}

kz_netserver *kz_netserver_create(const kz_netserver_config *cfg)
{
    kz_netserver_config c = *cfg;
    if (kz__config_resolve(&c) != KZ_OK) {
        kz_logf(&cfg->log, KZ_LOG_ERROR, "net", "invalid server transport configuration");
        return NULL;
    }
    kz_netserver *s = kz_calloc(&c.alloc, sizeof *s, 64);
    if (s == NULL)
        return NULL;
    s->cfg = c;
    int rc = kz__server_build(s);
    if (rc == KZ_OK && c.threaded) {
        rc = pthread_create(&s->thread, NULL, kz__io_thread, s) == 0 ? KZ_OK : KZ_EIO;
        s->thread_started = rc == KZ_OK;
    }
    if (rc != KZ_OK) {
        kz_logf(&c.log, KZ_LOG_ERROR, "net", "server transport: %s (port %u)", kz_strerror(rc),
                c.port);
        kz_netserver_destroy(s);
        return NULL;
    }
    return s;
}

void kz_netserver_destroy(kz_netserver *s)
{
    if (s == NULL)
        return;
    if (s->thread_started) {
        atomic_store_explicit(&s->stop, 1, memory_order_release);
        pthread_join(s->thread, NULL);
    }
    const kz_allocator a = s->cfg.alloc;
    if (s->host)
        enet_host_destroy(s->host);
    if (s->sessions) {
        sodium_memzero(s->sessions, (size_t)s->cfg.max_clients * sizeof *s->sessions);
        kz_free(&a, s->sessions, (size_t)s->cfg.max_clients * sizeof *s->sessions);
    }
    kz__gate_destroy(s->gate);
    size_t pool_bytes = (size_t)s->cfg.ring_capacity * KZ_MAX_MESSAGE_BYTES;
    kz_free(&a, s->in_pool.bytes, pool_bytes);
    kz_free(&a, s->out_pool.bytes, pool_bytes);
    if (s->in_ring.buf) kz_spsc_fini(&s->in_ring);
    if (s->in_free.buf) kz_spsc_fini(&s->in_free);
    if (s->out_ring.buf) kz_spsc_fini(&s->out_ring);
    if (s->out_free.buf) kz_spsc_fini(&s->out_free);
    if (s->counters.cells) kz_counters_fini(&s->counters);
    kz_free(&a, s, sizeof *s);
}

uint16_t kz_netserver_port(const kz_netserver *s)
{
    return s->host->address.port;
}

const kz_counters *kz_netserver_gate_counters(const kz_netserver *s)
{
    return kz__gate_counters(s->gate);
}

const kz_counters *kz_netserver_counters(const kz_netserver *s)
{
    return &s->counters;
}

uint32_t kz_netserver_sessions(const kz_netserver *s)
{
    return atomic_load_explicit(&((kz_netserver *)s)->n_sessions, memory_order_relaxed);
}
