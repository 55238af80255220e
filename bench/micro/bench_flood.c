/*
 * A legitimate client's connect time while the gate is flooded. A threaded
 * kz_netserver listens on 127.0.0.1; a flood thread sends, from many
 * loopback source addresses (one UDP socket bound to each 127.A.B.1,
 * A >= 10), well-formed gate REQUESTs carrying a valid token for this
 * server and a zero cookie, mixed with random junk datagrams, round-robin
 * over the sources, as fast as it can (or at --rate). Meanwhile a fresh
 * kz_netclient from 127.0.0.1, with a fresh token and client id each
 * trial, connects; the figure is the time from its first update to
 * KZ_NETCLIENT_CONNECTED. The same trials without the flood, in the same
 * run, are the baseline. Target: connect time under flood <= 1 s.
 *
 * From the gate's counters over the flood window it also reports what the
 * server sent back for what it received (bytes out / bytes in; the gate
 * must never amplify), and checks that token_verifications (public-key
 * work) equals the number of legitimate handshakes: spoofed sources never
 * prove their address, so they never get that far.
 *
 * Everything stays on 127.0.0.0/8, and the whole run is capped at 60 s.
 *
 *   kz-bench-flood [--sources N] [--rate PPS] [--trials T] [--junk-every J]
 *   (T trials each way, default 10; KZ_BENCH_RUNS is not used)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <kizuna/transport.h>

#include "kzb_util.h"
#include "tests/support/loopback.h"
#include "net/gate.h"

#define PROTO 0x4b5a464c4f4f4431ull /* "KZFLOOD1" */
#define SERVER_ID 12u
#define LOOPBACK 0x7f000001u
#define MAX_SOURCES 4096u
#define MAX_TRIALS 64u
#define JUNK_VARIANTS 64u
#define HARD_CAP_S 60u
#define TRIAL_TIMEOUT_MS 5000u
#define FLOOD_WARMUP_NS (500 * KZ_NS_PER_MS)

static uint32_t opt_sources = 256, opt_trials = 10, opt_junk_every = 8;
static uint64_t opt_rate; /* datagrams per second; 0 = as fast as possible */
static uint64_t hard_deadline;

static kz_sign_keypair backend;
static kz_box_keypair server_keys;

static void nap_us(long us)
{
    struct timespec ts = {0, us * 1000};
    nanosleep(&ts, NULL);
}

static int past_hard_deadline(void)
{
    return kzb_now_ns() >= hard_deadline;
}

static int mint(uint16_t port, uint64_t client_id, kz_connect_token *ct)
{
    kzt_keys k = {backend, server_keys};
    return kzt_mint(&k, PROTO, SERVER_ID, port, client_id, ct);
}

/* ---- the flood ------------------------------------------------------------ */

typedef struct flood {
    int fds[MAX_SOURCES];
    uint32_t n_fds;
    struct sockaddr_in to;
    uint8_t request[KZ_GATE_REQUEST_BYTES];
    size_t request_len;
    uint8_t junk[JUNK_VARIANTS][KZ_MTU];
    size_t junk_len[JUNK_VARIANTS];
    pthread_t thread;
    atomic_int stop;
    /* Written by the flood thread, read after the join. */
    uint64_t datagrams, bytes, send_errors, started_ns, stopped_ns;
} flood;

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Source i is 127.(10 + i / 256).(i % 256).1: distinct, all loopback, and
 * never 127.0.0.1, where the legitimate client lives. */
static int flood_bind_sources(flood *f)
{
    for (uint32_t i = 0; i < opt_sources; i++) {
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        if (fd < 0)
            return -1;
        f->fds[f->n_fds++] = fd;
        struct sockaddr_in a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(0x7f000001u | (10u + i / 256u) << 16 | (i % 256u) << 8);
        if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0)
            return -1;
    }
    return 0;
}

/* A REQUEST for this server with a valid token and a zero cookie (what a
 * spoofer can send without receiving anything), and junk of random sizes;
 * some junk starts with the gate's marker so it reaches the gate's parser. */
static int flood_prepare(flood *f, uint16_t port)
{
    kz_connect_token ct;
    kz__handshake hs;
    if (mint(port, 0xF100D, &ct) != KZ_OK || kz__handshake_init(&hs, &ct) != KZ_OK)
        return -1;
    f->request_len = kz__handshake_request(&hs, f->request);
    uint64_t rng = 0x9E3779B97F4A7C15ull ^ kzb_now_ns();
    for (uint32_t j = 0; j < JUNK_VARIANTS; j++) {
        f->junk_len[j] = 1 + xorshift(&rng) % KZ_MTU;
        for (size_t b = 0; b < f->junk_len[j]; b++)
            f->junk[j][b] = (uint8_t)xorshift(&rng);
        if (j % 4 == 0 && f->junk_len[j] >= 2) {
            f->junk[j][0] = KZ_GATE_MARK0;
            f->junk[j][1] = KZ_GATE_MARK1;
        }
    }
    memset(&f->to, 0, sizeof f->to);
    f->to.sin_family = AF_INET;
    f->to.sin_addr.s_addr = htonl(LOOPBACK);
    f->to.sin_port = htons(port);
    return flood_bind_sources(f);
}

