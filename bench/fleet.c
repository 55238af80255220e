/*
 * kizuna-bench fleet (see fleet.h): the single-process baseline and the
 * fleet, one after the other, with the same bots and world settings.
 *
 * Threads: the main thread starts the processes, runs the bots (kzb_run,
 * external mode) and samples every process at the measured window's start
 * and end through kzb_options.window_fn. A guard thread owns SIGINT,
 * SIGTERM and SIGHUP (blocked everywhere else) and polls the children
 * every 200 ms: a signal, or a child that exits without being asked to,
 * makes it stop every child, remove the temporary directory and exit, so
 * no process of the run is ever left behind.
 */
#define _GNU_SOURCE
#include "fleet.h"

#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "proc.h"
#include "runner.h"
#include "scenario.h"

#define FLEET_WORLD "kzb"
#define FLEET_UP_S 30u           /* a process has this long to log that it is ready */
#define FLEET_CONNECT_RATE 500u  /* bots starting per second (the servers' gate allows it) */
#define FLEET_MAX_EDGES 8u       /* a token's addresses */
#define FLEET_MAX_ARGS 48

static const char fleet_usage[] =
    "usage: kizuna-bench fleet [--edges N] [--clients N] [--seconds S] [--warmup S]\n"
    "                          [--scenario NAME] [--hz H] [--server-bin PATH]\n"
    "                          [--bots full|thin] [--bot-threads N] [--json FILE]\n"
    "                          [--logs DIR] [--quiet]\n"
    "\n"
    "Runs the same bots against one kizuna-server, then against one world served by\n"
    "nats-server, an authority and N edges, all started here on 127.0.0.1 in a\n"
    "temporary directory, and prints both side by side: clients connected, CPU\n"
    "seconds of every process over the measured window, NATS bytes per avatar-tick,\n"
    "snapshot age and input-to-snapshot latency, and the latency the bus adds.\n"
    "\n"
    "  --edges N          edges of the fleet 1..8, default 3\n"
    "  --clients N        bots, default 300\n"
    "  --seconds S        measured seconds of each run, default 20\n"
    "  --warmup S         seconds between connected and measured, default 3\n"
    "  --scenario NAME    wander (default), crowd, commute, churn, vr\n"
    "  --hz H             tick rate 10..128, default 30\n"
    "  --bots full|thin   full (default): clients that decode, predict and interpolate;\n"
    "                     thin: header-only clients (as kizuna-bench --bots thin)\n"
    "  --bot-threads N    threads running the bots 1..64, default 1\n"
    "  --server-bin PATH  kizuna-server (default: ../server/kizuna-server next to\n"
    "                     kizuna-bench in the build tree)\n"
    "  --json FILE        write the figures as JSON (docs/BENCH-REPORT.md,\n"
    "                     \"kizuna-bench-fleet/1\")\n"
    "  --logs DIR         keep the processes' logs in DIR (made if missing) instead of\n"
    "                     the temporary directory\n"
    "  --quiet            no progress lines on stderr\n"
    "\n"
    "nats-server is taken from PATH.\n";

typedef struct fleet_opts {
    uint32_t edges, clients, seconds, warmup, hz, bot_threads;
    int scenario, bots;
    const char *server_bin, *json, *logs;
    int quiet;
} fleet_opts;

/* What is read from the processes at one end of the measured window. */
typedef struct sample {
    double cpu[KZB_PROCS_MAX];     /* by index of the process table; -1 unread */
    double self;                   /* kizuna-bench: the bots and this thread */
    double wall;                   /* CLOCK_MONOTONIC, seconds */
    uint64_t nats[4];              /* /varz in_bytes, out_bytes, in_msgs, out_msgs */
    int have_nats;
    uint64_t bus_in, bus_out;      /* sum of the kizuna-servers' bus byte counters */
    int have_bus;
    uint64_t sessions[KZB_PROCS_MAX];  /* kizuna_clients_connected of each edge */
    uint64_t ticks_skipped;        /* single process or authority: ticks it fell behind by */
    uint64_t authority_lost;       /* edges: times the authority's updates stopped */
} sample;

/* One run's figures. */
typedef struct run_out {
    uint32_t target, connected_end, connected_peak;
    uint64_t kicks, timeouts;
    double seconds;
    uint64_t client_ticks;
    double age_p50, age_p99;       /* ms */
    double lat_p50, lat_p99;       /* ms; -1 when not measured */
    double lat_mean;               /* ms; -1 when not measured: whole ticks average out */
    uint32_t n;                    /* processes measured */
    char name[KZB_PROCS_MAX][KZB_PROC_NAME_LEN];
    double cpu[KZB_PROCS_MAX];
    uint64_t sessions[KZB_PROCS_MAX];  /* edges: clients at the window's end */
    double bench_cpu, servers_cpu;
    double window;                 /* wall seconds between the two samples */
    uint64_t nats[4];
    int have_nats;
    uint64_t bus_in, bus_out;
    int have_bus;
    uint64_t ticks_skipped, authority_lost;
} run_out;

