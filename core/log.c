/*
 * Leveled log with an injectable sink, and the default logfmt sink.
 */
#include <string.h>
#include <time.h>

#include <kizuna/log.h>

static const char *const kz__level_names[] = {"off", "error", "warn", "info", "debug", "trace"};

const char *kz_log_level_name(int32_t level)
{
    if (level < KZ_LOG_OFF || level > KZ_LOG_TRACE)
        return "?";
    return kz__level_names[level];
}

int kz_log_level_parse(const char *name)
{
    if (name == NULL)
        return KZ_EINVAL;
    for (int i = KZ_LOG_OFF; i <= KZ_LOG_TRACE; i++)
        if (strcmp(name, kz__level_names[i]) == 0)
            return i;
    if (strcmp(name, "warning") == 0)
        return KZ_LOG_WARN;
    return KZ_EINVAL;
}

static int32_t kz__effective_level(const kz_log *log)
{
    if (log == NULL || (log->sink == NULL && log->level == 0))
        return KZ_LOG_WARN;
    return log->level;
}

int kz_log_enabled(const kz_log *log, int32_t level)
{
    return level > KZ_LOG_OFF && level <= kz__effective_level(log);
}

/* Appends `s` to out[*used..cap) as a logfmt value: bare when it has no
 * space, quote, equals sign or control byte, else quoted with escapes.
 * Stops silently at the capacity (the caller reserves the newline). */
static void kz__logfmt_value(char *out, size_t cap, size_t *used, const char *s)
{
    int quote = *s == '\0';
    for (const char *c = s; *c && !quote; c++)
        quote = *c == ' ' || *c == '"' || *c == '=' || (unsigned char)*c < 0x20;
    size_t u = *used;
    if (quote && u < cap)
        out[u++] = '"';
    for (const unsigned char *c = (const unsigned char *)s; *c && u + 2 < cap; c++) {
        if (*c == '"' || *c == '\\') {
            out[u++] = '\\';
            out[u++] = (char)*c;
        } else if (*c == '\n') {
            out[u++] = '\\';
            out[u++] = 'n';
        } else if (*c < 0x20) {
            out[u++] = '?';
        } else {
            out[u++] = (char)*c;
        }
    }
    if (quote && u < cap)
        out[u++] = '"';
    *used = u;
}

void kz_log_sink_logfmt(void *ctx, int32_t level, const char *module, const char *msg)
{
    FILE *f = ctx ? (FILE *)ctx : stderr;
    char line[KZ_LOG_LINE_MAX * 2 + 128];
    /* Wall time for people reading logs; the engine's logic never sees it. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int n = snprintf(line, sizeof line, "ts=%lld.%06ld level=%s module=",
                     (long long)ts.tv_sec, ts.tv_nsec / 1000, kz_log_level_name(level));
    size_t used = n > 0 ? (size_t)n : 0;
    kz__logfmt_value(line, sizeof line - 1, &used, module ? module : "-");
    if (used + 5 < sizeof line - 1) {
        memcpy(line + used, " msg=", 5);
        used += 5;
    }
    kz__logfmt_value(line, sizeof line - 1, &used, msg);
    line[used++] = '\n';
    fwrite(line, 1, used, f);
}

void kz_logv(const kz_log *log, int32_t level, const char *module, const char *fmt, va_list ap)
{
    if (!kz_log_enabled(log, level))
        return;
    char msg[KZ_LOG_LINE_MAX];
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    if (n >= (int)sizeof msg)
        memcpy(msg + sizeof msg - 4, "...", 4);
    kz_log_fn sink = log && log->sink ? log->sink : kz_log_sink_logfmt;
    void *ctx = log ? log->ctx : NULL;
    sink(ctx, level, module, msg);
}

void kz_logf(const kz_log *log, int32_t level, const char *module, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kz_logv(log, level, module, fmt, ap);
    va_end(ap);
}

const char *kz_log_quote(const char *text, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = text ? text : ""; *p && n + 1 < cap; p++) {
        int esc = *p == '"' || *p == '\\';
        if (n + 1 + (size_t)esc >= cap)
            break;
        if (esc)
            out[n++] = '\\';
        out[n++] = *p;
    }
    out[n] = '\0';
    return out;
}
