/*
 * Leveled logging to an injectable sink.
 *
 * Each Kizuna object carries a kz_log in its config; a zeroed kz_log logs
 * warnings and errors in logfmt to stderr. Engines install their own sink to
 * route lines into their console. Messages are formatted into a bounded
 * stack buffer (KZ_LOG_LINE_MAX, longer ones are truncated with "...") and
 * only when the level is enabled, so a disabled debug line costs one
 * comparison and never allocates.
 *
 * Threading: a sink may be called from any thread that uses the object the
 * kz_log belongs to; a sink shared across threads must be thread-safe. The
 * stderr sinks write each line with a single fwrite, which stdio locks.
 */
#ifndef KZ_LOG_H
#define KZ_LOG_H

#include <stdarg.h>
#include <stdio.h>

#include <kizuna/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Levels, most severe first; a kz_log passes lines at or above its level.
 * Plain integer constants so that they cross the ABI as int32_t. */
#define KZ_LOG_OFF 0
#define KZ_LOG_ERROR 1
#define KZ_LOG_WARN 2
#define KZ_LOG_INFO 3
#define KZ_LOG_DEBUG 4
#define KZ_LOG_TRACE 5

#define KZ_LOG_LINE_MAX 512

/*
 * Receives one formatted line. `module` names the emitting part ("gate",
 * "sim", ...); `msg` is NUL-terminated, without a trailing newline, valid
 * only during the call.
 */
typedef void (*kz_log_fn)(void *ctx, int32_t level, const char *module, const char *msg);

typedef struct kz_log {
    kz_log_fn sink;  /* NULL: kz_log_sink_logfmt on stderr */
    void *ctx;       /* passed to sink; for the stderr sinks, a FILE* or NULL */
    int32_t level;   /* 0 with sink == NULL: KZ_LOG_WARN; else as given */
} kz_log;

/* A level's lower-case name ("error", "warn", ...), "?" if unknown. */
KZ_API const char *kz_log_level_name(int32_t level);
/* Parses a level name; returns the level or KZ_EINVAL. */
KZ_API int kz_log_level_parse(const char *name);

/* logfmt line: `ts=<unix seconds.micro> level=warn module=gate msg="..."`,
 * quoting and escaping as logfmt requires. ctx: FILE* (NULL = stderr). */
KZ_API void kz_log_sink_logfmt(void *ctx, int32_t level, const char *module, const char *msg);

/* Whether `log` passes lines of `level`. */
KZ_API int kz_log_enabled(const kz_log *log, int32_t level);

/* Copies `text` into out[cap] with '"' and '\\' escaped by a backslash, so
 * that untrusted text (a display name) can sit inside a quoted logfmt
 * value (key="...") without ending it early or adding fields. Cut to fit,
 * never inside an escape; always NUL-terminated (cap >= 1). Returns out. */
KZ_API const char *kz_log_quote(const char *text, char *out, size_t cap);

/* Formats and emits one line if the level is enabled. `log` may be NULL
 * (then the defaults apply). */
KZ_API void kz_logf(const kz_log *log, int32_t level, const char *module, const char *fmt, ...)
    KZ_PRINTF(4, 5);
KZ_API void kz_logv(const kz_log *log, int32_t level, const char *module, const char *fmt,
                    va_list ap);

#ifdef __cplusplus
}
#endif

#endif /* KZ_LOG_H */
