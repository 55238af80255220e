/*
 * The settings table of kizuna-server run and the four sources that fill
 * it (config.h). One row per setting drives everything: defaults, the INI
 * keys, the flags, the environment variables, range checks, `config check`
 * output and the usage text, so they cannot disagree.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <ini.h>

#include <kizuna/log.h>

#include "commands.h"
#include "config.h"
#include "defaults.h"
#include "public_address.h"

typedef enum kzs_type {
    KZS_T_U32,
    KZS_T_U64,    /* decimal or 0x hex */
    KZS_T_FLOAT,
    KZS_T_TEXT,   /* up to size - 1 bytes; empty allowed */
    KZS_T_ROLE,   /* [a-z0-9_-], 1..16 */
    KZS_T_IPV4,
    KZS_T_ADDR,   /* HOST:PORT or "off" */
    KZS_T_LEVEL,  /* log level name */
    KZS_T_ADDRS,  /* HOST:PORT[,HOST:PORT...] or empty (public_address.h) */
    KZS_T_REFUSE_WARN, /* "refuse" or "warn" */
    KZS_T_REFUSE_CONTINUE, /* "refuse" or "continue" */
    KZS_T_NATS,   /* NATS URL(s) without user or password, or empty */
    KZS_T_WORLD,  /* 1..32 of [A-Za-z0-9_-], or empty */
    KZS_T_FLEET_ROLE, /* "single", "authority" or "edge" */
} kzs_type;

typedef struct kzs_setting {
    const char *section;
    const char *key;
    kzs_type type;
    size_t off, size;
    double min, max;
    const char *def;
    const char *help;
} kzs_setting;

#define U32(sec, k, lo, hi, d, h) {sec, #k, KZS_T_U32, offsetof(kzs_config, k), 4, lo, hi, d, h}
#define F32(sec, k, lo, hi, d, h) {sec, #k, KZS_T_FLOAT, offsetof(kzs_config, k), 4, lo, hi, d, h}
#define TXT(sec, k, t, d, h) \
    {sec, #k, t, offsetof(kzs_config, k), sizeof(((kzs_config *)0)->k), 0, 0, d, h}

/* Ranges follow what kz_server_create and the validator accept, so that a
 * config that checks out also starts. */
static const kzs_setting kzs_settings[] = {
    TXT("network", bind, KZS_T_IPV4, "0.0.0.0", "IPv4 address the UDP ports listen on"),
    U32("network", port, 0, 65535, "40000", "first UDP port (0 picks free ones)"),
    TXT("network", public_address, KZS_T_ADDRS, "",
        "HOST:PORT[,...] connect tokens name for this server (empty: bind:port, or "
        "every interface's IPv4 address with bind 0.0.0.0)"),
    U32("network", io_threads, 1, 16, "1",
        "I/O threads, one ENet host and port each; each also builds the snapshots of the "
        "clients it serves, so give it one per core the server may use"),
    U32("network", max_clients, 1, 65520, "1024", "sessions at once (<= 4095 per I/O thread)"),
    U32("network", gate_rate, 1, 10000000, "100",
        "handshake steps per second per source address"),
    U32("network", resume_grace, 0, 600, "15",
        "seconds a silent session is held for its client to come back, from any address "
        "(0: resume off, silent sessions end at the token's timeout)"),
    {"network", "protocol_id", KZS_T_U64, offsetof(kzs_config, protocol_id), 8, 0, 0,
     "0x4B495A554E410001", "application protocol id tokens must carry"},
    U32("world", tick_hz, 10, 128, "30", "simulation rate in Hz"),
    F32("world", world_bound, 1, 131072, "4096", "half-extent of the world in meters"),
    F32("world", view_radius, 1, 10000, "50", "interest radius in meters"),
    F32("world", view_hysteresis, 0, 1000, "5", "extra meters before an entity leaves a view"),
    U32("world", max_visible, 1, 1024, "100", "entities per client view"),
    U32("world", max_objects, 1, 65536, "64", "shared objects"),
    U32("world", snapshot_history, 4, 64, "16", "views kept per client for deltas"),
    U32("world", bytes_per_second, 1000, 10000000, "40000", "downstream budget per client"),
    U32("world", interest_period, 1, 16, "3", "ticks between a client's interest runs"),
    U32("world", spawn_seed, 0, 4294967295.0, "0", "seed of the random spawn points"),
    F32("world", spawn_radius, 0.1, 131072, "100", "spawn points lie within this radius"),
    F32("world", voice_radius, 0.1, 10000, "25", "voice reaches this far (meters)"),
    U32("world", voice_bytes_per_second, 100, 1000000, "8000", "voice budget per sender"),
    U32("world", chat_per_second, 1, 1000, "4", "chat messages per second per sender"),
    F32("world", personal_space, 0.1, 10, "1.2", "bubble radius for those who turn it on"),
    F32("world", grab_reach, 0.1, 100, "2", "meters from the root an object can be grabbed"),
    F32("validation", max_speed, 0.1, 99, "8", "meters per second"),
    F32("validation", max_accel, 0.1, 10000, "40", "meters per second squared"),
    F32("validation", head_min, 0, 5, "0.1", "lowest head above the root (VR), meters"),
    F32("validation", head_max, 0.1, 5, "1.95", "highest head above the root, meters"),
    F32("validation", hand_reach, 0.1, 5, "1.2", "hands within this of the head, meters"),
    F32("validation", clock_tolerance, 0.001, 1, "0.002",
        "sustained fraction a client clock may run fast"),
    F32("validation", strike_half_life, 1, 86400, "60", "seconds for a strike to halve"),
    F32("validation", kick_score, 1, 100000, "100", "strike score that kicks"),
    TXT("roles", moderator_role, KZS_T_ROLE, "moderator", "token role that may kick, mute, observe"),
    TXT("roles", admin_role, KZS_T_ROLE, "admin", "token role with every right"),
    TXT("keys", keys, KZS_T_TEXT, "", "directory with server.key, server.pub, backend.pub"),
    TXT("keys", trusted_backend_keys, KZS_T_TEXT, "",
        "comma-separated backend .pub files to trust (empty: KEYS/backend.pub)"),
    TXT("keys", insecure_key_permissions, KZS_T_REFUSE_WARN, "refuse",
        "refuse or warn: key files or directories others could change, or read if secret"),
    TXT("audit", audit, KZS_T_TEXT, "", "audit log file, signed with KEYS/audit.key (empty: off)"),
    U32("audit", audit_checkpoint_records, 1, 1000000, "1024",
        "signed checkpoint after this many records"),
    U32("audit", audit_checkpoint_seconds, 1, 86400, "10", "... or this many seconds"),
    U32("audit", audit_commit_ms, 1, 10000, "10", "fdatasync at most this long after a record"),
    TXT("audit", audit_on_failure, KZS_T_REFUSE_CONTINUE, "refuse",
        "refuse or continue: admit new clients while the audit log cannot be written"),
    TXT("admin", admin, KZS_T_ADDR, "127.0.0.1:9100",
        "HOST:PORT of /metrics, /healthz, /readyz, or off"),
    TXT("fleet", nats, KZS_T_NATS, "",
        "NATS URL(s) of the fleet directory, nats://HOST:PORT[,...], no user or password "
        "in it (empty: no fleet, one process alone)"),
    TXT("fleet", world, KZS_T_WORLD, "",
        "this world's name in the fleet directory, 1..32 of [A-Za-z0-9_-] (needed with nats)"),
    TXT("fleet", nats_credentials, KZS_T_TEXT, "",
        "NATS credentials file, mode 0600: a .creds file or one line user:password "
        "(empty: none)"),
    TXT("fleet", role, KZS_T_FLEET_ROLE, "single",
        "single (one process serves the world), authority (simulates it for its edges; no "
        "UDP) or edge (serves clients from the authority's world); not single needs nats "
        "and world"),
    U32("fleet", edge, 0, 64, "0", "this edge's number 1..64 in its world (needed with "
        "role = edge; 0 otherwise)"),
    {"server", "log_level", KZS_T_LEVEL, offsetof(kzs_config, log_level), 4, 0, 0, "info",
     "off, error, warn, info, debug or trace"},
    U32("server", shutdown_grace, 0, 3600, "10", "seconds to drain clients on SIGTERM"),
    U32("server", watchdog_seconds, 1, 3600, "5", "/healthz fails after this long without a tick"),
};

#define KZS_TABLE_N (sizeof kzs_settings / sizeof kzs_settings[0])
_Static_assert(KZS_TABLE_N == KZS_N_SETTINGS, "KZS_N_SETTINGS matches the table");

static kzs_config_report_fn kzs_report;
static void *kzs_report_ctx;

void kzs_config_set_report(kzs_config_report_fn fn, void *ctx)
{
    kzs_report = fn;
    kzs_report_ctx = ctx;
}

/* Every problem found goes through here: one line, no newline. */
static void kzs_fail(const char *fmt, ...) KZ_PRINTF(1, 2);
static void kzs_fail(const char *fmt, ...)
{
    char line[KZS_PATH_MAX + 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (kzs_report)
        kzs_report(kzs_report_ctx, line);
    else
        fprintf(stderr, "%s: %s\n", KZS_PROGRAM, line);
}

/* ---- values ------------------------------------------------------------ */

static int kzs_parse_float(const char *text, float *out)
{
    char *end;
    if (text[0] == '\0' || isspace((unsigned char)text[0]))
        return -1;
    errno = 0;
    float v = strtof(text, &end);
    if (errno != 0 || *end != '\0' || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

static int kzs_role_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 16)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '_' ||
              s[i] == '-'))
            return 0;
    return 1;
}

