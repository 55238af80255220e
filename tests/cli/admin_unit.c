/*
 * Tests of kizuna-server's admin endpoint (server/admin.c) and the figures
 * it shows (server/metrics.c), against a real world: a kz_server in
 * single-threaded mode with two clients on loopback (tests/support/world.c),
 * figures published the way the simulation thread publishes them, and
 * HTTP spoken over a TCP socket. /metrics is checked sample by sample
 * against the server's own counters, and by promtool when it is installed.
 * Liveness runs on an injected clock, so no test waits for staleness.
 * Hostile clients (slowloris connections trickling from several 127.x
 * source addresses, a connection flood) run against short deadlines or
 * long ones that only eviction can beat, and assert who is answered and
 * which connections are closed, never how fast.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "metrics.h"
#include "support/world.h"

#define CLIENTS 2u
#define STEP_NS (KZ_NS_PER_S / 60)

/* ---- fixture -------------------------------------------------------------- */

static kzt_world w;
static kzs_metrics *m;
static kzs_admin *adm;
static _Atomic uint64_t fake_now = 1000000000ull;

static uint64_t fake_clock(void *ctx)
{
    (void)ctx;
    return atomic_load(&fake_now);
}

static void start_world(void)
{
    memset(&w, 0, sizeof w);
    cr_assert_eq(kzt_world_start(&w, CLIENTS, NULL, NULL, 7), KZ_OK);
    cr_assert_eq(kzt_world_connect_all(&w, STEP_NS, 10 * KZ_NS_PER_S), CLIENTS);
    for (int i = 0; i < 60; i++)
        kzt_world_step(&w, STEP_NS);
}

static void setup(void)
{
    m = kzs_metrics_create();
    cr_assert_not_null(m);
    kzs_metrics_set_clock(m, fake_clock, NULL);
}

static void teardown(void)
{
    kzs_admin_stop(adm);
    adm = NULL;
    if (w.srv != NULL)
        kzt_world_stop(&w);
    kzs_metrics_destroy(m);
}

TestSuite(admin, .init = setup, .fini = teardown, .timeout = 120);

static void start_admin(void)
{
    char err[200] = "";
    adm = kzs_admin_start("127.0.0.1:0", m, err, sizeof err);
    cr_assert_not_null(adm, "%s", err);
    cr_assert_neq(kzs_admin_port(adm), 0);
}

/* ---- a small HTTP client -------------------------------------------------- */

typedef struct reply {
    int status;
    char *raw;   /* the whole response, NUL-terminated */
    char *body;  /* into raw, after the blank line */
    size_t body_len;
} reply;

/* A TCP socket connected to 127.0.0.1:port from source address `src`
 * (any 127.x.y.z works on Linux's loopback; NULL: the kernel's choice). */
static int connect_from(const char *src, uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    if (src != NULL) {
        struct sockaddr_in me = {.sin_family = AF_INET};
        cr_assert_eq(inet_pton(AF_INET, src, &me.sin_addr), 1, "%s", src);
        cr_assert_eq(bind(fd, (struct sockaddr *)&me, sizeof me), 0, "bind %s: %s", src,
                     strerror(errno));
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0, "connect: %s", strerror(errno));
    return fd;
}

/* Sends `request` (a complete HTTP/1.1 request) to 127.0.0.1:port from
 * `src` and reads the response until the server closes the connection
 * (a server that keeps it open fails the test after 10 s). */
static reply http_raw_from(const char *src, uint16_t port, const char *request)
{
    reply r = {0};
    int fd = connect_from(src, port);
    struct timeval tv = {10, 0};
    cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    size_t len = strlen(request);
    cr_assert_eq(send(fd, request, len, 0), (ssize_t)len);
    size_t cap = 65536, have = 0;
    r.raw = malloc(cap);
    cr_assert_not_null(r.raw);
    for (;;) {
        if (cap - have < 4096) {
            cap *= 2;
            r.raw = realloc(r.raw, cap);
            cr_assert_not_null(r.raw);
        }
        ssize_t n = recv(fd, r.raw + have, cap - have - 1, 0);
        cr_assert_geq(n, 0, "recv: %s", strerror(errno));
        if (n == 0)
            break;
        have += (size_t)n;
    }
    close(fd);
    r.raw[have] = '\0';
    cr_assert_eq(sscanf(r.raw, "HTTP/1.%*d %d ", &r.status), 1, "not HTTP: %s", r.raw);
    char *end = strstr(r.raw, "\r\n\r\n");
    cr_assert_not_null(end, "no end of headers");
    r.body = end + 4;
    r.body_len = have - (size_t)(r.body - r.raw);
    return r;
}

static reply http_raw(uint16_t port, const char *request)
{
    return http_raw_from(NULL, port, request);
}

static reply http(uint16_t port, const char *method, const char *path)
{
    char req[256];
    snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
             method, path);
    return http_raw(port, req);
}

static reply get(const char *path)
{
    return http(kzs_admin_port(adm), "GET", path);
}

/* The value of header `name` (case-insensitive) copied into out; 1 if found. */
static int header(const reply *r, const char *name, char *out, size_t n)
{
    size_t len = strlen(name);
    for (const char *line = strstr(r->raw, "\r\n"); line && line + 2 < r->body;
         line = strstr(line + 2, "\r\n")) {
        const char *h = line + 2;
        if (strncasecmp(h, name, len) == 0 && h[len] == ':') {
            const char *v = h + len + 1 + strspn(h + len + 1, " ");
            size_t vl = strcspn(v, "\r");
            snprintf(out, n, "%.*s", (int)vl, v);
            return 1;
        }
    }
    return 0;
}

