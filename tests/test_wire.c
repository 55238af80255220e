/*
 * World message codecs (sim/wire.c): the welcome record, INPUT messages
 * with their redundant commands, the snapshot header, the float-to-command
 * conversion and the integer integration both ends run.
 *
 * The INPUT layout is pinned by a naive bit-at-a-time reference encoder
 * written from the layout in sim/wire.c (header: ack 32, count - 1 in 3,
 * newest tick 32; per command four groups, each a "same as the newer
 * command" bit followed, when clear, by the group's fields). The same
 * reference builds the hostile messages, so each refusal test breaks
 * exactly one rule and nothing else. Random commands are seeded; poses
 * carry real kz_quat_encode codes.
 *
 * The snapshot codec is filled by hand (30 Hz, 22-bit positions), so these
 * tests do not depend on kz_snap_codec_init.
 */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <kizuna/quant.h>

#include "sim/wire.h"

/* ---- helpers ----------------------------------------------------------- */

#define PI 3.14159265358979323846

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dull;
}

/* Uniform in [0, 1). */
static double rng_unit(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) * 0x1p-53;
}

static int32_t rng_range(uint64_t *s, int32_t lo, int32_t hi)
{
    return lo + (int32_t)(rng_next(s) % (uint64_t)(hi - lo + 1));
}

static kz_snap_codec test_codec(void)
{
    kz_snap_codec c = {
        .tick_hz = 30, .n_slots = 100, .slot_bits = 7, .pos_bits = 22,
        .pos_max = (1 << 21) - 1, .bound = 4095.0f,
    };
    return c;
}

static void random_unit_quat(uint64_t *s, float q[4])
{
    double v[4], n2;
    do {
        n2 = 0;
        for (int i = 0; i < 4; i++) {
            v[i] = 2.0 * rng_unit(s) - 1.0;
            n2 += v[i] * v[i];
        }
    } while (n2 > 1.0 || n2 < 1e-4);
    for (int i = 0; i < 4; i++)
        q[i] = (float)(v[i] / sqrt(n2));
}

static uint32_t random_rot_code(uint64_t *s)
{
    float q[4];
    uint64_t code = 0;
    random_unit_quat(s, q);
    cr_assert_eq(kz_quat_encode(q, KZ_SNAP_ROT_K, &code), KZ_OK);
    return (uint32_t)code;
}

/* The rule the reader enforces: no kept component is all ones. */
static int rot_code_ok(uint32_t code)
{
    const uint32_t all = (1u << KZ_SNAP_ROT_K) - 1u;
    for (unsigned i = 0; i < 3; i++)
        if (((code >> (i * KZ_SNAP_ROT_K)) & all) == all)
            return 0;
    return 1;
}

/* A command with every field random (flags VR or 0, pad zero). */
static void random_command(uint64_t *s, kz_wire_command *c)
{
    memset(c, 0, sizeof *c);
    for (int i = 0; i < 3; i++)
        c->move[i] = (int16_t)rng_range(s, -32767, 32767);
    c->yaw = (uint16_t)rng_next(s);
    c->anim = (uint16_t)rng_next(s);
    c->flags = (rng_next(s) & 1) ? KZ_AVATAR_VR : 0;
    for (unsigned p = 0; p < KZ_POSE_COUNT; p++) {
        for (int i = 0; i < 3; i++)
            c->rel[p][i] = (int16_t)rng_range(s, -KZ_SNAP_REL_MAX, KZ_SNAP_REL_MAX);
        c->rot[p] = random_rot_code(s);
    }
}

/* Groups of a command, in wire order; a set bit in a mask means "same as
 * the newer command". */
#define G_MOVE 1u
#define G_YAW 2u
#define G_ANIM 4u
#define G_POSE 8u
#define G_ALL 15u

static void copy_groups(kz_wire_command *c, const kz_wire_command *from, unsigned groups)
{
    if (groups & G_MOVE)
        memcpy(c->move, from->move, sizeof c->move);
    if (groups & G_YAW)
        c->yaw = from->yaw;
    if (groups & G_ANIM) {
        c->anim = from->anim;
        c->flags = from->flags;
    }
    if (groups & G_POSE) {
        memcpy(c->rel, from->rel, sizeof c->rel);
        memcpy(c->rot, from->rot, sizeof c->rot);
    }
}

static unsigned same_groups(const kz_wire_command *c, const kz_wire_command *ref)
{
    if (!ref)
        return 0;
    unsigned m = 0;
    if (memcmp(c->move, ref->move, sizeof c->move) == 0)
        m |= G_MOVE;
    if (c->yaw == ref->yaw)
        m |= G_YAW;
    if (c->anim == ref->anim && c->flags == ref->flags)
        m |= G_ANIM;
    if (memcmp(c->rel, ref->rel, sizeof c->rel) == 0 && memcmp(c->rot, ref->rot, sizeof c->rot) == 0)
        m |= G_POSE;
    return m;
}

/* Modes of random_input: neighbours all different, all identical, or
 * each group copied from the newer command at random. */
enum { ALL_DIFFERENT, ALL_SAME, MIXED };

static void random_input(uint64_t *s, uint32_t count, int mode, kz_wire_input *in)
{
    memset(in, 0, sizeof *in);
    in->ack = (uint32_t)rng_next(s);
    in->count = count;
    uint32_t tick = (uint32_t)rng_range(s, (int32_t)count, 1 << 30);
    for (uint32_t i = 0; i < count; i++) {
        kz_wire_command *c = &in->cmd[i];
        random_command(s, c);
        if (i > 0 && mode == ALL_SAME)
            copy_groups(c, &in->cmd[i - 1], G_ALL);
        else if (i > 0 && mode == MIXED)
            copy_groups(c, &in->cmd[i - 1], (unsigned)(rng_next(s) & G_ALL));
        else if (i > 0)
            /* Random fields can collide (VR flag: one in two). */
            while (same_groups(c, &in->cmd[i - 1]) != 0)
                random_command(s, c);
        c->tick = tick - i;
    }
}

/* Naive reference writer: bit i of the stream is bit (i % 8) of byte i / 8. */
typedef struct {
    uint8_t buf[KZ_INPUT_MAX_BYTES + 64];
    size_t bits;
} ref_bits;

static void ref_put(ref_bits *r, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++, r->bits++)
        if ((v >> i) & 1)
            r->buf[r->bits / 8] |= (uint8_t)(1u << (r->bits % 8));
}

static size_t ref_len(const ref_bits *r)
{
    return (r->bits + 7) / 8;
}

/* Writes one command; groups in `same` are sent as "same" (and omitted),
 * whatever the command holds. Field codes are written as the struct
 * holds them, so hostile codes (rel 2049, an all-ones rotation component)
 * can be expressed. */
