/*
 * `kizuna-server config check FILE`: validates a configuration file and
 * prints the effective configuration it would run with, every line
 * commented with where its value came from. `config show` prints the
 * effective configuration of the current environment and flags as `run`
 * would build it. `version` prints the program and library versions.
 */
#include <stdio.h>
#include <string.h>

#include <kizuna/common.h>

#include "commands.h"
#include "config.h"
#include "defaults.h"

static const char kzs_config_usage_text[] =
    "usage: kizuna-server config check FILE\n"
    "       kizuna-server config show [--config FILE] [--SETTING VALUE]...\n"
    "\n"
    "check  validates FILE alone (unknown sections and keys, bad values and\n"
    "       incomplete zones are reported with their line numbers) and prints\n"
    "       the effective configuration; exit 0 when valid, 2 when not.\n"
    "show   builds the configuration exactly as `run` would (flags, KIZUNA_*\n"
    "       variables, the file, defaults) and prints it with each value's source.\n";

int cmd_config(int argc, char **argv)
{
    static kzs_config cfg; /* large: paths and zones */
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        if (argc < 2)
            return kzs_usage_error(kzs_config_usage_text, "config: check or show?");
        fputs(kzs_config_usage_text, stdout);
        return KZS_EXIT_OK;
    }
    int errors;
    if (strcmp(argv[1], "check") == 0) {
        if (argc != 3 || argv[2][0] == '-')
            return kzs_usage_error(kzs_config_usage_text, "config check: one FILE is needed");
        errors = kzs_config_load_file(&cfg, argv[2]);
    } else if (strcmp(argv[1], "show") == 0) {
        errors = kzs_config_load(&cfg, argc - 1, argv + 1);
        if (errors < 0)
            return KZS_EXIT_OK;
    } else {
        return kzs_usage_error(kzs_config_usage_text, "config: unknown sub-command '%s'",
                               argv[1]);
    }
    if (errors > 0) {
        kzs_error("config: %d problem%s found", errors, errors == 1 ? "" : "s");
        return KZS_EXIT_USAGE;
    }
    kzs_config_print(&cfg, stdout);
    return fflush(stdout) == 0 ? KZS_EXIT_OK : KZS_EXIT_FAIL;
}

int cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("%s %d.%d.%d (library %s)\n", KZS_PROGRAM, KZ_VERSION_MAJOR, KZ_VERSION_MINOR,
           KZ_VERSION_PATCH, kz_version());
    return KZS_EXIT_OK;
}
