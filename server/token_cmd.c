/*
 * `kizuna-server token mint` and `kizuna-server token show`: the backend's
 * side of connect tokens, for operators and for backends that would rather
 * run a command than link the library.
 *
 * mint turns command-line options into a kz_token_info, checks it with
 * kz_token_info_check, signs it with the directory's backend.key, seals
 * fresh session keys to its server.pub, and writes the client token file
 * (token + the client's copy of the session keys) with mode 0600. The
 * token's addresses come from --server, or with --world from the fleet
 * directory on NATS: the members of that world with the most room
 * (kzs_fleet_choose), best first.
 * show prints a client token file's public fields, never its keys, and with
 * --keys runs the server's full check (kz_token_verify) against a keys
 * directory.
 *
 * Every buffer that held session keys or the backend secret is wiped before
 * the command returns, on every path.
 */
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <stdlib.h>

#include <kizuna/token.h>
#include <kizuna/utf8.h>

#include "commands.h"
#include "defaults.h"
#include "fleet.h"
#include "keys.h"

static const char kzs_token_usage[] =
    "usage: kizuna-server token mint --keys DIR --server HOST:PORT --client-id N --out FILE\n"
    "                                [identity and token options]\n"
    "       kizuna-server token mint --keys DIR --world W --nats URL --client-id N --out FILE\n"
    "                                [identity and token options]\n"
    "       kizuna-server token show FILE [--keys DIR] [--now UNIX] [--protocol-id N]\n"
    "\n"
    "  mint  sign a connect token and write the client token file\n"
    "  show  print a client token file's public fields; verify it with --keys\n"
    "\n"
    "kizuna-server token mint --help and token show --help list the options.\n";

static const char kzs_mint_usage[] =
    "usage: kizuna-server token mint --keys DIR --server HOST:PORT --client-id N --out FILE\n"
    "                                [options]\n"
    "       kizuna-server token mint --keys DIR --world W --nats URL --client-id N --out FILE\n"
    "                                [--nats-credentials FILE] [options]\n"
    "\n"
    "Signs a connect token with DIR/backend.key, seals fresh session keys to\n"
    "DIR/server.pub, and writes the client token file FILE (mode 0600; it\n"
    "holds the client's session keys). An existing FILE is replaced atomically.\n"
    "\n"
    "  -k, --keys DIR          keys directory made by keygen (required)\n"
    "  -s, --server HOST:PORT  server address: a.b.c.d:port, [v6]:port or\n"
    "                          localhost:port; repeat for up to 8 (this or --world)\n"
    "  -w, --world W           take the addresses from the fleet directory: up to 8\n"
    "                          members of world W that take clients (single, edge)\n"
    "                          and have room, the most free first\n"
    "  -n, --nats URL          with --world: NATS server(s), nats://HOST:PORT[,...],\n"
    "                          no user or password in it (KIZUNA_NATS)\n"
    "      --nats-credentials FILE  a NATS .creds file or one line user:password,\n"
    "                          mode 0600 (KIZUNA_NATS_CREDENTIALS)\n"
    "  -c, --client-id N       client id, non-zero (required)\n"
    "  -o, --out FILE          client token file to write (required)\n"
    "      --avatar-id N       avatar id (default: the client id)\n"
    "      --name S            display name, UTF-8, at most 32 bytes; no control,\n"
    "                          invisible or text-direction characters, single\n"
    "                          inner spaces (default: client-<id>)\n"
    "      --roles a,b         roles, [a-z0-9_-]; '' for none (default: visitor)\n"
    "      --zones a,b         zones the client may enter (default: none)\n"
    "      --verified METHOD   how the backend verified the owner (e.g. ekyc-face,\n"
    "                          oidc:example.com); sets --level strong unless\n"
    "                          METHOD is 'none' (default: none)\n"
    "      --level L           none, basic or strong; overrides --verified's; a\n"
    "                          level above none needs a METHOD, none needs none\n"
    "      --actor A           human, agent or bot (default: human)\n"
    "      --acting-for ID     principal an agent (or bot) acts for\n"
    "      --ttl SECONDS       lifetime, 1 to 604800 (default: 3600)\n"
    "      --timeout SECONDS   session idle timeout, 1 to 65535 (default: 10)\n"
    "      --protocol-id N     application protocol id, decimal or 0x-hex\n"
    "                          (default: 0x4b495a554e410001)\n"
    "      --now UNIX          creation time in Unix seconds (default: now)\n"
    "  -h, --help              show this help\n";

