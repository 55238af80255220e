/*
 * Differential check of the replicators: the same scripted world, run
 * once with every replicator on the caller's thread in host order (the
 * single-threaded server) and once with two replicator threads fed
 * through the hand-over the server uses (sim/frame.h), while the world
 * thread writes the next tick. Every client's snapshots must be
 * bit-identical between the runs. Under ThreadSanitizer it is also the
 * check that nothing a replicator reads is written while it reads.
 *
 * The world: `n` avatars walking in a 60 m square with moving heads, a
 * private zone some of them stand in, a pair of clients blocking each
 * other, an observer, a slot whose session changes half-way, another
 * whose new session moves to the other host (left out of one frame, as
 * the server does), an application visibility hook, and a byte budget
 * small enough that most snapshots leave changes out, so the priority
 * order, references to older states and states that left the ring are
 * exercised. Clients acknowledge 1-4 ticks late; some claim views never
 * sent.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kizuna/entity.h>

#include "sim/replicator.h"
#include "stress.h"

#define KZT_N 96u
#define KZT_HOSTS 2u
#define KZT_VISIBLE 24u
#define KZT_HISTORY 8u

typedef struct {
    uint64_t hash[KZT_N];   /* per slot: FNV-1a over every snapshot sent */
    uint32_t count[KZT_N];
} kzt_capture;

typedef struct {
    kz__repl_world w;
    kz_snap_state *ring;
    void *views;
    size_t views_size;
    kz__frame frames[KZ__FRAMES];
    kz__stage stage;
    kz__replicator r[KZT_HOSTS];
    kz_counters counters;
    kz_grid grid;
    int32_t pos[KZT_N][3];
    int16_t vel[KZT_N][3];
    kzt_capture cap;
    _Atomic uint32_t taken[KZT_HOSTS];  /* newest tick each replicator started */
    uint32_t last_host[KZT_N], last_tick[KZT_N];
    atomic_int stop;
} kzt_rworld;