typedef struct fleet {
    fleet_opts o;
    char dir[PATH_MAX], keys[PATH_MAX], server_bin[PATH_MAX], nats_bin[PATH_MAX];
    const char *logs;              /* where the processes' logs go: dir or --logs */
    kzb_procs procs;
    pthread_mutex_t end_lock;      /* the guard and the main thread's cleanup */
    int ended;
    /* the run being measured */
    int watch[KZB_PROCS_MAX];      /* process table indices */
    uint16_t admin[KZB_PROCS_MAX]; /* their admin ports (0: none) */
    int is_edge[KZB_PROCS_MAX];
    uint32_t n_watch;
    uint16_t nats_monitor;         /* 0: no nats-server in this run */
    sample at_start, at_end;
    run_out single, multi;
} fleet;

/* ---- options and programs ------------------------------------------------ */

static int parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || end == s || s[0] == '-' || v < lo || v > hi)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

/* 0, 1 (--help printed) or 2 (usage error printed). */
static int parse_opts(int argc, char **argv, fleet_opts *o)
{
    static const struct option longs[] = {
        {"edges", required_argument, NULL, 'E'},    {"clients", required_argument, NULL, 'n'},
        {"seconds", required_argument, NULL, 's'},  {"warmup", required_argument, NULL, 'w'},
        {"scenario", required_argument, NULL, 'S'}, {"hz", required_argument, NULL, 'z'},
        {"server-bin", required_argument, NULL, 'B'}, {"json", required_argument, NULL, 'j'},
        {"quiet", no_argument, NULL, 'q'},          {"help", no_argument, NULL, 'h'},
        {"logs", required_argument, NULL, 'L'},     {"bots", required_argument, NULL, 'b'},
        {"bot-threads", required_argument, NULL, 't'},
        {NULL, 0, NULL, 0}};
    *o = (fleet_opts){.edges = 3, .clients = 300, .seconds = 20, .warmup = 3, .hz = 30,
                      .bot_threads = 1, .scenario = KZB_SC_WANDER};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'E': bad = parse_u32(optarg, 1, FLEET_MAX_EDGES, &o->edges); break;
        case 'n': bad = parse_u32(optarg, 1, 20000, &o->clients); break;
        case 's': bad = parse_u32(optarg, 1, 86400, &o->seconds); break;
        case 'w': bad = parse_u32(optarg, 0, 3600, &o->warmup); break;
        case 'z': bad = parse_u32(optarg, 10, 128, &o->hz); break;
        case 'S':
            o->scenario = kzb_scenario_parse(optarg);
            /* hostile bots read the embedded server's counters */
            bad = o->scenario < 0 || o->scenario == KZB_SC_HOSTILE;
            break;
        case 'B': o->server_bin = optarg; break;
        case 'j': o->json = optarg; break;
        case 'L': o->logs = optarg; break;
        case 't': bad = parse_u32(optarg, 1, 64, &o->bot_threads); break;
        case 'b':
            o->bots = strcmp(optarg, "full") == 0 ? KZB_BOTS_FULL
                      : strcmp(optarg, "thin") == 0 ? KZB_BOTS_THIN : -1;
            bad = o->bots < 0;
            break;
        case 'q': o->quiet = 1; break;
        case 'h': fputs(fleet_usage, stdout); return 1;
        default: fputs(fleet_usage, stderr); return 2;
        }
        if (bad) {
            fprintf(stderr, "kizuna-bench fleet: bad value '%s'\n%s", optarg, fleet_usage);
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "kizuna-bench fleet: unexpected argument '%s'\n%s", argv[optind],
                fleet_usage);
        return 2;
    }
    return 0;
}

/* kizuna-server: --server-bin, else ../server/kizuna-server next to this
 * program in the build tree. 0, or -1 with a message. */
static int find_server(fleet *f)
{
    if (f->o.server_bin) {
        snprintf(f->server_bin, sizeof f->server_bin, "%s", f->o.server_bin);
    } else {
        char self[PATH_MAX];
        ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
        if (len <= 0) {
            fprintf(stderr, "kizuna-bench fleet: cannot read /proc/self/exe: give --server-bin\n");
            return -1;
        }
        self[len] = '\0';
        snprintf(f->server_bin, sizeof f->server_bin, "%.*s/../server/kizuna-server",
                 (int)(sizeof f->server_bin - 32), dirname(self));
    }
    if (access(f->server_bin, X_OK) != 0) {
        fprintf(stderr, "kizuna-bench fleet: no kizuna-server at %s (%s): give --server-bin PATH\n",
                f->server_bin, strerror(errno));
        return -1;
    }
    return 0;
}

/* nats-server from PATH. 0, or -1 with a message. */
static int find_nats(fleet *f)
{
    const char *path = getenv("PATH");
    char *copy = strdup(path ? path : "/usr/local/bin:/usr/bin:/bin");
    int rc = -1;
    char *save = NULL;
    for (char *d = strtok_r(copy, ":", &save); d && rc; d = strtok_r(NULL, ":", &save)) {
        snprintf(f->nats_bin, sizeof f->nats_bin, "%.*s/nats-server", PATH_MAX - 16, d);
        rc = access(f->nats_bin, X_OK);
    }
    free(copy);
    if (rc != 0)
        fprintf(stderr, "kizuna-bench fleet: nats-server is not on PATH (Debian: apt install "
                        "nats-server; or put its directory in PATH)\n");
    return rc == 0 ? 0 : -1;
}

/* ---- the guard: signals and children that die ----------------------------- */

/* Stops every child and removes the directory, once (the guard's exit or
 * the main thread's end, whichever comes first). 1 when this call did it. */
