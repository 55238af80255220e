/*
 * `kizuna-server run --keys DIR --port PORT`: serves a world (kz_server)
 * over the secure transport with its I/O threads; this thread is the
 * simulation thread, running the fixed tick. Clients connect through the
 * gate with tokens; joins are logged. SIGINT and SIGTERM stop the server
 * cleanly.
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include <kizuna/audit.h>
#include <kizuna/server.h>

#include "commands.h"
#include "defaults.h"
#include "keys.h"

static const char kzs_run_usage[] =
    "usage: kizuna-server run --keys DIR [--port PORT] [--bind IPV4] [--max-clients N]\n"
    "                         [--io-threads N] [--tick-hz N] [--protocol-id N]\n"
    "                         [--gate-rate N] [--log-level LEVEL] [--audit FILE]\n"
    "  --keys DIR         directory with backend.pub, server.key and server.pub\n"
    "  --port PORT        UDP port (default 40000; 0 picks a free one)\n"
    "  --bind IPV4        address to listen on (default 0.0.0.0)\n"
    "  --max-clients N    sessions at once, up to 4095 per I/O thread (default 1024)\n"
    "  --io-threads N     ENet hosts with a thread each, on PORT, PORT+1, ... (default 1)\n"
    "  --tick-hz N        simulation rate, 10..128 (default 30)\n"
    "  --gate-rate N      handshake steps per second per source address (default 100;\n"
    "                     raise it only for load tests from one machine)\n"
    "  --protocol-id N    application protocol id tokens must carry\n"
    "  --log-level LEVEL  error, warn, info, debug (default info)\n"
    "  --audit FILE       append the audit log to FILE, signed with DIR/audit.key\n"
    "                     (kizuna-server keygen --audit --out DIR creates it)\n";

static volatile sig_atomic_t kzs_stop;

static void kzs_on_signal(int sig)
{
    (void)sig;
    kzs_stop = 1;
}

typedef struct kzs_run_opts {
    const char *keys;
    const char *audit;
    uint64_t port, max_clients, protocol_id, io_threads, tick_hz, gate_rate;
    uint32_t bind_ip;
    int log_level;
} kzs_run_opts;

static int kzs_run_parse(int argc, char **argv, kzs_run_opts *o)
{
    static const struct option longs[] = {
        {"keys", required_argument, NULL, 'k'},      {"port", required_argument, NULL, 'p'},
        {"bind", required_argument, NULL, 'b'},      {"max-clients", required_argument, NULL, 'm'},
        {"protocol-id", required_argument, NULL, 'P'}, {"log-level", required_argument, NULL, 'l'},
        {"io-threads", required_argument, NULL, 't'},  {"tick-hz", required_argument, NULL, 'z'},
        {"gate-rate", required_argument, NULL, 'g'},  {"audit", required_argument, NULL, 'a'},
        {"help", no_argument, NULL, 'h'},            {NULL, 0, NULL, 0}};
    *o = (kzs_run_opts){NULL, NULL, 40000, 1024, KZ_DEFAULT_PROTOCOL_ID, 1, 30, 0, 0, KZ_LOG_INFO};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        int ok = 1;
        switch (c) {
        case 'k': o->keys = optarg; break;
        case 'a': ok = (o->audit = optarg)[0] != '\0'; break;
        case 'p': ok = kzs_parse_u64(optarg, 10, 65535, &o->port) == 0; break;
        case 'm': ok = kzs_parse_u64(optarg, 10, 16 * 4095, &o->max_clients) == 0 && o->max_clients; break;
        case 't': ok = kzs_parse_u64(optarg, 10, 16, &o->io_threads) == 0 && o->io_threads; break;
        case 'z': ok = kzs_parse_u64(optarg, 10, 128, &o->tick_hz) == 0 && o->tick_hz >= 10; break;
        case 'g': ok = kzs_parse_u64(optarg, 10, 10000000, &o->gate_rate) == 0 && o->gate_rate; break;
        case 'P': ok = kzs_parse_u64(optarg, 0, UINT64_MAX, &o->protocol_id) == 0; break;
        case 'b': ok = inet_pton(AF_INET, optarg, &o->bind_ip) == 1; break;
        case 'l': ok = (o->log_level = kz_log_level_parse(optarg)) >= 0; break;
        case 'h': fputs(kzs_run_usage, stdout); return -1;
        default: return kzs_usage_error(kzs_run_usage, "run: unknown option");
        }
        if (!ok) {
            const char *name = "?";
            for (const struct option *l = longs; l->name; l++)
                if (l->val == c)
                    name = l->name;
            return kzs_usage_error(kzs_run_usage, "run: bad value for --%s: '%s'", name, optarg);
        }
    }
    if (optind != argc || o->keys == NULL)
        return kzs_usage_error(kzs_run_usage, "run: --keys DIR is required");
    return 0;
}

static int kzs_run_config(const kzs_run_opts *o, kz_server_config *sc)
{
    memset(sc, 0, sizeof *sc);
    kz_server_config_default(sc);
    kz_netserver_config *cfg = &sc->net;
    if (kzs_key_load(o->keys, KZS_KEY_BACKEND_PUBLIC, cfg->verifier.backend_pk[0]) != 0 ||
        kzs_keys_load_server(o->keys, &cfg->verifier.server_keys) != 0)
        return -1; /* the loaders have said what is wrong */
    cfg->verifier.protocol_id = o->protocol_id;
    cfg->verifier.server_id = kzs_server_id(cfg->verifier.server_keys.public_key);
    cfg->bind_ip = o->bind_ip;
    cfg->port = (uint16_t)o->port;
    cfg->max_clients = (uint32_t)o->max_clients;
    cfg->threaded = 1;
    cfg->io_threads = (uint32_t)o->io_threads;
    cfg->log.level = o->log_level;
    sc->tick_hz = (uint32_t)o->tick_hz;
    cfg->gate_rate_per_ip = (uint32_t)o->gate_rate;
    return 0;
}

