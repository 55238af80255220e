/*
 * kizuna-bench: --connect address lists and their rotation per bot (see
 * addrs.h).
 */
#include "addrs.h"

#include <stdio.h>
#include <string.h>

static int same_address(const kz_address *a, const kz_address *b)
{
    return a->family == b->family && a->port == b->port && memcmp(a->ip, b->ip, sizeof a->ip) == 0;
}

/* One entry text[0..len) of the list into *out; -1 with why in err. */
static int parse_one(const char *text, size_t len, kz_address *out, char *err, size_t err_cap)
{
    char one[KZB_ADDR_TEXT_MAX + 1];
    if (len == 0) {
        snprintf(err, err_cap, "an empty address in the list (two commas, or one at an end)");
        return -1;
    }
    if (len > KZB_ADDR_TEXT_MAX) {
        snprintf(err, err_cap, "'%.*s...' is too long for IPV4:PORT", 24, text);
        return -1;
    }
    memcpy(one, text, len);
    one[len] = '\0';
    memset(out, 0, sizeof *out);
    if (kz_address_parse(one, out) != KZ_OK || out->family != KZ_ADDR_IPV4 || out->port == 0) {
        snprintf(err, err_cap, "'%s' is not IPV4:PORT with a port 1..65535", one);
        return -1;
    }
    return 0;
}

int kzb_addrs_parse(const char *text, kz_address *out, uint32_t cap, uint32_t *n, char *err,
                    size_t err_cap)
{
    *n = 0;
    const char *p = text;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (*n == cap) {
            snprintf(err, err_cap, "more than %u addresses (a connect token holds at most %u)",
                     cap, cap);
            return -1;
        }
        if (parse_one(p, len, &out[*n], err, err_cap) != 0)
            return -1;
        for (uint32_t k = 0; k < *n; k++)
            if (same_address(&out[k], &out[*n])) {
                snprintf(err, err_cap, "'%.*s' is listed twice", (int)len, p);
                return -1;
            }
        (*n)++;
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

void kzb_addrs_rotate(const kz_address *in, uint32_t n, uint32_t bot, kz_address *out)
{
    for (uint32_t k = 0; k < n; k++)
        out[k] = in[(bot + k) % n];
}
