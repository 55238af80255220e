/*
 * Unit tests of kizuna-bench's --connect lists (bench/addrs.c): what a
 * list may hold and the clear refusal of anything else, and the rotation
 * that gives bot i a token starting at address i mod N and falling back
 * to every other one in order, so that bots spread evenly over the edges
 * of a world.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "addrs.h"

static void parse_ok(const char *text, uint32_t want_n, kz_address *out)
{
    uint32_t n = 99;
    char why[160] = "";
    cr_assert_eq(kzb_addrs_parse(text, out, KZ_TOKEN_MAX_ADDRESSES, &n, why, sizeof why), 0,
                 "%s: %s", text, why);
    cr_assert_eq(n, want_n, "%s: %u addresses", text, n);
}

Test(bench_addrs, lists_read_in_order)
{
    kz_address a[KZ_TOKEN_MAX_ADDRESSES];
    parse_ok("127.0.0.1:40000", 1, a);
    cr_assert_eq(a[0].family, KZ_ADDR_IPV4);
    cr_assert_eq(a[0].port, 40000);
    cr_assert(a[0].ip[0] == 127 && a[0].ip[1] == 0 && a[0].ip[2] == 0 && a[0].ip[3] == 1);
    parse_ok("10.0.0.6:40000,10.0.0.7:40001,10.0.0.6:40002", 3, a);
    cr_assert(a[0].ip[3] == 6 && a[0].port == 40000);
    cr_assert(a[1].ip[3] == 7 && a[1].port == 40001);
    cr_assert(a[2].ip[3] == 6 && a[2].port == 40002);
    parse_ok("1.1.1.1:1,1.1.1.1:2,1.1.1.1:3,1.1.1.1:4,1.1.1.1:5,1.1.1.1:6,1.1.1.1:7,1.1.1.1:8",
             KZ_TOKEN_MAX_ADDRESSES, a);
    cr_assert_eq(a[7].port, 8);
}

Test(bench_addrs, bad_lists_say_why)
{
    static const struct {
        const char *text, *why;
    } bad[] = {
        {"", "empty address"},
        {",127.0.0.1:1", "empty address"},
        {"127.0.0.1:1,", "empty address"},
        {"127.0.0.1:1,,127.0.0.1:2", "empty address"},
        {"127.0.0.1", "not IPV4:PORT"},
        {"127.0.0.1:0", "not IPV4:PORT"},
        {"127.0.0.1:65536", "not IPV4:PORT"},
        {"127.0.0.1:4x", "not IPV4:PORT"},
        {"[::1]:40000", "not IPV4:PORT"},
        {"127.0.0.1:1 ,127.0.0.1:2", "not IPV4:PORT"},
        {"127.0.0.1:5,127.0.0.1:5", "listed twice"},
        {"1.1.1.1:1,1.1.1.1:2,1.1.1.1:3,1.1.1.1:4,1.1.1.1:5,1.1.1.1:6,1.1.1.1:7,1.1.1.1:8,"
         "1.1.1.1:9", "more than 8 addresses"},
        {"127.0.0.1:1,1234567890123456789012345678901234567890123456789012345678901234567890:1",
         "too long"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kz_address a[KZ_TOKEN_MAX_ADDRESSES];
        uint32_t n;
        char why[160] = "";
        cr_assert_eq(kzb_addrs_parse(bad[i].text, a, KZ_TOKEN_MAX_ADDRESSES, &n, why, sizeof why),
                     -1, "'%s' was taken", bad[i].text);
        cr_assert(strstr(why, bad[i].why) != NULL, "'%s': %s", bad[i].text, why);
    }
}

/* Every bot's token holds every address once, bot i's starts at i mod N
 * and goes on in the list's order, and over N * k bots each address is
 * first exactly k times. */
Test(bench_addrs, rotation_spreads_bots_evenly)
{
    kz_address in[KZ_TOKEN_MAX_ADDRESSES];
    for (uint32_t n = 1; n <= KZ_TOKEN_MAX_ADDRESSES; n++) {
        for (uint32_t k = 0; k < n; k++) {
            memset(&in[k], 0, sizeof in[k]);
            in[k].family = KZ_ADDR_IPV4;
            in[k].ip[0] = 127;
            in[k].ip[3] = 1;
            in[k].port = (uint16_t)(40000 + k);
        }
        uint32_t first[KZ_TOKEN_MAX_ADDRESSES] = {0};
        for (uint32_t bot = 0; bot < 5 * n; bot++) {
            kz_address out[KZ_TOKEN_MAX_ADDRESSES];
            kzb_addrs_rotate(in, n, bot, out);
            for (uint32_t k = 0; k < n; k++)
                cr_assert_eq(out[k].port, 40000 + (bot + k) % n, "n %u bot %u entry %u", n, bot, k);
            first[out[0].port - 40000]++;
        }
        for (uint32_t k = 0; k < n; k++)
            cr_assert_eq(first[k], 5, "n %u: address %u first for %u bots", n, k, first[k]);
    }
}
