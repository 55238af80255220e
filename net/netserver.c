/*
 * The server transport: ENet hosts behind one gate, sealed sessions, SPSC
 * rings and buffer pools between each I/O thread and the application.
 *
 * Data flow, per I/O host k (single-threaded mode runs the same functions
 * for every host on the caller's thread):
 *
 *   I/O thread k: UDP -> intercept (gate) -> ENet -> open -> in_ring[k]
 *   app thread:   poll the in_rings in turn, release buffers to in_free[k];
 *                 send: buffer from out_free[k], fill, out_ring[k]
 *   I/O thread k: drain out_ring[k] -> seal -> enet_peer_send; buffers back
 *                 to out_free[k]
 *   I/O thread k: the application's work (the world's replicators): sealed
 *                 and handed to ENet at once (kz__netserver_send_now)
 *
 * Every ring has exactly one producer and one consumer thread. Buffers are
 * indices into pools allocated at creation: nothing on Kizuna's side
 * allocates per packet. The side that takes buffers keeps the free ones
 * on a stack and moves returned ones onto it before each take, so the
 * most recently used buffer is reused first: a pool's pages are touched
 * only as far as the traffic in flight needs, not cycled through. The gate is shared by all hosts (one table of
 * tokens, client ids and slots) and guarded by a mutex; it is touched once
 * per received datagram, briefly.
 *
 * A slot is served by one host for its whole life: the gate assigns the
 * host's port in its ACCEPT, and the host records itself in slot_io[slot]
 * before it publishes the slot's CONNECT message, so the application (which
 * learns slots only from those messages) always routes sends correctly.
 */
#define _GNU_SOURCE /* pthread_setname_np: I/O threads show as kz-io-N in top and perf */
#include <enet/enet.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <kizuna/ring.h>
#include <kizuna/transport.h>

#include "core/assert.h"
#include "enet_mac.h"
#include "enet_tune.h"
#include "fixmap.h"
#include "gate.h"
#include "netserver_work.h"
#include "resume.h"
#include "seal.h"

#define KZ__OUT_KICK 0xFFu
#define KZ__MAX_IO KZ_GATE_MAX_PORTS

/* Ring record: which buffer holds what. */
typedef struct kz__msgref {
    uint32_t slot;
    uint32_t len;
    uint32_t buf;     /* pool index */
    uint8_t kind;
    uint8_t channel;
    uint8_t type;
    uint8_t pad;
    kz_time_ns at;    /* inbound DATA: arrival (the pass's `now`) */
} kz__msgref;

typedef struct kz__session {
    ENetPeer *peer;
    kz__seal tx;          /* server-to-client */
    kz__seal rx;          /* client-to-server */
    kz__replay window;
    uint32_t active;
    uint32_t timeout_ms;      /* from the token (kz__session_timeout_ms), raised to
                                 outlive the resume grace */
    kz_time_ns last_heard;    /* the last authenticated datagram from the client */
    /* Resume: the session's path state, and what the application was last
     * told of it. Notices follow the state (kz__tell_path), so one the ring
     * had no room for is sent later, never lost. */
    uint8_t detached;         /* silent for KZ_DETACH_SILENCE_MS */
    uint8_t told_detached;    /* the last DETACH (1) or RESUME (0) pushed */
    uint8_t move_untold;      /* moved since the last notice pushed */
} kz__session;

/* ENet MAC keys of a slot on the host serving it, from the moment its
 * CONNECT is let through (before ENet reports the connection) until the
 * session ends. Looked up by the connectID ENet keeps in the peer. */
typedef struct kz__mac_entry {
    kz__enet_mac_pair mac;
    uint32_t connect_id;
    uint32_t set;
} kz__mac_entry;

/* A pool of fixed-size message buffers, and the free ones the taking side
 * holds (most recently returned on top). */
typedef struct kz__pool {
    uint8_t *bytes;
    uint32_t count;
    uint32_t *free;           /* stack of buffer indices, `count` room */
    uint32_t n_free;
} kz__pool;

/* One ENet host, its thread and its rings. */
typedef struct kz__io {
    struct kz_netserver *srv;
    uint32_t index;
    ENetHost *host;
    kz__pool in_pool, out_pool;
    kz_spsc in_ring, in_free, out_ring, out_free;
    kz_spsc release;          /* app -> io: slots whose DISCONNECT the app has seen */
    uint32_t peers;           /* peers this host holds at most */
    kz_counter_block c;
    pthread_t thread;
    int thread_started;
    kz_time_ns now;
    kz_time_ns next_rto_cap;
    uint8_t reply[KZ_GATE_REQUEST_BYTES];
    /* ENet datagram MACs (enet_mac.h): keys by slot, slot by connectID, and
     * the tag of the datagram the intercept just verified. */
    kz__mac_entry *mac;
    kz__fixmap mac_by_cid;
    uint32_t rx_tag;
    uint32_t rx_verified;
    kz__gate_job job;         /* a token verification in progress (wiped after) */
    /* Serial of the session this host serves in each slot, 0 = none:
     * written and read on this host's thread only (kz__netserver_send_now). */
    uint32_t *serial;
    uint32_t sent_now;        /* packets handed to ENet by the work this pass */
    /* Between passes the thread sleeps on `wake` for at most KZ__IO_POLL_US;
     * kz__netserver_wake cuts the sleep short (new work published). */
    pthread_mutex_t wake_lock;
    pthread_cond_t wake;
    int woken;                /* under wake_lock */
    int wake_ready;           /* the lock and condition were initialised */
} kz__io;

struct kz_netserver {
    kz_netserver_config cfg;
    uint32_t n_io;
    kz__io io[KZ__MAX_IO];
    kz__gate *gate;
    pthread_mutex_t gate_lock;
    kz__session *sessions;    /* by slot; touched only by the slot's host */
    _Atomic uint8_t *slot_io; /* by slot: the host serving it */
    uint32_t held_io, held_buf; /* buffer of the last polled message */
    kz_token_info polled_info;  /* identity handed out with a CONNECT message */
    uint8_t *app_live;        /* app thread only: CONNECT polled, DISCONNECT not yet */
    /* By slot: DETACH and RESUME notices in the in_ring not yet polled. At
     * most two each, so the ring's room (sized for them) is never
     * exceeded; the host adds, the application takes away. */
    _Atomic uint8_t *soft_pending;
    uint32_t next_poll;       /* host the application polls first */
    kz_counters counters;     /* one block per host, then the application's */
    kz_counter_block app;
    atomic_int stop;
    atomic_uint n_sessions;   /* published by the hosts each pass */
    atomic_uint next_serial;  /* the last session serial given out */
    _Atomic(kz__io_work_fn) work;   /* run by every host each pass (threaded mode) */
    void *work_ctx;           /* written before `work`, read after it */
    uint32_t polled_host, polled_serial;  /* of the CONNECT last polled */
};

static const char *const kz__net_counter_names[KZ_NET_C_COUNT] = {
#define KZ__NET_NAME(id, name) name,
    KZ_NET_COUNTERS(KZ__NET_NAME)
#undef KZ__NET_NAME
};

/* ENet's intercept callback has no user pointer; the host being serviced
 * on this thread is kept here for the duration of enet_host_service. */
static _Thread_local kz__io *kz__serving;

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

static uint8_t *kz__pool_at(const kz__pool *p, uint32_t idx)
{
    return p->bytes + (size_t)idx * KZ_MAX_MESSAGE_BYTES;
}

/* Pushes where the design guarantees room: every buffer index lives in
 * exactly one ring (or is held by one side), and rings are as large as the
 * pools. A failure here is a bug, not a network condition. */
static void kz__push_sure(kz_spsc *r, const void *elem)
{
    uint32_t pushed = kz_spsc_push_n(r, elem, 1);
    KZ_ASSERT(pushed == 1);
}