static const char kzs_show_usage[] =
    "usage: kizuna-server token show FILE [--keys DIR] [--now UNIX] [--protocol-id N]\n"
    "                                [--server HOST:PORT]...\n"
    "\n"
    "Prints the public fields of client token file FILE (never its keys).\n"
    "With --keys, also checks it as the server with those keys would:\n"
    "structure, expiry, server id, backend signature and sealed keys, and\n"
    "prints the verdict; exits 1 unless the verdict is 'valid'.\n"
    "\n"
    "  -k, --keys DIR          keys directory (backend.pub, server.key, server.pub)\n"
    "      --now UNIX          check expiry at this Unix time (default: now)\n"
    "      --protocol-id N     also require this protocol id (default: not checked)\n"
    "  -s, --server HOST:PORT  with --keys: also require the token to name this\n"
    "                          address, as a server with that public_address\n"
    "                          does; repeat for up to 16 (default: not checked)\n"
    "  -h, --help              show this help\n";

/* Long-only options are numbered past the ASCII range. */
enum {
    KZS_OPT_AVATAR = 256,
    KZS_OPT_NAME,
    KZS_OPT_ROLES,
    KZS_OPT_ZONES,
    KZS_OPT_VERIFIED,
    KZS_OPT_LEVEL,
    KZS_OPT_ACTOR,
    KZS_OPT_ACTING_FOR,
    KZS_OPT_TTL,
    KZS_OPT_TIMEOUT,
    KZS_OPT_PROTOCOL,
    KZS_OPT_NOW,
    KZS_OPT_NATS_CREDENTIALS,
};

