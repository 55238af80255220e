/*
 * Cheat validation (sim/validate.h): the checks a client's inputs pass
 * before they touch the world, and the ladder of consequences.
 *
 * The command path is the hot one: one call per command per client at its
 * arrival. Everything it compares against was turned into wire units by
 * kz_validate_config_resolve, so an honest command costs integer compares,
 * a token bucket and the clock's lead in double, and no square root; only
 * a violating command pays for the division and sqrt that fix it.
 *
 * Clock drift. A client stamps each command with its own tick counter,
 * which advances tick_hz times per second of the client's clock. The lead
 * of a command is the client time its ticks claim since its first command
 * minus the server time since then, counted against a line that runs
 * clock_tolerance fast (an honest clock's error). A client's lead is its
 * clock's offset minus the one-way delay of the command, and every delay
 * on the path (a queue, a lost datagram carried by a later one, a client
 * frame late, the server's I/O pass) only ever adds: an honest lead stays
 * within the swing of that delay below its best, however long the client
 * plays. A fast clock makes the lead climb without bound. So the check
 * keeps the lowest lead seen (the floor: the most delayed arrival) and
 * flags a command whose lead is above it by more than clock_max_swing +
 * clock_slack. That is a rate measured over the whole session: a client
 * (1 + e) fast is flagged after (max_swing + slack) / (e - tolerance)
 * seconds on a quiet path, 10 % after 10.7 s, 5 % after 21.9 s, 3 % after
 * 37.5 s, and no check can do better without punishing a queue of
 * max_swing that drains.
 *
 * Arrivals within clock_window of a group's first are one group, and only
 * its least delayed command may lower the floor: a burst whose oldest
 * commands waited (a client catching up in one frame, redundant copies
 * after a loss, datagrams that sat out a stalled server) does not count
 * as a path that slow. The first datagram sets the floor. Dips only ever
 * lower the client's own ceiling, so leaving some out cannot help a
 * cheat; the floor never rises on its own, so room to run ahead is never
 * earned by being slow or late first. Once over, the floor follows the
 * lead up by at most clock_forgive seconds per second of arrivals, and
 * every command until it has caught up is flagged: a path that swings
 * more than the budget costs strikes, not a kick that never ends. It
 * follows no higher than clock_max_swing above the first command's lead,
 * so whatever strikes a client accepts, a command whose lead is more than
 * 2 * clock_max_swing + clock_slack above its first datagram's is always
 * flagged.
 */
#include "sim/validate.h"

#include <math.h>
#include <string.h>

#include <kizuna/quant.h>

#include "core/assert.h"

#define KZ__VALIDATE_RESOLVED 0x56414c31u /* "VAL1" */
#define KZ__NS_PER_S 1e9

/* Smallest-three grid of the wire's rotation codes (kz_quat_encode). */
#define ROT_MASK ((1u << KZ_SNAP_ROT_K) - 1u)
#define ROT_TOP (ROT_MASK - 1u)                    /* largest valid field */
#define ROT_MID ((int32_t)(1u << (KZ_SNAP_ROT_K - 1u)) - 1)   /* the grid's zero */

/* ---- configuration ------------------------------------------------------ */

static const float default_points[KZ_VIOL_KINDS] = {
    [KZ_VIOL_KIND_SPEED] = 10, [KZ_VIOL_KIND_ACCEL] = -1, [KZ_VIOL_KIND_POSE] = -1,
    [KZ_VIOL_KIND_ROTATION] = 10, [KZ_VIOL_KIND_TELEPORT] = 25, [KZ_VIOL_KIND_CLOCK] = 20,
    [KZ_VIOL_KIND_FLOOD] = 20, [KZ_VIOL_KIND_CHAT] = 2, [KZ_VIOL_KIND_EMOTE] = 2,
    [KZ_VIOL_KIND_VOICE] = -1, [KZ_VIOL_KIND_GRAB] = 2,
};

static const kz_validate_rate default_rate[KZ_VALIDATE_ACTIONS] = {
    [KZ_VALIDATE_CHAT] = {4, 8}, [KZ_VALIDATE_EMOTE] = {4, 8},
    [KZ_VALIDATE_VOICE] = {8000, 8000}, [KZ_VALIDATE_GRAB] = {4, 4},
};