/* Empty, or a fleet world name (the rule of kzs_fleet_world_ok). */
static int kzs_world_ok(const char *s)
{
    size_t n = strlen(s);
    if (n > 32)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '-'))
            return 0;
    return 1;
}

/* The longest line inih reads (its buffer, less the newline and the NUL). */
#define KZS_INI_LINE_MAX 198u

/* A text value that `key = value` in an INI file reproduces exactly. */
static int kzs_text_ok(const char *key, const char *s)
{
    size_t n = strlen(s);
    if (n == 0)
        return 1;
    if (strlen(key) + 3 + n > KZS_INI_LINE_MAX || isspace((unsigned char)s[0]) ||
        isspace((unsigned char)s[n - 1]) || s[0] == ';')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (iscntrl((unsigned char)s[i]) || (s[i] == ';' && isspace((unsigned char)s[i - 1])))
            return 0;
    return 1;
}

/* HOST:PORT with an IPv4 literal or "localhost", or "off". */
static int kzs_addr_ok(const char *s)
{
    if (strcmp(s, "off") == 0)
        return 1;
    const char *colon = strrchr(s, ':');
    uint64_t port;
    char host[KZS_ADDR_TEXT_MAX];
    struct in_addr ip;
    if (colon == NULL || (size_t)(colon - s) >= sizeof host ||
        kzs_parse_u64(colon + 1, 10, 65535, &port) != 0)
        return 0;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    return strcmp(host, "localhost") == 0 || inet_pton(AF_INET, host, &ip) == 1;
}

/*
 * Parses `text` into setting `st` of `c`. Returns NULL, or a static
 * sentence saying what is wrong (the caller adds where).
 */
