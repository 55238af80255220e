/*
 * Echo over loopback, Kizuna against plain ENet in the same run. N clients
 * (default 1,000) each keep K reliable 64-byte messages in flight (default
 * 4) against a server that sends every message straight back. The Kizuna
 * side goes through the whole transport: gate handshake, sealed packets,
 * the I/O thread, SPSC rings and an application echo loop. The plain side
 * is raw ENet doing the same work unsealed: same channel count, channel
 * and flags, payload, in-flight count and client code path, one service
 * thread that echoes each packet as it arrives, no gate. Target: plain
 * echo rate / Kizuna echo rate <= 1.3.
 *
 * Threads (the client side is identical on both sides):
 *   Kizuna   the library's server I/O thread, the application echo loop on
 *            the main thread, one client-driver thread updating all clients.
 *   plain    one server thread (ENet service + echo), one client-driver
 *            thread running the same driver code on raw ENet hosts.
 * Every client owns its own ENet host and socket; all traffic is on
 * 127.0.0.1.
 *
 * Channel: KZ_CHANNEL_EVENT (ENet reliable, ordered) on both sides, so no
 * message is lost to loopback socket overflow and the in-flight count stays
 * exact. As a guard, a message not echoed within 2 s is written off,
 * replaced and counted as a timeout (reported; it should stay 0).
 *
 * A run builds one side from nothing, connects its clients (timed and
 * reported, not part of the echo figures), warms up for 1 s, measures for
 * S seconds, and tears everything down; the other side then does the
 * same. Runs alternate which side goes first. The gate limits handshake
 * work to KZ_GATE_DEFAULT_RATE per second per source IP and every client
 * is 127.0.0.1, so Kizuna clients are started at a paced rate (two limiter
 * tokens per connect); the plain clients all connect at once.
 *
 * Left as each side has it: Kizuna's hosts use ENet's CRC-32 checksum and a
 * 1,200-byte MTU, plain ENet hosts have no checksum (--plain-crc32 1 gives
 * them one). When its rings are empty the echo loop naps 20 us
 * (--app-nap-us) instead of spinning, so that it leaves the cores to the
 * I/O and client threads. Besides rates and round trips the bench prints
 * CPU time per echo, split into the client-driver thread and the rest (the
 * server's threads): on a shared machine it moves less than the rates do.
 *
 *   kz-bench-echo [--clients N] [--seconds S] [--inflight K]
 *                 [--app-nap-us -1..1000] [--plain-crc32 0|1]
 *   KZ_BENCH_RUNS=R sets the runs (default 3 here)
 */
#include <arpa/inet.h>
#include <enet/enet.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <kizuna/hist.h>
#include <kizuna/transport.h>

#include "kzb_util.h"
#include "tests/support/loopback.h"

#define PAYLOAD_BYTES 64u
#define MAX_INFLIGHT 16u
#define MAX_CLIENTS 4000u
#define PROTO 0x4b5a42454e434831ull /* "KZBENCH1" */
#define SERVER_ID 11u
#define LOOPBACK 0x7f000001u
#define WARMUP_NS (1 * KZ_NS_PER_S)
#define WRITE_OFF_NS (2 * KZ_NS_PER_S)
/* The gate's limiter refills KZ_GATE_DEFAULT_RATE (100) tokens per second
 * per IP into a bucket of twice that; a connect takes two tokens (challenge
 * and verification). Start a burst, then stay just under 50 per second. */
#define KZ_CONNECT_BURST 90u
#define KZ_CONNECT_RATE 46u
#define PLAIN_QUEUE 64u

#define CLIENT_PENDING 0
#define CLIENT_UP 1
#define CLIENT_DOWN 2

static uint32_t opt_clients = 1000, opt_seconds = 5, opt_inflight = 4;
static long opt_app_nap_us = 20; /* app loop idle: >0 nap, 0 sched_yield, -1 spin */
static int opt_plain_crc = 0;    /* 1: plain ENet uses enet_crc32 as Kizuna does */
static uint64_t hard_deadline; /* kzb_now_ns() value no loop may pass */

static void nap_us(long us)
{
    struct timespec ts = {0, us * 1000};
    nanosleep(&ts, NULL);
}

static int past_hard_deadline(void)
{
    return kzb_now_ns() >= hard_deadline;
}

