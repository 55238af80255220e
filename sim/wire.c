/*
 * World message codecs (layouts in docs/PROTOCOL.md, "World messages").
 * Every reader treats its bytes as hostile: lengths first, then every code
 * against its range; anything else is KZ_EPROTO.
 */
#include "sim/wire.h"

#include <math.h>
#include <string.h>

#include <kizuna/quant.h>

#define KZ__TWO_PI 6.283185307179586

/* ---- little-endian helpers ---------------------------------------------- */

static void putf(uint8_t *p, float f)
{
    uint32_t v;
    memcpy(&v, &f, 4);
    kz_wire_put32(p, v);
}

static float getf(const uint8_t *p)
{
    uint32_t v = kz_wire_get32(p);
    float f;
    memcpy(&f, &v, 4);
    return f;
}

/* ---- bit helpers: errors are sticky, so callers check once at the end -- */

static void wr(kz_bitwriter *w, uint64_t v, unsigned bits)
{
    if (kz_bitwriter_write(w, v, bits) != KZ_OK)
        return;
}

static uint64_t rd(kz_bitreader *r, unsigned bits)
{
    uint64_t v = 0;
    if (kz_bitreader_read(r, &v, bits) != KZ_OK)
        return 0;
    return v;
}

/* ---- welcome ------------------------------------------------------------ */

void kz_wire_welcome_write(const kz_wire_welcome *w, uint8_t out[KZ_WELCOME_BYTES])
{
    kz_wire_put32(out + 0, w->version);
    kz_wire_put32(out + 4, w->tick_hz);
    kz_wire_put32(out + 8, w->tick);
    kz_wire_put32(out + 12, w->self);
    kz_wire_put32(out + 16, w->n_slots);
    kz_wire_put32(out + 20, w->history);
    putf(out + 24, w->bound);
    putf(out + 28, w->max_speed);
}

int kz_wire_welcome_read(const uint8_t *p, size_t len, kz_wire_welcome *out)
{
    if (len != KZ_WELCOME_BYTES)
        return KZ_EPROTO;
    kz_wire_welcome w = {
        .version = kz_wire_get32(p + 0),
        .tick_hz = kz_wire_get32(p + 4),
        .tick = kz_wire_get32(p + 8),
        .self = kz_wire_get32(p + 12),
        .n_slots = kz_wire_get32(p + 16),
        .history = kz_wire_get32(p + 20),
        .bound = getf(p + 24),
        .max_speed = getf(p + 28),
    };
    if (w.version != KZ_WORLD_VERSION || w.tick_hz < 10 || w.tick_hz > 128 || w.self == 0 ||
        w.n_slots == 0 || w.n_slots > KZ_SNAP_MAX_SLOTS || w.history < 4 || w.history > 64)
        return KZ_EPROTO;
    if (!(isfinite(w.bound) && w.bound > 0 && w.bound <= KZ_SNAP_MAX_BOUND))
        return KZ_EPROTO;
    if (!(isfinite(w.max_speed) && w.max_speed > 0 && w.max_speed < 128.0f))
        return KZ_EPROTO;
    *out = w;
    return KZ_OK;
}

/* ---- input -------------------------------------------------------------- */

/* A smallest-three code is valid when no component uses the one code the
 * symmetric grid leaves out (all ones). */
static int rot_code_valid(uint32_t code)
{
    const uint32_t k = KZ_SNAP_ROT_K, all = (1u << k) - 1u;
    for (uint32_t i = 0; i < 3; i++)
        if (((code >> (i * k)) & all) == all)
            return 0;
    return 1;
}

#define REL_BITS 13u  /* offset + KZ_SNAP_REL_MAX in 0 .. 4096 */