/* ---- reading samples ------------------------------------------------------ */

/* The value of the sample whose name and labels are exactly `series`; 1 if
 * the body has it. */
static int sample(const char *body, const char *series, double *v)
{
    size_t len = strlen(series);
    const char *line = body;
    while (*line != '\0') {
        if (strncmp(line, series, len) == 0 && line[len] == ' ') {
            *v = strtod(line + len + 1, NULL);
            return 1;
        }
        const char *nl = strchr(line, '\n');
        if (nl == NULL)
            break;
        line = nl + 1;
    }
    return 0;
}

static uint64_t sample_u64(const char *body, const char *series)
{
    double v = -1;
    cr_assert(sample(body, series, &v), "no sample %s in:\n%s", series, body);
    cr_assert_geq(v, 0);
    return (uint64_t)v;
}

static uint64_t counter_named(const kz_counters *c, const char *name)
{
    for (uint32_t i = 0; i < c->n_counters; i++)
        if (strcmp(kz_counters_name(c, i), name) == 0)
            return kz_counters_get(c, i);
    cr_assert_fail("no counter %s", name);
    return 0;
}

static int has_prefix(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

/* Checks every counter of a set against the body: drop_ counters as
 * kizuna_drops_total samples, violation_ ones (world) as
 * kizuna_violations_total, the rest, except those with families of their
 * own, as kizuna_<layer>_<name>_total. Returns how many violation counters
 * the set has. */
static int check_layer(const char *body, const kz_counters *c, const char *layer,
                       const char *const *special)
{
    char series[160];
    int violations = 0;
    for (uint32_t i = 0; i < c->n_counters; i++) {
        const char *name = kz_counters_name(c, i);
        int skip = 0;
        for (const char *const *s = special; *s; s++)
            skip |= strcmp(*s, name) == 0;
        if (skip)
            continue;
        if (has_prefix(name, "drop_"))
            snprintf(series, sizeof series, "kizuna_drops_total{layer=\"%s\",reason=\"%s\"}", layer,
                     name + 5);
        else if (strcmp(layer, "world") == 0 && has_prefix(name, "violation_")) {
            snprintf(series, sizeof series, "kizuna_violations_total{kind=\"%s\"}", name + 10);
            violations++;
        } else
            snprintf(series, sizeof series, "kizuna_%s_%s_total", layer, name);
        cr_expect_eq(sample_u64(body, series), kz_counters_get(c, i), "%s", series);
    }
    return violations;
}

/* Checks the histogram: le bounds rising, buckets cumulative, +Inf equal
 * to _count. Returns _count. */
static uint64_t check_histogram(const char *body)
{
    const char *p = body;
    double last_le = -1, last = 0;
    int buckets = 0;
    const char *key = "kizuna_tick_duration_seconds_bucket{le=\"";
    while ((p = strstr(p, key)) != NULL) {
        p += strlen(key);
        double le = strncmp(p, "+Inf", 4) == 0 ? 1e300 : strtod(p, NULL);
        const char *v = strstr(p, "} ");
        cr_assert_not_null(v);
        double count = strtod(v + 2, NULL);
        cr_expect_gt(le, last_le, "le bounds must rise");
        cr_expect_geq(count, last, "buckets must be cumulative");
        last_le = le;
        last = count;
        buckets++;
    }
    cr_expect_gt(buckets, 5);
    cr_expect_eq(last_le, 1e300, "the last bucket is +Inf");
    uint64_t n = sample_u64(body, "kizuna_tick_duration_seconds_count");
    cr_expect_eq((uint64_t)last, n, "+Inf bucket equals _count");
    return n;
}

/* ---- /metrics ------------------------------------------------------------- */

static const char *const gate_special[] = {"rx_datagrams", "rx_bytes", "tx_bytes", NULL};
static const char *const net_special[] = {"rx_packets", "tx_packets", "rx_bytes", "tx_bytes", NULL};
static const char *const world_special[] = {"ticks", "ticks_skipped", NULL};

Test(admin, metrics_match_the_server_counters)
{
    start_world();
    kzs_metrics_publish(m, w.srv, NULL);
    start_admin();
    reply r = get("/metrics");
    cr_assert_eq(r.status, 200);
    char type[128];
    cr_assert(header(&r, "Content-Type", type, sizeof type));
    cr_expect_str_eq(type, "text/plain; version=0.0.4; charset=utf-8");
    const char *b = r.body;
    cr_expect_eq(strlen(b), r.body_len, "no NUL inside the body");

    char series[96];
    snprintf(series, sizeof series, "kizuna_build_info{version=\"%s\"}", kz_version());
    cr_expect_eq(sample_u64(b, series), 1);
    cr_expect_not_null(strstr(b, "# TYPE kizuna_build_info gauge\n"));
    cr_expect_not_null(strstr(b, "# TYPE kizuna_tick_duration_seconds histogram\n"));
    cr_expect_not_null(strstr(b, "# TYPE kizuna_ticks_total counter\n"));
    cr_expect_not_null(strstr(b, "# HELP kizuna_drops_total "));
    double start = 0;
    cr_expect(sample(b, "kizuna_process_start_time_seconds", &start));
    cr_expect_gt(start, 1.6e9);

    kz_netserver *net = kz_server_net(w.srv);
    const kz_counters *world = kz_server_counters(w.srv), *transport = kz_netserver_counters(net),
                      *gate = kz_netserver_gate_counters(net);
    uint64_t ticks = kz_counters_get(world, KZ_WORLD_C_TICKS);
    cr_assert_geq(ticks, 30, "a second of world at 30 Hz");
    cr_expect_eq(sample_u64(b, "kizuna_ticks_total"), ticks);
    cr_expect_eq(sample_u64(b, "kizuna_ticks_skipped_total"),
                 kz_counters_get(world, KZ_WORLD_C_TICKS_SKIPPED));
    cr_expect_eq(check_histogram(b), ticks, "every tick is in the histogram");
    cr_expect_eq(sample_u64(b, "kizuna_clients_connected"), CLIENTS);
    cr_expect_eq(sample_u64(b, "kizuna_transport_sessions"), kz_netserver_sessions(net));
    cr_expect_eq(kz_netserver_sessions(net), CLIENTS);

    uint64_t rx_bytes = counter_named(gate, "rx_bytes");
    cr_expect_gt(rx_bytes, 0);
    cr_expect_eq(sample_u64(b, "kizuna_udp_received_bytes_total"), rx_bytes);
    cr_expect_eq(sample_u64(b, "kizuna_udp_received_datagrams_total"),
                 counter_named(gate, "rx_datagrams"));
    cr_expect_eq(sample_u64(b, "kizuna_gate_reply_bytes_total"), counter_named(gate, "tx_bytes"));
    cr_expect_gt(counter_named(gate, "tx_bytes"), 0, "two handshakes were answered");
    cr_expect_eq(sample_u64(b, "kizuna_transport_packets_total{direction=\"in\"}"),
                 kz_counters_get(transport, KZ_NET_C_RX_PACKETS));
    cr_expect_eq(sample_u64(b, "kizuna_transport_packets_total{direction=\"out\"}"),
                 kz_counters_get(transport, KZ_NET_C_TX_PACKETS));
    cr_expect_gt(kz_counters_get(transport, KZ_NET_C_TX_PACKETS), 0);
    cr_expect_eq(sample_u64(b, "kizuna_transport_bytes_total{direction=\"in\"}"),
                 kz_counters_get(transport, KZ_NET_C_RX_BYTES));
    cr_expect_eq(sample_u64(b, "kizuna_transport_bytes_total{direction=\"out\"}"),
                 kz_counters_get(transport, KZ_NET_C_TX_BYTES));
    cr_expect_gt(kz_counters_get(transport, KZ_NET_C_TX_BYTES),
                 kz_counters_get(transport, KZ_NET_C_TX_PACKETS) * 16u,
                 "each packet carries at least its 16-byte tag");

    check_layer(b, gate, "gate", gate_special);
    check_layer(b, transport, "transport", net_special);
    int violations = check_layer(b, world, "world", world_special);
    if (violations == 0)
        cr_expect_null(strstr(b, "kizuna_violations_total"), "no violation counters, no family");
    cr_expect_gt(sample_u64(b, "kizuna_world_snapshots_sent_total"), 0);
    cr_expect_null(strstr(b, "kizuna_audit_"), "no audit log, no audit figures");
    free(r.raw);
}

Test(admin, histogram_and_counters_accumulate_across_publishes)
{
    start_world();
    kzs_metrics_publish(m, w.srv, NULL);
    start_admin();
    reply r1 = get("/metrics");
    cr_assert_eq(r1.status, 200);
    for (int i = 0; i < 45; i++)
        kzt_world_step(&w, STEP_NS);
    kzs_metrics_publish(m, w.srv, NULL);
    kzs_metrics_publish(m, w.srv, NULL); /* an empty interval adds nothing */
    reply r2 = get("/metrics");
    cr_assert_eq(r2.status, 200);
    uint64_t ticks = kz_counters_get(kz_server_counters(w.srv), KZ_WORLD_C_TICKS);
    cr_expect_eq(sample_u64(r2.body, "kizuna_ticks_total"), ticks);
    cr_expect_eq(check_histogram(r2.body), ticks);
    cr_expect_gt(ticks, sample_u64(r1.body, "kizuna_ticks_total"));
    /* Every sample of the first scrape is still there and not smaller. */
    for (const char *line = r1.body; *line; line = strchr(line, '\n') + 1) {
        if (line[0] != '#' && strncmp(line, "kizuna_process_start", 20) != 0) {
            char series[200];
            size_t len = strcspn(line, "\n");
            snprintf(series, sizeof series, "%.*s", (int)len, line);
            char *sp = strrchr(series, ' ');
            cr_assert_not_null(sp);
            *sp = '\0';
            double before = strtod(sp + 1, NULL), after = -1;
            cr_assert(sample(r2.body, series, &after), "%s vanished", series);
            if (strcmp(series, "kizuna_clients_connected") != 0 &&
                strcmp(series, "kizuna_transport_sessions") != 0 &&
                strcmp(series, "kizuna_admin_connections") != 0)
                cr_expect_geq(after, before, "%s went down", series);
        }
    }
    free(r1.raw);
    free(r2.raw);
}

Test(admin, head_has_the_headers_and_no_body)
{
    start_world();
    kzs_metrics_publish(m, w.srv, NULL);
    start_admin();
    reply r = http(kzs_admin_port(adm), "HEAD", "/metrics");
    cr_assert_eq(r.status, 200);
    char v[128];
    cr_assert(header(&r, "Content-Type", v, sizeof v));
    cr_expect_str_eq(v, "text/plain; version=0.0.4; charset=utf-8");
    cr_assert(header(&r, "Content-Length", v, sizeof v));
    cr_expect_gt(atol(v), 1000);
    cr_expect_eq(r.body_len, 0);
    free(r.raw);
    r = http(kzs_admin_port(adm), "HEAD", "/readyz");
    cr_expect_eq(r.status, 503);
    cr_expect_eq(r.body_len, 0);
    free(r.raw);
}

Test(admin, audit_figures_when_a_log_is_open)
{
    char dir[64], path[96];
    snprintf(dir, sizeof dir, "/tmp/kzs-admin-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/audit.log", dir);
    kz_sign_keypair key;
    cr_assert_eq(kz_sign_keypair_generate(&key), KZ_OK);
    kz_audit_config ac;
    memset(&ac, 0, sizeof ac);
    kz_audit_config_default(&ac);
    ac.path = path;
    memcpy(ac.sign_secret_key, key.secret_key, sizeof ac.sign_secret_key);
    ac.log.level = KZ_LOG_OFF;
    kz_audit *audit = NULL;
    cr_assert_eq(kz_audit_open(&ac, &audit), KZ_OK);
    kz_audit_record rec;
    memset(&rec, 0, sizeof rec);
    rec.type = KZ_AUDIT_SERVER_START;
    for (int i = 0; i < 3; i++)
        cr_assert_eq(kz_audit_append(audit, &rec), KZ_OK);
    cr_assert_eq(kz_audit_flush(audit, 10000), KZ_OK);

    start_world();
    kzs_metrics_publish(m, w.srv, audit);
    start_admin();
    reply r = get("/metrics");
    cr_assert_eq(r.status, 200);
    kz_audit_stats st;
    kz_audit_stats_get(audit, &st);
    cr_expect_eq(sample_u64(r.body, "kizuna_audit_records_appended_total"), st.appended);
    cr_expect_geq(st.appended, 3);
    cr_expect_eq(sample_u64(r.body, "kizuna_audit_records_durable_total"), st.durable);
    cr_expect_geq(st.durable, 3, "flushed before the publish");
    cr_expect_eq(sample_u64(r.body, "kizuna_audit_records_dropped_total"), 0);
    cr_expect_eq(sample_u64(r.body, "kizuna_audit_lag_records"), st.lag);
    cr_expect_eq(sample_u64(r.body, "kizuna_audit_checkpoints_total"), st.checkpoints);
    cr_expect_eq(sample_u64(r.body, "kizuna_audit_write_error"), 0);
    cr_expect_not_null(strstr(r.body, "# TYPE kizuna_audit_lag_records gauge\n"));
    free(r.raw);
    cr_expect_eq(kz_audit_close(audit), KZ_OK);
    unlink(path);
    rmdir(dir);
}

/* ---- promtool ------------------------------------------------------------- */

/* promtool's path in PATH, or NULL. */
static const char *find_promtool(char *out, size_t n)
{
    const char *path = getenv("PATH");
    if (path == NULL)
        path = "/usr/bin:/bin";
    while (*path) {
        size_t len = strcspn(path, ":");
        snprintf(out, n, "%.*s/promtool", (int)len, path);
        if (len > 0 && access(out, X_OK) == 0)
            return out;
        path += len + (path[len] == ':');
    }
    return NULL;
}

Test(admin, promtool_finds_no_problem)
{
    char tool[512];
    if (find_promtool(tool, sizeof tool) == NULL) {
        const char *ci = getenv("CI");
        cr_assert(ci == NULL || strcmp(ci, "true") != 0,
                  "promtool (Debian package prometheus) is required when CI=true");
        cr_skip_test("promtool not found in PATH: /metrics not linted");
    }
    /* An audit log too, so that every family is linted. */
    char dir[64], path[96];
    snprintf(dir, sizeof dir, "/tmp/kzs-admin-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/audit.log", dir);
    kz_sign_keypair key;
    cr_assert_eq(kz_sign_keypair_generate(&key), KZ_OK);
    kz_audit_config ac;
    memset(&ac, 0, sizeof ac);
    kz_audit_config_default(&ac);
    ac.path = path;
    memcpy(ac.sign_secret_key, key.secret_key, sizeof ac.sign_secret_key);
    ac.log.level = KZ_LOG_OFF;
    kz_audit *audit = NULL;
    cr_assert_eq(kz_audit_open(&ac, &audit), KZ_OK);

    start_world();
    kzs_metrics_publish(m, w.srv, audit);
    start_admin();
    reply r = get("/metrics");
    cr_assert_eq(r.status, 200);

    char in[128], out[128], cmd[1024];
    snprintf(in, sizeof in, "%s/metrics.txt", dir);
    snprintf(out, sizeof out, "%s/promtool.txt", dir);
    FILE *f = fopen(in, "w");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(r.body, 1, r.body_len, f), r.body_len);
    cr_assert_eq(fclose(f), 0);
    snprintf(cmd, sizeof cmd, "'%s' check metrics < '%s' > '%s' 2>&1", tool, in, out);
    int status = system(cmd);
    char said[4096] = "";
    f = fopen(out, "r");
    cr_assert_not_null(f);
    size_t n = fread(said, 1, sizeof said - 1, f);
    said[n] = '\0';
    fclose(f);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "promtool check metrics exited %d:\n%s", WEXITSTATUS(status), said);
    cr_expect_eq(n, 0, "promtool check metrics said:\n%s", said);
    free(r.raw);
    cr_expect_eq(kz_audit_close(audit), KZ_OK);
    unlink(in);
    unlink(out);
    unlink(path);
    rmdir(dir);
}

