/*
 * Unit tests of kizuna-server's configuration (server/config.c): the
 * precedence flag > KIZUNA_* variable > INI file > default for every kind
 * of value, with the provenance `config show` prints; the printed
 * configuration loading back to the same one; every refusal, each checked
 * as the exact line a host would read (file:line, variable or flag) and
 * counted, so that a problem reported twice or not at all fails; the INI
 * dialect's edges (BOM, comments, CRLF, over-long lines, continuation
 * lines); zones; the checks across settings; a seeded garbage run; and the
 * mapping onto kz_server_config.
 *
 * Each test runs in its own process (Criterion forks), in a fresh
 * temporary directory, with every KIZUNA_* variable removed before and
 * after, and with every reported line captured through
 * kzs_config_set_report.
 *
 * The suite `defects` holds tests of behaviour config.c gets wrong today.
 * They fail until the code is fixed; each says what it expects and why.
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <kizuna/protocol.h>

#include "commands.h"
#include "config.h"

extern char **environ;

/* ---- fixtures ------------------------------------------------------------ */

/* Reported lines: all are counted, the first CAP_KEEP kept. */
#define CAP_KEEP 64
#define CAP_LINE (KZS_PATH_MAX + 320)

typedef struct capture {
    int n;
    char line[CAP_KEEP][CAP_LINE];
} capture;

static capture cap;
static char dir[64];
static kzs_config cfg, cfg2; /* large (paths, zones): not on the stack */

static void capture_line(void *ctx, const char *line)
{
    capture *k = ctx;
    if (k->n < CAP_KEEP)
        snprintf(k->line[k->n], CAP_LINE, "%s", line);
    k->n++;
}

/* Removes every KIZUNA_* variable, whatever the environment held. */
static void clear_env(void)
{
    for (;;) {
        char name[256] = "";
        for (char **e = environ; e && *e; e++)
            if (strncmp(*e, "KIZUNA_", 7) == 0) {
                size_t len = strcspn(*e, "=");
                cr_assert_lt(len, sizeof name);
                memcpy(name, *e, len);
                name[len] = '\0';
                break;
            }
        if (name[0] == '\0')
            return;
        cr_assert_eq(unsetenv(name), 0);
    }
}

static void setup(void)
{
    clear_env();
    snprintf(dir, sizeof dir, "/tmp/kzs-config-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    cap.n = 0;
    kzs_config_set_report(capture_line, &cap);
}

static void teardown(void)
{
    char cmd[128];
    kzs_config_set_report(NULL, NULL);
    clear_env();
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(config, .init = setup, .fini = teardown, .timeout = 120);
TestSuite(regressions, .init = setup, .fini = teardown, .timeout = 60);

static void env(const char *name, const char *value)
{
    cr_assert_eq(setenv(name, value, 1), 0);
}

/* DIR/name, in one of a few rotating buffers so that several can be alive. */
static const char *path_of(const char *name)
{
    static char paths[32][128];
    static unsigned next;
    char *p = paths[next++ % 32];
    snprintf(p, sizeof paths[0], "%s/%s", dir, name);
    return p;
}

static const char *write_bytes(const char *name, const void *data, size_t len)
{
    const char *p = path_of(name);
    FILE *f = fopen(p, "wb");
    cr_assert_not_null(f, "%s: %s", p, strerror(errno));
    cr_assert_eq(fwrite(data, 1, len, f), len);
    cr_assert_eq(fclose(f), 0);
    return p;
}

static const char *write_text(const char *name, const char *text)
{
    return write_bytes(name, text, strlen(text));
}

/* The path every load_text() reads; expected messages name it. */
static const char *t_ini(void)
{
    return path_of("t.ini");
}

/*
 * "DIR/t.ini:LINE: what": an expected report about t.ini. Rotating buffers,
 * so that a whole expected list can be built in one call.
 */
static const char *at(unsigned line, const char *fmt, ...) KZ_PRINTF(2, 3);
static const char *at(unsigned line, const char *fmt, ...)
{
    static char bufs[16][CAP_LINE];
    static unsigned next;
    char *b = bufs[next++ % 16];
    int n = snprintf(b, CAP_LINE, "%s:%u: ", t_ini(), line);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b + n, CAP_LINE - (size_t)n, fmt, ap);
    va_end(ap);
    return b;
}

/* Every error is reported exactly once: the count loading returns equals
 * the lines reported. */
static int counted(int rc)
{
    cr_assert_eq(rc, cap.n, "loading returned %d errors but reported %d lines", rc, cap.n);
    return rc;
}

static int load_path(kzs_config *c, const char *path)
{
    cap.n = 0;
    return counted(kzs_config_load_file(c, path));
}

/* Writes `text` to DIR/t.ini and loads it alone (config check). */
static int load_text(const char *text)
{
    return load_path(&cfg, write_text("t.ini", text));
}

/* kzs_config_load with argv = {"run", args..., NULL}. */
static int load_argv(kzs_config *c, const char *const *args)
{
    char *argv[64];
    int argc = 0;
    while (args[argc] != NULL) {
        cr_assert_lt(argc, 63);
        argv[argc] = (char *)args[argc];
        argc++;
    }
    argv[argc] = NULL;
    cap.n = 0;
    int rc = kzs_config_load(c, argc, argv);
    return rc < 0 ? rc : counted(rc);
}

#define LOAD(c, ...) load_argv((c), (const char *const[]){"run", __VA_ARGS__, NULL})
#define LOAD_NO_FLAGS(c) load_argv((c), (const char *const[]){"run", NULL})

static void dump_reports(void)
{
    for (int i = 0; i < cap.n && i < CAP_KEEP; i++)
        cr_log_info("reported: %s", cap.line[i]);
}

/* Asserts that exactly these n lines were reported, in this order. */
static void expect_reports(int n, ...)
{
    va_list ap;
    if (cap.n != n)
        dump_reports();
    cr_assert_eq(cap.n, n, "expected %d reported lines, got %d", n, cap.n);
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        const char *want = va_arg(ap, const char *);
        cr_assert_str_eq(cap.line[i], want, "report %d", i);
    }
    va_end(ap);
}

/* Asserts that exactly these n lines were reported, in any order: for
 * lists that mix problems found while reading with ones found after. */
static void expect_report_set(int n, ...)
{
    va_list ap;
    if (cap.n != n)
        dump_reports();
    cr_assert_eq(cap.n, n, "expected %d reported lines, got %d", n, cap.n);
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        const char *want = va_arg(ap, const char *);
        int found = 0;
        for (int k = 0; k < cap.n && !found; k++)
            found = strcmp(cap.line[k], want) == 0;
        if (!found)
            dump_reports();
        cr_assert(found, "not reported: %s", want);
    }
    va_end(ap);
}

/* Asserts that `want` is among the reported lines. */
static void expect_reported(const char *want)
{
    for (int i = 0; i < cap.n && i < CAP_KEEP; i++)
        if (strcmp(cap.line[i], want) == 0)
            return;
    dump_reports();
    cr_assert_fail("not reported: %s", want);
}

/* kzs_config_print into a heap string (caller frees). */
static char *print_to_string(const kzs_config *c)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    kzs_config_print(c, f);
    cr_assert_eq(fclose(f), 0);
    return buf;
}

/*
 * Finds the printed line "key = value   ; source" of setting `key` and
 * checks its value (unless NULL) and source ("default", "KIZUNA_X", "--x",
 * "file:line").
 */
static void expect_printed(const kzs_config *c, const char *key, const char *value,
                           const char *source)
{
    char *text = print_to_string(c);
    size_t klen = strlen(key);
    int found = 0;
    for (char *line = text, *next; line && *line; line = next) {
        char *nl = strchr(line, '\n');
        next = nl ? nl + 1 : NULL;
        if (nl)
            *nl = '\0';
        if (strncmp(line, key, klen) != 0 || strncmp(line + klen, " = ", 3) != 0)
            continue;
        char *semi = strrchr(line, ';');
        cr_assert_not_null(semi, "no source comment: %s", line);
        char *v = line + klen + 3, *end = semi;
        while (end > v && end[-1] == ' ')
            end--;
        *end = '\0';
        if (value != NULL)
            cr_assert_str_eq(v, value, "printed value of %s", key);
        cr_assert_str_eq(semi + 2, source, "printed source of %s", key);
        found = 1;
        break;
    }
    free(text);
    cr_assert(found, "%s is not printed", key);
}

/* A file source as printed: "DIR/t.ini:LINE". */
static const char *file_src(const char *path, unsigned line)
{
    static char bufs[4][160];
    static unsigned next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof bufs[0], "%s:%u", path, line);
    return b;
}

/* Compares everything a configuration decides (not padding, provenance or
 * the file name). */
static void expect_same_config(const kzs_config *a, const kzs_config *b)
{
#define SAME_U(f) cr_assert_eq((uint64_t)a->f, (uint64_t)b->f, #f ": %llu vs %llu", \
                               (unsigned long long)a->f, (unsigned long long)b->f)
#define SAME_F(f) cr_assert(a->f == b->f, #f ": %.9g vs %.9g", (double)a->f, (double)b->f)
#define SAME_S(f) cr_assert_str_eq(a->f, b->f, #f)
    SAME_S(bind);
    SAME_U(port);
    SAME_U(io_threads);
    SAME_U(max_clients);
    SAME_U(gate_rate);
    SAME_U(protocol_id);
    SAME_U(tick_hz);
    SAME_U(max_visible);
    SAME_U(max_objects);
    SAME_U(snapshot_history);
    SAME_U(bytes_per_second);
    SAME_U(interest_period);
    SAME_U(voice_bytes_per_second);
    SAME_U(chat_per_second);
    SAME_U(spawn_seed);
    SAME_F(world_bound);
    SAME_F(view_radius);
    SAME_F(view_hysteresis);
    SAME_F(spawn_radius);
    SAME_F(voice_radius);
    SAME_F(personal_space);
    SAME_F(grab_reach);
    SAME_F(max_speed);
    SAME_F(max_accel);
    SAME_F(head_min);
    SAME_F(head_max);
    SAME_F(hand_reach);
    SAME_F(clock_tolerance);
    SAME_F(strike_half_life);
    SAME_F(kick_score);
    SAME_S(moderator_role);
    SAME_S(admin_role);
    SAME_S(keys);
    SAME_S(trusted_backend_keys);
    SAME_S(insecure_key_permissions);
    SAME_S(audit);
    SAME_U(audit_checkpoint_records);
    SAME_U(audit_checkpoint_seconds);
    SAME_U(audit_commit_ms);
    SAME_S(audit_on_failure);
    SAME_S(admin);
    SAME_U(log_level);
    SAME_U(shutdown_grace);
    SAME_U(watchdog_seconds);
    SAME_U(n_zones);
    for (uint32_t z = 0; z < a->n_zones; z++) {
        SAME_S(zones[z].name);
        SAME_U(zones[z].shape);
        for (int k = 0; k < 3; k++) {
            SAME_F(zones[z].center[k]);
            SAME_F(zones[z].half[k]);
        }
        SAME_U(zones[z].is_private);
        SAME_U(zones[z].min_verification);
        SAME_U(zones[z].humans_only);
        SAME_U(zones[z].locked);
        for (uint32_t k = 0; k < KZ_ZONE_MAX_ALLOWED; k++) {
            SAME_S(zones[z].roles[k]);
            SAME_U(zones[z].clients[k]);
        }
    }
#undef SAME_U
#undef SAME_F
#undef SAME_S
}

/* Prints `c` to DIR/name and loads that file into `back`; 0 errors. */
static void print_and_reload(const kzs_config *c, const char *name, kzs_config *back)
{
    char *text = print_to_string(c);
    const char *p = write_text(name, text);
    free(text);
    int rc = load_path(back, p);
    if (rc != 0)
        dump_reports();
    cr_assert_eq(rc, 0, "the printed configuration does not load back");
}

/*
 * The line zone problems are reported at. config.h says zone_line is
 * where [zone.NAME] opened, but config.c records the line of the zone's
 * first key (see defects/zone_reported_at_its_header). Every zone test
 * puts the first key right under the header and names the header's line
 * through this macro, so the fix changes only this line.
 */
#define ZONE_AT(header) ((header) + 1u)