static int end_all(fleet *f)
{
    pthread_mutex_lock(&f->end_lock);
    int first = !f->ended;
    if (first) {
        kzb_procs_stop_all(&f->procs);
        if (f->dir[0] && kzb_rmtree(f->dir) != 0)
            fprintf(stderr, "kizuna-bench fleet: could not remove %s\n", f->dir);
        f->ended = 1;
    }
    pthread_mutex_unlock(&f->end_lock);
    return first;
}

static void *guard_main(void *arg)
{
    fleet *f = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    const struct timespec every = {0, 200 * 1000 * 1000};
    for (;;) {
        int sig = sigtimedwait(&set, NULL, &every);
        if (sig > 0) {
            fprintf(stderr, "kizuna-bench fleet: interrupted (signal %d): stopping every process "
                            "it started\n", sig);
            if (end_all(f))
                _exit(128 + sig);
            continue;
        }
        int i = kzb_procs_died(&f->procs);
        if (i < 0)
            continue;
        kzb_proc *p = &f->procs.p[i];
        char how[64];
        fprintf(stderr, "kizuna-bench fleet: %s (pid %d) %s before the run ended; the end of its "
                        "log:\n", p->name, (int)p->pid, kzb_proc_how(p->status, how, sizeof how));
        kzb_log_tail(p->log, "  | ", 20);
        if (end_all(f))
            _exit(1);
    }
    return NULL;
}

/* ---- starting processes ----------------------------------------------------- */

typedef struct argv_b {
    char *v[FLEET_MAX_ARGS + 1];
    int n;
    char text[4096];
    size_t used;
} argv_b;

static void arg(argv_b *a, const char *fmt, ...) KZ_PRINTF(2, 3);
static void arg(argv_b *a, const char *fmt, ...)
{
    if (a->n >= FLEET_MAX_ARGS || a->used >= sizeof a->text)
        return;  /* the callers' lists are far shorter */
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(a->text + a->used, sizeof a->text - a->used, fmt, ap);
    va_end(ap);
    if (w < 0 || (size_t)w >= sizeof a->text - a->used)
        return;
    a->v[a->n++] = a->text + a->used;
    a->v[a->n] = NULL;
    a->used += (size_t)w + 1u;
}

/* The world settings every kizuna-server of both runs gets (an edge
 * refuses an authority whose settings differ). */
static void world_args(const fleet *f, argv_b *a)
{
    uint32_t max = f->o.clients + f->o.clients / 8u + 16u;
    arg(a, "--keys");
    arg(a, "%s", f->keys);
    arg(a, "--tick-hz");
    arg(a, "%u", f->o.hz);
    arg(a, "--max-clients");
    arg(a, "%u", max);
    arg(a, "--io-threads");
    arg(a, "%u", (max + 4094u) / 4095u);
    arg(a, "--spawn-radius");
    arg(a, "%.1f", (double)kzb_scenario_radius(f->o.scenario, f->o.clients));
    arg(a, "--spawn-seed");
    arg(a, "1");
    arg(a, "--gate-rate");
    arg(a, "1000000");  /* every bot comes from 127.0.0.1 */
    arg(a, "--shutdown-grace");
    arg(a, "0");
    arg(a, "--log-level");
    arg(a, "info");
}

static int spawn(fleet *f, const char *name, argv_b *a, const char *log_name, int expect_exit)
{
    char log[PATH_MAX];
    snprintf(log, sizeof log, "%.*s/%s", PATH_MAX - 64, f->logs, log_name);
    return kzb_proc_spawn(&f->procs, name, a->v, log, expect_exit);
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits until process i's log holds `event` (and reads its `key` into
 * *out). 0, or -1 with a message after FLEET_UP_S. A process that exits
 * meanwhile is the guard's to report. */
static int wait_event(fleet *f, int i, const char *event, const char *key, uint64_t *out)
{
    double until = mono_s() + FLEET_UP_S;
    while (kzb_log_event(f->procs.p[i].log, event, key, out) != 0) {
        if (mono_s() > until) {
            fprintf(stderr, "kizuna-bench fleet: %s did not log %s within %u s; the end of its "
                            "log:\n", f->procs.p[i].name, event, FLEET_UP_S);
            kzb_log_tail(f->procs.p[i].log, "  | ", 20);
            return -1;
        }
        pause_ms(50);
    }
    return 0;
}

static int keygen(fleet *f)
{
    argv_b a = {0};
    arg(&a, "%s", f->server_bin);
    arg(&a, "keygen");
    arg(&a, "--out");
    arg(&a, "%s", f->keys);
    int i = spawn(f, "kizuna-server keygen", &a, "keygen.log", 1);
    if (i < 0)
        return -1;
    int status = kzb_proc_wait(&f->procs, i, FLEET_UP_S * 1000u);
    if (status < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char how[64];
        fprintf(stderr, "kizuna-bench fleet: kizuna-server keygen %s:\n",
                status < 0 ? "did not finish" : kzb_proc_how(status, how, sizeof how));
        kzb_log_tail(f->procs.p[i].log, "  | ", 10);
        return -1;
    }
    return 0;
}

/* ---- the measured window ------------------------------------------------------ */

static const char *const nats_keys[4] = {"\"in_bytes\"", "\"out_bytes\"", "\"in_msgs\"",
                                         "\"out_msgs\""};

/* Adds what one kizuna-server's /metrics says to s: in a fleet its bus
 * byte counters (have_bus cleared when they cannot be read); an edge's
 * clients and lost authorities; the ticks a simulating server skipped. */