static void ref_command(ref_bits *r, const kz_wire_command *c, unsigned same)
{
    ref_put(r, (same & G_MOVE) != 0, 1);
    if (!(same & G_MOVE))
        for (int i = 0; i < 3; i++)
            ref_put(r, (uint16_t)c->move[i], 16);
    ref_put(r, (same & G_YAW) != 0, 1);
    if (!(same & G_YAW))
        ref_put(r, c->yaw, 16);
    ref_put(r, (same & G_ANIM) != 0, 1);
    if (!(same & G_ANIM)) {
        ref_put(r, c->anim, 16);
        ref_put(r, (c->flags & KZ_AVATAR_VR) != 0, 1);
    }
    ref_put(r, (same & G_POSE) != 0, 1);
    if (!(same & G_POSE))
        for (unsigned p = 0; p < KZ_POSE_COUNT; p++) {
            for (int i = 0; i < 3; i++)
                ref_put(r, (uint64_t)((int32_t)c->rel[p][i] + KZ_SNAP_REL_MAX) & 0x1fffu, 13);
            ref_put(r, c->rot[p], 32);
        }
}

/* Reference encoding of `in`. same_override[i], when not ~0u, replaces
 * the "same" mask of command i. Returns the byte length. */
static size_t ref_input(const kz_wire_input *in, const unsigned *same_override, ref_bits *r)
{
    memset(r, 0, sizeof *r);
    ref_put(r, in->ack, 32);
    ref_put(r, in->count - 1u, 3);
    ref_put(r, in->cmd[0].tick, 32);
    for (uint32_t i = 0; i < in->count; i++) {
        unsigned same = same_groups(&in->cmd[i], i ? &in->cmd[i - 1] : NULL);
        if (same_override && same_override[i] != ~0u)
            same = same_override[i];
        ref_command(r, &in->cmd[i], same);
    }
    return ref_len(r);
}

/* Bits of one command with nothing shared, and of the message header. */
#define CMD_FULL_BITS (4u + 48u + 16u + 17u + KZ_POSE_COUNT * (3u * 13u + KZ_QUAT_BITS(KZ_SNAP_ROT_K)))
#define INPUT_HEAD_BITS (32u + 3u + 32u)

static size_t write_ok(const kz_wire_input *in, uint8_t *buf)
{
    int n = kz_wire_input_write(in, buf, KZ_INPUT_MAX_BYTES);
    cr_assert_gt(n, 0, "write failed: %d", n);
    return (size_t)n;
}

static void assert_input_eq(const kz_wire_input *a, const kz_wire_input *b)
{
    cr_assert_eq(a->ack, b->ack);
    cr_assert_eq(a->count, b->count);
    for (uint32_t i = 0; i < a->count; i++)
        cr_assert_arr_eq(&a->cmd[i], &b->cmd[i], sizeof a->cmd[i], "command %u differs", i);
}

/* ---- welcome ----------------------------------------------------------- */

static kz_wire_welcome sample_welcome(void)
{
    kz_wire_welcome w = {
        .version = KZ_WORLD_VERSION, .tick_hz = 30, .tick = 0xdeadbeefu, .self = 42,
        .n_slots = 256, .history = 32, .bound = 2000.0f, .max_speed = 8.0f,
    };
    return w;
}

static int welcome_rt(const kz_wire_welcome *w)
{
    uint8_t buf[KZ_WELCOME_BYTES];
    kz_wire_welcome out;
    kz_wire_welcome_write(w, buf);
    return kz_wire_welcome_read(buf, sizeof buf, &out);
}

Test(wire, welcome_round_trips_with_a_pinned_layout)
{
    kz_wire_welcome w = sample_welcome(), out;
    uint8_t buf[KZ_WELCOME_BYTES];
    kz_wire_welcome_write(&w, buf);
    /* Eight little-endian 32-bit words; 2000.0f = 0x44fa0000, 8.0f = 0x41000000. */
    static const uint8_t want[KZ_WELCOME_BYTES] = {
        1, 0, 0, 0, 30, 0, 0, 0, 0xef, 0xbe, 0xad, 0xde, 42, 0, 0, 0,
        0, 1, 0, 0, 32, 0, 0, 0, 0x00, 0x00, 0xfa, 0x44, 0x00, 0x00, 0x00, 0x41,
    };
    cr_assert_arr_eq(buf, want, sizeof want);
    memset(&out, 0xa5, sizeof out);
    cr_assert_eq(kz_wire_welcome_read(buf, sizeof buf, &out), KZ_OK);
    cr_assert_arr_eq(&out, &w, sizeof w);

    /* The edges of every range are accepted. */
    kz_wire_welcome e = w;
    e.tick_hz = 10, e.n_slots = 1, e.history = 4, e.self = 0xffffffffu;
    e.bound = KZ_SNAP_MAX_BOUND, e.max_speed = nextafterf(128.0f, 0.0f);
    cr_assert_eq(welcome_rt(&e), KZ_OK);
    e.tick_hz = 128, e.n_slots = KZ_SNAP_MAX_SLOTS, e.history = 64;
    e.bound = FLT_MIN, e.max_speed = FLT_TRUE_MIN;
    cr_assert_eq(welcome_rt(&e), KZ_OK);
}

Test(wire, welcome_rejects_every_single_field_violation)
{
    const float nan = NAN, inf = INFINITY;
    const float bad_bound[] = {nan, inf, -inf, 0.0f, -0.0f, -1.0f,
                               nextafterf(KZ_SNAP_MAX_BOUND, INFINITY), 1e30f};
    const float bad_speed[] = {nan, inf, -inf, 0.0f, -0.0f, -8.0f, 128.0f, 1000.0f};
    kz_wire_welcome w;

    w = sample_welcome(), w.version = 0;
    cr_assert_eq(welcome_rt(&w), KZ_EPROTO);
    w = sample_welcome(), w.version = KZ_WORLD_VERSION + 1;
    cr_assert_eq(welcome_rt(&w), KZ_EPROTO);
    w = sample_welcome(), w.tick_hz = 9;
    cr_assert_eq(welcome_rt(&w), KZ_EPROTO);
    w = sample_welcome(), w.tick_hz = 129;
    cr_assert_eq(welcome_rt(&w), KZ_EPROTO);
    w = sample_welcome(), w.tick_hz = 0;
    cr_assert_eq(welcome_rt(&w), KZ_EPROTO);
    w = sample_welcome(), w.self = 0;
    cr_assert_eq(welcome_rt(&w), KZ_EPROTO);
    w = sample_welcome(), w.n_slots = 0;
    cr_assert_eq(welcome_rt(&w), KZ_EPROTO);
    w = sample_welcome(), w.n_slots = KZ_SNAP_MAX_SLOTS + 1;
    cr_assert_eq(welcome_rt(&w), KZ_EPROTO);
    w = sample_welcome(), w.n_slots = 0xffffffffu;
    cr_assert_eq(welcome_rt(&w), KZ_EPROTO);
    w = sample_welcome(), w.history = 3;
    cr_assert_eq(welcome_rt(&w), KZ_EPROTO);
    w = sample_welcome(), w.history = 65;
    cr_assert_eq(welcome_rt(&w), KZ_EPROTO);
    for (size_t i = 0; i < sizeof bad_bound / sizeof bad_bound[0]; i++) {
        w = sample_welcome(), w.bound = bad_bound[i];
        cr_assert_eq(welcome_rt(&w), KZ_EPROTO, "bound %g accepted", (double)bad_bound[i]);
    }
    for (size_t i = 0; i < sizeof bad_speed / sizeof bad_speed[0]; i++) {
        w = sample_welcome(), w.max_speed = bad_speed[i];
        cr_assert_eq(welcome_rt(&w), KZ_EPROTO, "speed %g accepted", (double)bad_speed[i]);
    }
}