/* Takes a free buffer of `p` (on the pool's taking thread): the buffers
 * the other side returned through `returned` go on the stack first, in
 * return order, so the newest is reused. KZ_EFULL when none is free. */
static int kz__pool_take(kz__pool *p, kz_spsc *returned, uint32_t *buf)
{
    p->n_free += kz_spsc_pop_n(returned, p->free + p->n_free, p->count - p->n_free);
    if (p->n_free == 0)
        return KZ_EFULL;
    *buf = p->free[--p->n_free];
    return KZ_OK;
}

/* ---- I/O side: inbound ---------------------------------------------------- */

/* Hands a data message to the application; the payload is copied into a
 * pool buffer. Counts and drops it when the application is behind. */
static void kz__deliver(kz__io *io, uint32_t slot, uint8_t channel, uint8_t type,
                        const void *data, uint32_t len)
{
    uint32_t buf;
    if (kz__pool_take(&io->in_pool, &io->in_free, &buf) != KZ_OK) {
        kz_counter_inc(io->c, KZ_NET_C_DROP_INBOUND_FULL);
        return;
    }
    if (len)
        memcpy(kz__pool_at(&io->in_pool, buf), data, len);
    kz__msgref m = {slot, len, buf, KZ_NETMSG_DATA, channel, type, 0, io->now};
    kz__push_sure(&io->in_ring, &m);
}

/* Connect and disconnect notices carry no buffer and are never dropped:
 * the in_ring has room for every buffer plus two notices per peer. */
static void kz__notify(kz__io *io, uint32_t slot, uint8_t kind)
{
    /* A CONNECT carries its session's serial in `at` (no arrival time). */
    kz_time_ns serial = kind == KZ_NETMSG_CONNECT ? io->serial[slot] : 0;
    kz__msgref m = {slot, 0, UINT32_MAX, kind, 0, 0, 0, serial};
    kz__push_sure(&io->in_ring, &m);
}

/* Tells the application the session's path state when it changed since
 * the last notice (DETACH or RESUME), or that it moved (RESUME). With two
 * of the slot's notices still unpolled (the application is far behind),
 * nothing is pushed now (counted); the next watch pass tries again, so the
 * application always ends up told the current state. */
static void kz__tell_path(kz__io *io, uint32_t slot)
{
    kz__session *ss = &io->srv->sessions[slot];
    int change = ss->detached != ss->told_detached;
    if (!change && !(ss->move_untold && !ss->detached))
        return;
    _Atomic uint8_t *pending = &io->srv->soft_pending[slot];
    if (atomic_load_explicit(pending, memory_order_relaxed) >= 2) {
        kz_counter_inc(io->c, KZ_NET_C_DROP_NOTICE_FULL);
        return;
    }
    atomic_fetch_add_explicit(pending, 1, memory_order_relaxed);
    uint8_t kind = ss->detached ? KZ_NETMSG_DETACH : KZ_NETMSG_RESUME;
    ss->told_detached = ss->detached;
    ss->move_untold = 0;
    kz__msgref m = {slot, 0, UINT32_MAX, kind, 0, 0, 0, 0};
    kz__push_sure(&io->in_ring, &m);
}

/* ---- I/O side: ENet datagram MACs (enet_mac.h) -------------------------- */

static uint16_t kz__gate_port(const kz_netserver *s, uint32_t i);

/* The MAC keys of the slot whose ENet peer has `connect_id`, or NULL. */
static const kz__mac_entry *kz__mac_find(const kz__io *io, uint32_t connect_id)
{
    uint32_t slot;
    if (!kz__fixmap_get(&io->mac_by_cid, connect_id, &slot))
        return NULL;
    const kz__mac_entry *e = &io->mac[slot];
    return e->set && e->connect_id == connect_id ? e : NULL;
}

static void kz__mac_forget(kz__io *io, uint32_t slot)
{
    kz__mac_entry *e = &io->mac[slot];
    uint32_t owner;
    if (e->set && kz__fixmap_get(&io->mac_by_cid, e->connect_id, &owner) && owner == slot)
        kz__fixmap_del(&io->mac_by_cid, e->connect_id);
    sodium_memzero(e, sizeof *e);
}

/* Installs the keys of a slot whose CONNECT was let through. 0 when another
 * live slot on this host already uses the connectID (the outgoing MAC could
 * not tell the two apart): the CONNECT is dropped, the client retries. */
static int kz__mac_install(kz__io *io, uint32_t slot, uint32_t connect_id,
                           const kz__enet_mac_pair *mac)
{
    const kz__mac_entry *other = kz__mac_find(io, connect_id);
    if (other != NULL && other != &io->mac[slot])
        return 0;
    kz__mac_forget(io, slot);
    kz__mac_entry *e = &io->mac[slot];
    e->mac = *mac;
    e->connect_id = connect_id;
    e->set = 1;
    return kz__fixmap_put(&io->mac_by_cid, connect_id, slot) == KZ_OK;
}

/* ENet's checksum callback on the server. Receiving: the intercept has just
 * verified this datagram; give ENet the tag it found (ENet compares it with
 * the field it read). Sending: the MAC under the slot's server-to-client
 * key, found by the connectID ENet put in the field. */
static enet_uint32 kz__server_checksum(const ENetBuffer *b, size_t n)
{
    kz__io *io = kz__serving;
    if (io == NULL)
        return 0;
    if (kz__enet_checksum_is_receive(io->host, b, n)) {
        uint32_t verified = io->rx_verified;
        io->rx_verified = 0;
        return verified ? io->rx_tag : ~io->rx_tag;
    }
    const kz__mac_entry *e = kz__mac_find(io, kz__enet_outgoing_connect_id(b, n));
    return e ? kz__enet_mac_buffers(&e->mac.server_to_client, b, n) : 0;
}

/* The session in `slot` moved to `to` (a RESUME the gate accepted): its
 * ENet peer sends there from now on, and the application hears that the
 * session is back. */
static void kz__peer_moved(kz__io *io, uint32_t slot, const ENetAddress *to)
{
    kz__session *ss = &io->srv->sessions[slot];
    if (!ss->active || ss->peer == NULL)
        return;
    ss->peer->address = *to;
    /* The RESUME that moved it was authenticated (its proof): the session
     * was heard now, so the watch does not detach it again. */
    ss->last_heard = io->now;
    ss->detached = 0;
    ss->move_untold = 1;
    kz_counter_inc(io->c, KZ_NET_C_SESSIONS_MOVED);
    kz__tell_path(io, slot);
}

/* A datagram naming `peer` from another address than the peer's: 1 when
 * the gate has moved the peer's session to that address (the datagram's
 * MAC is checked next, before anything changes). */
static int kz__moved_here(kz__io *io, const ENetPeer *peer, const ENetHost *host)
{
    uintptr_t tag = (uintptr_t)peer->data;
    if (tag == 0 || io->srv->cfg.resume_grace_ms == 0)
        return 0;
    kz_address from = kz__from_enet(&host->receivedAddress);
    pthread_mutex_lock(&io->srv->gate_lock);
    int32_t at = kz__gate_slot_index(io->srv->gate, &from);
    pthread_mutex_unlock(&io->srv->gate_lock);
    return at >= 0 && (uint32_t)at == tag - 1;
}

/* A datagram from an address the gate let through: a CONNECT for the
 * slot (the gate checked its MAC, tag and connectID) gets the slot's keys
 * installed on this host; any other must carry a valid MAC for the peer
 * it names. 1 to drop it, 0 to hand it to ENet. */