void kz_validate_config_default(kz_validate_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    int rc = kz_validate_config_resolve(cfg);
    KZ_ASSERT(rc == KZ_OK);
}

static void def(float *f, float v)
{
    if (*f == 0.0f)
        *f = v;
}

static int ok(float f)
{
    return isfinite(f) && f >= 0.0f;
}

static void fill_defaults(kz_validate_config *c)
{
    if (c->tick_hz == 0)
        c->tick_hz = 30;
    float hz = (float)c->tick_hz;
    def(&c->max_speed, 8.0f);
    def(&c->max_accel, 40.0f);
    def(&c->head_min, 0.1f);
    def(&c->head_max, 1.95f);
    def(&c->hand_reach, 1.2f);
    def(&c->input_rate, 1.25f * hz);
    def(&c->input_burst, 3.0f * hz);
    def(&c->clock_tolerance, 0.002f);
    def(&c->clock_max_swing, 1.0f);
    def(&c->clock_slack, 0.05f);
    def(&c->clock_window, 0.25f);
    def(&c->clock_forgive, 0.5f);
    def(&c->grab_reach, 2.0f);
    for (unsigned i = 0; i < KZ_VALIDATE_ACTIONS; i++) {
        def(&c->rate[i].per_second, default_rate[i].per_second);
        def(&c->rate[i].burst, default_rate[i].burst);
    }
    for (unsigned k = 0; k < KZ_VIOL_KINDS; k++)
        def(&c->points[k], default_points[k]);
    def(&c->strike_cooldown, 1.0f);
    def(&c->strike_half_life, 60.0f);
    def(&c->kick_score, 100.0f);
}

static int check_limits(const kz_validate_config *c)
{
    const float lim[] = {c->max_speed,       c->max_accel,       c->hand_reach,
                         c->input_rate,      c->input_burst,     c->clock_tolerance,
                         c->clock_max_swing, c->clock_slack,     c->clock_window,
                         c->clock_forgive,   c->grab_reach,      c->strike_cooldown,
                         c->strike_half_life, c->kick_score};
    for (size_t i = 0; i < sizeof lim / sizeof lim[0]; i++)
        if (!ok(lim[i]))
            return KZ_EINVAL;
    for (unsigned i = 0; i < KZ_VALIDATE_ACTIONS; i++)
        if (!ok(c->rate[i].per_second) || !ok(c->rate[i].burst))
            return KZ_EINVAL;
    for (unsigned k = 0; k < KZ_VIOL_KINDS; k++)
        if (!isfinite(c->points[k]))
            return KZ_EINVAL;
    /* The head range must be expressible in relative codes (+-2 m). */
    if (!isfinite(c->head_min) || !isfinite(c->head_max) || c->head_min > c->head_max ||
        fabsf(c->head_min) > KZ_AVATAR_REACH || fabsf(c->head_max) > KZ_AVATAR_REACH)
        return KZ_EINVAL;
    if (c->tick_hz > KZ_SNAP_MAX_TICK_HZ || c->clock_window > KZ_VALIDATE_CLOCK_WINDOW_MAX)
        return KZ_EINVAL;
    return KZ_OK;
}

int kz_validate_config_resolve(kz_validate_config *cfg)
{
    fill_defaults(cfg);
    if (check_limits(cfg) != KZ_OK)
        return KZ_EINVAL;
    double hz = cfg->tick_hz;
    cfg->d.speed_units = (double)cfg->max_speed * KZ_SNAP_VEL_UNITS;
    /* One code of slack: the client rounds each component to nearest. */
    cfg->d.speed_flag2 = (cfg->d.speed_units + 1.0) * (cfg->d.speed_units + 1.0);
    cfg->d.dv_units = (double)cfg->max_accel / hz * KZ_SNAP_VEL_UNITS;
    cfg->d.head_min = (int32_t)lrint((double)cfg->head_min * KZ_SNAP_REL_UNITS);
    cfg->d.head_max = (int32_t)lrint((double)cfg->head_max * KZ_SNAP_REL_UNITS);
    cfg->d.reach_units = (double)cfg->hand_reach * KZ_SNAP_REL_UNITS;
    cfg->d.reach_flag2 = (cfg->d.reach_units + 1.0) * (cfg->d.reach_units + 1.0);
    cfg->d.clock_tick_s = 1.0 / hz;
    cfg->d.clock_line_per_ns = (1.0 + (double)cfg->clock_tolerance) / KZ__NS_PER_S;
    cfg->d.clock_budget = (double)cfg->clock_max_swing + (double)cfg->clock_slack;
    cfg->d.clock_forgive_per_ns = (double)cfg->clock_forgive / KZ__NS_PER_S;
    cfg->d.clock_window_ns = (uint64_t)((double)cfg->clock_window * KZ__NS_PER_S);
    cfg->d.clock_slice_ns = (uint64_t)(KZ__NS_PER_S / hz);
    cfg->d.cooldown_ns = (uint64_t)((double)cfg->strike_cooldown * KZ__NS_PER_S);
    cfg->d.half_life_ns = (double)cfg->strike_half_life * KZ__NS_PER_S;
    double g = (double)cfg->grab_reach * KZ_SNAP_REL_UNITS;
    cfg->d.grab_reach2 = g * g;
    if (cfg->d.half_life_ns <= 0.0)
        return KZ_EINVAL;
    cfg->d.resolved = KZ__VALIDATE_RESOLVED;
    return KZ_OK;
}