Test(wire, welcome_rejects_every_wrong_length)
{
    kz_wire_welcome w = sample_welcome(), out;
    uint8_t buf[41];
    memset(buf, 0, sizeof buf);
    kz_wire_welcome_write(&w, buf);
    for (size_t len = 0; len <= 40; len++) {
        memset(&out, 0xa5, sizeof out);
        int rc = kz_wire_welcome_read(buf, len, &out);
        if (len == KZ_WELCOME_BYTES) {
            cr_assert_eq(rc, KZ_OK);
        } else {
            cr_assert_eq(rc, KZ_EPROTO, "length %zu accepted", len);
        }
    }
}

/* ---- input: round trips ------------------------------------------------ */

Test(wire, input_round_trips_every_count_and_sharing_mode)
{
    uint64_t s = 0x1234567887654321ull;
    for (int mode = ALL_DIFFERENT; mode <= MIXED; mode++)
        for (uint32_t count = 1; count <= KZ_INPUT_MAX_COMMANDS; count++)
            for (int rep = 0; rep < 50; rep++) {
                kz_wire_input in, out;
                uint8_t buf[KZ_INPUT_MAX_BYTES];
                ref_bits r;
                random_input(&s, count, mode, &in);
                size_t n = write_ok(&in, buf);
                /* Differential: the reference encoder gives the same bytes. */
                cr_assert_eq(n, ref_input(&in, NULL, &r));
                cr_assert_arr_eq(buf, r.buf, n, "mode %d count %u: bytes differ", mode, count);
                memset(&out, 0xa5, sizeof out);
                cr_assert_eq(kz_wire_input_read(buf, n, &out), KZ_OK, "mode %d count %u", mode, count);
                assert_input_eq(&in, &out);
            }
}

Test(wire, input_identical_neighbours_take_the_same_bits_path)
{
    uint64_t s = 77;
    for (uint32_t count = 1; count <= KZ_INPUT_MAX_COMMANDS; count++) {
        kz_wire_input same, diff;
        uint8_t buf[KZ_INPUT_MAX_BYTES];
        random_input(&s, count, ALL_SAME, &same);
        random_input(&s, count, ALL_DIFFERENT, &diff);
        /* An identical older command costs its four "same" bits only. */
        cr_assert_eq(write_ok(&same, buf), (INPUT_HEAD_BITS + CMD_FULL_BITS + (count - 1) * 4u + 7) / 8);
        cr_assert_eq(write_ok(&diff, buf), (INPUT_HEAD_BITS + count * CMD_FULL_BITS + 7) / 8);
    }
    /* Each group alone is shared: the message shrinks by that group's fields. */
    const size_t group_bits[4] = {48, 16, 17, KZ_POSE_COUNT * (3u * 13u + 32u)};
    for (unsigned g = 0; g < 4; g++) {
        kz_wire_input in, out;
        uint8_t buf[KZ_INPUT_MAX_BYTES];
        random_input(&s, 2, ALL_DIFFERENT, &in);
        copy_groups(&in.cmd[1], &in.cmd[0], 1u << g);
        size_t n = write_ok(&in, buf);
        cr_assert_eq(n, (INPUT_HEAD_BITS + 2 * CMD_FULL_BITS - group_bits[g] + 7) / 8, "group %u", g);
        cr_assert_eq(kz_wire_input_read(buf, n, &out), KZ_OK);
        assert_input_eq(&in, &out);
    }
}

Test(wire, input_worst_case_fits_the_stated_maximum)
{
    /* Eight commands, nothing shared, every field at its widest code. */
    uint64_t s = 5;
    kz_wire_input in;
    uint8_t buf[KZ_INPUT_MAX_BYTES];
    random_input(&s, KZ_INPUT_MAX_COMMANDS, ALL_DIFFERENT, &in);
    in.ack = 0xffffffffu;
    size_t n = write_ok(&in, buf);
    cr_assert_eq(n, (INPUT_HEAD_BITS + KZ_INPUT_MAX_COMMANDS * CMD_FULL_BITS + 7) / 8);
    cr_assert_leq(n, KZ_INPUT_MAX_BYTES);
    /* And it is the worst case: no message is longer than all-different. */
    for (int rep = 0; rep < 2000; rep++) {
        kz_wire_input m;
        random_input(&s, 1 + (uint32_t)(rng_next(&s) % KZ_INPUT_MAX_COMMANDS), MIXED, &m);
        cr_assert_leq(write_ok(&m, buf), n);
    }
}

/* ---- input: the writer's refusals --------------------------------------- */

Test(wire, input_write_refuses_bad_counts_and_ticks)
{
    uint64_t s = 9;
    kz_wire_input in;
    uint8_t buf[KZ_INPUT_MAX_BYTES];
    random_input(&s, KZ_INPUT_MAX_COMMANDS, MIXED, &in);
    in.count = 0;
    cr_assert_eq(kz_wire_input_write(&in, buf, sizeof buf), KZ_EINVAL);
    in.count = KZ_INPUT_MAX_COMMANDS + 1;
    cr_assert_eq(kz_wire_input_write(&in, buf, sizeof buf), KZ_EINVAL);
    in.count = KZ_INPUT_MAX_COMMANDS;
    for (uint32_t i = 1; i < in.count; i++) {
        const uint32_t bad[] = {in.cmd[i - 1].tick, in.cmd[i - 1].tick + 1u, in.cmd[i - 1].tick - 2u, 0};
        for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
            kz_wire_input m = in;
            m.cmd[i].tick = bad[b];
            cr_assert_eq(kz_wire_input_write(&m, buf, sizeof buf), KZ_EINVAL,
                         "tick %u after %u accepted at %u", bad[b], in.cmd[i - 1].tick, i);
        }
    }
    /* A buffer one byte too small is refused too. */
    size_t n = write_ok(&in, buf);
    cr_assert_eq(kz_wire_input_write(&in, buf, n - 1), KZ_EINVAL);
    cr_assert_eq(kz_wire_input_write(&in, buf, n), (int)n);
}

/* Only the VR flag travels. Commands differing in other flag bits (the
 * server's) still share their anim group, and what is written reads back
 * with the VR bit alone. */
Test(wire, input_write_sends_only_the_vr_flag)
{
    uint64_t s = 26;
    kz_wire_input in, out;
    uint8_t buf[KZ_INPUT_MAX_BYTES];
    random_input(&s, 3, ALL_SAME, &in);
    in.cmd[0].flags = KZ_AVATAR_VR | KZ_AVATAR_SPEAKING;
    in.cmd[1].flags = KZ_AVATAR_VR;
    in.cmd[2].flags = KZ_AVATAR_VR | 0x80;
    size_t n = write_ok(&in, buf);
    cr_assert_eq(n, (INPUT_HEAD_BITS + CMD_FULL_BITS + 2 * 4u + 7) / 8);
    cr_assert_eq(kz_wire_input_read(buf, n, &out), KZ_OK);
    for (uint32_t i = 0; i < 3; i++)
        cr_assert_eq(out.cmd[i].flags, KZ_AVATAR_VR);
}

/* A writer should not produce what the reader refuses: ticks that reach 0
 * or wrap (newest tick < count). */