/* ---- /healthz and /readyz ------------------------------------------------- */

Test(admin, healthz_follows_the_publishes)
{
    start_world();
    start_admin();
    reply r = get("/healthz");
    cr_expect_eq(r.status, 503, "nothing published yet");
    cr_expect(has_prefix(r.body, "starting: "), "%s", r.body);
    cr_expect_eq(r.body[r.body_len - 1], '\n');
    free(r.raw);

    kzs_metrics_publish(m, w.srv, NULL);
    r = get("/healthz");
    cr_expect_eq(r.status, 200);
    cr_expect_str_eq(r.body, "ok\n");
    free(r.raw);

    atomic_fetch_add(&fake_now, KZS_METRICS_STALE_NS);
    r = get("/healthz");
    cr_expect_eq(r.status, 200, "exactly the limit is still fresh");
    free(r.raw);

    atomic_fetch_add(&fake_now, 1);
    r = get("/healthz");
    cr_expect_eq(r.status, 503);
    cr_expect(has_prefix(r.body, "stalled: the simulation thread last published 5.0 s ago"), "%s",
              r.body);
    free(r.raw);

    kzs_metrics_publish(m, w.srv, NULL);
    r = get("/healthz");
    cr_expect_eq(r.status, 200, "a publish makes it live again");
    free(r.raw);

    kzs_metrics_set_stale_after(m, KZ_NS_PER_S);
    atomic_fetch_add(&fake_now, 2 * KZ_NS_PER_S);
    r = get("/healthz");
    cr_expect_eq(r.status, 503, "a shorter threshold applies");
    free(r.raw);
}

