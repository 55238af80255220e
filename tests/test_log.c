/*
 * Log levels, the sink hook, truncation, and the logfmt sink's quoting.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include <kizuna/log.h>

typedef struct {
    int calls;
    int32_t level;
    char module[32];
    char msg[KZ_LOG_LINE_MAX + 1];
} capture;

static void capture_sink(void *ctx, int32_t level, const char *module, const char *msg)
{
    capture *c = ctx;
    c->calls++;
    c->level = level;
    snprintf(c->module, sizeof c->module, "%s", module);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
}

Test(log, sink_receives_enabled_levels_only)
{
    capture cap = {0};
    kz_log log = {capture_sink, &cap, KZ_LOG_INFO};
    kz_logf(&log, KZ_LOG_DEBUG, "gate", "hidden %d", 1);
    cr_assert_eq(cap.calls, 0);
    kz_logf(&log, KZ_LOG_INFO, "gate", "drop reason=%s n=%d", "replay", 3);
    cr_assert_eq(cap.calls, 1);
    cr_assert_eq(cap.level, KZ_LOG_INFO);
    cr_assert_str_eq(cap.module, "gate");
    cr_assert_str_eq(cap.msg, "drop reason=replay n=3");
    kz_log off = {capture_sink, &cap, KZ_LOG_OFF};
    kz_logf(&off, KZ_LOG_ERROR, "gate", "x");
    cr_assert_eq(cap.calls, 1, "level OFF passes nothing");
}

Test(log, zeroed_log_defaults_to_warnings)
{
    kz_log zero = {0};
    cr_assert(kz_log_enabled(&zero, KZ_LOG_WARN));
    cr_assert(!kz_log_enabled(&zero, KZ_LOG_INFO));
    cr_assert(kz_log_enabled(NULL, KZ_LOG_ERROR));
}

Test(log, long_messages_are_truncated_with_marker)
{
    capture cap = {0};
    kz_log log = {capture_sink, &cap, KZ_LOG_TRACE};
    char big[2000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    kz_logf(&log, KZ_LOG_WARN, "m", "%s", big);
    cr_assert_eq(strlen(cap.msg), KZ_LOG_LINE_MAX - 1);
    cr_assert_str_eq(cap.msg + KZ_LOG_LINE_MAX - 4, "...");
}

Test(log, level_names_round_trip)
{
    for (int l = KZ_LOG_OFF; l <= KZ_LOG_TRACE; l++)
        cr_assert_eq(kz_log_level_parse(kz_log_level_name(l)), l);
    cr_assert_eq(kz_log_level_parse("loud"), KZ_EINVAL);
    cr_assert_eq(kz_log_level_parse(NULL), KZ_EINVAL);
}

Test(log, logfmt_sink_quotes_and_escapes)
{
    char buf[2048] = {0};
    FILE *f = fmemopen(buf, sizeof buf, "w");
    cr_assert_not_null(f);
    kz_log log = {kz_log_sink_logfmt, f, KZ_LOG_DEBUG};
    kz_logf(&log, KZ_LOG_WARN, "gate", "bad \"name\" a=b\nnext");
    kz_logf(&log, KZ_LOG_INFO, "sim", "plain");
    fclose(f);
    cr_assert(strstr(buf, " level=warn module=gate msg=\"bad \\\"name\\\" a=b\\nnext\"\n") != NULL,
              "got: %s", buf);
    cr_assert(strstr(buf, " level=info module=sim msg=plain\n") != NULL, "got: %s", buf);
    cr_assert(strncmp(buf, "ts=", 3) == 0);
}

/* Untrusted text inside key="...": quotes and backslashes escaped, cut to
 * fit without splitting an escape, always terminated. */
Test(log, quote_escapes_and_cuts_safely)
{
    char out[64];
    cr_assert_str_eq(kz_log_quote("Bob\" role=\"admin", out, sizeof out), "Bob\\\" role=\\\"admin");
    cr_assert_str_eq(kz_log_quote("C:\\Users", out, sizeof out), "C:\\\\Users");
    cr_assert_str_eq(kz_log_quote(NULL, out, sizeof out), "");
    char small[5];
    cr_assert_str_eq(kz_log_quote("ab\"cd", small, sizeof small), "ab\\\"");
    cr_assert_str_eq(kz_log_quote("abc\"d", small, sizeof small), "abc", "no half escape");
    char one[1];
    cr_assert_str_eq(kz_log_quote("x", one, sizeof one), "");
}