static const char no_keys_dir[] =
    "keys: no keys directory (--keys DIR, KIZUNA_KEYS or [keys] keys = DIR)";

/* ---- precedence and provenance ----------------------------------------------- */

/* One setting of each value type through the four sources. */
typedef struct prec_row {
    const char *section, *key, *var, *flag;
    const char *def_printed;
    const char *file_value, *file_printed;
    const char *env_value, *env_printed;
    const char *flag_value, *flag_printed;
} prec_row;

static const prec_row prec_rows[] = {
    {"network", "port", "KIZUNA_PORT", "--port", "40000", "41000", "41000", "42000", "42000",
     "43000", "43000"},
    {"network", "protocol_id", "KIZUNA_PROTOCOL_ID", "--protocol-id", "0x4B495A554E410001",
     "0x1122334455667788", "0x1122334455667788", "12345678901234567890", "0xAB54A98CEB1F0AD2",
     "0xabcdef", "0x0000000000ABCDEF"},
    {"world", "view_radius", "KIZUNA_VIEW_RADIUS", "--view-radius", "50", "75.5", "75.5",
     "80.25", "80.25", "99.125", "99.125"},
    {"roles", "moderator_role", "KIZUNA_MODERATOR_ROLE", "--moderator-role", "moderator",
     "mod-file", "mod-file", "mod_env", "mod_env", "m0d", "m0d"},
    {"network", "bind", "KIZUNA_BIND", "--bind", "0.0.0.0", "10.0.0.1", "10.0.0.1", "127.0.0.2",
     "127.0.0.2", "192.168.1.7", "192.168.1.7"},
    {"admin", "admin", "KIZUNA_ADMIN", "--admin", "127.0.0.1:9100", "localhost:9200",
     "localhost:9200", "10.1.2.3:9300", "10.1.2.3:9300", "off", "off"},
    {"server", "log_level", "KIZUNA_LOG_LEVEL", "--log-level", "info", "debug", "debug",
     "warning", "warn", "error", "error"},
    {"keys", "keys", "KIZUNA_KEYS", "--keys", "", "/srv/k-file", "/srv/k-file", "/srv/k-env",
     "/srv/k-env", "/srv/k-flag", "/srv/k-flag"},
};

Test(config, precedence_of_every_value_type)
{
    for (size_t r = 0; r < sizeof prec_rows / sizeof prec_rows[0]; r++) {
        const prec_row *row = &prec_rows[r];
        int is_keys = strcmp(row->key, "keys") == 0;
        char text[256], config_flag[160], value_flag[160];
        snprintf(text, sizeof text, "; precedence\n[%s]\n%s = %s\n", row->section, row->key,
                 row->file_value);
        const char *p = write_text("p.ini", text);
        snprintf(config_flag, sizeof config_flag, "--config=%s", p);
        snprintf(value_flag, sizeof value_flag, "%s=%s", row->flag, row->flag_value);
        /* Every row but the keys row names a keys directory by flag, so the
         * load is valid; the keys row shows the check that needs one. */
        const char *keys_flag = is_keys ? "--tick-hz=30" : "--keys=/k";
        cr_log_info("setting %s", row->key);

        clear_env();
        int rc = LOAD(&cfg, keys_flag);
        if (is_keys) {
            cr_assert_eq(rc, 1);
            expect_reports(1, no_keys_dir);
        } else {
            cr_assert_eq(rc, 0);
        }
        expect_printed(&cfg, row->key, row->def_printed, "default");

        cr_assert_eq(LOAD(&cfg, keys_flag, config_flag), 0, "%s: file", row->key);
        expect_printed(&cfg, row->key, row->file_printed, file_src(p, 3));
        cr_assert_str_eq(cfg.file, p);

        env(row->var, row->env_value);
        cr_assert_eq(LOAD(&cfg, keys_flag, config_flag), 0, "%s: env", row->key);
        expect_printed(&cfg, row->key, row->env_printed, row->var);

        cr_assert_eq(LOAD(&cfg, keys_flag, config_flag, value_flag), 0, "%s: flag", row->key);
        expect_printed(&cfg, row->key, row->flag_printed, row->flag);

        /* The flag also wins over the file alone and over the variable
         * alone. */
        unsetenv(row->var);
        cr_assert_eq(LOAD(&cfg, keys_flag, config_flag, value_flag), 0);
        expect_printed(&cfg, row->key, row->flag_printed, row->flag);
        env(row->var, row->env_value);
        cr_assert_eq(LOAD(&cfg, keys_flag, value_flag), 0);
        expect_printed(&cfg, row->key, row->flag_printed, row->flag);
        cr_assert_str_eq(cfg.file, "");
    }
}

Test(config, struct_fields_follow_the_sources)
{
    const char *p = write_text("s.ini", "[world]\ntick_hz = 60\nview_radius = 70\n"
                                        "[network]\nport = 41000\n");
    env("KIZUNA_VIEW_RADIUS", "80");
    env("KIZUNA_PORT", "42000");
    cr_assert_eq(LOAD(&cfg, "--config", p, "--port", "43000", "--keys", "/k"), 0);
    cr_assert_eq(cfg.tick_hz, 60);
    cr_assert_float_eq(cfg.view_radius, 80.0f, 0);
    cr_assert_eq(cfg.port, 43000);
    cr_assert_str_eq(cfg.keys, "/k");
    cr_assert_eq(cfg.max_visible, 100); /* default */
    expect_printed(&cfg, "tick_hz", "60", file_src(p, 2));
    expect_printed(&cfg, "view_radius", "80", "KIZUNA_VIEW_RADIUS");
    expect_printed(&cfg, "port", "43000", "--port");
    expect_printed(&cfg, "keys", "/k", "--keys");
    expect_printed(&cfg, "max_visible", "100", "default");
}

Test(config, print_format)
{
    const char *p = write_text("t.ini", "[network]\nport = 41000\n");
    cr_assert_eq(load_path(&cfg, p), 0);
    char *text = print_to_string(&cfg);
    cr_assert(strncmp(text, "; effective configuration of kizuna-server ", 43) == 0, "%s", text);
    cr_assert_not_null(strstr(text, "\n[network]\nbind = 0.0.0.0"));
    /* key = value, padded to column 40, then the source. */
    char want[256];
    snprintf(want, sizeof want, "\nport = 41000%31s; %s:2\n", "", p);
    cr_assert_not_null(strstr(text, want), "%s", text);
    cr_assert_not_null(strstr(text, "\n[server]\nlog_level = info"));
    free(text);
}

/* ---- --config, KIZUNA_CONFIG, --help ------------------------------------------ */

Test(config, config_flag_beats_config_variable)
{
    const char *a = write_text("a.ini", "[world]\ntick_hz = 20\n");
    const char *b = write_text("b.ini", "[world]\n\ntick_hz = 40\n");
    env("KIZUNA_CONFIG", a);
    cr_assert_eq(LOAD(&cfg, "--keys=/k"), 0);
    cr_assert_eq(cfg.tick_hz, 20);
    cr_assert_str_eq(cfg.file, a);
    expect_printed(&cfg, "tick_hz", "20", file_src(a, 2));

    cr_assert_eq(LOAD(&cfg, "--keys=/k", "--config", b), 0);
    cr_assert_eq(cfg.tick_hz, 40);
    cr_assert_str_eq(cfg.file, b);
    expect_printed(&cfg, "tick_hz", "40", file_src(b, 3));

    /* The last --config wins; an empty one means no file at all. */
    cr_assert_eq(LOAD(&cfg, "--keys=/k", "--config", b, "--config", a), 0);
    cr_assert_eq(cfg.tick_hz, 20);
    cr_assert_eq(LOAD(&cfg, "--keys=/k", "--config="), 0);
    cr_assert_eq(cfg.tick_hz, 30);
    cr_assert_str_eq(cfg.file, "");

    env("KIZUNA_CONFIG", "");
    cr_assert_eq(LOAD(&cfg, "--keys=/k"), 0);
    cr_assert_eq(cfg.tick_hz, 30);
}

Test(config, config_variable_names_a_missing_file)
{
    const char *p = path_of("missing.ini");
    env("KIZUNA_CONFIG", p);
    char want[256];
    snprintf(want, sizeof want, "%s: cannot read the config file: No such file or directory", p);
    cr_assert_eq(LOAD(&cfg, "--keys=/k"), 1);
    expect_reports(1, want);
}

static void setup_stdout(void)
{
    cr_redirect_stdout();
}

Test(config, help_returns_minus_one_and_prints_usage, .init = setup_stdout)
{
    cr_assert_eq(LOAD(&cfg, "--help"), -1);
    cr_assert_eq(cap.n, 0);
    /* --help wins over anything wrong on the same line; malformed flags
     * are still reported, values are not looked at. */
    cr_assert_eq(LOAD(&cfg, "--port=x", "--bogus", "stray", "--help"), -1);
    expect_reports(2, "run: unknown option '--bogus'", "run: unexpected argument 'stray'");
    fflush(stdout);
    FILE *out = cr_get_redirected_stdout();
    char buf[4096] = "";
    size_t n = fread(buf, 1, sizeof buf - 1, out);
    buf[n] = '\0';
    cr_assert(strncmp(buf, "usage: kizuna-server run [--config FILE]", 40) == 0, "%s", buf);
    cr_assert_not_null(strstr(buf, "--port"));
}

static void setup_stderr(void)
{
    cr_redirect_stderr();
}

Test(config, without_a_report_function_problems_go_to_stderr, .init = setup_stderr)
{
    kzs_config_set_report(NULL, NULL);
    const char *p = write_text("t.ini", "[network]\nport = x\n");
    cr_assert_eq(kzs_config_load_file(&cfg, p), 1);
    fflush(stderr);
    char want[256];
    snprintf(want, sizeof want,
             "kizuna-server: %s:2: port: 'x' is not a whole number in 0..65535\n", p);
    cr_assert_stderr_eq_str(want);
}

/* ---- print, load back -------------------------------------------------------- */

static const char full_file[] =
    "[network]\n"
    "bind = 10.20.30.40\n"
    "port = 50001\n"
    "io_threads = 3\n"
    "max_clients = 3000\n"
    "gate_rate = 777\n"
    "protocol_id = 0x0102030405060708\n"
    "[world]\n"
    "tick_hz = 60\n"
    "world_bound = 2000\n"
    "view_radius = 61.5\n"
    "view_hysteresis = 7.25\n"
    "max_visible = 201\n"
    "max_objects = 302\n"
    "snapshot_history = 33\n"
    "bytes_per_second = 55555\n"
    "interest_period = 5\n"
    "spawn_seed = 123456789\n"
    "spawn_radius = 150.5\n"
    "voice_radius = 31.5\n"
    "voice_bytes_per_second = 9001\n"
    "chat_per_second = 7\n"
    "personal_space = 1.75\n"
    "grab_reach = 2.5\n"
    "[validation]\n"
    "max_speed = 9.5\n"
    "max_accel = 45.5\n"
    "head_min = 0.25\n"
    "head_max = 2.25\n"
    "hand_reach = 1.5\n"
    "clock_tolerance = 0.125\n"
    "strike_half_life = 61.5\n"
    "kick_score = 150.5\n"
    "[roles]\n"
    "moderator_role = mods\n"
    "admin_role = root-ops\n"
    "[keys]\n"
    "keys = /srv/kizuna/keys\n"
    "trusted_backend_keys = /a.pub, /b.pub\n"
    "[audit]\n"
    "audit = /var/log/kizuna/audit.log\n"
    "audit_checkpoint_records = 2048\n"
    "audit_checkpoint_seconds = 20\n"
    "audit_commit_ms = 25\n"
    "[admin]\n"
    "admin = localhost:9200\n"
    "[server]\n"
    "log_level = debug\n"
    "shutdown_grace = 30\n"
    "watchdog_seconds = 9\n"
    "[zone.lobby]\n"
    "shape = box\n"
    "center = 1, -2.5, 3\n"
    "half = 4, 5.5, 6\n"
    "private = yes\n"
    "min_verification = strong\n"
    "humans_only = true\n"
    "locked = on\n"
    "roles = mods, vip_1\n"
    "clients = 7, 18446744073709551615\n"
    "[zone.pool]\n"
    "shape = sphere\n"
    "center = -10, 0, 10\n"
    "radius = 2.5\n"
    "[zone.stage-2]\n"
    "shape = box\n"
    "center = 0, 0, 0\n"
    "half = 1, 1, 1\n"
    "min_verification = basic\n"
    "roles = a, b, c, d, e, f, g, h\n"
    "clients = 1 2 3 4 5 6 7 8\n";