static const struct option kzs_mint_options[] = {
    {"keys", required_argument, NULL, 'k'},
    {"server", required_argument, NULL, 's'},
    {"world", required_argument, NULL, 'w'},
    {"nats", required_argument, NULL, 'n'},
    {"nats-credentials", required_argument, NULL, KZS_OPT_NATS_CREDENTIALS},
    {"client-id", required_argument, NULL, 'c'},
    {"out", required_argument, NULL, 'o'},
    {"avatar-id", required_argument, NULL, KZS_OPT_AVATAR},
    {"name", required_argument, NULL, KZS_OPT_NAME},
    {"roles", required_argument, NULL, KZS_OPT_ROLES},
    {"zones", required_argument, NULL, KZS_OPT_ZONES},
    {"verified", required_argument, NULL, KZS_OPT_VERIFIED},
    {"level", required_argument, NULL, KZS_OPT_LEVEL},
    {"actor", required_argument, NULL, KZS_OPT_ACTOR},
    {"acting-for", required_argument, NULL, KZS_OPT_ACTING_FOR},
    {"ttl", required_argument, NULL, KZS_OPT_TTL},
    {"timeout", required_argument, NULL, KZS_OPT_TIMEOUT},
    {"protocol-id", required_argument, NULL, KZS_OPT_PROTOCOL},
    {"now", required_argument, NULL, KZS_OPT_NOW},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static const struct option kzs_show_options[] = {
    {"keys", required_argument, NULL, 'k'},
    {"server", required_argument, NULL, 's'},
    {"now", required_argument, NULL, KZS_OPT_NOW},
    {"protocol-id", required_argument, NULL, KZS_OPT_PROTOCOL},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static const char *const kzs_level_names[] = {"none", "basic", "strong"};
static const char *const kzs_actor_names[] = {"human", "agent", "bot"};

/* What mint collected from the command line. */
typedef struct kzs_mint {
    const char *keys_dir;
    const char *out;
    /* The fleet directory, with --world: NULL otherwise. */
    const char *world, *nats, *nats_credentials;
    kzs_fleet_choice choice; /* the members the addresses came from */
    kz_token_info info;
    uint64_t ttl;
    uint64_t now;
    int have_client, have_avatar, have_name, have_roles, have_now;
    int level;          /* -1: not given */
    int have_method;
} kzs_mint;

/* ---- small parsers: each returns NULL or why the value is refused ------ */

/* The returned reason lives in a static buffer: single-threaded use only. */
static const char *kzs_parse_range(const char *arg, int base, uint64_t lo, uint64_t hi,
                                   uint64_t *out)
{
    static char why[80];
    if (kzs_parse_u64(arg, base, hi, out) == 0 && *out >= lo)
        return NULL;
    snprintf(why, sizeof why, "not a whole number from %llu to %llu", (unsigned long long)lo,
             (unsigned long long)hi);
    return why;
}

/* A display name: the length, then the rule every server applies
 * (kz_utf8_name_problem), with the offending character named. */
static const char *kzs_parse_name(const char *arg, char *dst)
{
    static char why[160];
    size_t n = strlen(arg);
    uint32_t cp = KZ_UTF8_NO_CODE_POINT;
    if (n == 0)
        return "empty";
    if (n > KZ_TOKEN_NAME_MAX)
        return "too long";
    const char *bad = kz_utf8_name_problem((const uint8_t *)arg, n, &cp);
    if (bad == NULL) {
        memcpy(dst, arg, n + 1);
        return NULL;
    }
    if (cp == KZ_UTF8_NO_CODE_POINT)
        snprintf(why, sizeof why, "not a display name: %s", bad);
    else
        snprintf(why, sizeof why, "not a display name: U+%04X is %s", (unsigned)cp, bad);
    return why;
}

/* Copies at most max bytes of text into dst[max + 1]. */
static const char *kzs_copy_text(const char *arg, char *dst, size_t max)
{
    size_t n = strlen(arg);
    if (n == 0)
        return "empty";
    if (n > max)
        return "too long";
    memcpy(dst, arg, n + 1);
    return NULL;
}

/*
 * Splits "a,b,c" into rows of `names` (max_items rows of stride bytes,
 * each name at most stride - 1 bytes). "" is the empty list. Character
 * sets are left to kz_token_info_check.
 */
static const char *kzs_parse_list(const char *arg, char *names, size_t stride,
                                  unsigned max_items, uint8_t *count)
{
    unsigned n = 0;
    for (const char *p = arg; *p != '\0';) {
        size_t len = strcspn(p, ",");
        if (len == 0 || (p[len] == ',' && p[len + 1] == '\0'))
            return "empty name in the list";
        if (len > stride - 1)
            return "a name is longer than the limit (roles 16 bytes, zones 24)";
        if (n == max_items)
            return "too many names (at most 8 roles, 12 zones)";
        memcpy(names + n * stride, p, len);
        names[n * stride + len] = '\0';
        n++;
        p += len + (p[len] == ',');
    }
    *count = (uint8_t)n;
    return NULL;
}

/* Index of arg in names[0..n), or -1. */
static int kzs_lookup(const char *arg, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(arg, names[i]) == 0)
            return i;
    return -1;
}

static const char *kzs_parse_server(const char *arg, kz_token_info *t)
{
    if (t->n_addresses == KZ_TOKEN_MAX_ADDRESSES)
        return "more than 8 server addresses";
    if (kz_address_parse(arg, &t->addresses[t->n_addresses]) != KZ_OK)
        return "not HOST:PORT (numeric IPv4, [IPv6] in brackets, or localhost)";
    t->n_addresses++;
    return NULL;
}

static const char *kzs_parse_enum(const char *arg, const char *const *names, int n,
                                  uint8_t *out)
{
    int i = kzs_lookup(arg, names, n);
    if (i < 0)
        return "not one of the accepted words (see --help)";
    *out = (uint8_t)i;
    return NULL;
}

/* ---- mint -------------------------------------------------------------- */

static const char *kzs_mint_identity_option(kzs_mint *m, int c, const char *arg)
{
    kz_token_info *t = &m->info;
    switch (c) {
    case 'c':
        m->have_client = 1;
        return kzs_parse_range(arg, 10, 0, UINT64_MAX, &t->client_id);
    case KZS_OPT_AVATAR:
        m->have_avatar = 1;
        return kzs_parse_range(arg, 10, 0, UINT64_MAX, &t->avatar_id);
    case KZS_OPT_NAME:
        m->have_name = 1;
        return kzs_parse_name(arg, t->name);
    case KZS_OPT_ROLES:
        m->have_roles = 1;
        return kzs_parse_list(arg, t->roles[0], sizeof t->roles[0], KZ_TOKEN_MAX_ROLES,
                              &t->n_roles);
    case KZS_OPT_ZONES:
        return kzs_parse_list(arg, t->zones[0], sizeof t->zones[0], KZ_TOKEN_MAX_ZONES,
                              &t->n_zones);
    }
    return "unhandled option";
}

static const char *kzs_mint_claims_option(kzs_mint *m, int c, const char *arg)
{
    kz_claims *cl = &m->info.claims;
    uint8_t level;
    const char *why;
    switch (c) {
    case KZS_OPT_VERIFIED:
        m->have_method = 1;
        return kzs_copy_text(arg, cl->method, KZ_TOKEN_METHOD_MAX);
    case KZS_OPT_LEVEL:
        why = kzs_parse_enum(arg, kzs_level_names, KZ_VERIFY_MAX + 1, &level);
        if (why == NULL)
            m->level = level;
        return why;
    case KZS_OPT_ACTOR:
        return kzs_parse_enum(arg, kzs_actor_names, KZ_ACTOR_MAX + 1, &cl->actor_kind);
    case KZS_OPT_ACTING_FOR:
        return kzs_parse_range(arg, 10, 1, UINT64_MAX, &cl->acting_for);
    }
    return kzs_mint_identity_option(m, c, arg);
}

/* Applies one option; returns NULL or why its value is refused. */
static const char *kzs_mint_option(kzs_mint *m, int c, const char *arg)
{
    uint64_t v;
    const char *why;
    switch (c) {
    case 'k':
        m->keys_dir = arg;
        return NULL;
    case 'o':
        m->out = arg;
        return NULL;
    case 's':
        return kzs_parse_server(arg, &m->info);
    case 'w':
        m->world = arg;
        return kzs_fleet_world_ok(arg) ? NULL : "not 1 to 32 characters of [A-Za-z0-9_-]";
    case 'n':
        m->nats = arg;
        return arg[0] != '\0' ? NULL : "empty";
    case KZS_OPT_NATS_CREDENTIALS:
        m->nats_credentials = arg;
        return NULL;
    case KZS_OPT_TTL:
        return kzs_parse_range(arg, 10, 1, KZ_TOKEN_MAX_TTL_SECONDS, &m->ttl);
    case KZS_OPT_TIMEOUT:
        why = kzs_parse_range(arg, 10, 1, UINT16_MAX, &v);
        if (why == NULL)
            m->info.timeout_seconds = (uint16_t)v;
        return why;
    case KZS_OPT_PROTOCOL:
        return kzs_parse_range(arg, 0, 0, UINT64_MAX, &m->info.protocol_id);
    case KZS_OPT_NOW:
        m->have_now = 1;
        return kzs_parse_range(arg, 10, 0, KZS_MAX_UNIX_TIME - KZ_TOKEN_MAX_TTL_SECONDS, &m->now);
    }
    return kzs_mint_claims_option(m, c, arg);
}

/* The long name of option value c, for messages. */
static const char *kzs_option_name(const struct option *opts, int c)
{
    for (; opts->name != NULL; opts++)
        if (opts->val == c)
            return opts->name;
    return "?";
}

/* Runs getopt over a sub-command's arguments, handing each option to
 * `apply`. Returns -1 when all were accepted, else an exit status. */
static int kzs_getopt_loop(int argc, char **argv, const char *cmd, const char *usage,
                           const char *shorts, const struct option *opts,
                           const char *(*apply)(void *ctx, int c, const char *arg), void *ctx)
{
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
        if (c == 'h')
            return fputs(usage, stdout) == EOF ? KZS_EXIT_FAIL : KZS_EXIT_OK;
        if (c == '?' || c == ':' || kzs_option_name(opts, c)[0] == '?')
            return kzs_option_error(usage, cmd, c == ':' ? ':' : '?', argv[optind - 1]);
        const char *why = apply(ctx, c, optarg);
        if (why != NULL)
            return kzs_usage_error(usage, "%s: --%s '%s': %s", cmd, kzs_option_name(opts, c),
                                   optarg, why);
    }
    return -1;
}

