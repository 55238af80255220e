/*
 * `kizuna-server run`: the dedicated server. A placeholder until the
 * server loop lands; main.c dispatches here through cmd_run (commands.h),
 * so replacing this file is all it takes.
 */
#include <stdio.h>
#include <string.h>

#include "commands.h"

int cmd_run(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        puts("usage: kizuna-server run (not available yet)");
        return KZS_EXIT_OK;
    }
    kzs_error("run: not available yet");
    return KZS_EXIT_FAIL;
}