Test(admin, readyz_reports_starting_ready_and_draining)
{
    start_admin();
    reply r = get("/readyz");
    cr_expect_eq(r.status, 503);
    cr_expect_str_eq(r.body, "not ready\n");
    free(r.raw);
    kzs_metrics_set_ready(m, 0);
    r = get("/readyz");
    cr_expect_str_eq(r.body, "not ready\n", "clearing before ever ready is still starting");
    free(r.raw);
    kzs_metrics_set_ready(m, 1);
    r = get("/readyz");
    cr_expect_eq(r.status, 200);
    cr_expect_str_eq(r.body, "ready\n");
    free(r.raw);
    kzs_metrics_set_ready(m, 0);
    r = get("/readyz");
    cr_expect_eq(r.status, 503);
    cr_expect_str_eq(r.body, "draining\n");
    free(r.raw);
}

/* ---- everything else ------------------------------------------------------ */

Test(admin, other_paths_methods_and_bodies_are_refused)
{
    start_admin();
    uint16_t port = kzs_admin_port(adm);
    static const struct {
        const char *method, *path;
        int status;
    } cases[] = {
        {"GET", "/", 404},           {"GET", "/metrics/", 404},   {"GET", "/nope", 404},
        {"POST", "/nope", 404},      {"POST", "/metrics", 405},   {"PUT", "/healthz", 405},
        {"DELETE", "/readyz", 405},  {"OPTIONS", "/metrics", 405},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        reply r = http(port, cases[i].method, cases[i].path);
        cr_expect_eq(r.status, cases[i].status, "%s %s", cases[i].method, cases[i].path);
        char allow[64];
        if (cases[i].status == 405) {
            cr_expect(header(&r, "Allow", allow, sizeof allow), "%s %s", cases[i].method,
                      cases[i].path);
            cr_expect_str_eq(allow, "GET, HEAD");
        }
        free(r.raw);
    }
    /* A GET announcing a body is refused before the body is read. */
    reply r = http_raw(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                             "Connection: close\r\n\r\n");
    cr_expect_eq(r.status, 413);
    free(r.raw);
    r = http_raw(port, "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                       "Connection: close\r\n\r\n");
    cr_expect_eq(r.status, 503, "an empty body is no body");
    free(r.raw);
}

Test(admin, a_second_admin_on_the_same_port_fails_clearly)
{
    start_admin();
    char addr[32], err[200] = "";
    snprintf(addr, sizeof addr, "127.0.0.1:%u", kzs_admin_port(adm));
    kzs_admin *second = kzs_admin_start(addr, m, err, sizeof err);
    cr_assert_null(second);
    char want[96];
    snprintf(want, sizeof want, "admin: %s: address already in use", addr);
    cr_expect_str_eq(err, want);
    reply r = get("/readyz");
    cr_expect_eq(r.status, 503, "the first one still serves");
    free(r.raw);
    /* Stopping closes the socket: the port can be bound again at once. */
    kzs_admin_stop(adm);
    adm = kzs_admin_start(addr, m, err, sizeof err);
    cr_assert_not_null(adm, "%s", err);
    r = get("/readyz");
    cr_expect_eq(r.status, 503);
    free(r.raw);
}

Test(admin, addresses_are_checked)
{
    static const char *const bad[] = {
        "",          "9100",          "127.0.0.1",        "127.0.0.1:",       ":9100",
        "127.0.0.1:65536", "127.0.0.1:9x", "127.0.0.1:-1", "example.com:9100", "::1:9100",
        "256.1.1.1:80",    "localhost",    "localhost:99999999999999999999",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[200] = "";
        kzs_admin *a = kzs_admin_start(bad[i], m, err, sizeof err);
        cr_expect_null(a, "'%s' accepted", bad[i]);
        kzs_admin_stop(a);
        cr_expect(has_prefix(err, "admin: '"), "'%s': %s", bad[i], err);
        cr_expect_null(strchr(err, '\n'), "one line");
    }
    char err[200] = "";
    adm = kzs_admin_start("localhost:0", m, err, sizeof err);
    cr_assert_not_null(adm, "%s", err);
    cr_expect_neq(kzs_admin_port(adm), 0);
    reply r = get("/readyz");
    cr_expect_eq(r.status, 503);
    free(r.raw);
}

/* ---- publish and render on two threads ------------------------------------ */

/* The render thread only counts what went wrong (Criterion's assertions
 * belong on the test's own thread). */
static atomic_int renders_done, render_failures;

static void *render_loop(void *arg)
{
    (void)arg;
    uint64_t last = 0;
    for (int i = 0; i < 300; i++) {
        size_t len = 0;
        char *text = kzs_metrics_render(m, &len);
        double ticks = -1;
        if (text == NULL || strlen(text) != len || !sample(text, "kizuna_ticks_total", &ticks) ||
            ticks < (double)last)
            atomic_fetch_add(&render_failures, 1);
        else
            last = (uint64_t)ticks;
        free(text);
    }
    atomic_store(&renders_done, 1);
    return NULL;
}

Test(admin, publish_and_render_on_two_threads)
{
    start_world();
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, render_loop, NULL), 0);
    /* At least one step and publish, even when the render thread finishes
     * before this thread runs again, so that the last publish is of the
     * world as it is now. */
    do {
        kzt_world_step(&w, STEP_NS);
        kzs_metrics_publish(m, w.srv, NULL);
    } while (!atomic_load(&renders_done));
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_expect_eq(atomic_load(&render_failures), 0, "renders that were torn or went backwards");
    size_t len = 0;
    char *text = kzs_metrics_render(m, &len);
    cr_assert_not_null(text);
    cr_expect_eq(sample_u64(text, "kizuna_ticks_total"),
                 kz_counters_get(kz_server_counters(w.srv), KZ_WORLD_C_TICKS));
    cr_expect_eq(check_histogram(text), sample_u64(text, "kizuna_ticks_total"));
    free(text);
}