static int kz__intercept_enet(kz__io *io, ENetHost *host, int32_t connect_slot,
                              const kz__gate_slot *g)
{
    kz__enet_header h;
    if (!kz__enet_header_parse(host->receivedData, host->receivedDataLength, &h)) {
        kz_counter_inc(io->c, KZ_NET_C_DROP_ENET_MALFORMED);
        return 1;
    }
    uint32_t connect_id = 0;
    const kz__mac_entry *e = NULL;
    if (h.peer_id == ENET_PROTOCOL_MAXIMUM_PEER_ID) {
        if (connect_slot >= 0)
            memcpy(&connect_id, g->connect_id, sizeof connect_id);
        if (connect_slot < 0 || g->port != kz__gate_port(io->srv, io->index) ||
            !kz__mac_install(io, (uint32_t)connect_slot, connect_id, &g->mac)) {
            kz_counter_inc(io->c, KZ_NET_C_CONNECT_REFUSED);
            return 1;
        }
        io->rx_tag = 0;
        io->rx_verified = 1; /* the gate verified this CONNECT's MAC */
        memcpy(&io->rx_tag, host->receivedData + h.checksum_at, sizeof io->rx_tag);
        return 0;
    }
    ENetPeer *moving = NULL;
    if (h.peer_id < host->peerCount) {
        ENetPeer *peer = &host->peers[h.peer_id];
        int here = peer->address.host == host->receivedAddress.host &&
                   peer->address.port == host->receivedAddress.port;
        if (!here && kz__moved_here(io, peer, host))
            moving = peer;
        if (here || moving) {
            connect_id = peer->connectID;
            e = kz__mac_find(io, connect_id);
        }
    }
    if (e == NULL) {
        kz_counter_inc(io->c, KZ_NET_C_DROP_ENET_PEER);
        return 1;
    }
    if (!kz__enet_mac_check(&e->mac.client_to_server, host->receivedData,
                            host->receivedDataLength, &h, connect_id, &io->rx_tag)) {
        kz_counter_inc(io->c, KZ_NET_C_DROP_ENET_MAC);
        return 1;
    }
    uint32_t slot = (uint32_t)(e - io->mac);
    io->srv->sessions[slot].last_heard = io->now;
    if (moving)
        kz__peer_moved(io, slot, &host->receivedAddress);
    io->rx_verified = 1;
    return 0;
}

/* A datagram addressed to ENET_PROTOCOL_MAXIMUM_PEER_ID: a CONNECT. */
static int kz__is_enet_connect(const ENetHost *host)
{
    kz__enet_header h;
    return kz__enet_header_parse(host->receivedData, host->receivedDataLength, &h) &&
           h.peer_id == ENET_PROTOCOL_MAXIMUM_PEER_ID;
}

static int kz__intercept(ENetHost *host, ENetEvent *event)
{
    (void)event;
    kz__io *io = kz__serving;
    kz_netserver *s = io->srv;
    kz_address from = kz__from_enet(&host->receivedAddress);
    size_t rlen = 0;
    uint64_t unix_now = s->cfg.unix_time(s->cfg.unix_time_ctx);
    kz__gate_slot connect; /* the slot a CONNECT is for: its MAC keys, connectID, port */
    int32_t connect_slot = -1;
    io->rx_verified = 0;
    pthread_mutex_lock(&s->gate_lock);
    kz__gate_action act = kz__gate_datagram_begin(s->gate, &from, host->receivedData,
                                                  host->receivedDataLength, io->now, unix_now,
                                                  io->reply, sizeof io->reply, &rlen, &io->job);
    if (act == KZ_GATE_VERIFY) {
        /* The signature and key checks run without the lock: other I/O
         * threads and the application never wait on public-key work. */
        pthread_mutex_unlock(&s->gate_lock);
        kz__gate_job_run(&io->job, unix_now);
        pthread_mutex_lock(&s->gate_lock);
        act = kz__gate_job_finish(s->gate, &io->job, io->now, unix_now, io->reply,
                                  sizeof io->reply, &rlen);
    }
    /* Only a CONNECT needs its slot's keys from the gate; every other
     * datagram finds its keys on this host, without a second lookup. */
    int32_t moved = act == KZ_GATE_REPLY ? kz__gate_moved_slot(s->gate) : -1;
    if (act == KZ_GATE_PASS && kz__is_enet_connect(host) &&
        (connect_slot = kz__gate_slot_index(s->gate, &from)) >= 0) {
        const kz__gate_slot *g = kz__gate_slot_at(s->gate, (uint32_t)connect_slot);
        if (g->state == KZ_SLOT_PENDING && g->connect_id_set) {
            memcpy(connect.connect_id, g->connect_id, sizeof connect.connect_id);
            connect.mac = g->mac;
            connect.port = g->port;
        } else {
            connect_slot = -1;
        }
    }
    pthread_mutex_unlock(&s->gate_lock);
    if (act == KZ_GATE_PASS) {
        int drop = kz__intercept_enet(io, host, connect_slot, &connect);
        sodium_memzero(&connect.mac, sizeof connect.mac);
        return drop;
    }
    if (act == KZ_GATE_REPLY) {
        ENetBuffer b = {.data = io->reply, .dataLength = rlen};
        enet_socket_send(host->socket, &host->receivedAddress, &b, 1);
    }
    /* A session this host serves moved: point its peer at the new address
     * now, so the next snapshot goes there. Another host's session moves
     * at the first datagram from the new address (kz__moved_here). */
    if (moved >= 0 &&
        atomic_load_explicit(&s->slot_io[moved], memory_order_relaxed) == io->index)
        kz__peer_moved(io, (uint32_t)moved, &host->receivedAddress);
    return 1; /* consumed: ENet never sees it */
}

/* Port the gate hands out for host `i` (0 means "the port you asked"). */
static uint16_t kz__gate_port(const kz_netserver *s, uint32_t i)
{
    return s->n_io == 1 ? 0 : s->io[i].host->address.port;
}

/* Marks the slot of a new peer connected and copies what the session needs
 * out of the gate, all under the gate lock. -1 when the peer must go. */
static int32_t kz__claim_slot(kz__io *io, ENetPeer *peer, kz__gate_slot *out)
{
    kz_netserver *s = io->srv;
    kz_address from = kz__from_enet(&peer->address);
    pthread_mutex_lock(&s->gate_lock);
    int32_t slot = kz__gate_mark_connected(s->gate, &from);
    if (slot >= 0) {
        *out = *kz__gate_slot_at(s->gate, (uint32_t)slot);
        if (out->port != kz__gate_port(s, io->index)) {
            /* Connected to a host the gate did not assign: refuse. */
            kz__gate_release(s->gate, (uint32_t)slot);
            sodium_memzero(out, sizeof *out);
            slot = -1;
        }
    }
    pthread_mutex_unlock(&s->gate_lock);
    return slot;
}

/* No ticket of the session in `slot` works from now on. */
static void kz__gate_end_locked(kz_netserver *s, uint32_t slot)
{
    pthread_mutex_lock(&s->gate_lock);
    kz__gate_end(s->gate, slot);
    pthread_mutex_unlock(&s->gate_lock);
}

/* The session in `slot` went silent (1) or was heard again (0): the gate
 * lets a restarted client replace only a silent session. */
static void kz__gate_silent_locked(kz_netserver *s, uint32_t slot, int silent)
{
    pthread_mutex_lock(&s->gate_lock);
    kz__gate_set_silent(s->gate, slot, silent);
    pthread_mutex_unlock(&s->gate_lock);
}

static void kz__release_slot(kz_netserver *s, uint32_t slot)
{
    pthread_mutex_lock(&s->gate_lock);
    kz__gate_release(s->gate, slot);
    pthread_mutex_unlock(&s->gate_lock);
}

/* ENet's timeout outlives the grace by KZ_RESUME_TIMEOUT_MARGIN_MS, so a
 * silent session is ended by the grace (kz__watch_session), never first by
 * ENet. */

