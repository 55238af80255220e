/*
 * The sub-commands of kizuna-server and the few command-line helpers they
 * share (messages, strict number parsing, option errors). The helpers live
 * in main.c; each command lives in its own file.
 *
 * Exit statuses: 0 success, 1 a runtime failure (a file, a key, a token
 * that does not check out), 2 a usage error (unknown command or option,
 * missing or malformed argument). Messages go to stderr and start with
 * "kizuna-server: ".
 *
 * Threading: single-threaded program code; getopt keeps global state.
 */
#ifndef KZS_COMMANDS_H
#define KZS_COMMANDS_H

#include <stdint.h>

#include <kizuna/common.h>

#define KZS_EXIT_OK 0
#define KZS_EXIT_FAIL 1
#define KZS_EXIT_USAGE 2

/*
 * Command entry points. argv[0] is the command's name ("keygen", "token",
 * "run", "audit"), the options follow. Each returns the process exit status.
 */
int cmd_keygen(int argc, char **argv);
int cmd_token(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_config(int argc, char **argv);
int cmd_fleet(int argc, char **argv);
int cmd_version(int argc, char **argv);

/* Prints "kizuna-server: <message>\n" to stderr. */
void kzs_error(const char *fmt, ...) KZ_PRINTF(1, 2);

/*
 * Prints "kizuna-server: <message>\n" then `usage` to stderr and returns
 * KZS_EXIT_USAGE, so a command can `return kzs_usage_error(...)`.
 */
int kzs_usage_error(const char *usage, const char *fmt, ...) KZ_PRINTF(2, 3);

/*
 * Reports what getopt_long refused: `c` is its return value ('?' or ':'),
 * `bad` the argument it stopped at (argv[optind - 1]). Returns
 * KZS_EXIT_USAGE.
 */
int kzs_option_error(const char *usage, const char *cmd, int c, const char *bad);

/*
 * Parses an unsigned decimal number (or, with base 0, also 0x-hex) that
 * must be the whole of `text`, without sign or spaces, and at most `max`.
 * Returns 0 and sets *out, or -1.
 */
int kzs_parse_u64(const char *text, int base, uint64_t max, uint64_t *out);

#endif /* KZS_COMMANDS_H */