/* ---- hostile connections -------------------------------------------------- */

/* Slowloris clients send one byte of a header that never ends every
 * DRIP_MS, far more often than any idle timeout, so only a deadline on
 * the whole request can end them. GIVE_UP_MS bounds every wait: a
 * connection still open then would never have been closed. */
#define DRIP_MS 100u
#define GIVE_UP_MS 15000u
#define FLOOD 20u

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000u, (long)(ms % 1000u) * 1000000L};
    nanosleep(&ts, NULL);
}

static void start_admin_with(uint32_t deadline_ms)
{
    char err[200] = "";
    kzs_admin_limits lim = {.deadline_ms = deadline_ms};
    adm = kzs_admin_start_limited("127.0.0.1:0", m, &lim, err, sizeof err);
    cr_assert_not_null(adm, "%s", err);
}

/* A live world whose figures are fresh, so /healthz answers 200. */
static void start_healthy(uint32_t deadline_ms)
{
    start_world();
    kzs_metrics_publish(m, w.srv, NULL);
    start_admin_with(deadline_ms);
}

typedef struct slow_conn {
    int fd;
    uint64_t opened_ms; /* when connect returned */
    uint64_t closed_ms; /* when the server's close was seen; 0 while open */
} slow_conn;

/* Opens a slowloris connection from `src`: a request line and the start
 * of a header line that is never finished. */