Test(wire, input_write_refuses_ticks_reaching_zero)
{
    uint64_t s = 10;
    kz_wire_input in;
    uint8_t buf[KZ_INPUT_MAX_BYTES];
    random_input(&s, 3, MIXED, &in);
    for (uint32_t newest = 0; newest < 3; newest++) {
        for (uint32_t i = 0; i < 3; i++)
            in.cmd[i].tick = newest - i;
        cr_assert_eq(kz_wire_input_write(&in, buf, sizeof buf), KZ_EINVAL,
                     "newest tick %u with 3 commands written", newest);
    }
}

/* ---- input: the reader's refusals ---------------------------------------- */

Test(wire, input_read_rejects_every_truncation_and_trailing_byte)
{
    uint64_t s = 11;
    for (uint32_t count = 1; count <= KZ_INPUT_MAX_COMMANDS; count++) {
        kz_wire_input in, out;
        uint8_t buf[KZ_INPUT_MAX_BYTES + 1];
        random_input(&s, count, MIXED, &in);
        size_t n = write_ok(&in, buf);
        for (size_t len = 0; len < n; len++) {
            /* An exact-size copy, so ASan sees any read past the end. */
            uint8_t *t = malloc(len ? len : 1);
            memcpy(t, buf, len);
            cr_assert_eq(kz_wire_input_read(t, len, &out), KZ_EPROTO, "count %u: %zu of %zu bytes accepted", count, len, n);
            free(t);
        }
        buf[n] = 0;
        cr_assert_eq(kz_wire_input_read(buf, n + 1, &out), KZ_EPROTO, "zero trailing byte accepted");
        buf[n] = 0xff;
        cr_assert_eq(kz_wire_input_read(buf, n + 1, &out), KZ_EPROTO, "0xff trailing byte accepted");
    }
}

