/*
 * `kizuna-server run --keys DIR --port PORT`: serves a world over the secure
 * transport. Until the world simulation lands the world is empty: clients
 * connect through the gate, their sessions are logged, and every session
 * is served until it ends. SIGINT and SIGTERM stop the server cleanly.
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include <kizuna/transport.h>

#include "commands.h"
#include "defaults.h"
#include "keys.h"

static const char kzs_run_usage[] =
    "usage: kizuna-server run --keys DIR [--port PORT] [--bind IPV4] [--max-clients N]\n"
    "                         [--io-threads N] [--protocol-id N] [--log-level LEVEL]\n"
    "  --keys DIR         directory with backend.pub, server.key and server.pub\n"
    "  --port PORT        UDP port (default 40000; 0 picks a free one)\n"
    "  --bind IPV4        address to listen on (default 0.0.0.0)\n"
    "  --max-clients N    sessions at once, up to 4095 per I/O thread (default 1024)\n"
    "  --io-threads N     ENet hosts with a thread each, on PORT, PORT+1, ... (default 1)\n"
    "  --protocol-id N    application protocol id tokens must carry\n"
    "  --log-level LEVEL  error, warn, info, debug (default info)\n";

static volatile sig_atomic_t kzs_stop;

static void kzs_on_signal(int sig)
{
    (void)sig;
    kzs_stop = 1;
}

typedef struct kzs_run_opts {
    const char *keys;
    uint64_t port, max_clients, protocol_id, io_threads;
    uint32_t bind_ip;
    int log_level;
} kzs_run_opts;

static int kzs_run_parse(int argc, char **argv, kzs_run_opts *o)
{
    static const struct option longs[] = {
        {"keys", required_argument, NULL, 'k'},      {"port", required_argument, NULL, 'p'},
        {"bind", required_argument, NULL, 'b'},      {"max-clients", required_argument, NULL, 'm'},
        {"protocol-id", required_argument, NULL, 'P'}, {"log-level", required_argument, NULL, 'l'},
        {"io-threads", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},            {NULL, 0, NULL, 0}};
    *o = (kzs_run_opts){NULL, 40000, 1024, KZ_DEFAULT_PROTOCOL_ID, 1, 0, KZ_LOG_INFO};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        int ok = 1;
        switch (c) {
        case 'k': o->keys = optarg; break;
        case 'p': ok = kzs_parse_u64(optarg, 10, 65535, &o->port) == 0; break;
        case 'm': ok = kzs_parse_u64(optarg, 10, 16 * 4095, &o->max_clients) == 0 && o->max_clients; break;
        case 't': ok = kzs_parse_u64(optarg, 10, 16, &o->io_threads) == 0 && o->io_threads; break;
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

static int kzs_run_config(const kzs_run_opts *o, kz_netserver_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    if (kzs_key_load(o->keys, KZS_KEY_BACKEND_PUBLIC, cfg->verifier.backend_pk) != 0 ||
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
    return 0;
}

/* The application loop of an empty world: take every message, note
 * sessions opening and closing. */
static void kzs_serve(kz_netserver *srv, const kz_log *log)
{
    struct timespec pause = {0, 2000000};
    while (!kzs_stop) {
        kz_netmsg m;
        while (kz_netserver_poll(srv, &m) == KZ_OK) {
            if (m.kind == KZ_NETMSG_CONNECT) {
                const kz_token_info *t = (const kz_token_info *)m.data;
                kz_logf(log, KZ_LOG_INFO, "server", "session open slot=%u client=%llu name=\"%s\"",
                        m.slot, (unsigned long long)t->client_id, t->name);
            } else if (m.kind == KZ_NETMSG_DISCONNECT) {
                kz_logf(log, KZ_LOG_INFO, "server", "session closed slot=%u", m.slot);
            }
        }
        nanosleep(&pause, NULL);
    }
}

int cmd_run(int argc, char **argv)
{
    kzs_run_opts o;
    int rc = kzs_run_parse(argc, argv, &o);
    if (rc != 0)
        return rc < 0 ? KZS_EXIT_OK : rc;
    kz_netserver_config cfg;
    if (kzs_run_config(&o, &cfg) != 0)
        return KZS_EXIT_FAIL;
    signal(SIGINT, kzs_on_signal);
    signal(SIGTERM, kzs_on_signal);
    kz_netserver *srv = kz_netserver_create(&cfg);
    sodium_memzero(&cfg.verifier.server_keys, sizeof cfg.verifier.server_keys);
    if (srv == NULL) {
        kzs_error("run: cannot start the transport on port %u", (unsigned)o.port);
        return KZS_EXIT_FAIL;
    }
    printf("kizuna-server listening on udp port %u (server id 0x%016llx, max %u clients, "
           "%u I/O threads)\n",
           kz_netserver_port(srv), (unsigned long long)cfg.verifier.server_id, cfg.max_clients,
           cfg.io_threads);
    fflush(stdout);
    kzs_serve(srv, &cfg.log);
    printf("kizuna-server stopping: %u sessions open\n", kz_netserver_sessions(srv));
    kz_netserver_destroy(srv);
    return KZS_EXIT_OK;
}