Test(config, full_file_loads_every_field)
{
    cr_assert_eq(load_text(full_file), 0);
    cr_assert_str_eq(cfg.bind, "10.20.30.40");
    cr_assert_eq(cfg.port, 50001);
    cr_assert_eq(cfg.protocol_id, UINT64_C(0x0102030405060708));
    cr_assert_str_eq(cfg.trusted_backend_keys, "/a.pub, /b.pub");
    cr_assert_eq(cfg.log_level, KZ_LOG_DEBUG);
    cr_assert_eq(cfg.n_zones, 3);
    const kz_zone_def *z = &cfg.zones[0];
    cr_assert_str_eq(z->name, "lobby");
    cr_assert_eq(z->shape, KZ_ZONE_BOX);
    cr_assert(z->center[0] == 1.0f && z->center[1] == -2.5f && z->center[2] == 3.0f);
    cr_assert(z->half[0] == 4.0f && z->half[1] == 5.5f && z->half[2] == 6.0f);
    cr_assert_eq(z->is_private, 1);
    cr_assert_eq(z->min_verification, KZ_VERIFY_STRONG);
    cr_assert_eq(z->humans_only, 1);
    cr_assert_eq(z->locked, 1);
    cr_assert_str_eq(z->roles[0], "mods");
    cr_assert_str_eq(z->roles[1], "vip_1");
    cr_assert_str_eq(z->roles[2], "");
    cr_assert_eq(z->clients[0], 7);
    cr_assert_eq(z->clients[1], UINT64_MAX);
    cr_assert_eq(z->clients[2], 0);
    z = &cfg.zones[1];
    cr_assert_str_eq(z->name, "pool");
    cr_assert_eq(z->shape, KZ_ZONE_SPHERE);
    cr_assert(z->half[0] == 2.5f && z->half[1] == 2.5f && z->half[2] == 2.5f);
    cr_assert_eq(z->is_private, 0);
    cr_assert_eq(z->min_verification, KZ_VERIFY_NONE);
    z = &cfg.zones[2];
    cr_assert_str_eq(z->name, "stage-2");
    cr_assert_eq(z->min_verification, KZ_VERIFY_BASIC);
    cr_assert_str_eq(z->roles[7], "h");
    cr_assert_eq(z->clients[7], 8);
    cr_assert_eq(cfg.zone_line[0], ZONE_AT(51));
}

Test(config, print_loads_back_identically)
{
    cr_assert_eq(load_text(full_file), 0);
    print_and_reload(&cfg, "printed.ini", &cfg2);
    expect_same_config(&cfg, &cfg2);
    /* And again: printing is a fixed point. */
    static kzs_config third;
    print_and_reload(&cfg2, "printed2.ini", &third);
    expect_same_config(&cfg2, &third);

    /* The defaults too. */
    cr_assert_eq(load_text(""), 0);
    print_and_reload(&cfg, "printed3.ini", &cfg2);
    expect_same_config(&cfg, &cfg2);
}

Test(config, print_of_environment_and_flags_loads_back)
{
    const char *p = write_text("base.ini", "[zone.a]\nshape = sphere\nradius = 3\n");
    env("KIZUNA_TICK_HZ", "64");
    env("KIZUNA_ADMIN", "off");
    env("KIZUNA_PROTOCOL_ID", "77");
    cr_assert_eq(LOAD(&cfg, "--config", p, "--keys=/k", "--max-speed=12.5", "--spawn-seed",
                      "4294967295", "--log-level=error", "--admin-role", "boss"),
                 0);
    print_and_reload(&cfg, "printed.ini", &cfg2);
    expect_same_config(&cfg, &cfg2);
    cr_assert_str_eq(cfg2.admin, "off");
    cr_assert_eq(cfg2.protocol_id, 77);
    cr_assert_eq(cfg2.spawn_seed, UINT32_MAX);
}

/* ---- values: ranges of every numeric setting ------------------------------------ */

typedef struct range_row {
    const char *section, *key;
    int is_float;
    const char *lo, *hi, *below, *above;
} range_row;

/* Each numeric setting's range as `kizuna-server run --help` documents it:
 * each end is accepted, just outside either end refused. */
static const range_row range_rows[] = {
    {"network", "port", 0, "0", "65535", "-1", "65536"},
    {"network", "io_threads", 0, "1", "16", "0", "17"},
    {"network", "max_clients", 0, "1", "65520", "0", "65521"},
    {"network", "gate_rate", 0, "1", "10000000", "0", "10000001"},
    {"world", "tick_hz", 0, "10", "128", "9", "129"},
    {"world", "max_visible", 0, "1", "1024", "0", "1025"},
    {"world", "max_objects", 0, "1", "65536", "0", "65537"},
    {"world", "snapshot_history", 0, "4", "64", "3", "65"},
    {"world", "bytes_per_second", 0, "1000", "10000000", "999", "10000001"},
    {"world", "interest_period", 0, "1", "16", "0", "17"},
    {"world", "spawn_seed", 0, "0", "4294967295", "-1", "4294967296"},
    {"world", "voice_bytes_per_second", 0, "100", "1000000", "99", "1000001"},
    {"world", "chat_per_second", 0, "1", "1000", "0", "1001"},
    {"audit", "audit_checkpoint_records", 0, "1", "1000000", "0", "1000001"},
    {"audit", "audit_checkpoint_seconds", 0, "1", "86400", "0", "86401"},
    {"audit", "audit_commit_ms", 0, "1", "10000", "0", "10001"},
    {"server", "shutdown_grace", 0, "0", "3600", "-1", "3601"},
    {"server", "watchdog_seconds", 0, "1", "3600", "0", "3601"},
    {"world", "world_bound", 1, "1", "131072", "0.99", "131073"},
    {"world", "view_radius", 1, "1", "10000", "0.5", "10001"},
    {"world", "view_hysteresis", 1, "0", "1000", "-0.5", "1000.5"},
    {"world", "spawn_radius", 1, "0.1", "131072", "0.09", "131073"},
    {"world", "voice_radius", 1, "0.1", "10000", "0.09", "10000.5"},
    {"world", "personal_space", 1, "0.1", "10", "0.09", "10.01"},
    {"world", "grab_reach", 1, "0.1", "100", "0.09", "100.1"},
    {"validation", "max_speed", 1, "0.1", "99", "0.09", "99.01"},
    {"validation", "max_accel", 1, "0.1", "10000", "0.09", "10000.1"},
    {"validation", "head_min", 1, "0", "5", "-0.01", "5.01"},
    {"validation", "head_max", 1, "0.1", "5", "0.09", "5.01"},
    {"validation", "hand_reach", 1, "0.1", "5", "0.09", "5.01"},
    {"validation", "clock_tolerance", 1, "0.001", "1", "0.0009", "1.01"},
    {"validation", "strike_half_life", 1, "1", "86400", "0.9", "86401"},
    {"validation", "kick_score", 1, "1", "100000", "0.9", "100001"},
};

/* The value is taken (whatever the checks across settings then say). */
static void expect_accepted(const range_row *row, const char *value)
{
    char text[256];
    snprintf(text, sizeof text, "[%s]\n%s = %s\n", row->section, row->key, value);
    load_text(text);
    for (int i = 0; i < cap.n && i < CAP_KEEP; i++) {
        char own[96];
        snprintf(own, sizeof own, "%s: '", row->key);
        cr_assert_null(strstr(cap.line[i], own), "%s = %s refused: %s", row->key, value,
                       cap.line[i]);
    }
    expect_printed(&cfg, row->key, value, file_src(t_ini(), 2));
}

static void expect_refused(const range_row *row, const char *value)
{
    char text[256];
    snprintf(text, sizeof text, "[%s]\n%s = %s\n", row->section, row->key, value);
    cr_assert_eq(load_text(text), 1, "%s = %s", row->key, value);
    expect_reports(1, at(2, "%s: '%s' is not a %snumber in %s..%s", row->key, value,
                         row->is_float ? "" : "whole ", row->lo, row->hi));
    expect_printed(&cfg, row->key, NULL, "default");
}

Test(config, every_numeric_setting_both_ends)
{
    for (size_t r = 0; r < sizeof range_rows / sizeof range_rows[0]; r++) {
        const range_row *row = &range_rows[r];
        expect_accepted(row, row->lo);
        expect_accepted(row, row->hi);
        expect_refused(row, row->below);
        expect_refused(row, row->above);
    }
}

/* ---- values: what each type refuses ------------------------------------------ */

typedef struct bad_value {
    const char *section, *key, *value, *why; /* why: after "key: " */
} bad_value;

static void expect_bad_values(const bad_value *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const bad_value *b = &rows[i];
        char text[512];
        snprintf(text, sizeof text, "[%s]\n%s = %s\n", b->section, b->key, b->value);
        cr_log_info("%s = '%s'", b->key, b->value);
        cr_assert_eq(load_text(text), 1, "%s = '%s' was not refused once", b->key, b->value);
        expect_reports(1, at(2, "%s: %s", b->key, b->why));
        expect_printed(&cfg, b->key, NULL, "default");
    }
}

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

Test(config, u32_refuses_junk)
{
    static const bad_value rows[] = {
        {"world", "tick_hz", "30x", "'30x' is not a whole number in 10..128"},
        {"world", "tick_hz", "x30", "'x30' is not a whole number in 10..128"},
        {"world", "tick_hz", "-30", "'-30' is not a whole number in 10..128"},
        {"world", "tick_hz", "+30", "'+30' is not a whole number in 10..128"},
        {"world", "tick_hz", "3 0", "'3 0' is not a whole number in 10..128"},
        {"world", "tick_hz", "", "'' is not a whole number in 10..128"},
        {"world", "tick_hz", "0x1E", "'0x1E' is not a whole number in 10..128"},
        {"world", "tick_hz", "30.0", "'30.0' is not a whole number in 10..128"},
        {"world", "tick_hz", "1e2", "'1e2' is not a whole number in 10..128"},
        {"world", "tick_hz", "99999999999999999999",
         "'99999999999999999999' is not a whole number in 10..128"},
        {"world", "spawn_seed", "4294967296",
         "'4294967296' is not a whole number in 0..4294967295"},
        {"world", "spawn_seed", "18446744073709551616",
         "'18446744073709551616' is not a whole number in 0..4294967295"},
        {"network", "port", "-0", "'-0' is not a whole number in 0..65535"},
    };
    expect_bad_values(rows, N_OF(rows));
    /* Leading zeros are still decimal. */
    cr_assert_eq(load_text("[world]\ntick_hz = 030\n"), 0);
    cr_assert_eq(cfg.tick_hz, 30);
}

Test(config, u64_refuses_junk_and_overflow)
{
    static const bad_value rows[] = {
        {"network", "protocol_id", "18446744073709551616",
         "'18446744073709551616' is not a 64-bit number (decimal or 0x hex)"},
        {"network", "protocol_id", "0x10000000000000000",
         "'0x10000000000000000' is not a 64-bit number (decimal or 0x hex)"},
        {"network", "protocol_id", "-1", "'-1' is not a 64-bit number (decimal or 0x hex)"},
        {"network", "protocol_id", "0x", "'0x' is not a 64-bit number (decimal or 0x hex)"},
        {"network", "protocol_id", "0xg1", "'0xg1' is not a 64-bit number (decimal or 0x hex)"},
        {"network", "protocol_id", "12ab", "'12ab' is not a 64-bit number (decimal or 0x hex)"},
        {"network", "protocol_id", "", "'' is not a 64-bit number (decimal or 0x hex)"},
        {"network", "protocol_id", "1.5", "'1.5' is not a 64-bit number (decimal or 0x hex)"},
    };
    expect_bad_values(rows, N_OF(rows));
    cr_assert_eq(load_text("[network]\nprotocol_id = 18446744073709551615\n"), 0);
    cr_assert_eq(cfg.protocol_id, UINT64_MAX);
    cr_assert_eq(load_text("[network]\nprotocol_id = 0xffffffffffffffff\n"), 0);
    cr_assert_eq(cfg.protocol_id, UINT64_MAX);
    cr_assert_eq(load_text("[network]\nprotocol_id = 0X1a\n"), 0);
    cr_assert_eq(cfg.protocol_id, 0x1a);
    expect_printed(&cfg, "protocol_id", "0x000000000000001A", file_src(t_ini(), 2));
    cr_assert_eq(load_text("[network]\nprotocol_id = 0\n"), 0);
    cr_assert_eq(cfg.protocol_id, 0);
}

