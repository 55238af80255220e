/*
 * `kizuna-server fleet list`: prints the live entries of the fleet
 * directory (fleet.h), one line each or as one JSON object.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "commands.h"
#include "fleet.h"

static const char kzs_fleet_usage[] =
    "usage: kizuna-server fleet list --nats URL [--world NAME] [--nats-credentials FILE]\n"
    "                                [--json]\n"
    "\n"
    "Prints every live entry of the fleet directory (JetStream key-value bucket\n"
    "kizuna_fleet), one line each: world role id address sessions/max version.\n"
    "Entries that do not check out are skipped and counted on stderr.\n"
    "\n"
    "  -n, --nats URL               NATS server(s), nats://HOST:PORT[,...], no\n"
    "                               user or password in it (KIZUNA_NATS)\n"
    "  -w, --world NAME             only this world's entries\n"
    "  -c, --nats-credentials FILE  a NATS .creds file or one line user:password,\n"
    "                               mode 0600 (KIZUNA_NATS_CREDENTIALS)\n"
    "  -j, --json                   one JSON object: {\"entries\":[...],\"skipped\":{...}}\n"
    "  -h, --help                   show this help\n";

typedef struct kzs_fleet_opts {
    const char *nats, *world, *credentials;
    int json;
} kzs_fleet_opts;

static void kzs_fleet_print_line(void *ctx, const kzs_fleet_entry *e)
{
    (void)ctx;
    printf("%s %s %s %s %u/%u %s\n", e->world, e->role, e->id, e->address, e->sessions, e->max,
           e->version);
}

static void kzs_fleet_add_json(void *ctx, const kzs_fleet_entry *e)
{
    cJSON *list = ctx, *o = cJSON_CreateObject();
    if (o == NULL)
        return;
    cJSON_AddStringToObject(o, "world", e->world);
    cJSON_AddStringToObject(o, "role", e->role);
    cJSON_AddStringToObject(o, "id", e->id);
    cJSON_AddStringToObject(o, "address", e->address);
    cJSON_AddNumberToObject(o, "sessions", e->sessions);
    cJSON_AddNumberToObject(o, "max", e->max);
    cJSON_AddStringToObject(o, "version", e->version);
    cJSON_AddItemToArray(list, o);
}

static uint64_t kzs_fleet_skipped(const kzs_fleet_skips *sk)
{
    uint64_t n = sk->truncated;
    for (int v = 1; v < KZS_FLEET_N_VERDICTS; v++)
        n += sk->by[v];
    return n;
}

/* "skipped N entries (oversize=1 bad_json=2)" on stderr, when any. */
static void kzs_fleet_report_skips(const kzs_fleet_skips *sk)
{
    uint64_t n = kzs_fleet_skipped(sk);
    if (n == 0)
        return;
    fprintf(stderr, "kizuna-server: fleet list: skipped %llu entr%s (", (unsigned long long)n,
            n == 1 ? "y" : "ies");
    const char *sep = "";
    for (int v = 1; v < KZS_FLEET_N_VERDICTS; v++)
        if (sk->by[v]) {
            fprintf(stderr, "%s%s=%llu", sep, kzs_fleet_verdict_name((kzs_fleet_verdict)v),
                    (unsigned long long)sk->by[v]);
            sep = " ";
        }
    if (sk->truncated)
        fprintf(stderr, "%struncated=%llu", sep, (unsigned long long)sk->truncated);
    fputs(")\n", stderr);
}

static int kzs_fleet_print_json(cJSON *list, const kzs_fleet_skips *sk)
{
    cJSON *root = cJSON_CreateObject(), *skipped = cJSON_CreateObject();
    if (root == NULL || skipped == NULL) {
        cJSON_Delete(root);
        cJSON_Delete(skipped);
        cJSON_Delete(list);
        return -1;
    }
    cJSON_AddItemToObject(root, "entries", list);
    for (int v = 1; v < KZS_FLEET_N_VERDICTS; v++)
        cJSON_AddNumberToObject(skipped, kzs_fleet_verdict_name((kzs_fleet_verdict)v),
                                (double)sk->by[v]);
    cJSON_AddNumberToObject(skipped, "truncated", (double)sk->truncated);
    cJSON_AddItemToObject(root, "skipped", skipped);
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (text == NULL)
        return -1;
    puts(text);
    cJSON_free(text);
    return 0;
}