static int kz__seal_and_send(kz__io *io, kz__session *ss, uint8_t channel, uint8_t type,
                             const void *data, uint32_t len);

/* The session's first sealed message, before the application's WELCOME
 * (the event channel is ordered): its ticket and the grace. Resume on only. */
static void kz__send_ticket(kz__io *io, kz__session *ss, const kz__ticket *t)
{
    uint32_t grace = io->srv->cfg.resume_grace_ms;
    if (grace == 0)
        return;
    uint8_t ticket[KZ_TICKET_BYTES], msg[KZ_TICKET_MSG_BYTES];
    kz__ticket_pack(t, ticket);
    kz__ticket_msg_encode(ticket, grace, msg);
    (void)kz__seal_and_send(io, ss, KZ_CHANNEL_EVENT, KZ_MSG_TICKET, msg, sizeof msg);
    sodium_memzero(ticket, sizeof ticket);
    sodium_memzero(msg, sizeof msg);
}

static void kz__on_connect(kz__io *io, ENetPeer *peer)
{
    kz_netserver *s = io->srv;
    kz__gate_slot g;
    int32_t slot = kz__claim_slot(io, peer, &g);
    /* The peer must be the one whose CONNECT the gate let through for this
     * slot's current holder (a freed and reclaimed slot keeps no old peer). */
    if (slot < 0 || kz__mac_find(io, peer->connectID) != &io->mac[slot] || !g.connect_id_set ||
        memcmp(g.connect_id, &peer->connectID, sizeof g.connect_id) != 0) {
        /* Refused: no pending slot for this address, the wrong host, or a
         * peer whose datagrams were never authenticated for this slot. */
        kz_counter_inc(io->c, KZ_NET_C_CONNECT_REFUSED);
        enet_peer_disconnect_now(peer, 0);
        if (slot >= 0) {
            kz__mac_forget(io, (uint32_t)slot);
            kz__release_slot(s, (uint32_t)slot);
        }
        sodium_memzero(&g, sizeof g);
        return;
    }
    kz__session *ss = &s->sessions[slot];
    int rc = kz__seal_init(&ss->tx, g.keys.server_to_client, g.alg, g.session_id);
    if (rc == KZ_OK)
        rc = kz__seal_init(&ss->rx, g.keys.client_to_server, g.alg, g.session_id);
    sodium_memzero(&g.keys, sizeof g.keys);
    sodium_memzero(&g.mac, sizeof g.mac);
    if (rc != KZ_OK) {
        sodium_memzero(&g.ticket, sizeof g.ticket);
        enet_peer_disconnect_now(peer, 0);
        kz__mac_forget(io, (uint32_t)slot);
        kz__release_slot(s, (uint32_t)slot);
        return;
    }
    kz__replay_init(&ss->window);
    ss->peer = peer;
    ss->timeout_ms = kz__session_timeout_ms(g.info.timeout_seconds);
    if (s->cfg.resume_grace_ms && ss->timeout_ms < s->cfg.resume_grace_ms + KZ_RESUME_TIMEOUT_MARGIN_MS)
        ss->timeout_ms = s->cfg.resume_grace_ms + KZ_RESUME_TIMEOUT_MARGIN_MS;
    kz__enet_peer_setup(peer, ss->timeout_ms);
    kz__enet_unthrottle(peer);
    ss->active = 1;
    ss->last_heard = io->now;
    ss->detached = ss->told_detached = ss->move_untold = 0;
    peer->data = (void *)(uintptr_t)(slot + 1);
    kz__send_ticket(io, ss, &g.ticket);
    uint32_t serial = atomic_fetch_add_explicit(&s->next_serial, 1, memory_order_relaxed) + 1u;
    io->serial[slot] = serial ? serial : 1u;  /* 0 is "none"; 2^32 sessions later */
    /* Published to the application by the ring push of the notice below. */
    atomic_store_explicit(&s->slot_io[slot], (uint8_t)io->index, memory_order_relaxed);
    sodium_memzero(&g.ticket, sizeof g.ticket);
    kz_counter_inc(io->c, KZ_NET_C_SESSIONS_OPENED);
    kz__notify(io, (uint32_t)slot, KZ_NETMSG_CONNECT);
}

/* Ends a session on the I/O side. The gate slot stays taken until the
 * application has seen the DISCONNECT (kz__apply_releases): until then
 * anything it queued for the slot is dropped here, never delivered to the
 * slot's next holder. */
static void kz__close_session(kz__io *io, uint32_t slot)
{
    kz_netserver *s = io->srv;
    kz__session *ss = &s->sessions[slot];
    if (!ss->active)
        return;
    if (ss->peer)
        ss->peer->data = NULL;
    kz__seal_fini(&ss->tx);
    kz__seal_fini(&ss->rx);
    kz__mac_forget(io, slot);
    io->serial[slot] = 0;
    memset(ss, 0, sizeof *ss);
    kz__gate_end_locked(s, slot);
    kz_counter_inc(io->c, KZ_NET_C_SESSIONS_CLOSED);
    kz__notify(io, slot, KZ_NETMSG_DISCONNECT);
}

static void kz__on_receive(kz__io *io, ENetPeer *peer, uint8_t channel, ENetPacket *pkt)
{
    kz_netserver *s = io->srv;
    uintptr_t tag = (uintptr_t)peer->data;
    kz_counter_inc(io->c, KZ_NET_C_RX_PACKETS);
    kz_counter_add(io->c, KZ_NET_C_RX_BYTES, pkt->dataLength);
    if (tag == 0) {
        kz_counter_inc(io->c, KZ_NET_C_DROP_NO_SESSION);
        return;
    }
    uint32_t slot = (uint32_t)(tag - 1);
    kz__session *ss = &s->sessions[slot];
    uint8_t plain[KZ_MAX_MESSAGE_BYTES], type;
    size_t len;
    int rc = kz__open_packet(&ss->rx, &ss->window, pkt->data, pkt->dataLength, &type, plain,
                             sizeof plain, &len);
    if (rc == KZ_OK) {
        kz__deliver(io, slot, channel, type, plain, (uint32_t)len);
        return;
    }
    /* Dropped and counted, never more: nothing that fails authentication
     * may change a session, so there is no "close after N failures" rule
     * for a forger to use against the player. */
    kz_counter_inc(io->c, rc == KZ_EREPLAY ? KZ_NET_C_DROP_REPLAY
                          : rc == KZ_EAUTH ? KZ_NET_C_DROP_AUTH
                                           : KZ_NET_C_DROP_MALFORMED);
}