/* ---- per-client state --------------------------------------------------- */

void kz_validate_client_init(kz_validate_client *cl)
{
    memset(cl, 0, sizeof *cl);
    for (unsigned p = 0; p < KZ_POSE_COUNT; p++)
        cl->last_rot[p] = KZ_SNAP_ROT_REST;
}

int kz_validate_bucket_take(kz_validate_bucket *b, double rate, double burst, double cost,
                            kz_time_ns now)
{
    if (b->last == 0) {
        b->tokens = burst;
    } else if (now > b->last) {
        b->tokens += (double)(now - b->last) * rate * 1e-9;
        if (b->tokens > burst)
            b->tokens = burst;
    }
    b->last = now ? now : 1;
    if (b->tokens < cost)
        return 0;
    b->tokens -= cost;
    return 1;
}

/* ---- clock -------------------------------------------------------------- */

/* The client's first command: lead 0, the floor so far. */
static void clock_start(kz_validate_client *cl, kz_time_ns now)
{
    cl->clock_ticks = 0;
    cl->clock_t0 = now;
    cl->clock_prev = now;
    cl->clock_group_t = now;
    cl->clock_group = 0.0;
    cl->clock_floor = 0.0;
}

/* Joins the command's lead to its group, or closes the group (its least
 * delayed command joins the floor) and opens a new one. */
static void clock_join(const kz_validate_config *cfg, kz_validate_client *cl, kz_time_ns now,
                       double lead)
{
    if (now - cl->clock_group_t < cfg->d.clock_window_ns) {
        if (lead > cl->clock_group)
            cl->clock_group = lead;
        return;
    }
    if (cl->clock_group < cl->clock_floor)
        cl->clock_floor = cl->clock_group;
    cl->clock_group_t = now;
    cl->clock_group = lead;
}

/* The floor follows a client over the budget by what the time since its
 * last command earns (at most one tick's worth, so neither a silence nor
 * a burst earns more than real time does), and never above the first
 * command's lead plus clock_max_swing: past that a client stays flagged. */
static void clock_follow(const kz_validate_config *cfg, kz_validate_client *cl, kz_time_ns now,
                         double over)
{
    uint64_t dt = now - cl->clock_prev;
    if (dt > cfg->d.clock_slice_ns)
        dt = cfg->d.clock_slice_ns;
    double up = (double)dt * cfg->d.clock_forgive_per_ns;
    double to = cl->clock_floor + (over < up ? over : up);
    if (to > cfg->clock_max_swing)
        to = cfg->clock_max_swing;
    if (to > cl->clock_floor)
        cl->clock_floor = to;
}

