/*
 * `kizuna-server audit verify FILE --pubkey AUDIT_PUB [--live]` checks an
 * audit log (kizuna/audit.h, docs/AUDIT.md) and prints OK or names the
 * first bad record and why; `audit show FILE` prints one line per record.
 * Exit status 0 when the log verifies, 1 when it does not or cannot be
 * read, 2 on a usage error.
 */
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include <kizuna/audit.h>

#include "commands.h"
#include "keys.h"

static const char kzs_audit_usage[] =
    "usage: kizuna-server audit verify FILE --pubkey AUDIT_PUB [--live]\n"
    "       kizuna-server audit show FILE\n"
    "\n"
    "verify checks every record's hash, the chain, the sequence numbers and\n"
    "every checkpoint signature, and that the log ends with the final\n"
    "checkpoint a clean stop writes. It prints OK and exits 0, or names the\n"
    "first bad record and why (altered, dropped, reordered, truncated,\n"
    "forked, bad checkpoint signature) and exits 1.\n"
    "\n"
    "  --pubkey FILE  the server's audit.pub (from keygen --audit)\n"
    "  --live         the server is still writing: records after the last\n"
    "                 checkpoint are counted as unsigned, not refused\n"
    "  -h, --help     show this help\n";

static void kzs_hex(const uint8_t *b, size_t n, char *out)
{
    sodium_bin2hex(out, 2 * n + 1, b, n);
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
    if (rc == KZ_OK) {
        char head[2 * KZ_AUDIT_HASH_BYTES + 1];
        kzs_hex(r.head_hash, sizeof r.head_hash, head);
        printf("OK %s: %" PRIu64 " records, %" PRIu64 " checkpoints, last seq %" PRIu64
               ", head %s", file, r.records, r.checkpoints, r.head_seq, head);
        if (r.unsigned_tail)
            printf(", %" PRIu64 " records after the last checkpoint", r.unsigned_tail);
        putchar('\n');
        return KZS_EXIT_OK;
    }
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
    putchar('\n');
}

static int kzs_audit_show_cmd(int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-')
        return kzs_usage_error(kzs_audit_usage, "audit show: exactly one FILE is required");
    int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        kzs_error("%s: cannot open as a regular file", argv[1]);
        return KZS_EXIT_FAIL;
    }
    size_t len = (size_t)st.st_size, at = 0;
    const uint8_t *b = len ? mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0) : NULL;
    close(fd);
    if (b == MAP_FAILED) {
        kzs_error("%s: cannot map", argv[1]);
        return KZS_EXIT_FAIL;
    }
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