static void kz__on_disconnect(kz__io *io, ENetPeer *peer)
{
    uintptr_t tag = (uintptr_t)peer->data;
    if (tag != 0)
        kz__close_session(io, (uint32_t)(tag - 1));
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

/* Seals one message for an active session and hands it to ENet; every
 * failure is counted under its reason. 0 when ENet took it. */
static int kz__seal_and_send(kz__io *io, kz__session *ss, uint8_t channel, uint8_t type,
                             const void *data, uint32_t len)
{
    ENetPacket *pkt = enet_packet_create(NULL, len + KZ_SEAL_OVERHEAD, kz__channel_flags(channel));
    size_t out_len;
    if (pkt == NULL) {
        kz_counter_inc(io->c, KZ_NET_C_DROP_PACKET_ALLOC);
        return KZ_ENOMEM;
    }
    int rc = kz__seal_packet(&ss->tx, type, data, len, pkt->data, pkt->dataLength, &out_len);
    if (rc != KZ_OK) {
        kz_counter_inc(io->c, KZ_NET_C_NONCE_EXHAUSTED);
        enet_packet_destroy(pkt);
        enet_peer_disconnect_later(ss->peer, 0);
        return rc;
    }
    if (enet_peer_send(ss->peer, channel, pkt) != 0) {
        /* ENet refuses when the peer is not connected (yet or any more) or
         * its waiting data is over the cap. */
        kz_counter_inc(io->c, KZ_NET_C_DROP_ENET_SEND);
        enet_packet_destroy(pkt);
        return KZ_EFULL;
    }
    kz_counter_inc(io->c, KZ_NET_C_TX_PACKETS);
    kz_counter_add(io->c, KZ_NET_C_TX_BYTES, pkt->dataLength);
    return KZ_OK;
}

static void kz__send_one(kz__io *io, const kz__msgref *m)
{
    kz__session *ss = &io->srv->sessions[m->slot];
    if (!ss->active) {
        kz_counter_inc(io->c, KZ_NET_C_DROP_NO_SESSION);
        return;
    }
    if (m->kind == KZ__OUT_KICK) {
        kz__gate_end_locked(io->srv, m->slot); /* a kicked session cannot resume */
        enet_peer_disconnect_later(ss->peer, m->len);
        return;
    }
    (void)kz__seal_and_send(io, ss, m->channel, m->type, kz__pool_at(&io->out_pool, m->buf),
                            m->len);
}

/* Seals and queues what the application sent; returns how many. */
static uint32_t kz__drain_outbound(kz__io *io)
{
    kz__msgref batch[64];
    uint32_t n, total = 0;
    while ((n = kz_spsc_pop_n(&io->out_ring, batch, 64)) > 0) {
        for (uint32_t i = 0; i < n; i++) {
            kz__send_one(io, &batch[i]);
            kz__push_sure(&io->out_free, &batch[i].buf);
        }
        total += n;
    }
    return total;
}

/* ---- I/O side: the loop --------------------------------------------------- */

#define KZ__IO_POLL_US 250

static void kz__dispatch(kz__io *io, ENetEvent *ev)
{
    switch (ev->type) {
    case ENET_EVENT_TYPE_CONNECT:
        kz__on_connect(io, ev->peer);
        break;
    case ENET_EVENT_TYPE_RECEIVE:
        kz__on_receive(io, ev->peer, ev->channelID, ev->packet);
        enet_packet_destroy(ev->packet);
        break;
    case ENET_EVENT_TYPE_DISCONNECT:
        kz__on_disconnect(io, ev->peer);
        break;
    default:
        break;
    }
}

/* Ends a live session from the I/O side: tells the client (ENet
 * DISCONNECT with `reason`, authenticated by the session's MAC key, so
 * before the keys are forgotten) and the application (DISCONNECT). */
static void kz__end_session(kz__io *io, uint32_t slot, uint32_t reason)
{
    kz__session *ss = &io->srv->sessions[slot];
    ENetPeer *peer = ss->peer;
    if (!ss->active)
        return;
    if (peer) {
        kz__io *was = kz__serving;
        kz__serving = io; /* the MAC callback needs the host */
        peer->data = NULL;
        enet_peer_disconnect_now(peer, reason);
        kz__serving = was;
    }
    kz__close_session(io, slot);
}

/* Resume on: a session silent for KZ_DETACH_SILENCE_MS is detached (the
 * application stands its avatar still), heard again it is attached, and
 * silent for the grace it ends as a timeout (reason 0). */
static void kz__watch_session(kz__io *io, uint32_t slot, kz_time_ns now)
{
    kz__session *ss = &io->srv->sessions[slot];
    uint32_t grace = io->srv->cfg.resume_grace_ms;
    if (grace == 0 || !ss->active)
        return;
    kz_time_ns silent = now > ss->last_heard ? now - ss->last_heard : 0;
    kz_time_ns detach = (kz_time_ns)KZ_DETACH_SILENCE_MS * KZ_NS_PER_MS;
    if (silent >= (kz_time_ns)grace * KZ_NS_PER_MS) {
        kz_counter_inc(io->c, KZ_NET_C_SESSIONS_GRACE_ENDED);
        kz__end_session(io, slot, 0);
        return;
    }
    if (!ss->detached && silent >= detach) {
        ss->detached = 1;
        kz_counter_inc(io->c, KZ_NET_C_SESSIONS_DETACHED);
        kz__gate_silent_locked(io->srv, slot, 1);
    } else if (ss->detached && silent < detach) {
        ss->detached = 0;
        kz_counter_inc(io->c, KZ_NET_C_SESSIONS_ATTACHED);
        kz__gate_silent_locked(io->srv, slot, 0);
    }
    kz__tell_path(io, slot);
}

/* Sessions of this host that a newer connect of the same client replaced
 * (the gate marked them): ended with KZ_KICK_REPLACED. The flags are read
 * under one lock, the sessions ended after it; nothing is scanned while
 * the gate has no session marked. */
static void kz__end_replaced(kz__io *io)
{
    kz_netserver *s = io->srv;
    uint32_t found[64], n = 0;
    if (s->cfg.resume_grace_ms == 0)
        return;
    pthread_mutex_lock(&s->gate_lock);
    for (size_t i = 0; kz__gate_replacing(s->gate) && i < io->host->peerCount && n < 64; i++) {
        uintptr_t tag = (uintptr_t)io->host->peers[i].data;
        if (tag && kz__gate_slot_at(s->gate, (uint32_t)(tag - 1))->replace)
            found[n++] = (uint32_t)(tag - 1);
    }
    pthread_mutex_unlock(&s->gate_lock);
    for (uint32_t i = 0; i < n; i++) {
        kz_counter_inc(io->c, KZ_NET_C_SESSIONS_REPLACED);
        kz__end_session(io, found[i], KZ_KICK_REPLACED);
    }
}

/* Every 100 ms, applies Kizuna's ENet timeouts to every live peer,
 * connecting ones included (enet_tune.h says why), watches sessions for
 * silence (resume) and ends the replaced ones. */
static void kz__cap_timeouts(kz__io *io, kz_time_ns now)
{
    if (now < io->next_rto_cap)
        return;
    io->next_rto_cap = now + 100 * KZ_NS_PER_MS;
    for (size_t i = 0; i < io->host->peerCount; i++) {
        ENetPeer *p = &io->host->peers[i];
        if (p->state == ENET_PEER_STATE_DISCONNECTED || p->state == ENET_PEER_STATE_ZOMBIE)
            continue;
        uintptr_t tag = (uintptr_t)p->data; /* slot + 1 once a session */
        kz__enet_peer_setup(p, tag ? io->srv->sessions[tag - 1].timeout_ms
                                   : KZ_ENET_SESSION_TIMEOUT_MS);
        kz__enet_cap_rto(p);
        if (tag)
            kz__watch_session(io, (uint32_t)(tag - 1), now);
    }
    kz__end_replaced(io);
}

/* Frees the gate slots whose DISCONNECT the application has seen. The
 * releases are taken first and applied after the outbound ring is drained,
 * so every message the application queued before it saw the DISCONNECT is
 * dropped while the slot still belongs to the ended session. */
static void kz__apply_releases(kz__io *io)
{
    uint32_t slots[64], n = kz_spsc_pop_n(&io->release, slots, 64);
    if (n == 0)
        return;
    kz__drain_outbound(io);
    for (uint32_t i = 0; i < n; i++)
        kz__release_slot(io->srv, slots[i]);
}

/* The application's work on this host (threaded mode only: in
 * single-threaded mode the application runs it on its own thread). */
static void kz__run_work(kz__io *io)
{
    kz_netserver *s = io->srv;
    if (!s->cfg.threaded)
        return;
    kz__io_work_fn fn = atomic_load_explicit(&s->work, memory_order_acquire);
    if (fn)
        fn(s->work_ctx, io->index);
}

/* One round of an I/O host: queue what the application sent, let ENet
 * send and receive, dispatch events, run the application's work on this
 * host, queue again, flush only if something new was queued (a flush
 * walks every peer); then expire stale gate slots and publish the
 * session count. */
static void kz__io_pass(kz__io *io, kz_time_ns now, enet_uint32 wait_ms)
{
    kz_netserver *s = io->srv;
    ENetEvent ev;
    io->now = now;
    kz__serving = io;
    (void)kz__drain_outbound(io);
    int rc = enet_host_service(io->host, &ev, wait_ms);
    while (rc > 0) {
        kz__dispatch(io, &ev);
        rc = enet_host_check_events(io->host, &ev);
    }
    kz__run_work(io);
    uint32_t late = kz__drain_outbound(io) + io->sent_now;
    io->sent_now = 0;
    kz__apply_releases(io);
    if (late)
        enet_host_flush(io->host);
    kz__serving = NULL;
    kz__cap_timeouts(io, now);
    pthread_mutex_lock(&s->gate_lock);
    kz__gate_expire(s->gate, now);
    uint32_t sessions = kz__gate_sessions(s->gate);
    pthread_mutex_unlock(&s->gate_lock);
    atomic_store_explicit(&s->n_sessions, sessions, memory_order_relaxed);
}

static void kz__io_sleep(kz__io *io)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += KZ__IO_POLL_US * 1000;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&io->wake_lock);
    while (!io->woken &&
           pthread_cond_timedwait(&io->wake, &io->wake_lock, &until) == 0)
        ;
    io->woken = 0;
    pthread_mutex_unlock(&io->wake_lock);
}

