/*
 * /state.json: one published view of the viewer client, rendered with
 * cJSON. Runs on the HTTP thread from its own copy of the view, so it
 * never touches a Kizuna object. Field meanings are in README.md.
 *
 * Positions are rounded to millimeters (the wire's own resolution is
 * coarser), so the page and a test read short numbers. 64-bit client ids
 * (acting_for) are written as decimal strings: a JSON number is a double
 * and would round ids above 2^53.
 */
#include <math.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "viewer.h"

static const char *const kzv_levels[] = {"none", "basic", "strong"};
static const char *const kzv_actors[] = {"human", "agent", "bot"};
static const char *const kzv_states[] = {"idle", "connecting", "connected", "disconnected",
                                         "failed"};

static const char *kzv_lookup(const char *const *names, size_t n, uint32_t i)
{
    return i < n ? names[i] : "unknown";
}

static double kzv_mm(float v)
{
    return round((double)v * 1000.0) / 1000.0;
}

/* Adds "key": [x, y, z]. 0 or -1 (no memory). */
static int kzv_add_vec3(cJSON *obj, const char *key, const float v[3])
{
    double d[3] = {kzv_mm(v[0]), kzv_mm(v[1]), kzv_mm(v[2])};
    cJSON *a = cJSON_CreateDoubleArray(d, 3);
    if (!a || !cJSON_AddItemToObject(obj, key, a)) {
        cJSON_Delete(a);
        return -1;
    }
    return 0;
}

/* "acting_for": the principal's client id as a string, or null; and
 * "acting_for_name" when the viewer knows that client's display name. */
static int kzv_add_acting_for(cJSON *o, const kz_badge *b, const kzv_info *info)
{
    if (b->acting_for == 0)
        return cJSON_AddNullToObject(o, "acting_for") ? 0 : -1;
    char id[24];
    snprintf(id, sizeof id, "%llu", (unsigned long long)b->acting_for);
    if (!cJSON_AddStringToObject(o, "acting_for", id))
        return -1;
    const char *name = kzv_principal_name(info, b->acting_for);
    return name && !cJSON_AddStringToObject(o, "acting_for_name", name) ? -1 : 0;
}

/* Adds "badge": {verification, level, method, actor, acting_for, name}. */
static int kzv_add_badge(cJSON *obj, const kz_badge *b, const kzv_info *info)
{
    cJSON *o = cJSON_AddObjectToObject(obj, "badge");
    if (!o)
        return -1;
    int bad = !cJSON_AddStringToObject(o, "verification",
                                       kzv_lookup(kzv_levels, 3, b->verification_level));
    bad |= !cJSON_AddNumberToObject(o, "level", b->verification_level);
    bad |= !cJSON_AddStringToObject(o, "method", b->method);
    bad |= !cJSON_AddStringToObject(o, "actor", kzv_lookup(kzv_actors, 3, b->actor_kind));
    bad |= kzv_add_acting_for(o, b, info) != 0;
    bad |= !cJSON_AddStringToObject(o, "name", b->name);
    return bad ? -1 : 0;
}

/* "self": the viewer's own avatar (predicted), or null before the welcome. */
static int kzv_add_self(cJSON *root, const kzv_view *v, const kzv_info *info)
{
    if (!v->have_self)
        return cJSON_AddNullToObject(root, "self") ? 0 : -1;
    cJSON *o = cJSON_AddObjectToObject(root, "self");
    if (!o)
        return -1;
    int bad = !cJSON_AddNumberToObject(o, "id", v->self_id);
    bad |= kzv_add_vec3(o, "pos", v->self.pos) != 0;
    bad |= !cJSON_AddNumberToObject(o, "yaw", kzv_mm(v->self.yaw));
    if (info->self_badge_known)
        bad |= kzv_add_badge(o, &info->self_badge, info) != 0;
    return bad ? -1 : 0;
}

/* One entity. The key order (id, kind, pos, yaw, ...) is stable. */
static int kzv_add_entity(cJSON *arr, const kzv_entity *e, const kzv_info *info)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddItemToArray(arr, o)) {
        cJSON_Delete(o);
        return -1;
    }
    int bad = !cJSON_AddNumberToObject(o, "id", e->id);
    bad |= !cJSON_AddStringToObject(o, "kind", e->kind == KZ_KIND_OBJECT ? "object" : "avatar");
    bad |= kzv_add_vec3(o, "pos", e->pos) != 0;
    bad |= !cJSON_AddNumberToObject(o, "yaw", kzv_mm(e->yaw));
    if (e->kind == KZ_KIND_OBJECT)
        bad |= !cJSON_AddNumberToObject(o, "holder", e->holder);
    else if (e->has_badge)
        bad |= kzv_add_badge(o, &e->badge, info) != 0;
    return bad ? -1 : 0;
}

static int kzv_add_zone(cJSON *arr, const kz_zone_def *z)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddItemToArray(arr, o)) {
        cJSON_Delete(o);
        return -1;
    }
    int bad = !cJSON_AddStringToObject(o, "name", z->name);
    bad |= !cJSON_AddStringToObject(o, "shape", z->shape == KZ_ZONE_SPHERE ? "sphere" : "box");
    bad |= kzv_add_vec3(o, "center", z->center) != 0;
    bad |= kzv_add_vec3(o, "half", z->half) != 0;
    bad |= !cJSON_AddBoolToObject(o, "private", z->is_private != 0);
    bad |= !cJSON_AddStringToObject(o, "min_verification",
                                    kzv_lookup(kzv_levels, 3, z->min_verification));
    bad |= !cJSON_AddBoolToObject(o, "humans_only", z->humans_only != 0);
    return bad ? -1 : 0;
}

static int kzv_add_lists(cJSON *root, const kzv_view *v, const kzv_info *info)
{
    cJSON *ents = cJSON_AddArrayToObject(root, "entities");
    cJSON *zones = cJSON_AddArrayToObject(root, "zones");
    if (!ents || !zones)
        return -1;
    for (uint32_t i = 0; i < v->n; i++)
        if (kzv_add_entity(ents, &v->e[i], info) != 0)
            return -1;
    for (uint32_t i = 0; i < info->n_zones; i++)
        if (kzv_add_zone(zones, &info->zones[i]) != 0)
            return -1;
    return 0;
}

char *kzv_state_json(const kzv_view *v, const kzv_info *info)
{
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    int bad = !cJSON_AddStringToObject(root, "mode", info->mode);
    bad |= !cJSON_AddStringToObject(root, "state", kzv_lookup(kzv_states, 5, v->state));
    bad |= !cJSON_AddNumberToObject(root, "reason", v->reason);
    bad |= !cJSON_AddNumberToObject(root, "frame", (double)v->frame);
    bad |= !cJSON_AddNumberToObject(root, "server_tick", v->server_tick);
    bad |= !cJSON_AddNumberToObject(root, "view_radius", kzv_mm(info->view_radius));
    bad |= !cJSON_AddNumberToObject(root, "in_view", v->in_view);
    bad |= !cJSON_AddBoolToObject(root, "zones_known", info->zones_known != 0);
    bad |= kzv_add_self(root, v, info) != 0;
    bad |= kzv_add_lists(root, v, info) != 0;
    char *out = bad ? NULL : cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}