Test(config, float_refuses_nan_inf_overflow_empty_junk)
{
    static const bad_value rows[] = {
        {"world", "view_radius", "nan", "'nan' is not a number in 1..10000"},
        {"world", "view_radius", "NaN", "'NaN' is not a number in 1..10000"},
        {"world", "view_radius", "-nan", "'-nan' is not a number in 1..10000"},
        {"world", "view_radius", "inf", "'inf' is not a number in 1..10000"},
        {"world", "view_radius", "-inf", "'-inf' is not a number in 1..10000"},
        {"world", "view_radius", "infinity", "'infinity' is not a number in 1..10000"},
        {"world", "view_radius", "1e99", "'1e99' is not a number in 1..10000"},
        {"world", "view_radius", "-1e99", "'-1e99' is not a number in 1..10000"},
        {"world", "view_radius", "", "'' is not a number in 1..10000"},
        {"world", "view_radius", "5m", "'5m' is not a number in 1..10000"},
        {"world", "view_radius", "1,5", "'1,5' is not a number in 1..10000"},
        {"world", "view_radius", "5 5", "'5 5' is not a number in 1..10000"},
        {"world", "view_radius", "-5", "'-5' is not a number in 1..10000"},
        {"world", "view_radius", "x", "'x' is not a number in 1..10000"},
        {"world", "view_hysteresis", "1e-50", "'1e-50' is not a number in 0..1000"},
        {"validation", "clock_tolerance", "0.0009", "'0.0009' is not a number in 0.001..1"},
    };
    expect_bad_values(rows, N_OF(rows));
    cr_assert_eq(load_text("[world]\nview_radius = 1e3\n"), 0);
    cr_assert_float_eq(cfg.view_radius, 1000.0f, 0);
}

Test(config, ipv4_refusals)
{
    static const bad_value rows[] = {
        {"network", "bind", "256.0.0.1", "not an IPv4 address"},
        {"network", "bind", "1.2.3", "not an IPv4 address"},
        {"network", "bind", "1.2.3.4.5", "not an IPv4 address"},
        {"network", "bind", "localhost", "not an IPv4 address"},
        {"network", "bind", "::1", "not an IPv4 address"},
        {"network", "bind", "1.2.3.4:80", "not an IPv4 address"},
        {"network", "bind", "", "not an IPv4 address"},
    };
    expect_bad_values(rows, N_OF(rows));
    cr_assert_eq(load_text("[network]\nbind = 255.255.255.255\n"), 0);
    cr_assert_str_eq(cfg.bind, "255.255.255.255");
}

Test(config, admin_address_refusals)
{
    static const char why[] = "expected HOST:PORT (IPv4 or localhost) or off";
    static const bad_value rows[] = {
        {"admin", "admin", "127.0.0.1", why},
        {"admin", "admin", "127.0.0.1:70000", why},
        {"admin", "admin", "127.0.0.1:65536", why},
        {"admin", "admin", "127.0.0.1:-1", why},
        {"admin", "admin", "127.0.0.1:+80", why},
        {"admin", "admin", "127.0.0.1:80x", why},
        {"admin", "admin", "127.0.0.1:", why},
        {"admin", "admin", "example.com:80", why},
        {"admin", "admin", "localhost.localdomain:80", why},
        {"admin", "admin", ":9100", why},
        {"admin", "admin", "[::1]:9100", why},
        {"admin", "admin", "1.2.3:9100", why},
        {"admin", "admin", "OFF", why},
        {"admin", "admin", "", why},
        /* The address fits the check but not the field. */
        {"admin", "admin", "localhost:00000000000000000000000000000000000000000000000000009100",
         "longer than 63 characters"},
    };
    expect_bad_values(rows, N_OF(rows));
    static const char *const good[] = {"off", "localhost:9100", "0.0.0.0:0", "10.0.0.1:65535"};
    for (size_t i = 0; i < N_OF(good); i++) {
        char text[128];
        snprintf(text, sizeof text, "[admin]\nadmin = %s\n", good[i]);
        cr_assert_eq(load_text(text), 0, "%s", good[i]);
        cr_assert_str_eq(cfg.admin, good[i]);
    }
}

Test(config, role_refusals)
{
    static const char why[] = "a role is 1 to 16 characters of [a-z0-9_-]";
    static const bad_value rows[] = {
        {"roles", "moderator_role", "Moderator", why},
        {"roles", "moderator_role", "MOD", why},
        {"roles", "moderator_role", "abcdefghijklmnopq", why}, /* 17 */
        {"roles", "moderator_role", "", why},
        {"roles", "admin_role", "mod role", why},
        {"roles", "admin_role", "mod.role", why},
        {"roles", "admin_role", "r\xc3\xb4le", why},
    };
    expect_bad_values(rows, N_OF(rows));
    cr_assert_eq(load_text("[roles]\nmoderator_role = abcdefghijklmnop\nadmin_role = 0-_z\n"), 0);
    cr_assert_str_eq(cfg.moderator_role, "abcdefghijklmnop");
    cr_assert_str_eq(cfg.admin_role, "0-_z");
}

Test(config, audit_on_failure_refusals)
{
    static const char why[] = "refuse or continue";
    static const bad_value rows[] = {
        {"audit", "audit_on_failure", "maybe", why},
        {"audit", "audit_on_failure", "Refuse", why},
        {"audit", "audit_on_failure", "refuse,continue", why},
        {"audit", "audit_on_failure", "", why},
        {"audit", "audit_on_failure", "continuee", why},
    };
    expect_bad_values(rows, N_OF(rows));
    cr_assert_eq(load_text("[audit]\n"), 0);
    cr_assert_str_eq(cfg.audit_on_failure, "refuse", "refuse is the default");
    cr_assert_eq(load_text("[audit]\naudit_on_failure = continue\n"), 0);
    cr_assert_str_eq(cfg.audit_on_failure, "continue");
}

Test(config, insecure_key_permissions_refusals)
{
    static const char why[] = "refuse or warn";
    static const bad_value rows[] = {
        {"keys", "insecure_key_permissions", "allow", why},
        {"keys", "insecure_key_permissions", "WARN", why},
        {"keys", "insecure_key_permissions", "warn,refuse", why},
        {"keys", "insecure_key_permissions", "", why},
        {"keys", "insecure_key_permissions", "no", why},
    };
    expect_bad_values(rows, N_OF(rows));
    cr_assert_eq(load_text("[keys]\n"), 0);
    cr_assert_str_eq(cfg.insecure_key_permissions, "refuse", "refuse is the default");
    cr_assert_eq(load_text("[keys]\ninsecure_key_permissions = warn\n"), 0);
    cr_assert_str_eq(cfg.insecure_key_permissions, "warn");
}

Test(config, log_level_refusals)
{
    static const char why[] = "not a log level (off, error, warn, info, debug, trace)";
    static const bad_value rows[] = {
        {"server", "log_level", "verbose", why},
        {"server", "log_level", "INFO", why},
        {"server", "log_level", "3", why},
        {"server", "log_level", "", why},
    };
    expect_bad_values(rows, N_OF(rows));
    static const struct {
        const char *text;
        int32_t level;
    } good[] = {{"error", KZ_LOG_ERROR},
                {"warn", KZ_LOG_WARN},
                {"warning", KZ_LOG_WARN},
                {"info", KZ_LOG_INFO},
                {"debug", KZ_LOG_DEBUG}};
    for (size_t i = 0; i < N_OF(good); i++) {
        char text[64];
        snprintf(text, sizeof text, "[server]\nlog_level = %s\n", good[i].text);
        cr_assert_eq(load_text(text), 0, "%s", good[i].text);
        cr_assert_eq(cfg.log_level, good[i].level);
    }
}

/* Text settings must survive `config show` and load back, so a value is
 * refused when `key = value` would not fit one INI line (198 characters)
 * or could not be written in one (control characters, spaces at either
 * end, " ;"). The limit is the same through a variable and a flag. */
Test(config, text_too_long)
{
    static char value[256], flag[300];
    size_t fit = 198 - strlen("audit = ");
    memset(value, 'a', fit);
    value[fit] = '\0';
    env("KIZUNA_AUDIT", value);
    snprintf(flag, sizeof flag, "--keys=%s", value);
    cr_assert_eq(LOAD(&cfg, flag), 0);
    cr_assert_eq(strlen(cfg.audit), fit);

    value[fit] = 'a';
    value[fit + 1] = '\0';
    env("KIZUNA_AUDIT", value);
    cr_assert_eq(LOAD(&cfg, "--keys=/k"), 1);
    expect_reports(1, "KIZUNA_AUDIT: cannot be written in an INI line (control characters, "
                      "spaces at either end, ' ;', or too long)");
    cr_assert_eq(unsetenv("KIZUNA_AUDIT"), 0);
    cr_assert_eq(LOAD(&cfg, "--keys=/k", "--audit= leading space"), 1);
    cr_assert_eq(LOAD(&cfg, "--keys=/k", "--audit=a ;b"), 1);
    cr_assert_eq(LOAD(&cfg, "--keys=/k", "--audit=a\nb"), 1);
    cr_assert_eq(LOAD(&cfg, "--keys=/k", "--audit=a;b"), 0, "';' without a space before is text");
}

/* ---- the file ---------------------------------------------------------------- */

Test(config, unknown_key_wrong_section_unknown_section)
{
    cr_assert_eq(load_text("[network]\nport = 1\n\nbogus = 1\n"), 1);
    expect_reports(1, at(4, "[network]: unknown key 'bogus'"));

    cr_assert_eq(load_text("; c\n[world]\nport = 1\n"), 1);
    expect_reports(1, at(3, "port belongs in [network], not [world]"));

    cr_assert_eq(load_text("port = 1\n"), 1);
    expect_reports(1, at(1, "port belongs in [network], not [(no section)]"));

    cr_assert_eq(load_text("[netwrk]\nfoo = 1\n"), 1);
    expect_reports(1, at(2, "unknown section [netwrk] (key 'foo')"));

    cr_assert_eq(load_text("[netwrk]\nport = 1\n"), 1);
    expect_reports(1, at(2, "port belongs in [network], not [netwrk]"));

    /* Section and key names are case-sensitive. */
    cr_assert_eq(load_text("[Network]\nPort = 1\n"), 1);
    expect_reports(1, at(2, "unknown section [Network] (key 'Port')"));
    cr_assert_eq(load_text("[network]\nPort = 1\n"), 1);
    expect_reports(1, at(2, "[network]: unknown key 'Port'"));
}

Test(config, several_errors_in_one_file_are_all_reported)
{
    static const char text[] = "; several problems, each on its own line\n" /* 1 */
                               "[network]\n"                                 /* 2 */
                               "port = 70000\n"                              /* 3 */
                               "bogus = 1\n"                                 /* 4 */
                               "[world]\n"                                   /* 5 */
                               "tick_hz = 30x\n"                             /* 6 */
                               "port = 1\n"                                  /* 7 */
                               "[nope]\n"                                    /* 8 */
                               "x = 1\n"                                     /* 9 */
                               "[zone.a]\n"                                  /* 10 */
                               "shape = cube\n"                              /* 11 */
                               "[zone.Bad]\n"                                /* 12 */
                               "shape = box\n"                               /* 13 */
                               "[server]\n"                                  /* 14 */
                               "log_level = loud\n"                          /* 15 */
                               "this line has no equals sign\n"              /* 16 */
                               "[roles]\n"                                   /* 17 */
                               "admin_role = Admin\n";                       /* 18 */
    cr_assert_eq(load_text(text), 10);
    /* Today a line inih cannot parse is known only when it returns, so the
     * syntax error comes last; the order is not part of the contract. */
    expect_report_set(10, at(3, "port: '70000' is not a whole number in 0..65535"),
                   at(4, "[network]: unknown key 'bogus'"),
                   at(6, "tick_hz: '30x' is not a whole number in 10..128"),
                   at(7, "port belongs in [network], not [world]"),
                   at(9, "unknown section [nope] (key 'x')"),
                   at(11, "[zone.a] shape: shape is box or sphere"),
                   at(ZONE_AT(12), "[zone.Bad]: a zone name is 1 to 24 characters of [a-z0-9_-]"),
                   at(15, "log_level: not a log level (off, error, warn, info, debug, trace)"),
                   at(18, "admin_role: a role is 1 to 16 characters of [a-z0-9_-]"),
                   at(16, "not INI syntax (expected [section], key = value or a ; comment)"));
}