static const char *kzs_value_set(kzs_config *c, const kzs_setting *st, const char *text,
                                 char *why, size_t why_len)
{
    void *field = (uint8_t *)c + st->off;
    uint64_t u;
    float f;
    switch (st->type) {
    case KZS_T_U32:
        if (kzs_parse_u64(text, 10, UINT32_MAX, &u) != 0 || (double)u < st->min ||
            (double)u > st->max) {
            snprintf(why, why_len, "'%s' is not a whole number in %.0f..%.0f", text, st->min,
                     st->max);
            return why;
        }
        *(uint32_t *)field = (uint32_t)u;
        return NULL;
    case KZS_T_U64: {
        int hex = text[0] == '0' && (text[1] == 'x' || text[1] == 'X');
        const char *digits = hex ? text + 2 : text;
        int ok;
        if (hex) {
            size_t n = strlen(digits);
            errno = 0;
            ok = n > 0 && strspn(digits, "0123456789abcdefABCDEF") == n;
            u = ok ? strtoull(digits, NULL, 16) : 0;
            ok = ok && errno == 0;
        } else {
            ok = kzs_parse_u64(text, 10, UINT64_MAX, &u) == 0;
        }
        if (!ok) {
            snprintf(why, why_len, "'%s' is not a 64-bit number (decimal or 0x hex)", text);
            return why;
        }
        *(uint64_t *)field = u;
        return NULL;
    }
    case KZS_T_FLOAT:
        if (kzs_parse_float(text, &f) != 0 || f < st->min || f > st->max) {
            snprintf(why, why_len, "'%s' is not a number in %g..%g", text, st->min, st->max);
            return why;
        }
        *(float *)field = f;
        return NULL;
    case KZS_T_LEVEL: {
        int level = kz_log_level_parse(text);
        if (level < 0)
            return "not a log level (off, error, warn, info, debug, trace)";
        *(int32_t *)field = level;
        return NULL;
    }
    case KZS_T_ROLE:
        if (!kzs_role_ok(text))
            return "a role is 1 to 16 characters of [a-z0-9_-]";
        break;
    case KZS_T_IPV4: {
        struct in_addr ip;
        if (inet_pton(AF_INET, text, &ip) != 1)
            return "not an IPv4 address";
        break;
    }
    case KZS_T_REFUSE_WARN:
        if (strcmp(text, "refuse") != 0 && strcmp(text, "warn") != 0)
            return "refuse or warn";
        break;
    case KZS_T_REFUSE_CONTINUE:
        if (strcmp(text, "refuse") != 0 && strcmp(text, "continue") != 0)
            return "refuse or continue";
        break;
    case KZS_T_ADDRS: {
        const char *bad = kzs_public_address_parse(text, NULL, NULL);
        if (bad)
            return bad;
        if (!kzs_text_ok(st->key, text))
            return "cannot be written in an INI line (too long)";
        break;
    }
    case KZS_T_ADDR:
        if (!kzs_addr_ok(text))
            return "expected HOST:PORT (IPv4 or localhost) or off";
        break;
    case KZS_T_NATS:
        if (strchr(text, '@') != NULL)
            return "no user or password in the URL: put them in the nats_credentials file";
        if (!kzs_text_ok(st->key, text) || strchr(text, ' ') != NULL)
            return "expected nats://HOST:PORT[,nats://HOST:PORT...] without spaces";
        break;
    case KZS_T_WORLD:
        if (!kzs_world_ok(text))
            return "a world name is 1 to 32 characters of [A-Za-z0-9_-]";
        break;
    case KZS_T_FLEET_ROLE:
        if (strcmp(text, "single") != 0 && strcmp(text, "authority") != 0 &&
            strcmp(text, "edge") != 0)
            return "single, authority or edge";
        break;
    case KZS_T_TEXT:
        if (!kzs_text_ok(st->key, text))
            return "cannot be written in an INI line (control characters, spaces at either "
                   "end, ' ;', or too long)";
        break;
    }
    if (strlen(text) >= st->size) {
        snprintf(why, why_len, "longer than %zu characters", st->size - 1);
        return why;
    }
    memcpy(field, text, strlen(text) + 1);
    return NULL;
}

/* The shortest %g text that strtof reads back as exactly `v`. */
static void kzs_float_text(float v, char *out, size_t cap)
{
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(out, cap, "%.*g", prec, (double)v);
        if (strtof(out, NULL) == v)
            return;
    }
}

static void kzs_value_print(const kzs_config *c, const kzs_setting *st, char *out, size_t cap)
{
    const void *field = (const uint8_t *)c + st->off;
    switch (st->type) {
    case KZS_T_U32:
        snprintf(out, cap, "%u", *(const uint32_t *)field);
        break;
    case KZS_T_U64:
        snprintf(out, cap, "0x%016llX", (unsigned long long)*(const uint64_t *)field);
        break;
    case KZS_T_FLOAT:
        kzs_float_text(*(const float *)field, out, cap);
        break;
    case KZS_T_LEVEL:
        snprintf(out, cap, "%s", kz_log_level_name(*(const int32_t *)field));
        break;
    default:
        snprintf(out, cap, "%s", (const char *)field);
        break;
    }
}

static const kzs_setting *kzs_find(const char *section, const char *key, size_t *index)
{
    for (size_t i = 0; i < KZS_TABLE_N; i++)
        if ((section == NULL || strcmp(kzs_settings[i].section, section) == 0) &&
            strcmp(kzs_settings[i].key, key) == 0) {
            *index = i;
            return &kzs_settings[i];
        }
    return NULL;
}

static void kzs_defaults(kzs_config *c)
{
    char why[160];
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < KZS_TABLE_N; i++)
        if (kzs_value_set(c, &kzs_settings[i], kzs_settings[i].def, why, sizeof why) != NULL)
            abort(); /* a default out of its own range is a bug in the table */
}

/* ---- the INI file ------------------------------------------------------ */

/* What the inih callbacks share: the config, the file name, the line the
 * reader is on, and the error count. */
typedef struct kzs_ini {
    kzs_config *c;
    const char *file;
    FILE *fp;
    uint32_t line;
    int errors;
    int zone_open;          /* the current [zone.*] section, as an index, + 1 */
    char zone_section[64];
    char *buf;              /* the reader's line (getline) */
    size_t buf_cap;
    uint8_t zone_bad[KZ_ZONE_MAX]; /* a key of this zone was refused */
} kzs_ini;