static void flood_pace(const flood *f)
{
    if (opt_rate == 0)
        return;
    uint64_t due = f->started_ns + f->datagrams * KZ_NS_PER_S / opt_rate;
    while (kzb_now_ns() < due && !atomic_load_explicit(&f->stop, memory_order_relaxed))
        nap_us(100);
}

static void *flood_thread(void *arg)
{
    flood *f = arg;
    uint32_t src = 0, junk = 0;
    uint64_t n = 0;
    f->started_ns = kzb_now_ns();
    while (!atomic_load_explicit(&f->stop, memory_order_relaxed)) {
        if ((n & 1023) == 0 && past_hard_deadline())
            break;
        const uint8_t *d = f->request;
        size_t len = f->request_len;
        if (opt_junk_every && n % opt_junk_every == opt_junk_every - 1) {
            d = f->junk[junk];
            len = f->junk_len[junk];
            junk = junk + 1 == JUNK_VARIANTS ? 0 : junk + 1;
        }
        ssize_t w = sendto(f->fds[src], d, len, 0, (const struct sockaddr *)&f->to, sizeof f->to);
        if (w == (ssize_t)len) {
            f->datagrams++;
            f->bytes += len;
        } else {
            f->send_errors++;
        }
        src = src + 1 == f->n_fds ? 0 : src + 1;
        n++;
        if ((n & 63) == 0)
            flood_pace(f);
    }
    f->stopped_ns = kzb_now_ns();
    return NULL;
}

static void flood_close(flood *f)
{
    for (uint32_t i = 0; i < f->n_fds; i++)
        close(f->fds[i]);
    f->n_fds = 0;
}

/* ---- legitimate clients ----------------------------------------------------- */

/* Drains the server's messages (connect and disconnect notices); the main
 * thread is the server's application thread. */
static void drain_server(kz_netserver *srv)
{
    kz_netmsg m;
    for (int i = 0; i < 4096 && kz_netserver_poll(srv, &m) == KZ_OK; i++)
        ;
}

/* One trial's times in ms from the first update: the gate's accept (the
 * client leaves HANDSHAKE) and the ENet connect; negative when not reached. */
typedef struct trial_ms {
    double accepted, connected;
} trial_ms;

/* One trial: a fresh token and client id, updated every 100 us. */
static trial_ms connect_trial(kz_netserver *srv, uint64_t client_id)
{
    trial_ms r = {-1, -1};
    kz_connect_token ct;
    if (mint(kz_netserver_port(srv), client_id, &ct) != KZ_OK)
        return r;
    kz_netclient_config cc;
    memset(&cc, 0, sizeof cc);
    cc.connect_timeout_ms = TRIAL_TIMEOUT_MS;
    kz_netclient *c = kz_netclient_create(&cc, &ct);
    if (c == NULL)
        return r;
    uint64_t t0 = kzb_now_ns(), end = t0 + (TRIAL_TIMEOUT_MS + 500) * KZ_NS_PER_MS;
    while (kzb_now_ns() < end && !past_hard_deadline()) {
        kz_netclient_update(c, kzb_now_ns());
        uint32_t st = kz_netclient_state(c);
        double ms = (double)(kzb_now_ns() - t0) / 1e6;
        if (r.accepted < 0 && st != KZ_NETCLIENT_HANDSHAKE && st != KZ_NETCLIENT_FAILED)
            r.accepted = ms;
        if (st == KZ_NETCLIENT_CONNECTED)
            r.connected = ms;
        if (st != KZ_NETCLIENT_HANDSHAKE && st != KZ_NETCLIENT_CONNECTING)
            break;
        drain_server(srv);
        nap_us(100);
    }
    kz_netclient_destroy(c);
    /* Let the server see the disconnect and free the slot. */
    for (int i = 0; i < 50; i++) {
        drain_server(srv);
        nap_us(1000);
    }
    return r;
}

typedef struct trials {
    double ms[MAX_TRIALS];     /* connect times of the trials that connected */
    double gate_ms[MAX_TRIALS]; /* their gate-accept times */
    uint32_t connected, attempted;
} trials;

static void run_trials(kz_netserver *srv, uint64_t first_id, trials *t)
{
    memset(t, 0, sizeof *t);
    for (uint32_t i = 0; i < opt_trials && !past_hard_deadline(); i++) {
        trial_ms r = connect_trial(srv, first_id + i);
        t->attempted++;
        if (r.connected >= 0) {
            t->gate_ms[t->connected] = r.accepted;
            t->ms[t->connected++] = r.connected;
        }
    }
}