static void write_command(kz_bitwriter *w, const kz_wire_command *c, const kz_wire_command *ref)
{
    int same_move = ref && memcmp(c->move, ref->move, sizeof c->move) == 0;
    wr(w, (uint64_t)same_move, 1);
    if (!same_move)
        for (int i = 0; i < 3; i++)
            wr(w, (uint16_t)c->move[i], 16);
    int same_yaw = ref && c->yaw == ref->yaw;
    wr(w, (uint64_t)same_yaw, 1);
    if (!same_yaw)
        wr(w, c->yaw, 16);
    int same_anim = ref && c->anim == ref->anim &&
                    (c->flags & KZ_AVATAR_VR) == (ref->flags & KZ_AVATAR_VR);
    wr(w, (uint64_t)same_anim, 1);
    if (!same_anim) {
        wr(w, c->anim, 16);
        wr(w, (c->flags & KZ_AVATAR_VR) ? 1u : 0u, 1);
    }
    int same_pose = ref && memcmp(c->rel, ref->rel, sizeof c->rel) == 0 &&
                    memcmp(c->rot, ref->rot, sizeof c->rot) == 0;
    wr(w, (uint64_t)same_pose, 1);
    if (!same_pose)
        for (uint32_t p = 0; p < KZ_POSE_COUNT; p++) {
            for (int i = 0; i < 3; i++)
                wr(w, (uint64_t)(c->rel[p][i] + KZ_SNAP_REL_MAX), REL_BITS);
            wr(w, c->rot[p], KZ_QUAT_BITS(KZ_SNAP_ROT_K));
        }
}

int kz_wire_input_write(const kz_wire_input *in, uint8_t *out, size_t cap)
{
    if (in->count == 0 || in->count > KZ_INPUT_MAX_COMMANDS)
        return KZ_EINVAL;
    if (in->cmd[0].tick < in->count)
        return KZ_EINVAL;  /* the oldest tick would be 0 or wrap */
    for (uint32_t i = 1; i < in->count; i++)
        if (in->cmd[i].tick != in->cmd[i - 1].tick - 1u)
            return KZ_EINVAL;
    kz_bitwriter w;
    kz_bitwriter_init(&w, out, cap);
    wr(&w, in->ack, 32);
    wr(&w, in->count - 1u, 3);
    wr(&w, in->cmd[0].tick, 32);
    for (uint32_t i = 0; i < in->count; i++)
        write_command(&w, &in->cmd[i], i ? &in->cmd[i - 1] : NULL);
    size_t n = kz_bitwriter_finish(&w);
    if (kz_bitwriter_error(&w))
        return KZ_EINVAL;
    return (int)n;
}

static int read_command(kz_bitreader *r, kz_wire_command *c, const kz_wire_command *ref)
{
    uint64_t v;
    if (ref)
        *c = *ref;
    else
        memset(c, 0, sizeof *c);
    v = rd(r, 1);
    if (v && !ref)
        return KZ_EPROTO;  /* "same as the newer command" in the newest one */
    if (!v) {
        for (int i = 0; i < 3; i++) {
            uint64_t m = 0;
            m = rd(r, 16);
            c->move[i] = (int16_t)(uint16_t)m;
        }
        /* Canonical: a group equal to the newer command's is sent as "same". */
        if (ref && memcmp(c->move, ref->move, sizeof c->move) == 0)
            return KZ_EPROTO;
    }
    v = rd(r, 1);
    if (v && !ref)
        return KZ_EPROTO;
    if (!v) {
        uint64_t y = 0;
        y = rd(r, 16);
        c->yaw = (uint16_t)y;
        if (ref && c->yaw == ref->yaw)
            return KZ_EPROTO;
    }
    v = rd(r, 1);
    if (v && !ref)
        return KZ_EPROTO;
    if (!v) {
        uint64_t a = 0, f = 0;
        a = rd(r, 16);
        f = rd(r, 1);
        c->anim = (uint16_t)a;
        c->flags = f ? KZ_AVATAR_VR : 0;
        if (ref && c->anim == ref->anim && c->flags == ref->flags)
            return KZ_EPROTO;
    }
    v = rd(r, 1);
    if (v && !ref)
        return KZ_EPROTO;
    if (!v) {
        for (uint32_t p = 0; p < KZ_POSE_COUNT; p++) {
            for (int i = 0; i < 3; i++) {
                uint64_t o = 0;
                o = rd(r, REL_BITS);
                if (o > 2u * KZ_SNAP_REL_MAX)
                    return KZ_EPROTO;
                c->rel[p][i] = (int16_t)((int32_t)o - (int32_t)KZ_SNAP_REL_MAX);
            }
            uint64_t q = 0;
            q = rd(r, KZ_QUAT_BITS(KZ_SNAP_ROT_K));
            if (!rot_code_valid((uint32_t)q))
                return KZ_EPROTO;
            c->rot[p] = (uint32_t)q;
        }
        if (ref && memcmp(c->rel, ref->rel, sizeof c->rel) == 0 &&
            memcmp(c->rot, ref->rot, sizeof c->rot) == 0)
            return KZ_EPROTO;
    }
    return kz_bitreader_error(r) ? KZ_EPROTO : KZ_OK;
}