static uint32_t check_clock(const kz_validate_config *cfg, kz_validate_client *cl,
                            uint32_t tick, kz_time_ns now)
{
    if (!cl->started) {
        clock_start(cl, now);
        return 0;
    }
    if (now < cl->clock_prev)
        now = cl->clock_prev;
    /* Forward modulo 2^32: the server passes only newer ticks, so a tick
     * below the last is a jump of nearly 2^32, never a step back that
     * would pass for a delay. */
    cl->clock_ticks += (uint32_t)(tick - cl->last_tick);
    double lead = (double)cl->clock_ticks * cfg->d.clock_tick_s -
                  (double)(now - cl->clock_t0) * cfg->d.clock_line_per_ns;
    /* The first datagram's newest command sets the floor (its older ones
     * are redundant copies of ticks never sent before). */
    if (now == cl->clock_t0 && lead > cl->clock_floor)
        cl->clock_floor = lead;
    clock_join(cfg, cl, now, lead);
    double over = lead - cl->clock_floor - cfg->d.clock_budget;
    uint32_t viol = 0;
    if (over > 0.0) {
        clock_follow(cfg, cl, now, over);
        viol = KZ_VIOL_CLOCK;
    }
    cl->clock_prev = now;
    return viol;
}

/* ---- movement ----------------------------------------------------------- */

/* Scales v (n components, int16 codes) by s in [0, 1], toward zero. */
static void scale3(int16_t v[3], double s)
{
    for (int i = 0; i < 3; i++)
        v[i] = (int16_t)((double)v[i] * s);
}

static uint32_t check_speed(const kz_validate_config *cfg, int16_t move[3])
{
    int64_t v2 = 0;
    for (int i = 0; i < 3; i++)
        v2 += (int64_t)move[i] * move[i];
    if ((double)v2 <= cfg->d.speed_flag2)
        return 0;
    scale3(move, cfg->d.speed_units / sqrt((double)v2));
    return KZ_VIOL_SPEED;
}

/* The change from the last accepted move may be dv_units per client tick
 * elapsed (lost commands are spread over their ticks), at most a second's
 * worth so a jump in the tick counter buys nothing. */
static uint32_t check_accel(const kz_validate_config *cfg, kz_validate_client *cl,
                            int16_t move[3], uint32_t tick)
{
    /* Before the first command the avatar stands still (last_vel is 0). */
    int32_t gap = cl->started ? (int32_t)(tick - cl->last_tick) : 1;
    if (gap < 1)
        gap = 1;
    if ((uint32_t)gap > cfg->tick_hz)
        gap = (int32_t)cfg->tick_hz;
    double lim = cfg->d.dv_units * gap;
    int32_t dv[3];
    int64_t d2 = 0;
    for (int i = 0; i < 3; i++) {
        dv[i] = (int32_t)move[i] - cl->last_vel[i];
        d2 += (int64_t)dv[i] * dv[i];
    }
    if ((double)d2 <= (lim + 1.0) * (lim + 1.0))
        return 0;
    double s = lim / sqrt((double)d2);
    for (int i = 0; i < 3; i++)
        move[i] = (int16_t)(cl->last_vel[i] + (int32_t)((double)dv[i] * s));
    /* Truncation may poke out of the speed ball by a code; put it back. */
    int64_t v2 = 0;
    for (int i = 0; i < 3; i++)
        v2 += (int64_t)move[i] * move[i];
    if ((double)v2 > cfg->d.speed_units * cfg->d.speed_units)
        scale3(move, cfg->d.speed_units / sqrt((double)v2));
    return KZ_VIOL_ACCEL;
}

static uint32_t clamp_code(int16_t *v, int32_t lo, int32_t hi)
{
    if (*v < lo) {
        *v = (int16_t)lo;
        return KZ_VIOL_POSE;
    }
    if (*v > hi) {
        *v = (int16_t)hi;
        return KZ_VIOL_POSE;
    }
    return 0;
}

static uint32_t check_pose(const kz_validate_config *cfg, kz_wire_command *cmd)
{
    uint32_t viol = 0;
    for (unsigned p = 0; p < KZ_POSE_COUNT; p++)
        for (int i = 0; i < 3; i++)
            viol |= clamp_code(&cmd->rel[p][i], -KZ_SNAP_REL_MAX, KZ_SNAP_REL_MAX);
    if (cmd->flags & KZ_AVATAR_VR)
        viol |= clamp_code(&cmd->rel[KZ_POSE_HEAD][1], cfg->d.head_min, cfg->d.head_max);
    const int16_t *h = cmd->rel[KZ_POSE_HEAD];
    for (unsigned p = KZ_POSE_LEFT_HAND; p <= KZ_POSE_RIGHT_HAND; p++) {
        int32_t d[3];
        int64_t d2 = 0;
        for (int i = 0; i < 3; i++) {
            d[i] = (int32_t)cmd->rel[p][i] - h[i];
            d2 += (int64_t)d[i] * d[i];
        }
        if ((double)d2 <= cfg->d.reach_flag2)
            continue;
        /* Toward the head: the result lies between two in-range points. */
        double s = cfg->d.reach_units / sqrt((double)d2);
        for (int i = 0; i < 3; i++)
            cmd->rel[p][i] = (int16_t)(h[i] + (int32_t)((double)d[i] * s));
        viol |= KZ_VIOL_POSE;
    }
    return viol;
}

