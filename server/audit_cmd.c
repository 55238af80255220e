/*
 * `kizuna-server audit verify FILE --pubkey AUDIT_PUB [--live]` checks an
 * audit log (kizuna/audit.h, docs/AUDIT.md) and prints OK or names the
 * first bad record and why; `audit show FILE` prints one line per record.
 * Exit status 0 when the log verifies, 1 when it does not or cannot be
 * read, 2 on a usage error, 3 when its chain is intact but the server
 * recorded gaps in it (records lost, or an unclean end): the first line
 * then starts with LOSS, not OK, and each gap has a line of its own.
 */
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include <kizuna/audit.h>

#include "commands.h"
#include "keys.h"

/* `audit verify`: the chain is intact, but the log itself records gaps. */
#define KZS_EXIT_AUDIT_GAPS 3

static const char kzs_audit_usage[] =
    "usage: kizuna-server audit verify FILE --pubkey AUDIT_PUB [--live]\n"
    "       kizuna-server audit show FILE\n"
    "\n"
    "verify checks every record's hash, the chain, the sequence numbers and\n"
    "every checkpoint signature, and that the log ends with the final\n"
    "checkpoint a clean stop writes. It prints OK and exits 0, or names the\n"
    "first bad record and why (altered, dropped, reordered, truncated,\n"
    "forked, bad checkpoint signature) and exits 1. A log whose chain is\n"
    "intact but which records its own gaps (records lost while the disk\n"
    "was full or the queue overflowed, or a restart after a crash) prints\n"
    "LOSS and one line per gap, and exits 3.\n"
    "\n"
    "  --pubkey FILE  the server's audit.pub (from keygen --audit)\n"
    "  --live         the server is still writing: records after the last\n"
    "                 checkpoint are counted as unsigned, not refused\n"
    "  -h, --help     show this help\n";

static void kzs_hex(const uint8_t *b, size_t n, char *out)
{
    sodium_bin2hex(out, 2 * n + 1, b, n);
}

/* Unix nanoseconds as UTC ISO 8601 with milliseconds. */
static const char *kzs_utc(uint64_t ns, char *out, size_t cap)
{
    time_t t = (time_t)(ns / 1000000000ull);
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
        snprintf(out, cap, "%" PRIu64 "ns", ns);
        return out;
    }
    size_t n = strlen(out);
    snprintf(out + n, cap - n, ".%03uZ", (unsigned)(ns / 1000000ull % 1000ull));
    return out;
}

/* Maps a whole file read-only; NULL with *len 0 for an empty one. Returns
 * 0 or -1 (printed). */
static int kzs_map(const char *path, const uint8_t **map, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    *map = NULL;
    *len = 0;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        kzs_error("%s: cannot open as a regular file", path);
        return -1;
    }
    *len = (size_t)st.st_size;
    void *m = *len ? mmap(NULL, *len, PROT_READ, MAP_SHARED, fd, 0) : NULL;
    close(fd);
    if (m == MAP_FAILED) {
        kzs_error("%s: cannot map", path);
        return -1;
    }
    *map = m;
    return 0;
}

/* One line for a record that notes a gap or an outage; nothing for
 * other records. `index` is its position in the file. */
static void kzs_gap_line(uint64_t index, const kz_audit_entry *e)
{
    char a[40], b[40];
    const kz_audit_record *r = &e->rec;
    if (r->type == KZ_AUDIT_LOST) {
        printf("  record %" PRIu64 " (seq %" PRIu64 "): ", index, e->seq);
        if (e->lost)
            printf("%" PRIu64 " records lost", e->lost);
        else
            printf("the writer could not write; no records lost");
        printf(" between %s and %s: %s (%s)\n", kzs_utc(e->since_ns, a, sizeof a),
               kzs_utc(e->until_ns, b, sizeof b), kz_audit_loss_reason_name(r->code), r->detail);
    } else if (r->type == KZ_AUDIT_DROPPED && r->code) {
        printf("  record %" PRIu64 " (seq %" PRIu64 "): %" PRIu32 " records lost before %s: "
               "queue full\n", index, e->seq, r->code, kzs_utc(r->unix_ns, a, sizeof a));
    } else if (r->type == KZ_AUDIT_RECOVERED) {
        printf("  record %" PRIu64 " (seq %" PRIu64 "): unclean end before %s (a crash, or a "
               "stop that could not write): %" PRIu32 " torn bytes (%" PRIu64 " incomplete "
               "record%s) cut; records not yet durable then are not in the log\n",
               index, e->seq, kzs_utc(r->unix_ns, a, sizeof a), r->code, e->lost,
               e->lost == 1 ? "" : "s");
    }
}

/* Prints a line for every gap and outage of a log that verified. */
static void kzs_gap_lines(const char *file)
{
    const uint8_t *b;
    size_t len, at = 0;
    kz_audit_entry e;
    if (kzs_map(file, &b, &len) != 0)
        return;
    for (uint64_t i = 0; at < len && kz_audit_decode(b + at, len - at, &e) == KZ_OK; i++) {
        kzs_gap_line(i, &e);
        at += e.size;
    }
    if (b)
        munmap((void *)(uintptr_t)b, len);
}