Test(config, errors_from_every_source_are_all_reported)
{
    const char *p = write_text("t.ini", "[network]\nport = x\n[world]\nbogus = 1\n");
    env("KIZUNA_TICK_HZ", "5");
    env("KIZUNA_TICKHZ", "20");
    cr_assert_eq(LOAD(&cfg, "--config", p, "--max-visible=0", "--bogus=1", "stray"), 7);
    /* Malformed flags first (they are found before anything is read),
     * then the file, the environment and the flags' values. */
    expect_reports(7, "run: unknown option '--bogus=1'", "run: unexpected argument 'stray'",
                   at(2, "port: 'x' is not a whole number in 0..65535"),
                   at(4, "[world]: unknown key 'bogus'"),
                   "KIZUNA_TICK_HZ: '5' is not a whole number in 10..128",
                   "KIZUNA_TICKHZ: unknown setting in the environment",
                   "--max-visible: '0' is not a whole number in 1..1024");
}

Test(config, syntax_error_line)
{
    cr_assert_eq(load_text("[network]\nport 1\nbogus = 2\n"), 2);
    expect_report_set(2, at(3, "[network]: unknown key 'bogus'"),
                   at(2, "not INI syntax (expected [section], key = value or a ; comment)"));
    /* A section line without its ']': what follows stays in the section
     * before it. */
    cr_assert_eq(load_text("[network\nport = 1\n"), 2);
    expect_report_set(2, at(2, "port belongs in [network], not [(no section)]"),
                   at(1, "not INI syntax (expected [section], key = value or a ; comment)"));
    /* A key without a name. */
    cr_assert_eq(load_text("[network]\n= 1\n"), 1);
    expect_reports(1, at(2, "[network]: unknown key ''"));
}

Test(config, missing_file)
{
    const char *p = path_of("nope.ini");
    cr_assert_eq(load_path(&cfg, p), 1);
    char want[256];
    snprintf(want, sizeof want, "%s: cannot read the config file: No such file or directory", p);
    expect_reports(1, want);
}

Test(config, empty_file_is_all_defaults)
{
    cr_assert_eq(load_text(""), 0);
    cr_assert_eq(cap.n, 0);
    cr_assert_eq(load_text("\n\n; only a comment\n# and another\n   \n[network]\n"), 0);
    char *a = print_to_string(&cfg);
    cr_assert_null(strstr(a, t_ini()), "no value comes from the file:\n%s", a);
    free(a);
    cr_assert_eq(cfg.port, 40000);
    cr_assert_eq(cfg.tick_hz, 30);
    cr_assert_eq(cfg.protocol_id, UINT64_C(0x4B495A554E410001));
    cr_assert_str_eq(cfg.admin, "127.0.0.1:9100");
    cr_assert_eq(cfg.log_level, KZ_LOG_INFO);
    cr_assert_eq(cfg.n_zones, 0);
}

Test(config, utf8_bom)
{
    cr_assert_eq(load_text("\xEF\xBB\xBF[network]\nport = 1234\n"), 0);
    cr_assert_eq(cfg.port, 1234);
    expect_printed(&cfg, "port", "1234", file_src(t_ini(), 2));
    cr_assert_eq(load_text("\xEF\xBB\xBF; comment\n[world]\ntick_hz = 20\n"), 0);
    cr_assert_eq(cfg.tick_hz, 20);
    /* A BOM anywhere else is part of the text. */
    cr_assert_eq(load_text("[network]\n\xEF\xBB\xBFport = 1\n"), 1);
    expect_reports(1, at(2, "[network]: unknown key '\xEF\xBB\xBFport'"));
}

Test(config, comments)
{
    cr_assert_eq(load_text("; semicolon\n# hash\n  ; indented\n[network] ; after a section\n"
                           "port = 5 ; inline\nio_threads = 2;not a comment without a space\n"),
                 1);
    expect_reports(1, at(6, "io_threads: '2;not a comment without a space' is not a whole "
                            "number in 1..16"));
    cr_assert_eq(cfg.port, 5);
    /* '#' starts a comment only at the start of a line. */
    cr_assert_eq(load_text("[network]\nport = 5 # five\n"), 1);
    expect_reports(1, at(2, "port: '5 # five' is not a whole number in 0..65535"));
    /* Inline comments after text values are not part of them. */
    cr_assert_eq(load_text("[keys]\nkeys = /srv/keys   ; where the keys live\n"), 0);
    cr_assert_str_eq(cfg.keys, "/srv/keys");
}

/* Decision: CRLF files (edited on Windows) read exactly like LF files, the
 * CR is not part of any value, and line numbers are the same. */
Test(config, crlf_line_endings)
{
    cr_assert_eq(load_text("; windows\r\n[network]\r\nport = 1234\r\n[keys]\r\nkeys = /srv/keys\r\n"
                           "[zone.a]\r\nshape = sphere\r\nradius = 2\r\nroles = a, b\r\n"
                           "[admin]\r\nbogus = 1\r\n"),
                 1);
    expect_reports(1, at(11, "[admin]: unknown key 'bogus'"));
    cr_assert_eq(cfg.port, 1234);
    cr_assert_str_eq(cfg.keys, "/srv/keys");
    cr_assert_str_eq(cfg.zones[0].roles[1], "b");
    cr_assert_eq(load_text("[world]\r\ntick_hz = 20\r\n"), 0);
    expect_printed(&cfg, "tick_hz", "20", file_src(t_ini(), 2));
}

/* An indented line after a key continues that key's value (Python's
 * configparser rule, which inih follows): a mis-indented key is reported
 * as a bad value of the key above it, at its own line. */
Test(config, indented_line_continues_the_key_above)
{
    cr_assert_eq(load_text("[network]\nport = 40000\n  io_threads = 2\n"), 1);
    expect_reports(1, at(3, "port: 'io_threads = 2' is not a whole number in 0..65535"));
    cr_assert_eq(cfg.io_threads, 1);
}

/* inih's line buffer is 200 bytes: 198 characters, the newline and the
 * terminator. */
Test(config, line_longer_than_the_buffer)
{
    char text[1024], pad[400];
    memset(pad, 'x', sizeof pad);
    /* 198 characters fit. */
    snprintf(text, sizeof text, "[network]\n;%.*s\nport = 7\n", 197, pad);
    cr_assert_eq(load_text(text), 0);
    cr_assert_eq(cfg.port, 7);
    expect_printed(&cfg, "port", "7", file_src(t_ini(), 3));

    /* 199 do not; the rest of that line is skipped, never read as a line of
     * its own, and the next line keeps its number. */
    snprintf(text, sizeof text, "[network]\nport = 1%.*s\nbogus = 1\nport = 8\n", 191, pad);
    cr_assert_eq(strcspn(text + 10, "\n"), 199);
    cr_assert_eq(load_text(text), 2);
    expect_reports(2, at(2, "line longer than 198 characters"),
                   at(3, "[network]: unknown key 'bogus'"));
    cr_assert_eq(cfg.port, 8);

    /* Far longer, with something that would parse in its tail. */
    snprintf(text, sizeof text, "[network]\n;%.*s port = 1\nbogus = 1\n", 380, pad);
    cr_assert_eq(load_text(text), 2);
    expect_reports(2, at(2, "line longer than 198 characters"),
                   at(3, "[network]: unknown key 'bogus'"));
    cr_assert_eq(cfg.port, 40000);

    /* The last line, without a newline. */
    snprintf(text, sizeof text, "[network]\nport = 2\nport = 1%.*s", 300, pad);
    cr_assert_eq(load_text(text), 1);
    expect_reports(1, at(3, "line longer than 198 characters"));
    cr_assert_eq(cfg.port, 2);
}

/* ---- zones --------------------------------------------------------------------- */

static void expect_zone_error(const char *text, unsigned line, const char *what)
{
    cr_log_info("zone file:\n%s", text);
    cr_assert_eq(load_text(text), 1);
    expect_reports(1, at(line, "%s", what));
}

Test(config, zone_names)
{
    static const char why[] = "a zone name is 1 to 24 characters of [a-z0-9_-]";
    char want[128];
    snprintf(want, sizeof want, "[zone.a b]: %s", why);
    expect_zone_error("[zone.a b]\nshape = box\nhalf = 1,1,1\n", ZONE_AT(1), want);
    snprintf(want, sizeof want, "[zone.Lobby]: %s", why);
    expect_zone_error("; x\n[zone.Lobby]\nshape = box\nhalf = 1,1,1\n", ZONE_AT(2), want);
    snprintf(want, sizeof want, "[zone.]: %s", why);
    expect_zone_error("[zone.]\nshape = box\nhalf = 1,1,1\n", ZONE_AT(1), want);
    snprintf(want, sizeof want, "[zone.abcdefghijklmnopqrstuvwxy]: %s", why); /* 25 */
    expect_zone_error("[zone.abcdefghijklmnopqrstuvwxy]\nshape = box\nhalf = 1,1,1\n", ZONE_AT(1),
                      want);
    snprintf(want, sizeof want, "[zone.a.b]: %s", why);
    expect_zone_error("[zone.a.b]\nshape = box\nhalf = 1,1,1\n", ZONE_AT(1), want);
    /* 24 characters are a name. */
    cr_assert_eq(load_text("[zone.abcdefghijklmnopqrstuvwx]\nshape = box\nhalf = 1,1,1\n"), 0);
    cr_assert_str_eq(cfg.zones[0].name, "abcdefghijklmnopqrstuvwx");
    /* "zone" without the dot is just an unknown section. */
    expect_zone_error("[zone]\nshape = box\n", 2, "unknown section [zone] (key 'shape')");
}

Test(config, zone_defined_twice)
{
    expect_zone_error("[zone.a]\nshape = box\nhalf = 1,1,1\n"
                      "[zone.b]\nshape = box\nhalf = 1,1,1\n"
                      "[zone.a]\nshape = box\nhalf = 2,2,2\n",
                      ZONE_AT(7), "[zone.a]: zone defined twice");
}

Test(config, more_than_kz_zone_max_zones)
{
    static char text[16384];
    size_t used = 0;
    for (unsigned z = 0; z < KZ_ZONE_MAX; z++)
        used += (size_t)snprintf(text + used, sizeof text - used,
                                 "[zone.z%u]\nshape = sphere\nradius = 1\n", z);
    cr_assert_eq(load_text(text), 0);
    cr_assert_eq(cfg.n_zones, KZ_ZONE_MAX);
    cr_assert_str_eq(cfg.zones[KZ_ZONE_MAX - 1].name, "z63");
    /* Two more: each is refused, once (its keys are not reported again). */
    snprintf(text + used, sizeof text - used,
             "[zone.z64]\nshape = sphere\nradius = 1\n[zone.z65]\nshape = box\n");
    cr_assert_eq(load_text(text), 2);
    char a[64], b[64];
    snprintf(a, sizeof a, "[zone.z64]: more than %u zones", KZ_ZONE_MAX);
    snprintf(b, sizeof b, "[zone.z65]: more than %u zones", KZ_ZONE_MAX);
    expect_reports(2, at(ZONE_AT(3 * KZ_ZONE_MAX + 1), "%s", a),
                   at(ZONE_AT(3 * KZ_ZONE_MAX + 4), "%s", b));
    cr_assert_eq(cfg.n_zones, KZ_ZONE_MAX);
}