static void sample_metrics(fleet *f, uint32_t k, sample *s)
{
    char *m = kzb_http_get(f->admin[k], "/metrics");
    uint64_t in = 0, out = 0, n = 0;
    if (f->nats_monitor && (!m || kzb_find_u64(m, "\nkizuna_bus_bytes_in_total ", &in) != 0 ||
                            kzb_find_u64(m, "\nkizuna_bus_bytes_out_total ", &out) != 0))
        s->have_bus = 0;
    s->bus_in += in;
    s->bus_out += out;
    if (m && f->is_edge[k]) {
        (void)kzb_find_u64(m, "\nkizuna_clients_connected ", &s->sessions[k]);
        if (kzb_find_u64(m, "\nkizuna_bus_authority_lost_total ", &n) == 0)
            s->authority_lost += n;
    } else if (m && kzb_find_u64(m, "\nkizuna_ticks_skipped_total ", &n) == 0) {
        s->ticks_skipped += n;
    }
    free(m);
}

static void take_sample(fleet *f, sample *s)
{
    memset(s, 0, sizeof *s);
    for (uint32_t k = 0; k < f->n_watch; k++)
        if (kzb_proc_cpu_seconds(f->procs.p[f->watch[k]].pid, &s->cpu[k]) != 0)
            s->cpu[k] = -1;
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    s->self = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    s->wall = mono_s();
    s->have_bus = f->nats_monitor != 0;
    for (uint32_t k = 0; k < f->n_watch; k++)
        if (f->admin[k])
            sample_metrics(f, k, s);
    if (!f->nats_monitor)
        return;
    char *v = kzb_http_get(f->nats_monitor, "/varz");
    s->have_nats = v != NULL;
    for (int k = 0; k < 4; k++)
        if (!v || kzb_find_u64(v, nats_keys[k], &s->nats[k]) != 0)
            s->have_nats = 0;
    free(v);
}

/* kzb_options.window_fn: the window's two ends. */
static void on_window(void *ctx, const char *which)
{
    fleet *f = ctx;
    take_sample(f, strcmp(which, "start") == 0 ? &f->at_start : &f->at_end);
}

static void on_progress(void *ctx, const kzb_point *p)
{
    (void)ctx;
    kzb_report_progress_line(stderr, p);
}

static double ms_at(const kz_hist *h, double pct)
{
    return kz_hist_total(h) ? (double)kz_hist_percentile(h, pct) / 1e6 : -1;
}

/* A run's figures from its result and the window's two samples. */
static void fill_out(fleet *f, const kzb_result *r, run_out *out)
{
    const sample *a = &f->at_start, *b = &f->at_end;
    memset(out, 0, sizeof *out);
    out->target = r->clients_target;
    out->connected_end = r->connected_end;
    out->connected_peak = r->connected_peak;
    out->kicks = r->kicks;
    out->timeouts = r->timeouts;
    out->seconds = r->measure_seconds;
    out->client_ticks = r->client_ticks;
    out->age_p50 = ms_at(&r->snapshot_age_ns, 50);
    out->age_p99 = ms_at(&r->snapshot_age_ns, 99);
    out->lat_p50 = ms_at(&r->input_latency_ns, 50);
    out->lat_p99 = ms_at(&r->input_latency_ns, 99);
    out->lat_mean = out->lat_p50 >= 0 ? kz_hist_mean(&r->input_latency_ns) / 1e6 : -1.0;
    out->n = f->n_watch;
    for (uint32_t k = 0; k < f->n_watch; k++) {
        snprintf(out->name[k], sizeof out->name[k], "%s", f->procs.p[f->watch[k]].name);
        out->cpu[k] = a->cpu[k] >= 0 && b->cpu[k] >= 0 ? b->cpu[k] - a->cpu[k] : -1;
        out->servers_cpu += out->cpu[k] > 0 ? out->cpu[k] : 0;
        out->sessions[k] = b->sessions[k];
    }
    out->bench_cpu = b->self - a->self;
    out->window = b->wall - a->wall;
    out->have_nats = a->have_nats && b->have_nats;
    for (int k = 0; k < 4; k++)
        out->nats[k] = out->have_nats ? b->nats[k] - a->nats[k] : 0;
    out->have_bus = a->have_bus && b->have_bus;
    out->bus_in = out->have_bus ? b->bus_in - a->bus_in : 0;
    out->bus_out = out->have_bus ? b->bus_out - a->bus_out : 0;
    out->ticks_skipped = b->ticks_skipped - a->ticks_skipped;
    out->authority_lost = b->authority_lost - a->authority_lost;
}

/* The bots against `connect` (one address or a list), measured. */
static int run_bots(fleet *f, const char *connect, run_out *out)
{
    kzb_options o = {
        .clients = f->o.clients, .hz = f->o.hz, .seconds = f->o.seconds, .warmup = f->o.warmup,
        .scenario = f->o.scenario, .seed = 1, .protocol_id = 0x4B495A554E410001ull,
        .bot_threads = f->o.bot_threads, .max_visible = 100, .connect = connect, .keys = f->keys,
        .connect_rate = FLEET_CONNECT_RATE, .quiet = f->o.quiet, .bots = f->o.bots,
        .window_fn = on_window,
        .window_ctx = f,
    };
    kzb_result r;
    if (kzb_result_init(&r, o.seconds) != 0)
        return -1;
    memset(&f->at_start, 0, sizeof f->at_start);
    memset(&f->at_end, 0, sizeof f->at_end);
    int rc = kzb_run(&o, &r, on_progress, NULL);
    if (rc != 0)
        fprintf(stderr, "kizuna-bench fleet: the bots' run against %s failed\n", connect);
    else
        fill_out(f, &r, out);
    kzb_result_fini(&r);
    return rc == 0 ? 0 : -1;
}

