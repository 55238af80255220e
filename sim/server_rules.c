/*
 * The world's rules of presence: who may see whom, who may enter where.
 *
 * Visibility is one symmetric predicate, evaluated for every candidate of
 * every interest run and for every kept view entry on every tick (by the
 * replicators, on the world image: kz__frame_may_see in
 * sim/replicator.c):
 *   1. private zones: two entities see each other only when they are in
 *      the same private zone or both outside every private zone;
 *   2. blocks: if either client blocked the other, neither sees the other
 *      (and so neither gets the other's chat or voice, which follow views);
 *   3. the application's hook, asked both ways.
 * Because every rule is symmetric, no zone, block list or hook can make an
 * invisible listener: whoever may receive an avatar's state may be seen by
 * it (docs/SECURITY.md). The one asymmetry is a moderator's observer mode,
 * and it is announced to everyone the observer sees.
 *
 * Placement: no avatar stands inside a zone that refuses it. Spawn points,
 * summons and portal exits are checked before anyone is put there, and
 * when the zones change (a zone set, replaced or locked) the next tick
 * moves everyone a zone now refuses to the nearest point outside it. The
 * search for that point is rare work (a zone change), so it favours
 * exactness over speed: the exact exits of the refusing zones first, then
 * a widening ring search for worlds where zones overlap.
 */
#include "sim/server_impl.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define KZ__EXIT_MARGIN 0.5f      /* m beyond a zone's edge where an evicted avatar stands */
#define KZ__EXIT_AROUND 8u        /* exits tried around a sphere, evenly spaced */
#define KZ__SEARCH_DIRS 32u       /* directions of each ring of the widening search */
#define KZ__SEARCH_GROWTH 1.25f   /* each ring this much wider than the last */
#define KZ__PI 3.14159265358979f

static int in_zone(const kz_zone_def *z, const int32_t pos[3])
{
    float p[3];
    for (int i = 0; i < 3; i++)
        p[i] = (float)pos[i] / KZ_SNAP_POS_UNITS - z->center[i];
    if (z->shape == KZ_ZONE_SPHERE)
        return p[0] * p[0] + p[1] * p[1] + p[2] * p[2] <= z->half[0] * z->half[0];
    for (int i = 0; i < 3; i++)
        if (p[i] < -z->half[i] || p[i] > z->half[i])
            return 0;
    return 1;
}

void kz__update_private_zones(kz_server *s)
{
    for (uint32_t i = 0; i < s->world.cap; i++) {
        uint8_t inside = 0;
        if (s->world.ents.alive[i])
            for (uint32_t z = 0; z < s->world.n_zones && !inside; z++)
                if (s->world.zones[z].is_private && in_zone(&s->world.zones[z], s->world.pos[i]))
                    inside = (uint8_t)(z + 1u);
        s->world.private_zone[i] = inside;
    }
}

static int has_role(const kz__client *cl, const char *role)
{
    for (uint32_t r = 0; r < cl->n_roles; r++)
        if (strcmp(cl->roles[r], role) == 0)
            return 1;
    return 0;
}

/* The zone's access list against one client. */
static int admitted(const kz_server *s, const kz_zone_def *z, const kz__client *cl)
{
    if (z->locked)
        return has_role(cl, s->cfg.moderator_role) || has_role(cl, s->cfg.admin_role);
    if (cl->verification_level < z->min_verification)
        return 0;
    if (z->humans_only && cl->actor_kind != KZ_ACTOR_HUMAN)
        return 0;
    int listed = 0, match = 0;
    for (uint32_t k = 0; k < KZ_ZONE_MAX_ALLOWED; k++) {
        if (z->roles[k][0]) {
            listed = 1;
            match |= has_role(cl, z->roles[k]);
        }
        if (z->clients[k]) {
            listed = 1;
            match |= z->clients[k] == cl->client_id;
        }
    }
    return !listed || match;
}