Test(config, zone_incomplete_or_outside_the_world)
{
    expect_zone_error("[zone.a]\ncenter = 0, 0, 0\nhalf = 1, 1, 1\n", ZONE_AT(1),
                      "[zone.a] has no shape (box or sphere)");
    expect_zone_error("[zone.a]\nshape = box\ncenter = 1, 2, 3\n", ZONE_AT(1),
                      "[zone.a] has no half-extents (half = x, y, z)");
    expect_zone_error("; c\n[zone.s]\nshape = sphere\n", ZONE_AT(2), "[zone.s] has no radius");
    expect_zone_error("[world]\nworld_bound = 100\nspawn_radius = 50\n"
                      "[zone.far]\nshape = sphere\nradius = 1\ncenter = 0, 0, 100.5\n",
                      ZONE_AT(4), "[zone.far] has its center outside the world (world_bound)");
    expect_zone_error("[zone.far]\nshape = sphere\nradius = 1\ncenter = -101, 0, 0\n"
                      "[world]\nworld_bound = 100\nspawn_radius = 50\n",
                      ZONE_AT(1), "[zone.far] has its center outside the world (world_bound)");
    /* On the bound is inside. */
    cr_assert_eq(load_text("[world]\nworld_bound = 100\nspawn_radius = 50\n"
                           "[zone.edge]\nshape = sphere\nradius = 1\ncenter = 100, -100, 100\n"),
                 0);
    /* Every incomplete zone is reported. */
    cr_assert_eq(load_text("[zone.a]\nshape = box\n[zone.b]\nhalf = 1,1,1\n"), 2);
    expect_reports(2, at(ZONE_AT(1), "[zone.a] has no half-extents (half = x, y, z)"),
                   at(ZONE_AT(3), "[zone.b] has no shape (box or sphere)"));
}

Test(config, zone_key_refusals)
{
    static const struct {
        const char *line, *what;
    } rows[] = {
        {"shape = cube", "[zone.a] shape: shape is box or sphere"},
        {"shape = Box", "[zone.a] shape: shape is box or sphere"},
        {"shape =", "[zone.a] shape: shape is box or sphere"},
        {"center = 1, 2", "[zone.a] center: center is three numbers: x, y, z"},
        {"center = 1, 2, 3, 4", "[zone.a] center: center is three numbers: x, y, z"},
        {"center = a, b, c", "[zone.a] center: center is three numbers: x, y, z"},
        {"center = nan, 0, 0", "[zone.a] center: center is three numbers: x, y, z"},
        {"center = 0, inf, 0", "[zone.a] center: center is three numbers: x, y, z"},
        {"center = 0, 0, 1e99", "[zone.a] center: center is three numbers: x, y, z"},
        {"center =", "[zone.a] center: center is three numbers: x, y, z"},
        {"center = 1 2 3", "[zone.a] center: center is three numbers: x, y, z"},
        {"half = 0, 1, 1", "[zone.a] half: half is three positive numbers (half-extents x, y, z)"},
        {"half = 1, -1, 1", "[zone.a] half: half is three positive numbers (half-extents x, y, z)"},
        {"half = 1, 1", "[zone.a] half: half is three positive numbers (half-extents x, y, z)"},
        {"half = 1, 1, 1, 1",
         "[zone.a] half: half is three positive numbers (half-extents x, y, z)"},
        {"half = 1, 1, nan",
         "[zone.a] half: half is three positive numbers (half-extents x, y, z)"},
        {"half = 1, 2000000, 1", "[zone.a] half: half-extents are at most 1000000 m"},
        {"radius = 1000001", "[zone.a] radius: radius is at most 1000000 m"},
        {"radius = 0", "[zone.a] radius: radius is a positive number"},
        {"radius = -2", "[zone.a] radius: radius is a positive number"},
        {"radius = x", "[zone.a] radius: radius is a positive number"},
        {"radius = 1, 2", "[zone.a] radius: radius is a positive number"},
        {"radius = inf", "[zone.a] radius: radius is a positive number"},
        {"private = maybe", "[zone.a] private: expected yes or no"},
        {"private = YES", "[zone.a] private: expected yes or no"},
        {"humans_only = 2", "[zone.a] humans_only: expected yes or no"},
        {"locked =", "[zone.a] locked: expected yes or no"},
        {"min_verification = high", "[zone.a] min_verification: min_verification is none, basic "
                                    "or strong"},
        {"min_verification = 2", "[zone.a] min_verification: min_verification is none, basic "
                                 "or strong"},
        {"roles = a, b, c, d, e, f, g, h, i", "[zone.a] roles: at most 8 entries"},
        {"roles = a, Bad", "[zone.a] roles: a role is 1 to 16 characters of [a-z0-9_-]"},
        {"roles = abcdefghijklmnopq",
         "[zone.a] roles: a role is 1 to 16 characters of [a-z0-9_-]"},
        {"clients = 1, 2, 3, 4, 5, 6, 7, 8, 9", "[zone.a] clients: at most 8 entries"},
        {"clients = 0", "[zone.a] clients: client ids are positive whole numbers"},
        {"clients = 5, -1", "[zone.a] clients: client ids are positive whole numbers"},
        {"clients = x", "[zone.a] clients: client ids are positive whole numbers"},
        {"clients = 18446744073709551616",
         "[zone.a] clients: client ids are positive whole numbers"},
        {"colour = red", "[zone.a] colour: unknown zone key (shape, center, half, radius, "
                         "private, min_verification, humans_only, roles, clients, locked)"},
    };
    for (size_t i = 0; i < N_OF(rows); i++) {
        char text[256];
        snprintf(text, sizeof text, "[zone.a]\nshape = box\nhalf = 1, 1, 1\n%s\n", rows[i].line);
        expect_zone_error(text, 4, rows[i].what);
    }
}

Test(config, zone_values_accepted)
{
    static const struct {
        const char *text;
        uint32_t value;
    } bools[] = {{"yes", 1}, {"true", 1}, {"on", 1}, {"1", 1},
                 {"no", 0},  {"false", 0}, {"off", 0}, {"0", 0}};
    for (size_t i = 0; i < N_OF(bools); i++) {
        char text[256];
        snprintf(text, sizeof text,
                 "[zone.a]\nshape = box\nhalf = 1,1,1\nprivate = %s\nhumans_only = %s\n"
                 "locked = %s\n",
                 bools[i].text, bools[i].text, bools[i].text);
        cr_assert_eq(load_text(text), 0, "%s", bools[i].text);
        cr_assert_eq(cfg.zones[0].is_private, bools[i].value);
        cr_assert_eq(cfg.zones[0].humans_only, bools[i].value);
        cr_assert_eq(cfg.zones[0].locked, bools[i].value);
    }
    /* A repeated list replaces the earlier one. */
    cr_assert_eq(load_text("[zone.a]\nshape = box\nhalf = 1,1,1\nroles = a, b, c\nroles = d\n"
                           "clients = 1, 2\nclients = 3\n"),
                 0);
    cr_assert_str_eq(cfg.zones[0].roles[0], "d");
    cr_assert_str_eq(cfg.zones[0].roles[1], "");
    cr_assert_eq(cfg.zones[0].clients[0], 3);
    cr_assert_eq(cfg.zones[0].clients[1], 0);
    /* An empty list is no restriction. */
    cr_assert_eq(load_text("[zone.a]\nshape = box\nhalf = 1,1,1\nroles =\nclients =\n"), 0);
    cr_assert_str_eq(cfg.zones[0].roles[0], "");
    cr_assert_eq(cfg.zones[0].clients[0], 0);
}

/* ---- the environment ------------------------------------------------------------ */

Test(config, environment_refusals)
{
    env("KIZUNA_PORTT", "1");
    env("KIZUNA_", "1");
    env("KIZUNA_port", "1");
    env("KIZUNA_TICK_HZ", "5");
    env("KIZUNA_BIND", "::");
    env("KIZUNA_VIEW_RADIUS", "nan");
    env("KIZUNA_MAX_CLIENTS", "");
    env("KIZUNA_LOG_LEVEL", " info");
    cr_assert_eq(LOAD(&cfg, "--keys=/k"), 8);
    expect_reported("KIZUNA_PORTT: unknown setting in the environment");
    expect_reported("KIZUNA_: unknown setting in the environment");
    expect_reported("KIZUNA_port: unknown setting in the environment");
    expect_reported("KIZUNA_TICK_HZ: '5' is not a whole number in 10..128");
    expect_reported("KIZUNA_BIND: not an IPv4 address");
    expect_reported("KIZUNA_VIEW_RADIUS: 'nan' is not a number in 1..10000");
    expect_reported("KIZUNA_MAX_CLIENTS: '' is not a whole number in 1..65520");
    expect_reported("KIZUNA_LOG_LEVEL: not a log level (off, error, warn, info, debug, trace)");
    expect_printed(&cfg, "tick_hz", "30", "default");
}

Test(config, environment_values_are_not_trimmed)
{
    env("KIZUNA_PORT", "41000 ");
    cr_assert_eq(LOAD(&cfg, "--keys=/k"), 1);
    expect_reports(1, "KIZUNA_PORT: '41000 ' is not a whole number in 0..65535");
    env("KIZUNA_PORT", " 41000");
    cr_assert_eq(LOAD(&cfg, "--keys=/k"), 1);
    expect_reports(1, "KIZUNA_PORT: ' 41000' is not a whole number in 0..65535");
    env("KIZUNA_VIEW_RADIUS", " 5");
    env("KIZUNA_PORT", "41000");
    cr_assert_eq(LOAD(&cfg, "--keys=/k"), 1);
    expect_reports(1, "KIZUNA_VIEW_RADIUS: ' 5' is not a number in 1..10000");
}

/* ---- flags ------------------------------------------------------------------------ */

Test(config, flag_refusals)
{
    cr_assert_eq(LOAD(&cfg, "--keys=/k", "--bogus=1"), 1);
    expect_reports(1, "run: unknown option '--bogus=1'");

    cr_assert_eq(LOAD(&cfg, "--keys=/k", "--bogus", "1"), 2);
    expect_reports(2, "run: unknown option '--bogus'", "run: unexpected argument '1'");

    cr_assert_eq(LOAD(&cfg, "--keys=/k", "--port"), 1);
    expect_reports(1, "run: option needs a value: '--port'");

    cr_assert_eq(LOAD(&cfg, "--keys=/k", "--config"), 1);
    expect_reports(1, "run: option needs a value: '--config'");

    cr_assert_eq(LOAD(&cfg, "--keys=/k", "extra"), 1);
    expect_reports(1, "run: unexpected argument 'extra'");

    cr_assert_eq(LOAD(&cfg, "extra", "--keys=/k", "more"), 1);
    expect_reports(1, "run: unexpected argument 'extra'");

    cr_assert_eq(LOAD(&cfg, "--keys=/k", "--", "--port=1"), 1);
    expect_reports(1, "run: unexpected argument '--port=1'");

    cr_assert_eq(LOAD(&cfg, "--keys=/k", "-p", "1"), 2);
    expect_reports(2, "run: unknown option '-p'", "run: unexpected argument '1'");

    cr_assert_eq(LOAD(&cfg, "--keys=/k", "--help=1"), 1);
    expect_reports(1, "run: unknown option '--help=1'");

    /* An ambiguous abbreviation is unknown. */
    cr_assert_eq(LOAD(&cfg, "--keys=/k", "--max=5"), 1);
    expect_reports(1, "run: unknown option '--max=5'");
}