/* ---- the two runs -------------------------------------------------------------- */

static void watch(fleet *f, int i, uint16_t admin, int is_edge)
{
    f->watch[f->n_watch] = i;
    f->admin[f->n_watch] = admin;
    f->is_edge[f->n_watch] = is_edge;
    f->n_watch++;
}

static int run_single(fleet *f)
{
    argv_b a = {0};
    arg(&a, "%s", f->server_bin);
    arg(&a, "run");
    arg(&a, "--bind");
    arg(&a, "127.0.0.1");
    arg(&a, "--port");
    arg(&a, "0");
    arg(&a, "--admin");
    arg(&a, "127.0.0.1:0");
    world_args(f, &a);
    int i = spawn(f, "kizuna-server", &a, "single.log", 0);
    uint64_t port = 0, admin = 0;
    if (i < 0 || wait_event(f, i, "listening", "udp_port", &port) != 0 ||
        wait_event(f, i, "listening", "admin_port", &admin) != 0)
        return -1;
    if (!f->o.quiet)
        fprintf(stderr, "kizuna-bench fleet: single process: kizuna-server on 127.0.0.1:%llu\n",
                (unsigned long long)port);
    f->n_watch = 0;
    f->nats_monitor = 0;
    watch(f, i, (uint16_t)admin, 0);
    char connect[32];
    snprintf(connect, sizeof connect, "127.0.0.1:%u", (unsigned)port);
    int rc = run_bots(f, connect, &f->single);
    (void)kzb_proc_stop(&f->procs, i);
    return rc;
}

/* nats-server with JetStream in the directory, on two free loopback
 * ports (clients, monitoring); ready once /varz answers. */
static int start_nats(fleet *f, uint16_t *client_port)
{
    uint16_t port = 0, mon = 0;
    for (int tries = 0; tries < 8 && port == mon; tries++)
        if (kzb_free_tcp_port(&port) != 0 || kzb_free_tcp_port(&mon) != 0)
            port = mon = 0;
    if (port == mon) {
        fprintf(stderr, "kizuna-bench fleet: no free TCP ports on 127.0.0.1\n");
        return -1;
    }
    argv_b a = {0};
    arg(&a, "%s", f->nats_bin);
    arg(&a, "-js");
    arg(&a, "-a");
    arg(&a, "127.0.0.1");
    arg(&a, "-p");
    arg(&a, "%u", port);
    arg(&a, "-m");
    arg(&a, "%u", mon);
    arg(&a, "-sd");
    arg(&a, "%s/js", f->dir);
    int i = spawn(f, "nats-server", &a, "nats.log", 0);
    if (i < 0)
        return -1;
    double until = mono_s() + FLEET_UP_S;
    char *v;
    while ((v = kzb_http_get(mon, "/varz")) == NULL) {
        if (mono_s() > until) {
            fprintf(stderr, "kizuna-bench fleet: nats-server's monitoring port %u did not answer "
                            "within %u s; the end of its log:\n", mon, FLEET_UP_S);
            kzb_log_tail(f->procs.p[i].log, "  | ", 20);
            return -1;
        }
        pause_ms(50);
    }
    free(v);
    f->nats_monitor = mon;
    watch(f, i, 0, 0);
    *client_port = port;
    return 0;
}

/* The authority (no UDP) and N edges; each edge is up once it logged
 * world_synced and listening. Fills `connect` with the edges' list. */
static int start_world(fleet *f, uint16_t nats_port, char *connect, size_t cap)
{
    argv_b a = {0};
    arg(&a, "%s", f->server_bin);
    arg(&a, "run");
    arg(&a, "--role");
    arg(&a, "authority");
    arg(&a, "--nats");
    arg(&a, "nats://127.0.0.1:%u", nats_port);
    arg(&a, "--world");
    arg(&a, FLEET_WORLD);
    arg(&a, "--admin");
    arg(&a, "127.0.0.1:0");
    world_args(f, &a);
    int auth = spawn(f, "authority", &a, "authority.log", 0);
    uint64_t admin = 0, port = 0;
    if (auth < 0 || wait_event(f, auth, "listening", "admin_port", &admin) != 0)
        return -1;
    watch(f, auth, (uint16_t)admin, 0);
    int edge[FLEET_MAX_EDGES];
    for (uint32_t e = 0; e < f->o.edges; e++) {
        argv_b b = {0};
        char name[16], log[32];
        arg(&b, "%s", f->server_bin);
        arg(&b, "run");
        arg(&b, "--role");
        arg(&b, "edge");
        arg(&b, "--edge");
        arg(&b, "%u", e + 1u);
        arg(&b, "--nats");
        arg(&b, "nats://127.0.0.1:%u", nats_port);
        arg(&b, "--world");
        arg(&b, FLEET_WORLD);
        arg(&b, "--bind");
        arg(&b, "127.0.0.1");
        arg(&b, "--port");
        arg(&b, "0");
        arg(&b, "--admin");
        arg(&b, "127.0.0.1:0");
        world_args(f, &b);
        snprintf(name, sizeof name, "edge %u", e + 1u);
        snprintf(log, sizeof log, "edge%u.log", e + 1u);
        if ((edge[e] = spawn(f, name, &b, log, 0)) < 0)
            return -1;
    }
    size_t len = 0;
    connect[0] = '\0';
    for (uint32_t e = 0; e < f->o.edges; e++) {
        if (wait_event(f, edge[e], "world_synced", NULL, NULL) != 0 ||
            wait_event(f, edge[e], "listening", "udp_port", &port) != 0 ||
            wait_event(f, edge[e], "listening", "admin_port", &admin) != 0)
            return -1;
        watch(f, edge[e], (uint16_t)admin, 1);
        int w = snprintf(connect + len, cap - len, "%s127.0.0.1:%u", e ? "," : "", (unsigned)port);
        len += w > 0 ? (size_t)w : 0;
    }
    return len < cap ? 0 : -1;
}

