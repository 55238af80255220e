/*
 * Strict number parsing shared by the commands and the configuration
 * (declared in commands.h). In a library of its own file so that the
 * configuration library links without main().
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "commands.h"

int kzs_parse_u64(const char *text, int base, uint64_t max, uint64_t *out)
{
    char *end;
    /* strtoull would accept a sign, leading spaces and an empty string. */
    if (text[0] < '0' || text[0] > '9')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(text, &end, base);
    if (errno != 0 || *end != '\0' || v > max)
        return -1;
    *out = (uint64_t)v;
    return 0;
}