int kz__may_enter(const kz_server *s, const kz__client *cl, const int32_t pos[3])
{
    for (uint32_t z = 0; z < s->world.n_zones; z++)
        if (in_zone(&s->world.zones[z], pos) && !admitted(s, &s->world.zones[z], cl))
            return 0;
    return 1;
}

/* ---- placement ---------------------------------------------------------- */

int kz__may_be_at(const kz_server *s, const kz__client *cl, const int32_t pos[3])
{
    for (int i = 0; i < 3; i++)
        if (pos[i] > s->world.codec.pos_max || pos[i] < -s->world.codec.pos_max)
            return 0;
    return kz__may_enter(s, cl, pos);
}

/* The best point found so far by the placement search. */
typedef struct kz__spot {
    const kz_server *s;
    const kz__client *cl;
    const int32_t *from;
    int32_t pos[3];
    double d2;      /* squared distance from `from`, position units */
    int found;
} kz__spot;

/* Considers (x, z) in meters at the height of `from`: kept when the client
 * may stand there and it is nearer than the best so far. */
static void spot_try(kz__spot *sp, float x, float z)
{
    float bound = sp->s->cfg.world_bound;
    if (!(fabsf(x) <= bound && fabsf(z) <= bound))
        return;  /* outside the world (or not a number) */
    int32_t p[3] = {(int32_t)lrintf(x * KZ_SNAP_POS_UNITS), sp->from[1],
                    (int32_t)lrintf(z * KZ_SNAP_POS_UNITS)};
    double dx = (double)p[0] - sp->from[0], dz = (double)p[2] - sp->from[2];
    double d2 = dx * dx + dz * dz;
    if ((sp->found && d2 >= sp->d2) || !kz__may_be_at(sp->s, sp->cl, p))
        return;
    memcpy(sp->pos, p, sizeof p);
    sp->d2 = d2;
    sp->found = 1;
}

/* The exits of one zone from `from`, at the height of `from`: a box's four
 * sides straight out and its four corners; a sphere's circle at that
 * height, radially out first and then around. */
static void zone_exits(kz__spot *sp, const kz_zone_def *z)
{
    float fx = (float)sp->from[0] / KZ_SNAP_POS_UNITS, fz = (float)sp->from[2] / KZ_SNAP_POS_UNITS;
    const float m = KZ__EXIT_MARGIN;
    if (z->shape == KZ_ZONE_BOX) {
        float x0 = z->center[0] - z->half[0] - m, x1 = z->center[0] + z->half[0] + m;
        float z0 = z->center[2] - z->half[2] - m, z1 = z->center[2] + z->half[2] + m;
        spot_try(sp, x0, fz);
        spot_try(sp, x1, fz);
        spot_try(sp, fx, z0);
        spot_try(sp, fx, z1);
        spot_try(sp, x0, z0);
        spot_try(sp, x0, z1);
        spot_try(sp, x1, z0);
        spot_try(sp, x1, z1);
        return;
    }
    float dy = (float)sp->from[1] / KZ_SNAP_POS_UNITS - z->center[1];
    float r2 = z->half[0] * z->half[0] - dy * dy;
    float rc = (r2 > 0 ? sqrtf(r2) : 0.0f) + m;
    float dx = fx - z->center[0], dz = fz - z->center[2];
    float a0 = (dx != 0 || dz != 0) ? atan2f(dz, dx) : 0.0f;
    for (uint32_t k = 0; k < KZ__EXIT_AROUND; k++) {
        float a = a0 + 2.0f * KZ__PI * (float)k / (float)KZ__EXIT_AROUND;
        spot_try(sp, z->center[0] + rc * cosf(a), z->center[2] + rc * sinf(a));
    }
}

/* Rings around `from`, each KZ__SEARCH_GROWTH wider, until one holds an
 * allowed point or the rings cover the whole world. */