static const char *kzs_mint_apply(void *ctx, int c, const char *arg)
{
    return kzs_mint_option(ctx, c, arg);
}

/*
 * Method and level: --verified METHOD implies strong unless METHOD is
 * "none"; --level overrides, but a level above none needs a method.
 * Returns -1 or a usage exit status.
 */
static int kzs_mint_claim_defaults(kzs_mint *m)
{
    kz_claims *cl = &m->info.claims;
    if (!m->have_method)
        snprintf(cl->method, sizeof cl->method, "%s", KZ_TOKEN_METHOD_NONE);
    int unverified = strcmp(cl->method, KZ_TOKEN_METHOD_NONE) == 0;
    if (m->level >= 0)
        cl->verification_level = (uint8_t)m->level;
    else
        cl->verification_level = unverified ? KZ_VERIFY_NONE : KZ_VERIFY_STRONG;
    if (unverified && cl->verification_level != KZ_VERIFY_NONE)
        return kzs_usage_error(kzs_mint_usage, "token mint: --level %s needs --verified METHOD",
                               kzs_level_names[cl->verification_level]);
    if (!unverified && cl->verification_level == KZ_VERIFY_NONE)
        return kzs_usage_error(kzs_mint_usage,
                               "token mint: --verified %s needs --level basic or strong",
                               cl->method);
    return -1;
}