static slow_conn slow_open(const char *src)
{
    slow_conn k = {connect_from(src, kzs_admin_port(adm)), mono_ms(), 0};
    const char *start = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    cr_assert_eq(send(k.fd, start, strlen(start), MSG_NOSIGNAL), (ssize_t)strlen(start));
    return k;
}

/* Whether the server has closed k (end of stream or a reset), noting
 * when it was first seen. An answer to the unfinished request fails. */
static int slow_closed(slow_conn *k)
{
    char b[256];
    if (k->closed_ms != 0)
        return 1;
    ssize_t n = recv(k->fd, b, sizeof b, MSG_DONTWAIT);
    if (n > 0)
        cr_assert_fail("an unfinished request was answered: %.*s", (int)n, b);
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
        k->closed_ms = mono_ms();
    return k->closed_ms != 0;
}

/* One more byte of the endless header, unless the server closed k. */
static void slow_drip(slow_conn *k)
{
    if (!slow_closed(k) && send(k->fd, "a", 1, MSG_NOSIGNAL | MSG_DONTWAIT) != 1 &&
        errno != EAGAIN)
        k->closed_ms = mono_ms();
}

/* Drips on ks[0..n) until every one is closed or GIVE_UP_MS has passed;
 * returns how many are closed. */
static size_t slow_drip_until_closed(slow_conn *ks, size_t n)
{
    size_t closed = 0;
    for (uint64_t start = mono_ms(); closed < n && mono_ms() - start < GIVE_UP_MS;) {
        sleep_ms(DRIP_MS);
        closed = 0;
        for (size_t i = 0; i < n; i++) {
            slow_drip(&ks[i]);
            closed += ks[i].closed_ms != 0;
        }
    }
    return closed;
}

/* Waits (at most GIVE_UP_MS) for the server to close k. */
static int slow_wait_closed(slow_conn *k)
{
    for (uint64_t start = mono_ms(); mono_ms() - start < GIVE_UP_MS; sleep_ms(10))
        if (slow_closed(k))
            return 1;
    return 0;
}

static void slow_close_all(slow_conn *ks, size_t n)
{
    for (size_t i = 0; i < n; i++)
        close(ks[i].fd);
}

/* Waits (at most GIVE_UP_MS) until the endpoint has admitted `accepted`
 * connections in all and holds `open`, and returns its figures. */