int kz_wire_input_read(const uint8_t *p, size_t len, kz_wire_input *out)
{
    if (len == 0 || len > KZ_INPUT_MAX_BYTES)
        return KZ_EPROTO;
    kz_bitreader r;
    kz_bitreader_init(&r, p, len);
    uint64_t ack = 0, count = 0, tick = 0;
    ack = rd(&r, 32);
    count = rd(&r, 3);
    tick = rd(&r, 32);
    if (kz_bitreader_error(&r) || tick <= count)
        return KZ_EPROTO;  /* ticks start at 1: the oldest must stay >= 1 */
    out->ack = (uint32_t)ack;
    out->count = (uint32_t)count + 1u;
    for (uint32_t i = 0; i < out->count; i++) {
        int rc = read_command(&r, &out->cmd[i], i ? &out->cmd[i - 1] : NULL);
        if (rc)
            return rc;
        out->cmd[i].tick = (uint32_t)tick - i;
    }
    /* Only the zero padding of the last byte may remain. */
    size_t used = (r.pos + 7u) / 8u;
    if (used != len)
        return KZ_EPROTO;
    size_t rest = len * 8u - r.pos;
    if (rest && rd(&r, (unsigned)rest) != 0)
        return KZ_EPROTO;
    return KZ_OK;
}

/* ---- command from floats ------------------------------------------------ */

static int16_t clamp16(double v, double lim)
{
    if (!(v == v))
        return 0;
    if (v > lim)
        v = lim;
    if (v < -lim)
        v = -lim;
    return (int16_t)lrint(v);
}

static uint32_t rot_code(const float q[4])
{
    float n[4] = {0, 0, 0, 1};
    double s = 0;
    for (int i = 0; i < 4; i++)
        s += (double)q[i] * q[i];
    if (isfinite(s) && s > 1e-12) {
        double inv = 1.0 / sqrt(s);
        for (int i = 0; i < 4; i++)
            n[i] = (float)(q[i] * inv);
    }
    uint64_t code = 0;
    if (kz_quat_encode(n, KZ_SNAP_ROT_K, &code) == KZ_OK)
        return (uint32_t)code;
    /* Only a quaternion that normalizing could not fix ends here. */
    const float id[4] = {0, 0, 0, 1};
    if (kz_quat_encode(id, KZ_SNAP_ROT_K, &code) != KZ_OK)
        return 0;
    return (uint32_t)code;
}

void kz_wire_command_from(const kz_avatar_state *want, float max_speed, kz_wire_command *out)
{
    memset(out, 0, sizeof *out);
    double v2 = 0;
    for (int i = 0; i < 3; i++)
        v2 += isfinite(want->vel[i]) ? (double)want->vel[i] * want->vel[i] : 0.0;
    double scale = (v2 > (double)max_speed * max_speed) ? max_speed / sqrt(v2) : 1.0;
    for (int i = 0; i < 3; i++) {
        double v = isfinite(want->vel[i]) ? want->vel[i] * scale : 0.0;
        out->move[i] = clamp16(v * KZ_SNAP_VEL_UNITS, 32767);
    }
    double turns = isfinite(want->yaw) ? want->yaw / KZ__TWO_PI : 0.0;
    turns -= floor(turns);
    out->yaw = (uint16_t)((uint32_t)lrint(turns * 65536.0) & 0xffffu);
    out->anim = want->anim;
    out->flags = want->flags & KZ_AVATAR_VR;
    for (uint32_t p = 0; p < KZ_POSE_COUNT; p++) {
        for (int i = 0; i < 3; i++)
            out->rel[p][i] = clamp16((double)want->pose[p].pos[i] * KZ_SNAP_REL_UNITS, KZ_SNAP_REL_MAX);
        out->rot[p] = rot_code(want->pose[p].rot);
    }
}

