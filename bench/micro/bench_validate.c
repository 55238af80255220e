/*
 * Cheat validation micro-benchmark: the server's cost per received
 * command. 2,000 clients (each with its own kz_validate_client, so the
 * per-client state comes from cache the way it does on a busy server)
 * send one command per 30 Hz tick; every tick each command is validated
 * at its arrival time. Two streams:
 *   honest    VR users walking (speed and acceleration within the limits,
 *             head and hands plausible, real rotation codes): every check
 *             runs, nothing is fixed
 *   violating a speed hack at 100 m/s with a 3 m arm and an impossible
 *             rotation code: speed, acceleration, reach and rotation are
 *             all fixed (square roots and divisions)
 * Reported: ns per kz_validate_command, and per command plus
 * kz_validate_consequence (the full per-input path). Commands are copied
 * into the work buffer outside the timed loop (validation fixes them in
 * place).
 *
 *   kz-bench-validate            (KZ_BENCH_RUNS=n to change the run count)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kizuna/quant.h>

#include "kzb_util.h"
#include "sim/validate.h"

#define N_CLIENTS 2000u
#define TICKS 60u
#define HZ 30u
#define TICK_NS (1000000000ull / HZ)

static uint64_t rng = 0x9E3779B97F4A7C15u;

static uint64_t rng_next(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * UINT64_C(2685821657736338717);
}

static double rng_unit(void)
{
    return (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0);
}

static void fail(const char *what)
{
    fprintf(stderr, "bench_validate: %s\n", what);
    exit(1);
}

static uint32_t rot_code(double yaw)
{
    const float q[4] = {0, (float)sin(yaw / 2), 0, (float)cos(yaw / 2)};
    uint64_t code;
    if (kz_quat_encode(q, KZ_SNAP_ROT_K, &code) != KZ_OK)
        fail("kz_quat_encode failed");
    return (uint32_t)code;
}

/* One client's command of tick t. Honest walkers turn slowly. */
static void make_cmd(kz_wire_command *c, uint32_t client, uint32_t t, int violating)
{
    memset(c, 0, sizeof *c);
    c->tick = 1000u + t;
    c->flags = KZ_AVATAR_VR;
    double heading = client * 0.37 + t * 0.01;
    /* Walkers start from rest and reach 1.5 m/s in three ticks. */
    double v = violating ? 100.0 : 1.5 * (t < 3 ? (t + 1) / 3.0 : 1.0);
    c->move[0] = (int16_t)lrint(cos(heading) * v * KZ_SNAP_VEL_UNITS);
    c->move[2] = (int16_t)lrint(sin(heading) * v * KZ_SNAP_VEL_UNITS);
    c->yaw = (uint16_t)(heading / 6.283185307 * 65536.0);
    c->rel[KZ_POSE_HEAD][1] = (int16_t)(1600 + 40 * rng_unit());
    for (unsigned h = KZ_POSE_LEFT_HAND; h <= KZ_POSE_RIGHT_HAND; h++) {
        c->rel[h][0] = (int16_t)((h == KZ_POSE_LEFT_HAND ? -300 : 300) + 50 * rng_unit());
        c->rel[h][1] = (int16_t)(1000 + 50 * rng_unit());
        c->rel[h][2] = (int16_t)(300 + 50 * rng_unit());
    }
    for (unsigned p = 0; p < KZ_POSE_COUNT; p++)
        c->rot[p] = rot_code(heading + p * 0.1);
    if (violating) {
        c->rel[KZ_POSE_RIGHT_HAND][0] = 2048;       /* 3 m from the head */
        c->rel[KZ_POSE_RIGHT_HAND][1] = -1024;
        c->rot[KZ_POSE_LEFT_HAND] = 0xffffffffu;    /* no quaternion encodes to this */
    }
}

typedef struct figures {
    double cmd_ns[64], full_ns[64];
    uint64_t flagged;
} figures;

static void run(const char *name, const kz_validate_config *cfg, int violating, size_t runs)
{
    static kz_wire_command src[TICKS][N_CLIENTS], work[N_CLIENTS];
    static kz_validate_client cl[N_CLIENTS];
    static figures f;
    for (uint32_t t = 0; t < TICKS; t++)
        for (uint32_t i = 0; i < N_CLIENTS; i++)
            make_cmd(&src[t][i], i, t, violating);
    f.flagged = 0;
    for (int full = 0; full <= 1; full++) {
        for (size_t r = 0; r < runs; r++) {
            for (uint32_t i = 0; i < N_CLIENTS; i++)
                kz_validate_client_init(&cl[i]);
            uint64_t ns = 0, sink = 0;
            for (uint32_t t = 0; t < TICKS; t++) {
                memcpy(work, src[t], sizeof work);
                /* Arrival times spread over the tick, per client. */
                kz_time_ns base = 5000000000ull + (kz_time_ns)t * TICK_NS;
                uint64_t t0 = kzb_now_ns();
                for (uint32_t i = 0; i < N_CLIENTS; i++) {
                    kz_time_ns now = base + i * 1000u;
                    uint32_t v = kz_validate_command(cfg, &cl[i], &work[i], now, NULL);
                    if (full)
                        v = kz_validate_consequence(cfg, &cl[i], v, now, NULL);
                    sink += v;
                }
                ns += kzb_now_ns() - t0;
            }
            (full ? f.full_ns : f.cmd_ns)[r] = (double)ns / ((double)N_CLIENTS * TICKS);
            if (!full)
                f.flagged += sink;
            kzb_sink(sink + work[N_CLIENTS - 1].move[0]);
        }
    }
    if ((f.flagged != 0) == !violating)
        fail(violating ? "violating stream not flagged" : "honest stream flagged");
    char label[96];
    snprintf(label, sizeof label, "%s: kz_validate_command", name);
    kzb_report(label, "ns/cmd", f.cmd_ns, runs);
    snprintf(label, sizeof label, "%s: command + consequence", name);
    kzb_report(label, "ns/cmd", f.full_ns, runs);
}

int main(int argc, char **argv)
{
    kzb_begin(argc, argv, "kz_validate (2,000 clients, one command each per 30 Hz tick)");
    size_t runs = kzb_runs();
    kz_validate_config cfg;
    kz_validate_config_default(&cfg);
    run("honest", &cfg, 0, runs);
    run("violating", &cfg, 1, runs);
    printf("state: %zu bytes per client\n", sizeof(kz_validate_client));
    kzb_end();
    return 0;
}