static kzs_admin_stats wait_stats(uint64_t accepted, uint32_t open)
{
    kzs_admin_stats st;
    for (uint64_t start = mono_ms(); mono_ms() - start < GIVE_UP_MS; sleep_ms(10)) {
        kzs_admin_stats_get(adm, &st);
        if (st.accepted == accepted && st.open == open)
            return st;
    }
    cr_assert_fail("admin figures: accepted %" PRIu64 " (want %" PRIu64 "), open %" PRIu32
                   " (want %" PRIu32 ")",
                   st.accepted, accepted, st.open, open);
    return st;
}

/* GET /healthz from `src` must answer 200 "ok". */
static void probe_from(const char *src)
{
    reply r = http_raw_from(src, kzs_admin_port(adm),
                            "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    cr_expect_eq(r.status, 200, "probe from %s", src);
    cr_expect_str_eq(r.body, "ok\n");
    free(r.raw);
}

Test(admin, trickled_requests_are_closed_at_the_deadline)
{
    enum { N = 4, DEADLINE_MS = 1000 };
    start_healthy(DEADLINE_MS);
    slow_conn ks[N];
    for (int i = 0; i < N; i++)
        ks[i] = slow_open("127.0.0.1");
    wait_stats(N, N);
    probe_from("127.0.0.1");
    cr_assert_eq(slow_drip_until_closed(ks, N), N, "trickling connections outlived the deadline");
    for (int i = 0; i < N; i++)
        cr_expect_geq(ks[i].closed_ms - ks[i].opened_ms, DEADLINE_MS, "connection %d closed early",
                      i);
    kzs_admin_stats st = wait_stats(N + 1, 0);
    cr_expect_eq(st.closed_deadline, N);
    cr_expect_eq(st.evicted_address, 0);
    cr_expect_eq(st.evicted_full, 0);
    cr_expect_eq(st.refused, 0);
    reply r = get("/metrics");
    cr_assert_eq(r.status, 200);
    cr_expect_eq(sample_u64(r.body, "kizuna_admin_connections_closed_total{reason=\"deadline\"}"),
                 N);
    cr_expect_eq(sample_u64(r.body, "kizuna_admin_connections_accepted_total"), N + 2);
    cr_expect_eq(sample_u64(r.body, "kizuna_admin_connections"), 1, "only the scrape itself");
    free(r.raw);
    slow_close_all(ks, N);
}

/* The finding as reported: slow connections from the probe's own address,
 * as many as one address may hold, and then a flood from that address.
 * The deadline is long, so only eviction can let the probe in. Two
 * connections from another address, older than all, must survive. */
Test(admin, one_address_cannot_starve_a_probe_from_that_address)
{
    enum { PER = KZS_ADMIN_MAX_PER_IP };
    start_healthy(60000);
    slow_conn other[2], mine[PER + FLOOD];
    for (int i = 0; i < 2; i++)
        other[i] = slow_open("127.0.0.2");
    for (int i = 0; i < PER; i++)
        mine[i] = slow_open("127.0.0.1");
    wait_stats(2 + PER, 2 + PER);
    probe_from("127.0.0.1");
    cr_expect(slow_wait_closed(&mine[0]), "the address's oldest connection made room");
    for (int i = 1; i < PER; i++)
        cr_expect(!slow_closed(&mine[i]), "connection %d of 127.0.0.1 closed", i);
    /* The first of the flood takes the probe's slot; each later one, and
     * the second probe, displaces the address's oldest. */
    for (int i = PER; i < PER + (int)FLOOD; i++)
        mine[i] = slow_open("127.0.0.1");
    wait_stats(2 + PER + 1 + FLOOD, 2 + PER);
    probe_from("127.0.0.1");
    for (int i = 0; i <= (int)FLOOD; i++)
        cr_expect(slow_wait_closed(&mine[i]), "connection %d of 127.0.0.1 still open", i);
    for (int i = FLOOD + 1; i < PER + (int)FLOOD; i++)
        cr_expect(!slow_closed(&mine[i]), "connection %d of 127.0.0.1 closed", i);
    for (int i = 0; i < 2; i++)
        cr_expect(!slow_closed(&other[i]), "127.0.0.2 lost connection %d to another address", i);
    kzs_admin_stats st;
    kzs_admin_stats_get(adm, &st);
    cr_expect_eq(st.evicted_address, FLOOD + 1);
    cr_expect_eq(st.evicted_full, 0);
    cr_expect_eq(st.closed_deadline, 0);
    cr_expect_eq(st.refused, 0);
    slow_close_all(other, 2);
    slow_close_all(mine, PER + FLOOD);
}

/* Slow connections from as many addresses as the endpoint holds: a probe
 * from yet another address displaces the oldest of all, each time. */
Test(admin, a_flood_from_many_addresses_displaces_the_oldest)
{
    enum { ALL = KZS_ADMIN_MAX_CONNECTIONS };
    start_healthy(60000);
    slow_conn ks[ALL + 1];
    char src[32];
    for (int i = 0; i < ALL; i++) {
        snprintf(src, sizeof src, "127.0.1.%d", 10 + i);
        ks[i] = slow_open(src);
    }
    wait_stats(ALL, ALL);
    probe_from("127.0.0.1");
    cr_expect(slow_wait_closed(&ks[0]), "the oldest connection made room");
    for (int i = 1; i < ALL; i++)
        cr_expect(!slow_closed(&ks[i]), "connection %d closed", i);
    ks[ALL] = slow_open("127.0.2.1"); /* takes the probe's slot */
    wait_stats(ALL + 2, ALL);
    probe_from("127.0.2.2");
    cr_expect(slow_wait_closed(&ks[1]), "the next oldest made room");
    for (int i = 2; i <= ALL; i++)
        cr_expect(!slow_closed(&ks[i]), "connection %d closed", i);
    kzs_admin_stats st;
    kzs_admin_stats_get(adm, &st);
    cr_expect_eq(st.evicted_full, 2);
    cr_expect_eq(st.evicted_address, 0);
    cr_expect_eq(st.closed_deadline, 0);
    slow_close_all(ks, ALL + 1);
}

/* A client thread opening slowloris connections from 127.0.0.1 as fast as
 * it can (keeping the last FLOOD_RING open), with no Criterion assertion
 * off the test's thread: it only counts. */
#define FLOOD_RING 256
#define FLOOD_MAX 3000u /* connections in all: ephemeral ports stay plentiful */

typedef struct flood {
    uint16_t port;
    _Atomic int stop;
    _Atomic unsigned opened, failed;
} flood;

static int flood_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {1, 0}; /* a full backlog must not hold the thread */
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const char *start = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    if (fd < 0)
        return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0 ||
        connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        send(fd, start, strlen(start), MSG_NOSIGNAL) != (ssize_t)strlen(start)) {
        close(fd);
        return -1;
    }
    return fd;
}

