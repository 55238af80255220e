/*
 * The clock check end to end, through a congested uplink: a real client
 * and a real server (single-threaded, one injected clock) with the
 * impairing relay between them, whose uplink is a rate-limited FIFO shared
 * by every source. A second sender on the client's side (another device
 * on the same home link) uploads in bursts: while it does, the FIFO fills
 * until the client's inputs wait up to `rate_queue` ms; when it stops,
 * the queue drains and the inputs queued behind it reach the server in
 * one burst. An honest client on such a link must not be flagged; a
 * client whose clock runs 10 % fast must be kicked for it. Every clock is
 * injected: the sockets are real, the time is not.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "support/world.h"

#define STEP_NS (KZ_NS_PER_S / 100)       /* 10 ms per world step */
#define CROSS_BYTES 1000u                 /* one datagram of the other device's upload */
#define CROSS_PER_STEP 3u                 /* 300 datagrams/s: 2.4 Mbit/s into a 1 Mbit/s link */
#define LINK_PROFILE "delay=10,rate=1000,rate_queue=" /* + the queue's depth in ms */

static kzt_world w;

/* The other device: a UDP socket that sends to the relay like a client. */
static int cross_open(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(kz_proxy_port(w.proxy))};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&to, sizeof to), 0);
    return fd;
}

static void cross_send(int fd)
{
    static const uint8_t junk[CROSS_BYTES];
    for (unsigned k = 0; k < CROSS_PER_STEP; k++)
        cr_assert_eq(send(fd, junk, sizeof junk, 0), (ssize_t)sizeof junk);
}

static uint64_t counter(uint32_t id)
{
    return kz_counters_get(kz_server_counters(w.srv), id);
}

/* One step of the world, with client 0's clock running `rate` times the
 * server's from `t0` on (1.0: the same clock). */
static void step(double rate, kz_time_ns t0)
{
    w.now += STEP_NS;
    kz_proxy_pump(w.proxy, w.now);
    (void)kz_server_step(w.srv, w.now);
    kz_proxy_pump(w.proxy, w.now);
    kz_time_ns mine = w.now;
    if (rate != 1.0 && w.now > t0)
        mine = t0 + (kz_time_ns)((double)(w.now - t0) * rate);
    (void)kz_client_update(w.clients[0], mine);
}

typedef struct run_out {
    uint64_t clock_violations;
    uint64_t inputs;             /* INPUT messages the server read */
    uint32_t full_phases;        /* upload phases in which the queue hit its depth */
    uint32_t phases;
    uint32_t state;              /* client state at the end */
    uint32_t reason;
    double kicked_after;         /* s after the clock turned fast; -1 = not kicked */
} run_out;

/*
 * Connects one client through a link whose queue holds `queue_ms`, then
 * for `seconds` alternates `hold` s of the other device uploading with
 * `hold` s of quiet, client 0's clock running `rate` times real time.
 */
static run_out run(const char *queue_ms, double hold, double seconds, double rate)
{
    char profile[96];
    snprintf(profile, sizeof profile, "%s%s", LINK_PROFILE, queue_ms);
    w.spare = 1;   /* a relay slot for the other device */
    cr_assert_eq(kzt_world_start(&w, 1, profile, NULL, 3), KZ_OK);
    cr_assert_eq(kzt_world_connect_all(&w, STEP_NS, 20 * KZ_NS_PER_S), 1u);
    int fd = cross_open();
    run_out o = {.kicked_after = -1};
    uint64_t clock0 = counter(KZ_WORLD_C_VIOL_CLOCK), inputs0 = counter(KZ_WORLD_C_INPUTS);
    kz_time_ns t0 = w.now;
    uint32_t steps = (uint32_t)(seconds * 100), per_hold = (uint32_t)(hold * 100);
    kz_impair_stats up, down;
    uint64_t drops_before = 0;
    for (uint32_t s = 0; s < steps; s++) {
        uint32_t phase = s / per_hold;
        if (phase % 2 == 0)
            cross_send(fd);
        if (s % per_hold == per_hold - 1 && phase % 2 == 0) {
            kz_proxy_stats(w.proxy, &up, &down);
            o.full_phases += up.dropped_rate > drops_before;
            drops_before = up.dropped_rate;
            o.phases++;
        }
        step(rate, t0);
        if (kz_client_state(w.clients[0]) != KZ_CLIENT_CONNECTED && o.kicked_after < 0)
            o.kicked_after = (double)(w.now - t0) / 1e9;
    }
    o.clock_violations = counter(KZ_WORLD_C_VIOL_CLOCK) - clock0;
    o.inputs = counter(KZ_WORLD_C_INPUTS) - inputs0;
    o.state = kz_client_state(w.clients[0]);
    o.reason = kz_client_reason(w.clients[0]);
    close(fd);
    return o;
}

static void stop(void)
{
    kzt_world_stop(&w);
}

Test(clock_congested, honest_client_behind_a_queue_swinging_to_half_a_second, .fini = stop)
{
    run_out o = run("500", 3.0, 120, 1.0);
    cr_expect_eq(o.phases, 20u);
    cr_expect_eq(o.full_phases, o.phases, "the queue filled in every upload (%u of %u)",
                 o.full_phases, o.phases);
    cr_expect(o.inputs > 1500, "inputs kept arriving (%llu)", (unsigned long long)o.inputs);
    cr_expect_eq(o.clock_violations, 0u, "%llu clock violations",
                 (unsigned long long)o.clock_violations);
    cr_expect_eq(o.state, KZ_CLIENT_CONNECTED, "still connected (reason %u)", o.reason);
}

Test(clock_congested, honest_client_behind_a_queue_swinging_to_a_second, .fini = stop)
{
    run_out o = run("1000", 3.0, 120, 1.0);
    cr_expect_eq(o.full_phases, o.phases, "the queue filled in every upload (%u of %u)",
                 o.full_phases, o.phases);
    cr_expect(o.inputs > 1500, "inputs kept arriving (%llu)", (unsigned long long)o.inputs);
    cr_expect_eq(o.clock_violations, 0u, "%llu clock violations",
                 (unsigned long long)o.clock_violations);
    cr_expect_eq(o.state, KZ_CLIENT_CONNECTED, "still connected (reason %u)", o.reason);
}

Test(clock_congested, ten_percent_fast_client_on_the_same_link_kicked, .fini = stop)
{
    run_out o = run("500", 3.0, 40, 1.10);
    cr_expect(o.clock_violations > 0);
    cr_expect_eq(o.state, KZ_CLIENT_DISCONNECTED);
    cr_expect_eq(o.reason, KZ_KICK_VIOLATION);
    /* Flagged once 1.05 s ahead (about 10.7 s on a quiet path, up to a
     * congested stretch later here), then struck to a kick. */
    cr_expect(o.kicked_after > 0 && o.kicked_after < 30, "kicked after %.1f s", o.kicked_after);
}