/* 1 if some unit quaternion could have encoded to `code`. With t_i the
 * kept components in grid units (p_i * sqrt2 * mid) and p_m the dropped
 * one, a unit quaternion has p_m^2 = 1 - sum p_i^2 and p_m >= |p_i|, so
 * t_max^2 + sum t_i^2 <= 2 mid^2. Each code is within half a unit of its
 * t_i, which widens the bound by at most |t_max| + sum |t_i| + 1 <
 * 4 mid (|t_i| <= mid, sum |t_i| <= 2.13 mid). */
static int rot_plausible(uint32_t code)
{
    uint32_t a = (code >> (2u * KZ_SNAP_ROT_K)) & ROT_MASK;
    uint32_t b = (code >> KZ_SNAP_ROT_K) & ROT_MASK;
    uint32_t c = code & ROT_MASK;
    if ((uint64_t)code >> KZ_QUAT_BITS(KZ_SNAP_ROT_K) || a > ROT_TOP || b > ROT_TOP || c > ROT_TOP)
        return 0;
    int32_t da = (int32_t)a - ROT_MID, db = (int32_t)b - ROT_MID, dc = (int32_t)c - ROT_MID;
    int32_t sa = da * da, sb = db * db, sc = dc * dc;
    int32_t m = sa > sb ? sa : sb;
    m = m > sc ? m : sc;
    return sa + sb + sc + m <= 2 * ROT_MID * ROT_MID + 4 * ROT_MID;
}

static uint32_t check_rot(kz_validate_client *cl, kz_wire_command *cmd)
{
    uint32_t viol = 0;
    for (unsigned p = 0; p < KZ_POSE_COUNT; p++) {
        if (rot_plausible(cmd->rot[p])) {
            cl->last_rot[p] = cmd->rot[p];
        } else {
            cmd->rot[p] = cl->last_rot[p];
            viol = KZ_VIOL_ROTATION;
        }
    }
    return viol;
}

uint32_t kz_validate_command(const kz_validate_config *cfg, kz_validate_client *cl,
                             kz_wire_command *cmd, kz_time_ns now, kz_validate_result *res)
{
    KZ_ASSERT(cfg->d.resolved == KZ__VALIDATE_RESOLVED);
    kz_validate_result r = {0};
    if (!kz_validate_bucket_take(&cl->input, cfg->input_rate, cfg->input_burst, 1.0, now)) {
        r.violations = KZ_VIOL_FLOOD;
        r.drop = 1;
        goto out;
    }
    r.violations |= check_clock(cfg, cl, cmd->tick, now);
    uint32_t fixed = check_speed(cfg, cmd->move);
    fixed |= check_accel(cfg, cl, cmd->move, cmd->tick);
    fixed |= check_pose(cfg, cmd);
    fixed |= check_rot(cl, cmd);
    r.violations |= fixed;
    r.changed = fixed != 0;
    memcpy(cl->last_vel, cmd->move, sizeof cl->last_vel);
    cl->last_tick = cmd->tick;
    cl->started = 1;
out:
    if (res)
        *res = r;
    return r.violations;
}

/* ---- float input -------------------------------------------------------- */

static int all_finite(const kz_avatar_state *st)
{
    float acc = st->yaw * 0.0f;
    for (int i = 0; i < 3; i++)
        acc += st->pos[i] * 0.0f + st->vel[i] * 0.0f;
    for (unsigned p = 0; p < KZ_POSE_COUNT; p++) {
        for (int i = 0; i < 3; i++)
            acc += st->pose[p].pos[i] * 0.0f;
        for (int i = 0; i < 4; i++)
            acc += st->pose[p].rot[i] * 0.0f;
    }
    return acc == 0.0f;   /* x * 0 is NaN exactly when x is NaN or infinite */
}

