/*
 * The world's rules of presence: who may see whom, who may enter where.
 *
 * Visibility is one symmetric predicate, evaluated for every candidate of
 * every interest run and for every kept view entry on every tick:
 *   1. private zones: two entities see each other only when they are in
 *      the same private zone or both outside every private zone;
 *   2. blocks: if either client blocked the other, neither sees the other
 *      (and so neither gets the other's chat or voice, which follow views);
 *   3. the application's hook, asked both ways.
 * Because every rule is symmetric, no zone, block list or hook can make an
 * invisible listener: whoever may receive an avatar's state may be seen by
 * it (docs/SECURITY.md). The one asymmetry is a moderator's observer mode,
 * and it is announced to everyone the observer sees.
 */
#include "sim/server_impl.h"

#include <string.h>

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
    for (uint32_t i = 0; i < s->cap; i++) {
        uint8_t inside = 0;
        if (s->ents.alive[i])
            for (uint32_t z = 0; z < s->n_zones && !inside; z++)
                if (s->zones[z].is_private && in_zone(&s->zones[z], s->pos[i]))
                    inside = (uint8_t)(z + 1u);
        s->private_zone[i] = inside;
    }
}

static int has_blocked(const kz__client *cl, uint64_t client_id)
{
    for (uint32_t k = 0; k < cl->n_blocked; k++)
        if (cl->blocked[k] == client_id)
            return 1;
    return 0;
}

int kz__blocked_either(const kz_server *s, uint32_t a, uint32_t b)
{
    if (!s->owner[a] || !s->owner[b])
        return 0;
    const kz__client *ca = &s->clients[s->owner[a] - 1u], *cb = &s->clients[s->owner[b] - 1u];
    return has_blocked(ca, cb->client_id) || has_blocked(cb, ca->client_id);
}

int kz__may_see(const kz_server *s, uint32_t a, uint32_t b)
{
    /* An observer (a moderator's mode) is not seen, but never unannounced:
     * everyone it sees is told (kz__announce_observer). */
    if (s->owner[b] && s->clients[s->owner[b] - 1u].observer)
        return 0;
    if (s->private_zone[a] != s->private_zone[b])
        return 0;
    if (kz__blocked_either(s, a, b))
        return 0;
    if (s->cfg.visible) {
        uint32_t ia = kz_entity_at(&s->ents, a).id, ib = kz_entity_at(&s->ents, b).id;
        return s->cfg.visible(s->cfg.visible_ctx, ia, ib) && s->cfg.visible(s->cfg.visible_ctx, ib, ia);
    }
    return 1;
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
    for (uint32_t z = 0; z < s->n_zones; z++)
        if (in_zone(&s->zones[z], pos) && !admitted(s, &s->zones[z], cl))
            return 0;
    return 1;
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
    for (uint32_t i = 0; i < s->n_zones; i++)
        if (strcmp(s->zones[i].name, z->name) == 0) {
            s->zones[i] = *z;
            return KZ_OK;
        }
    if (s->n_zones == KZ_ZONE_MAX)
        return KZ_EFULL;
    s->zones[s->n_zones++] = *z;
    return KZ_OK;
}

int kz_server_zone_remove(kz_server *s, const char *name)
{
    for (uint32_t i = 0; i < s->n_zones; i++)
        if (strcmp(s->zones[i].name, name) == 0) {
            s->zones[i] = s->zones[--s->n_zones];
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
    if (s->n_bubbles == 0)
        return 0;
    float r = s->cfg.personal_space;
    uint32_t n = kz_grid_query(&s->grid, (float)to[0] / KZ_SNAP_POS_UNITS,
                               (float)to[2] / KZ_SNAP_POS_UNITS, r, s->query, s->cap, NULL);
    for (uint32_t k = 0; k < n; k++) {
        uint32_t o = s->query[k];
        if (o == i || !s->owner[o] || !s->clients[s->owner[o] - 1u].bubble)
            continue;
        /* Coming closer than r is refused; moving away or along is not. */
        if (dist2_xz(to, s->pos[o]) < dist2_xz(from, s->pos[o]))
            return 1;
    }
    return 0;
}

uint64_t kz__zones_at(const kz_server *s, const int32_t pos[3])
{
    uint64_t bits = 0;
    for (uint32_t z = 0; z < s->n_zones; z++)
        if (in_zone(&s->zones[z], pos))
            bits |= 1ull << z;
    return bits;
}