/*
 * Where the addresses come from: --server, or --world with a NATS URL
 * (--nats, else KIZUNA_NATS), never both. Returns -1 or a usage exit.
 */
static int kzs_mint_source(kzs_mint *m)
{
    int from_directory = m->world != NULL || m->nats != NULL || m->nats_credentials != NULL;
    if (from_directory && m->info.n_addresses > 0)
        return kzs_usage_error(kzs_mint_usage, "token mint: give --server or --world with "
                               "--nats, not both");
    if (!from_directory)
        return -1;
    if (m->world == NULL)
        return kzs_usage_error(kzs_mint_usage, "token mint: --nats and --nats-credentials "
                               "need --world W (whose members the token names)");
    if (m->nats == NULL)
        m->nats = getenv("KIZUNA_NATS");
    if (m->nats == NULL || m->nats[0] == '\0')
        return kzs_usage_error(kzs_mint_usage, "token mint: --world needs --nats URL (or "
                               "KIZUNA_NATS)");
    if (m->nats_credentials == NULL)
        m->nats_credentials = getenv("KIZUNA_NATS_CREDENTIALS");
    if (m->nats_credentials == NULL)
        m->nats_credentials = "";
    return -1;
}

/* Fills what the command line left out; returns -1 or a usage exit. */
static int kzs_mint_defaults(kzs_mint *m)
{
    kz_token_info *t = &m->info;
    if (!m->keys_dir || !m->out || !m->have_client || (t->n_addresses == 0 && !m->world))
        return kzs_usage_error(kzs_mint_usage, "token mint: --keys, --server (or --world), "
                               "--client-id and --out are required");
    if (!m->have_avatar)
        t->avatar_id = t->client_id;
    if (!m->have_name)
        snprintf(t->name, sizeof t->name, "client-%llu", (unsigned long long)t->client_id);
    if (!m->have_roles) {
        snprintf(t->roles[0], sizeof t->roles[0], "%s", KZS_DEFAULT_ROLE);
        t->n_roles = 1;
    }
    t->create_time = m->have_now ? m->now : (uint64_t)time(NULL);
    t->expire_time = t->create_time + m->ttl;
    return kzs_mint_claim_defaults(m);
}

/* Writes "YYYY-MM-DDTHH:MM:SSZ" for Unix time t into out[32]. */
static const char *kzs_iso_time(uint64_t t, char out[32])
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (t > KZS_MAX_UNIX_TIME || gmtime_r(&tt, &tm) == NULL ||
        strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 32, "(out of range)");
    return out;
}

/* Joins n rows of `names` with commas into out[cap]; "-" when empty. */
static const char *kzs_join(const char *names, size_t stride, unsigned n, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    for (unsigned i = 0; i < n && len < cap; i++)
        len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? "," : "", names + i * stride);
    if (n == 0)
        snprintf(out, cap, "-");
    return out;
}

static void kzs_print_summary(const kz_token_info *t, const char *path)
{
    char roles[KZ_TOKEN_MAX_ROLES * (KZ_TOKEN_ROLE_MAX + 1) + 2];
    char zones[KZ_TOKEN_MAX_ZONES * (KZ_TOKEN_ZONE_MAX + 1) + 2];
    char expires[32];
    printf("minted client_id=%llu avatar_id=%llu name=\"%s\" roles=%s zones=%s level=%s "
           "method=%s actor=%s acting_for=%llu expires=%s file=%s\n",
           (unsigned long long)t->client_id, (unsigned long long)t->avatar_id, t->name,
           kzs_join(t->roles[0], sizeof t->roles[0], t->n_roles, roles, sizeof roles),
           kzs_join(t->zones[0], sizeof t->zones[0], t->n_zones, zones, sizeof zones),
           kzs_level_names[t->claims.verification_level], t->claims.method,
           kzs_actor_names[t->claims.actor_kind], (unsigned long long)t->claims.acting_for,
           kzs_iso_time(t->expire_time, expires), path);
}

/* ---- addresses from the fleet directory -------------------------------- */

/* Writes the nonzero counts of members passed over as "full=2 ..." into
 * out[0..cap) ("" when none); returns out. */