static void kzs_ini_error_v(kzs_ini *p, uint32_t line, const char *fmt, va_list ap)
{
    char what[512];
    vsnprintf(what, sizeof what, fmt, ap);
    kzs_fail("%s:%u: %s", p->file, line, what);
    p->errors++;
}

static void kzs_ini_error(kzs_ini *p, const char *fmt, ...) KZ_PRINTF(2, 3);
static void kzs_ini_error(kzs_ini *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kzs_ini_error_v(p, p->line, fmt, ap);
    va_end(ap);
}

static void kzs_ini_error_at(kzs_ini *p, uint32_t line, const char *fmt, ...) KZ_PRINTF(3, 4);
static void kzs_ini_error_at(kzs_ini *p, uint32_t line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kzs_ini_error_v(p, line, fmt, ap);
    va_end(ap);
}

/*
 * The inih reader: one physical line per call, so the handler knows the
 * line number. Lines whose bytes inih would misread are reported here,
 * with their number, and handed to inih as a comment: NUL bytes, a CR
 * inside a line, a line longer than inih's buffer. The grammar is inih's
 * alone (it names the first line it cannot parse).
 */
static char *kzs_ini_reader(char *str, int num, void *stream)
{
    kzs_ini *p = stream;
    ssize_t got = getline(&p->buf, &p->buf_cap, p->fp);
    if (got < 0)
        return NULL;
    p->line++;
    size_t len = (size_t)got;
    size_t raw = len - (p->buf[len - 1] == '\n'); /* without the newline */
    size_t body = raw - (raw > 0 && p->buf[raw - 1] == '\r');
    if (strlen(p->buf) != len)
        kzs_ini_error(p, "NUL byte in the line");
    else if (memchr(p->buf, '\r', body) != NULL)
        kzs_ini_error(p, "carriage return inside the line (CR-only line endings?)");
    else if (raw > (size_t)num - 2)
        kzs_ini_error(p, "line longer than %d characters", num - 2);
    else {
        memcpy(str, p->buf, len + 1);
        return str;
    }
    snprintf(str, (size_t)num, ";\n");
    return str;
}

static int kzs_bool(const char *v, uint32_t *out)
{
    static const char *const yes[] = {"yes", "true", "on", "1"};
    static const char *const no[] = {"no", "false", "off", "0"};
    for (int i = 0; i < 4; i++)
        if (strcmp(v, yes[i]) == 0 || strcmp(v, no[i]) == 0) {
            *out = strcmp(v, yes[i]) == 0;
            return 0;
        }
    return -1;
}

/* Parses "a, b, c" into up to `max` floats; returns how many or -1. */
static int kzs_floats(const char *v, float *out, int max)
{
    char buf[256];
    if (strlen(v) >= sizeof buf)
        return -1;
    strcpy(buf, v);
    int n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*tok))
            tok++;
        char *end = tok + strlen(tok);
        while (end > tok && isspace((unsigned char)end[-1]))
            *--end = '\0';
        if (n == max || kzs_parse_float(tok, &out[n]) != 0)
            return -1;
        n++;
    }
    return n;
}

/* The largest zone half-extent the world accepts (kz_server_zone_set). */
#define KZS_ZONE_MAX_HALF 1000000.0f

static const char *kzs_verify_names[] = {"none", "basic", "strong"};

/* One key of a [zone.NAME] section. Returns NULL or what is wrong. */
static const char *kzs_zone_key(kz_zone_def *z, const char *key, const char *v)
{
    float f[3];
    uint32_t b;
    if (strcmp(key, "shape") == 0) {
        if (strcmp(v, "box") == 0)
            z->shape = KZ_ZONE_BOX;
        else if (strcmp(v, "sphere") == 0)
            z->shape = KZ_ZONE_SPHERE;
        else
            return "shape is box or sphere";
    } else if (strcmp(key, "center") == 0) {
        if (kzs_floats(v, f, 3) != 3)
            return "center is three numbers: x, y, z";
        memcpy(z->center, f, sizeof f);
    } else if (strcmp(key, "half") == 0) {
        if (kzs_floats(v, f, 3) != 3 || !(f[0] > 0 && f[1] > 0 && f[2] > 0))
            return "half is three positive numbers (half-extents x, y, z)";
        if (f[0] > KZS_ZONE_MAX_HALF || f[1] > KZS_ZONE_MAX_HALF || f[2] > KZS_ZONE_MAX_HALF)
            return "half-extents are at most 1000000 m";
        memcpy(z->half, f, sizeof f);
    } else if (strcmp(key, "radius") == 0) {
        if (kzs_floats(v, f, 1) != 1 || !(f[0] > 0))
            return "radius is a positive number";
        if (f[0] > KZS_ZONE_MAX_HALF)
            return "radius is at most 1000000 m";
        z->half[0] = z->half[1] = z->half[2] = f[0];
    } else if (strcmp(key, "private") == 0 || strcmp(key, "humans_only") == 0 ||
               strcmp(key, "locked") == 0) {
        if (kzs_bool(v, &b) != 0)
            return "expected yes or no";
        if (key[0] == 'p')
            z->is_private = b;
        else if (key[0] == 'h')
            z->humans_only = b;
        else
            z->locked = b;
    } else if (strcmp(key, "min_verification") == 0) {
        uint32_t i = 0;
        while (i < 3 && strcmp(v, kzs_verify_names[i]) != 0)
            i++;
        if (i == 3)
            return "min_verification is none, basic or strong";
        z->min_verification = i;
    } else if (strcmp(key, "roles") == 0 || strcmp(key, "clients") == 0) {
        char buf[256];
        if (strlen(v) >= sizeof buf)
            return "list too long";
        strcpy(buf, v);
        uint32_t n = 0;
        int roles = key[0] == 'r';
        memset(roles ? (void *)z->roles : (void *)z->clients, 0,
               roles ? sizeof z->roles : sizeof z->clients);
        for (char *save = NULL, *tok = strtok_r(buf, ", ", &save); tok;
             tok = strtok_r(NULL, ", ", &save)) {
            uint64_t id;
            if (n == KZ_ZONE_MAX_ALLOWED)
                return "at most 8 entries";
            if (roles) {
                if (!kzs_role_ok(tok))
                    return "a role is 1 to 16 characters of [a-z0-9_-]";
                strcpy(z->roles[n++], tok);
            } else {
                if (kzs_parse_u64(tok, 10, UINT64_MAX, &id) != 0 || id == 0)
                    return "client ids are positive whole numbers";
                z->clients[n++] = id;
            }
        }
    } else {
        return "unknown zone key (shape, center, half, radius, private, min_verification, "
               "humans_only, roles, clients, locked)";
    }
    return NULL;
}