static int run_fleet(fleet *f)
{
    uint16_t nats_port;
    char connect[FLEET_MAX_EDGES * 24];
    f->n_watch = 0;
    f->nats_monitor = 0;
    if (start_nats(f, &nats_port) != 0 || start_world(f, nats_port, connect, sizeof connect) != 0)
        return -1;
    if (!f->o.quiet)
        fprintf(stderr, "kizuna-bench fleet: fleet: nats-server on 127.0.0.1:%u, an authority and "
                        "%u edges on %s\n", nats_port, f->o.edges, connect);
    return run_bots(f, connect, &f->multi);
}

/* ---- the figures ---------------------------------------------------------------- */

static double ratio(double a, double b)
{
    return b > 0 ? a / b : -1;
}

/* Fleet CPU over single CPU, each per second of its own window (the two
 * windows differ by the sampling's fraction of a second). */
static double cpu_ratio(const run_out *m, const run_out *s, int with_bots)
{
    double fm = m->servers_cpu + (with_bots ? m->bench_cpu : 0);
    double fs = s->servers_cpu + (with_bots ? s->bench_cpu : 0);
    return ratio(ratio(fm, m->window), ratio(fs, s->window));
}

/* "1.2 / 3.4" or "-" into out. */
static const char *pair(double p50, double p99, char *out, size_t cap)
{
    if (p50 < 0 || p99 < 0)
        snprintf(out, cap, "-");
    else
        snprintf(out, cap, "%.2f / %.2f", p50, p99);
    return out;
}

static void print_cpu_rows(FILE *out, const run_out *s, const run_out *m)
{
    fprintf(out, "CPU seconds over the measured window (%.2f s single, %.2f s fleet):\n", s->window,
            m->window);
    for (uint32_t k = 0; k < s->n; k++)
        fprintf(out, "  %-32s %14.2f %16s\n", s->name[k], s->cpu[k], "-");
    for (uint32_t k = 0; k < m->n; k++) {
        char label[64];
        if (strncmp(m->name[k], "edge", 4) == 0)
            snprintf(label, sizeof label, "%s (%llu clients)", m->name[k],
                     (unsigned long long)m->sessions[k]);
        else
            snprintf(label, sizeof label, "%s", m->name[k]);
        fprintf(out, "  %-32s %14s %16.2f\n", label, "-", m->cpu[k]);
    }
    fprintf(out, "  %-32s %14.2f %16.2f\n", "kizuna-bench (the bots)", s->bench_cpu, m->bench_cpu);
    fprintf(out, "  %-32s %14.2f %16.2f\n", "servers (all but the bots)", s->servers_cpu,
            m->servers_cpu);
    fprintf(out, "  %-32s %14.2f %16.2f\n", "all", s->servers_cpu + s->bench_cpu,
            m->servers_cpu + m->bench_cpu);
    fprintf(out, "fleet CPU / single CPU (per second of window): servers %.2f, with the bots "
                 "%.2f\n", cpu_ratio(m, s, 0), cpu_ratio(m, s, 1));
}

static void print_bus(FILE *out, const run_out *m)
{
    double ticks = (double)m->client_ticks;
    if (m->have_nats)
        fprintf(out, "NATS (nats-server /varz over the window): in %llu bytes in %llu msgs, out "
                     "%llu bytes in %llu msgs; %.1f bytes per avatar-tick (in + out, %llu "
                     "avatar-ticks)\n",
                (unsigned long long)m->nats[0], (unsigned long long)m->nats[2],
                (unsigned long long)m->nats[1], (unsigned long long)m->nats[3],
                ratio((double)(m->nats[0] + m->nats[1]), ticks),
                (unsigned long long)m->client_ticks);
    else
        fprintf(out, "NATS: nats-server's /varz could not be read\n");
    if (m->have_bus)
        fprintf(out, "bus counters of the kizuna-servers (/metrics): written %llu bytes (%.1f per "
                     "avatar-tick), read %llu bytes (%.1f per avatar-tick)\n",
                (unsigned long long)m->bus_out, ratio((double)m->bus_out, ticks),
                (unsigned long long)m->bus_in, ratio((double)m->bus_in, ticks));
}