Test(config, bad_flag_values)
{
    cr_assert_eq(LOAD(&cfg, "--keys=/k", "--port=abc"), 1);
    expect_reports(1, "--port: 'abc' is not a whole number in 0..65535");
    cr_assert_eq(LOAD(&cfg, "--keys=/k", "--tick-hz", "129"), 1);
    expect_reports(1, "--tick-hz: '129' is not a whole number in 10..128");
    cr_assert_eq(LOAD(&cfg, "--keys=/k", "--world-bound", "inf"), 1);
    expect_reports(1, "--world-bound: 'inf' is not a number in 1..131072");
    cr_assert_eq(LOAD(&cfg, "--keys=/k", "--admin", "localhost"), 1);
    expect_reports(1, "--admin: expected HOST:PORT (IPv4 or localhost) or off");
    cr_assert_eq(LOAD(&cfg, "--keys=/k", "--admin-role", "Root"), 1);
    expect_reports(1, "--admin-role: a role is 1 to 16 characters of [a-z0-9_-]");
    cr_assert_eq(LOAD(&cfg, "--keys=/k", "--protocol-id="), 1);
    expect_reports(1, "--protocol-id: '' is not a 64-bit number (decimal or 0x hex)");
    cr_assert_eq(LOAD(&cfg, "--keys=/k", "--log-level", "loud"), 1);
    expect_reports(1, "--log-level: not a log level (off, error, warn, info, debug, trace)");
    cr_assert_eq(LOAD(&cfg, "--keys=/k", "--bind=1.2.3.256"), 1);
    expect_reports(1, "--bind: not an IPv4 address");
    /* A refused flag leaves the value from the sources below it. */
    env("KIZUNA_TICK_HZ", "50");
    cr_assert_eq(LOAD(&cfg, "--keys=/k", "--tick-hz=5"), 1);
    cr_assert_eq(cfg.tick_hz, 50);
    expect_printed(&cfg, "tick_hz", "50", "KIZUNA_TICK_HZ");
}

Test(config, flags_repeat_and_loads_do_not_leak_into_each_other)
{
    cr_assert_eq(LOAD(&cfg, "--keys=/k", "--port", "1", "--port=2"), 0);
    cr_assert_eq(cfg.port, 2);
    /* getopt keeps state between calls: a second load sees only its argv. */
    cr_assert_eq(LOAD(&cfg, "--keys", "/k2", "--tick-hz", "20"), 0);
    cr_assert_eq(cfg.port, 40000);
    cr_assert_eq(cfg.tick_hz, 20);
    cr_assert_str_eq(cfg.keys, "/k2");
    cr_assert_eq(LOAD(&cfg, "--keys=/k", "stray", "--port=3"), 1);
    cr_assert_eq(LOAD(&cfg, "--keys=/k"), 0);
    cr_assert_eq(cfg.port, 40000);
    /* A load starts from the defaults, zones included. */
    const char *p = write_text("z.ini", "[zone.a]\nshape = sphere\nradius = 1\n");
    cr_assert_eq(LOAD(&cfg, "--keys=/k", "--config", p), 0);
    cr_assert_eq(cfg.n_zones, 1);
    cr_assert_eq(LOAD(&cfg, "--keys=/k"), 0);
    cr_assert_eq(cfg.n_zones, 0);
    cr_assert_str_eq(cfg.file, "");
}

/* ---- checks across settings --------------------------------------------------------- */

Test(config, cross_checks)
{
    cr_assert_eq(LOAD_NO_FLAGS(&cfg), 1);
    expect_reports(1, no_keys_dir);
    env("KIZUNA_KEYS", "/k");
    cr_assert_eq(LOAD_NO_FLAGS(&cfg), 0);

    cr_assert_eq(LOAD(&cfg, "--max-clients=4095"), 0);
    cr_assert_eq(LOAD(&cfg, "--max-clients=4096"), 1);
    expect_reports(1, "max_clients: 4096 is more than 4095 per I/O thread (io_threads = 1)");
    cr_assert_eq(LOAD(&cfg, "--max-clients=8190", "--io-threads=2"), 0);
    cr_assert_eq(LOAD(&cfg, "--max-clients=8191", "--io-threads=2"), 1);
    expect_reports(1, "max_clients: 8191 is more than 4095 per I/O thread (io_threads = 2)");

    cr_assert_eq(LOAD(&cfg, "--port=65535"), 0);
    cr_assert_eq(LOAD(&cfg, "--port=65534", "--io-threads=2"), 0);
    cr_assert_eq(LOAD(&cfg, "--port=65535", "--io-threads=2"), 1);
    expect_reports(1, "port: 65535 + 2 I/O threads runs past port 65535");
    cr_assert_eq(LOAD(&cfg, "--port=0", "--io-threads=16"), 0);

    cr_assert_eq(LOAD(&cfg, "--head-min=1.95"), 1);
    expect_reports(1, "head_min (1.95) must be below head_max (1.95)");
    cr_assert_eq(LOAD(&cfg, "--head-min=2", "--head-max=1"), 1);
    expect_reports(1, "head_min (2) must be below head_max (1)");

    cr_assert_eq(LOAD(&cfg, "--world-bound=100", "--spawn-radius=100"), 0);
    cr_assert_eq(LOAD(&cfg, "--world-bound=100", "--spawn-radius=100.5"), 1);
    expect_reports(1, "spawn_radius (100.5) is beyond world_bound (100)");
    cr_assert_eq(LOAD(&cfg, "--world-bound=50"), 1);
    expect_reports(1, "spawn_radius (100) is beyond world_bound (50)");

    /* All at once: every one is reported. */
    unsetenv("KIZUNA_KEYS");
    cr_assert_eq(LOAD(&cfg, "--max-clients=5000", "--port=65535", "--io-threads=1",
                      "--head-min=3", "--world-bound=10"),
                 4);
    expect_reports(4, no_keys_dir,
                   "max_clients: 5000 is more than 4095 per I/O thread (io_threads = 1)",
                   "head_min (3) must be below head_max (1.95)",
                   "spawn_radius (100) is beyond world_bound (10)");
    cr_assert_eq(LOAD(&cfg, "--max-clients=9000", "--port=65535", "--io-threads=2",
                      "--head-min=3", "--world-bound=10"),
                 5);
    expect_reports(5, no_keys_dir,
                   "max_clients: 9000 is more than 4095 per I/O thread (io_threads = 2)",
                   "port: 65535 + 2 I/O threads runs past port 65535",
                   "head_min (3) must be below head_max (1.95)",
                   "spawn_radius (100) is beyond world_bound (10)");
    /* config check does not ask for the keys directory. */
    cr_assert_eq(load_text("[network]\nmax_clients = 4096\n"), 1);
    expect_reports(1, "max_clients: 4096 is more than 4095 per I/O thread (io_threads = 1)");
    cr_assert_eq(load_text(""), 0);
}

/* The checks across settings run only on values that all loaded: with a
 * value refused, the other settings' effective values are not known. */
Test(config, cross_checks_wait_for_valid_values)
{
    cr_assert_eq(LOAD(&cfg, "--tick-hz=5"), 1);
    expect_reports(1, "--tick-hz: '5' is not a whole number in 10..128");
}

/* ---- kzs_config_to_server -------------------------------------------------------------- */