static void *kz__io_thread(void *arg)
{
    kz__io *io = arg;
    kz_netserver *s = io->srv;
    char name[16];
    snprintf(name, sizeof name, "kz-io-%u", (unsigned)(io - s->io));
    pthread_setname_np(pthread_self(), name);
    /* Paced polling rather than waking on every datagram: each ENet
     * service walks every peer, so with thousands of clients sending 30
     * inputs a second, waking per datagram spends a core on walks. A short
     * sleep lets arrivals batch (at most KZ__IO_POLL_US of extra latency);
     * new work from the application (a tick to replicate) ends it at once. */
    while (!atomic_load_explicit(&s->stop, memory_order_acquire)) {
        kz__io_pass(io, kz_clock_now(&s->cfg.clock), 0);
        kz__io_sleep(io);
    }
    return NULL;
}

int kz_netserver_service(kz_netserver *s, kz_time_ns now)
{
    if (!s->cfg.threaded)
        for (uint32_t i = 0; i < s->n_io; i++)
            kz__io_pass(&s->io[i], now, 0);
    return KZ_OK;
}

/* ---- application side ----------------------------------------------------- */

/* Fills *msg for a ring record; lifecycle notices get their data here. */
static void kz__app_message(kz_netserver *s, uint32_t i, const kz__msgref *m, kz_netmsg *msg)
{
    *msg = (kz_netmsg){m->slot, m->kind, m->channel, m->type, 0, m->len, NULL, m->at};
    if (m->kind == KZ_NETMSG_DATA) {
        s->held_io = i;
        s->held_buf = m->buf;
        msg->data = kz__pool_at(&s->io[i].in_pool, m->buf);
    } else if (m->kind == KZ_NETMSG_CONNECT) {
        s->app_live[m->slot] = 1;
        s->polled_host = i;
        s->polled_serial = (uint32_t)m->at;
        msg->received = 0;  /* `at` carried the serial, not an arrival time */
        /* The slot cannot be released before the app sees its DISCONNECT,
         * so the gate still holds this session's identity. */
        pthread_mutex_lock(&s->gate_lock);
        s->polled_info = kz__gate_slot_at(s->gate, m->slot)->info;
        pthread_mutex_unlock(&s->gate_lock);
        msg->data = (const uint8_t *)&s->polled_info;
        msg->len = sizeof s->polled_info;
    } else if (m->kind == KZ_NETMSG_DETACH || m->kind == KZ_NETMSG_RESUME) {
        atomic_fetch_sub_explicit(&s->soft_pending[m->slot], 1, memory_order_relaxed);
    } else {
        s->app_live[m->slot] = 0;
        kz__push_sure(&s->io[i].release, &m->slot);
    }
}

int kz_netserver_poll(kz_netserver *s, kz_netmsg *msg)
{
    if (s->held_buf != UINT32_MAX) {
        kz__push_sure(&s->io[s->held_io].in_free, &s->held_buf);
        s->held_buf = UINT32_MAX;
    }
    /* Round robin over the hosts so a busy one cannot starve the others. */
    for (uint32_t n = 0; n < s->n_io; n++) {
        uint32_t i = (s->next_poll + n) % s->n_io;
        kz__msgref m;
        if (kz_spsc_pop(&s->io[i].in_ring, &m) != KZ_OK)
            continue;
        s->next_poll = (i + 1) % s->n_io;
        kz__app_message(s, i, &m, msg);
        return KZ_OK;
    }
    return KZ_EEMPTY;
}

/* Queues for a slot the application holds: between the CONNECT it polled
 * and the DISCONNECT it has not polled yet. In that span the slot cannot
 * move to another host or holder, so routing by slot_io is safe. */
static int kz__queue_out(kz_netserver *s, const kz__msgref *tmpl, const void *data)
{
    if (!s->app_live[tmpl->slot])
        return KZ_ESTATE;
    uint8_t host = atomic_load_explicit(&s->slot_io[tmpl->slot], memory_order_relaxed);
    kz__io *io = &s->io[host];
    uint32_t buf;
    if (kz__pool_take(&io->out_pool, &io->out_free, &buf) != KZ_OK) {
        kz_counter_inc(s->app, KZ_NET_C_DROP_OUTBOUND_FULL);
        return KZ_EFULL;
    }
    kz__msgref m = *tmpl;
    m.buf = buf;
    if (data && m.len)
        memcpy(kz__pool_at(&io->out_pool, buf), data, m.len);
    kz__push_sure(&io->out_ring, &m);
    return KZ_OK;
}

int kz_netserver_send(kz_netserver *s, uint32_t slot, uint8_t channel, uint8_t type,
                      const void *data, uint32_t len)
{
    if (slot >= s->cfg.max_clients || channel >= KZ_CHANNEL_COUNT || len > KZ_MAX_MESSAGE_BYTES)
        return KZ_EINVAL;
    kz__msgref m = {slot, len, 0, KZ_NETMSG_DATA, channel, type, 0, 0};
    return kz__queue_out(s, &m, data);
}

int kz_netserver_trust(kz_netserver *s, const uint8_t (*keys)[KZ_SIGN_PUBLIC_KEY_BYTES],
                       uint32_t n)
{
    pthread_mutex_lock(&s->gate_lock);
    int rc = kz__gate_trust(s->gate, keys, n);
    pthread_mutex_unlock(&s->gate_lock);
    return rc;
}

void kz_netserver_set_accepting(kz_netserver *s, int32_t accepting)
{
    kz_netserver_set_refusal(s, accepting ? 0 : KZ_DENY_SHUTTING_DOWN);
}

void kz_netserver_set_refusal(kz_netserver *s, uint32_t deny_reason)
{
    pthread_mutex_lock(&s->gate_lock);
    kz__gate_refuse(s->gate, (uint8_t)(deny_reason > 255 ? KZ_DENY_SHUTTING_DOWN : deny_reason));
    pthread_mutex_unlock(&s->gate_lock);
}