static int capture(void *ctx, uint32_t host, uint32_t slot, uint32_t serial, const void *data,
                   uint32_t len)
{
    (void)host;
    kzt_capture *c = ctx;
    uint64_t h = c->hash[slot] ? c->hash[slot] : 1469598103934665603ull;
    const uint8_t *p = data;
    for (uint32_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    h = (h ^ serial) * 1099511628211ull;
    c->hash[slot] = h;
    c->count[slot]++;
    return 0;
}

/* The application's hook: a pure function of the two ids, so it may run
 * on any thread. Hides pairs whose indices sum to a multiple of 13. */
static int hook(void *ctx, uint32_t viewer, uint32_t target)
{
    (void)ctx;
    return ((viewer & KZ_ENTITY_MAX) + (target & KZ_ENTITY_MAX)) % 13u != 0;
}

static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int rworld_init(kzt_rworld *x)
{
    memset(x, 0, sizeof *x);
    kz__repl_world *w = &x->w;
    w->cap = KZT_N;
    w->max_clients = KZT_N;
    w->n_slots = KZT_VISIBLE;
    w->history = KZT_HISTORY;
    /* The fewest rows the hand-over allows (the server keeps more), so
     * states left out for the budget do leave the ring. */
    w->rows = KZT_HISTORY + 4u;
    w->tick_hz = 30;
    w->bytes_per_second = 6000;  /* ~200 bytes a tick: most snapshots defer */
    w->interest_period = 3;
    w->interest = (kz_interest_config){.radius = 20.0f, .hysteresis = 3.0f,
                                       .max_visible = KZT_VISIBLE};
    if (kz_interest_config_resolve(&w->interest) ||
        kz_snap_codec_init(&w->codec, 30, KZT_VISIBLE, 256.0f))
        return -1;
    x->ring = calloc((size_t)w->rows * w->cap, sizeof *x->ring);
    w->ring = x->ring;
    w->views = calloc(w->max_clients, sizeof *w->views);
    x->views_size = kz__view_footprint(w) * w->max_clients;
    x->views = calloc(1, x->views_size);
    if (!x->ring || !w->views || !x->views)
        return -1;
    kz__views_place(w, x->views);
    w->send = capture;
    w->send_ctx = &x->cap;
    w->visible = hook;
    kz_grid_config gc;
    kz_grid_config_default(&gc);
    gc.max_entities = KZT_N;
    gc.bound = 256.0f;
    gc.cell_size = 23.0f;
    if (kz_grid_init(&x->grid, &gc, NULL))
        return -1;
    for (uint32_t k = 0; k < KZ__FRAMES; k++) {
        kz__frame *f = &x->frames[k];
        f->ids = calloc(KZT_N, sizeof *f->ids);
        f->rule = calloc(KZT_N, 1);
        f->zone = calloc(KZT_N, 1);
        f->owner = calloc(KZT_N, sizeof *f->owner);
        f->importance = calloc(KZT_N, sizeof *f->importance);
        f->badge = calloc(KZT_N, sizeof *f->badge);
        f->badge_gen = calloc(KZT_N, sizeof *f->badge_gen);
        f->clients = calloc(KZT_N, sizeof *f->clients);
        f->blocked = calloc(KZT_N, sizeof *f->blocked);
        if (!f->rule || !f->zone || !f->owner || !f->importance || !f->badge ||
            !f->badge_gen || !f->ids || !f->clients || !f->blocked || kz_grid_init(&f->grid, &gc, NULL))
            return -1;
    }
    if (kz_counters_init(&x->counters, KZ_WORLD_C_COUNT, KZT_HOSTS, NULL, NULL))
        return -1;
    x->stage.n = KZT_HOSTS;
    for (uint32_t h = 0; h < KZT_HOSTS; h++)
        if (kz__replicator_init(&x->r[h], w, h, kz_counters_block(&x->counters, h), NULL))
            return -1;
    uint64_t seed = 42;
    for (uint32_t i = 0; i < KZT_N; i++) {
        x->pos[i][0] = (int32_t)(rnd(&seed) % (60u * KZ_SNAP_POS_UNITS)) - 30 * KZ_SNAP_POS_UNITS;
        x->pos[i][2] = (int32_t)(rnd(&seed) % (60u * KZ_SNAP_POS_UNITS)) - 30 * KZ_SNAP_POS_UNITS;
        x->vel[i][0] = (int16_t)((int)(rnd(&seed) % 769u) - 384);
        x->vel[i][2] = (int16_t)((int)(rnd(&seed) % 769u) - 384);
        if (kz_grid_insert(&x->grid, i, (float)x->pos[i][0] / KZ_SNAP_POS_UNITS,
                           (float)x->pos[i][2] / KZ_SNAP_POS_UNITS))
            return -1;
    }
    return 0;
}

static void rworld_fini(kzt_rworld *x)
{
    for (uint32_t h = 0; h < KZT_HOSTS; h++)
        kz__replicator_fini(&x->r[h]);
    for (uint32_t k = 0; k < KZ__FRAMES; k++) {
        kz__frame *f = &x->frames[k];
        free(f->ids), free(f->rule), free(f->zone), free(f->owner), free(f->importance), free(f->badge);
        free(f->badge_gen), free(f->clients), free(f->blocked);
        if (f->grid.block)
            kz_grid_fini(&f->grid);
    }
    if (x->grid.block)
        kz_grid_fini(&x->grid);
    if (x->counters.cells)
        kz_counters_fini(&x->counters);
    free(x->ring), free(x->w.views), free(x->views);
}

/* Moves everyone one tick (bouncing off the square's edges). */
static void step_world(kzt_rworld *x)
{
    const int32_t lim = 30 * KZ_SNAP_POS_UNITS;
    for (uint32_t i = 0; i < KZT_N; i++) {
        for (int k = 0; k < 3; k += 2) {
            x->pos[i][k] += x->vel[i][k] * KZ_SNAP_POS_UNITS / KZ_SNAP_VEL_UNITS / 30;
            if (x->pos[i][k] > lim || x->pos[i][k] < -lim)
                x->vel[i][k] = (int16_t)-x->vel[i][k];
        }
        if (kz_grid_move(&x->grid, i, (float)x->pos[i][0] / KZ_SNAP_POS_UNITS,
                         (float)x->pos[i][2] / KZ_SNAP_POS_UNITS) != KZ_OK)
            x->pos[i][1] = 0;  /* inside the bound by construction: never */
    }
}

/* The world image of tick t, as the server writes it (sim/server_tick.c). */
static void write_frame(kzt_rworld *x, uint32_t t)
{
    kz__frame *f = &x->frames[t % KZ__FRAMES];
    kz_snap_state *row = x->ring + (size_t)(t % x->w.rows) * KZT_N;
    for (uint32_t i = 0; i < KZT_N; i++) {
        kz_snap_state *st = &row[i];
        memset(st, 0, sizeof *st);
        st->entity = (1u << KZ_ENTITY_INDEX_BITS) | i;
        st->kind = KZ_KIND_AVATAR;
        memcpy(st->pos, x->pos[i], sizeof st->pos);
        memcpy(st->vel, x->vel[i], sizeof st->vel);
        st->yaw = (uint16_t)(t * 97u + i * 1000u);
        for (uint32_t p = 0; p < KZ_POSE_COUNT; p++) {
            st->rel[p][1] = (int16_t)(1500u + ((t + i * 7u + p * 3u) % 40u) * (p == 1 ? 2u : 1u));
            st->rot[p] = KZ_SNAP_ROT_REST;
        }
        st->rel[0][1] = 0;
        f->ids[i] = st->entity;
        f->owner[i] = i + 1u;
        f->importance[i] = 1.0f;
        /* Avatars 0-7 stand in private zone 1 during ticks 60-180. */
        f->zone[i] = i < 8 && t >= 60 && t < 180 ? 1 : 0;
        f->rule[i] = (uint8_t)((f->zone[i] ? KZ__RULE_ZONED : 0) |
                               (i == 9 ? KZ__RULE_OBSERVER : 0) |
                               (i == 5 || i == 6 ? KZ__RULE_BLOCKS : 0));
        if (f->badge_gen[i] != 1) {
            memset(&f->badge[i], 0, sizeof f->badge[i]);
            snprintf(f->badge[i].name, sizeof f->badge[i].name, "walker-%u", i);
            f->badge_gen[i] = 1;
        }
        kz__frame_client *fc = &f->clients[i];
        fc->replicate = 1;
        fc->client_id = 5000u + i;
        fc->serial = 100u + i + (i == 3 && t >= 150 ? 1000u : 0);  /* a new session */
        fc->avatar = i;
        fc->input_tick = t;
        fc->corrected = (t + i) % 11u == 0;
        fc->host = (uint8_t)(i % KZT_HOSTS);
        if (i == 7 && t >= 200) { /* its next session is served by the other host */
            fc->host = 0;
            fc->serial = 100u + i + 2000u;
        }
        fc->replicate = kz__frame_host_settled(x->last_host[i], x->last_tick[i], fc->host, t);
        if (fc->replicate) {
            x->last_host[i] = fc->host;
            x->last_tick[i] = t;
        }
        uint32_t late = 1u + i % 4u;
        fc->acked = t > late ? t - late : 0;
        if (i % 7u == 0 && t % 5u == 0)
            fc->acked = t;  /* a claim of a view not sent yet: ignored */
        fc->n_blocked = i == 5 ? 1 : 0;
        f->blocked[i][0] = i == 5 ? 5006u : 0;
    }
    f->tick = t;
    f->image = row;
    (void)kz__grid_copy(&f->grid, &x->grid);
}

static void run_sequential(kzt_rworld *x, uint32_t ticks)
{
    for (uint32_t t = 1; t <= ticks; t++) {
        step_world(x);
        write_frame(x, t);
        kz__stage_publish(&x->stage, t);
        for (uint32_t h = 0; h < KZT_HOSTS; h++) {
            kz__replicator_run(&x->r[h], &x->frames[t % KZ__FRAMES]);
            kz__stage_done(&x->stage, h, t, 0);
        }
    }
}

typedef struct {
    kzt_rworld *x;
    uint32_t host;
    uint64_t skipped;
} kzt_worker;

static void *replicator_thread(void *arg)
{
    kzt_worker *k = arg;
    kzt_rworld *x = k->x;
    while (!atomic_load_explicit(&x->stop, memory_order_acquire)) {
        uint32_t skipped, t = kz__stage_take(&x->stage, k->host, &skipped);
        if (t == 0) {
            sched_yield();
            continue;
        }
        atomic_store_explicit(&x->taken[k->host], t, memory_order_release);
        k->skipped += skipped;
        kz__replicator_run(&x->r[k->host], &x->frames[t % KZ__FRAMES]);
        kz__stage_done(&x->stage, k->host, t, 0);
    }
    return NULL;
}

static void wait_until(kzt_rworld *x, uint32_t t, int started)
{
    for (uint32_t h = 0; h < KZT_HOSTS; h++)
        for (;;) {
            uint32_t v = started ? atomic_load_explicit(&x->taken[h], memory_order_acquire)
                                 : atomic_load_explicit(&x->stage.done[h], memory_order_acquire);
            if (v >= t)
                break;
            sched_yield();
        }
}

/* The world writes tick t while the replicators may still build t - 1,
 * with the server's rule (kz__stage_writable); it publishes t only once
 * both have started t - 1, so neither skips a tick and the output can be
 * compared with the sequential run. */
static int run_threaded(kzt_rworld *x, uint32_t ticks, uint64_t *skipped)
{
    kzt_worker k[KZT_HOSTS];
    pthread_t th[KZT_HOSTS];
    for (uint32_t h = 0; h < KZT_HOSTS; h++) {
        k[h] = (kzt_worker){x, h, 0};
        if (pthread_create(&th[h], NULL, replicator_thread, &k[h]) != 0)
            return -1;
    }
    for (uint32_t t = 1; t <= ticks; t++) {
        step_world(x);
        while (!kz__stage_writable(&x->stage, t))
            sched_yield();
        write_frame(x, t);
        if (t > 1)
            wait_until(x, t - 1, 1);
        kz__stage_publish(&x->stage, t);
    }
    wait_until(x, ticks, 0);
    atomic_store_explicit(&x->stop, 1, memory_order_release);
    *skipped = 0;
    for (uint32_t h = 0; h < KZT_HOSTS; h++) {
        pthread_join(th[h], NULL);
        *skipped += k[h].skipped;
    }
    return 0;
}

static void fail(kzt_result *r, const char *what)
{
    if (r->violations++ == 0)
        snprintf(r->first, sizeof r->first, "%s", what);
}

kzt_result kzt_replicator_differential(uint32_t ticks)
{
    kzt_result r = {0};
    kzt_rworld *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    if (!a || !b || rworld_init(a) || rworld_init(b)) {
        fail(&r, "setup failed");
        goto out;
    }
    run_sequential(a, ticks);
    uint64_t skipped = 0;
    if (run_threaded(b, ticks, &skipped)) {
        fail(&r, "cannot start threads");
        goto out;
    }
    if (skipped)
        fail(&r, "a replicator skipped a tick");
    uint64_t deferred = kz_counters_get(&a->counters, KZ_WORLD_C_DEFERRED);
    uint64_t expired = kz_counters_get(&a->counters, KZ_WORLD_C_BASE_EXPIRED);
    uint64_t full = kz_counters_get(&a->counters, KZ_WORLD_C_SNAPSHOT_FULL);
    for (uint32_t i = 0; i < KZT_N; i++) {
        char what[160];
        uint32_t expect = i == 7 ? ticks - 1u : ticks;  /* one frame's pause on the move */
        if (a->cap.count[i] != expect) {
            snprintf(what, sizeof what, "slot %u: %u snapshots in %u ticks", i, a->cap.count[i],
                     ticks);
            fail(&r, what);
        }
        if (a->cap.count[i] != b->cap.count[i] || a->cap.hash[i] != b->cap.hash[i]) {
            snprintf(what, sizeof what, "slot %u: threaded output differs (%u vs %u snapshots)",
                     i, b->cap.count[i], a->cap.count[i]);
            fail(&r, what);
        }
        r.delivered += b->cap.count[i];
    }
    /* The script must reach the paths it is for. */
    if (deferred == 0)
        fail(&r, "no update was ever deferred: the budget path is not exercised");
    if (full <= KZT_N)
        fail(&r, "no full state after the first: the baseline rules are not exercised");
    if (expired == 0)
        fail(&r, "no baseline state ever left the ring: that path is not exercised");
out:
    if (a)
        rworld_fini(a);
    if (b)
        rworld_fini(b);
    free(a);
    free(b);
    return r;
}