static char *kzs_passed_over(const kzs_fleet_choice *c, char *out, size_t cap)
{
    const struct {
        const char *name;
        uint64_t n;
    } counts[] = {
        {"authority", c->authority}, {"full", c->full}, {"duplicate", c->duplicate},
        {"left_out", c->left_out}, {"other_world", c->other_world},
        {"bad_address", c->bad_address},
    };
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        if (counts[i].n == 0 || len >= cap)
            continue;
        int w = snprintf(out + len, cap - len, "%s%s=%llu", len ? " " : "", counts[i].name,
                         (unsigned long long)counts[i].n);
        len = w < 0 ? cap : len + (size_t)w;
    }
    return out;
}

/* What the directory held besides the chosen members, on stderr. */
static void kzs_mint_report_directory(const kzs_mint *m, const kzs_fleet_skips *sk)
{
    char text[256];
    uint64_t skipped = kzs_fleet_skips_total(sk);
    if (skipped)
        kzs_error("token mint: skipped %llu bad directory entr%s (%s)",
                  (unsigned long long)skipped, skipped == 1 ? "y" : "ies",
                  kzs_fleet_skips_format(sk, text, sizeof text));
    if (m->choice.n > 0 && kzs_passed_over(&m->choice, text, sizeof text)[0] != '\0')
        kzs_error("token mint: world %s: passed over %s", m->world, text);
}

/*
 * Fills the token's addresses from world m->world's members with room,
 * best first. Returns -1 when it did, else an exit status (the reason
 * printed on one line).
 */
static int kzs_mint_pick(kzs_mint *m)
{
    char why[512], text[256];
    kzs_fleet_skips skips;
    kzs_fleet_conn *fc = kzs_fleet_connect(m->nats, m->nats_credentials, 0, 0, why, sizeof why);
    if (fc == NULL) {
        kzs_error("token mint: %s", why);
        return KZS_EXIT_FAIL;
    }
    int rc = kzs_fleet_choose(fc, m->world, &m->choice, &skips, why, sizeof why);
    kzs_fleet_disconnect(fc);
    if (rc != 0) {
        kzs_error("token mint: %s", why);
        return KZS_EXIT_FAIL;
    }
    kzs_mint_report_directory(m, &skips);
    if (m->choice.n == 0) {
        kzs_passed_over(&m->choice, text, sizeof text);
        kzs_error("token mint: refused: world %s has no member with room for a client (%s)",
                  m->world, text[0] ? text : "no member registered");
        return KZS_EXIT_FAIL;
    }
    for (uint32_t i = 0; i < m->choice.n; i++)
        m->info.addresses[i] = m->choice.address[i];
    m->info.n_addresses = (uint8_t)m->choice.n;
    return -1;
}

/* One line per chosen member, in the token's order. */
static void kzs_print_picked(const kzs_mint *m)
{
    char a[64];
    for (uint32_t i = 0; i < m->choice.n; i++) {
        const kzs_fleet_entry *e = &m->choice.chosen[i];
        printf("picked rank=%u world=%s role=%s id=%s address=%s sessions=%u max=%u\n", i + 1,
               e->world, e->role, e->id, kz_address_format(&m->choice.address[i], a, sizeof a),
               e->sessions, e->max);
    }
}

/* Signs, seals and writes the client token file. 0 or -1 (printed). */
static int kzs_mint_write(kzs_mint *m, const uint8_t *backend_sk, const uint8_t *server_pk)
{
    kz_connect_token ct;
    uint8_t file[KZ_CONNECT_TOKEN_FILE_MAX_BYTES];
    size_t token_len = 0, file_len = 0;
    int rc = kz_token_mint(&m->info, backend_sk, server_pk, &ct.keys, ct.token,
                           sizeof ct.token, &token_len);
    if (rc != KZ_OK) {
        kzs_error("token mint: cannot mint: %s", kz_strerror(rc));
    } else {
        ct.token_len = (uint16_t)token_len;
        rc = kz_connect_token_encode(&ct, file, sizeof file, &file_len);
        if (rc != KZ_OK)
            kzs_error("token mint: cannot encode the token file: %s", kz_strerror(rc));
        else
            rc = kzs_file_write(m->out, file, file_len, 0600, 1);
    }
    sodium_memzero(&ct, sizeof ct);
    sodium_memzero(file, sizeof file);
    return rc == KZ_OK ? 0 : -1;
}

