/*
 * The server's log: one JSON object per line on stderr, for journald,
 * Loki, jq and friends.
 *
 *   {"time":"2026-11-24T07:01:30.123Z","level":"info","event":"joined",
 *    "module":"server","slot":0,"entity":1,"client":7,"name":"Probe"}
 *
 * Every line comes through kzs_jsonlog_sink, which the program installs as
 * the kz_log sink of the world, the transport and the audit log, and uses
 * for its own events. A message written as logfmt ("EVENT key=value
 * key=\"quoted value\" ...") becomes the event and its fields (digits-only
 * values as JSON numbers); any other message is kept whole as "msg" with
 * the module as the event. Strings are escaped by cJSON, so a client's
 * display name cannot break a line.
 *
 * Nothing secret is ever passed to the log: tokens, session keys and key
 * files are not formatted anywhere in the program or the library (a test
 * searches a whole run's log for them).
 *
 * Threading: the sink may be called from any thread; each line is written
 * with one fwrite, which stdio locks, so lines never interleave.
 */
#ifndef KZS_JSONLOG_H
#define KZS_JSONLOG_H

#include <stdint.h>

#include <kizuna/log.h>

/* The kz_log sink; ctx is a FILE* or NULL for stderr. */
void kzs_jsonlog_sink(void *ctx, int32_t level, const char *module, const char *msg);

/* A kz_log that writes JSON lines to stderr at `level`. */
kz_log kzs_jsonlog(int32_t level);

#endif /* KZS_JSONLOG_H */
