/*
 * The simulation thread allocates nothing in steady state: a server whose
 * allocator counts every call runs 300 ticks with 60 moving, chatting and
 * talking clients after warm-up, and the count does not move. (ENet's own
 * packet allocations go through ENet's allocator, not Kizuna's; they are
 * outside this claim and documented in docs/DEVELOPMENT.md.)
 */
#include <criterion/criterion.h>
#include <string.h>

#include "support/world.h"

#define CLIENTS 60

Test(world_alloc, steady_state_ticks_allocate_nothing, .timeout = 300)
{
    kz_counting_alloc counting;
    kz_counting_alloc_init(&counting, NULL);
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    sc.spawn_radius = 20.0f;
    kzt_world w;
    memset(&w, 0, sizeof w);
    /* The harness fills sc.net; the allocator is applied after. */
    sc.net.alloc = kz_counting_alloc_allocator(&counting);
    cr_assert_eq(kzt_world_start(&w, CLIENTS, NULL, &sc, 3), KZ_OK);
    cr_assert_gt(kz_counting_alloc_allocs(&counting), 0, "the server allocates through the hook");
    cr_assert_eq(kzt_world_connect_all(&w, KZ_NS_PER_S / 120, 20 * KZ_NS_PER_S), CLIENTS);

    uint32_t t0 = kz_server_tick(w.srv);
    uint64_t before = 0;
    uint8_t frame[160];
    memset(frame, 0x55, sizeof frame);
    while (kz_server_tick(w.srv) < t0 + 400) {
        kzt_world_step(&w, KZ_NS_PER_S / 120);
        uint32_t tick = kz_server_tick(w.srv);
        if (tick == t0 + 100)
            before = kz_counting_alloc_allocs(&counting);
        for (uint32_t i = 0; i < CLIENTS; i++) {
            kzt_world_drive(&w, i, tick - t0 + i);
            if ((tick + i) % 45 == 0)
                (void)kz_client_chat(w.clients[i], "steady", 6);
            if ((tick + i) % 3 == 0)
                (void)kz_client_voice(w.clients[i], frame, sizeof frame);
        }
    }
    uint64_t after = kz_counting_alloc_allocs(&counting);
    const kz_counters *k = kz_server_counters(w.srv);
    cr_assert_gt(kz_counters_get(k, KZ_WORLD_C_CHAT), 0, "chat flowed");
    cr_assert_gt(kz_counters_get(k, KZ_WORLD_C_VOICE), 0, "voice flowed");
    cr_assert_gt(kz_counters_get(k, KZ_WORLD_C_SNAPSHOTS), 300 * CLIENTS / 2, "snapshots flowed");
    cr_assert_eq(after, before, "300 steady ticks allocated %llu times",
                 (unsigned long long)(after - before));
    kzt_world_stop(&w);
}