/* Opens [zone.NAME]: a new zone, named by the section. */
static void kzs_zone_open(kzs_ini *p, const char *section)
{
    kzs_config *c = p->c;
    const char *name = section + 5;
    size_t n = strlen(name);
    snprintf(p->zone_section, sizeof p->zone_section, "%s", section);
    p->zone_open = 0;
    int ok = n > 0 && n < sizeof c->zones[0].name;
    for (size_t i = 0; ok && i < n; i++)
        ok = islower((unsigned char)name[i]) || isdigit((unsigned char)name[i]) ||
             name[i] == '_' || name[i] == '-';
    if (!ok) {
        kzs_ini_error(p,
                      "[%s]: a zone name is 1 to 24 characters of [a-z0-9_-]", section);
        return;
    }
    for (uint32_t i = 0; i < c->n_zones; i++)
        if (strcmp(c->zones[i].name, name) == 0) {
            kzs_ini_error(p, "[%s]: zone defined twice", section);
            return;
        }
    if (c->n_zones == KZ_ZONE_MAX) {
        kzs_ini_error(p, "[%s]: more than %u zones", section, KZ_ZONE_MAX);
        return;
    }
    c->zone_line[c->n_zones] = p->line;
    kz_zone_def *z = &c->zones[c->n_zones++];
    memset(z, 0, sizeof *z);
    memcpy(z->name, name, n);
    p->zone_open = (int)c->n_zones;
}

static int kzs_ini_handler(void *user, const char *section, const char *key, const char *value)
{
    kzs_ini *p = user;
    char why[160];
    if (strncmp(section, "zone.", 5) == 0) {
        if (strcmp(section, p->zone_section) != 0)
            kzs_zone_open(p, section);
        if (p->zone_open) {
            const char *bad = kzs_zone_key(&p->c->zones[p->zone_open - 1], key, value);
            if (bad) {
                kzs_ini_error(p, "[%s] %s: %s", section, key, bad);
                p->zone_bad[p->zone_open - 1] = 1;
            }
        }
        return 1;
    }
    /* Leaving a zone's section: coming back to it later is a second
     * definition, not more of the first. */
    p->zone_section[0] = '\0';
    p->zone_open = 0;
    size_t index;
    const kzs_setting *st = kzs_find(section, key, &index);
    if (st == NULL) {
        size_t other;
        int known_section = 0;
        for (size_t i = 0; i < KZS_TABLE_N; i++) /* the sections are the table's */
            known_section |= strcmp(section, kzs_settings[i].section) == 0;
        const kzs_setting *elsewhere = kzs_find(NULL, key, &other);
        if (elsewhere)
            kzs_ini_error(p, "%s belongs in [%s], not [%s]", key, elsewhere->section,
                          section[0] ? section : "(no section)");
        else if (!known_section)
            kzs_ini_error(p, "unknown section [%s] (key '%s')", section, key);
        else
            kzs_ini_error(p, "[%s]: unknown key '%s'", section, key);
        return 1;
    }
    const char *bad = kzs_value_set(p->c, st, value, why, sizeof why);
    if (bad) {
        kzs_ini_error(p, "%s: %s", key, bad);
        return 1;
    }
    p->c->source[index] = KZS_SRC_FILE;
    p->c->line[index] = p->line;
    return 1;
}

/* Each zone whose keys all loaded is complete: a shape and a size. */
static void kzs_zones_complete(kzs_ini *p)
{
    kzs_config *c = p->c;
    for (uint32_t i = 0; i < c->n_zones; i++) {
        kz_zone_def *z = &c->zones[i];
        if (p->zone_bad[i])
            continue; /* already reported */
        if (z->shape == 0)
            kzs_ini_error_at(p, c->zone_line[i], "[zone.%s] has no shape (box or sphere)",
                             z->name);
        else if (!(z->half[0] > 0))
            kzs_ini_error_at(p, c->zone_line[i], "[zone.%s] %s", z->name,
                             z->shape == KZ_ZONE_BOX ? "has no half-extents (half = x, y, z)"
                                                     : "has no radius");
    }
}

/* Each zone's center lies in the world the final world_bound makes. */
static int kzs_zones_check(kzs_config *c, const char *file)
{
    int errors = 0;
    for (uint32_t i = 0; i < c->n_zones; i++) {
        kz_zone_def *z = &c->zones[i];
        for (int k = 0; k < 3; k++)
            if (fabsf(z->center[k]) > c->world_bound) {
                kzs_fail("%s:%u: [zone.%s] has its center outside the world (world_bound)", file,
                         c->zone_line[i], z->name);
                errors++;
                break;
            }
    }
    return errors;
}