Test(wire, input_read_rejects_nonzero_padding)
{
    uint64_t s = 12;
    int seen = 0;
    for (uint32_t count = 1; count <= KZ_INPUT_MAX_COMMANDS; count++) {
        kz_wire_input in, out;
        uint8_t buf[KZ_INPUT_MAX_BYTES];
        ref_bits r;
        random_input(&s, count, ALL_DIFFERENT, &in);
        size_t n = write_ok(&in, buf);
        ref_input(&in, NULL, &r);
        for (size_t bit = r.bits; bit < n * 8; bit++, seen++) {
            buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            cr_assert_eq(kz_wire_input_read(buf, n, &out), KZ_EPROTO, "padding bit %zu accepted", bit);
            buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
        cr_assert_eq(kz_wire_input_read(buf, n, &out), KZ_OK);
    }
    cr_assert_gt(seen, 0, "no message had padding");
}

Test(wire, input_read_rejects_same_bit_in_the_newest_command)
{
    uint64_t s = 13;
    for (uint32_t count = 1; count <= 3; count++)
        for (unsigned g = 1; g <= G_ALL; g++) {
            kz_wire_input in, out;
            ref_bits r;
            unsigned over[KZ_INPUT_MAX_COMMANDS];
            memset(over, 0xff, sizeof over);
            random_input(&s, count, MIXED, &in);
            over[0] = g;
            size_t n = ref_input(&in, over, &r);
            cr_assert_eq(kz_wire_input_read(r.buf, n, &out), KZ_EPROTO, "count %u same mask %u accepted", count, g);
        }
}

Test(wire, input_read_rejects_all_ones_rotation_components)
{
    uint64_t s = 14;
    const uint32_t all = (1u << KZ_SNAP_ROT_K) - 1u;
    for (unsigned p = 0; p < KZ_POSE_COUNT; p++)
        for (unsigned comp = 0; comp < 3; comp++)
            for (uint32_t at = 0; at < 2; at++) {
                kz_wire_input in, out;
                ref_bits r;
                random_input(&s, 2, ALL_DIFFERENT, &in);
                in.cmd[at].rot[p] |= all << (comp * KZ_SNAP_ROT_K);
                size_t n = ref_input(&in, NULL, &r);
                cr_assert_eq(kz_wire_input_read(r.buf, n, &out), KZ_EPROTO,
                             "rot code 0x%08x accepted", in.cmd[at].rot[p]);
                /* One below all ones, any dropped index: valid. */
                in.cmd[at].rot[p] &= ~(1u << (comp * KZ_SNAP_ROT_K));
                in.cmd[at].rot[p] ^= (rng_next(&s) & 3u) << (3 * KZ_SNAP_ROT_K);
                n = ref_input(&in, NULL, &r);
                cr_assert_eq(kz_wire_input_read(r.buf, n, &out), KZ_OK);
                cr_assert_eq(out.cmd[at].rot[p], in.cmd[at].rot[p]);
            }
}

Test(wire, input_read_rejects_offsets_beyond_reach)
{
    uint64_t s = 15;
    /* Codes 4097 and 8191 (offsets 2049 and 6143) are out of reach; 0 and
     * 4096 (offsets -2048 and 2048) are the edges. */
    const int16_t bad[] = {KZ_SNAP_REL_MAX + 1, 8191 - KZ_SNAP_REL_MAX};
    for (unsigned p = 0; p < KZ_POSE_COUNT; p++)
        for (int axis = 0; axis < 3; axis++)
            for (size_t b = 0; b < 2; b++) {
                kz_wire_input in, out;
                ref_bits r;
                random_input(&s, 3, ALL_DIFFERENT, &in);
                in.cmd[2].rel[p][axis] = bad[b];
                size_t n = ref_input(&in, NULL, &r);
                cr_assert_eq(kz_wire_input_read(r.buf, n, &out), KZ_EPROTO, "offset %d accepted", bad[b]);
                in.cmd[2].rel[p][axis] = (int16_t)(b ? KZ_SNAP_REL_MAX : -KZ_SNAP_REL_MAX);
                n = ref_input(&in, NULL, &r);
                cr_assert_eq(kz_wire_input_read(r.buf, n, &out), KZ_OK);
                cr_assert_eq(out.cmd[2].rel[p][axis], in.cmd[2].rel[p][axis]);
            }
}

/* Ticks start at 1: the oldest command's tick (newest - count + 1) must
 * be at least 1. A newest tick below count - 1 would wrap. */
Test(wire, input_read_rejects_ticks_that_wrap)
{
    uint64_t s = 16;
    for (uint32_t count = 2; count <= KZ_INPUT_MAX_COMMANDS; count++)
        for (uint32_t newest = 0; newest + 1 < count; newest++) {
            kz_wire_input in, out;
            ref_bits r;
            random_input(&s, count, MIXED, &in);
            in.cmd[0].tick = newest;
            size_t n = ref_input(&in, NULL, &r);
            cr_assert_eq(kz_wire_input_read(r.buf, n, &out), KZ_EPROTO,
                         "count %u newest tick %u accepted", count, newest);
        }
}

Test(wire, input_read_rejects_an_oldest_tick_of_zero)
{
    uint64_t s = 17;
    for (uint32_t count = 1; count <= KZ_INPUT_MAX_COMMANDS; count++) {
        kz_wire_input in, out;
        ref_bits r;
        random_input(&s, count, MIXED, &in);
        in.cmd[0].tick = count;  /* oldest = 1: fine */
        size_t n = ref_input(&in, NULL, &r);
        cr_assert_eq(kz_wire_input_read(r.buf, n, &out), KZ_OK);
        cr_assert_eq(out.cmd[count - 1].tick, 1u);
        in.cmd[0].tick = count - 1;  /* oldest = 0 */
        n = ref_input(&in, NULL, &r);
        cr_assert_eq(kz_wire_input_read(r.buf, n, &out), KZ_EPROTO,
                     "count %u newest tick %u (oldest 0) accepted", count, count - 1);
    }
}

Test(wire, input_read_rejects_lengths_beyond_the_maximum_before_reading)
{
    uint64_t s = 18;
    kz_wire_input in, out;
    uint8_t buf[KZ_INPUT_MAX_BYTES + 1];
    memset(buf, 0, sizeof buf);
    random_input(&s, 8, MIXED, &in);
    write_ok(&in, buf);
    cr_assert_eq(kz_wire_input_read(buf, KZ_INPUT_MAX_BYTES + 1, &out), KZ_EPROTO);
    /* The length is checked before any byte is read: with a 16-byte
     * buffer and a lying length, ASan would report a read past the end. */
    uint8_t *small = malloc(16);
    memcpy(small, buf, 16);
    cr_assert_eq(kz_wire_input_read(small, SIZE_MAX, &out), KZ_EPROTO);
    cr_assert_eq(kz_wire_input_read(small, KZ_INPUT_MAX_BYTES + 1, &out), KZ_EPROTO);
    free(small);
}

/* The encoding is canonical: a group equal to the newer command's is sent
 * as "same", so a message spelling it out is not one the writer makes. */
Test(wire, input_read_rejects_a_spelled_out_copy_of_the_newer_command)
{
    uint64_t s = 19;
    for (unsigned g = 0; g < 4; g++) {
        kz_wire_input in, out;
        ref_bits r;
        unsigned over[KZ_INPUT_MAX_COMMANDS];
        memset(over, 0xff, sizeof over);
        random_input(&s, 2, ALL_DIFFERENT, &in);
        copy_groups(&in.cmd[1], &in.cmd[0], 1u << g);
        over[1] = 0;  /* every group spelled out */
        size_t n = ref_input(&in, over, &r);
        cr_assert_eq(kz_wire_input_read(r.buf, n, &out), KZ_EPROTO,
                     "group %u equal to the newer command but spelled out accepted", g);
    }
}

/* Every single-bit flip of a valid message is refused, or decodes to a
 * message whose encoding is exactly the flipped bytes. The messages
 * include neighbours that differ only in the VR flag (one bit). */
Test(wire, input_single_bit_flips_are_rejected_or_canonical)
{
    uint64_t s = 20;
    for (int rep = 0; rep < 40; rep++) {
        kz_wire_input in, out;
        uint8_t buf[KZ_INPUT_MAX_BYTES], again[KZ_INPUT_MAX_BYTES];
        uint32_t count = 1 + (uint32_t)rep % KZ_INPUT_MAX_COMMANDS;
        random_input(&s, count, rep % 3, &in);
        if (rep % 4 == 3 && count > 1) {
            /* The user toggles VR: only the flag differs. */
            copy_groups(&in.cmd[1], &in.cmd[0], G_ALL);
            in.cmd[1].flags ^= KZ_AVATAR_VR;
        }
        size_t n = write_ok(&in, buf);
        for (size_t bit = 0; bit < n * 8; bit++) {
            buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            if (kz_wire_input_read(buf, n, &out) == KZ_OK) {
                int m = kz_wire_input_write(&out, again, sizeof again);
                cr_assert(m == (int)n && memcmp(again, buf, n) == 0,
                          "rep %d: bit %zu flipped is accepted but re-encodes to %d other bytes (not those %zu)",
                          rep, bit, m, n);
            }
            buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
    }
}

/* ---- command from floats ----------------------------------------------- */

static kz_avatar_state rest_state(void)
{
    kz_avatar_state a;
    memset(&a, 0, sizeof a);
    for (unsigned p = 0; p < KZ_POSE_COUNT; p++)
        a.pose[p].rot[3] = 1.0f;
    a.kind = KZ_KIND_AVATAR;
    return a;
}

Test(wire, command_from_turns_non_finite_velocity_into_zero)
{
    const float bad[] = {NAN, -NAN, INFINITY, -INFINITY};
    kz_wire_command c;
    for (size_t i = 0; i < 4; i++) {
        kz_avatar_state a = rest_state();
        a.vel[0] = a.vel[1] = a.vel[2] = bad[i];
        kz_wire_command_from(&a, 8.0f, &c);
        cr_assert(c.move[0] == 0 && c.move[1] == 0 && c.move[2] == 0, "%g gave a move", (double)bad[i]);
        /* One bad component is dropped; the others still count. */
        a.vel[0] = 1.0f, a.vel[1] = bad[i], a.vel[2] = -2.0f;
        kz_wire_command_from(&a, 8.0f, &c);
        cr_assert_eq(c.move[0], KZ_SNAP_VEL_UNITS);
        cr_assert_eq(c.move[1], 0);
        cr_assert_eq(c.move[2], -2 * KZ_SNAP_VEL_UNITS);
    }
}

Test(wire, command_from_clamps_speed_to_the_maximum)
{
    uint64_t s = 21;
    const float maxes[] = {0.5f, 3.0f, 8.0f, 20.0f, 127.0f};
    for (size_t m = 0; m < sizeof maxes / sizeof maxes[0]; m++)
        for (int rep = 0; rep < 2000; rep++) {
            kz_avatar_state a = rest_state();
            double want = maxes[m] * (0.02 + 3.0 * rng_unit(&s)), n2 = 0;
            double d[3];
            for (int i = 0; i < 3; i++) {
                d[i] = 2.0 * rng_unit(&s) - 1.0;
                n2 += d[i] * d[i];
            }
            for (int i = 0; i < 3; i++)
                a.vel[i] = (float)(d[i] / sqrt(n2) * want);
            kz_wire_command c;
            kz_wire_command_from(&a, maxes[m], &c);
            double got = 0, speed = 0;
            for (int i = 0; i < 3; i++) {
                got += (double)c.move[i] * c.move[i];
                speed += (double)a.vel[i] * a.vel[i];
            }
            got = sqrt(got);
            speed = sqrt(speed);
            double expect = fmin(speed, (double)maxes[m]) * KZ_SNAP_VEL_UNITS;
            cr_assert(fabs(got - expect) <= 1.0, "max %g speed %g: |move| %g, want %g",
                      (double)maxes[m], speed, got, expect);
            /* Direction kept: each component within a rounding of the scaled one. */
            for (int i = 0; i < 3; i++)
                cr_assert(fabs(c.move[i] - a.vel[i] / speed * expect) <= 0.5 + 1e-6);
        }
    /* A max_speed beyond the code range still gives codes, never -32768. */
    kz_avatar_state a = rest_state();
    a.vel[0] = -1000.0f, a.vel[1] = 1000.0f;
    kz_wire_command c;
    kz_wire_command_from(&a, 5000.0f, &c);
    cr_assert_eq(c.move[0], -32767);
    cr_assert_eq(c.move[1], 32767);
}

/* The yaw code of an angle, from the exact reduction of sin and cos. */
static uint16_t ref_yaw(float yaw)
{
    double a = atan2(sin((double)yaw), cos((double)yaw));
    if (a < 0)
        a += 2.0 * PI;
    return (uint16_t)((uint32_t)lrint(a / (2.0 * PI) * 65536.0) & 0xffffu);
}

static uint16_t yaw_code(float yaw)
{
    kz_avatar_state a = rest_state();
    kz_wire_command c;
    a.yaw = yaw;
    kz_wire_command_from(&a, 8.0f, &c);
    return c.yaw;
}

static int yaw_close(uint16_t a, uint16_t b)
{
    uint16_t d = (uint16_t)(a - b);
    return d <= 1 || d == 0xffff;
}

Test(wire, command_from_wraps_yaw)
{
    cr_assert_eq(yaw_code(0.0f), 0);
    cr_assert_eq(yaw_code((float)(PI / 2)), 16384);
    cr_assert_eq(yaw_code((float)-PI), 32768);
    cr_assert_eq(yaw_code((float)(7 * PI)), 32768);
    cr_assert_eq(yaw_code((float)-(PI / 2)), 49152);
    cr_assert_eq(yaw_code((float)(2 * PI)), 0);
    /* Just below a full turn rounds to 0, never to 65536 truncated. */
    cr_assert_eq(yaw_code(-1e-9f), 0);
    cr_assert_eq(yaw_code(nextafterf((float)(2 * PI), 0.0f)), 0);
    cr_assert_eq(yaw_code(NAN), 0);
    cr_assert_eq(yaw_code(INFINITY), 0);
    cr_assert_eq(yaw_code(-INFINITY), 0);
    /* Large angles: within one code of the exact direction. */
    uint64_t s = 22;
    for (int rep = 0; rep < 20000; rep++) {
        double mag = pow(10.0, 9.0 * rng_unit(&s));
        float y = (float)((rng_next(&s) & 1) ? mag : -mag);
        cr_assert(yaw_close(yaw_code(y), ref_yaw(y)), "yaw %.9g: code %u, exact %u", (double)y,
                  yaw_code(y), ref_yaw(y));
    }
}

/* Angles far beyond any real use (1e30 rad) must still be computed
 * without undefined behaviour and the same way every time; the double
 * division loses the fraction of a turn beyond about 1e12 rad, so only
 * determinism is asserted there. */
Test(wire, command_from_survives_huge_yaw)
{
    const float huge[] = {1e12f, -1e12f, 1e30f, -1e30f, FLT_MAX, -FLT_MAX, FLT_TRUE_MIN};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++)
        cr_assert_eq(yaw_code(huge[i]), yaw_code(huge[i]));
    cr_assert_eq(yaw_code(FLT_TRUE_MIN), 0);
}

Test(wire, command_from_clamps_offsets_to_reach)
{
    const struct { float m; int16_t code; } cases[] = {
        {2.0f, 2048}, {2.5f, 2048}, {100.0f, 2048}, {FLT_MAX, 2048}, {INFINITY, 2048},
        {-2.0f, -2048}, {-2.0001f, -2048}, {-1e30f, -2048}, {-INFINITY, -2048},
        {NAN, 0}, {0.0f, 0}, {1.0f, 1024}, {-0.5f, -512}, {1.9995f, 2047},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        for (unsigned p = 0; p < KZ_POSE_COUNT; p++)
            for (int i = 0; i < 3; i++) {
                kz_avatar_state a = rest_state();
                kz_wire_command c;
                a.pose[p].pos[i] = cases[k].m;
                kz_wire_command_from(&a, 8.0f, &c);
                cr_assert_eq(c.rel[p][i], cases[k].code, "%g m gave %d", (double)cases[k].m, c.rel[p][i]);
            }
}

/* The decoded rotation of `code` is within the stated error of unit `q`
 * (up to sign). */
static void assert_rot_near(uint32_t code, const double q[4])
{
    float d[4];
    kz_quat_decode(code, KZ_SNAP_ROT_K, d);
    double err_pos = 0, err_neg = 0;
    for (int i = 0; i < 4; i++) {
        err_pos = fmax(err_pos, fabs(d[i] - q[i]));
        err_neg = fmax(err_neg, fabs(d[i] + q[i]));
    }
    cr_assert_leq(fmin(err_pos, err_neg), kz_quat_max_error(KZ_SNAP_ROT_K) + 1e-6,
                  "code 0x%08x off by %g", code, fmin(err_pos, err_neg));
}

Test(wire, command_from_normalizes_quaternions)
{
    uint64_t s = 23;
    const float scales[] = {1e-5f, 0.01f, 0.5f, 1.0f, 1.5f, 7.0f, 1e6f, 1e30f};
    for (int rep = 0; rep < 3000; rep++) {
        float u[4];
        random_unit_quat(&s, u);
        float sc = scales[rep % 8];
        kz_avatar_state a = rest_state();
        unsigned p = (unsigned)rep % KZ_POSE_COUNT;
        for (int i = 0; i < 4; i++)
            a.pose[p].rot[i] = u[i] * sc;
        kz_wire_command c;
        kz_wire_command_from(&a, 8.0f, &c);
        cr_assert(rot_code_ok(c.rot[p]));
        double n2 = 0, q[4];
        for (int i = 0; i < 4; i++)
            n2 += (double)u[i] * u[i];
        for (int i = 0; i < 4; i++)
            q[i] = u[i] / sqrt(n2);
        assert_rot_near(c.rot[p], q);
    }
    /* Zero, NaN and infinite quaternions become the identity. */
    const float junk[][4] = {
        {0, 0, 0, 0}, {NAN, 0, 0, 1}, {0, 0, 0, NAN}, {INFINITY, 0, 0, 0},
        {1, -INFINITY, 0, 0}, {NAN, NAN, NAN, NAN}, {1e-30f, 0, 0, 0},
    };
    for (size_t k = 0; k < sizeof junk / sizeof junk[0]; k++) {
        kz_avatar_state a = rest_state();
        memcpy(a.pose[1].rot, junk[k], sizeof junk[k]);
        kz_wire_command c;
        kz_wire_command_from(&a, 8.0f, &c);
        cr_assert_eq(c.rot[1], KZ_SNAP_ROT_REST, "junk %zu gave 0x%08x", k, c.rot[1]);
    }
    /* -identity is the identity. */
    kz_avatar_state a = rest_state();
    a.pose[2].rot[3] = -3.0f;
    kz_wire_command c;
    kz_wire_command_from(&a, 8.0f, &c);
    cr_assert_eq(c.rot[2], KZ_SNAP_ROT_REST);
}

Test(wire, command_from_copies_anim_and_only_the_vr_flag)
{
    kz_avatar_state a = rest_state();
    kz_wire_command c;
    a.anim = 0xbeef;
    a.flags = KZ_AVATAR_VR | KZ_AVATAR_SPEAKING | 0x80;
    kz_wire_command_from(&a, 8.0f, &c);
    cr_assert_eq(c.anim, 0xbeef);
    cr_assert_eq(c.flags, KZ_AVATAR_VR);
    a.flags = KZ_AVATAR_SPEAKING;
    kz_wire_command_from(&a, 8.0f, &c);
    cr_assert_eq(c.flags, 0);
    cr_assert_eq(c.pad[0] | c.pad[1] | c.pad[2], 0);
}

/* ---- integration -------------------------------------------------------- */

Test(wire, integrate_moves_v_meters_in_one_second)
{
    const uint32_t rates[] = {10, 20, 30, 60, 64, 128};
    const float speeds[] = {0.01f, 1.0f, -1.0f, 2.5f, -3.7f, 7.99f, 0.3f, 100.0f};
    for (size_t r = 0; r < sizeof rates / sizeof rates[0]; r++)
        for (size_t v = 0; v < sizeof speeds / sizeof speeds[0]; v++) {
            kz_snap_codec codec = test_codec();
            codec.tick_hz = rates[r];
            kz_avatar_state a = rest_state();
            a.vel[0] = speeds[v], a.vel[1] = -speeds[v] / 2, a.vel[2] = 0.25f;
            kz_wire_command c;
            kz_wire_command_from(&a, 128.0f, &c);
            kz_snap_state st;
            memset(&st, 0, sizeof st);
            for (uint32_t t = 0; t < rates[r]; t++)
                kz_wire_integrate(&codec, &st, &c);
            for (int i = 0; i < 3; i++) {
                /* Against the float velocity: half a unit of rounding per
                 * tick plus the velocity code's own rounding (one unit). */
                double want = (double)a.vel[i] * KZ_SNAP_POS_UNITS;
                cr_assert(fabs(st.pos[i] - want) <= rates[r], "%u Hz, %g m/s: %d units, want %g",
                          rates[r], (double)a.vel[i], st.pos[i], want);
                /* Against the command's own velocity: rounding only. */
                double coded = (double)c.move[i] * KZ_SNAP_POS_UNITS / KZ_SNAP_VEL_UNITS;
                cr_assert(fabs(st.pos[i] - coded) <= 0.5 * rates[r]);
                cr_assert_eq(st.vel[i], c.move[i]);
            }
        }
}

Test(wire, integrate_agrees_after_the_wire)
{
    /* The client predicts with its commands; the server integrates the
     * decoded ones. Both must land on the same state, unit for unit. */
    uint64_t s = 24;
    kz_snap_codec codec = test_codec();
    kz_snap_state client, server;
    memset(&client, 0, sizeof client);
    client.entity = 5, client.kind = KZ_KIND_AVATAR;
    server = client;
    uint32_t tick = 1;
    for (int rep = 0; rep < 500; rep++) {
        kz_wire_input in, out;
        uint8_t buf[KZ_INPUT_MAX_BYTES];
        memset(&in, 0, sizeof in);
        in.count = 1;
        kz_avatar_state a = rest_state();
        for (int i = 0; i < 3; i++)
            a.vel[i] = (float)(20.0 * rng_unit(&s) - 10.0);
        a.yaw = (float)(100.0 * rng_unit(&s));
        kz_wire_command_from(&a, 8.0f, &in.cmd[0]);
        in.cmd[0].tick = tick++;
        kz_wire_integrate(&codec, &client, &in.cmd[0]);
        size_t n = write_ok(&in, buf);
        cr_assert_eq(kz_wire_input_read(buf, n, &out), KZ_OK);
        kz_wire_integrate(&codec, &server, &out.cmd[0]);
        cr_assert_arr_eq(&client, &server, sizeof client, "diverged at tick %u", tick - 1);
    }
    cr_assert(client.pos[0] != 0 || client.pos[1] != 0, "the avatar never moved");
}

Test(wire, integrate_clamps_at_the_bound)
{
    kz_snap_codec codec = test_codec();
    kz_wire_command c;
    memset(&c, 0, sizeof c);
    c.move[0] = 32767, c.move[1] = -32767, c.move[2] = 256;
    kz_snap_state st;
    memset(&st, 0, sizeof st);
    st.pos[0] = codec.pos_max - 3;
    st.pos[1] = -codec.pos_max + 3;
    st.pos[2] = codec.pos_max;
    kz_wire_integrate(&codec, &st, &c);
    cr_assert_eq(st.pos[0], codec.pos_max);
    cr_assert_eq(st.pos[1], -codec.pos_max);
    cr_assert_eq(st.pos[2], codec.pos_max);
    for (int t = 0; t < 100; t++)
        kz_wire_integrate(&codec, &st, &c);
    cr_assert_eq(st.pos[0], codec.pos_max);
    cr_assert_eq(st.pos[1], -codec.pos_max);
    /* Moving back in starts from the bound. */
    c.move[0] = -256;
    kz_wire_integrate(&codec, &st, &c);
    cr_assert_eq(st.pos[0], codec.pos_max - 17);  /* 512 / 30 = 17.07 */
    /* A hostile state beyond the bound is pulled back inside. */
    st.pos[1] = INT32_MIN;
    c.move[1] = -32767;
    kz_wire_integrate(&codec, &st, &c);
    cr_assert_eq(st.pos[1], -codec.pos_max);
}

Test(wire, integrate_keeps_server_fields_and_takes_the_command)
{
    uint64_t s = 25;
    kz_snap_codec codec = test_codec();
    for (int rep = 0; rep < 200; rep++) {
        kz_wire_command c;
        random_command(&s, &c);
        kz_snap_state st, before;
        memset(&st, 0, sizeof st);
        st.entity = 1000 + (uint32_t)rep;
        st.kind = (rep & 1) ? KZ_KIND_AVATAR : KZ_KIND_OBJECT;
        st.holder = (uint32_t)rep * 7;
        st.flags = (uint8_t)(((rep & 2) ? KZ_AVATAR_SPEAKING : 0) | ((rep & 4) ? KZ_AVATAR_VR : 0));
        st.anim = 3, st.yaw = 9;
        before = st;
        kz_wire_integrate(&codec, &st, &c);
        cr_assert_eq(st.entity, before.entity);
        cr_assert_eq(st.kind, before.kind);
        cr_assert_eq(st.holder, before.holder);
        cr_assert_eq(st.pad, 0);
        cr_assert_eq(st.flags & KZ_AVATAR_SPEAKING, before.flags & KZ_AVATAR_SPEAKING);
        cr_assert_eq(st.flags & KZ_AVATAR_VR, c.flags & KZ_AVATAR_VR);
        cr_assert_eq(st.yaw, c.yaw);
        cr_assert_eq(st.anim, c.anim);
        cr_assert_arr_eq(st.vel, c.move, sizeof st.vel);
        cr_assert_arr_eq(st.rel, c.rel, sizeof st.rel);
        cr_assert_arr_eq(st.rot, c.rot, sizeof st.rot);
    }
}

/* ---- snapshot header ---------------------------------------------------- */

#define HEAD_BITS (32u + 1u + 32u + 3u * 22u + 48u + 16u + 16u + 8u)

/* Field by field: kz_wire_snap_head has padding after `corrected`, which a
 * struct copy need not keep, so memcmp would compare garbage. */
static void assert_head_eq(const kz_wire_snap_head *a, const kz_wire_snap_head *b, int k)
{
    cr_assert_eq(a->input_tick, b->input_tick, "case %d: input_tick", k);
    cr_assert_eq(a->corrected, b->corrected, "case %d: corrected", k);
    const kz_snap_state *x = &a->self, *y = &b->self;
    cr_assert_eq(x->entity, y->entity, "case %d: entity", k);
    cr_assert_eq(x->kind, y->kind, "case %d: kind", k);
    cr_assert_eq(x->flags, y->flags, "case %d: flags", k);
    cr_assert_eq(x->anim, y->anim, "case %d: anim", k);
    cr_assert_eq(x->yaw, y->yaw, "case %d: yaw", k);
    cr_assert_eq(x->holder, y->holder, "case %d: holder", k);
    cr_assert_eq(x->pad, y->pad, "case %d: pad", k);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(x->pos[i], y->pos[i], "case %d: pos[%d]", k, i);
        cr_assert_eq(x->vel[i], y->vel[i], "case %d: vel[%d]", k, i);
    }
    /* Poses are not sent: the reader leaves them at rest (zero). */
    for (unsigned p = 0; p < KZ_POSE_COUNT; p++) {
        cr_assert_eq(x->rot[p], y->rot[p], "case %d: rot[%u]", k, p);
        for (int i = 0; i < 3; i++)
            cr_assert_eq(x->rel[p][i], y->rel[p][i], "case %d: rel[%u][%d]", k, p, i);
    }
}

static kz_wire_snap_head sample_head(void)
{
    kz_snap_codec c = test_codec();
    kz_wire_snap_head h;
    memset(&h, 0, sizeof h);
    h.input_tick = 0xfffffffeu;
    h.corrected = 1;
    h.self.entity = 0xffffffffu;
    h.self.kind = KZ_KIND_AVATAR;
    h.self.pos[0] = c.pos_max, h.self.pos[1] = -c.pos_max, h.self.pos[2] = 0;
    h.self.vel[0] = 32767, h.self.vel[1] = -32767, h.self.vel[2] = 1;
    h.self.yaw = 0xffff;
    h.self.anim = 0xabcd;
    h.self.flags = 0xff;
    return h;
}

/* Writes a header field by field with the reference writer. */
static size_t ref_head(const kz_wire_snap_head *h, const uint64_t pos_code[3], ref_bits *r)
{
    memset(r, 0, sizeof *r);
    ref_put(r, h->input_tick, 32);
    ref_put(r, h->corrected, 1);
    ref_put(r, h->self.entity, 32);
    for (int i = 0; i < 3; i++)
        ref_put(r, pos_code[i], 22);
    for (int i = 0; i < 3; i++)
        ref_put(r, (uint16_t)h->self.vel[i], 16);
    ref_put(r, h->self.yaw, 16);
    ref_put(r, h->self.anim, 16);
    ref_put(r, h->self.flags, 8);
    return ref_len(r);
}

Test(wire, snap_head_round_trips_extremes)
{
    kz_snap_codec c = test_codec();
    kz_wire_snap_head cases[3];
    cases[0] = sample_head();
    cases[1] = sample_head();
    cases[1].input_tick = 0, cases[1].corrected = 0, cases[1].self.entity = 1;
    cases[1].self.pos[0] = -c.pos_max, cases[1].self.pos[1] = c.pos_max;
    cases[1].self.pos[2] = -1, cases[1].self.vel[2] = -32768, cases[1].self.flags = 0;
    cases[2] = sample_head();
    cases[2].self.pos[2] = c.pos_max;
    for (int k = 0; k < 3; k++) {
        const kz_wire_snap_head *h = &cases[k];
        uint8_t buf[64];
        kz_bitwriter w;
        kz_bitwriter_init(&w, buf, sizeof buf);
        cr_assert_eq(kz_wire_snap_head_write(&c, h, &w), KZ_OK);
        /* A body follows: the header must end exactly where the reader stops. */
        cr_assert_eq(kz_bitwriter_write(&w, 0x5a, 8), KZ_OK);
        size_t n = kz_bitwriter_finish(&w);
        cr_assert_eq(kz_bitwriter_bits(&w), HEAD_BITS + 8);

        ref_bits r;
        uint64_t pc[3];
        for (int i = 0; i < 3; i++)
            pc[i] = (uint64_t)((int64_t)h->self.pos[i] + c.pos_max);
        cr_assert_eq(ref_head(h, pc, &r), (HEAD_BITS + 7) / 8);
        cr_assert_arr_eq(buf, r.buf, HEAD_BITS / 8, "case %d: layout differs", k);

        kz_bitreader rd;
        kz_wire_snap_head out;
        kz_bitreader_init(&rd, buf, n);
        cr_assert_eq(kz_wire_snap_head_read(&c, &rd, &out), KZ_OK);
        cr_assert_eq(kz_bitreader_bits_read(&rd), HEAD_BITS);
        assert_head_eq(&out, h, k);
    }
}

Test(wire, snap_head_rejects_positions_beyond_the_bound)
{
    kz_snap_codec c = test_codec();
    kz_wire_snap_head h = sample_head(), out;
    const uint64_t top = 2u * (uint64_t)c.pos_max;
    for (int axis = 0; axis < 3; axis++) {
        for (uint64_t code = top; code < (1u << 22); code++) {
            uint64_t pc[3] = {(uint64_t)c.pos_max, (uint64_t)c.pos_max, (uint64_t)c.pos_max};
            ref_bits r;
            pc[axis] = code;
            size_t n = ref_head(&h, pc, &r);
            kz_bitreader rd;
            kz_bitreader_init(&rd, r.buf, n);
            int rc = kz_wire_snap_head_read(&c, &rd, &out);
            if (code == top) {
                cr_assert_eq(rc, KZ_OK);
                cr_assert_eq(out.self.pos[axis], c.pos_max);
            } else {
                cr_assert_eq(rc, KZ_EPROTO, "axis %d code %llu accepted", axis, (unsigned long long)code);
            }
        }
    }
}

Test(wire, snap_head_rejects_entity_zero_and_truncation)
{
    kz_snap_codec c = test_codec();
    kz_wire_snap_head h = sample_head(), out;
    uint8_t buf[64];
    kz_bitwriter w;
    h.self.entity = 0;
    kz_bitwriter_init(&w, buf, sizeof buf);
    cr_assert_eq(kz_wire_snap_head_write(&c, &h, &w), KZ_OK);
    size_t n = kz_bitwriter_finish(&w);
    kz_bitreader rd;
    kz_bitreader_init(&rd, buf, n);
    cr_assert_eq(kz_wire_snap_head_read(&c, &rd, &out), KZ_EPROTO);

    h = sample_head();
    kz_bitwriter_init(&w, buf, sizeof buf);
    cr_assert_eq(kz_wire_snap_head_write(&c, &h, &w), KZ_OK);
    n = kz_bitwriter_finish(&w);
    cr_assert_eq(n, (HEAD_BITS + 7) / 8);
    for (size_t len = 0; len < n; len++) {
        uint8_t *t = malloc(len ? len : 1);
        memcpy(t, buf, len);
        kz_bitreader_init(&rd, t, len);
        cr_assert_eq(kz_wire_snap_head_read(&c, &rd, &out), KZ_EPROTO, "%zu bytes accepted", len);
        free(t);
    }
    /* The writer reports a buffer too small. */
    kz_bitwriter_init(&w, buf, (HEAD_BITS + 7) / 8 - 1);
    cr_assert_eq(kz_wire_snap_head_write(&c, &h, &w), KZ_EOVERFLOW);
}