static int kzs_mint_sign(kzs_mint *m)
{
    uint8_t sk[KZ_SIGN_SECRET_KEY_BYTES];
    uint8_t server_pk[KZ_BOX_PUBLIC_KEY_BYTES];
    const char *why = NULL;
    if (kz_token_info_check(&m->info, &why) != KZ_OK) {
        kzs_error("token mint: refused: %s", why);
        return KZS_EXIT_FAIL;
    }
    if (kzs_key_load(m->keys_dir, KZS_KEY_SERVER_PUBLIC, server_pk) != 0)
        return KZS_EXIT_FAIL;
    m->info.server_id = kzs_server_id(server_pk);
    int rc = KZS_EXIT_FAIL;
    if (kzs_keys_load_backend_secret(m->keys_dir, sk) == 0 &&
        kzs_mint_write(m, sk, server_pk) == 0) {
        kzs_print_picked(m);
        kzs_print_summary(&m->info, m->out);
        rc = KZS_EXIT_OK;
    }
    sodium_memzero(sk, sizeof sk);
    return rc;
}

static int kzs_token_mint(int argc, char **argv)
{
    kzs_mint m;
    memset(&m, 0, sizeof m);
    m.level = -1;
    m.ttl = KZS_DEFAULT_TOKEN_TTL_SECONDS;
    m.info.protocol_id = KZ_DEFAULT_PROTOCOL_ID;
    m.info.timeout_seconds = KZS_DEFAULT_TIMEOUT_SECONDS;
    int rc = kzs_getopt_loop(argc, argv, "token mint", kzs_mint_usage, ":k:s:w:n:c:o:h",
                             kzs_mint_options, kzs_mint_apply, &m);
    if (rc < 0 && optind < argc)
        rc = kzs_usage_error(kzs_mint_usage, "token mint: unexpected argument '%s'",
                             argv[optind]);
    if (rc < 0)
        rc = kzs_mint_source(&m);
    if (rc < 0)
        rc = kzs_mint_defaults(&m);
    if (rc < 0 && m.world != NULL)
        rc = kzs_mint_pick(&m);
    return rc < 0 ? kzs_mint_sign(&m) : rc;
}

/* ---- show -------------------------------------------------------------- */

typedef struct kzs_show {
    const char *keys_dir;
    uint64_t now;
    uint64_t protocol_id;
    int have_now, have_protocol;
    uint32_t n_servers;
    kz_address servers[KZ_VERIFIER_MAX_ADDRESSES];
} kzs_show;

static const char *kzs_show_apply(void *ctx, int c, const char *arg)
{
    kzs_show *s = ctx;
    switch (c) {
    case 'k':
        s->keys_dir = arg;
        return NULL;
    case KZS_OPT_NOW:
        s->have_now = 1;
        return kzs_parse_range(arg, 10, 0, KZS_MAX_UNIX_TIME, &s->now);
    case KZS_OPT_PROTOCOL:
        s->have_protocol = 1;
        return kzs_parse_range(arg, 0, 0, UINT64_MAX, &s->protocol_id);
    case 's':
        if (s->n_servers == KZ_VERIFIER_MAX_ADDRESSES)
            return "more than 16 server addresses";
        if (kz_address_parse(arg, &s->servers[s->n_servers]) != KZ_OK)
            return "not HOST:PORT (numeric IPv4, [IPv6] in brackets, or localhost)";
        s->n_servers++;
        return NULL;
    }
    return "not an option of token show";
}

static void kzs_print_addresses(const kz_token_info *t)
{
    char a[64];
    printf("addresses:   ");
    for (unsigned i = 0; i < t->n_addresses; i++)
        printf("%s%s", i ? " " : "", kz_address_format(&t->addresses[i], a, sizeof a));
    printf("\n");
}

static void kzs_print_info(const char *path, const kz_token_info *t, size_t token_len)
{
    char buf[KZ_TOKEN_MAX_ZONES * (KZ_TOKEN_ZONE_MAX + 1) + 2];
    char created[32], expires[32], nonce[2 * KZ_TOKEN_NONCE_BYTES + 1];
    printf("file:        %s\ntoken_bytes: %zu\n", path, token_len);
    printf("protocol_id: 0x%016llx\n", (unsigned long long)t->protocol_id);
    printf("server_id:   0x%016llx\n", (unsigned long long)t->server_id);
    printf("created:     %s (%llu)\n", kzs_iso_time(t->create_time, created),
           (unsigned long long)t->create_time);
    printf("expires:     %s (%llu)\n", kzs_iso_time(t->expire_time, expires),
           (unsigned long long)t->expire_time);
    printf("nonce:       %s\n", sodium_bin2hex(nonce, sizeof nonce, t->nonce, sizeof t->nonce));
    printf("timeout:     %u s\n", (unsigned)t->timeout_seconds);
    kzs_print_addresses(t);
    printf("client_id:   %llu\n", (unsigned long long)t->client_id);
    printf("avatar_id:   %llu\n", (unsigned long long)t->avatar_id);
    printf("name:        %s\n", t->name);
    printf("roles:       %s\n", kzs_join(t->roles[0], sizeof t->roles[0], t->n_roles, buf, sizeof buf));
    printf("zones:       %s\n", kzs_join(t->zones[0], sizeof t->zones[0], t->n_zones, buf, sizeof buf));
    printf("level:       %s\n", kzs_level_names[t->claims.verification_level]);
    printf("method:      %s\n", t->claims.method);
    printf("actor:       %s\n", kzs_actor_names[t->claims.actor_kind]);
    printf("acting_for:  %llu\n", (unsigned long long)t->claims.acting_for);
}