static int kzs_read_file(kzs_config *c, const char *file)
{
    kzs_ini p = {.c = c, .file = file};
    p.fp = fopen(file, "r");
    if (p.fp == NULL) {
        kzs_fail("%s: cannot read the config file: %s", file, strerror(errno));
        return 1;
    }
    struct stat st;
    if (fstat(fileno(p.fp), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(p.fp);
        kzs_fail("%s: cannot read the config file: %s", file, strerror(EISDIR));
        return 1;
    }
    snprintf(c->file, sizeof c->file, "%s", file);
    int rc = ini_parse_stream(kzs_ini_reader, &p, kzs_ini_handler, &p);
    if (ferror(p.fp)) {
        kzs_fail("%s: cannot read the config file: %s", file, strerror(errno));
        p.errors++;
    }
    fclose(p.fp);
    free(p.buf);
    kzs_zones_complete(&p);
    if (rc > 0) {
        /* inih names the first line it could not parse at all; any later
         * ones were skipped silently, so say that too. */
        kzs_fail("%s:%d: not INI syntax (expected [section], key = value or a ; comment)",
                 file, rc);
        p.errors++;
    } else if (rc < 0) {
        kzs_fail("%s: cannot parse (out of memory)", file);
        p.errors++;
    }
    return p.errors;
}

/* ---- environment and flags --------------------------------------------- */

static void kzs_env_name(const kzs_setting *st, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "KIZUNA_%s", st->key);
    for (size_t i = 7; i < n && i < cap; i++)
        out[i] = (char)toupper((unsigned char)out[i]);
}

static void kzs_flag_name(const kzs_setting *st, char *out, size_t cap)
{
    snprintf(out, cap, "%s", st->key);
    for (char *q = out; *q; q++)
        if (*q == '_')
            *q = '-';
}

extern char **environ;

static int kzs_read_env(kzs_config *c)
{
    int errors = 0;
    char name[64], why[160];
    for (size_t i = 0; i < KZS_TABLE_N; i++) {
        kzs_env_name(&kzs_settings[i], name, sizeof name);
        const char *v = getenv(name);
        if (v == NULL)
            continue;
        const char *bad = kzs_value_set(c, &kzs_settings[i], v, why, sizeof why);
        if (bad) {
            kzs_fail("%s: %s", name, bad);
            errors++;
            continue;
        }
        c->source[i] = KZS_SRC_ENV;
    }
    /* A misspelt variable would otherwise be ignored without a word. */
    for (char **e = environ; e && *e; e++) {
        if (strncmp(*e, "KIZUNA_", 7) != 0)
            continue;
        const char *eq = strchr(*e, '=');
        size_t len = eq ? (size_t)(eq - *e) : strlen(*e);
        int known = len == strlen("KIZUNA_CONFIG") && strncmp(*e, "KIZUNA_CONFIG", len) == 0;
        for (size_t i = 0; !known && i < KZS_TABLE_N; i++) {
            kzs_env_name(&kzs_settings[i], name, sizeof name);
            known = strlen(name) == len && strncmp(name, *e, len) == 0;
        }
        if (!known) {
            kzs_fail("%.*s: unknown setting in the environment", (int)len, *e);
            errors++;
        }
    }
    return errors;
}

#define KZS_OPT_CONFIG 1000
#define KZS_OPT_HELP 1001

/* getopt_long table: one flag per setting plus --config and --help. */
static void kzs_long_options(struct option *longs, char names[][64])
{
    for (size_t i = 0; i < KZS_TABLE_N; i++) {
        kzs_flag_name(&kzs_settings[i], names[i], 64);
        longs[i] = (struct option){names[i], required_argument, NULL, (int)i};
    }
    longs[KZS_TABLE_N] = (struct option){"config", required_argument, NULL, KZS_OPT_CONFIG};
    longs[KZS_TABLE_N + 1] = (struct option){"help", no_argument, NULL, KZS_OPT_HELP};
    longs[KZS_TABLE_N + 2] = (struct option){NULL, 0, NULL, 0};
}

/* First pass over argv: --config and --help, and every flag well-formed. */
static int kzs_scan_flags(int argc, char **argv, const char **config, int *help)
{
    struct option longs[KZS_TABLE_N + 3];
    char names[KZS_TABLE_N][64];
    kzs_long_options(longs, names);
    int c, errors = 0;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", longs, NULL)) != -1) {
        if (c == KZS_OPT_CONFIG)
            *config = optarg;
        else if (c == KZS_OPT_HELP)
            *help = 1;
        else if (c == '?' && optopt > ' ' && optopt < 0x7f) {
            /* An unknown short option, maybe inside a cluster ("-ab"):
             * argv[optind - 1] need not be the argument it came from. */
            kzs_fail("run: unknown option '-%c'", optopt);
            errors++;
        } else if (c == '?' || c == ':') {
            kzs_fail("run: %s '%s'", c == ':' ? "option needs a value:" : "unknown option",
                     argv[optind - 1]);
            errors++;
        }
    }
    if (optind != argc) {
        kzs_fail("run: unexpected argument '%s'", argv[optind]);
        errors++;
    }
    return errors;
}

static int kzs_apply_flags(kzs_config *cfg, int argc, char **argv)
{
    struct option longs[KZS_TABLE_N + 3];
    char names[KZS_TABLE_N][64], why[160];
    kzs_long_options(longs, names);
    int c, errors = 0;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", longs, NULL)) != -1) {
        if (c < 0 || (size_t)c >= KZS_TABLE_N)
            continue;
        const char *bad = kzs_value_set(cfg, &kzs_settings[c], optarg, why, sizeof why);
        if (bad) {
            kzs_fail("--%s: %s", names[c], bad);
            errors++;
            continue;
        }
        cfg->source[c] = KZS_SRC_FLAG;
    }
    return errors;
}