/* CPU time of the whole process or of the calling thread. */
static double cpu_seconds(clockid_t which)
{
    struct timespec ts;
    clock_gettime(which, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The kernel's count of UDP datagrams dropped because a socket's receive
 * buffer was full (Linux /proc/net/snmp, machine-wide), or -1 when it
 * cannot be read. Explains retransmissions and the latency tail. */
static long long udp_rcvbuf_errors(void)
{
    FILE *f = fopen("/proc/net/snmp", "r");
    if (f == NULL)
        return -1;
    char head[512], vals[512];
    long long v = -1;
    while (v < 0 && fgets(head, sizeof head, f) && fgets(vals, sizeof vals, f)) {
        if (strncmp(head, "Udp:", 4) != 0)
            continue;
        /* Find the column named RcvbufErrors, then the value in it. */
        int col = 0, want = -1;
        for (char *t = strtok(head, " \n"); t; t = strtok(NULL, " \n"), col++)
            if (strcmp(t, "RcvbufErrors") == 0)
                want = col;
        col = 0;
        for (char *t = strtok(vals, " \n"); t && want >= 0; t = strtok(NULL, " \n"), col++)
            if (col == want)
                v = strtoll(t, NULL, 10);
    }
    fclose(f);
    return v;
}

/* ---- one side's clients, behind a small table of operations --------------- */

/* What the driver needs of a client, so that both sides run the very same
 * driver loop. `open` is called on the driver thread only. */
typedef struct side_ops {
    const char *name;
    void *(*open)(void *side, uint32_t index);
    void (*close)(void *client);
    void (*update)(void *client, uint64_t now);
    int (*state)(const void *client);
    int (*send)(void *client, const uint8_t *data, uint32_t len);
    int (*recv)(void *client, const uint8_t **data, uint32_t *len);
    uint32_t pace_burst, pace_rate; /* connect pacing; rate 0 = all at once */
} side_ops;

/* ---- Kizuna side ---------------------------------------------------------- */

typedef struct kz_side {
    kz_sign_keypair backend;
    kz_box_keypair server_keys;
    kz_netserver *srv;
    uint64_t next_client_id; /* driver thread only */
} kz_side;

static int kz_side_mint(kz_side *s, uint64_t client_id, kz_connect_token *ct)
{
    kzt_keys k = {s->backend, s->server_keys};
    return kzt_mint(&k, PROTO, SERVER_ID, kz_netserver_port(s->srv), client_id, ct);
}

/* A fresh token and a unique client id every time, so a client that has to
 * start over never collides with its own earlier attempt at the gate. */
static void *kz_client_open(void *side, uint32_t index)
{
    (void)index;
    kz_side *s = side;
    kz_connect_token ct;
    if (kz_side_mint(s, ++s->next_client_id, &ct) != KZ_OK)
        return NULL;
    kz_netclient_config cc;
    memset(&cc, 0, sizeof cc);
    cc.connect_timeout_ms = 10000; /* rate-limited requests are retried */
    return kz_netclient_create(&cc, &ct);
}

static void kz_client_close(void *c)
{
    kz_netclient_destroy(c);
}

static void kz_client_update(void *c, uint64_t now)
{
    kz_netclient_update(c, now);
}

static int kz_client_state(const void *c)
{
    uint32_t st = kz_netclient_state(c);
    if (st == KZ_NETCLIENT_CONNECTED)
        return CLIENT_UP;
    return st == KZ_NETCLIENT_HANDSHAKE || st == KZ_NETCLIENT_CONNECTING ? CLIENT_PENDING
                                                                         : CLIENT_DOWN;
}

static int kz_client_send(void *c, const uint8_t *data, uint32_t len)
{
    return kz_netclient_send(c, KZ_CHANNEL_EVENT, 1, data, len);
}

static int kz_client_recv(void *c, const uint8_t **data, uint32_t *len)
{
    kz_netmsg m;
    while (kz_netclient_poll(c, &m) == KZ_OK) {
        if (m.kind != KZ_NETMSG_DATA)
            continue;
        *data = m.data;
        *len = m.len;
        return 1;
    }
    return 0;
}

static const side_ops kz_ops = {"kizuna", kz_client_open, kz_client_close, kz_client_update,
                                kz_client_state, kz_client_send, kz_client_recv,
                                KZ_CONNECT_BURST, KZ_CONNECT_RATE};

/* ---- plain ENet side ------------------------------------------------------ */

typedef struct plain_side {
    ENetHost *host;
    ENetAddress addr;
    pthread_t thread;
    atomic_int stop;
    uint64_t echoed, echo_failures;
} plain_side;

/* A raw ENet client shaped like kz_netclient: received packets wait in a
 * queue for recv, the one returned last is freed on the next recv. */
typedef struct plain_client {
    ENetHost *host;
    ENetPeer *peer;
    int state;
    ENetPacket *queue[PLAIN_QUEUE];
    uint32_t head, count;
    ENetPacket *held;
    uint64_t queue_drops;
} plain_client;

static void *plain_client_open(void *side, uint32_t index)
{
    (void)index;
    plain_side *s = side;
    plain_client *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->host = enet_host_create(NULL, 1, KZ_CHANNEL_COUNT, 0, 0);
    if (c->host && opt_plain_crc)
        c->host->checksum = enet_crc32;
    if (c->host)
        c->peer = enet_host_connect(c->host, &s->addr, KZ_CHANNEL_COUNT, 0);
    if (c->peer == NULL) {
        if (c->host)
            enet_host_destroy(c->host);
        free(c);
        return NULL;
    }
    return c;
}

static void plain_client_close(void *cp)
{
    plain_client *c = cp;
    while (c->count) {
        enet_packet_destroy(c->queue[c->head]);
        c->head = (c->head + 1) % PLAIN_QUEUE;
        c->count--;
    }
    if (c->held)
        enet_packet_destroy(c->held);
    if (c->peer && c->state == CLIENT_UP) {
        enet_peer_disconnect_now(c->peer, 0);
        enet_host_flush(c->host);
    }
    enet_host_destroy(c->host);
    free(c);
}

static void plain_client_dispatch(plain_client *c, ENetEvent *ev)
{
    switch (ev->type) {
    case ENET_EVENT_TYPE_CONNECT:
        c->state = CLIENT_UP;
        break;
    case ENET_EVENT_TYPE_RECEIVE:
        if (c->count == PLAIN_QUEUE) {
            c->queue_drops++;
            enet_packet_destroy(ev->packet);
            break;
        }
        c->queue[(c->head + c->count++) % PLAIN_QUEUE] = ev->packet;
        break;
    case ENET_EVENT_TYPE_DISCONNECT:
        c->state = CLIENT_DOWN;
        c->peer = NULL;
        break;
    default:
        break;
    }
}

/* The same ENet calls, in the same order, as kz_netclient_update. */
static void plain_client_update(void *cp, uint64_t now)
{
    (void)now;
    plain_client *c = cp;
    ENetEvent ev;
    int rc = enet_host_service(c->host, &ev, 0);
    while (rc > 0) {
        plain_client_dispatch(c, &ev);
        rc = enet_host_check_events(c->host, &ev);
    }
    enet_host_flush(c->host);
}

static int plain_client_state(const void *cp)
{
    return ((const plain_client *)cp)->state;
}

static int plain_client_send(void *cp, const uint8_t *data, uint32_t len)
{
    plain_client *c = cp;
    if (c->state != CLIENT_UP)
        return KZ_ESTATE;
    ENetPacket *pkt = enet_packet_create(data, len, ENET_PACKET_FLAG_RELIABLE);
    if (pkt == NULL)
        return KZ_ENOMEM;
    if (enet_peer_send(c->peer, KZ_CHANNEL_EVENT, pkt) != 0) {
        enet_packet_destroy(pkt);
        return KZ_EIO;
    }
    return KZ_OK;
}

static int plain_client_recv(void *cp, const uint8_t **data, uint32_t *len)
{
    plain_client *c = cp;
    if (c->held) {
        enet_packet_destroy(c->held);
        c->held = NULL;
    }
    if (c->count == 0)
        return 0;
    c->held = c->queue[c->head];
    c->head = (c->head + 1) % PLAIN_QUEUE;
    c->count--;
    *data = c->held->data;
    *len = (uint32_t)c->held->dataLength;
    return 1;
}

static const side_ops plain_ops = {"plain", plain_client_open, plain_client_close,
                                   plain_client_update, plain_client_state, plain_client_send,
                                   plain_client_recv, 0, 0};

/* The plain server: service with a 1 ms wait (as Kizuna's I/O thread does),
 * echo every received packet as a new packet on the same channel with the
 * same flags, flush once per pass. */
static void plain_echo(plain_side *s, ENetEvent *ev)
{
    ENetPacket *in = ev->packet;
    ENetPacket *out = enet_packet_create(in->data, in->dataLength,
                                         in->flags & ENET_PACKET_FLAG_RELIABLE);
    if (out == NULL || enet_peer_send(ev->peer, ev->channelID, out) != 0) {
        if (out)
            enet_packet_destroy(out);
        s->echo_failures++;
    } else {
        s->echoed++;
    }
    enet_packet_destroy(in);
}

static void *plain_server_thread(void *arg)
{
    plain_side *s = arg;
    while (!atomic_load_explicit(&s->stop, memory_order_acquire) && !past_hard_deadline()) {
        ENetEvent ev;
        int rc = enet_host_service(s->host, &ev, 1);
        while (rc > 0) {
            if (ev.type == ENET_EVENT_TYPE_RECEIVE)
                plain_echo(s, &ev);
            rc = enet_host_check_events(s->host, &ev);
        }
        enet_host_flush(s->host);
    }
    return NULL;
}

/* ---- the client driver ---------------------------------------------------- */

typedef struct run_result {
    double connect_s;
    uint32_t connected;
    uint32_t restarts;     /* clients that failed to connect and started over */
    uint32_t lost_clients; /* clients that went down during the measurement */
    double rate;           /* echoes per second in the window */
    double p50_us, p99_us;
    uint64_t timeouts;     /* messages written off after WRITE_OFF_NS */
    uint64_t misrouted;    /* echoes carrying another client's index */
    double cpu_cores;      /* process CPU time / wall time in the window */
    double cpu_us_per_echo;
    double client_us_per_echo; /* the client-driver thread's share */
    double server_us_per_echo; /* everything else: the server's threads */
    uint64_t server_drops; /* transport drop counters (Kizuna) or echo failures */
    long long rcvbuf_drops; /* kernel UDP receive-buffer drops in the window; -1 unknown */
    int ok;
} run_result;

typedef struct driver {
    const side_ops *ops;
    void *side;
    uint32_t n, k;
    void **clients;
    uint64_t *seq;     /* n * k: sequence number in flight in each slot */
    uint64_t *sent_ns; /* n * k: when it was sent; 0 = slot empty */
    uint64_t next_seq;
    kz_hist rtt;
    run_result *res;
    atomic_int done;
} driver;

typedef struct payload {
    uint32_t index, slot;
    uint64_t seq, sent_ns;
} payload;

static void driver_send(driver *d, uint32_t i, uint32_t slot, uint64_t now)
{
    uint8_t buf[PAYLOAD_BYTES];
    payload p = {i, slot, ++d->next_seq, now};
    memset(buf, 0xA5, sizeof buf);
    memcpy(buf, &p, sizeof p);
    size_t at = (size_t)i * d->k + slot;
    if (d->ops->send(d->clients[i], buf, sizeof buf) == KZ_OK) {
        d->seq[at] = p.seq;
        d->sent_ns[at] = now;
    } else {
        d->sent_ns[at] = 0; /* retried by the write-off scan */
    }
}

/* Starts client `i`. Failing to (no socket, no memory) ends the connect
 * phase; clients never started stay NULL and are skipped from then on. */
static int driver_start(driver *d, uint32_t i)
{
    d->clients[i] = d->ops->open(d->side, i);
    if (d->clients[i] == NULL)
        fprintf(stderr, "%s: client %u could not be created\n", d->ops->name, i);
    return d->clients[i] != NULL;
}

static int driver_up(const driver *d, uint32_t i)
{
    return d->clients[i] && d->ops->state(d->clients[i]) == CLIENT_UP;
}

static uint64_t pace_at(const side_ops *ops, uint64_t t0, uint32_t i)
{
    if (ops->pace_rate == 0 || i < ops->pace_burst)
        return t0;
    return t0 + (uint64_t)(i - ops->pace_burst) * KZ_NS_PER_S / ops->pace_rate;
}

/* Connects every client, started at the side's pace. A client that fails
 * (its handshake timed out) starts over with a fresh token, bounded by the
 * connect deadline. Returns the number connected. */
static uint32_t driver_connect(driver *d, uint64_t deadline)
{
    uint64_t t0 = kzb_now_ns();
    uint32_t started = 0, up = 0;
    while (up < d->n && kzb_now_ns() < deadline && !past_hard_deadline()) {
        uint64_t now = kzb_now_ns();
        while (started < d->n && now >= pace_at(d->ops, t0, started))
            if (!driver_start(d, started++))
                return up;
        up = 0;
        for (uint32_t i = 0; i < started; i++) {
            d->ops->update(d->clients[i], kzb_now_ns());
            int st = d->ops->state(d->clients[i]);
            if (st == CLIENT_DOWN) {
                d->ops->close(d->clients[i]);
                d->res->restarts++;
                if (!driver_start(d, i))
                    return up;
            }
            up += st == CLIENT_UP;
        }
        nap_us(200);
    }
    d->res->connect_s = (double)(kzb_now_ns() - t0) / 1e9;
    return up;
}

/* Takes in client i's echoes; each one frees its slot for the next. */
static void driver_receive(driver *d, uint32_t i, uint64_t measure_from, uint64_t *echoes)
{
    const uint8_t *data;
    uint32_t len;
    while (d->ops->recv(d->clients[i], &data, &len)) {
        uint64_t now = kzb_now_ns();
        payload p;
        if (len != PAYLOAD_BYTES)
            continue;
        memcpy(&p, data, sizeof p);
        if (p.index != i || p.slot >= d->k) {
            d->res->misrouted++;
            continue;
        }
        size_t at = (size_t)i * d->k + p.slot;
        if (d->seq[at] != p.seq || d->sent_ns[at] == 0)
            continue; /* an echo of a message already written off */
        if (now >= measure_from) {
            kz_hist_record(&d->rtt, (now - p.sent_ns) / KZ_NS_PER_US);
            (*echoes)++;
        }
        driver_send(d, i, p.slot, now);
    }
}

/* Replaces messages that have not come back in WRITE_OFF_NS (and slots
 * whose send failed). Reliable delivery should keep this at zero. */
static void driver_write_off(driver *d, uint64_t now, uint64_t measure_from)
{
    for (uint32_t i = 0; i < d->n; i++) {
        if (!driver_up(d, i))
            continue;
        for (uint32_t s = 0; s < d->k; s++) {
            uint64_t sent = d->sent_ns[(size_t)i * d->k + s];
            /* `sent` may be later than `now`: echoes of this pass. */
            if (sent != 0 && sent + WRITE_OFF_NS > now)
                continue;
            if (sent != 0 && now >= measure_from)
                d->res->timeouts++;
            driver_send(d, i, s, now);
        }
    }
}

/* Warm-up, then the measured window: echoes, round trips and CPU time
 * count from the first pass that starts after the warm-up. */
static void driver_echo(driver *d)
{
    uint64_t t0 = kzb_now_ns();
    uint64_t warm_end = t0 + WARMUP_NS, counted_from = UINT64_MAX;
    uint64_t end = warm_end + (uint64_t)opt_seconds * KZ_NS_PER_S;
    uint64_t echoes = 0, next_scan = t0;
    double cpu0 = 0, driver0 = 0;
    long long kernel_drops0 = -1;
    for (uint32_t i = 0; i < d->n; i++)
        if (driver_up(d, i))
            for (uint32_t s = 0; s < d->k; s++)
                driver_send(d, i, s, t0);
    uint64_t now = t0;
    while (now < end && !past_hard_deadline()) {
        if (counted_from == UINT64_MAX && now >= warm_end) {
            counted_from = now;
            cpu0 = cpu_seconds(CLOCK_PROCESS_CPUTIME_ID);
            driver0 = cpu_seconds(CLOCK_THREAD_CPUTIME_ID);
            kernel_drops0 = udp_rcvbuf_errors();
        }
        for (uint32_t i = 0; i < d->n; i++) {
            if (d->clients[i] == NULL)
                continue;
            d->ops->update(d->clients[i], kzb_now_ns());
            driver_receive(d, i, counted_from, &echoes);
        }
        if (now >= next_scan) {
            driver_write_off(d, now, counted_from);
            next_scan = now + 100 * KZ_NS_PER_MS;
        }
        now = kzb_now_ns();
    }
    if (counted_from == UINT64_MAX || now <= counted_from)
        return;
    double wall = (double)(now - counted_from) / 1e9;
    double cpu = cpu_seconds(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
    double driver_cpu = cpu_seconds(CLOCK_THREAD_CPUTIME_ID) - driver0;
    long long kernel_drops1 = udp_rcvbuf_errors();
    d->res->rcvbuf_drops = kernel_drops0 >= 0 && kernel_drops1 >= 0 ? kernel_drops1 - kernel_drops0
                                                                     : -1;
    for (uint32_t i = 0; i < d->n; i++)
        d->res->lost_clients += d->clients[i] && !driver_up(d, i);
    d->res->rate = (double)echoes / wall;
    d->res->p50_us = (double)kz_hist_percentile(&d->rtt, 50.0);
    d->res->p99_us = (double)kz_hist_percentile(&d->rtt, 99.0);
    d->res->cpu_cores = cpu / wall;
    d->res->cpu_us_per_echo = echoes ? cpu * 1e6 / (double)echoes : 0;
    d->res->client_us_per_echo = echoes ? driver_cpu * 1e6 / (double)echoes : 0;
    d->res->server_us_per_echo = echoes ? (cpu - driver_cpu) * 1e6 / (double)echoes : 0;
    d->res->ok = echoes > 0;
}

static void *driver_thread(void *arg)
{
    driver *d = arg;
    uint64_t cap = d->ops->pace_rate ? 30 + d->n / d->ops->pace_rate : 30;
    d->res->connected = driver_connect(d, kzb_now_ns() + cap * KZ_NS_PER_S);
    if (d->res->connected > 0)
        driver_echo(d);
    for (uint32_t i = 0; i < d->n; i++)
        if (d->clients[i])
            d->ops->close(d->clients[i]);
    atomic_store_explicit(&d->done, 1, memory_order_release);
    return NULL;
}

static int driver_init(driver *d, const side_ops *ops, void *side, run_result *res)
{
    memset(d, 0, sizeof *d);
    d->ops = ops;
    d->side = side;
    d->n = opt_clients;
    d->k = opt_inflight;
    d->res = res;
    d->clients = calloc(d->n, sizeof *d->clients);
    d->seq = calloc((size_t)d->n * d->k, sizeof *d->seq);
    d->sent_ns = calloc((size_t)d->n * d->k, sizeof *d->sent_ns);
    if (!d->clients || !d->seq || !d->sent_ns || kz_hist_init(&d->rtt, NULL, NULL) != KZ_OK)
        return -1;
    return 0;
}

static void driver_fini(driver *d)
{
    kz_hist_fini(&d->rtt);
    free(d->clients);
    free(d->seq);
    free(d->sent_ns);
}

/* ---- one run of each side ------------------------------------------------- */

static uint32_t ring_capacity_for(uint32_t n, uint32_t k)
{
    /* Room for every message in flight plus each client's connect and
     * disconnect notice, so a full ring never drops a reliable message. */
    uint64_t need = (uint64_t)n * k + 2u * n + 64u, cap = 4096;
    while (cap < need)
        cap *= 2;
    return (uint32_t)cap;
}

static kz_netserver *kz_server_start(kz_side *s)
{
    if (kz_sign_keypair_generate(&s->backend) || kz_box_keypair_generate(&s->server_keys))
        return NULL;
    kz_netserver_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.verifier.protocol_id = PROTO;
    cfg.verifier.server_id = SERVER_ID;
    memcpy(cfg.verifier.backend_pk, s->backend.public_key, sizeof s->backend.public_key);
    cfg.verifier.server_keys = s->server_keys;
    cfg.bind_ip = htonl(LOOPBACK);
    cfg.port = 0;
    cfg.max_clients = opt_clients + 16;
    cfg.threaded = 1;
    cfg.ring_capacity = ring_capacity_for(opt_clients, opt_inflight);
    return kz_netserver_create(&cfg);
}

/* The application loop: echo each data message on its own channel. When
 * the ring is empty it naps briefly rather than spin, so that on a small
 * machine it does not take the core the I/O thread needs. */
static void kz_app_loop(kz_netserver *srv, driver *d, uint64_t *send_failures)
{
    for (;;) {
        int finished = atomic_load_explicit(&d->done, memory_order_acquire);
        uint32_t n = 0;
        kz_netmsg m;
        while (n < 4096 && kz_netserver_poll(srv, &m) == KZ_OK) {
            n++;
            if (m.kind == KZ_NETMSG_DATA &&
                kz_netserver_send(srv, m.slot, m.channel, m.type, m.data, m.len) != KZ_OK)
                (*send_failures)++;
        }
        if (finished || past_hard_deadline())
            return;
        if (n == 0) {
            if (opt_app_nap_us > 0)
                nap_us(opt_app_nap_us);
            else if (opt_app_nap_us == 0)
                sched_yield();
        }
    }
}

static uint64_t counter_named(const kz_counters *c, const char *name)
{
    for (uint32_t i = 0; i < c->n_counters; i++)
        if (strcmp(kz_counters_name(c, i), name) == 0)
            return kz_counters_get(c, i);
    return 0;
}

static void run_kizuna(run_result *res)
{
    kz_side side;
    memset(&side, 0, sizeof side);
    memset(res, 0, sizeof *res);
    side.srv = kz_server_start(&side);
    if (side.srv == NULL) {
        fprintf(stderr, "kizuna: server did not start\n");
        return;
    }
    driver d;
    pthread_t t;
    uint64_t send_failures = 0;
    if (driver_init(&d, &kz_ops, &side, res) == 0 &&
        pthread_create(&t, NULL, driver_thread, &d) == 0) {
        kz_app_loop(side.srv, &d, &send_failures);
        pthread_join(t, NULL);
    }
    const kz_counters *nc = kz_netserver_counters(side.srv);
    res->server_drops = send_failures + counter_named(nc, "drop_inbound_ring_full") +
                        counter_named(nc, "drop_outbound_full") +
                        counter_named(nc, "drop_auth_failure") +
                        counter_named(nc, "drop_replay");
    driver_fini(&d);
    kz_netserver_destroy(side.srv);
}

static void run_plain(run_result *res)
{
    plain_side side;
    memset(&side, 0, sizeof side);
    memset(res, 0, sizeof *res);
    ENetAddress addr = {.host = htonl(LOOPBACK), .port = 0};
    side.host = enet_host_create(&addr, opt_clients + 16, KZ_CHANNEL_COUNT, 0, 0);
    if (side.host == NULL) {
        fprintf(stderr, "plain: server host did not start\n");
        return;
    }
    if (opt_plain_crc)
        side.host->checksum = enet_crc32;
    if (enet_socket_get_address(side.host->socket, &side.addr) != 0) {
        enet_host_destroy(side.host);
        return;
    }
    side.addr.host = htonl(LOOPBACK);
    driver d;
    pthread_t server_t, driver_t;
    if (driver_init(&d, &plain_ops, &side, res) == 0 &&
        pthread_create(&server_t, NULL, plain_server_thread, &side) == 0) {
        if (pthread_create(&driver_t, NULL, driver_thread, &d) == 0)
            pthread_join(driver_t, NULL);
        atomic_store_explicit(&side.stop, 1, memory_order_release);
        pthread_join(server_t, NULL);
    }
    res->server_drops = side.echo_failures;
    driver_fini(&d);
    enet_host_destroy(side.host);
}

/* ---- main ------------------------------------------------------------------ */

static void print_run(size_t run, const char *name, const run_result *r)
{
    printf("  run %zu %-6s connect %6.2f s (%u/%u up, %u restarts)  %8.0f echoes/s  "
           "rtt p50 %6.0f us p99 %6.0f us  cpu %.2f cores: %.2f us/echo "
           "(server %.2f, clients %.2f)  timeouts %llu lost %u drops %llu "
           "kernel rcvbuf drops %lld%s\n",
           run + 1, name, r->connect_s, r->connected, opt_clients, r->restarts, r->rate,
           r->p50_us, r->p99_us, r->cpu_cores, r->cpu_us_per_echo, r->server_us_per_echo,
           r->client_us_per_echo, (unsigned long long)r->timeouts, r->lost_clients,
           (unsigned long long)r->server_drops, r->rcvbuf_drops, r->ok ? "" : "  [FAILED]");
    fflush(stdout);
}

static int parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        long v = i + 1 < argc ? strtol(argv[i + 1], NULL, 10) : -1;
        if (strcmp(argv[i], "--clients") == 0 && v >= 1 && v <= MAX_CLIENTS)
            opt_clients = (uint32_t)v;
        else if (strcmp(argv[i], "--seconds") == 0 && v >= 1 && v <= 600)
            opt_seconds = (uint32_t)v;
        else if (strcmp(argv[i], "--inflight") == 0 && v >= 1 && v <= MAX_INFLIGHT)
            opt_inflight = (uint32_t)v;
        else if (strcmp(argv[i], "--app-nap-us") == 0 && v >= -1 && v <= 1000)
            opt_app_nap_us = v;
        else if (strcmp(argv[i], "--plain-crc32") == 0 && v >= 0 && v <= 1)
            opt_plain_crc = (int)v;
        else {
            fprintf(stderr,
                    "usage: %s [--clients 1..%u] [--seconds 1..600] [--inflight 1..%u]\n"
                    "          [--app-nap-us -1..1000] [--plain-crc32 0|1]\n",
                    argv[0], MAX_CLIENTS, MAX_INFLIGHT);
            return -1;
        }
        i++;
    }
    return 0;
}

static void on_alarm(int sig)
{
    static const char msg[] = "kz-bench-echo: hard wall-clock cap exceeded, aborting\n";
    (void)sig;
    ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)w;
    _exit(3);
}

