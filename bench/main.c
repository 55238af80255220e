/*
 * kizuna-bench: how many avatars does this world hold, at what tick rate,
 * on this hardware, under this network? One command runs a world (an
 * embedded server, or an external kizuna-server with --connect) with
 * thousands of real clients and prints the report.
 *
 *   kizuna-bench [run options]
 *   kizuna-bench compare A.json B.json
 *   kizuna-bench radius SCENARIO N
 *   kizuna-bench fleet [fleet options]
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addrs.h"
#include "fleet.h"
#include "report.h"
#include "runner.h"
#include "scenario.h"

#define KZB_MAX_THRESHOLDS 32

static const char usage[] =
    "usage: kizuna-bench [--clients N] [--hz H] [--seconds S] [--scenario NAME]\n"
    "                    [--impair PROFILE] [--connect H:P[,H:P...] --keys DIR]\n"
    "                    [--json FILE] [--csv FILE] [--plot FILE.png|.svg]\n"
    "                    [--threshold EXPR]... [--seed N] [--bot-threads N]\n"
    "                    [--warmup S] [--max-visible N] [--io-threads N] [--connect-rate N]\n"
    "                    [--audit FILE] [--first-id N]\n"
    "                    [--bots full|thin] [--window-cmd CMD] [--quiet]\n"
    "       kizuna-bench compare A.json B.json\n"
    "       kizuna-bench radius SCENARIO N\n"
    "       kizuna-bench fleet [--edges N] [--clients N] [--seconds S] [--warmup S]\n"
    "                          [--scenario NAME] [--hz H] [--server-bin PATH]\n"
    "                          [--bots full|thin] [--bot-threads N] [--json FILE]\n"
    "                          [--logs DIR] [--quiet]\n"
    "\n"
    "  --clients N        bots (real clients), default 1000\n"
    "  --hz H             server tick rate 10..128, default 30\n"
    "  --seconds S        measured seconds after everyone connected, default 20\n"
    "  --warmup S         seconds between connecting and measuring, default 3\n"
    "  --scenario NAME    wander (default), crowd, commute, churn, vr, hostile\n"
    "  --impair PROFILE   lan, wifi, mobile, bad, or loss=..,delay=..,jitter=..,dup=..,reorder=..\n"
    "  --connect H:P[,H:P...]\n"
    "                     drive external kizuna-servers (up to 8, e.g. the edges of one\n"
    "                     world) instead of an embedded one; bot i's token lists them\n"
    "                     starting at the (i mod N)-th, so bots spread evenly and each\n"
    "                     falls back to the others in order\n"
    "  --keys DIR         with --connect: backend.key and server.pub to mint tokens\n"
    "  --json FILE        write the report as JSON (schema: docs/BENCH-REPORT.md)\n"
    "  --csv FILE         write the per-second time series\n"
    "  --plot FILE        draw tick time and bandwidth over time with gnuplot\n"
    "  --threshold EXPR   e.g. 'tick_ms.p99<10' (repeatable); any failure exits 3\n"
    "  --seed N           scenario and impairment seed, default 1\n"
    "  --bot-threads N    threads running the bots, default 1\n"
    "  --max-visible N    embedded server: entities per client, default 100\n"
    "  --io-threads N     embedded server: I/O hosts, each replicating its clients on\n"
    "                     its own thread; default one per 4,000 clients\n"
    "  --connect-rate N   clients starting per second (default 1000; 40 with --connect,\n"
    "                     which suits kizuna-server's default gate budget per address)\n"
    "  --audit FILE       embedded server: keep a signed audit log in FILE (throwaway key)\n"
    "  --first-id N       client id of the first bot, default 1 (the others follow), so\n"
    "                     several kizuna-bench processes can drive one world\n"
    "  --bots KIND        full (default): clients that decode, predict and interpolate;\n"
    "                     thin: header-only clients that open each snapshot, read its\n"
    "                     header, acknowledge it and send inputs (capacity tests)\n"
    "  --window-cmd CMD   run `sh -c CMD kzb-window start|end` as the measured window\n"
    "                     starts and ends, and wait for it (e.g. to read a server's\n"
    "                     /metrics and per-thread CPU)\n"
    "  --quiet            no progress lines on stderr\n"
    "\n"
    "  radius SCENARIO N  prints the radius in meters the scenario spreads N avatars\n"
    "                     over (set an external server's spawn_radius to it)\n"
    "  fleet              the same bots against one kizuna-server, then against one\n"
    "                     world on nats-server, an authority and N edges (default 3),\n"
    "                     all started here on loopback; prints CPU per process, NATS\n"
    "                     bytes per avatar-tick and the latency the bus adds\n"
    "                     (docs/BENCHMARKS.md, \"fleet mode\")\n";

static int parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || end == s || s[0] == '-' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* --connect's list, checked before the run: 0, or -1 with why on stderr. */
static int check_connect(const char *text)
{
    kz_address addrs[KZ_TOKEN_MAX_ADDRESSES];
    uint32_t n;
    char why[160];
    if (kzb_addrs_parse(text, addrs, KZ_TOKEN_MAX_ADDRESSES, &n, why, sizeof why) == 0)
        return 0;
    fprintf(stderr, "kizuna-bench: --connect: %s\n", why);
    return -1;
}

/* "full" or "thin" as KZB_BOTS_*; -1 for anything else. */
static int parse_bots(const char *s)
{
    if (strcmp(s, "full") == 0)
        return KZB_BOTS_FULL;
    if (strcmp(s, "thin") == 0)
        return KZB_BOTS_THIN;
    return -1;
}