/* Checks across settings, after every source. */
static int kzs_cross_check(kzs_config *c, int need_keys)
{
    int errors = 0;
#define KZS_CROSS(cond, ...) \
    if (cond) {              \
        kzs_fail(__VA_ARGS__);   \
        errors++;            \
    }
    int single = strcmp(c->role, "single") == 0, authority = strcmp(c->role, "authority") == 0;
    /* An authority has no transport: it needs keys only to sign its audit log. */
    KZS_CROSS(need_keys && c->keys[0] == '\0' && (!authority || c->audit[0] != '\0'),
              "keys: no keys directory (--keys DIR, KIZUNA_KEYS or [keys] keys = DIR)%s",
              authority ? "; an authority's audit log is signed with KEYS/audit.key" : "")
    KZS_CROSS(c->max_clients > c->io_threads * 4095u,
              "max_clients: %u is more than 4095 per I/O thread (io_threads = %u)",
              c->max_clients, c->io_threads)
    KZS_CROSS(c->port != 0 && c->port + c->io_threads - 1u > 65535u,
              "port: %u + %u I/O threads runs past port 65535", c->port, c->io_threads)
    KZS_CROSS(c->head_min >= c->head_max, "head_min (%g) must be below head_max (%g)",
              (double)c->head_min, (double)c->head_max)
    KZS_CROSS(c->nats[0] != '\0' && c->world[0] == '\0',
              "world: a fleet member needs a world name (--world NAME, KIZUNA_WORLD or "
              "[fleet] world = NAME)")
    KZS_CROSS(!single && (c->nats[0] == '\0' || c->world[0] == '\0'),
              "role: %s needs the bus and a world name (--nats URL --world NAME, KIZUNA_NATS "
              "and KIZUNA_WORLD, or [fleet] nats and world)", c->role)
    KZS_CROSS(strcmp(c->role, "edge") == 0 && c->edge == 0,
              "edge: role = edge needs this edge's number 1..64 (--edge N, KIZUNA_EDGE or "
              "[fleet] edge = N)")
    KZS_CROSS(strcmp(c->role, "edge") != 0 && c->edge != 0,
              "edge: %u is set but role is %s (only an edge has a number)", c->edge, c->role)
    KZS_CROSS(c->spawn_radius > c->world_bound, "spawn_radius (%g) is beyond world_bound (%g)",
              (double)c->spawn_radius, (double)c->world_bound)
#undef KZS_CROSS
    return errors;
}

int kzs_config_load_file(kzs_config *c, const char *file)
{
    kzs_defaults(c);
    int errors = kzs_read_file(c, file);
    errors += kzs_zones_check(c, file);
    /* The keys directory may come from a flag or the environment. */
    return errors ? errors : kzs_cross_check(c, 0);
}

int kzs_config_load(kzs_config *c, int argc, char **argv)
{
    const char *file = getenv("KIZUNA_CONFIG");
    int help = 0;
    kzs_defaults(c);
    int errors = kzs_scan_flags(argc, argv, &file, &help);
    if (help) {
        kzs_config_usage(stdout);
        return -1;
    }
    int have_file = file != NULL && file[0] != '\0';
    if (have_file)
        errors += kzs_read_file(c, file);
    errors += kzs_read_env(c);
    errors += kzs_apply_flags(c, argc, argv);
    /* Zones against the world the environment and flags made. */
    if (have_file)
        errors += kzs_zones_check(c, file);
    if (errors == 0)
        errors += kzs_cross_check(c, 1);
    return errors;
}

/* ---- output ------------------------------------------------------------ */

static void kzs_zone_print(const kz_zone_def *z, FILE *out)
{
    char a[32], b[32], d[32];
    fprintf(out, "\n[zone.%s]\n", z->name);
    fprintf(out, "shape = %s\n", z->shape == KZ_ZONE_BOX ? "box" : "sphere");
    kzs_float_text(z->center[0], a, sizeof a);
    kzs_float_text(z->center[1], b, sizeof b);
    kzs_float_text(z->center[2], d, sizeof d);
    fprintf(out, "center = %s, %s, %s\n", a, b, d);
    kzs_float_text(z->half[0], a, sizeof a);
    kzs_float_text(z->half[1], b, sizeof b);
    kzs_float_text(z->half[2], d, sizeof d);
    if (z->shape == KZ_ZONE_BOX)
        fprintf(out, "half = %s, %s, %s\n", a, b, d);
    else
        fprintf(out, "radius = %s\n", a);
    fprintf(out, "private = %s\n", z->is_private ? "yes" : "no");
    fprintf(out, "min_verification = %s\n", kzs_verify_names[z->min_verification % 3]);
    fprintf(out, "humans_only = %s\n", z->humans_only ? "yes" : "no");
    fprintf(out, "locked = %s\n", z->locked ? "yes" : "no");
    fputs("roles =", out);
    for (uint32_t k = 0; k < KZ_ZONE_MAX_ALLOWED && z->roles[k][0]; k++)
        fprintf(out, "%s %s", k ? "," : "", z->roles[k]);
    fputs("\nclients =", out);
    for (uint32_t k = 0; k < KZ_ZONE_MAX_ALLOWED && z->clients[k]; k++)
        fprintf(out, "%s %llu", k ? "," : "", (unsigned long long)z->clients[k]);
    fputc('\n', out);
}

void kzs_config_print(const kzs_config *c, FILE *out)
{
    const char *section = "";
    char value[KZS_PATH_MAX + 32], where[KZS_PATH_MAX + 32];
    fprintf(out, "; effective configuration of %s %s\n", KZS_PROGRAM, kz_version());
    for (size_t i = 0; i < KZS_TABLE_N; i++) {
        const kzs_setting *st = &kzs_settings[i];
        if (strcmp(section, st->section) != 0) {
            section = st->section;
            fprintf(out, "%s[%s]\n", i ? "\n" : "", section);
        }
        kzs_value_print(c, st, value, sizeof value);
        switch (c->source[i]) {
        case KZS_SRC_FILE:
            snprintf(where, sizeof where, "%s:%u", c->file, c->line[i]);
            break;
        case KZS_SRC_ENV:
            kzs_env_name(st, where, sizeof where);
            break;
        case KZS_SRC_FLAG:
            snprintf(where, sizeof where, "--");
            kzs_flag_name(st, where + 2, sizeof where - 2);
            break;
        default:
            snprintf(where, sizeof where, "default");
        }
        if (40 + 2 + strlen(where) > KZS_INI_LINE_MAX ||
            strlen(st->key) + 3 + strlen(value) + 3 + strlen(where) > KZS_INI_LINE_MAX) {
            /* The source would make the line longer than inih reads. */
            size_t w = strlen(where);
            fprintf(out, "; %s%s\n%s = %s\n", w > 190 ? "..." : "", w > 190 ? where + w - 190 : where,
                    st->key, value);
            continue;
        }
        fprintf(out, "%s = %s%*s; %s\n", st->key, value,
                (int)(strlen(st->key) + strlen(value) < 40 ? 40 - strlen(st->key) - strlen(value)
                                                           : 1),
                "", where);
    }
    for (uint32_t z = 0; z < c->n_zones; z++)
        kzs_zone_print(&c->zones[z], out);
}