/* ---- report ---------------------------------------------------------------- */

static uint64_t gate_counter(const kz_counters *c, const uint64_t *snap, const char *name)
{
    for (uint32_t i = 0; i < c->n_counters; i++)
        if (strcmp(kz_counters_name(c, i), name) == 0)
            return snap[i];
    return 0;
}

static double max_of(const double *v, uint32_t n)
{
    double m = 0;
    for (uint32_t i = 0; i < n; i++)
        m = v[i] > m ? v[i] : m;
    return m;
}

static void report_trials(const char *name, const trials *t)
{
    if (t->connected == 0) {
        printf("%-40s no trial connected (%u attempted)\n", name, t->attempted);
        return;
    }
    kzb_report(name, "ms", t->ms, t->connected);
    kzb_report("  of which until the gate's accept", "ms", t->gate_ms, t->connected);
    if (t->connected != t->attempted)
        printf("  %u of %u trials did not connect within %u ms\n",
               t->attempted - t->connected, t->attempted, TRIAL_TIMEOUT_MS);
}

/* What the gate saw and sent while the trials ran under the flood. */
static void report_gate(const kz_counters *gc, const uint64_t *before, const uint64_t *after,
                        double window_s, double sent_rate)
{
    uint64_t delta[KZ_GATE_C_COUNT];
    for (uint32_t i = 0; i < gc->n_counters && i < KZ_GATE_C_COUNT; i++)
        delta[i] = after[i] - before[i];
    static const char *const shown[] = {"rx_datagrams",       "rx_bytes",
                                        "tx_bytes",           "challenges_sent",
                                        "drop_rate_limited",  "drop_unvalidated_source",
                                        "drop_size",          "drop_type",
                                        "token_verifications", "accepts_sent"};
    printf("gate counters during the flood trials:\n");
    for (size_t i = 0; i < sizeof shown / sizeof shown[0]; i++)
        printf("  %-28s %12llu\n", shown[i],
               (unsigned long long)gate_counter(gc, delta, shown[i]));
    uint64_t rx = gate_counter(gc, delta, "rx_bytes"), tx = gate_counter(gc, delta, "tx_bytes");
    double amp[1] = {rx ? (double)tx / (double)rx : 0};
    kzb_report("gate bytes out / bytes in (flood)", "x", amp, 1);
    double seen[1] = {window_s > 0 ? (double)gate_counter(gc, delta, "rx_datagrams") / window_s
                                   : 0};
    kzb_report("gate received (rest lost in the kernel)", "dgram/s", seen, 1);
    printf("  the gate read %.1f%% of what the flood sent\n",
           sent_rate > 0 ? 100.0 * seen[0] / sent_rate : 0.0);
}

/* ---- main ------------------------------------------------------------------ */

static int parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        long long v = i + 1 < argc ? strtoll(argv[i + 1], NULL, 10) : -1;
        if (strcmp(argv[i], "--sources") == 0 && v >= 1 && v <= MAX_SOURCES)
            opt_sources = (uint32_t)v;
        else if (strcmp(argv[i], "--rate") == 0 && v >= 0 && v <= 100000000)
            opt_rate = (uint64_t)v;
        else if (strcmp(argv[i], "--trials") == 0 && v >= 1 && v <= MAX_TRIALS)
            opt_trials = (uint32_t)v;
        else if (strcmp(argv[i], "--junk-every") == 0 && v >= 0 && v <= 1000000)
            opt_junk_every = (uint32_t)v;
        else {
            fprintf(stderr,
                    "usage: %s [--sources 1..%u] [--rate PPS (0 = unlimited)] "
                    "[--trials 1..%u] [--junk-every J (0 = none)]\n",
                    argv[0], MAX_SOURCES, MAX_TRIALS);
            return -1;
        }
        i++;
    }
    return 0;
}

static void on_alarm(int sig)
{
    static const char msg[] = "kz-bench-flood: hard wall-clock cap exceeded, aborting\n";
    (void)sig;
    ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)w;
    _exit(3);
}

static kz_netserver *server_start(void)
{
    if (kz_sign_keypair_generate(&backend) || kz_box_keypair_generate(&server_keys))
        return NULL;
    kz_netserver_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.verifier.protocol_id = PROTO;
    cfg.verifier.server_id = SERVER_ID;
    memcpy(cfg.verifier.backend_pk, backend.public_key, sizeof backend.public_key);
    cfg.verifier.server_keys = server_keys;
    cfg.bind_ip = htonl(LOOPBACK);
    cfg.max_clients = 64;
    cfg.threaded = 1;
    return kz_netserver_create(&cfg);
}