int kz_netserver_kick(kz_netserver *s, uint32_t slot, uint32_t reason)
{
    if (slot >= s->cfg.max_clients)
        return KZ_EINVAL;
    kz__msgref m = {slot, reason, 0, KZ__OUT_KICK, 0, 0, 0, 0};
    return kz__queue_out(s, &m, NULL);
}

/* ---- lifecycle ------------------------------------------------------------ */

static int kz__config_resolve(kz_netserver_config *c)
{
    if (c->io_threads == 0)
        c->io_threads = 1;
    if (c->io_threads > KZ__MAX_IO || c->max_clients == 0 ||
        c->max_clients > c->io_threads * ENET_PROTOCOL_MAXIMUM_PEER_ID ||
        (c->port != 0 && (uint32_t)c->port + c->io_threads - 1 > 65535))
        return KZ_EINVAL;
    if (c->ring_capacity == 0)
        c->ring_capacity = 4096;
    if ((c->ring_capacity & (c->ring_capacity - 1)) || c->ring_capacity < 2 ||
        c->ring_capacity > (1u << 16))
        return KZ_EINVAL;
    if (c->resume_grace_ms != 0 && (c->resume_grace_ms < KZ_RESUME_GRACE_MIN_MS ||
                                    c->resume_grace_ms > KZ_RESUME_GRACE_MAX_MS))
        return KZ_EINVAL;
    if (c->clock.now_ns == NULL)
        c->clock = kz_clock_system();
    if (c->unix_time == NULL)
        c->unix_time = kz__default_unix_time;
    kz_allocator_resolve(&c->alloc);
    return KZ_OK;
}

static ENetHost *kz__host_create(const kz_netserver_config *c, uint32_t i, size_t peers)
{
    ENetAddress addr = {.host = c->bind_ip, .port = c->port ? (uint16_t)(c->port + i) : 0};
    ENetHost *h = enet_host_create(&addr, peers, KZ_CHANNEL_COUNT, 0, 0);
    if (h == NULL)
        return NULL;
    h->checksum = kz__server_checksum;
    h->intercept = kz__intercept;
    h->mtu = KZ_MTU;
    h->maximumPacketSize = KZ_ENET_MAX_PACKET_BYTES;
    h->maximumWaitingData = KZ_ENET_MAX_WAITING_BYTES;
    h->duplicatePeers = peers; /* the gate decides who may connect */
    if (h->address.port == 0) {
        ENetAddress bound;
        if (enet_socket_get_address(h->socket, &bound) == 0)
            h->address.port = bound.port;
    }
    return h;
}

static uint32_t kz__pow2_at_least(uint32_t n)
{
    uint32_t p = 2;
    while (p < n)
        p <<= 1;
    return p;
}

/* The pass timer: a condition on the monotonic clock, so a change of the
 * wall clock never stretches a sleep. */
static int kz__io_wake_init(kz__io *io)
{
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0)
        return KZ_ENOMEM;
    int ok = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) == 0 &&
             pthread_cond_init(&io->wake, &attr) == 0;
    pthread_condattr_destroy(&attr);
    if (!ok)
        return KZ_EIO;
    if (pthread_mutex_init(&io->wake_lock, NULL) != 0) {
        pthread_cond_destroy(&io->wake);
        return KZ_EIO;
    }
    io->wake_ready = 1;
    return KZ_OK;
}

static int kz__io_build(kz_netserver *s, kz__io *io, uint32_t i)
{
    const kz_allocator *a = &s->cfg.alloc;
    uint32_t cap = s->cfg.ring_capacity;
    size_t peers = (s->cfg.max_clients + s->n_io - 1) / s->n_io;
    io->srv = s;
    io->index = i;
    io->host = kz__host_create(&s->cfg, i, peers);
    if (io->host == NULL)
        return KZ_EIO;
    io->peers = (uint32_t)peers;
    /* The in_ring holds every buffer's message plus a connect, a
     * disconnect and two resume notices (kz__notify_soft) per slot; the release ring one entry per slot.
     * Sized by all slots, not this host's peers: ended sessions keep their
     * slot (but not their ENet peer) until the application polls them. */
    uint32_t in_cap = kz__pow2_at_least(cap + 4 * s->cfg.max_clients);
    uint32_t rel_cap = kz__pow2_at_least(s->cfg.max_clients);
    /* Not zeroed: a buffer is written before it is read, and untouched
     * pages stay out of memory (the stacks hand out few of them). */
    io->in_pool = (kz__pool){kz_alloc(a, (size_t)cap * KZ_MAX_MESSAGE_BYTES, 64), cap,
                             kz_alloc(a, (size_t)cap * sizeof(uint32_t), 64), 0};
    io->out_pool = (kz__pool){kz_alloc(a, (size_t)cap * KZ_MAX_MESSAGE_BYTES, 64), cap,
                              kz_alloc(a, (size_t)cap * sizeof(uint32_t), 64), 0};
    if (!io->in_pool.bytes || !io->out_pool.bytes || !io->in_pool.free || !io->out_pool.free ||
        kz_spsc_init(&io->release, rel_cap, sizeof(uint32_t), a) ||
        kz_spsc_init(&io->in_ring, in_cap, sizeof(kz__msgref), a) ||
        kz_spsc_init(&io->in_free, cap, sizeof(uint32_t), a) ||
        kz_spsc_init(&io->out_ring, cap, sizeof(kz__msgref), a) ||
        kz_spsc_init(&io->out_free, cap, sizeof(uint32_t), a))
        return KZ_ENOMEM;
    for (uint32_t b = 0; b < cap; b++) /* buffer 0 on top */
        io->in_pool.free[b] = io->out_pool.free[b] = cap - 1u - b;
    io->in_pool.n_free = io->out_pool.n_free = cap;
    io->mac = kz_calloc(a, (size_t)s->cfg.max_clients * sizeof *io->mac, 64);
    io->serial = kz_calloc(a, (size_t)s->cfg.max_clients * sizeof *io->serial, 64);
    if (io->mac == NULL || io->serial == NULL || kz__fixmap_init(&io->mac_by_cid, s->cfg.max_clients, a) != KZ_OK)
        return KZ_ENOMEM;
    io->c = kz_counters_block(&s->counters, i);
    return kz__io_wake_init(io);
}

static kz__gate *kz__gate_for(const kz_netserver *s)
{
    kz__gate_config g;
    memset(&g, 0, sizeof g);
    g.verifier = s->cfg.verifier;
    g.max_sessions = s->cfg.max_clients;
    g.n_ports = s->n_io;
    for (uint32_t i = 0; i < s->n_io; i++)
        g.ports[i] = kz__gate_port(s, i);
    g.disable_aes = s->cfg.disable_aes;
    g.challenge_rate = s->cfg.gate_rate_per_ip;
    g.resume_grace_ms = s->cfg.resume_grace_ms;
    g.log = s->cfg.log;
    g.alloc = s->cfg.alloc;
    kz__gate *gate = kz__gate_create(&g);
    sodium_memzero(&g.verifier.server_keys, sizeof g.verifier.server_keys);
    return gate;
}

static int kz__server_build(kz_netserver *s)
{
    const kz_allocator *a = &s->cfg.alloc;
    if (enet_initialize() != 0 || pthread_mutex_init(&s->gate_lock, NULL) != 0)
        return KZ_EIO;
    if (kz_counters_init(&s->counters, KZ_NET_C_COUNT, s->n_io + 1, kz__net_counter_names, a))
        return KZ_ENOMEM;
    s->app = kz_counters_block(&s->counters, s->n_io);
    for (uint32_t i = 0; i < s->n_io; i++) {
        int rc = kz__io_build(s, &s->io[i], i);
        if (rc != KZ_OK)
            return rc;
    }
    s->gate = kz__gate_for(s);
    /* The gate holds the only copy of the server's secret key it needs. */
    sodium_memzero(&s->cfg.verifier.server_keys, sizeof s->cfg.verifier.server_keys);
    s->sessions = kz_calloc(a, (size_t)s->cfg.max_clients * sizeof *s->sessions, 64);
    s->slot_io = kz_calloc(a, s->cfg.max_clients, 8);
    s->app_live = kz_calloc(a, s->cfg.max_clients, 8);
    s->soft_pending = kz_calloc(a, s->cfg.max_clients, 8);
    s->held_buf = UINT32_MAX;
    return s->gate && s->sessions && s->slot_io && s->app_live && s->soft_pending ? KZ_OK
                                                                                : KZ_ENOMEM;
}

