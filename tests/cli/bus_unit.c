/*
 * Unit tests of the per-tick bus's subject parsing (server/bus.c): the
 * authority subscribes to kz.W.edge.*.up, so anyone who may publish there
 * chooses the token the wildcard matches. Only 1..64 in decimal without
 * leading zeros names an edge; every other token, another world, a
 * prefix of the world or more tokens give 0 (a counted drop). Seeded
 * garbage never yields an edge number the strict form would not.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"

Test(bus_subject, every_edge_number_reads_back)
{
    char subject[64];
    for (unsigned e = 1; e <= 64; e++) {
        snprintf(subject, sizeof subject, "kz.plaza.edge.%u.up", e);
        cr_assert_eq(kzs_bus_subject_edge("plaza", subject), e, "%s", subject);
    }
}

Test(bus_subject, anything_else_is_no_edge)
{
    static const char *const bad[] = {
        "kz.plaza.edge.0.up",     "kz.plaza.edge.00.up",   "kz.plaza.edge.01.up",
        "kz.plaza.edge.007.up",   "kz.plaza.edge.65.up",   "kz.plaza.edge.99.up",
        "kz.plaza.edge.100.up",   "kz.plaza.edge.4294967297.up", "kz.plaza.edge..up",
        "kz.plaza.edge.-1.up",    "kz.plaza.edge.+1.up",   "kz.plaza.edge. 1.up",
        "kz.plaza.edge.1 .up",    "kz.plaza.edge.1a.up",   "kz.plaza.edge.a.up",
        "kz.plaza.edge.0x1.up",   "kz.plaza.edge.1.down",  "kz.plaza.edge.1.up.x",
        "kz.plaza.edge.1.2.up",   "kz.plaza.edge.1",       "kz.plaza.edge.1.",
        "kz.plaza.edge.1.upp",    "kz.plaza.tick",         "kz.plaza2.edge.1.up",
        "kz.plaz.edge.1.up",      "kz.plazaedge.1.up",     "kz.plaza.edges.1.up",
        "kz.Plaza.edge.1.up",     "KZ.plaza.edge.1.up",    "x.kz.plaza.edge.1.up",
        "kz..edge.1.up",          "kz.plaza.edge.*.up",    "kz.plaza.edge.>.up",
        "",                       "kz.",                   ".up",
        "kz.plaza.edge.up",       "kz.plaza.edge.1up",     "kz.plaza.edge.١.up",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(kzs_bus_subject_edge("plaza", bad[i]), 0u, "'%s' named an edge", bad[i]);
}

Test(bus_subject, a_world_that_is_a_prefix_of_another)
{
    cr_assert_eq(kzs_bus_subject_edge("w", "kz.w1.edge.3.up"), 0u);
    cr_assert_eq(kzs_bus_subject_edge("w1", "kz.w.edge.3.up"), 0u);
    cr_assert_eq(kzs_bus_subject_edge("w1", "kz.w1.edge.3.up"), 3u);
}

/* Garbage built from the subject's own characters: whatever reads as an
 * edge is exactly the strict form. */
Test(bus_subject, seeded_garbage)
{
    static const char alphabet[] = "kz.plaedgup0123456789.*> -x";
    srand(20261206);
    char s[48], middle[32], strict[48];
    for (int round = 0; round < 200000; round++) {
        size_t n = (size_t)(rand() % 30);
        for (size_t i = 0; i < n; i++)
            middle[i] = alphabet[rand() % (int)(sizeof alphabet - 1)];
        middle[n] = '\0';
        if (round % 4 == 0) /* keep the frame, vary the middle */
            snprintf(s, sizeof s, "kz.plaza.edge.%.*s.up", (int)(n % 4), middle);
        else
            snprintf(s, sizeof s, "%s", middle);
        uint32_t e = kzs_bus_subject_edge("plaza", s);
        if (e == 0)
            continue;
        cr_assert(e >= 1 && e <= 64, "'%s' gave %u", s, e);
        snprintf(strict, sizeof strict, "kz.plaza.edge.%u.up", e);
        cr_assert_str_eq(s, strict);
    }
}
