/*
 * kizuna-server: the program world hosts run. This file picks the
 * sub-command, prints the program's usage and version, holds the small
 * command-line helpers every command shares (commands.h), and implements
 * `keygen`, whose real work is in keys.c.
 *
 * Commands are looked up in one table; adding one is a row there and a
 * cmd_<name> function in its own file.
 */
#include <errno.h>
#include <getopt.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kizuna/common.h>

#include "commands.h"
#include "defaults.h"
#include "keys.h"

typedef struct kzs_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} kzs_command;

static const kzs_command kzs_commands[] = {
    {"keygen", cmd_keygen, "create a directory of backend and server key files"},
    {"token", cmd_token, "mint or inspect connect tokens (token mint, token show)"},
    {"run", cmd_run, "run the dedicated server (run --help lists every setting)"},
    {"audit", cmd_audit, "check an audit log (audit verify, audit show)"},
    {"config", cmd_config, "validate a config file, show the effective config"},
    {"fleet", cmd_fleet, "list the fleet directory on NATS (fleet list)"},
    {"version", cmd_version, "print the program and library versions"},
};

#define KZS_N_COMMANDS (sizeof kzs_commands / sizeof kzs_commands[0])

/* ---- shared helpers (commands.h) --------------------------------------- */

void kzs_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", KZS_PROGRAM);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int kzs_usage_error(const char *usage, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", KZS_PROGRAM);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n\n%s", usage);
    return KZS_EXIT_USAGE;
}

int kzs_option_error(const char *usage, const char *cmd, int c, const char *bad)
{
    if (c == ':')
        return kzs_usage_error(usage, "%s: option '%s' needs a value", cmd, bad);
    return kzs_usage_error(usage, "%s: unknown option '%s'", cmd, bad);
}


/* ---- keygen ------------------------------------------------------------ */

static const char kzs_keygen_usage[] =
    "usage: kizuna-server keygen --out DIR [--force]\n"
    "\n"
    "Creates DIR (mode 0700) if missing and writes a new backend key pair\n"
    "(backend.key 0600, backend.pub 0644) and server key pair (server.key\n"
    "0600, server.pub 0644). Existing key files are never overwritten\n"
    "unless --force is given; then each is replaced atomically.\n"
    "With --audit it writes only the audit log's Ed25519 signing pair\n"
    "(audit.key 0600, audit.pub 0644) into DIR, next to existing keys.\n"
    "\n"
    "  -o, --out DIR   keys directory\n"
    "  -a, --audit     write the audit signing pair only\n"
    "  -f, --force     replace existing key files\n"
    "  -h, --help      show this help\n";

int cmd_keygen(int argc, char **argv)
{
    static const struct option opts[] = {
        {"out", required_argument, NULL, 'o'},
        {"force", no_argument, NULL, 'f'},
        {"audit", no_argument, NULL, 'a'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *dir = NULL;
    int force = 0, audit = 0, c;
    uint64_t id = 0;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":o:fah", opts, NULL)) != -1) {
        if (c == 'o')
            dir = optarg;
        else if (c == 'a')
            audit = 1;
        else if (c == 'f')
            force = 1;
        else if (c == 'h')
            return fputs(kzs_keygen_usage, stdout) == EOF ? KZS_EXIT_FAIL : KZS_EXIT_OK;
        else
            return kzs_option_error(kzs_keygen_usage, "keygen", c, argv[optind - 1]);
    }
    if (optind < argc)
        return kzs_usage_error(kzs_keygen_usage, "keygen: unexpected argument '%s'", argv[optind]);
    if (dir == NULL || dir[0] == '\0')
        return kzs_usage_error(kzs_keygen_usage, "keygen: --out DIR is required");
    if (audit) {
        if (kzs_keys_generate_audit(dir, force) != 0)
            return KZS_EXIT_FAIL;
        printf("wrote audit.key audit.pub to %s\n", dir);
        return KZS_EXIT_OK;
    }
    if (kzs_keys_generate(dir, force, &id) != 0)
        return KZS_EXIT_FAIL;
    printf("wrote backend.key backend.pub server.key server.pub to %s (server id 0x%016llx)\n",
           dir, (unsigned long long)id);
    return KZS_EXIT_OK;
}

/* ---- dispatch ---------------------------------------------------------- */

static void kzs_print_usage(FILE *out)
{
    fprintf(out, "usage: %s COMMAND [OPTIONS]\n\ncommands:\n", KZS_PROGRAM);
    for (size_t i = 0; i < KZS_N_COMMANDS; i++)
        fprintf(out, "  %-8s %s\n", kzs_commands[i].name, kzs_commands[i].summary);
    fprintf(out, "\noptions:\n"
                 "  -h, --help     show this help; COMMAND --help shows a command's\n"
                 "  -V, --version  print the version\n"
                 "\nSee docs/OPERATIONS.md.\n");
}

static const kzs_command *kzs_find_command(const char *name)
{
    for (size_t i = 0; i < KZS_N_COMMANDS; i++)
        if (strcmp(kzs_commands[i].name, name) == 0)
            return &kzs_commands[i];
    return NULL;
}

/* Prints a top-level usage error and the usage; returns the exit status. */
static int kzs_top_usage_error(const char *what, const char *name)
{
    if (name)
        kzs_error("unknown %s '%s'", what, name);
    else
        kzs_error("%s", what);
    fputc('\n', stderr);
    kzs_print_usage(stderr);
    return KZS_EXIT_USAGE;
}

/* Handles --help and --version; returns -1 when `arg` is neither. */
static int kzs_top_level_option(const char *arg)
{
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0 || strcmp(arg, "help") == 0) {
        kzs_print_usage(stdout);
        return KZS_EXIT_OK;
    }
    if (strcmp(arg, "--version") == 0 || strcmp(arg, "-V") == 0) {
        printf("%s %s\n", KZS_PROGRAM, kz_version());
        return KZS_EXIT_OK;
    }
    return -1;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return kzs_top_usage_error("no command given", NULL);
    int rc = kzs_top_level_option(argv[1]);
    if (rc >= 0)
        return rc;
    const kzs_command *cmd = kzs_find_command(argv[1]);
    if (cmd == NULL)
        return kzs_top_usage_error(argv[1][0] == '-' ? "option" : "command", argv[1]);
    if (sodium_init() < 0) {
        kzs_error("libsodium failed to start: %s", kz_strerror(KZ_EIO));
        return KZS_EXIT_FAIL;
    }
    return cmd->run(argc - 1, argv + 1);
}