static void print_figures(const fleet *f, FILE *out)
{
    const run_out *s = &f->single, *m = &f->multi;
    char a[48], b[48];
    fprintf(out, "kizuna-bench fleet: %s, %u %s bots, %u Hz, %u s measured (warmup %u s), %u edges; "
                 "this machine: %ld cores\n",
            kzb_scenario_name(f->o.scenario), f->o.clients,
            f->o.bots == KZB_BOTS_THIN ? "thin" : "full", f->o.hz, f->o.seconds, f->o.warmup,
            f->o.edges, sysconf(_SC_NPROCESSORS_ONLN));
    fprintf(out, "  %-32s %14s %16s\n", "", "single", "fleet");
    fprintf(out, "  %-32s %14u %16u   (of %u)\n", "clients connected at the end", s->connected_end,
            m->connected_end, f->o.clients);
    fprintf(out, "  %-32s %14u %16u\n", "clients connected at the peak", s->connected_peak,
            m->connected_peak);
    fprintf(out, "  %-32s %14.1f %16.1f\n", "measured seconds", s->seconds, m->seconds);
    snprintf(a, sizeof a, "%llu / %llu", (unsigned long long)s->kicks,
             (unsigned long long)s->timeouts);
    snprintf(b, sizeof b, "%llu / %llu", (unsigned long long)m->kicks,
             (unsigned long long)m->timeouts);
    fprintf(out, "  %-32s %14s %16s\n", "bots kicked / timed out", a, b);
    fprintf(out, "  %-32s %14llu %16llu\n", "ticks skipped (fell behind)",
            (unsigned long long)s->ticks_skipped, (unsigned long long)m->ticks_skipped);
    fprintf(out, "  %-32s %14s %16llu\n", "edges' authority lost", "-",
            (unsigned long long)m->authority_lost);
    fprintf(out, "  %-32s %14s %16s\n", "snapshot age p50 / p99 ms",
            pair(s->age_p50, s->age_p99, a, sizeof a), pair(m->age_p50, m->age_p99, b, sizeof b));
    fprintf(out, "  %-32s %14s %16s\n", "input to snapshot p50 / p99 ms",
            pair(s->lat_p50, s->lat_p99, a, sizeof a), pair(m->lat_p50, m->lat_p99, b, sizeof b));
    print_cpu_rows(out, s, m);
    print_bus(out, m);
    if (s->lat_p50 >= 0 && m->lat_p50 >= 0)
        fprintf(out, "latency added by the bus (input to snapshot, fleet - single): p50 %+.2f ms, "
                     "p99 %+.2f ms, mean %+.2f ms\n", m->lat_p50 - s->lat_p50,
                m->lat_p99 - s->lat_p99, m->lat_mean - s->lat_mean);
    else
        fprintf(out, "latency added by the bus: not measured (no input-to-snapshot samples)\n");
    if (s->connected_end < f->o.clients || m->connected_end < f->o.clients)
        fprintf(out, "WARNING: not every bot was connected at the end of a run\n");
}

static void json_num(cJSON *o, const char *name, double v)
{
    if (v < 0)
        cJSON_AddNullToObject(o, name);
    else
        cJSON_AddNumberToObject(o, name, v);
}

static void json_pct(cJSON *o, const char *name, double p50, double p99)
{
    if (p50 < 0 || p99 < 0) {
        cJSON_AddNullToObject(o, name);
        return;
    }
    cJSON *p = cJSON_AddObjectToObject(o, name);
    cJSON_AddNumberToObject(p, "p50", p50);
    cJSON_AddNumberToObject(p, "p99", p99);
}

static cJSON *json_run(const run_out *r, int fleet_run)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "clients_target", r->target);
    cJSON_AddNumberToObject(o, "clients_connected_end", r->connected_end);
    cJSON_AddNumberToObject(o, "clients_connected_peak", r->connected_peak);
    cJSON_AddNumberToObject(o, "kicks", (double)r->kicks);
    cJSON_AddNumberToObject(o, "timeouts", (double)r->timeouts);
    cJSON_AddNumberToObject(o, "ticks_skipped", (double)r->ticks_skipped);
    cJSON_AddNumberToObject(o, "measure_seconds", r->seconds);
    cJSON_AddNumberToObject(o, "window_seconds", r->window);
    cJSON_AddNumberToObject(o, "avatar_ticks", (double)r->client_ticks);
    json_pct(o, "snapshot_age_ms", r->age_p50, r->age_p99);
    json_pct(o, "input_latency_ms", r->lat_p50, r->lat_p99);
    cJSON *procs = cJSON_AddArrayToObject(o, "processes");
    for (uint32_t k = 0; k < r->n; k++) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "name", r->name[k]);
        json_num(p, "cpu_seconds", r->cpu[k]);
        if (strncmp(r->name[k], "edge", 4) == 0)
            cJSON_AddNumberToObject(p, "clients", (double)r->sessions[k]);
        cJSON_AddItemToArray(procs, p);
    }
    cJSON *cpu = cJSON_AddObjectToObject(o, "cpu_seconds");
    cJSON_AddNumberToObject(cpu, "bench", r->bench_cpu);
    cJSON_AddNumberToObject(cpu, "servers", r->servers_cpu);
    cJSON_AddNumberToObject(cpu, "all", r->servers_cpu + r->bench_cpu);
    if (!fleet_run)
        return o;
    cJSON_AddNumberToObject(o, "authority_lost", (double)r->authority_lost);
    double ticks = (double)r->client_ticks;
    if (r->have_nats) {
        cJSON *n = cJSON_AddObjectToObject(o, "nats");
        cJSON_AddNumberToObject(n, "in_bytes", (double)r->nats[0]);
        cJSON_AddNumberToObject(n, "out_bytes", (double)r->nats[1]);
        cJSON_AddNumberToObject(n, "in_msgs", (double)r->nats[2]);
        cJSON_AddNumberToObject(n, "out_msgs", (double)r->nats[3]);
        json_num(n, "bytes_per_avatar_tick", ratio((double)(r->nats[0] + r->nats[1]), ticks));
    } else {
        cJSON_AddNullToObject(o, "nats");
    }
    if (r->have_bus) {
        cJSON *b = cJSON_AddObjectToObject(o, "bus");
        cJSON_AddNumberToObject(b, "bytes_out", (double)r->bus_out);
        cJSON_AddNumberToObject(b, "bytes_in", (double)r->bus_in);
        json_num(b, "bytes_out_per_avatar_tick", ratio((double)r->bus_out, ticks));
    } else {
        cJSON_AddNullToObject(o, "bus");
    }
    return o;
}