static kz_time_ns kzs_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (kz_time_ns)ts.tv_sec * KZ_NS_PER_S + (kz_time_ns)ts.tv_nsec;
}

/* The simulation loop: run the ticks that are due, then sleep a little.
 * (The I/O threads receive and send meanwhile.) */
static void kzs_serve(kz_server *srv)
{
    struct timespec pause = {0, 1000000};
    while (!kzs_stop) {
        kz_server_step(srv, kzs_now());
        nanosleep(&pause, NULL);
    }
}

/* Opens the audit log named by --audit (NULL when not asked for). */
static int kzs_audit_start(const kzs_run_opts *o, kz_audit **out)
{
    kz_audit_config ac;
    *out = NULL;
    if (o->audit == NULL)
        return 0;
    memset(&ac, 0, sizeof ac);
    kz_audit_config_default(&ac);
    ac.path = o->audit;
    ac.log.level = o->log_level;
    if (kzs_keys_load_audit_secret(o->keys, ac.sign_secret_key) != 0)
        return -1;
    int rc = kz_audit_open(&ac, out);
    sodium_memzero(ac.sign_secret_key, sizeof ac.sign_secret_key);
    if (rc != KZ_OK) {
        kzs_error("run: %s: cannot open the audit log: %s", o->audit, kz_strerror(rc));
        return -1;
    }
    return 0;
}

/* Appends a server start or stop record. */
static void kzs_audit_note(kz_audit *audit, uint8_t type, uint32_t code)
{
    if (audit == NULL)
        return;
    kz_audit_record r;
    memset(&r, 0, sizeof r);
    r.type = type;
    r.code = code;
    snprintf(r.detail, sizeof r.detail, "kizuna-server %s", kz_version());
    if (kz_audit_append(audit, &r) != KZ_OK)
        kzs_error("run: audit record refused (counted as dropped)");
}

/* Records the stop, writes the final checkpoint and reports. */
static int kzs_audit_stop(kz_audit *audit, uint32_t clients)
{
    if (audit == NULL)
        return 0;
    kz_audit_stats st;
    kzs_audit_note(audit, KZ_AUDIT_SERVER_STOP, clients);
    kz_audit_stats_get(audit, &st);
    int rc = kz_audit_close(audit);
    printf("kizuna-server audit: %llu records appended, %llu dropped, %llu fsyncs%s\n",
           (unsigned long long)st.appended, (unsigned long long)st.dropped,
           (unsigned long long)st.fsyncs, rc == KZ_OK ? "" : ", WRITE FAILED");
    return rc == KZ_OK ? 0 : -1;
}

int cmd_run(int argc, char **argv)
{
    kzs_run_opts o;
    int rc = kzs_run_parse(argc, argv, &o);
    if (rc != 0)
        return rc < 0 ? KZS_EXIT_OK : rc;
    kz_server_config sc;
    if (kzs_run_config(&o, &sc) != 0)
        return KZS_EXIT_FAIL;
    kz_audit *audit = NULL;
    if (kzs_audit_start(&o, &audit) != 0) {
        sodium_memzero(&sc.net.verifier.server_keys, sizeof sc.net.verifier.server_keys);
        return KZS_EXIT_FAIL;
    }
    signal(SIGINT, kzs_on_signal);
    signal(SIGTERM, kzs_on_signal);
    sc.audit = audit;
    kz_server *srv = kz_server_create(&sc);
    sodium_memzero(&sc.net.verifier.server_keys, sizeof sc.net.verifier.server_keys);
    if (srv == NULL) {
        kzs_error("run: cannot start the world on port %u", (unsigned)o.port);
        kzs_audit_stop(audit, 0);
        return KZS_EXIT_FAIL;
    }
    kzs_audit_note(audit, KZ_AUDIT_SERVER_START, kz_server_port(srv));
    printf("kizuna-server listening on udp port %u (server id 0x%016llx, max %u clients, "
           "%u I/O threads, %u Hz)\n",
           kz_server_port(srv), (unsigned long long)sc.net.verifier.server_id, sc.net.max_clients,
           sc.net.io_threads, sc.tick_hz);
    fflush(stdout);
    kzs_serve(srv);
    printf("kizuna-server stopping: %u clients in the world, %u ticks\n", kz_server_clients(srv),
           kz_server_tick(srv));
    uint32_t clients = kz_server_clients(srv);
    kz_server_destroy(srv);
    return kzs_audit_stop(audit, clients) == 0 ? KZS_EXIT_OK : KZS_EXIT_FAIL;
}