static uint32_t floats_quat(float q[4])
{
    double n2 = 0;
    for (int i = 0; i < 4; i++)
        n2 += (double)q[i] * q[i];
    double n = sqrt(n2);
    if (fabs(n - 1.0) <= KZ_QUAT_NORM_TOLERANCE)
        return 0;
    if (n < 0.5) {
        q[0] = q[1] = q[2] = 0.0f;
        q[3] = 1.0f;
    } else {
        for (int i = 0; i < 4; i++)
            q[i] = (float)(q[i] / n);
    }
    return KZ_VIOL_POSE;
}

static uint32_t floats_pull(float v[3], const float from[3], double lim)
{
    double d2 = 0;
    for (int i = 0; i < 3; i++)
        d2 += ((double)v[i] - from[i]) * ((double)v[i] - from[i]);
    if (d2 <= lim * lim)
        return 0;
    double s = lim / sqrt(d2);
    for (int i = 0; i < 3; i++)
        v[i] = (float)(from[i] + ((double)v[i] - from[i]) * s);
    return 1;
}

int kz_validate_pose_floats(const kz_validate_config *cfg, kz_avatar_state *st,
                            uint32_t *violations)
{
    KZ_ASSERT(cfg->d.resolved == KZ__VALIDATE_RESOLVED);
    if (!all_finite(st)) {
        if (violations)
            *violations = KZ_VIOL_POSE;
        return KZ_ENOTFINITE;
    }
    static const float zero[3] = {0, 0, 0};
    uint32_t viol = floats_pull(st->vel, zero, cfg->max_speed) ? KZ_VIOL_SPEED : 0;
    for (unsigned p = 0; p < KZ_POSE_COUNT; p++) {
        viol |= floats_quat(st->pose[p].rot);
        for (int i = 0; i < 3; i++) {
            float *x = &st->pose[p].pos[i];
            if (fabsf(*x) > KZ_AVATAR_REACH) {
                *x = copysignf(KZ_AVATAR_REACH, *x);
                viol |= KZ_VIOL_POSE;
            }
        }
    }
    float *hy = &st->pose[KZ_POSE_HEAD].pos[1];
    if ((st->flags & KZ_AVATAR_VR) && (*hy < cfg->head_min || *hy > cfg->head_max)) {
        *hy = *hy < cfg->head_min ? cfg->head_min : cfg->head_max;
        viol |= KZ_VIOL_POSE;
    }
    for (unsigned p = KZ_POSE_LEFT_HAND; p <= KZ_POSE_RIGHT_HAND; p++)
        if (floats_pull(st->pose[p].pos, st->pose[KZ_POSE_HEAD].pos, cfg->hand_reach))
            viol |= KZ_VIOL_POSE;
    if (violations)
        *violations = viol;
    return KZ_OK;
}

/* ---- actions, grabs, teleports ----------------------------------------- */

static const uint32_t action_viol[KZ_VALIDATE_ACTIONS] = {
    [KZ_VALIDATE_CHAT] = KZ_VIOL_CHAT, [KZ_VALIDATE_EMOTE] = KZ_VIOL_EMOTE,
    [KZ_VALIDATE_VOICE] = KZ_VIOL_VOICE, [KZ_VALIDATE_GRAB] = KZ_VIOL_GRAB,
};

uint32_t kz_validate_action(const kz_validate_config *cfg, kz_validate_client *cl,
                            unsigned action, uint32_t amount, kz_time_ns now)
{
    KZ_ASSERT(cfg->d.resolved == KZ__VALIDATE_RESOLVED);
    KZ_ASSERT(action < KZ_VALIDATE_ACTIONS);
    const kz_validate_rate *r = &cfg->rate[action];
    if (kz_validate_bucket_take(&cl->action[action], r->per_second, r->burst, amount, now))
        return 0;
    return action_viol[action];
}

uint32_t kz_validate_grab(const kz_validate_config *cfg, uint32_t self, const int32_t root[3],
                          const int16_t hand_rel[3], const int32_t obj_pos[3], uint32_t holder)
{
    KZ_ASSERT(cfg->d.resolved == KZ__VALIDATE_RESOLVED);
    if (holder != 0 && holder != self)
        return KZ_VIOL_GRAB;
    /* In relative units (1/1024 m): positions are 1/512 m. */
    double d2 = 0;
    for (int i = 0; i < 3; i++) {
        double d = (double)obj_pos[i] * 2.0 - ((double)root[i] * 2.0 + hand_rel[i]);
        d2 += d * d;
    }
    return d2 <= cfg->d.grab_reach2 ? 0 : KZ_VIOL_GRAB;
}