static int kzs_fleet_list_run(const kzs_fleet_opts *o)
{
    char why[512];
    kzs_fleet_skips skips;
    kzs_fleet_conn *fc = kzs_fleet_connect(o->nats, o->credentials, 0, 0, why, sizeof why);
    if (fc == NULL) {
        kzs_error("fleet list: %s", why);
        return KZS_EXIT_FAIL;
    }
    cJSON *list = o->json ? cJSON_CreateArray() : NULL;
    if (o->json && list == NULL) {
        kzs_fleet_disconnect(fc);
        kzs_error("fleet list: out of memory");
        return KZS_EXIT_FAIL;
    }
    int rc = kzs_fleet_list(fc, o->world, o->json ? kzs_fleet_add_json : kzs_fleet_print_line,
                            list, &skips, why, sizeof why);
    kzs_fleet_disconnect(fc);
    if (rc != 0) {
        cJSON_Delete(list);
        kzs_error("fleet list: %s", why);
        return KZS_EXIT_FAIL;
    }
    kzs_fleet_report_skips(&skips);
    if (o->json && kzs_fleet_print_json(list, &skips) != 0) {
        kzs_error("fleet list: out of memory");
        return KZS_EXIT_FAIL;
    }
    return fflush(stdout) == 0 ? KZS_EXIT_OK : KZS_EXIT_FAIL;
}

static int kzs_fleet_list_cmd(int argc, char **argv)
{
    static const struct option opts[] = {
        {"nats", required_argument, NULL, 'n'},
        {"world", required_argument, NULL, 'w'},
        {"nats-credentials", required_argument, NULL, 'c'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    kzs_fleet_opts o = {getenv("KIZUNA_NATS"), NULL, getenv("KIZUNA_NATS_CREDENTIALS"), 0};
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":n:w:c:jh", opts, NULL)) != -1) {
        if (c == 'n')
            o.nats = optarg;
        else if (c == 'w')
            o.world = optarg;
        else if (c == 'c')
            o.credentials = optarg;
        else if (c == 'j')
            o.json = 1;
        else if (c == 'h')
            return fputs(kzs_fleet_usage, stdout) == EOF ? KZS_EXIT_FAIL : KZS_EXIT_OK;
        else
            return kzs_option_error(kzs_fleet_usage, "fleet list", c, argv[optind - 1]);
    }
    if (optind < argc)
        return kzs_usage_error(kzs_fleet_usage, "fleet list: unexpected argument '%s'",
                               argv[optind]);
    if (o.nats == NULL || o.nats[0] == '\0')
        return kzs_usage_error(kzs_fleet_usage, "fleet list: --nats URL is required");
    if (o.world && !kzs_fleet_world_ok(o.world))
        return kzs_usage_error(kzs_fleet_usage,
                               "fleet list: a world name is 1 to 32 characters of [A-Za-z0-9_-]");
    if (o.credentials == NULL)
        o.credentials = "";
    return kzs_fleet_list_run(&o);
}

int cmd_fleet(int argc, char **argv)
{
    if (argc < 2)
        return kzs_usage_error(kzs_fleet_usage, "fleet: which? (list)");
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return fputs(kzs_fleet_usage, stdout) == EOF ? KZS_EXIT_FAIL : KZS_EXIT_OK;
    if (strcmp(argv[1], "list") == 0)
        return kzs_fleet_list_cmd(argc - 1, argv + 1);
    return kzs_usage_error(kzs_fleet_usage, "fleet: unknown command '%s'", argv[1]);
}