static void ring_search(kz__spot *sp)
{
    float fx = (float)sp->from[0] / KZ_SNAP_POS_UNITS, fz = (float)sp->from[2] / KZ_SNAP_POS_UNITS;
    float reach = 3.0f * sp->s->cfg.world_bound;
    for (float r = KZ__EXIT_MARGIN; r <= reach && !sp->found; r *= KZ__SEARCH_GROWTH)
        for (uint32_t k = 0; k < KZ__SEARCH_DIRS; k++) {
            float a = 2.0f * KZ__PI * (float)k / (float)KZ__SEARCH_DIRS;
            spot_try(sp, fx + r * cosf(a), fz + r * sinf(a));
        }
}

int kz__nearest_allowed(const kz_server *s, const kz__client *cl, const int32_t from[3],
                        int32_t out[3])
{
    kz__spot sp = {.s = s, .cl = cl, .from = from};
    if (kz__may_be_at(s, cl, from)) {
        memcpy(out, from, 3 * sizeof *out);
        return 1;
    }
    for (uint32_t z = 0; z < s->world.n_zones; z++)
        if (in_zone(&s->world.zones[z], from) && !admitted(s, &s->world.zones[z], cl))
            zone_exits(&sp, &s->world.zones[z]);
    if (!sp.found)
        ring_search(&sp);
    if (sp.found)
        memcpy(out, sp.pos, sizeof sp.pos);
    return sp.found;
}

/* The name of the first zone at `pos` that refuses the client. */
static const char *refusing_zone(const kz_server *s, const kz__client *cl, const int32_t pos[3])
{
    for (uint32_t z = 0; z < s->world.n_zones; z++)
        if (in_zone(&s->world.zones[z], pos) && !admitted(s, &s->world.zones[z], cl))
            return s->world.zones[z].name;
    return "";
}

int kz__zone_evict(kz_server *s, uint32_t slot, kz__client *cl)
{
    uint32_t i = cl->avatar;
    char text[KZ_NOTICE_MAX_BYTES + 1];
    int32_t to[3];
    if (!kz__nearest_allowed(s, cl, s->world.pos[i], to)) {
        snprintf(text, sizeof text, "no place in this world admits you (zone %s)",
                 refusing_zone(s, cl, s->world.pos[i]));
        if (kz_server_kick(s, kz_entity_at(&s->world.ents, i).id, KZ_KICK_NO_PLACE, text) != KZ_OK) {
            /* Not queued (outbound ring full): served nothing until the
             * kick goes out on a later step (kz_server_step). */
            cl->kicked = 1;
            cl->owe_kick = 1;
            s->sessions.owed_kicks++;
        }
        return 0;
    }
    snprintf(text, sizeof text, "moved out of zone %s: its rules do not admit you",
             refusing_zone(s, cl, s->world.pos[i]));
    memcpy(s->world.pos[i], to, sizeof to);
    if (kz_grid_move(&s->world.grid, i, (float)to[0] / KZ_SNAP_POS_UNITS,
                     (float)to[2] / KZ_SNAP_POS_UNITS) != KZ_OK)
        kz_counter_inc(s->c, KZ_WORLD_C_DROP_REFUSED);  /* inside the bounds: unreachable */
    cl->corrected = 1;  /* the client's prediction jumps with it */
    cl->at_boundary = 0;
    kz_counter_inc(s->c, KZ_WORLD_C_ZONE_MOVED_OUT);
    kz__notice(s, slot, KZ_NOTICE_DENIED, text);
    return 1;
}

void kz__zones_enforce(kz_server *s)
{
    if (s->world.zones_enforced == s->world.zones_gen)
        return;
    s->world.zones_enforced = s->world.zones_gen;
    uint32_t moved = 0, removed = 0;
    for (uint32_t slot = 0; slot < s->sessions.max_clients; slot++) {
        kz__client *cl = &s->sessions.clients[slot];
        if (!cl->live || cl->kicked || kz__may_be_at(s, cl, s->world.pos[cl->avatar]))
            continue;
        if (kz__zone_evict(s, slot, cl))
            moved++;
        else
            removed++;
    }
    if (!moved && !removed)
        return;
    /* One line and one record per pass, however many were moved: a zone
     * change is an operator's act, and each kick has its own record. */
    kz_logf(&s->cfg.net.log, KZ_LOG_INFO, "server", "zone rules changed: moved_out=%u kicked=%u",
            moved, removed);
    char what[48];
    snprintf(what, sizeof what, "zones changed: moved %u, kicked %u", moved, removed);
    kz__audit(s, KZ_AUDIT_ZONE_REFUSAL, NULL, moved, what);
}