/* The server's full check against a keys directory. Exit status. */
static int kzs_show_verify(const kzs_show *s, const char *path, const kz_connect_token *ct,
                           const kz_token_info *t)
{
    kz_token_verifier v; /* holds server.key: wiped below */
    kz_session_keys keys;
    int rc = KZS_EXIT_FAIL;
    memset(&v, 0, sizeof v);
    if (kzs_key_load(s->keys_dir, KZS_KEY_BACKEND_PUBLIC, v.backend_pk[0]) != 0 ||
        kzs_keys_load_server(s->keys_dir, &v.server_keys) != 0)
        goto out;
    v.protocol_id = s->have_protocol ? s->protocol_id : t->protocol_id;
    v.server_id = kzs_server_id(v.server_keys.public_key);
    v.n_addresses = s->n_servers;
    memcpy(v.addresses, s->servers, sizeof v.addresses);
    uint64_t now = s->have_now ? s->now : (uint64_t)time(NULL);
    kz_token_verdict verdict = kz_token_verify(&v, ct->token, ct->token_len, now, NULL, &keys);
    sodium_memzero(&keys, sizeof keys);
    printf("verdict:     %s\n", kz_token_verdict_name(verdict));
    if (verdict == KZ_TOKEN_VALID)
        rc = KZS_EXIT_OK;
    else
        kzs_error("%s: refused by the keys in %s: %s", path, s->keys_dir,
                  kz_token_verdict_name(verdict));
out:
    sodium_memzero(&v, sizeof v);
    return rc;
}

/* Reads and decodes the client token file; prints its fields. */
static int kzs_show_file(const kzs_show *s, const char *path)
{
    kz_connect_token ct;
    uint8_t file[KZ_CONNECT_TOKEN_FILE_MAX_BYTES];
    kz_token_info info;
    size_t len = 0;
    int rc = KZS_EXIT_FAIL;
    if (kzs_file_read(path, file, sizeof file, &len, NULL) != 0)
        goto out;
    if (kz_connect_token_decode(file, len, &ct) != KZ_OK ||
        kz_token_parse(ct.token, ct.token_len, &info) != KZ_OK) {
        kzs_error("%s: not a client token file: %s", path, kz_strerror(KZ_EPROTO));
        goto out;
    }
    kzs_print_info(path, &info, ct.token_len);
    rc = s->keys_dir ? kzs_show_verify(s, path, &ct, &info) : KZS_EXIT_OK;
out:
    sodium_memzero(&ct, sizeof ct);
    sodium_memzero(file, sizeof file);
    return rc;
}

static int kzs_token_show(int argc, char **argv)
{
    kzs_show s;
    memset(&s, 0, sizeof s);
    int rc = kzs_getopt_loop(argc, argv, "token show", kzs_show_usage, ":k:s:h", kzs_show_options,
                             kzs_show_apply, &s);
    if (rc >= 0)
        return rc;
    if (optind != argc - 1)
        return kzs_usage_error(kzs_show_usage, "token show: give exactly one FILE");
    return kzs_show_file(&s, argv[optind]);
}

/* ---- dispatch ---------------------------------------------------------- */

int cmd_token(int argc, char **argv)
{
    if (argc < 2)
        return kzs_usage_error(kzs_token_usage, "token: say mint or show");
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return fputs(kzs_token_usage, stdout) == EOF ? KZS_EXIT_FAIL : KZS_EXIT_OK;
    if (strcmp(argv[1], "mint") == 0)
        return kzs_token_mint(argc - 1, argv + 1);
    if (strcmp(argv[1], "show") == 0)
        return kzs_token_show(argc - 1, argv + 1);
    return kzs_usage_error(kzs_token_usage, "token: unknown sub-command '%s'", argv[1]);
}