/* Median (min .. max) of one double field of the per-run results. */
static void report(const char *name, const char *unit, const run_result *r, size_t runs,
                   size_t field_offset)
{
    double v[64];
    for (size_t i = 0; i < runs; i++)
        v[i] = *(const double *)((const char *)&r[i] + field_offset);
    kzb_report(name, unit, v, runs);
}

/* Median of the per-run quotient a.field / b.field (runs are paired). */
static void report_ratio(const char *name, const run_result *a, const run_result *b,
                         size_t runs, size_t field_offset)
{
    double v[64];
    for (size_t i = 0; i < runs; i++) {
        double x = *(const double *)((const char *)&a[i] + field_offset);
        double y = *(const double *)((const char *)&b[i] + field_offset);
        v[i] = y > 0 ? x / y : 0;
    }
    kzb_report(name, "x", v, runs);
}

#define FIELD(f) offsetof(run_result, f)

static void summarize(const run_result *kz, const run_result *pl, size_t runs)
{
    report("kizuna connect phase (not measured)", "s", kz, runs, FIELD(connect_s));
    report("plain connect phase (not measured)", "s", pl, runs, FIELD(connect_s));
    report("kizuna echoes", "per s", kz, runs, FIELD(rate));
    report("plain ENet echoes", "per s", pl, runs, FIELD(rate));
    report("kizuna rtt p50", "us", kz, runs, FIELD(p50_us));
    report("plain ENet rtt p50", "us", pl, runs, FIELD(p50_us));
    report("kizuna rtt p99", "us", kz, runs, FIELD(p99_us));
    report("plain ENet rtt p99", "us", pl, runs, FIELD(p99_us));
    report("kizuna cpu per echo, server threads", "us", kz, runs, FIELD(server_us_per_echo));
    report("plain cpu per echo, server thread", "us", pl, runs, FIELD(server_us_per_echo));
    report("kizuna cpu per echo, client driver", "us", kz, runs, FIELD(client_us_per_echo));
    report("plain cpu per echo, client driver", "us", pl, runs, FIELD(client_us_per_echo));
    report_ratio("RATIO echo rate plain/kizuna (<= 1.3)", pl, kz, runs, FIELD(rate));
    report_ratio("ratio rtt p50 kizuna/plain", kz, pl, runs, FIELD(p50_us));
    report_ratio("ratio rtt p99 kizuna/plain", kz, pl, runs, FIELD(p99_us));
    report_ratio("ratio server cpu/echo kizuna/plain", kz, pl, runs, FIELD(server_us_per_echo));
    report_ratio("ratio total cpu/echo kizuna/plain", kz, pl, runs, FIELD(cpu_us_per_echo));
    printf("ratios are medians of per-run quotients (runs are paired). RATIO echo rate =\n"
           "plain ENet echoes/s / Kizuna echoes/s: 1.0 = Kizuna as fast, 1.3 = plain ENet\n"
           "does 30%% more echoes in the same time. The other ratios put Kizuna on top\n"
           "(above 1 = Kizuna slower or costlier). cpu/echo: process CPU time in the window\n"
           "per echo; 'client driver' is the driver thread's own CPU, 'server' the rest.\n"
           "Run lines: timeouts = messages written off after 2 s; drops = Kizuna server\n"
           "ring/auth drops or plain echo failures; kernel rcvbuf drops = machine-wide UDP\n"
           "receive-buffer overflows in the window (each costs a reliable retransmission).\n");
}