static int zone_name_ok(const char *name)
{
    size_t n = strnlen(name, sizeof ((kz_zone_def *)0)->name);
    if (n == 0 || n >= sizeof ((kz_zone_def *)0)->name)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

int kz_server_zone_set(kz_server *s, const kz_zone_def *z)
{
    if (!zone_name_ok(z->name) || (z->shape != KZ_ZONE_BOX && z->shape != KZ_ZONE_SPHERE))
        return KZ_EINVAL;
    for (int i = 0; i < 3; i++)
        if (!(z->center[i] == z->center[i]) || !(z->half[i] >= 0) || z->half[i] > KZ_SNAP_MAX_BOUND)
            return KZ_EINVAL;
    if (!(z->half[0] > 0))
        return KZ_EINVAL;
    for (uint32_t k = 0; k < KZ_ZONE_MAX_ALLOWED; k++)
        if (strnlen(z->roles[k], sizeof z->roles[k]) >= sizeof z->roles[k])
            return KZ_EINVAL;
    for (uint32_t i = 0; i < s->world.n_zones; i++)
        if (strcmp(s->world.zones[i].name, z->name) == 0) {
            s->world.zones[i] = *z;
            s->world.zones_gen++;  /* a stricter list may now refuse someone inside */
            return KZ_OK;
        }
    if (s->world.n_zones == KZ_ZONE_MAX)
        return KZ_EFULL;
    s->world.zones[s->world.n_zones++] = *z;
    s->world.zones_gen++;
    return KZ_OK;
}

int kz_server_zone_remove(kz_server *s, const char *name)
{
    for (uint32_t i = 0; i < s->world.n_zones; i++)
        if (strcmp(s->world.zones[i].name, name) == 0) {
            s->world.zones[i] = s->world.zones[--s->world.n_zones];
            return KZ_OK;
        }
    return KZ_EINVAL;
}

static float dist2_xz(const int32_t a[3], const int32_t b[3])
{
    float dx = (float)(a[0] - b[0]) / KZ_SNAP_POS_UNITS, dz = (float)(a[2] - b[2]) / KZ_SNAP_POS_UNITS;
    return dx * dx + dz * dz;
}

int kz__enters_bubble(kz_server *s, uint32_t i, const int32_t from[3], const int32_t to[3])
{
    if (s->sessions.n_bubbles == 0)
        return 0;
    float r = s->cfg.personal_space;
    uint32_t n = kz_grid_query(&s->world.grid, (float)to[0] / KZ_SNAP_POS_UNITS,
                               (float)to[2] / KZ_SNAP_POS_UNITS, r, s->world.query, s->world.cap, NULL);
    for (uint32_t k = 0; k < n; k++) {
        uint32_t o = s->world.query[k];
        if (o == i || !s->world.owner[o] || !s->sessions.clients[s->world.owner[o] - 1u].bubble)
            continue;
        /* Coming closer than r is refused; moving away or along is not. */
        if (dist2_xz(to, s->world.pos[o]) < dist2_xz(from, s->world.pos[o]))
            return 1;
    }
    return 0;
}

uint64_t kz__zones_at(const kz_server *s, const int32_t pos[3])
{
    uint64_t bits = 0;
    for (uint32_t z = 0; z < s->world.n_zones; z++)
        if (in_zone(&s->world.zones[z], pos))
            bits |= 1ull << z;
    return bits;
}