/* kizuna-bench radius SCENARIO N: the spawn radius an external server
 * needs for the scenario's density (bench/headline.sh uses it). */
static int cmd_radius(int argc, char **argv)
{
    uint32_t n;
    if (argc != 4 || kzb_scenario_parse(argv[2]) < 0 || parse_u32(argv[3], 1, 100000, &n) != 0) {
        fputs(usage, stderr);
        return 2;
    }
    printf("%.1f\n", (double)kzb_scenario_radius(kzb_scenario_parse(argv[2]), n));
    return 0;
}

static void on_progress(void *ctx, const kzb_point *p)
{
    (void)ctx;
    kzb_report_progress_line(stderr, p);
}

static int cmd_run(int argc, char **argv)
{
    static const struct option longs[] = {
        {"clients", required_argument, NULL, 'n'},   {"hz", required_argument, NULL, 'z'},
        {"seconds", required_argument, NULL, 's'},   {"scenario", required_argument, NULL, 'S'},
        {"impair", required_argument, NULL, 'i'},    {"connect", required_argument, NULL, 'c'},
        {"keys", required_argument, NULL, 'k'},      {"json", required_argument, NULL, 'j'},
        {"csv", required_argument, NULL, 'v'},       {"plot", required_argument, NULL, 'p'},
        {"threshold", required_argument, NULL, 't'}, {"seed", required_argument, NULL, 'e'},
        {"bot-threads", required_argument, NULL, 'b'}, {"warmup", required_argument, NULL, 'w'},
        {"max-visible", required_argument, NULL, 'm'}, {"quiet", no_argument, NULL, 'q'},
        {"connect-rate", required_argument, NULL, 'r'}, {"audit", required_argument, NULL, 'A'},
        {"bots", required_argument, NULL, 'B'},      {"window-cmd", required_argument, NULL, 'W'},
        {"io-threads", required_argument, NULL, 'I'}, {"first-id", required_argument, NULL, 'F'},
        {"help", no_argument, NULL, 'h'},            {NULL, 0, NULL, 0}};
    kzb_options o = {
        .clients = 1000, .hz = 30, .seconds = 20, .warmup = 3, .scenario = KZB_SC_WANDER,
        .seed = 1, .protocol_id = 0x4B495A554E410001ull, .bot_threads = 1, .max_visible = 100,
    };
    const char *json = NULL, *csv = NULL, *plot = NULL;
    const char *thresholds[KZB_MAX_THRESHOLDS];
    uint32_t n_thresholds = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'n': bad = parse_u32(optarg, 1, 100000, &o.clients); break;
        case 'z': bad = parse_u32(optarg, 10, 128, &o.hz); break;
        case 's': bad = parse_u32(optarg, 1, 86400, &o.seconds); break;
        case 'w': bad = parse_u32(optarg, 0, 3600, &o.warmup); break;
        case 'b': bad = parse_u32(optarg, 1, 64, &o.bot_threads); break;
        case 'm': bad = parse_u32(optarg, 1, 1024, &o.max_visible); break;
        case 'I': bad = parse_u32(optarg, 1, 16, &o.io_threads); break;
        case 'r': bad = parse_u32(optarg, 1, 100000, &o.connect_rate); break;
        case 'A': o.audit = optarg; break;
        case 'B': bad = (o.bots = parse_bots(optarg)) < 0; break;
        case 'W': o.window_cmd = optarg; break;
        case 'S': bad = (o.scenario = kzb_scenario_parse(optarg)) < 0; break;
        case 'i': o.impair = optarg; break;
        case 'c': bad = check_connect(optarg); o.connect = optarg; break;
        case 'F': bad = parse_u64(optarg, 1, UINT64_MAX / 2, &o.first_id); break;
        case 'k': o.keys = optarg; break;
        case 'j': json = optarg; break;
        case 'v': csv = optarg; break;
        case 'p': plot = optarg; break;
        case 'e': o.seed = strtoull(optarg, NULL, 0); break;
        case 'q': o.quiet = 1; break;
        case 't':
            bad = n_thresholds == KZB_MAX_THRESHOLDS;
            if (!bad)
                thresholds[n_thresholds++] = optarg;
            break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
        if (bad) {
            fprintf(stderr, "kizuna-bench: bad value '%s'\n%s", optarg, usage);
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "kizuna-bench: unexpected argument '%s'\n%s", argv[optind], usage);
        return 2;
    }
    /* Check thresholds before spending minutes on a run. */
    for (uint32_t i = 0; i < n_thresholds; i++) {
        kzb_threshold th;
        if (kzb_threshold_parse(thresholds[i], &th) != 0)
            return 2;  /* the parser said why */
    }
    kzb_result res;
    if (kzb_result_init(&res, o.seconds) != 0)
        return 1;
    int rc = kzb_run(&o, &res, on_progress, NULL);
    if (rc != 0) {
        fprintf(stderr, "kizuna-bench: the run failed\n");
        kzb_result_fini(&res);
        return 1;
    }
    int status = kzb_report_emit(&o, &res, json, csv, plot, (const char *const *)thresholds,
                                 n_thresholds);
    kzb_result_fini(&res);
    return status;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "compare") == 0) {
        if (argc != 4) {
            fputs(usage, stderr);
            return 2;
        }
        return kzb_compare(stdout, argv[2], argv[3]) == 0 ? 0 : 1;
    }
    if (argc >= 2 && strcmp(argv[1], "radius") == 0)
        return cmd_radius(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "fleet") == 0)
        return kzb_fleet_main(argc - 1, argv + 1);
    return cmd_run(argc, argv);
}