void kz_validate_portal_grant(kz_validate_client *cl, uint32_t portal, kz_time_ns expires)
{
    KZ_ASSERT(portal != 0);
    unsigned pick = 0;
    for (unsigned i = 0; i < KZ_VALIDATE_GRANTS; i++) {
        if (cl->grant_portal[i] == 0) {
            pick = i;
            break;
        }
        if (cl->grant_expires[i] < cl->grant_expires[pick])
            pick = i;
    }
    cl->grant_portal[pick] = portal;
    cl->grant_expires[pick] = expires;
}

uint32_t kz_validate_teleport(kz_validate_client *cl, uint32_t portal, kz_time_ns now)
{
    for (unsigned i = 0; i < KZ_VALIDATE_GRANTS; i++) {
        if (portal != 0 && cl->grant_portal[i] == portal && now <= cl->grant_expires[i]) {
            cl->grant_portal[i] = 0;
            return 0;
        }
    }
    return KZ_VIOL_TELEPORT;
}

/* ---- consequences -------------------------------------------------------- */

double kz_validate_score(const kz_validate_config *cfg, const kz_validate_client *cl,
                         kz_time_ns now)
{
    if (cl->score == 0.0 || now <= cl->score_time)
        return cl->score;
    return cl->score * exp2(-(double)(now - cl->score_time) / cfg->d.half_life_ns);
}

kz_validate_verdict kz_validate_consequence(const kz_validate_config *cfg, kz_validate_client *cl,
                                            uint32_t violations, kz_time_ns now, uint32_t *reason)
{
    KZ_ASSERT(cfg->d.resolved == KZ__VALIDATE_RESOLVED);
    if (reason)
        *reason = cl->kicked;
    if (cl->kicked)
        return KZ_VALIDATE_KICK;
    violations &= KZ_VIOL_ALL;
    if (!violations)
        return KZ_VALIDATE_NONE;
    float best = 0.0f;
    uint32_t best_kind = 0;
    double added = 0.0;
    for (unsigned k = 0; k < KZ_VIOL_KINDS; k++) {
        if (!(violations & (1u << k)))
            continue;
        cl->counts[k]++;
        float pts = cfg->points[k];
        /* struck[] holds now + 1 so that 0 can mean "never". */
        if (pts <= 0.0f || (cl->struck[k] && now + 1u - cl->struck[k] < cfg->d.cooldown_ns))
            continue;
        cl->struck[k] = now + 1u;
        added += pts;
        if (pts > best) {
            best = pts;
            best_kind = 1u << k;
        }
    }
    if (added == 0.0)
        return KZ_VALIDATE_CORRECT;
    cl->score = kz_validate_score(cfg, cl, now) + added;
    if (now > cl->score_time)
        cl->score_time = now;
    if (cl->score < cfg->kick_score)
        return KZ_VALIDATE_STRIKE;
    cl->kicked = best_kind;
    if (reason)
        *reason = best_kind;
    return KZ_VALIDATE_KICK;
}

const char *kz_validate_reason_text(uint32_t reason)
{
    switch (reason) {
    case KZ_VIOL_SPEED: return "kicked: moving faster than this world allows";
    case KZ_VIOL_ACCEL: return "kicked: impossible acceleration";
    case KZ_VIOL_POSE: return "kicked: impossible body pose";
    case KZ_VIOL_ROTATION: return "kicked: malformed rotations";
    case KZ_VIOL_TELEPORT: return "kicked: teleport without a portal";
    case KZ_VIOL_CLOCK: return "kicked: client clock runs too fast (speed hack)";
    case KZ_VIOL_FLOOD: return "kicked: too many inputs";
    case KZ_VIOL_CHAT: return "kicked: chat flood";
    case KZ_VIOL_EMOTE: return "kicked: emote flood";
    case KZ_VIOL_VOICE: return "kicked: voice flood";
    case KZ_VIOL_GRAB: return "kicked: invalid grabs";
    default: return "kicked by the server";
    }
}