static int kz__start_threads(kz_netserver *s)
{
    for (uint32_t i = 0; i < s->n_io; i++) {
        if (pthread_create(&s->io[i].thread, NULL, kz__io_thread, &s->io[i]) != 0)
            return KZ_EIO;
        s->io[i].thread_started = 1;
    }
    return KZ_OK;
}

kz_netserver *kz_netserver_create(const kz_netserver_config *cfg)
{
    kz_netserver_config c = *cfg;
    if (kz__config_resolve(&c) != KZ_OK) {
        kz_logf(&cfg->log, KZ_LOG_ERROR, "net", "invalid server transport configuration");
        sodium_memzero(&c.verifier.server_keys, sizeof c.verifier.server_keys);
        return NULL;
    }
    kz_netserver *s = kz_calloc(&c.alloc, sizeof *s, 64);
    if (s != NULL)
        s->cfg = c;
    sodium_memzero(&c.verifier.server_keys, sizeof c.verifier.server_keys);
    if (s == NULL)
        return NULL;
    s->n_io = c.io_threads;
    int rc = kz__server_build(s);
    if (rc == KZ_OK && c.threaded)
        rc = kz__start_threads(s);
    if (rc != KZ_OK) {
        kz_logf(&c.log, KZ_LOG_ERROR, "net", "server transport: %s (port %u)", kz_strerror(rc),
                c.port);
        kz_netserver_destroy(s);
        return NULL;
    }
    return s;
}

static void kz__io_fini(kz_netserver *s, kz__io *io)
{
    const kz_allocator *a = &s->cfg.alloc;
    size_t pool_bytes = (size_t)s->cfg.ring_capacity * KZ_MAX_MESSAGE_BYTES;
    if (io->host) {
        /* Tell every peer, so clients see a disconnect at once rather
         * than after their timeout (the MAC callback needs the host). */
        kz__serving = io;
        for (size_t i = 0; i < io->host->peerCount; i++)
            if (io->host->peers[i].state == ENET_PEER_STATE_CONNECTED)
                enet_peer_disconnect_now(&io->host->peers[i], 0);
        enet_host_flush(io->host);
        kz__serving = NULL;
        enet_host_destroy(io->host);
    }
    if (io->mac) {
        sodium_memzero(io->mac, (size_t)s->cfg.max_clients * sizeof *io->mac);
        kz_free(a, io->mac, (size_t)s->cfg.max_clients * sizeof *io->mac);
    }
    if (io->mac_by_cid.slots)
        kz__fixmap_fini(&io->mac_by_cid);
    kz_free(a, io->serial, (size_t)s->cfg.max_clients * sizeof *io->serial);
    if (io->wake_ready) {
        pthread_cond_destroy(&io->wake);
        pthread_mutex_destroy(&io->wake_lock);
        io->wake_ready = 0;
    }
    kz_free(a, io->in_pool.bytes, pool_bytes);
    kz_free(a, io->out_pool.bytes, pool_bytes);
    kz_free(a, io->in_pool.free, (size_t)s->cfg.ring_capacity * sizeof(uint32_t));
    kz_free(a, io->out_pool.free, (size_t)s->cfg.ring_capacity * sizeof(uint32_t));
    kz_spsc *rings[] = {&io->in_ring, &io->in_free, &io->out_ring, &io->out_free, &io->release};
    for (size_t r = 0; r < 5; r++)
        if (rings[r]->buf)
            kz_spsc_fini(rings[r]);
}

void kz_netserver_destroy(kz_netserver *s)
{
    if (s == NULL)
        return;
    atomic_store_explicit(&s->stop, 1, memory_order_release);
    for (uint32_t i = 0; i < s->n_io; i++)
        if (s->io[i].thread_started)
            pthread_join(s->io[i].thread, NULL);
    const kz_allocator a = s->cfg.alloc;
    for (uint32_t i = 0; i < s->n_io; i++)
        kz__io_fini(s, &s->io[i]);
    if (s->sessions) {
        sodium_memzero(s->sessions, (size_t)s->cfg.max_clients * sizeof *s->sessions);
        kz_free(&a, s->sessions, (size_t)s->cfg.max_clients * sizeof *s->sessions);
    }
    kz_free(&a, s->slot_io, s->cfg.max_clients);
    kz_free(&a, s->app_live, s->cfg.max_clients);
    kz_free(&a, (void *)s->soft_pending, s->cfg.max_clients);
    kz__gate_destroy(s->gate);
    if (s->counters.cells)
        kz_counters_fini(&s->counters);
    pthread_mutex_destroy(&s->gate_lock);
    /* Set when creation failed before the gate was built. */
    sodium_memzero(&s->cfg.verifier.server_keys, sizeof s->cfg.verifier.server_keys);
    kz_free(&a, s, sizeof *s);
}

uint16_t kz_netserver_port(const kz_netserver *s)
{
    return s->io[0].host->address.port;
}

uint16_t kz_netserver_port_of(const kz_netserver *s, uint32_t i)
{
    return i < s->n_io ? s->io[i].host->address.port : 0;
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

/* ---- work on the hosts (netserver_work.h) --------------------------------- */

void kz__netserver_set_work(kz_netserver *s, kz__io_work_fn fn, void *ctx)
{
    s->work_ctx = ctx;
    atomic_store_explicit(&s->work, fn, memory_order_release);
}

void kz__netserver_wake(kz_netserver *s)
{
    if (!s->cfg.threaded)
        return;
    for (uint32_t i = 0; i < s->n_io; i++) {
        kz__io *io = &s->io[i];
        pthread_mutex_lock(&io->wake_lock);
        io->woken = 1;
        pthread_cond_signal(&io->wake);
        pthread_mutex_unlock(&io->wake_lock);
    }
}

void kz__netserver_flush_queued(kz_netserver *s, uint32_t host)
{
    if (host < s->n_io)
        (void)kz__drain_outbound(&s->io[host]);
}

uint32_t kz__netserver_hosts(const kz_netserver *s)
{
    return s->n_io;
}

uint32_t kz__netserver_polled_host(const kz_netserver *s)
{
    return s->polled_host;
}

uint32_t kz__netserver_polled_serial(const kz_netserver *s)
{
    return s->polled_serial;
}

int kz__netserver_send_now(kz_netserver *s, uint32_t host, uint32_t slot, uint32_t serial,
                           uint8_t channel, uint8_t type, const void *data, uint32_t len)
{
    if (host >= s->n_io || slot >= s->cfg.max_clients || channel >= KZ_CHANNEL_COUNT ||
        len > KZ_MAX_MESSAGE_BYTES)
        return KZ_EINVAL;
    kz__io *io = &s->io[host];
    if (serial == 0 || io->serial[slot] != serial) {
        kz_counter_inc(io->c, KZ_NET_C_DROP_NO_SESSION);
        return KZ_ESTATE;
    }
    /* enet_peer_send only queues: the datagram (and its MAC) is made by
     * the host's next flush or service, on this same thread. */
    int rc = kz__seal_and_send(io, &s->sessions[slot], channel, type, data, len);
    io->sent_now += rc == KZ_OK;
    return rc;
}