Test(config, to_server_maps_every_setting)
{
    cr_assert_eq(load_text(full_file), 0);
    kz_server_config sc, def;
    memset(&sc, 0, sizeof sc);
    memset(&def, 0, sizeof def);
    kz_server_config_default(&def);
    kzs_config_to_server(&cfg, &sc);
    const uint8_t ip[4] = {10, 20, 30, 40};
    cr_assert_eq(memcmp(&sc.net.bind_ip, ip, 4), 0, "bind_ip is in network order");
    cr_assert_eq(sc.net.port, 50001);
    cr_assert_eq(sc.net.io_threads, 3);
    cr_assert_eq(sc.net.threaded, 1);
    cr_assert_eq(sc.net.max_clients, 3000);
    cr_assert_eq(sc.net.gate_rate_per_ip, 777);
    cr_assert_eq(sc.net.verifier.protocol_id, UINT64_C(0x0102030405060708));
#define MAPPED(f, v)                                                                 \
    do {                                                                             \
        cr_assert(sc.f == (v), #f ": %g, expected %g", (double)sc.f, (double)(v));  \
        cr_assert(def.f != (v), #f ": the test value must not be the default");      \
    } while (0)
    MAPPED(tick_hz, 60u);
    MAPPED(world_bound, 2000.0f);
    MAPPED(view_radius, 61.5f);
    MAPPED(view_hysteresis, 7.25f);
    MAPPED(max_visible, 201u);
    MAPPED(max_objects, 302u);
    MAPPED(snapshot_history, 33u);
    MAPPED(bytes_per_second, 55555u);
    MAPPED(interest_period, 5u);
    MAPPED(spawn_seed, 123456789u);
    MAPPED(spawn_radius, 150.5f);
    MAPPED(voice_radius, 31.5f);
    MAPPED(voice_bytes_per_second, 9001u);
    MAPPED(chat_per_second, 7u);
    MAPPED(personal_space, 1.75f);
    MAPPED(grab_reach, 2.5f);
    MAPPED(max_speed, 9.5f);
    MAPPED(max_accel, 45.5f);
    MAPPED(head_min, 0.25f);
    MAPPED(head_max, 2.25f);
    MAPPED(hand_reach, 1.5f);
    MAPPED(clock_tolerance, 0.125f);
    MAPPED(strike_half_life, 61.5f);
    MAPPED(kick_score, 150.5f);
#undef MAPPED
    cr_assert_str_eq(sc.moderator_role, "mods");
    cr_assert_str_eq(sc.admin_role, "root-ops");
    /* The roles are borrowed from the config, which must outlive sc. */
    cr_assert_eq(sc.moderator_role, cfg.moderator_role);
    cr_assert_eq(sc.admin_role, cfg.admin_role);
    cr_assert_null(sc.audit);
    cr_assert_null(sc.visible);
}

Test(config, to_server_defaults_agree_with_the_library)
{
    cr_assert_eq(load_text(""), 0);
    kz_server_config sc, def;
    memset(&sc, 0, sizeof sc);
    memset(&def, 0, sizeof def);
    kz_server_config_default(&def);
    kzs_config_to_server(&cfg, &sc);
    cr_assert_eq(sc.net.bind_ip, 0);
    cr_assert_eq(sc.net.port, 40000);
    cr_assert_eq(sc.net.verifier.protocol_id, UINT64_C(0x4B495A554E410001));
#define SAME(f) cr_assert(sc.f == def.f, #f ": %g vs the library's %g", (double)sc.f, (double)def.f)
    SAME(tick_hz);
    SAME(world_bound);
    SAME(view_radius);
    SAME(view_hysteresis);
    SAME(max_visible);
    SAME(max_objects);
    SAME(snapshot_history);
    SAME(bytes_per_second);
    SAME(interest_period);
    SAME(spawn_radius);
    SAME(voice_radius);
    SAME(voice_bytes_per_second);
    SAME(chat_per_second);
    SAME(personal_space);
    SAME(grab_reach);
    SAME(max_speed);
#undef SAME
    cr_assert_str_eq(sc.moderator_role, def.moderator_role);
    cr_assert_str_eq(sc.admin_role, def.admin_role);
}

/* ---- garbage -------------------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64*: a fixed seed gives the same files on every run. */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(2685821657736338717);
}

static const char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/*
 * Loads hostile bytes and checks what must hold for any input: no crash
 * (and, under ASan/UBSan, no memory error), every error reported once and
 * named by the file, and printing the result works.
 */
static int load_garbage(const char *name, const uint8_t *data, size_t len)
{
    const char *p = write_bytes(name, data, len);
    int rc = load_path(&cfg, p);
    size_t plen = strlen(p);
    for (int i = 0; i < cap.n && i < CAP_KEEP; i++)
        cr_assert(strncmp(cap.line[i], p, plen) == 0 && cap.line[i][plen] == ':',
                  "a report does not name the file: %s", cap.line[i]);
    char *text = print_to_string(&cfg);
    free(text);
    return rc;
}

/* Junk whose first line starts with a letter: it is not a comment, a
 * section or a continuation, and outside any section no key is valid, so
 * at least that line is an error, whatever follows. */
Test(config, garbage_never_passes_and_never_crashes)
{
    static uint8_t buf[4096];
    uint64_t seed = UINT64_C(0x4B495A554E41);
    for (int f = 0; f < 300; f++) {
        size_t len;
        if (f % 2 == 0) {
            /* Random bytes, NULs, CRs and BOMs included. */
            len = 1 + (size_t)(rng_next(&seed) % 2000);
            for (size_t i = 0; i < len; i++)
                buf[i] = (uint8_t)rng_next(&seed);
        } else {
            /* Random printable lines, some past the line limit, with INI
             * punctuation over-represented. */
            static const char punct[] = "[]=:;#., \t.zone";
            len = 0;
            int lines = 1 + (int)(rng_next(&seed) % 40);
            for (int l = 0; l < lines && len < sizeof buf - 300; l++) {
                size_t n = (size_t)(rng_next(&seed) % 250);
                for (size_t i = 0; i < n; i++) {
                    uint64_t r = rng_next(&seed);
                    buf[len++] = r % 3 == 0 ? (uint8_t)punct[(r >> 8) % (sizeof punct - 1)]
                                            : (uint8_t)(0x20 + (r >> 8) % 95);
                }
                buf[len++] = (rng_next(&seed) % 8 == 0) ? '\r' : '\n';
            }
        }
        buf[0] = (uint8_t)letters[rng_next(&seed) % (sizeof letters - 1)];
        int rc = load_garbage("junk.ini", buf, len);
        cr_assert_gt(rc, 0, "junk file %d passed", f);
    }
    /* The module is still fine: a valid file loads as it should. */
    cr_assert_eq(load_text(full_file), 0);
    static kzs_config fresh;
    cr_assert_eq(load_path(&fresh, t_ini()), 0);
    expect_same_config(&cfg, &fresh);
}

/* Valid files with bytes changed, cut short or spliced: anything may
 * happen to the count, but the invariants of load_garbage hold. */
Test(config, mutated_files_keep_the_invariants)
{
    static uint8_t buf[sizeof full_file + 64];
    uint64_t seed = 7;
    for (int f = 0; f < 300; f++) {
        size_t len = sizeof full_file - 1;
        memcpy(buf, full_file, len);
        int flips = 1 + (int)(rng_next(&seed) % 8);
        for (int k = 0; k < flips; k++) {
            uint64_t r = rng_next(&seed);
            size_t at_ = (size_t)(r % len);
            switch ((r >> 32) % 4) {
            case 0:
                buf[at_] = (uint8_t)(r >> 40);
                break;
            case 1:
                buf[at_] = (uint8_t)"\n\r[]=;#,\0 -"[(r >> 40) % 11];
                break;
            case 2:
                len = at_ + 1; /* cut short */
                break;
            default:
                buf[at_] = (uint8_t)('0' + (r >> 40) % 10);
                break;
            }
        }
        int rc = load_garbage("mutant.ini", buf, len);
        cr_assert_geq(rc, 0);
    }
    cr_assert_eq(load_text(full_file), 0);
}

/* ---- defects --------------------------------------------------------------------------- */

/*
 * Was broken: config.h promises that the printed configuration "loads back to
 * the same values", but floats are printed with %g (6 significant digits),
 * so 1234.5678 comes back as 1234.57. Printing with the shortest precision
 * that reads back exactly (up to 9 digits for a float) fixes it.
 */
Test(regressions, print_keeps_every_float_digit)
{
    cr_assert_eq(load_text("[world]\nview_radius = 1234.5678\nworld_bound = 4095.123\n"
                           "[validation]\nclock_tolerance = 0.0123456789\n"
                           "[zone.a]\nshape = box\ncenter = 1.23456789, -2.3456789, 3.3333333\n"
                           "half = 0.123456789, 1, 1\n"),
                 0);
    print_and_reload(&cfg, "printed.ini", &cfg2);
    expect_same_config(&cfg, &cfg2);
}

/*
 * Was broken: a directory given as the config file loads with 0 errors and
 * every setting at its default: fopen() of a directory succeeds on Linux,
 * the first read fails with EISDIR, and inih takes that for the end of an
 * empty file. A host who points --config at /etc/kizuna/ instead of
 * /etc/kizuna/world.ini gets a server on defaults.
 */
Test(regressions, directory_as_config_file_is_refused)
{
    char want[256];
    snprintf(want, sizeof want, "%s: cannot read the config file: Is a directory", dir);
    cr_assert_eq(load_path(&cfg, dir), 1);
    expect_reports(1, want);
    cr_assert_eq(LOAD(&cfg, "--keys=/k", "--config", dir), 1);
    expect_reports(1, want);
}

/*
 * Was broken: protocol_id is documented as "decimal or 0x hex" but is parsed
 * with strtoull base 0, which also reads octal: "010" loads as 8 and "09"
 * is refused.
 */
Test(regressions, protocol_id_with_leading_zero_is_decimal)
{
    cr_assert_eq(load_text("[network]\nprotocol_id = 010\n"), 0);
    cr_assert_eq(cfg.protocol_id, 10, "protocol_id = 010 loaded as %llu",
                 (unsigned long long)cfg.protocol_id);
    cr_assert_eq(load_text("[network]\nprotocol_id = 09\n"), 0);
    cr_assert_eq(cfg.protocol_id, 9);
}

/*
 * Was broken: a zone whose section appears again after another section is
 * merged into the first definition without a word ("zone defined twice"
 * is caught only when another zone section comes between), because the
 * open zone is remembered by section name across non-zone sections.
 */
Test(regressions, zone_defined_twice_across_other_sections)
{
    cr_assert_eq(load_text("[zone.a]\nshape = box\nhalf = 1, 1, 1\n"
                           "[network]\nport = 1\n"
                           "[zone.a]\nhalf = 2, 2, 2\n"),
                 1);
    expect_reports(1, at(ZONE_AT(6), "[zone.a]: zone defined twice"));
    cr_assert_float_eq(cfg.zones[0].half[0], 1.0f, 0);
}

/*
 * Was broken: a zone's center is checked against the file's world_bound
 * before KIZUNA_WORLD_BOUND and --world-bound are applied, so a zone
 * outside the world that runs is accepted, and a zone inside it is
 * refused.
 */
Test(regressions, zone_center_checked_against_the_final_world_bound)
{
    const char *p = write_text("z.ini", "[zone.far]\nshape = sphere\nradius = 1\n"
                                        "center = 80, 0, 0\n");
    env("KIZUNA_WORLD_BOUND", "50");
    env("KIZUNA_SPAWN_RADIUS", "10");
    int rc = LOAD(&cfg, "--keys=/k", "--config", p);
    cr_assert_float_eq(cfg.world_bound, 50.0f, 0);
    cr_assert_eq(rc, 1, "a zone at x = 80 in a world of half-extent 50 was accepted");
    char want[256];
    snprintf(want, sizeof want, "%s:%u: [zone.far] has its center outside the world (world_bound)",
             p, ZONE_AT(1));
    expect_reports(1, want);
}

Test(regressions, zone_center_inside_the_world_a_flag_made)
{
    const char *p = write_text("z.ini", "[world]\nworld_bound = 50\nspawn_radius = 10\n"
                                        "[zone.far]\nshape = sphere\nradius = 1\n"
                                        "center = 80, 0, 0\n");
    cr_assert_eq(LOAD(&cfg, "--keys=/k", "--config", p, "--world-bound=100"), 0,
                 "a zone inside the world --world-bound made was refused");
}

/*
 * Was broken: when a file has any other error, incomplete zones are not
 * reported (kzs_zones_check runs only on a file without errors), so
 * fixing one problem reveals the next instead of every problem at once.
 */
Test(regressions, zone_problems_reported_alongside_other_errors)
{
    cr_assert_eq(load_text("[network]\nport = x\n[zone.a]\nshape = box\n"), 2);
    expect_reported(at(2, "port: 'x' is not a whole number in 0..65535"));
    expect_reported(at(ZONE_AT(3), "[zone.a] has no half-extents (half = x, y, z)"));
}

/*
 * Was broken: a NUL byte ends the line for inih without a word:
 * "port = 1<NUL>junk" loads as port = 1.
 */
Test(regressions, nul_byte_in_a_value_is_reported)
{
    static const char a[] = "[network]\nport = 1\0junk\n";
    cr_assert_geq(load_path(&cfg, write_bytes("t.ini", a, sizeof a - 1)), 1,
                  "a NUL byte inside a value passed");
}

/*
 * Was broken: a NUL byte in a line longer than the reader's buffer hides its
 * length (the reader measures with strlen), so the rest of the line is
 * read as a line of its own and every later line number is one too high.
 */
Test(regressions, nul_byte_keeps_line_numbers)
{
    char b[512];
    size_t n = 0;
    n += (size_t)snprintf(b + n, sizeof b - n, "[network]\n;a");
    b[n++] = '\0';
    memset(b + n, 'x', 300);
    n += 300;
    n += (size_t)snprintf(b + n, sizeof b - n, "\nbogus = 1\n");
    load_path(&cfg, write_bytes("t.ini", b, n));
    expect_reported(at(3, "[network]: unknown key 'bogus'"));
}

/*
 * Was broken: with old-Mac line endings (CR only) the whole file is one line;
 * when it starts with a section header, inih ignores everything after the
 * ']' and the file loads with 0 errors on defaults.
 */
Test(regressions, cr_only_line_endings_are_not_silently_ignored)
{
    int rc = load_text("[network]\rport = 1234\rio_threads = 2\r");
    cr_assert(rc > 0 || cfg.port == 1234, "the file was ignored without a word (port %u)",
              cfg.port);
}

/*
 * Was broken: text values set through a variable or a flag can hold what an
 * INI line cannot (a newline, " ;", leading spaces, more characters than
 * inih's 200-byte line), so `config show` prints a file that does not load
 * back, or loads back differently; a newline even lets a value add
 * sections (here a zone). Either such values are refused when set or the
 * print must keep them intact.
 */
Test(regressions, text_values_survive_print_and_reload)
{
    static char long_path[256];
    memset(long_path, 'p', sizeof long_path - 1);
    long_path[0] = '/';
    const char *const values[] = {
        "/srv/audit.log\n[zone.evil]\nshape = sphere\nradius = 1",
        "/srv/a ;b",
        " /srv/leading-space",
        long_path, /* "audit = " and 255 characters: past inih's 198 */
    };
    for (size_t i = 0; i < N_OF(values); i++) {
        clear_env();
        env("KIZUNA_AUDIT", values[i]);
        int rc = LOAD(&cfg, "--keys=/k");
        if (rc != 0) {
            cr_assert_eq(cap.n, 1);
            cr_assert(strncmp(cap.line[0], "KIZUNA_AUDIT: ", 14) == 0, "%s", cap.line[0]);
            continue;
        }
        char *text = print_to_string(&cfg);
        const char *p = write_text("printed.ini", text);
        free(text);
        cr_assert_eq(load_path(&cfg2, p), 0, "value %zu: the printed file does not load", i);
        cr_assert_eq(cfg2.n_zones, 0, "value %zu added a zone", i);
        cr_assert_str_eq(cfg2.audit, cfg.audit, "value %zu", i);
    }
}

/*
 * Was broken: every value from the file is printed with "; FILE:LINE" after
 * it, so a config file whose path is longer than about 150 characters
 * makes `config show` print lines longer than inih's 198, and the output
 * no longer loads.
 */
Test(regressions, print_with_a_long_config_path_loads_back)
{
    char sub[256], path[320];
    snprintf(sub, sizeof sub, "%s/%0100d", dir, 0);
    cr_assert_eq(mkdir(sub, 0700), 0);
    snprintf(path, sizeof path, "%s/%050d-world.ini", sub, 0);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("[network]\nport = 41000\n", f);
    cr_assert_eq(fclose(f), 0);
    cr_assert_eq(load_path(&cfg, path), 0);
    print_and_reload(&cfg, "printed.ini", &cfg2);
    expect_same_config(&cfg, &cfg2);
}

/*
 * Was broken: an unknown short option inside a cluster is reported with the
 * wrong argument: for "-ab" the first report names the argument before
 * it (argv[optind - 1], as getopt has not yet moved past the cluster),
 * here "--keys=/k", or "run" when the cluster comes first.
 */
static void expect_only_cluster_named(void)
{
    for (int i = 0; i < cap.n; i++)
        cr_assert(strstr(cap.line[i], "'--keys=/k'") == NULL &&
                      strstr(cap.line[i], "'run'") == NULL,
                  "names another argument: %s", cap.line[i]);
}

Test(regressions, short_option_cluster_named_right)
{
    cr_assert_eq(LOAD(&cfg, "--keys=/k", "-ab"), 2);
    expect_only_cluster_named();
    cr_assert_eq(LOAD(&cfg, "-ab", "--keys=/k"), 2);
    expect_only_cluster_named();
}