static void *flood_main(void *arg)
{
    flood *f = arg;
    int ring[FLOOD_RING];
    for (int i = 0; i < FLOOD_RING; i++)
        ring[i] = -1;
    for (unsigned i = 0; i < FLOOD_MAX && !atomic_load(&f->stop); i++) {
        int *slot = &ring[i % FLOOD_RING];
        if (*slot >= 0)
            close(*slot);
        *slot = flood_connect(f->port);
        atomic_fetch_add(*slot >= 0 ? &f->opened : &f->failed, 1);
    }
    for (int i = 0; i < FLOOD_RING; i++)
        if (ring[i] >= 0)
            close(ring[i]);
    return NULL;
}

/* Probes from the flood's own address keep being answered while it runs:
 * a probe's request is read before enough newer connections arrive to
 * make it the oldest of its address. */
Test(admin, a_connection_flood_from_the_probes_address_does_not_starve_it)
{
    enum { PROBES = 10 };
    start_healthy(60000);
    static flood f;
    f.port = kzs_admin_port(adm);
    atomic_store(&f.stop, 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, flood_main, &f), 0);
    while (atomic_load(&f.opened) < 2 * KZS_ADMIN_MAX_PER_IP)
        sleep_ms(1);
    for (int i = 0; i < PROBES; i++)
        probe_from("127.0.0.1");
    kzs_admin_stats st;
    kzs_admin_stats_get(adm, &st);
    atomic_store(&f.stop, 1);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_expect_gt(st.evicted_address, 0, "the flood never filled its address's share");
    cr_expect_eq(st.evicted_full, 0, "one address displaced another's connections");
    cr_log_info("flood: %u connections opened, %u failed, %" PRIu64 " evicted during %d probes",
                atomic_load(&f.opened), atomic_load(&f.failed), st.evicted_address, PROBES);
}

/* Keep-alive is not offered: pipelined requests get one answer, and the
 * connection closes after it instead of idling. */
Test(admin, a_connection_serves_one_request)
{
    start_admin_with(60000);
    kzs_metrics_set_ready(m, 1); /* a 200: libmicrohttpd ends error answers by itself */
    reply r = http_raw(kzs_admin_port(adm), "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"
                                            "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_expect_eq(r.status, 200);
    char v[64];
    cr_assert(header(&r, "Connection", v, sizeof v));
    cr_expect_str_eq(v, "close");
    cr_expect_null(strstr(r.body, "HTTP/1.1 "), "the pipelined second request was answered");
    free(r.raw);
}

/* A request announcing a body the endpoint does not take is answered and
 * closed at once; the body, sent or not, is never waited for. */
Test(admin, announced_bodies_are_not_waited_for)
{
    start_admin_with(60000);
    uint16_t port = kzs_admin_port(adm);
    static const struct {
        const char *request;
        int status;
    } cases[] = {
        {"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nab", 405},
        {"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", 413},
        {"GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nab", 413},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        reply r = http_raw(port, cases[i].request);
        cr_expect_eq(r.status, cases[i].status, "case %zu", i);
        free(r.raw);
    }
    kzs_admin_stats st = wait_stats(3, 0);
    cr_expect_eq(st.closed_deadline, 0, "closed by the answer, not the deadline");
}

Test(admin, limits_are_checked)
{
    static const kzs_admin_limits bad[] = {
        {.deadline_ms = KZS_ADMIN_DEADLINE_MS_MAX + 1},
        {.max_connections = KZS_ADMIN_CONNECTIONS_CAP + 1},
        {.max_connections = 4, .max_per_ip = 5},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[200] = "";
        kzs_admin *a = kzs_admin_start_limited("127.0.0.1:0", m, &bad[i], err, sizeof err);
        cr_expect_null(a, "limits %zu accepted", i);
        kzs_admin_stop(a);
        cr_expect(has_prefix(err, "admin: 127.0.0.1:0: limits out of range"), "%zu: %s", i, err);
    }
    char err[200] = "";
    kzs_admin_limits small = {.max_connections = 4};
    adm = kzs_admin_start_limited("127.0.0.1:0", m, &small, err, sizeof err);
    cr_assert_not_null(adm, "per address defaults to at most max_connections: %s", err);
}