/* The flood window: start the flood, let it settle, run the trials, stop
 * it. Gate counters are snapshot around the trials. Returns 0 when the
 * flood ran. */
static int flooded_trials(kz_netserver *srv, flood *f, trials *t, uint64_t *before,
                          uint64_t *after, double *window_s)
{
    const kz_counters *gc = kz_netserver_gate_counters(srv);
    if (pthread_create(&f->thread, NULL, flood_thread, f) != 0)
        return -1;
    uint64_t settle = kzb_now_ns() + FLOOD_WARMUP_NS;
    while (kzb_now_ns() < settle) {
        drain_server(srv);
        nap_us(1000);
    }
    kz_counters_snapshot(gc, before);
    uint64_t t0 = kzb_now_ns();
    run_trials(srv, 2000, t);
    kz_counters_snapshot(gc, after);
    *window_s = (double)(kzb_now_ns() - t0) / 1e9;
    atomic_store_explicit(&f->stop, 1, memory_order_relaxed);
    pthread_join(f->thread, NULL);
    return 0;
}

int main(int argc, char **argv)
{
    kzb_begin(argc, argv, "gate under a spoofed flood: legitimate connect time");
    if (parse_args(argc, argv) != 0)
        return 2;
    hard_deadline = kzb_now_ns() + HARD_CAP_S * KZ_NS_PER_S;
    signal(SIGALRM, on_alarm);
    alarm(HARD_CAP_S + 15);
    static flood f;
    kz_netserver *srv = server_start();
    if (srv == NULL || flood_prepare(&f, kz_netserver_port(srv)) != 0) {
        fprintf(stderr, "setup failed: %s\n", srv ? strerror(errno) : "server");
        flood_close(&f);
        kz_netserver_destroy(srv);
        return 1;
    }
    printf("server 127.0.0.1:%u; flood: %u sources 127.10.0.1.., %zu-byte requests, "
           "junk every %u-th datagram (0 = none), rate %s; %u trials each way, hard cap %u s\n",
           kz_netserver_port(srv), opt_sources, f.request_len, opt_junk_every,
           opt_rate ? "limited" : "unlimited", opt_trials, HARD_CAP_S);
    if (opt_rate)
        printf("flood rate limit: %llu datagrams/s\n", (unsigned long long)opt_rate);
    fflush(stdout);

    trials base, flooded;
    run_trials(srv, 1000, &base);
    const kz_counters *gc = kz_netserver_gate_counters(srv);
    uint64_t before[KZ_GATE_C_COUNT], after[KZ_GATE_C_COUNT], total[KZ_GATE_C_COUNT];
    double window_s = 0;
    int flood_ok = gc->n_counters == KZ_GATE_C_COUNT &&
                   flooded_trials(srv, &f, &flooded, before, after, &window_s) == 0;
    kz_counters_snapshot(gc, total);
    flood_close(&f);

    report_trials("connect time, no flood", &base);
    if (!flood_ok) {
        printf("flood did not run\n");
        kz_netserver_destroy(srv);
        return 1;
    }
    report_trials("connect time, under flood", &flooded);
    double secs = (double)(f.stopped_ns - f.started_ns) / 1e9;
    double rate[1] = {secs > 0 ? (double)f.datagrams / secs : 0};
    double mbit[1] = {secs > 0 ? (double)f.bytes * 8 / secs / 1e6 : 0};
    kzb_report("flood sent", "dgram/s", rate, 1);
    kzb_report("flood sent", "Mbit/s", mbit, 1);
    printf("flood: %llu datagrams, %llu bytes in %.2f s, %llu send errors\n",
           (unsigned long long)f.datagrams, (unsigned long long)f.bytes, secs,
           (unsigned long long)f.send_errors);
    report_gate(gc, before, after, window_s, rate[0]);

    uint32_t legit = base.connected + flooded.connected;
    uint64_t verifies = gate_counter(gc, total, "token_verifications");
    uint64_t accepts = gate_counter(gc, total, "accepts_sent");
    double worst = max_of(flooded.ms, flooded.connected);
    printf("whole run: token_verifications %llu, accepts_sent %llu, legitimate clients "
           "connected %u -> %s\n",
           (unsigned long long)verifies, (unsigned long long)accepts, legit,
           verifies == legit ? "equal: spoofed sources did no public-key work"
                             : "NOT equal (see the counters above)");
    printf("under flood: p50 %.1f ms, max %.1f ms, %u/%u connected; target max <= 1000 ms: %s\n",
           flooded.connected ? kzb_median(flooded.ms, flooded.connected) : 0.0, worst,
           flooded.connected, flooded.attempted,
           flooded.connected == flooded.attempted && worst <= 1000.0 ? "met" : "NOT met");
    kz_netserver_destroy(srv);
    kzb_end();
    return 0;
}