static void run_pair(size_t r, run_result *kz, run_result *pl)
{
    /* Alternate which side goes first, so drift hits both alike. */
    if (r % 2 == 0) {
        run_kizuna(kz);
        print_run(r, "kizuna", kz);
    }
    run_plain(pl);
    print_run(r, "plain", pl);
    if (r % 2 == 1) {
        run_kizuna(kz);
        print_run(r, "kizuna", kz);
    }
}

int main(int argc, char **argv)
{
    kzb_begin(argc, argv, "echo over loopback: Kizuna transport vs plain ENet");
    if (parse_args(argc, argv) != 0)
        return 2;
    size_t runs = getenv("KZ_BENCH_RUNS") ? kzb_runs() : 3;
    /* Every loop checks hard_deadline; SIGALRM is the backstop. */
    uint64_t per_run = 2 * (opt_seconds + 1 + 15) + 30 + opt_clients / KZ_CONNECT_RATE + 30;
    uint64_t cap_s = 30 + runs * per_run;
    hard_deadline = kzb_now_ns() + cap_s * KZ_NS_PER_S;
    signal(SIGALRM, on_alarm);
    alarm((unsigned)(cap_s + 30));
    if (enet_initialize() != 0)
        return 1;
    printf("%u clients, %u x %u B in flight each, reliable channel %u, warm-up 1 s, "
           "window %u s, %zu runs, app nap %ld us, plain crc32 %s, hard cap %llu s\n",
           opt_clients, opt_inflight, PAYLOAD_BYTES, KZ_CHANNEL_EVENT, opt_seconds, runs,
           opt_app_nap_us, opt_plain_crc ? "on" : "off", (unsigned long long)cap_s);
    fflush(stdout);
    static run_result kz[64], pl[64];
    int all_ok = 1;
    for (size_t r = 0; r < runs; r++) {
        run_pair(r, &kz[r], &pl[r]);
        all_ok &= kz[r].ok && pl[r].ok && kz[r].connected == opt_clients &&
                  pl[r].connected == opt_clients;
    }
    summarize(kz, pl, runs);
    if (!all_ok)
        printf("WARNING: a run failed or did not connect every client; see the run lines.\n");
    kzb_end();
    return all_ok ? 0 : 1;
}