/* The report of a log whose chain verified: OK, or LOSS with its gaps. */
static int kzs_audit_report_valid(const char *file, const kz_audit_verify_result *r)
{
    char head[2 * KZ_AUDIT_HASH_BYTES + 1];
    kzs_hex(r->head_hash, sizeof r->head_hash, head);
    printf("%s %s: %" PRIu64 " records, %" PRIu64 " checkpoints, last seq %" PRIu64
           ", head %s", r->gaps ? "LOSS" : "OK", file, r->records, r->checkpoints, r->head_seq,
           head);
    if (r->unsigned_tail)
        printf(", %" PRIu64 " records after the last checkpoint", r->unsigned_tail);
    if (r->gaps)
        printf("; chain intact, but the log records %" PRIu64 " gap%s: %" PRIu64
               " records lost, %" PRIu64 " unclean end%s (%" PRIu64 " torn bytes cut)",
               r->gaps, r->gaps == 1 ? "" : "s", r->lost_records, r->recoveries,
               r->recoveries == 1 ? "" : "s", r->cut_bytes);
    else if (r->outages)
        printf("; %" PRIu64 " write outage%s, no records lost", r->outages,
               r->outages == 1 ? "" : "s");
    putchar('\n');
    if (r->gaps || r->outages)
        kzs_gap_lines(file);
    if (!r->gaps)
        return KZS_EXIT_OK;
    kzs_error("%s: chain intact, but %" PRIu64 " records were lost and %" PRIu64
              " unclean ends were recovered (see the lines above)", file, r->lost_records,
              r->recoveries);
    return KZS_EXIT_AUDIT_GAPS;
}

static int kzs_audit_verify_cmd(int argc, char **argv)
{
    static const struct option opts[] = {
        {"pubkey", required_argument, NULL, 'p'},
        {"live", no_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *pubkey = NULL;
    uint32_t flags = 0;
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":p:lh", opts, NULL)) != -1) {
        if (c == 'p')
            pubkey = optarg;
        else if (c == 'l')
            flags |= KZ_AUDIT_VERIFY_ALLOW_OPEN;
        else if (c == 'h')
            return fputs(kzs_audit_usage, stdout) == EOF ? KZS_EXIT_FAIL : KZS_EXIT_OK;
        else
            return kzs_option_error(kzs_audit_usage, "audit verify", c, argv[optind - 1]);
    }
    if (optind + 1 != argc)
        return kzs_usage_error(kzs_audit_usage, "audit verify: exactly one FILE is required");
    if (pubkey == NULL)
        return kzs_usage_error(kzs_audit_usage, "audit verify: --pubkey AUDIT_PUB is required");
    const char *file = argv[optind];
    uint8_t pk[KZ_SIGN_PUBLIC_KEY_BYTES];
    if (kzs_key_load_file(pubkey, KZS_KEY_AUDIT_PUBLIC, pk) != 0)
        return KZS_EXIT_FAIL;
    kz_audit_verify_result r;
    int rc = kz_audit_verify(file, pk, flags, &r);
    if (rc == KZ_OK)
        return kzs_audit_report_valid(file, &r);
    if (r.verdict == KZ_AUDIT_UNREADABLE) {
        kzs_error("%s: %s", file, r.why);
        return KZS_EXIT_FAIL;
    }
    printf("FAIL %s: record %" PRIu64 " (offset %" PRIu64 ", expected seq %" PRIu64 "): %s: %s\n",
           file, r.bad_index, r.bad_offset, r.expected_seq, kz_audit_verdict_name(r.verdict),
           r.why);
    kzs_error("%s: %s at record %" PRIu64, file, kz_audit_verdict_name(r.verdict), r.bad_index);
    return KZS_EXIT_FAIL;
}

/* Prints one decoded record as a logfmt-like line. */
static void kzs_audit_print(const kz_audit_entry *e)
{
    const kz_audit_record *r = &e->rec;
    printf("seq=%" PRIu64 " time_ns=%" PRIu64 " type=%s", e->seq, r->unix_ns,
           kz_audit_type_name(r->type));
    if (r->client_id)
        printf(" client=%" PRIu64, r->client_id);
    if (r->entity)
        printf(" entity=%" PRIu32, r->entity);
    if (r->client_id)
        printf(" level=%u actor=%u", r->verification_level, r->actor_kind);
    if (r->acting_for)
        printf(" acting_for=%" PRIu64, r->acting_for);
    printf(" code=%" PRIu32, r->code);
    if (r->detail[0])
        printf(" detail=\"%s\"", r->detail);
    if (e->lost)
        printf(" lost=%" PRIu64, e->lost);
    if (e->since_ns || e->until_ns)
        printf(" since_ns=%" PRIu64 " until_ns=%" PRIu64, e->since_ns, e->until_ns);
    putchar('\n');
}

static int kzs_audit_show_cmd(int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-')
        return kzs_usage_error(kzs_audit_usage, "audit show: exactly one FILE is required");
    const uint8_t *b;
    size_t len, at = 0;
    if (kzs_map(argv[1], &b, &len) != 0)
        return KZS_EXIT_FAIL;
    kz_audit_entry e;
    while (at < len && kz_audit_decode(b + at, len - at, &e) == KZ_OK) {
        kzs_audit_print(&e);
        at += e.size;
    }
    if (b)
        munmap((void *)(uintptr_t)b, len);
    if (at == len)
        return KZS_EXIT_OK;
    kzs_error("%s: unreadable record at offset %zu (run audit verify)", argv[1], at);
    return KZS_EXIT_FAIL;
}

int cmd_audit(int argc, char **argv)
{
    if (argc < 2)
        return kzs_usage_error(kzs_audit_usage, "audit: verify or show expected");
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return fputs(kzs_audit_usage, stdout) == EOF ? KZS_EXIT_FAIL : KZS_EXIT_OK;
    if (strcmp(argv[1], "verify") == 0)
        return kzs_audit_verify_cmd(argc - 1, argv + 1);
    if (strcmp(argv[1], "show") == 0)
        return kzs_audit_show_cmd(argc - 1, argv + 1);
    return kzs_usage_error(kzs_audit_usage, "audit: unknown sub-command '%s'", argv[1]);
}