static int write_json(const fleet *f, const char *path)
{
    const run_out *s = &f->single, *m = &f->multi;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "schema", "kizuna-bench-fleet/1");
    cJSON *c = cJSON_AddObjectToObject(root, "config");
    cJSON_AddStringToObject(c, "scenario", kzb_scenario_name(f->o.scenario));
    cJSON_AddNumberToObject(c, "clients", f->o.clients);
    cJSON_AddStringToObject(c, "bots", f->o.bots == KZB_BOTS_THIN ? "thin" : "full");
    cJSON_AddNumberToObject(c, "bot_threads", f->o.bot_threads);
    cJSON_AddNumberToObject(c, "edges", f->o.edges);
    cJSON_AddNumberToObject(c, "hz", f->o.hz);
    cJSON_AddNumberToObject(c, "seconds", f->o.seconds);
    cJSON_AddNumberToObject(c, "warmup", f->o.warmup);
    cJSON_AddNumberToObject(c, "cores", (double)sysconf(_SC_NPROCESSORS_ONLN));
    cJSON_AddItemToObject(root, "single", json_run(s, 0));
    cJSON_AddItemToObject(root, "fleet", json_run(m, 1));
    cJSON *r = cJSON_AddObjectToObject(root, "fleet_over_single_cpu");
    json_num(r, "servers", cpu_ratio(m, s, 0));
    json_num(r, "all", cpu_ratio(m, s, 1));
    if (s->lat_p50 >= 0 && m->lat_p50 >= 0) {
        cJSON *l = cJSON_AddObjectToObject(root, "latency_added_by_bus_ms");
        cJSON_AddNumberToObject(l, "p50", m->lat_p50 - s->lat_p50);
        cJSON_AddNumberToObject(l, "p99", m->lat_p99 - s->lat_p99);
        cJSON_AddNumberToObject(l, "mean", m->lat_mean - s->lat_mean);
    } else {
        cJSON_AddNullToObject(root, "latency_added_by_bus_ms");
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    FILE *out = text ? fopen(path, "w") : NULL;
    int ok = out && fputs(text, out) >= 0 && fputc('\n', out) != EOF;
    if (out && fclose(out) != 0)
        ok = 0;
    cJSON_free(text);
    if (!ok)
        fprintf(stderr, "kizuna-bench fleet: cannot write %s: %s\n", path, strerror(errno));
    return ok ? 0 : -1;
}

/* ---- the command ------------------------------------------------------------------ */

static int run_all(fleet *f)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%.*s/kzb-fleet-XXXXXX", PATH_MAX - 32,
             tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(f->dir)) {
        fprintf(stderr, "kizuna-bench fleet: cannot make a directory in %s: %s\n",
                tmp && tmp[0] ? tmp : "/tmp", strerror(errno));
        f->dir[0] = '\0';
        return -1;
    }
    snprintf(f->keys, sizeof f->keys, "%.*s/keys", PATH_MAX - 16, f->dir);
    f->logs = f->dir;
    if (f->o.logs) {
        if (mkdir(f->o.logs, 0700) != 0 && errno != EEXIST) {
            fprintf(stderr, "kizuna-bench fleet: cannot make %s: %s\n", f->o.logs, strerror(errno));
            return -1;
        }
        f->logs = f->o.logs;
    }
    if (keygen(f) != 0 || run_single(f) != 0 || run_fleet(f) != 0)
        return -1;
    return 0;
}

int kzb_fleet_main(int argc, char **argv)
{
    static fleet f;  /* large; the guard thread reads it until exit */
    int rc = parse_opts(argc, argv, &f.o);
    if (rc != 0)
        return rc == 1 ? 0 : 2;
    if (find_server(&f) != 0 || find_nats(&f) != 0)
        return 2;
    kzb_procs_init(&f.procs);
    pthread_mutex_init(&f.end_lock, NULL);
    /* Only the guard takes these signals; every thread started later
     * (the bots) inherits the mask, children get it cleared. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    pthread_t guard;
    if (pthread_create(&guard, NULL, guard_main, &f) != 0) {
        fprintf(stderr, "kizuna-bench fleet: cannot start a thread\n");
        return 1;
    }
    rc = run_all(&f);
    (void)end_all(&f);
    if (rc != 0)
        return 1;
    print_figures(&f, stdout);
    fflush(stdout);
    return f.o.json && write_json(&f, f.o.json) != 0 ? 1 : 0;
}