/* ---- integration -------------------------------------------------------- */

/* a / b rounded to nearest, ties away from zero; b > 0. */
static int64_t div_round(int64_t a, int64_t b)
{
    return a >= 0 ? (a + b / 2) / b : -((-a + b / 2) / b);
}

int32_t kz_wire_step(const kz_snap_codec *c, int16_t v)
{
    return (int32_t)div_round((int64_t)v * KZ_SNAP_POS_UNITS, (int64_t)KZ_SNAP_VEL_UNITS * c->tick_hz);
}

void kz_wire_integrate(const kz_snap_codec *c, kz_snap_state *st, const kz_wire_command *cmd)
{
    for (int i = 0; i < 3; i++) {
        int64_t p = (int64_t)st->pos[i] + kz_wire_step(c, cmd->move[i]);
        if (p > c->pos_max)
            p = c->pos_max;
        if (p < -(int64_t)c->pos_max)
            p = -(int64_t)c->pos_max;
        st->pos[i] = (int32_t)p;
        st->vel[i] = cmd->move[i];
    }
    st->yaw = cmd->yaw;
    st->anim = cmd->anim;
    st->flags = (uint8_t)((st->flags & ~KZ_AVATAR_VR) | (cmd->flags & KZ_AVATAR_VR));
    memcpy(st->rel, cmd->rel, sizeof st->rel);
    memcpy(st->rot, cmd->rot, sizeof st->rot);
}

/* ---- snapshot header ---------------------------------------------------- */

int kz_wire_snap_head_write(const kz_snap_codec *c, const kz_wire_snap_head *h, kz_bitwriter *w)
{
    wr(w, h->input_tick, 32);
    wr(w, h->corrected ? 1u : 0u, 1);
    wr(w, h->self.entity, 32);
    for (int i = 0; i < 3; i++)
        wr(w, (uint64_t)((int64_t)h->self.pos[i] + c->pos_max), c->pos_bits);
    for (int i = 0; i < 3; i++)
        wr(w, (uint16_t)h->self.vel[i], 16);
    wr(w, h->self.yaw, 16);
    wr(w, h->self.anim, 16);
    wr(w, h->self.flags, 8);
    return kz_bitwriter_error(w) ? KZ_EOVERFLOW : KZ_OK;
}

int kz_wire_snap_head_read(const kz_snap_codec *c, kz_bitreader *r, kz_wire_snap_head *h)
{
    uint64_t v = 0;
    memset(h, 0, sizeof *h);
    v = rd(r, 32);
    h->input_tick = (uint32_t)v;
    v = rd(r, 1);
    h->corrected = (uint8_t)v;
    v = rd(r, 32);
    h->self.entity = (uint32_t)v;
    h->self.kind = KZ_KIND_AVATAR;
    for (int i = 0; i < 3; i++) {
        v = 0;
        v = rd(r, c->pos_bits);
        if (v > 2u * (uint64_t)c->pos_max)
            return KZ_EPROTO;
        h->self.pos[i] = (int32_t)((int64_t)v - c->pos_max);
    }
    for (int i = 0; i < 3; i++) {
        v = rd(r, 16);
        h->self.vel[i] = (int16_t)(uint16_t)v;
    }
    v = rd(r, 16);
    h->self.yaw = (uint16_t)v;
    v = rd(r, 16);
    h->self.anim = (uint16_t)v;
    v = rd(r, 8);
    h->self.flags = (uint8_t)v;
    if (kz_bitreader_error(r) || h->self.entity == 0)
        return KZ_EPROTO;
    return KZ_OK;
}