void kzs_config_usage(FILE *out)
{
    char flag[64], env[64];
    fprintf(out, "usage: %s run [--config FILE] [--SETTING VALUE]...\n"
                 "Every setting is also a [section] key in FILE and a KIZUNA_* variable;\n"
                 "a flag beats the environment, which beats the file, which beats the default.\n"
                 "`%s config check FILE` validates a file and prints what it would run with.\n",
            KZS_PROGRAM, KZS_PROGRAM);
    const char *section = "";
    for (size_t i = 0; i < KZS_TABLE_N; i++) {
        const kzs_setting *st = &kzs_settings[i];
        if (strcmp(section, st->section) != 0) {
            section = st->section;
            fprintf(out, "\n[%s]\n", section);
        }
        kzs_flag_name(st, flag, sizeof flag);
        kzs_env_name(st, env, sizeof env);
        char range[64] = "";
        if (st->type == KZS_T_U32 || st->type == KZS_T_FLOAT)
            snprintf(range, sizeof range, "; range %g..%g", st->min, st->max);
        fprintf(out, "  --%-25s %s\n  %-27s default %s%s; %s\n", flag, st->help, "",
                st->def[0] ? st->def : "none", range, env);
    }
    fputs("\nZones: [zone.NAME] sections in FILE only (docs/OPERATIONS.md).\n", out);
}

/* ---- use --------------------------------------------------------------- */

void kzs_config_to_server(const kzs_config *c, kz_server_config *sc)
{
    struct in_addr ip;
    kz_server_config_default(sc);
    kz_netserver_config *n = &sc->net;
    if (inet_pton(AF_INET, c->bind, &ip) == 1)
        memcpy(&n->bind_ip, &ip, 4);
    n->port = (uint16_t)c->port;
    n->max_clients = c->max_clients;
    n->threaded = 1;
    n->io_threads = c->io_threads;
    n->gate_rate_per_ip = c->gate_rate;
    n->resume_grace_ms = c->resume_grace * 1000u;
    n->verifier.protocol_id = c->protocol_id;
    sc->tick_hz = c->tick_hz;
    sc->world_bound = c->world_bound;
    sc->view_radius = c->view_radius;
    sc->view_hysteresis = c->view_hysteresis;
    sc->max_visible = c->max_visible;
    sc->max_objects = c->max_objects;
    sc->snapshot_history = c->snapshot_history;
    sc->bytes_per_second = c->bytes_per_second;
    sc->interest_period = c->interest_period;
    sc->spawn_seed = c->spawn_seed;
    sc->spawn_radius = c->spawn_radius;
    sc->voice_radius = c->voice_radius;
    sc->voice_bytes_per_second = c->voice_bytes_per_second;
    sc->chat_per_second = c->chat_per_second;
    sc->personal_space = c->personal_space;
    sc->grab_reach = c->grab_reach;
    sc->max_speed = c->max_speed;
    sc->max_accel = c->max_accel;
    sc->head_min = c->head_min;
    sc->head_max = c->head_max;
    sc->hand_reach = c->hand_reach;
    sc->clock_tolerance = c->clock_tolerance;
    sc->strike_half_life = c->strike_half_life;
    sc->kick_score = c->kick_score;
    sc->moderator_role = c->moderator_role;
    sc->admin_role = c->admin_role;
}

int kzs_config_backend_keys(const kzs_config *c,
                            uint8_t keys[KZ_TOKEN_MAX_BACKEND_KEYS][KZ_SIGN_PUBLIC_KEY_BYTES],
                            uint32_t *n)
{
    *n = 0;
    if (c->trusted_backend_keys[0] == '\0') {
        if (kzs_key_load(c->keys, KZS_KEY_BACKEND_PUBLIC, keys[0]) != 0)
            return -1;
        *n = 1;
        return 0;
    }
    char list[KZS_PATH_MAX];
    snprintf(list, sizeof list, "%s", c->trusted_backend_keys);
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*tok))
            tok++;
        char *end = tok + strlen(tok);
        while (end > tok && isspace((unsigned char)end[-1]))
            *--end = '\0';
        if (*tok == '\0')
            continue;
        if (*n == KZ_TOKEN_MAX_BACKEND_KEYS) {
            kzs_fail("trusted_backend_keys: more than %u keys", KZ_TOKEN_MAX_BACKEND_KEYS);
            return -1;
        }
        if (kzs_key_load_file(tok, KZS_KEY_BACKEND_PUBLIC, keys[*n]) != 0)
            return -1;
        (*n)++;
    }
    if (*n == 0) {
        kzs_fail("trusted_backend_keys: no key files named");
        return -1;
    }
    return 0;
}

void kzs_config_diff(const kzs_config *a, const kzs_config *b,
                     void (*fn)(void *ctx, const char *key), void *ctx)
{
    char va[KZS_PATH_MAX + 32], vb[KZS_PATH_MAX + 32];
    for (size_t i = 0; i < KZS_TABLE_N; i++) {
        kzs_value_print(a, &kzs_settings[i], va, sizeof va);
        kzs_value_print(b, &kzs_settings[i], vb, sizeof vb);
        if (strcmp(va, vb) != 0)
            fn(ctx, kzs_settings[i].key);
    }
}
