/*
 * The bus between a world's authority and its edges (sim/bus.h,
 * sim/fleet.h) under hostile input.
 *
 * The codec alone: the header, the tick head, the limits, every
 * combination of an entity record's parts and the DOWN and BATCH record
 * heads round trip field by field, with known answers for the layouts of
 * docs/SCALING.md; the header check refuses each fault under its own
 * reason and in the spec's order; entity records carrying a state the
 * codec cannot carry, an id of another index, an index out of its range
 * or order, unknown or combined `what` bits, bad strings, counts or codes,
 * or cut at any byte, are refused. Hostile inputs sit in heap blocks of
 * exactly their size, so a read past the end shows under AddressSanitizer.
 *
 * Real servers: an authority and an edge (kz__fleet_server_create) whose
 * messages are passed in memory as the server program passes them over
 * NATS, and up to two more edges driven by hand (their messages written
 * here with the codec), on one injected clock. Each attack asserts the
 * exact counter that moved, and that no other counter and no state of the
 * receiver changed: replays, another world, a message on another edge's
 * subject, stale instances of an edge and of the authority, records about
 * sessions the sending edge does not own, malformed JOIN claims, hostile
 * bodies of every type, corrupted and withheld TICKs, and 10,000 garbage
 * messages on every subject of each role.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kizuna/entity.h>

#include "net/token_claims.h"
#include "sim/fleet_impl.h"
#include "support/loopback.h"

/* BLAKE2b-256 of "plaza", first 8 bytes as u64 (computed apart from the
 * library, with Python's hashlib). */
#define T_WORLD 0x395b7897c2e06c48ull
#define T_INSTANCE 0x1122334455667788ull

/* Offsets of docs/SCALING.md's header, written out here so the tests do
 * not borrow the codec's own arithmetic. */
#define T_H_TYPE 5u
#define T_H_SENDER 6u
#define T_H_LENGTH 8u
#define T_H_RESERVED 12u
#define T_H_WORLD 16u
#define T_H_INSTANCE 24u
#define T_H_EPOCH 32u
#define T_H_SEQ 40u
/* An entity record: u32 index, u8 what, 3 reserved, then its parts. */
#define T_E_WHAT 4u
#define T_E_PARTS 8u
/* Offsets inside the STATE part. */
#define T_S_KIND 4u
#define T_S_POS 8u

static void t_put64(uint8_t *b, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t t_get64(const uint8_t *b)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}

/* A heap copy of exactly n bytes of src. The caller frees it. */
static uint8_t *t_exact(const uint8_t *src, size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    cr_assert_not_null(p);
    if (n)
        memcpy(p, src, n);
    return p;
}

/* ---- header --------------------------------------------------------------- */

static kz_bus_header t_head(uint8_t type, uint16_t sender, uint32_t length)
{
    kz_bus_header h = {.type = type, .sender = sender, .length = length, .world = T_WORLD,
                       .instance = T_INSTANCE, .epoch = 1000, .seq = 1};
    return h;
}

/* Writes `h` and a body of `body` bytes (0x5A) into an exact heap block,
 * overwrites byte `at` with `v` when at >= 0, and checks it. */
static kz_bus_drop t_check_msg(const kz_bus_header *h, size_t body, int at, uint8_t v,
                               unsigned subject, uint32_t subject_edge, kz_bus_header *out)
{
    size_t len = KZ_BUS_HEADER_BYTES + body;
    uint8_t *m = malloc(len);
    cr_assert_not_null(m);
    memset(m, 0x5A, len);
    kz_bus_header_write(h, m);
    if (at >= 0)
        m[at] = v;
    kz_bus_header tmp;
    kz_bus_drop d = kz_bus_header_check(m, len, T_WORLD, subject, subject_edge, out ? out : &tmp);
    free(m);
    return d;
}

Test(bus_codec, world_hash_known_answers)
{
    cr_assert_eq(kz_bus_world_hash("plaza"), T_WORLD);
    cr_assert_eq(kz_bus_world_hash("w1"), 0x47de74586c1f0d26ull);
    cr_assert_eq(kz_bus_world_hash(""), 0xb243e526c051570eull);
}

Test(bus_codec, header_layout_is_the_specs_byte_for_byte)
{
    kz_bus_header h = {.type = KZ_BUS_BATCH, .sender = 0x0102, .length = 0x03040506,
                       .world = 0x1112131415161718ull, .instance = 0x2122232425262728ull,
                       .epoch = 0x3132333435363738ull, .seq = 0x4142434445464748ull};
    uint8_t b[KZ_BUS_HEADER_BYTES];
    memset(b, 0xA5, sizeof b);
    kz_bus_header_write(&h, b);
    const uint8_t want[KZ_BUS_HEADER_BYTES] = {
        'K',  'Z',  'B',  '1',  1,    3,    0x02, 0x01, 0x06, 0x05, 0x04, 0x03,
        0,    0,    0,    0,    0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,
        0x28, 0x27, 0x26, 0x25, 0x24, 0x23, 0x22, 0x21, 0x38, 0x37, 0x36, 0x35,
        0x34, 0x33, 0x32, 0x31, 0x48, 0x47, 0x46, 0x45, 0x44, 0x43, 0x42, 0x41};
    cr_assert_arr_eq(b, want, sizeof want);
}

Test(bus_codec, header_round_trips_field_by_field_on_its_subjects)
{
    static const struct {
        uint8_t type;
        uint16_t sender;
        unsigned subject;
        uint32_t edge;
    } ok[] = {
        {KZ_BUS_TICK, 0, KZ_BUS_SUBJECT_TICK, 0},    {KZ_BUS_SYNC, 0, KZ_BUS_SUBJECT_TICK, 0},
        {KZ_BUS_HELLO, 1, KZ_BUS_SUBJECT_UP, 1},     {KZ_BUS_BATCH, 7, KZ_BUS_SUBJECT_UP, 7},
        {KZ_BUS_BYE, 64, KZ_BUS_SUBJECT_UP, 64},     {KZ_BUS_DOWN, 0, KZ_BUS_SUBJECT_DOWN, 3},
        {KZ_BUS_DOWN, 0, KZ_BUS_SUBJECT_DOWN, 64},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        kz_bus_header h = {.type = ok[i].type, .sender = ok[i].sender, .length = 3,
                           .world = T_WORLD, .instance = UINT64_MAX - i, .epoch = UINT64_MAX,
                           .seq = UINT64_MAX - 7u * i};
        kz_bus_header got;
        memset(&got, 0xA5, sizeof got);
        cr_assert_eq(t_check_msg(&h, 3, -1, 0, ok[i].subject, ok[i].edge, &got), KZ_BUS_OK,
                     "case %zu", i);
        cr_assert_eq(got.type, h.type);
        cr_assert_eq(got.sender, h.sender);
        cr_assert_eq(got.length, h.length);
        cr_assert_eq(got.world, h.world);
        cr_assert_eq(got.instance, h.instance);
        cr_assert_eq(got.epoch, h.epoch);
        cr_assert_eq(got.seq, h.seq);
    }
    /* The smallest values that pass: seq 1, instance 1, epoch 0, no body. */
    kz_bus_header h = t_head(KZ_BUS_BYE, 2, 0);
    h.instance = 1;
    h.epoch = 0;
    cr_assert_eq(t_check_msg(&h, 0, -1, 0, KZ_BUS_SUBJECT_UP, 2, NULL), KZ_BUS_OK);
}

Test(bus_codec, header_sizes_oversize_and_short)
{
    /* The largest body passes; one byte more is oversize, whatever it holds. */
    size_t max = KZ_BUS_HEADER_BYTES + KZ_BUS_MESSAGE_MAX;
    uint8_t *m = calloc(1, max + 1);
    cr_assert_not_null(m);
    kz_bus_header h = t_head(KZ_BUS_TICK, 0, KZ_BUS_MESSAGE_MAX), got;
    kz_bus_header_write(&h, m);
    cr_assert_eq(kz_bus_header_check(m, max, T_WORLD, KZ_BUS_SUBJECT_TICK, 0, &got), KZ_BUS_OK);
    h.length = KZ_BUS_MESSAGE_MAX + 1u;
    kz_bus_header_write(&h, m);
    cr_assert_eq(kz_bus_header_check(m, max + 1, T_WORLD, KZ_BUS_SUBJECT_TICK, 0, &got),
                 KZ_BUS_DROP_OVERSIZE);
    memset(m, 0xff, 4);  /* size is checked before anything is read */
    cr_assert_eq(kz_bus_header_check(m, max + 1, T_WORLD, KZ_BUS_SUBJECT_TICK, 0, &got),
                 KZ_BUS_DROP_OVERSIZE);
    free(m);
    /* Every length below the header is malformed, read from exact blocks. */
    uint8_t full[KZ_BUS_HEADER_BYTES];
    h = t_head(KZ_BUS_TICK, 0, 0);
    kz_bus_header_write(&h, full);
    for (size_t n = 0; n < KZ_BUS_HEADER_BYTES; n++) {
        uint8_t *p = t_exact(full, n);
        cr_assert_eq(kz_bus_header_check(p, n, T_WORLD, KZ_BUS_SUBJECT_TICK, 0, &got),
                     KZ_BUS_DROP_MALFORMED, "length %zu", n);
        free(p);
    }
}

typedef struct t_hrow {
    const char *name;
    kz_bus_header h;
    size_t body;          /* body bytes actually sent */
    int at;               /* a byte overwritten after writing, -1 for none */
    uint8_t v;
    unsigned subject;
    uint32_t edge;
    kz_bus_drop want;
} t_hrow;

#define T_H(type_, sender_, len_)                                                       \
    {.type = (type_), .sender = (sender_), .length = (len_), .world = T_WORLD,            \
     .instance = T_INSTANCE, .epoch = 1000, .seq = 1}
#define T_HX(type_, sender_, len_, world_, instance_, seq_)                              \
    {.type = (type_), .sender = (sender_), .length = (len_), .world = (world_),           \
     .instance = (instance_), .epoch = 1000, .seq = (seq_)}
#define TICK_S KZ_BUS_SUBJECT_TICK
#define UP_S KZ_BUS_SUBJECT_UP
#define DOWN_S KZ_BUS_SUBJECT_DOWN

static const t_hrow t_hrows[] = {
    /* magic and version */
    {"magic 0", T_H(KZ_BUS_TICK, 0, 4), 4, 0, 'k', TICK_S, 0, KZ_BUS_DROP_VERSION},
    {"magic 1", T_H(KZ_BUS_TICK, 0, 4), 4, 1, 'z', TICK_S, 0, KZ_BUS_DROP_VERSION},
    {"magic 2", T_H(KZ_BUS_TICK, 0, 4), 4, 2, 'b', TICK_S, 0, KZ_BUS_DROP_VERSION},
    {"magic 3", T_H(KZ_BUS_TICK, 0, 4), 4, 3, '2', TICK_S, 0, KZ_BUS_DROP_VERSION},
    {"version 0", T_H(KZ_BUS_TICK, 0, 4), 4, 4, 0, TICK_S, 0, KZ_BUS_DROP_VERSION},
    {"version 2", T_H(KZ_BUS_TICK, 0, 4), 4, 4, 2, TICK_S, 0, KZ_BUS_DROP_VERSION},
    {"version 255", T_H(KZ_BUS_TICK, 0, 4), 4, 4, 255, TICK_S, 0, KZ_BUS_DROP_VERSION},
    /* length, reserved, seq, instance */
    {"length + 1", T_H(KZ_BUS_BATCH, 1, 5), 4, -1, 0, UP_S, 1, KZ_BUS_DROP_MALFORMED},
    {"length - 1", T_H(KZ_BUS_BATCH, 1, 3), 4, -1, 0, UP_S, 1, KZ_BUS_DROP_MALFORMED},
    {"length 0 with a body", T_H(KZ_BUS_BATCH, 1, 0), 1, -1, 0, UP_S, 1, KZ_BUS_DROP_MALFORMED},
    {"length 2^32 - 1", T_H(KZ_BUS_BATCH, 1, UINT32_MAX), 4, -1, 0, UP_S, 1,
     KZ_BUS_DROP_MALFORMED},
    {"length high byte", T_H(KZ_BUS_BATCH, 1, 4), 4, T_H_LENGTH + 3, 1, UP_S, 1,
     KZ_BUS_DROP_MALFORMED},
    {"reserved 0", T_H(KZ_BUS_DOWN, 0, 4), 4, T_H_RESERVED, 1, DOWN_S, 1, KZ_BUS_DROP_MALFORMED},
    {"reserved 1", T_H(KZ_BUS_DOWN, 0, 4), 4, T_H_RESERVED + 1, 0x80, DOWN_S, 1,
     KZ_BUS_DROP_MALFORMED},
    {"reserved 2", T_H(KZ_BUS_DOWN, 0, 4), 4, T_H_RESERVED + 2, 1, DOWN_S, 1,
     KZ_BUS_DROP_MALFORMED},
    {"reserved 3", T_H(KZ_BUS_DOWN, 0, 4), 4, T_H_RESERVED + 3, 0xff, DOWN_S, 1,
     KZ_BUS_DROP_MALFORMED},
    {"seq 0", T_HX(KZ_BUS_TICK, 0, 4, T_WORLD, T_INSTANCE, 0), 4, -1, 0, TICK_S, 0, KZ_BUS_DROP_MALFORMED},
    {"instance 0", T_HX(KZ_BUS_HELLO, 3, 4, T_WORLD, 0, 1), 4, -1, 0, UP_S, 3,
     KZ_BUS_DROP_MALFORMED},
    /* world */
    {"another world", T_HX(KZ_BUS_TICK, 0, 4, T_WORLD ^ 1u, T_INSTANCE, 1), 4, -1, 0, TICK_S, 0,
     KZ_BUS_DROP_OTHER_WORLD},
    {"world 0", T_HX(KZ_BUS_DOWN, 0, 4, 0, T_INSTANCE, 1), 4, -1, 0, DOWN_S, 2,
     KZ_BUS_DROP_OTHER_WORLD},
    {"world of w1", T_HX(KZ_BUS_BATCH, 2, 4, 0x47de74586c1f0d26ull, T_INSTANCE, 1), 4, -1, 0, UP_S, 2,
     KZ_BUS_DROP_OTHER_WORLD},
    /* sender against subject */
    {"TICK from an edge", T_H(KZ_BUS_TICK, 1, 4), 4, -1, 0, TICK_S, 0, KZ_BUS_DROP_SENDER},
    {"SYNC from edge 64", T_H(KZ_BUS_SYNC, 64, 4), 4, -1, 0, TICK_S, 0, KZ_BUS_DROP_SENDER},
    {"TICK from sender 65", T_H(KZ_BUS_TICK, 65, 4), 4, -1, 0, TICK_S, 0, KZ_BUS_DROP_SENDER},
    {"DOWN from edge 1 on 1", T_H(KZ_BUS_DOWN, 1, 4), 4, -1, 0, DOWN_S, 1, KZ_BUS_DROP_SENDER},
    {"DOWN from edge 2 on 2", T_H(KZ_BUS_DOWN, 2, 4), 4, -1, 0, DOWN_S, 2, KZ_BUS_DROP_SENDER},
    {"BATCH of 2 on 1's up", T_H(KZ_BUS_BATCH, 2, 4), 4, -1, 0, UP_S, 1, KZ_BUS_DROP_SENDER},
    {"BATCH of 1 on 2's up", T_H(KZ_BUS_BATCH, 1, 4), 4, -1, 0, UP_S, 2, KZ_BUS_DROP_SENDER},
    {"HELLO of 64 on 63's up", T_H(KZ_BUS_HELLO, 64, 4), 4, -1, 0, UP_S, 63, KZ_BUS_DROP_SENDER},
    {"BATCH of 0 on 1's up", T_H(KZ_BUS_BATCH, 0, 4), 4, -1, 0, UP_S, 1, KZ_BUS_DROP_SENDER},
    {"HELLO of 0 on up 0", T_H(KZ_BUS_HELLO, 0, 4), 4, -1, 0, UP_S, 0, KZ_BUS_DROP_SENDER},
    {"BYE of 0 on up 0", T_H(KZ_BUS_BYE, 0, 0), 0, -1, 0, UP_S, 0, KZ_BUS_DROP_SENDER},
    {"BATCH of 65 on up 65", T_H(KZ_BUS_BATCH, 65, 4), 4, -1, 0, UP_S, 65, KZ_BUS_DROP_SENDER},
    {"BATCH of 65535 on up 65535", T_H(KZ_BUS_BATCH, 65535, 4), 4, -1, 0, UP_S, 65535,
     KZ_BUS_DROP_SENDER},
    {"sender 257 on up 1", T_H(KZ_BUS_BATCH, 257, 4), 4, -1, 0, UP_S, 1,
     KZ_BUS_DROP_SENDER},
    /* cheap checks first: the first fault found names the drop */
    {"bad magic and another world", T_HX(KZ_BUS_TICK, 0, 4, 1, T_INSTANCE, 1), 4, 0, 0, TICK_S, 0,
     KZ_BUS_DROP_VERSION},
    {"bad length and another world", T_HX(KZ_BUS_TICK, 0, 9, 1, T_INSTANCE, 1), 4, -1, 0, TICK_S, 0,
     KZ_BUS_DROP_MALFORMED},
    {"reserved and wrong sender", T_H(KZ_BUS_TICK, 3, 4), 4, T_H_RESERVED, 1, TICK_S, 0,
     KZ_BUS_DROP_MALFORMED},
    {"another world and wrong sender", T_HX(KZ_BUS_TICK, 9, 4, 1, T_INSTANCE, 1), 4, -1, 0, TICK_S,
     0, KZ_BUS_DROP_OTHER_WORLD},
    {"another world and wrong subject", T_HX(KZ_BUS_BATCH, 1, 4, 1, T_INSTANCE, 1), 4, -1, 0, TICK_S,
     0, KZ_BUS_DROP_OTHER_WORLD},
};

Test(bus_codec, header_check_names_every_fault)
{
    for (size_t i = 0; i < sizeof t_hrows / sizeof t_hrows[0]; i++) {
        const t_hrow *r = &t_hrows[i];
        kz_bus_drop d = t_check_msg(&r->h, r->body, r->at, r->v, r->subject, r->edge, NULL);
        cr_assert_eq(d, r->want, "%s: got %d, want %d", r->name, d, r->want);
    }
}

/* Each type belongs on one subject (TICK and SYNC on tick; HELLO, BATCH,
 * BYE on up; DOWN on down): on any other, or with an unknown type, the
 * message is the sender's fault. */
Test(bus_codec, header_check_refuses_every_type_on_every_other_subject)
{
    static const unsigned home[256] = {
        [KZ_BUS_TICK] = KZ_BUS_SUBJECT_TICK, [KZ_BUS_SYNC] = KZ_BUS_SUBJECT_TICK,
        [KZ_BUS_HELLO] = KZ_BUS_SUBJECT_UP,  [KZ_BUS_BATCH] = KZ_BUS_SUBJECT_UP,
        [KZ_BUS_BYE] = KZ_BUS_SUBJECT_UP,    [KZ_BUS_DOWN] = KZ_BUS_SUBJECT_DOWN,
    };
    static const unsigned subjects[] = {KZ_BUS_SUBJECT_TICK, KZ_BUS_SUBJECT_UP,
                                        KZ_BUS_SUBJECT_DOWN, 4, 255};
    for (unsigned type = 0; type < 256; type++)
        for (size_t k = 0; k < sizeof subjects / sizeof subjects[0]; k++) {
            unsigned subject = subjects[k];
            uint16_t sender = subject == KZ_BUS_SUBJECT_UP ? 5 : 0;
            kz_bus_header h = t_head((uint8_t)type, sender, 2);
            kz_bus_drop d = t_check_msg(&h, 2, -1, 0, subject, 5, NULL);
            kz_bus_drop want = home[type] && home[type] == subject ? KZ_BUS_OK : KZ_BUS_DROP_SENDER;
            cr_assert_eq(d, want, "type %u on subject %u: %d", type, subject, d);
        }
}

/* A type the bus does not define is refused whatever the subject it came
 * on, the subject number 0 (no subject) included: kz__fleet_receive hands
 * an edge any subject but up (its `mine` test), and a message of an
 * unknown type that passed would be taken as a TICK there. */
Test(bus_codec, header_check_refuses_an_unknown_type_on_subject_0)
{
    static const uint8_t unknown[] = {0, 7, 8, 0x81, 255};
    for (size_t i = 0; i < sizeof unknown; i++) {
        kz_bus_header h = t_head(unknown[i], 0, 2);
        cr_assert_eq(t_check_msg(&h, 2, -1, 0, 0, 0, NULL), KZ_BUS_DROP_SENDER,
                     "type %u on subject 0 passed", unknown[i]);
    }
}

/* ---- tick head and limits ----------------------------------------------- */

Test(bus_codec, tick_head_layout_and_round_trip)
{
    kz_bus_tick_head t = {.tick = 0x01020304, .part = 0x0506, .flags = 3, .target = 7,
                          .first = 0x08090a0b, .end = 0x0c0d0e0f, .count = 0x10};
    uint8_t b[KZ_BUS_TICK_HEAD_BYTES];
    kz_bus_tick_head_write(&t, b);
    const uint8_t want[KZ_BUS_TICK_HEAD_BYTES] = {4, 3, 2, 1, 6, 5, 3, 7, 0x0b, 0x0a,
                                                   9, 8, 0x0f, 0x0e, 0x0d, 0x0c, 0x10, 0, 0, 0};
    cr_assert_arr_eq(b, want, sizeof want);
    static const kz_bus_tick_head ok[] = {
        {1, 0, 0, 0, 0, 1, 0},
        {UINT32_MAX, UINT16_MAX, KZ_BUS_TICK_LAST | KZ_BUS_TICK_FULL, KZ_BUS_MAX_EDGES, 0,
         UINT32_MAX, UINT32_MAX},
        {77, 3, KZ_BUS_TICK_LAST, 0, 100, 200, 100},
        {78, 0, KZ_BUS_TICK_FULL, 1, UINT32_MAX - 1u, UINT32_MAX, 1},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        kz_bus_tick_head_write(&ok[i], b);
        uint8_t *m = t_exact(b, sizeof b);
        const uint8_t *p = m;
        kz_bus_tick_head got;
        memset(&got, 0xA5, sizeof got);
        cr_assert(kz_bus_tick_head_read(&p, m + sizeof b, &got), "case %zu", i);
        cr_assert_eq(p, m + KZ_BUS_TICK_HEAD_BYTES);
        cr_assert_eq(got.tick, ok[i].tick);
        cr_assert_eq(got.part, ok[i].part);
        cr_assert_eq(got.flags, ok[i].flags);
        cr_assert_eq(got.target, ok[i].target);
        cr_assert_eq(got.first, ok[i].first);
        cr_assert_eq(got.end, ok[i].end);
        cr_assert_eq(got.count, ok[i].count);
        free(m);
    }
}

Test(bus_codec, tick_head_refusals)
{
    static const kz_bus_tick_head bad[] = {
        {0, 0, 0, 0, 0, 10, 0},                      /* tick 0 */
        {5, 0, 4, 0, 0, 10, 0},                      /* unknown flag */
        {5, 0, 0x80 | KZ_BUS_TICK_LAST, 0, 0, 10, 0},
        {5, 0, 0, KZ_BUS_MAX_EDGES + 1u, 0, 10, 0},  /* target beyond the edges */
        {5, 0, 0, 255, 0, 10, 0},
        {5, 0, 0, 0, 10, 10, 0},                     /* empty range */
        {5, 0, 0, 0, 11, 10, 0},                     /* reversed range */
        {5, 0, 0, 0, 0, 10, 11},                     /* more records than indices */
        {5, 0, 0, 0, 1, UINT32_MAX, UINT32_MAX},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t b[KZ_BUS_TICK_HEAD_BYTES];
        kz_bus_tick_head_write(&bad[i], b);
        uint8_t *m = t_exact(b, sizeof b);
        const uint8_t *p = m;
        kz_bus_tick_head got;
        cr_assert_not(kz_bus_tick_head_read(&p, m + sizeof b, &got), "case %zu", i);
        cr_assert_eq(p, m, "a refused head moves nothing");
        free(m);
    }
    kz_bus_tick_head t = {9, 0, KZ_BUS_TICK_LAST, 0, 0, 10, 10};
    uint8_t b[KZ_BUS_TICK_HEAD_BYTES];
    kz_bus_tick_head_write(&t, b);
    for (size_t n = 0; n < sizeof b; n++) {
        uint8_t *m = t_exact(b, n);
        const uint8_t *p = m;
        kz_bus_tick_head got;
        cr_assert_not(kz_bus_tick_head_read(&p, m + n, &got), "cut at %zu", n);
        cr_assert_eq(p, m);
        free(m);
    }
}

Test(bus_codec, limits_round_trip_and_refuse_every_cut)
{
    kz_bus_limits l = {.tick_hz = 30, .cap = 1088, .max_clients = 1024, .n_slots = 100,
                       .history = 16, .bound = 4096.0f, .max_speed = -0.0f,
                       .view_radius = 1e-30f};
    uint8_t b[KZ_BUS_LIMITS_BYTES];
    kz_bus_limits_write(&l, b);
    const uint8_t head[8] = {30, 0, 0, 0, 0x40, 0x04, 0, 0};
    cr_assert_arr_eq(b, head, sizeof head);
    uint8_t *m = t_exact(b, sizeof b);
    const uint8_t *p = m;
    kz_bus_limits got;
    cr_assert(kz_bus_limits_read(&p, m + sizeof b, &got));
    cr_assert_eq(p, m + sizeof b);
    cr_assert_eq(got.tick_hz, l.tick_hz);
    cr_assert_eq(got.cap, l.cap);
    cr_assert_eq(got.max_clients, l.max_clients);
    cr_assert_eq(got.n_slots, l.n_slots);
    cr_assert_eq(got.history, l.history);
    cr_assert_arr_eq(&got.bound, &l.bound, 4);
    cr_assert_arr_eq(&got.max_speed, &l.max_speed, 4, "the sign of -0 survives");
    cr_assert_arr_eq(&got.view_radius, &l.view_radius, 4);
    free(m);
    for (size_t n = 0; n < sizeof b; n++) {
        m = t_exact(b, n);
        p = m;
        cr_assert_not(kz_bus_limits_read(&p, m + n, &got), "cut at %zu", n);
        cr_assert_eq(p, m);
        free(m);
    }
}

/* ---- entity records ------------------------------------------------------- */

#define T_CAP 1088u

static kz_snap_codec t_codec(void)
{
    kz_snap_codec c;
    cr_assert_eq(kz_snap_codec_init(&c, 30, 100, 4096.0f), KZ_OK);
    return c;
}

/* A state at the edges of what the codec carries, for dense index `index`. */
static kz_snap_state t_state(const kz_snap_codec *c, uint32_t index)
{
    kz_snap_state s;
    memset(&s, 0, sizeof s);
    s.entity = 3u << KZ_ENTITY_INDEX_BITS | index;
    s.kind = KZ_KIND_AVATAR;
    s.flags = 0xA5;
    s.anim = 0x1234;
    s.pos[0] = -c->pos_max;
    s.pos[1] = 12345;
    s.pos[2] = c->pos_max;
    s.vel[0] = -32767;
    s.vel[1] = 0;
    s.vel[2] = 32767;
    s.yaw = 0xfffe;
    for (uint32_t k = 0; k < KZ_POSE_COUNT; k++) {
        s.rel[k][0] = -KZ_SNAP_REL_MAX;
        s.rel[k][1] = (int16_t)(100 * k + 1);
        s.rel[k][2] = KZ_SNAP_REL_MAX;
        s.rot[k] = KZ_SNAP_ROT_REST + k;
    }
    s.holder = 0x0BADF00D;
    return s;
}

/* Every part filled, and strings of the longest lengths when `longest`. */
static kz_bus_entity t_entity(const kz_snap_codec *c, uint32_t index, uint8_t what, int longest)
{
    kz_bus_entity e;
    memset(&e, 0, sizeof e);
    e.index = index;
    e.what = what;
    e.state = t_state(c, index);
    e.rule = 7;
    e.zone = 200;
    e.importance = 0.5f;
    e.owner_id = 0x0123456789abcdefull;
    e.badge.verification_level = KZ_VERIFY_MAX;
    e.badge.actor_kind = KZ_ACTOR_MAX;
    e.badge.acting_for = 0xfedcba9876543210ull;
    if (longest) {
        memset(e.badge.method, 'm', KZ_TOKEN_METHOD_MAX);
        memset(e.badge.name, 'n', KZ_TOKEN_NAME_MAX);
    } else {
        strcpy(e.badge.method, "ekyc-face");
        strcpy(e.badge.name, "Zo\xc3\xab \xf0\x9f\x99\x82");
    }
    e.n_blocked = longest ? 32 : 3;
    for (uint32_t k = 0; k < e.n_blocked; k++)
        e.blocked[k] = 0x1000000000000000ull + k * 7u;
    e.input_tick = 0xfedcba98u;
    e.corrected = 1;
    return e;
}

/* What a reader gives back for a record of `full` carrying `what`: the
 * parts carried, every other field zero. */
static kz_bus_entity t_expected(const kz_bus_entity *full, uint8_t what)
{
    kz_bus_entity e;
    memset(&e, 0, sizeof e);
    e.index = full->index;
    e.what = what;
    if (what & KZ_BUS_E_STATE)
        e.state = full->state;
    if (what & KZ_BUS_E_ATTR) {
        e.rule = full->rule;
        e.zone = full->zone;
        e.importance = full->importance;
        e.owner_id = full->owner_id;
    }
    if (what & KZ_BUS_E_BADGE)
        e.badge = full->badge;
    if (what & KZ_BUS_E_BLOCKED) {
        e.n_blocked = full->n_blocked;
        memcpy(e.blocked, full->blocked, sizeof e.blocked);
    }
    if (what & KZ_BUS_E_INPUT) {
        e.input_tick = full->input_tick;
        e.corrected = full->corrected;
    }
    return e;
}

static void t_assert_state_eq(const kz_snap_state *a, const kz_snap_state *b)
{
    cr_assert_eq(a->entity, b->entity);
    cr_assert_eq(a->kind, b->kind);
    cr_assert_eq(a->flags, b->flags);
    cr_assert_eq(a->anim, b->anim);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(a->pos[i], b->pos[i]);
        cr_assert_eq(a->vel[i], b->vel[i]);
    }
    cr_assert_eq(a->yaw, b->yaw);
    for (uint32_t k = 0; k < KZ_POSE_COUNT; k++) {
        for (int i = 0; i < 3; i++)
            cr_assert_eq(a->rel[k][i], b->rel[k][i]);
        cr_assert_eq(a->rot[k], b->rot[k]);
    }
    cr_assert_eq(a->pad, b->pad);
    cr_assert_eq(a->holder, b->holder);
}

static void t_assert_entity_eq(const kz_bus_entity *a, const kz_bus_entity *b)
{
    cr_assert_eq(a->index, b->index);
    cr_assert_eq(a->what, b->what);
    t_assert_state_eq(&a->state, &b->state);
    cr_assert_eq(a->rule, b->rule);
    cr_assert_eq(a->zone, b->zone);
    cr_assert_arr_eq(&a->importance, &b->importance, sizeof a->importance);
    cr_assert_eq(a->owner_id, b->owner_id);
    cr_assert_eq(a->badge.verification_level, b->badge.verification_level);
    cr_assert_eq(a->badge.actor_kind, b->badge.actor_kind);
    cr_assert_eq(a->badge.acting_for, b->badge.acting_for);
    cr_assert_str_eq(a->badge.method, b->badge.method);
    cr_assert_str_eq(a->badge.name, b->badge.name);
    cr_assert_eq(a->n_blocked, b->n_blocked);
    for (uint32_t k = 0; k < 32; k++)
        cr_assert_eq(a->blocked[k], b->blocked[k]);
    cr_assert_eq(a->input_tick, b->input_tick);
    cr_assert_eq(a->corrected, b->corrected);
}

/* Reads one record from an exact copy of b[0..n) in [first, end) after
 * `after`; on refusal, checks that the cursor did not move. */
static int t_read(const kz_snap_codec *c, const uint8_t *b, size_t n, uint32_t first,
                  uint32_t end, int64_t after, kz_bus_entity *e)
{
    uint8_t *m = t_exact(b, n);
    const uint8_t *p = m;
    int ok = kz_bus_entity_read(c, &p, m + n, first, end, after, e);
    if (ok)
        cr_assert_eq(p, m + n, "a record read whole, nothing past it");
    else
        cr_assert_eq(p, m, "a refused record moves nothing");
    free(m);
    return ok;
}

/* Writes `e` into b (room for any record); returns its size. */
static size_t t_write(const kz_bus_entity *e, uint8_t *b, size_t cap)
{
    uint8_t *p = b;
    cr_assert(kz_bus_entity_write(e, &p, b + cap));
    return (size_t)(p - b);
}

#define T_REC_MAX 1024u

Test(bus_codec, entity_every_combination_round_trips_field_by_field)
{
    kz_snap_codec c = t_codec();
    for (int longest = 0; longest < 2; longest++)
        for (unsigned what = 1; what <= KZ_BUS_E_GONE; what++) {
            if (what > KZ_BUS_E_ALL && what != KZ_BUS_E_GONE)
                continue;
            uint32_t index = 17u + what;
            kz_bus_entity full = t_entity(&c, index, (uint8_t)what, longest);
            uint8_t b[T_REC_MAX];
            size_t n = t_write(&full, b, sizeof b);
            cr_assert_eq(n, kz_bus_entity_size(&full), "what %u: size and bytes written", what);
            /* One byte short of room writes nothing. */
            uint8_t small[T_REC_MAX];
            uint8_t *p = small;
            cr_assert_not(kz_bus_entity_write(&full, &p, small + n - 1));
            cr_assert_eq(p, small);
            kz_bus_entity got;
            memset(&got, 0xA5, sizeof got);
            cr_assert(t_read(&c, b, n, 0, T_CAP, -1, &got), "what %u longest %d", what, longest);
            kz_bus_entity want = t_expected(&full, (uint8_t)what);
            t_assert_entity_eq(&got, &want);
            /* Written again, the same bytes. */
            uint8_t again[T_REC_MAX];
            cr_assert_eq(t_write(&got, again, sizeof again), n);
            cr_assert_arr_eq(again, b, n);
        }
}

Test(bus_codec, entity_record_layout_known_answer)
{
    kz_snap_codec c = t_codec();
    kz_bus_entity e = t_entity(&c, 0x010203, KZ_BUS_E_ATTR | KZ_BUS_E_INPUT, 0);
    e.importance = 1.0f;
    uint8_t b[T_REC_MAX];
    size_t n = t_write(&e, b, sizeof b);
    const uint8_t want[] = {
        0x03, 0x02, 0x01, 0x00, KZ_BUS_E_ATTR | KZ_BUS_E_INPUT, 0, 0, 0,  /* head */
        7, 200, 0, 0, 0x00, 0x00, 0x80, 0x3f,                           /* rule zone res imp */
        0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01,                 /* owner */
        0x98, 0xba, 0xdc, 0xfe, 1,                                      /* input, corrected */
    };
    cr_assert_eq(n, sizeof want);
    cr_assert_arr_eq(b, want, sizeof want);
    kz_bus_entity gone = {.index = 5, .what = KZ_BUS_E_GONE};
    n = t_write(&gone, b, sizeof b);
    const uint8_t want_gone[] = {5, 0, 0, 0, KZ_BUS_E_GONE, 0, 0, 0};
    cr_assert_eq(n, sizeof want_gone);
    cr_assert_arr_eq(b, want_gone, sizeof want_gone);
}

/* A STATE record of index 9 whose state went through `mutate`. */
typedef void (*t_state_fault)(const kz_snap_codec *c, kz_snap_state *s);
static void f_entity_zero(const kz_snap_codec *c, kz_snap_state *s) { (void)c; s->entity = 0; }
static void f_kind_0(const kz_snap_codec *c, kz_snap_state *s) { (void)c; s->kind = 0; }
static void f_kind_3(const kz_snap_codec *c, kz_snap_state *s) { (void)c; s->kind = 3; }
static void f_pad(const kz_snap_codec *c, kz_snap_state *s) { (void)c; s->pad = 1; }
static void f_pos_high(const kz_snap_codec *c, kz_snap_state *s) { s->pos[0] = c->pos_max + 1; }
static void f_pos_low(const kz_snap_codec *c, kz_snap_state *s) { s->pos[2] = -c->pos_max - 1; }
static void f_pos_min(const kz_snap_codec *c, kz_snap_state *s) { (void)c; s->pos[1] = INT32_MIN; }
static void f_vel(const kz_snap_codec *c, kz_snap_state *s) { (void)c; s->vel[1] = INT16_MIN; }
static void f_rel_high(const kz_snap_codec *c, kz_snap_state *s)
{
    (void)c;
    s->rel[2][1] = KZ_SNAP_REL_MAX + 1;
}
static void f_rel_low(const kz_snap_codec *c, kz_snap_state *s)
{
    (void)c;
    s->rel[0][0] = -KZ_SNAP_REL_MAX - 1;
}
static void f_rot(const kz_snap_codec *c, kz_snap_state *s)
{
    (void)c;
    s->rot[1] = (s->rot[1] & ~0x3ffu) | 0x3ffu;  /* a component past 2^k - 2 */
}
static void f_rot_top(const kz_snap_codec *c, kz_snap_state *s)
{
    (void)c;
    s->rot[2] |= 0x3ffu << 20;
}

Test(bus_codec, entity_refuses_states_the_codec_cannot_carry)
{
    static const struct {
        const char *name;
        t_state_fault f;
    } faults[] = {
        {"entity 0", f_entity_zero}, {"kind 0", f_kind_0},        {"kind 3", f_kind_3},
        {"pad", f_pad},              {"pos > max", f_pos_high},   {"pos < -max", f_pos_low},
        {"pos INT32_MIN", f_pos_min}, {"vel -32768", f_vel},     {"rel > max", f_rel_high},
        {"rel < -max", f_rel_low},   {"rot component", f_rot},   {"rot top component", f_rot_top},
    };
    kz_snap_codec c = t_codec();
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++) {
        kz_bus_entity e = t_entity(&c, 9, KZ_BUS_E_STATE | KZ_BUS_E_ATTR, 0);
        uint8_t b[T_REC_MAX];
        size_t n = t_write(&e, b, sizeof b);
        kz_bus_entity got;
        cr_assert(t_read(&c, b, n, 0, T_CAP, -1, &got), "%s: the clean record passes", faults[i].name);
        faults[i].f(&c, &e.state);
        n = t_write(&e, b, sizeof b);
        cr_assert_not(t_read(&c, b, n, 0, T_CAP, -1, &got), "%s", faults[i].name);
    }
    /* The codec's own bound: a record fine for a larger world is refused in a smaller one. */
    kz_snap_codec small;
    cr_assert_eq(kz_snap_codec_init(&small, 30, 100, 100.0f), KZ_OK);
    kz_bus_entity e = t_entity(&c, 9, KZ_BUS_E_STATE, 0);
    uint8_t b[T_REC_MAX];
    size_t n = t_write(&e, b, sizeof b);
    kz_bus_entity got;
    cr_assert_not(t_read(&small, b, n, 0, T_CAP, -1, &got));
}

Test(bus_codec, entity_refuses_an_id_of_another_index)
{
    kz_snap_codec c = t_codec();
    static const uint32_t ids[] = {
        3u << KZ_ENTITY_INDEX_BITS | 10u,              /* index 10 in record 9 */
        3u << KZ_ENTITY_INDEX_BITS | 8u,
        9u | 1u << (KZ_ENTITY_INDEX_BITS - 1u),        /* a high index bit */
        KZ_ENTITY_MAX,
    };
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        kz_bus_entity e = t_entity(&c, 9, KZ_BUS_E_STATE, 0);
        e.state.entity = ids[i];
        uint8_t b[T_REC_MAX];
        size_t n = t_write(&e, b, sizeof b);
        kz_bus_entity got;
        cr_assert_not(t_read(&c, b, n, 0, T_CAP, -1, &got), "id %#x in index 9", ids[i]);
    }
    /* Any generation of the right index passes. */
    kz_bus_entity e = t_entity(&c, 9, KZ_BUS_E_STATE, 0);
    e.state.entity = KZ_ENTITY_GENERATION_MAX << KZ_ENTITY_INDEX_BITS | 9u;
    uint8_t b[T_REC_MAX];
    size_t n = t_write(&e, b, sizeof b);
    kz_bus_entity got;
    cr_assert(t_read(&c, b, n, 0, T_CAP, -1, &got));
}

Test(bus_codec, entity_refuses_indices_outside_the_range_or_not_ascending)
{
    kz_snap_codec c = t_codec();
    static const struct {
        uint32_t index, first, end;
        int64_t after;
        int ok;
    } cases[] = {
        {10, 10, 20, 9, 1},    {19, 10, 20, 9, 1},          {9, 10, 20, -1, 0},
        {20, 10, 20, -1, 0},   {UINT32_MAX, 0, T_CAP, -1, 0}, {15, 10, 20, 15, 0},
        {15, 10, 20, 14, 1},   {15, 10, 20, 16, 0},          {0, 0, 1, -1, 1},
        {0, 0, 1, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int gone = 0; gone < 2; gone++) {
            uint8_t what = gone ? KZ_BUS_E_GONE : KZ_BUS_E_STATE | KZ_BUS_E_INPUT;
            kz_bus_entity e = t_entity(&c, cases[i].index, what, 0);
            e.state.entity = 1u << KZ_ENTITY_INDEX_BITS | (cases[i].index & KZ_ENTITY_MAX);
            uint8_t b[T_REC_MAX];
            size_t n = t_write(&e, b, sizeof b);
            kz_bus_entity got;
            int ok = t_read(&c, b, n, cases[i].first, cases[i].end, cases[i].after, &got);
            /* An index beyond the entity id space cannot carry a state. */
            int want = cases[i].ok && (gone || cases[i].index <= KZ_ENTITY_MAX);
            cr_assert_eq(ok, want, "index %u in [%u, %u) after %lld (%s)", cases[i].index,
                         cases[i].first, cases[i].end, (long long)cases[i].after,
                         gone ? "GONE" : "STATE");
        }
}

Test(bus_codec, entity_refuses_unknown_what_bits_and_gone_with_anything)
{
    kz_snap_codec c = t_codec();
    for (unsigned what = 0; what < 256; what++) {
        int known = (what >= 1 && what <= KZ_BUS_E_ALL) || what == KZ_BUS_E_GONE;
        kz_bus_entity e = t_entity(&c, 4, (uint8_t)(what & KZ_BUS_E_ALL), 0);
        uint8_t b[T_REC_MAX];
        size_t n = t_write(&e, b, sizeof b);
        b[T_E_WHAT] = (uint8_t)what;  /* the bits claimed; the parts of the valid ones follow */
        kz_bus_entity got;
        int ok = t_read(&c, b, n, 0, T_CAP, -1, &got);
        cr_assert_eq(ok, known, "what %#x", what);
    }
    /* GONE alone passes; the record's reserved bytes must be zero. */
    uint8_t g[8] = {4, 0, 0, 0, KZ_BUS_E_GONE, 0, 0, 0};
    kz_bus_entity got;
    cr_assert(t_read(&c, g, sizeof g, 0, T_CAP, -1, &got));
    cr_assert_eq(got.what, KZ_BUS_E_GONE);
    cr_assert_eq(got.index, 4);
    for (unsigned k = 5; k < 8; k++) {
        g[k] = 1;
        cr_assert_not(t_read(&c, g, sizeof g, 0, T_CAP, -1, &got), "reserved byte %u", k);
        g[k] = 0;
    }
    kz_bus_entity e = t_entity(&c, 4, KZ_BUS_E_STATE, 0);
    uint8_t b[T_REC_MAX];
    size_t n = t_write(&e, b, sizeof b);
    for (unsigned k = 5; k < 8; k++) {
        b[k] = 0x80;
        cr_assert_not(t_read(&c, b, n, 0, T_CAP, -1, &got), "reserved byte %u", k);
        b[k] = 0;
    }
}

/* A BADGE record of index 4 with raw string bytes and lengths. */
static size_t t_badge_raw(uint8_t *b, uint8_t level, uint8_t actor, const void *method,
                          uint8_t mlen, const void *name, uint8_t nlen)
{
    uint8_t *p = b;
    const uint8_t head[8] = {4, 0, 0, 0, KZ_BUS_E_BADGE, 0, 0, 0};
    memcpy(p, head, 8);
    p += 8;
    *p++ = level;
    *p++ = actor;
    t_put64(p, 0);
    p += 8;
    *p++ = mlen;
    memcpy(p, method, mlen);
    p += mlen;
    *p++ = nlen;
    memcpy(p, name, nlen);
    p += nlen;
    return (size_t)(p - b);
}

Test(bus_codec, entity_refuses_bad_badge_strings)
{
    kz_snap_codec c = t_codec();
    static const struct {
        const char *why;
        const char *method;
        uint8_t mlen;
        const char *name;
        uint8_t nlen;
    } bad[] = {
        {"method not UTF-8", "\xff", 1, "ann", 3},
        {"name not UTF-8", "none", 4, "a\xc3", 2},
        {"name overlong NUL", "none", 4, "\xc0\x80", 2},
        {"name a surrogate", "none", 4, "\xed\xa0\x80", 3},
        {"name beyond U+10FFFF", "none", 4, "\xf4\x90\x80\x80", 4},
        {"method with a NUL", "no\0ne", 5, "ann", 3},
        {"name with a NUL", "none", 4, "an\0n", 4},
        {"name only a NUL", "none", 4, "\0", 1},
    };
    uint8_t b[T_REC_MAX];
    kz_bus_entity got;
    size_t n = t_badge_raw(b, 1, 1, "none", 4, "ann", 3);
    cr_assert(t_read(&c, b, n, 0, T_CAP, -1, &got), "the clean badge passes");
    cr_assert_str_eq(got.badge.name, "ann");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        n = t_badge_raw(b, 1, 1, bad[i].method, bad[i].mlen, bad[i].name, bad[i].nlen);
        cr_assert_not(t_read(&c, b, n, 0, T_CAP, -1, &got), "%s", bad[i].why);
    }
    /* Lengths beyond the token's limits, with bytes enough behind them. */
    char longm[KZ_TOKEN_METHOD_MAX + 1], longn[KZ_TOKEN_NAME_MAX + 1];
    memset(longm, 'm', sizeof longm);
    memset(longn, 'n', sizeof longn);
    n = t_badge_raw(b, 1, 1, longm, KZ_TOKEN_METHOD_MAX, longn, KZ_TOKEN_NAME_MAX);
    cr_assert(t_read(&c, b, n, 0, T_CAP, -1, &got), "the longest strings pass");
    n = t_badge_raw(b, 1, 1, longm, KZ_TOKEN_METHOD_MAX + 1, "a", 1);
    cr_assert_not(t_read(&c, b, n, 0, T_CAP, -1, &got), "method one byte too long");
    n = t_badge_raw(b, 1, 1, "none", 4, longn, KZ_TOKEN_NAME_MAX + 1);
    cr_assert_not(t_read(&c, b, n, 0, T_CAP, -1, &got), "name one byte too long");
}

/* The badge's codes are range-checked like every code on the bus (sim/bus.h:
 * "every count and code is range-checked"), and a badge the edge's snapshot
 * encoder would refuse (sim/snapshot.c badge_valid: level <= KZ_VERIFY_MAX,
 * actor <= KZ_ACTOR_MAX, method printable ASCII, name printable UTF-8) must
 * not reach its replica: there it would fail every snapshot that carries
 * the entity's entering record, for every client that sees it. */
Test(bus_codec, entity_refuses_a_badge_the_snapshot_encoder_refuses)
{
    kz_snap_codec c = t_codec();
    static const struct {
        const char *why;
        uint8_t level, actor;
        const char *method, *name;
    } bad[] = {
        {"level beyond KZ_VERIFY_MAX", KZ_VERIFY_MAX + 1, 0, "ekyc", "ann"},
        {"level 255", 255, 0, "ekyc", "ann"},
        {"actor beyond KZ_ACTOR_MAX", 1, KZ_ACTOR_MAX + 1, "ekyc", "ann"},
        {"method with a space", 1, 0, "e kyc", "ann"},
        {"method with a control byte", 1, 0, "ekyc\x07", "ann"},
        {"name with a control byte", 1, 0, "ekyc", "an\x1bn"},
    };
    uint8_t b[T_REC_MAX];
    kz_bus_entity got;
    char taken[512] = "";
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t n = t_badge_raw(b, bad[i].level, bad[i].actor, bad[i].method,
                               (uint8_t)strlen(bad[i].method), bad[i].name,
                               (uint8_t)strlen(bad[i].name));
        if (t_read(&c, b, n, 0, T_CAP, -1, &got)) {
            strncat(taken, bad[i].why, sizeof taken - strlen(taken) - 1);
            strncat(taken, "; ", sizeof taken - strlen(taken) - 1);
        }
    }
    cr_assert_str_empty(taken, "taken: %s", taken);
}

Test(bus_codec, entity_refuses_bad_counts_and_codes)
{
    kz_snap_codec c = t_codec();
    kz_bus_entity got;
    uint8_t b[T_REC_MAX];
    size_t n;
    /* Block lists: at most 32. */
    kz_bus_entity e = t_entity(&c, 4, KZ_BUS_E_BLOCKED, 1);
    n = t_write(&e, b, sizeof b);
    cr_assert(t_read(&c, b, n, 0, T_CAP, -1, &got));
    cr_assert_eq(got.n_blocked, 32);
    static const uint8_t counts[] = {33, 64, 255};
    for (size_t i = 0; i < sizeof counts; i++) {
        uint8_t big[T_REC_MAX];
        memcpy(big, b, n);
        big[T_E_PARTS] = counts[i];
        /* with the ids a count claims behind it, so only the count is wrong */
        size_t m = n;
        for (uint32_t k = 32; k < counts[i] && m + 8 <= sizeof big; k++, m += 8)
            t_put64(big + m, k);
        cr_assert_not(t_read(&c, big, m, 0, T_CAP, -1, &got), "n_blocked %u", counts[i]);
    }
    /* corrected is a flag. */
    e = t_entity(&c, 4, KZ_BUS_E_INPUT, 0);
    for (unsigned v = 0; v < 256; v++) {
        e.corrected = (uint8_t)v;
        n = t_write(&e, b, sizeof b);
        cr_assert_eq(t_read(&c, b, n, 0, T_CAP, -1, &got), v <= 1, "corrected %u", v);
    }
    /* Importance: finite, 0 .. 1e6. */
    static const float bad_imp[] = {NAN, -NAN, INFINITY, -INFINITY, -1.0f, -1e-30f, 1.5e6f};
    e = t_entity(&c, 4, KZ_BUS_E_ATTR, 0);
    for (size_t i = 0; i < sizeof bad_imp / sizeof bad_imp[0]; i++) {
        e.importance = bad_imp[i];
        n = t_write(&e, b, sizeof b);
        cr_assert_not(t_read(&c, b, n, 0, T_CAP, -1, &got), "importance %g", (double)bad_imp[i]);
    }
    static const float ok_imp[] = {0.0f, 1e-30f, 1.0f, 1e6f};
    for (size_t i = 0; i < sizeof ok_imp / sizeof ok_imp[0]; i++) {
        e.importance = ok_imp[i];
        n = t_write(&e, b, sizeof b);
        cr_assert(t_read(&c, b, n, 0, T_CAP, -1, &got), "importance %g", (double)ok_imp[i]);
    }
    /* Rule bits: three known; the attribute part's reserved u16 is zero. */
    e = t_entity(&c, 4, KZ_BUS_E_ATTR, 0);
    for (unsigned v = 0; v < 256; v++) {
        e.rule = (uint8_t)v;
        n = t_write(&e, b, sizeof b);
        cr_assert_eq(t_read(&c, b, n, 0, T_CAP, -1, &got), v <= 7, "rule %#x", v);
    }
    e.rule = 1;
    n = t_write(&e, b, sizeof b);
    for (unsigned k = 2; k < 4; k++) {
        b[T_E_PARTS + k] = 1;
        cr_assert_not(t_read(&c, b, n, 0, T_CAP, -1, &got), "attribute reserved byte %u", k);
        b[T_E_PARTS + k] = 0;
    }
    /* A kind the state's kind byte must name (inside STATE). */
    e = t_entity(&c, 4, KZ_BUS_E_STATE, 0);
    n = t_write(&e, b, sizeof b);
    b[T_E_PARTS + T_S_KIND] = 9;
    cr_assert_not(t_read(&c, b, n, 0, T_CAP, -1, &got));
}

Test(bus_codec, entity_cut_at_every_byte_is_refused)
{
    kz_snap_codec c = t_codec();
    kz_bus_entity got;
    for (int longest = 0; longest < 2; longest++) {
        kz_bus_entity e = t_entity(&c, 33, KZ_BUS_E_ALL, longest);
        uint8_t b[T_REC_MAX];
        size_t n = t_write(&e, b, sizeof b);
        cr_assert(t_read(&c, b, n, 0, T_CAP, -1, &got));
        for (size_t cut = 0; cut < n; cut++)
            cr_assert_not(t_read(&c, b, cut, 0, T_CAP, -1, &got), "cut at %zu of %zu", cut, n);
    }
    uint8_t g[8] = {33, 0, 0, 0, KZ_BUS_E_GONE, 0, 0, 0};
    for (size_t cut = 0; cut < sizeof g; cut++)
        cr_assert_not(t_read(&c, g, cut, 0, T_CAP, -1, &got), "GONE cut at %zu", cut);
}

/* ---- DOWN and BATCH record heads ----------------------------------------- */

Test(bus_codec, record_heads_layout_and_round_trip)
{
    static const uint8_t body[3] = {'a', 'b', 'c'};
    kz_bus_rec r = {.kind = 5, .sub = 2, .len = 3, .slot = 0x01020304, .serial = 0x05060708,
                    .age_us = 0x090a0b0c, .body = body};
    uint8_t b[64];
    for (int up = 0; up < 2; up++) {
        uint8_t *p = b;
        cr_assert(kz_bus_rec_write(&r, up, &p, b + sizeof b));
        size_t head = up ? KZ_BUS_UP_REC_BYTES : KZ_BUS_REC_BYTES;
        cr_assert_eq((size_t)(p - b), head + 3);
        const uint8_t want_up[] = {5, 2, 3, 0, 4, 3, 2, 1, 8, 7, 6, 5, 0x0c, 0x0b, 0x0a, 9,
                                   'a', 'b', 'c'};
        const uint8_t want_down[] = {5, 2, 3, 0, 4, 3, 2, 1, 8, 7, 6, 5, 'a', 'b', 'c'};
        if (up)
            cr_assert_arr_eq(b, want_up, sizeof want_up);
        else
            cr_assert_arr_eq(b, want_down, sizeof want_down);
        /* Read back from an exact block with one more record's byte behind it. */
        size_t n = head + 3 + 1;
        b[head + 3] = 0xEE;
        uint8_t *m = t_exact(b, n);
        const uint8_t *q = m;
        kz_bus_rec got;
        memset(&got, 0xA5, sizeof got);
        cr_assert(kz_bus_rec_read(&q, m + n, up, &got));
        cr_assert_eq(q, m + head + 3, "the cursor stops after the body");
        cr_assert_eq(got.kind, r.kind);
        cr_assert_eq(got.sub, r.sub);
        cr_assert_eq(got.len, r.len);
        cr_assert_eq(got.slot, r.slot);
        cr_assert_eq(got.serial, r.serial);
        cr_assert_eq(got.age_us, up ? r.age_us : 0u);
        cr_assert_eq(got.body, m + head, "the body is where it lies, not a copy");
        free(m);
        /* An empty body, and the largest. */
        kz_bus_rec z = r;
        z.len = 0;
        p = b;
        cr_assert(kz_bus_rec_write(&z, up, &p, b + sizeof b));
        m = t_exact(b, head);
        q = m;
        cr_assert(kz_bus_rec_read(&q, m + head, up, &got));
        cr_assert_eq(got.len, 0);
        cr_assert_eq(q, m + head);
        free(m);
    }
    uint8_t *big = calloc(1, KZ_BUS_UP_REC_BYTES + 65535u);
    cr_assert_not_null(big);
    kz_bus_rec z = r;
    z.len = 65535;
    z.body = big + KZ_BUS_UP_REC_BYTES;  /* any bytes */
    uint8_t *p = big;
    cr_assert(kz_bus_rec_write(&z, 1, &p, big + KZ_BUS_UP_REC_BYTES + 65535u));
    const uint8_t *q = big;
    kz_bus_rec got;
    cr_assert(kz_bus_rec_read(&q, big + KZ_BUS_UP_REC_BYTES + 65535u, 1, &got));
    cr_assert_eq(got.len, 65535);
    free(big);
}

Test(bus_codec, record_heads_refuse_every_cut_and_short_bodies)
{
    static const uint8_t body[40] = {1, 2, 3};
    kz_bus_rec r = {.kind = 1, .sub = 0, .len = sizeof body, .slot = 3, .serial = 4,
                    .age_us = 5, .body = body};
    for (int up = 0; up < 2; up++) {
        uint8_t b[128];
        uint8_t *p = b;
        cr_assert(kz_bus_rec_write(&r, up, &p, b + sizeof b));
        size_t n = (size_t)(p - b);
        for (size_t cut = 0; cut < n; cut++) {
            uint8_t *m = t_exact(b, cut);
            const uint8_t *q = m;
            kz_bus_rec got;
            cr_assert_not(kz_bus_rec_read(&q, m + cut, up, &got), "%s cut at %zu",
                          up ? "up" : "down", cut);
            cr_assert_eq(q, m, "a refused record moves nothing");
            free(m);
        }
        /* A length claiming far more than there is. */
        b[2] = 0xff;
        b[3] = 0xff;
        uint8_t *m = t_exact(b, n);
        const uint8_t *q = m;
        kz_bus_rec got;
        cr_assert_not(kz_bus_rec_read(&q, m + n, up, &got));
        free(m);
    }
    /* A writer without room writes nothing. */
    uint8_t b[16];
    uint8_t *p = b;
    cr_assert_not(kz_bus_rec_write(&r, 1, &p, b + sizeof b));
    cr_assert_eq(p, b);
}

/* ==== an authority and an edge ============================================== */

#define T_PROTO 0x4B5A4255534E4554ull
#define T_SERVER_ID 93u
#define T_CLIENTS 16u
#define T_AUTH_INSTANCE 0xA0A0A0A0A0ull
#define T_EPOCH 1000u
#define T_EDGE_INSTANCE 0xE1E1E1E1E1ull
#define T_STEP_NS 2000000ull  /* 2 ms per pass */
#define T_COPY_MAX (KZ_BUS_HEADER_BYTES + 65536u)
/* Offsets in a TICK message: its head, then the first entity record. */
#define T_TICK_HEAD KZ_BUS_HEADER_BYTES
#define T_TICK_COUNT (T_TICK_HEAD + 16u)
#define T_TICK_REC (T_TICK_HEAD + KZ_BUS_TICK_HEAD_BYTES)

typedef struct t_copy {
    uint32_t len;
    uint8_t data[T_COPY_MAX];
} t_copy;

/* An edge driven by hand: its messages are written here with the codec. */
typedef struct t_hand {
    int on;
    uint64_t instance, started, seq;
    uint32_t avatar[T_CLIENTS];  /* what the DOWNs said of each slot: avatar + 1 */
    uint32_t sessions_told, kicks_told;
} t_hand;

typedef struct t_fleet {
    kzt_keys keys;
    kz_server *auth, *edge;      /* the edge is edge 1 */
    kz_time_ns now;
    t_hand hand[4];              /* edges 2 and 3 */
    /* On the tick subject, before the edge: 1 withholds the message. */
    int (*tap)(const kz__bus_msg *m);
    uint32_t pump_drops;         /* messages the pump passed on that were dropped */
    uint32_t hellos;             /* HELLOs the edge sent, and the newest one's reason */
    uint8_t hello_reason;
    t_copy last_tick, last_down, last_up, held;
} t_fleet;

static t_fleet F;
static uint8_t t_buf[T_COPY_MAX];

static void t_keep(t_copy *c, const uint8_t *data, uint32_t len)
{
    cr_assert_leq(len, sizeof c->data);
    memcpy(c->data, data, len);
    c->len = len;
}

static uint8_t t_type(const uint8_t *msg) { return msg[5]; }

static uint32_t t_write_msg(uint8_t *out, uint8_t type, uint16_t sender, uint64_t instance,
                            uint64_t epoch, uint64_t seq, const uint8_t *body, uint32_t n)
{
    kz_bus_header h = {.type = type, .sender = sender, .length = n, .world = T_WORLD,
                       .instance = instance, .epoch = epoch, .seq = seq};
    kz_bus_header_write(&h, out);
    if (n)
        memcpy(out + KZ_BUS_HEADER_BYTES, body, n);
    return KZ_BUS_HEADER_BYTES + n;
}

/* Hand edge `e` sends `type` with its next sequence number (taken only
 * when the authority accepts the message). */
static kz_bus_drop t_hand_send(uint32_t e, uint8_t type, const uint8_t *body, uint32_t n)
{
    t_hand *h = &F.hand[e];
    static uint8_t b[T_COPY_MAX];
    uint32_t len = t_write_msg(b, type, (uint16_t)e, h->instance,
                               type == KZ_BUS_HELLO ? 0 : T_EPOCH, h->seq + 1u, body, n);
    kz_bus_drop d = kz__fleet_receive(F.auth, KZ_BUS_SUBJECT_UP, e, b, len);
    if (d == KZ_BUS_OK)
        h->seq++;
    return d;
}

static void t_hand_hello(uint32_t e, uint64_t instance, uint64_t started)
{
    t_hand *h = &F.hand[e];
    memset(h, 0, sizeof *h);
    h->on = 1;
    h->instance = instance;
    h->started = started;
    uint8_t b[12] = {1, 0, 0, 0};
    t_put64(b + 4, started);
    cr_assert_eq(t_hand_send(e, KZ_BUS_HELLO, b, sizeof b), KZ_BUS_OK);
}

typedef struct t_batch {
    uint8_t b[16384];
    uint8_t *p;
    uint32_t count;
} t_batch;

static void t_batch_start(t_batch *b)
{
    b->p = b->b + KZ_BUS_BATCH_HEAD_BYTES;
    b->count = 0;
}

static void t_batch_add(t_batch *b, uint8_t kind, uint8_t sub, uint32_t slot, uint32_t serial,
                        const void *body, uint32_t len)
{
    kz_bus_rec r = {.kind = kind, .sub = sub, .len = (uint16_t)len, .slot = slot,
                    .serial = serial, .body = body};
    cr_assert(kz_bus_rec_write(&r, 1, &b->p, b->b + sizeof b->b));
    b->count++;
}

static uint32_t t_batch_end(t_batch *b)
{
    kz_bus_put32(b->b, 0);
    kz_bus_put32(b->b + 4, b->count);
    return (uint32_t)(b->p - b->b);
}

/* The claims an edge forwards in a JOIN for `client_id`. */
static uint32_t t_claims(uint64_t client_id, uint8_t *out, size_t cap)
{
    kz_token_info t;
    memset(&t, 0, sizeof t);
    t.protocol_id = T_PROTO;
    t.create_time = (uint64_t)time(NULL) - 1;
    t.expire_time = t.create_time + 600;
    t.server_id = T_SERVER_ID;
    t.n_addresses = 1;
    t.addresses[0].family = KZ_ADDR_IPV4;
    t.addresses[0].ip[0] = 127;
    t.addresses[0].ip[3] = 1;
    t.addresses[0].port = 40000;
    t.client_id = client_id;
    t.avatar_id = client_id + 1000;
    snprintf(t.name, sizeof t.name, "bus-%llu", (unsigned long long)(client_id % 100000u));
    strcpy(t.claims.method, "none");
    size_t n = kz__token_claims_write(&t, out, cap);
    cr_assert_gt(n, 0);
    return (uint32_t)n;
}

/* What a DOWN tells hand edge `e`. */
static void t_hand_down(uint32_t e, const uint8_t *msg, uint32_t len)
{
    t_hand *h = &F.hand[e];
    kz_bus_header hd;
    cr_assert_eq(kz_bus_header_check(msg, len, T_WORLD, KZ_BUS_SUBJECT_DOWN, e, &hd), KZ_BUS_OK);
    const uint8_t *body = msg + KZ_BUS_HEADER_BYTES, *end = msg + len;
    uint32_t count = kz_bus_get32(body + 4);
    const uint8_t *q = body + KZ_BUS_DOWN_HEAD_BYTES;
    for (uint32_t k = 0; k < count; k++) {
        kz_bus_rec r;
        cr_assert(kz_bus_rec_read(&q, end, 0, &r));
        if (r.kind == KZ_BUS_D_SESSION && r.slot < T_CLIENTS) {
            h->avatar[r.slot] = kz_bus_get32(r.body);
            h->sessions_told++;
        } else if (r.kind == KZ_BUS_D_KICK) {
            h->kicks_told++;
        }
    }
}

/* Passes every message as the server program does: the edges' up to the
 * authority, then the authority's tick subject to the edge and each down
 * subject to its edge. */
static void t_pump(void)
{
    const kz__bus_msg *m;
    uint32_t n = kz__fleet_out(F.edge, &m);
    for (uint32_t k = 0; k < n; k++) {
        cr_assert_eq(m[k].subject, KZ_BUS_SUBJECT_UP);
        cr_assert_eq(m[k].edge, 1);
        if (t_type(m[k].data) == KZ_BUS_HELLO) {
            F.hellos++;
            F.hello_reason = m[k].data[KZ_BUS_HEADER_BYTES];
        }
        t_keep(&F.last_up, m[k].data, m[k].len);
        if (kz__fleet_receive(F.auth, KZ_BUS_SUBJECT_UP, 1, m[k].data, m[k].len) != KZ_BUS_OK)
            F.pump_drops++;
    }
    kz__fleet_out_clear(F.edge);
    for (uint32_t e = 2; e < 4; e++)
        if (F.hand[e].on) {
            t_batch b;
            t_batch_start(&b);
            uint32_t len = t_batch_end(&b);
            if (t_hand_send(e, KZ_BUS_BATCH, b.b, len) != KZ_BUS_OK)
                F.pump_drops++;
        }
    n = kz__fleet_out(F.auth, &m);
    for (uint32_t k = 0; k < n; k++) {
        if (m[k].subject == KZ_BUS_SUBJECT_TICK) {
            if (F.tap && F.tap(&m[k]))
                continue;
            if (t_type(m[k].data) == KZ_BUS_TICK)
                t_keep(&F.last_tick, m[k].data, m[k].len);
            if (kz__fleet_receive(F.edge, KZ_BUS_SUBJECT_TICK, 0, m[k].data, m[k].len) !=
                KZ_BUS_OK)
                F.pump_drops++;
            continue;
        }
        cr_assert_eq(m[k].subject, KZ_BUS_SUBJECT_DOWN);
        if (m[k].edge == 1) {
            t_keep(&F.last_down, m[k].data, m[k].len);
            if (kz__fleet_receive(F.edge, KZ_BUS_SUBJECT_DOWN, 1, m[k].data, m[k].len) !=
                KZ_BUS_OK)
                F.pump_drops++;
        } else if (m[k].edge < 4 && F.hand[m[k].edge].on) {
            t_hand_down(m[k].edge, m[k].data, m[k].len);
        }
    }
    kz__fleet_out_clear(F.auth);
}

static void t_step(void)
{
    F.now += T_STEP_NS;
    (void)kz_server_step(F.auth, F.now);
    (void)kz_server_step(F.edge, F.now);
    t_pump();
}

static void t_steps(uint32_t n)
{
    for (uint32_t k = 0; k < n; k++)
        t_step();
}

static kz_server_config t_config(int edge)
{
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    if (edge)
        kzt_server_config(&sc.net, &F.keys, T_PROTO, T_SERVER_ID, T_CLIENTS);
    else
        sc.net.max_clients = T_CLIENTS;  /* an authority has no transport */
    sc.net.log.level = KZ_LOG_ERROR;
    sc.spawn_radius = 8.0f;
    return sc;
}

/* An authority with three objects and an edge that has not said HELLO. */
static void t_start(void)
{
    memset(&F, 0, sizeof F);
    cr_assert_geq(sodium_init(), 0);
    cr_assert_eq(kzt_keys_make(&F.keys), KZ_OK);
    kz_server_config sc = t_config(0);
    kz__fleet_config fc = {.role = KZ__ROLE_AUTHORITY, .world = T_WORLD,
                           .instance = T_AUTH_INSTANCE, .started_ms = T_EPOCH};
    F.auth = kz__fleet_server_create(&sc, &fc);
    cr_assert_not_null(F.auth);
    for (int k = 0; k < 3; k++) {
        float pos[3] = {2.0f * (float)k, 0.0f, 3.0f};
        uint32_t id;
        cr_assert_eq(kz_server_object_add(F.auth, pos, NULL, &id), KZ_OK);
    }
    sc = t_config(1);
    kz__fleet_config ec = {.role = KZ__ROLE_EDGE, .edge = 1, .world = T_WORLD,
                           .instance = T_EDGE_INSTANCE, .started_ms = 2000};
    F.edge = kz__fleet_server_create(&sc, &ec);
    cr_assert_not_null(F.edge);
    F.now = 1;
}

/* t_start, the edge's HELLO and SYNC, then a second of steady state. */
static void t_start_synced(void)
{
    t_start();
    kz__fleet_hello(F.edge, 1);
    for (uint32_t k = 0; k < 500 && !kz__fleet_synced(F.edge); k++)
        t_step();
    cr_assert(kz__fleet_synced(F.edge), "the edge never took the world image");
    t_steps(500);
    cr_assert(kz__fleet_synced(F.edge));
    cr_assert_eq(F.pump_drops, 0);
}

static void t_stop(void)
{
    kz_server_destroy(F.edge);
    kz_server_destroy(F.auth);
}

/* ---- what may move and what may not ---------------------------------------- */

typedef struct t_print {
    uint8_t h[32];
} t_print;

#define T_MIX(st, v) crypto_generichash_update((st), (const uint8_t *)&(v), sizeof(v))
#define T_MIX_N(st, p, n) crypto_generichash_update((st), (const uint8_t *)(p), (n))

static void t_mix_sessions(crypto_generichash_state *st, const kz_server *s)
{
    for (uint32_t w = 0; w < s->sessions.max_clients; w++) {
        const kz__client *cl = &s->sessions.clients[w];
        T_MIX(st, cl->live);
        T_MIX(st, cl->kicked);
        T_MIX(st, cl->detached);
        T_MIX(st, cl->avatar);
        T_MIX(st, cl->serial);
        T_MIX(st, cl->client_id);
    }
    T_MIX(st, s->sessions.n_live);
    T_MIX(st, s->tick);
}

/* Everything of the authority's a bus message could change. */
static t_print t_auth_print(void)
{
    const kz_server *s = F.auth;
    const kz__fleet *f = s->fleet;
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    for (uint32_t e = 1; e <= KZ_BUS_MAX_EDGES; e++) {
        const kz__peer *p = &f->peers[e];
        T_MIX(&st, p->instance);
        T_MIX(&st, p->started);
        T_MIX(&st, p->seq);
        T_MIX(&st, p->seq_down);
        T_MIX(&st, p->heard);
        T_MIX(&st, p->need_sync);
        T_MIX(&st, p->lost);
        T_MIX_N(&st, p->by_slot, f->max_clients * sizeof p->by_slot[0]);
    }
    for (uint32_t w = 0; w < f->max_clients; w++) {
        const kz__wslot *ws = &f->ws[w];
        T_MIX(&st, ws->edge);
        T_MIX(&st, ws->eslot);
        T_MIX(&st, ws->eserial);
        T_MIX(&st, ws->held);
        T_MIX(&st, ws->held_edge);
        T_MIX(&st, ws->held_instance);
        T_MIX(&st, ws->held_since);
    }
    T_MIX(&st, f->next_serial);
    T_MIX(&st, f->stage_used);
    T_MIX(&st, f->n_msgs);
    T_MIX(&st, f->out_used);
    t_mix_sessions(&st, s);
    T_MIX_N(&st, s->world.image, s->world.cap * sizeof s->world.image[0]);
    t_print out;
    crypto_generichash_final(&st, out.h, sizeof out.h);
    return out;
}

/* Everything of the edge's a bus message could change: its hold on the
 * authority's sequence and the replica. */
static t_print t_edge_print(void)
{
    const kz_server *s = F.edge;
    const kz__fleet *f = s->fleet;
    uint32_t cap = s->world.cap;
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    T_MIX(&st, f->auth_instance);
    T_MIX(&st, f->auth_epoch);
    T_MIX(&st, f->auth_seq_tick);
    T_MIX(&st, f->auth_seq_down);
    T_MIX(&st, f->synced);
    T_MIX(&st, f->failed);
    T_MIX(&st, f->rtick);
    T_MIX(&st, f->building);
    T_MIX(&st, f->building_sync);
    T_MIX(&st, f->part_tick);
    T_MIX(&st, f->part_next);
    T_MIX(&st, f->part_end);
    T_MIX(&st, f->last_update);
    T_MIX(&st, f->last_hello);
    T_MIX(&st, f->hello_reason);
    T_MIX(&st, f->n_msgs);
    T_MIX(&st, f->out_used);
    T_MIX_N(&st, f->rstate, cap * sizeof f->rstate[0]);
    T_MIX_N(&st, f->rrule, cap);
    T_MIX_N(&st, f->rzone, cap);
    T_MIX_N(&st, f->rn_blocked, cap);
    T_MIX_N(&st, f->rcorr, cap);
    T_MIX_N(&st, f->rgrid, cap);
    T_MIX_N(&st, f->rimp, cap * sizeof f->rimp[0]);
    T_MIX_N(&st, f->rowner, cap * sizeof f->rowner[0]);
    T_MIX_N(&st, f->rbadge_gen, cap * sizeof f->rbadge_gen[0]);
    T_MIX_N(&st, f->rblocked_gen, cap * sizeof f->rblocked_gen[0]);
    T_MIX_N(&st, f->rinput, cap * sizeof f->rinput[0]);
    T_MIX_N(&st, f->rblocked, cap * sizeof f->rblocked[0]);
    t_mix_sessions(&st, s);
    t_print out;
    crypto_generichash_final(&st, out.h, sizeof out.h);
    return out;
}

typedef struct t_counts {
    uint64_t fleet[KZ__FLEET_C_COUNT];
    uint64_t world[KZ_WORLD_C_COUNT];
} t_counts;

static t_counts t_counts_of(const kz_server *s)
{
    t_counts c;
    const kz_counters *w = kz_server_counters(s);
    cr_assert_eq(w->n_counters, KZ_WORLD_C_COUNT);
    cr_assert_eq(kz__fleet_counters(s)->n_counters, KZ__FLEET_C_COUNT);
    kz_counters_snapshot(kz__fleet_counters(s), c.fleet);
    kz_counters_snapshot(w, c.world);
    return c;
}

static uint64_t t_counter(const kz_server *s, uint32_t id)
{
    return kz_counters_get(kz__fleet_counters(s), id);
}

typedef struct t_delta {
    uint32_t id;
    uint64_t by;
} t_delta;
#define T_END {UINT32_MAX, 0}

/* Every fleet counter of `s` moved from `before` by exactly the deltas
 * listed, the others not at all; with `world_too`, no world counter moved. */
static void t_assert_moved(const kz_server *s, const t_counts *before, const t_delta *d,
                           int world_too)
{
    t_counts now = t_counts_of(s);
    uint64_t want[KZ__FLEET_C_COUNT];
    memcpy(want, before->fleet, sizeof want);
    for (; d->id != UINT32_MAX; d++)
        want[d->id] += d->by;
    for (uint32_t i = 0; i < KZ__FLEET_C_COUNT; i++)
        cr_assert_eq(now.fleet[i], want[i], "%s at the %s: %llu, want %llu",
                     kz__fleet_counter_names[i], s == F.auth ? "authority" : "edge",
                     (unsigned long long)now.fleet[i], (unsigned long long)want[i]);
    if (world_too)
        for (uint32_t i = 0; i < KZ_WORLD_C_COUNT; i++)
            cr_assert_eq(now.world[i], before->world[i], "world counter %s moved at the %s",
                         kz_counters_name(kz_server_counters(s), i),
                         s == F.auth ? "authority" : "edge");
}

/* No drop counter of `s` moved since `before`, but `except` (UINT32_MAX:
 * none) by `by`. */
static void t_assert_drops(const kz_server *s, const t_counts *before, uint32_t except,
                           uint64_t by)
{
    t_counts now = t_counts_of(s);
    for (uint32_t i = KZ__FLEET_C_DROP_OVERSIZE; i <= KZ__FLEET_C_OUT_DROPPED; i++)
        cr_assert_eq(now.fleet[i] - before->fleet[i], i == except ? by : 0u, "%s at the %s",
                     kz__fleet_counter_names[i], s == F.auth ? "authority" : "edge");
}

static const uint32_t t_drop_counter[KZ_BUS_DROP_COUNT] = {
    [KZ_BUS_OK] = UINT32_MAX,
    [KZ_BUS_DROP_OVERSIZE] = KZ__FLEET_C_DROP_OVERSIZE,
    [KZ_BUS_DROP_MALFORMED] = KZ__FLEET_C_DROP_MALFORMED,
    [KZ_BUS_DROP_VERSION] = KZ__FLEET_C_DROP_VERSION,
    [KZ_BUS_DROP_OTHER_WORLD] = KZ__FLEET_C_DROP_OTHER_WORLD,
    [KZ_BUS_DROP_SENDER] = KZ__FLEET_C_DROP_SENDER,
    [KZ_BUS_DROP_STALE_INSTANCE] = KZ__FLEET_C_DROP_STALE_INSTANCE,
    [KZ_BUS_DROP_REPLAY] = KZ__FLEET_C_DROP_REPLAY,
    [KZ_BUS_DROP_FOREIGN] = KZ__FLEET_C_DROP_FOREIGN,
};

/* Delivers `msg` (from an exact heap copy) to `to` on (subject, edge):
 * it must be dropped as `want`, counted under that reason alone, and
 * change no state and no other counter of either server. */
static void t_attack(const char *what, kz_server *to, unsigned subject, uint32_t edge,
                     const uint8_t *msg, uint32_t len, kz_bus_drop want)
{
    t_print pa = t_auth_print(), pe = t_edge_print();
    t_counts ca = t_counts_of(F.auth), ce = t_counts_of(F.edge);
    uint8_t *m = t_exact(msg, len);
    kz_bus_drop d = kz__fleet_receive(to, subject, edge, m, len);
    free(m);
    cr_assert_eq(d, want, "%s: dropped as %d, want %d", what, d, want);
    const t_delta dropped[] = {{KZ__FLEET_C_MSGS_IN, 1}, {KZ__FLEET_C_BYTES_IN, len},
                               {t_drop_counter[want], 1}, T_END};
    const t_delta none[] = {T_END};
    t_assert_moved(F.auth, &ca, to == F.auth ? dropped : none, 1);
    t_assert_moved(F.edge, &ce, to == F.edge ? dropped : none, 1);
    t_print qa = t_auth_print(), qe = t_edge_print();
    cr_assert_arr_eq(qa.h, pa.h, sizeof qa.h, "%s changed the authority", what);
    cr_assert_arr_eq(qe.h, pe.h, sizeof qe.h, "%s changed the edge", what);
}

/* A copy of `c` with its seq field set to `seq`. */
static uint32_t t_reseq(const t_copy *c, uint64_t seq, uint8_t *out)
{
    memcpy(out, c->data, c->len);
    t_put64(out + T_H_SEQ, seq);
    return c->len;
}

static uint64_t t_seq(const uint8_t *msg) { return t_get64(msg + T_H_SEQ); }

/* The edge's replica is the authority's image of the same tick. */
static void t_assert_replica(void)
{
    const kz__fleet *f = F.edge->fleet;
    cr_assert_eq(f->rtick, kz_server_tick(F.auth), "the replica is at tick %u, the authority at %u",
                 f->rtick, kz_server_tick(F.auth));
    for (uint32_t i = 0; i < F.auth->world.cap; i++)
        t_assert_state_eq(&f->rstate[i], &F.auth->world.image[i]);
}

/* A message from the authority the edge would take next on `type`'s
 * subject, with the body given. */
static uint32_t t_from_authority(uint8_t *out, uint8_t type, const uint8_t *body, uint32_t n)
{
    const kz__fleet *f = F.edge->fleet;
    uint64_t seq = (type == KZ_BUS_DOWN ? f->auth_seq_down : f->auth_seq_tick) + 1u;
    return t_write_msg(out, type, 0, T_AUTH_INSTANCE, T_EPOCH, seq, body, n);
}

/* ---- joining the world ------------------------------------------------------ */

Test(bus_fleet, an_edges_hello_is_answered_with_a_sync_and_the_replica_is_the_image)
{
    t_start();
    kz__fleet_hello(F.edge, 1);
    cr_assert_not(kz__fleet_synced(F.edge));
    uint32_t k = 0;
    for (; k < 500 && !kz__fleet_synced(F.edge); k++)
        t_step();
    cr_assert(kz__fleet_synced(F.edge), "no SYNC taken in %u steps", k);
    cr_assert_eq(F.hellos, 1);
    cr_assert_eq(F.hello_reason, 1);
    cr_assert_eq(t_counter(F.auth, KZ__FLEET_C_HELLOS), 1);
    cr_assert_eq(t_counter(F.auth, KZ__FLEET_C_SYNCS), 1);
    cr_assert_geq(t_counter(F.edge, KZ__FLEET_C_TICKS_APPLIED), 1);
    cr_assert_eq(F.pump_drops, 0);
    for (uint32_t i = KZ__FLEET_C_DROP_OVERSIZE; i <= KZ__FLEET_C_GAP; i++) {
        cr_assert_eq(t_counter(F.auth, i), 0, "%s", kz__fleet_counter_names[i]);
        cr_assert_eq(t_counter(F.edge, i), 0, "%s", kz__fleet_counter_names[i]);
    }
    t_assert_replica();
    uint32_t objects = 0;
    for (uint32_t i = 0; i < F.auth->world.cap; i++)
        objects += F.edge->fleet->rstate[i].entity != 0;
    cr_assert_eq(objects, 3, "the three objects are in the replica");
    /* Tick by tick after it. */
    uint64_t applied = t_counter(F.edge, KZ__FLEET_C_TICKS_APPLIED);
    uint32_t tick = kz_server_tick(F.auth);
    t_steps(100);
    cr_assert_eq(t_counter(F.edge, KZ__FLEET_C_TICKS_APPLIED) - applied,
                 kz_server_tick(F.auth) - tick);
    t_assert_replica();
    t_stop();
}

/* One HELLO at start, one SYNC: taking the first authority it hears is not
 * a change of authority and asks for no second image. */
Test(bus_fleet, one_hello_at_start_is_answered_by_one_sync)
{
    t_start_synced();
    t_steps(500);
    cr_assert_eq(F.hellos, 1, "the edge said HELLO %u times (newest reason %u)", F.hellos,
                 F.hello_reason);
    cr_assert_eq(t_counter(F.auth, KZ__FLEET_C_HELLOS), 1);
    cr_assert_eq(t_counter(F.auth, KZ__FLEET_C_SYNCS), 1, "a second world image was sent");
    t_stop();
}

/* ---- replays, other worlds, other subjects ---------------------------------- */

Test(bus_fleet, replayed_messages_are_dropped_and_change_nothing)
{
    t_start_synced();
    static t_copy old_tick, old_down, old_up;
    old_tick = F.last_tick;
    old_down = F.last_down;
    old_up = F.last_up;
    t_steps(30);
    cr_assert_gt(t_seq(F.last_tick.data), t_seq(old_tick.data));
    t_attack("the newest TICK again", F.edge, KZ_BUS_SUBJECT_TICK, 0, F.last_tick.data,
             F.last_tick.len, KZ_BUS_DROP_REPLAY);
    t_attack("the newest DOWN again", F.edge, KZ_BUS_SUBJECT_DOWN, 1, F.last_down.data,
             F.last_down.len, KZ_BUS_DROP_REPLAY);
    t_attack("the newest BATCH again", F.auth, KZ_BUS_SUBJECT_UP, 1, F.last_up.data,
             F.last_up.len, KZ_BUS_DROP_REPLAY);
    t_attack("an older TICK", F.edge, KZ_BUS_SUBJECT_TICK, 0, old_tick.data, old_tick.len,
             KZ_BUS_DROP_REPLAY);
    t_attack("an older DOWN", F.edge, KZ_BUS_SUBJECT_DOWN, 1, old_down.data, old_down.len,
             KZ_BUS_DROP_REPLAY);
    t_attack("an older BATCH", F.auth, KZ_BUS_SUBJECT_UP, 1, old_up.data, old_up.len,
             KZ_BUS_DROP_REPLAY);
    /* A hand edge's HELLO, twice. */
    t_hand_hello(2, 0xE2, 3000);
    uint8_t b[12] = {1, 0, 0, 0};
    t_put64(b + 4, 3000);
    uint32_t len = t_write_msg(t_buf, KZ_BUS_HELLO, 2, 0xE2, 0, F.hand[2].seq, b, sizeof b);
    t_attack("the same HELLO again", F.auth, KZ_BUS_SUBJECT_UP, 2, t_buf, len, KZ_BUS_DROP_REPLAY);
    /* The world goes on undisturbed. */
    t_steps(30);
    cr_assert_eq(F.pump_drops, 0);
    cr_assert(kz__fleet_synced(F.edge));
    cr_assert_eq(t_counter(F.edge, KZ__FLEET_C_GAP), 0);
    t_assert_replica();
    t_stop();
}

Test(bus_fleet, a_message_of_another_world_is_dropped)
{
    t_start_synced();
    uint64_t other = kz_bus_world_hash("elsewhere");
    uint32_t len = t_reseq(&F.last_tick, t_seq(F.last_tick.data) + 1u, t_buf);
    t_put64(t_buf + T_H_WORLD, other);
    t_attack("a TICK of another world", F.edge, KZ_BUS_SUBJECT_TICK, 0, t_buf, len,
             KZ_BUS_DROP_OTHER_WORLD);
    len = t_reseq(&F.last_down, t_seq(F.last_down.data) + 1u, t_buf);
    t_put64(t_buf + T_H_WORLD, other);
    t_attack("a DOWN of another world", F.edge, KZ_BUS_SUBJECT_DOWN, 1, t_buf, len,
             KZ_BUS_DROP_OTHER_WORLD);
    len = t_reseq(&F.last_up, t_seq(F.last_up.data) + 1u, t_buf);
    t_put64(t_buf + T_H_WORLD, other);
    t_attack("a BATCH of another world", F.auth, KZ_BUS_SUBJECT_UP, 1, t_buf, len,
             KZ_BUS_DROP_OTHER_WORLD);
    t_stop();
}

Test(bus_fleet, a_message_on_another_edges_subject_is_dropped)
{
    t_start_synced();
    t_hand_hello(2, 0xE2, 3000);
    t_batch b;
    t_batch_start(&b);
    uint32_t n = t_batch_end(&b);
    uint32_t len = t_write_msg(t_buf, KZ_BUS_BATCH, 2, 0xE2, T_EPOCH, F.hand[2].seq + 1u, b.b, n);
    t_attack("edge 2's BATCH on edge 1's up subject", F.auth, KZ_BUS_SUBJECT_UP, 1, t_buf, len,
             KZ_BUS_DROP_SENDER);
    uint8_t hello[12] = {1, 0, 0, 0};
    t_put64(hello + 4, 9000);
    len = t_write_msg(t_buf, KZ_BUS_HELLO, 2, 0xE9, 0, 1, hello, sizeof hello);
    t_attack("a HELLO of edge 2 on edge 1's up subject", F.auth, KZ_BUS_SUBJECT_UP, 1, t_buf, len,
             KZ_BUS_DROP_SENDER);
    len = t_reseq(&F.last_up, t_seq(F.last_up.data) + 1u, t_buf);
    t_attack("edge 1's BATCH on edge 2's up subject", F.auth, KZ_BUS_SUBJECT_UP, 2, t_buf, len,
             KZ_BUS_DROP_SENDER);
    len = t_reseq(&F.last_tick, t_seq(F.last_tick.data) + 1u, t_buf);
    t_attack("a TICK on an up subject", F.auth, KZ_BUS_SUBJECT_UP, 1, t_buf, len,
             KZ_BUS_DROP_SENDER);
    t_attack("a TICK to the authority", F.auth, KZ_BUS_SUBJECT_TICK, 0, t_buf, len,
             KZ_BUS_DROP_SENDER);
    t_buf[T_H_SENDER] = 1;
    t_attack("a TICK from edge 1", F.edge, KZ_BUS_SUBJECT_TICK, 0, t_buf, len, KZ_BUS_DROP_SENDER);
    len = t_reseq(&F.last_up, t_seq(F.last_up.data) + 1u, t_buf);
    t_attack("edge 1's BATCH to the edge", F.edge, KZ_BUS_SUBJECT_UP, 1, t_buf, len,
             KZ_BUS_DROP_SENDER);
    len = t_reseq(&F.last_down, t_seq(F.last_down.data) + 1u, t_buf);
    t_attack("edge 1's DOWN on edge 2's down subject", F.edge, KZ_BUS_SUBJECT_DOWN, 2, t_buf, len,
             KZ_BUS_DROP_SENDER);
    t_attack("a DOWN to the authority", F.auth, KZ_BUS_SUBJECT_DOWN, 1, t_buf, len,
             KZ_BUS_DROP_SENDER);
    t_buf[T_H_TYPE] = KZ_BUS_TICK;
    t_attack("a TICK on edge 1's down subject", F.edge, KZ_BUS_SUBJECT_DOWN, 1, t_buf, len,
             KZ_BUS_DROP_SENDER);
    t_buf[T_H_TYPE] = KZ_BUS_DOWN;
    t_buf[T_H_SENDER] = 2;
    t_attack("a DOWN from edge 2", F.edge, KZ_BUS_SUBJECT_DOWN, 1, t_buf, len, KZ_BUS_DROP_SENDER);
    t_stop();
}

/* An unknown subject number is nobody's: kz__fleet_receive must not hand
 * it to the edge's tick path (there a message of a type the bus does not
 * define would pass the header check and be taken as a TICK). */
Test(bus_fleet, a_message_on_no_subject_is_dropped)
{
    t_start_synced();
    uint32_t len = t_reseq(&F.last_tick, t_seq(F.last_tick.data) + 1u, t_buf);
    t_buf[T_H_TYPE] = 7;
    t_attack("type 7 on subject 0", F.edge, 0, 1, t_buf, len, KZ_BUS_DROP_SENDER);
    t_stop();
}

/* ---- instances ------------------------------------------------------------ */

Test(bus_fleet, an_unknown_or_old_instance_of_an_edge_is_dropped)
{
    t_start_synced();
    t_hand_hello(2, 0xE2, 3000);
    t_batch b;
    t_batch_start(&b);
    uint32_t n = t_batch_end(&b);
    uint64_t next = F.hand[2].seq + 1u;
    uint32_t len = t_write_msg(t_buf, KZ_BUS_BATCH, 2, 0xE3, T_EPOCH, next, b.b, n);
    t_attack("a BATCH of an instance of edge 2 that said no HELLO", F.auth, KZ_BUS_SUBJECT_UP, 2,
             t_buf, len, KZ_BUS_DROP_STALE_INSTANCE);
    len = t_write_msg(t_buf, KZ_BUS_BYE, 2, 0xE3, T_EPOCH, next, NULL, 0);
    t_attack("a BYE of that instance", F.auth, KZ_BUS_SUBJECT_UP, 2, t_buf, len,
             KZ_BUS_DROP_STALE_INSTANCE);
    len = t_write_msg(t_buf, KZ_BUS_BATCH, 3, 0xE3, T_EPOCH, 1, b.b, n);
    t_attack("a BATCH of edge 3, which said no HELLO", F.auth, KZ_BUS_SUBJECT_UP, 3, t_buf, len,
             KZ_BUS_DROP_STALE_INSTANCE);
    len = t_write_msg(t_buf, KZ_BUS_BATCH, 2, 0xE2, T_EPOCH - 1u, next, b.b, n);
    t_attack("edge 2's BATCH naming an older authority", F.auth, KZ_BUS_SUBJECT_UP, 2, t_buf, len,
             KZ_BUS_DROP_STALE_INSTANCE);
    len = t_write_msg(t_buf, KZ_BUS_BATCH, 2, 0xE2, T_EPOCH + 1u, next, b.b, n);
    t_attack("edge 2's BATCH naming a newer authority", F.auth, KZ_BUS_SUBJECT_UP, 2, t_buf, len,
             KZ_BUS_DROP_STALE_INSTANCE);
    uint8_t hello[12] = {1, 0, 0, 0};
    t_put64(hello + 4, 2999);
    len = t_write_msg(t_buf, KZ_BUS_HELLO, 2, 0xE1, 0, 50, hello, sizeof hello);
    t_attack("a HELLO of an instance of edge 2 started before it", F.auth, KZ_BUS_SUBJECT_UP, 2,
             t_buf, len, KZ_BUS_DROP_STALE_INSTANCE);
    /* Edge 2 itself is still heard. */
    cr_assert_eq(t_hand_send(2, KZ_BUS_BATCH, b.b, n), KZ_BUS_OK);
    t_stop();
}

Test(bus_fleet, an_older_authority_instance_is_dropped_after_a_newer_one)
{
    t_start_synced();
    static t_copy tick, down;
    tick = F.last_tick;
    down = F.last_down;
    uint64_t ts = t_seq(tick.data), ds = t_seq(down.data);
    /* An older instance while the edge follows the authority of epoch 1000. */
    uint32_t len = t_reseq(&tick, ts + 1u, t_buf);
    t_put64(t_buf + T_H_INSTANCE, 0xB0);
    t_put64(t_buf + T_H_EPOCH, T_EPOCH - 1u);
    t_attack("a TICK of an older authority", F.edge, KZ_BUS_SUBJECT_TICK, 0, t_buf, len,
             KZ_BUS_DROP_STALE_INSTANCE);
    t_put64(t_buf + T_H_EPOCH, T_EPOCH);
    t_attack("a TICK of another authority of the same epoch", F.edge, KZ_BUS_SUBJECT_TICK, 0, t_buf,
             len, KZ_BUS_DROP_STALE_INSTANCE);
    /* A newer authority (epoch 2000) speaks: the edge follows it. */
    len = t_reseq(&tick, 1, t_buf);
    t_put64(t_buf + T_H_INSTANCE, 0xC0);
    t_put64(t_buf + T_H_EPOCH, 2000);
    t_counts ce = t_counts_of(F.edge);
    cr_assert_eq(kz__fleet_receive(F.edge, KZ_BUS_SUBJECT_TICK, 0, t_buf, len), KZ_BUS_OK);
    const t_delta taken[] = {{KZ__FLEET_C_MSGS_IN, 1}, {KZ__FLEET_C_BYTES_IN, len}, T_END};
    t_assert_moved(F.edge, &ce, taken, 1);
    cr_assert_eq(F.edge->fleet->auth_instance, 0xC0);
    cr_assert_eq(F.edge->fleet->auth_epoch, 2000);
    cr_assert_not(kz__fleet_synced(F.edge), "a new authority's world needs a SYNC");
    /* Now the old authority's next messages are stale, and so is any
     * instance not newer than the one followed. */
    len = t_reseq(&tick, ts + 1u, t_buf);
    t_attack("the old authority's next TICK", F.edge, KZ_BUS_SUBJECT_TICK, 0, t_buf, len,
             KZ_BUS_DROP_STALE_INSTANCE);
    len = t_reseq(&down, ds + 1u, t_buf);
    t_attack("the old authority's next DOWN", F.edge, KZ_BUS_SUBJECT_DOWN, 1, t_buf, len,
             KZ_BUS_DROP_STALE_INSTANCE);
    len = t_reseq(&tick, 1, t_buf);
    t_put64(t_buf + T_H_INSTANCE, 0xD0);
    t_put64(t_buf + T_H_EPOCH, 1500);
    t_attack("an authority between the two", F.edge, KZ_BUS_SUBJECT_TICK, 0, t_buf, len,
             KZ_BUS_DROP_STALE_INSTANCE);
    t_put64(t_buf + T_H_EPOCH, 2000);
    t_attack("another authority of the newer epoch", F.edge, KZ_BUS_SUBJECT_TICK, 0, t_buf, len,
             KZ_BUS_DROP_STALE_INSTANCE);
    /* The real (old) authority goes on: each of its messages is stale at
     * the edge, and the edge's BATCHes, naming the newer epoch, are stale
     * at the old authority. */
    uint64_t stale_e = t_counter(F.edge, KZ__FLEET_C_DROP_STALE_INSTANCE);
    uint64_t stale_a = t_counter(F.auth, KZ__FLEET_C_DROP_STALE_INSTANCE);
    uint32_t drops = F.pump_drops;
    t_steps(30);
    uint64_t de = t_counter(F.edge, KZ__FLEET_C_DROP_STALE_INSTANCE) - stale_e;
    uint64_t da = t_counter(F.auth, KZ__FLEET_C_DROP_STALE_INSTANCE) - stale_a;
    cr_assert_gt(de, 0);
    cr_assert_gt(da, 0);
    cr_assert_eq(de + da, F.pump_drops - drops, "every drop of the pump is a stale instance");
    cr_assert_eq(F.edge->fleet->auth_instance, 0xC0);
    cr_assert_not(kz__fleet_synced(F.edge));
    t_stop();
}

/* ---- BATCH records ------------------------------------------------------------ */

static uint32_t t_world_slot(uint64_t client_id)
{
    for (uint32_t w = 0; w < F.auth->sessions.max_clients; w++)
        if (F.auth->sessions.clients[w].live && F.auth->sessions.clients[w].client_id == client_id)
            return w;
    return UINT32_MAX;
}

Test(bus_fleet, a_record_about_a_session_its_edge_does_not_own_is_dropped_alone)
{
    t_start_synced();
    t_hand_hello(2, 0xE2, 3000);
    t_hand_hello(3, 0xE3, 3000);
    uint8_t claims[KZ_BUS_CLAIMS_MAX];
    t_batch b;
    t_batch_start(&b);
    uint32_t n = t_claims(501, claims, sizeof claims);
    t_batch_add(&b, KZ_BUS_U_JOIN, 0, 0, 7, claims, n);
    cr_assert_eq(t_hand_send(2, KZ_BUS_BATCH, b.b, t_batch_end(&b)), KZ_BUS_OK);
    cr_assert_eq(kz__fleet_sessions(F.auth, NULL), 1);
    t_steps(40);
    cr_assert_neq(F.hand[2].avatar[0], 0, "edge 2 was told its session's avatar");
    uint32_t w = t_world_slot(501);
    cr_assert_neq(w, UINT32_MAX);

    /* Edge 3 names edge 2's session (slot 0, serial 7) in a LEAVE, a
     * message and a DETACH, and joins a client of its own. */
    t_counts ca = t_counts_of(F.auth);
    t_batch_start(&b);
    t_batch_add(&b, KZ_BUS_U_LEAVE, 1, 0, 7, NULL, 0);
    n = t_claims(502, claims, sizeof claims);
    t_batch_add(&b, KZ_BUS_U_JOIN, 0, 0, 9, claims, n);
    static const uint8_t chat[] = {'h', 'i'};
    t_batch_add(&b, KZ_BUS_U_MSG, KZ_MSG_CHAT, 0, 7, chat, sizeof chat);
    t_batch_add(&b, KZ_BUS_U_DETACH, 0, 0, 7, NULL, 0);
    uint32_t len = t_batch_end(&b);
    cr_assert_eq(t_hand_send(3, KZ_BUS_BATCH, b.b, len), KZ_BUS_OK);
    const t_delta three[] = {{KZ__FLEET_C_MSGS_IN, 1},
                             {KZ__FLEET_C_BYTES_IN, KZ_BUS_HEADER_BYTES + len},
                             {KZ__FLEET_C_DROP_FOREIGN, 3},
                             T_END};
    t_assert_moved(F.auth, &ca, three, 0);
    cr_assert_eq(kz__fleet_sessions(F.auth, NULL), 2, "the JOIN in the same batch stands");
    cr_assert_neq(t_world_slot(502), UINT32_MAX);
    cr_assert_eq(F.auth->fleet->ws[t_world_slot(502)].edge, 3);
    const kz__wslot *ws = &F.auth->fleet->ws[w];
    cr_assert(F.auth->sessions.clients[w].live, "edge 2's session was ended by edge 3");
    cr_assert_eq(ws->edge, 2);
    cr_assert_eq(ws->eslot, 0);
    cr_assert_eq(ws->eserial, 7);
    cr_assert_not(ws->held);
    cr_assert_not(F.auth->sessions.clients[w].detached, "edge 3 detached edge 2's session");

    /* Edge 2 names its own slot with another serial, a slot it never had
     * and one beyond the world's, then detaches its real session. */
    ca = t_counts_of(F.auth);
    t_batch_start(&b);
    t_batch_add(&b, KZ_BUS_U_DETACH, 0, 0, 8, NULL, 0);
    t_batch_add(&b, KZ_BUS_U_DETACH, 0, 5, 7, NULL, 0);
    t_batch_add(&b, KZ_BUS_U_LEAVE, 1, UINT32_MAX, 7, NULL, 0);
    t_batch_add(&b, KZ_BUS_U_DETACH, 0, 0, 7, NULL, 0);
    len = t_batch_end(&b);
    cr_assert_eq(t_hand_send(2, KZ_BUS_BATCH, b.b, len), KZ_BUS_OK);
    const t_delta again[] = {{KZ__FLEET_C_MSGS_IN, 1},
                             {KZ__FLEET_C_BYTES_IN, KZ_BUS_HEADER_BYTES + len},
                             {KZ__FLEET_C_DROP_FOREIGN, 3},
                             T_END};
    t_assert_moved(F.auth, &ca, again, 0);
    cr_assert(F.auth->sessions.clients[w].live);
    cr_assert(F.auth->sessions.clients[w].detached, "edge 2's own DETACH stands");
    cr_assert_eq(kz__fleet_sessions(F.auth, NULL), 2);
    t_stop();
}

Test(bus_fleet, a_join_with_malformed_claims_makes_no_session)
{
    t_start_synced();
    t_hand_hello(2, 0xE2, 3000);
    uint8_t claims[KZ_BUS_CLAIMS_MAX], bad[KZ_BUS_CLAIMS_MAX + 1];
    uint64_t id = 0x1122334455667788ull;
    uint32_t n = t_claims(id, claims, sizeof claims);
    t_batch b;
    t_batch_start(&b);
    uint8_t noise[40];
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < sizeof noise; i++)
        noise[i] = (uint8_t)((x = x * 6364136223846793005ull + 1442695040888963407ull) >> 56);
    t_batch_add(&b, KZ_BUS_U_JOIN, 0, 0, 1, noise, sizeof noise);
    t_batch_add(&b, KZ_BUS_U_JOIN, 0, 1, 1, claims, n - 1u);       /* cut */
    memcpy(bad, claims, n);
    bad[n] = 0;
    t_batch_add(&b, KZ_BUS_U_JOIN, 0, 2, 1, bad, n + 1u);          /* a trailing byte */
    bad[0] ^= 0x20;
    t_batch_add(&b, KZ_BUS_U_JOIN, 0, 3, 1, bad, n);               /* another magic */
    t_batch_add(&b, KZ_BUS_U_JOIN, 0, 4, 1, NULL, 0);              /* empty */
    /* client id 0: the id's bytes, found in the claims, zeroed */
    memcpy(bad, claims, n);
    uint8_t le[8];
    t_put64(le, id);
    uint32_t at = 0;
    while (at + 8 <= n && memcmp(bad + at, le, 8) != 0)
        at++;
    cr_assert_leq(at + 8, n, "the client id is in the claims");
    memset(bad + at, 0, 8);
    t_batch_add(&b, KZ_BUS_U_JOIN, 0, 5, 1, bad, n);
    t_batch_add(&b, KZ_BUS_U_JOIN, 0, T_CLIENTS, 1, claims, n);    /* a slot beyond the world's */
    t_batch_add(&b, KZ_BUS_U_JOIN, 0, UINT32_MAX, 1, claims, n);
    uint32_t len = t_batch_end(&b);
    t_counts ca = t_counts_of(F.auth);
    cr_assert_eq(t_hand_send(2, KZ_BUS_BATCH, b.b, len), KZ_BUS_OK);
    const t_delta moved[] = {{KZ__FLEET_C_MSGS_IN, 1},
                             {KZ__FLEET_C_BYTES_IN, KZ_BUS_HEADER_BYTES + len},
                             {KZ__FLEET_C_DROP_MALFORMED, 8},
                             T_END};
    t_assert_moved(F.auth, &ca, moved, 1);
    cr_assert_eq(kz__fleet_sessions(F.auth, NULL), 0);
    for (uint32_t w = 0; w < T_CLIENTS; w++)
        cr_assert_not(F.auth->sessions.clients[w].live, "world slot %u has a session", w);
    t_steps(40);
    cr_assert_eq(F.hand[2].sessions_told, 0);
    cr_assert_eq(F.hand[2].kicks_told, 0);
    /* The same claims whole make a session. */
    t_batch_start(&b);
    t_batch_add(&b, KZ_BUS_U_JOIN, 0, 6, 1, claims, n);
    cr_assert_eq(t_hand_send(2, KZ_BUS_BATCH, b.b, t_batch_end(&b)), KZ_BUS_OK);
    cr_assert_eq(kz__fleet_sessions(F.auth, NULL), 1);
    t_steps(40);
    cr_assert_eq(F.hand[2].sessions_told, 1);
    cr_assert_neq(F.hand[2].avatar[6], 0);
    t_stop();
}

/* ---- hostile bodies of every type ------------------------------------------- */

Test(bus_fleet, hostile_hello_bye_and_batch_bodies_are_dropped_whole)
{
    t_start_synced();
    t_hand_hello(2, 0xE2, 3000);
    uint64_t next = F.hand[2].seq + 1u;
    uint32_t len;
    static const struct {
        const char *why;
        uint8_t b[16];
        uint32_t n;
    } hellos[] = {
        {"HELLO of 11 bytes", {1, 0, 0, 0, 0xb8, 0x0b}, 11},
        {"HELLO of 13 bytes", {1, 0, 0, 0, 0xb8, 0x0b}, 13},
        {"HELLO reason 0", {0, 0, 0, 0, 0xb8, 0x0b}, 12},
        {"HELLO reason 5", {5, 0, 0, 0, 0xb8, 0x0b}, 12},
        {"HELLO reserved 1", {1, 1, 0, 0, 0xb8, 0x0b}, 12},
        {"HELLO reserved 3", {1, 0, 0, 0x80, 0xb8, 0x0b}, 12},
        {"HELLO empty", {0}, 0},
    };
    for (size_t i = 0; i < sizeof hellos / sizeof hellos[0]; i++) {
        len = t_write_msg(t_buf, KZ_BUS_HELLO, 2, 0xE2, 0, next, hellos[i].b, hellos[i].n);
        t_attack(hellos[i].why, F.auth, KZ_BUS_SUBJECT_UP, 2, t_buf, len, KZ_BUS_DROP_MALFORMED);
    }
    static const uint8_t one[1] = {0};
    len = t_write_msg(t_buf, KZ_BUS_BYE, 2, 0xE2, T_EPOCH, next, one, 1);
    t_attack("BYE with a body", F.auth, KZ_BUS_SUBJECT_UP, 2, t_buf, len, KZ_BUS_DROP_MALFORMED);

    /* BATCH: the head, the records' bounds and the trailing bytes. */
    t_batch b;
    t_batch_start(&b);
    t_batch_add(&b, KZ_BUS_U_DETACH, 0, 0, 1, NULL, 0);
    t_batch_add(&b, KZ_BUS_U_MSG, KZ_MSG_CHAT, 0, 1, "hey", 3);
    uint32_t n = t_batch_end(&b);
    uint8_t body[256];
    memcpy(body, b.b, n);
    for (uint32_t cut = 0; cut < n; cut++) {
        char why[48];
        snprintf(why, sizeof why, "BATCH cut at %u of %u", cut, n);
        len = t_write_msg(t_buf, KZ_BUS_BATCH, 2, 0xE2, T_EPOCH, next, body, cut);
        t_attack(why, F.auth, KZ_BUS_SUBJECT_UP, 2, t_buf, len, KZ_BUS_DROP_MALFORMED);
    }
    body[n] = 0;
    len = t_write_msg(t_buf, KZ_BUS_BATCH, 2, 0xE2, T_EPOCH, next, body, n + 1u);
    t_attack("BATCH with a trailing byte", F.auth, KZ_BUS_SUBJECT_UP, 2, t_buf, len,
             KZ_BUS_DROP_MALFORMED);
    kz_bus_put32(body + 4, 3);
    len = t_write_msg(t_buf, KZ_BUS_BATCH, 2, 0xE2, T_EPOCH, next, body, n);
    t_attack("BATCH counting a record more", F.auth, KZ_BUS_SUBJECT_UP, 2, t_buf, len,
             KZ_BUS_DROP_MALFORMED);
    kz_bus_put32(body + 4, UINT32_MAX);
    len = t_write_msg(t_buf, KZ_BUS_BATCH, 2, 0xE2, T_EPOCH, next, body, n);
    t_attack("BATCH counting 2^32 - 1 records", F.auth, KZ_BUS_SUBJECT_UP, 2, t_buf, len,
             KZ_BUS_DROP_MALFORMED);
    kz_bus_put32(body + 4, 1);
    len = t_write_msg(t_buf, KZ_BUS_BATCH, 2, 0xE2, T_EPOCH, next, body, n);
    t_attack("BATCH counting a record less", F.auth, KZ_BUS_SUBJECT_UP, 2, t_buf, len,
             KZ_BUS_DROP_MALFORMED);
    kz_bus_put32(body + 4, 2);
    body[KZ_BUS_BATCH_HEAD_BYTES + 2] = 0xff;  /* the first record's length */
    len = t_write_msg(t_buf, KZ_BUS_BATCH, 2, 0xE2, T_EPOCH, next, body, n);
    t_attack("BATCH with a record longer than the body", F.auth, KZ_BUS_SUBJECT_UP, 2, t_buf, len,
             KZ_BUS_DROP_MALFORMED);

    /* Records of kinds the bus does not define are dropped alone. */
    t_batch_start(&b);
    t_batch_add(&b, 0, 0, 0, 1, NULL, 0);
    t_batch_add(&b, KZ_BUS_U_OBSERVED + 1u, 0, 0, 1, NULL, 0);
    t_batch_add(&b, 255, 0, 0, 1, "x", 1);
    n = t_batch_end(&b);
    t_counts ca = t_counts_of(F.auth);
    cr_assert_eq(t_hand_send(2, KZ_BUS_BATCH, b.b, n), KZ_BUS_OK);
    const t_delta kinds[] = {{KZ__FLEET_C_MSGS_IN, 1},
                             {KZ__FLEET_C_BYTES_IN, KZ_BUS_HEADER_BYTES + n},
                             {KZ__FLEET_C_DROP_MALFORMED, 3},
                             T_END};
    t_assert_moved(F.auth, &ca, kinds, 1);
    t_stop();
}

typedef struct t_down_fault {
    const char *why;
    uint8_t kind, sub;
    uint32_t slot, serial;
    uint8_t body[8];
    uint16_t len;
} t_down_fault;

Test(bus_fleet, hostile_down_bodies_are_dropped_whole)
{
    t_start_synced();
    uint8_t body[8192];
    uint32_t len;
    /* The head. */
    uint8_t head[KZ_BUS_DOWN_HEAD_BYTES + 1] = {1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0};
    for (uint32_t cut = 0; cut < KZ_BUS_DOWN_HEAD_BYTES; cut++) {
        len = t_from_authority(t_buf, KZ_BUS_DOWN, head, cut);
        t_attack("DOWN head cut", F.edge, KZ_BUS_SUBJECT_DOWN, 1, t_buf, len,
                 KZ_BUS_DROP_MALFORMED);
    }
    len = t_from_authority(t_buf, KZ_BUS_DOWN, head, KZ_BUS_DOWN_HEAD_BYTES + 1u);
    t_attack("DOWN with a trailing byte", F.edge, KZ_BUS_SUBJECT_DOWN, 1, t_buf, len,
             KZ_BUS_DROP_MALFORMED);
    for (uint32_t k = 8; k < 12; k++) {
        uint8_t h2[KZ_BUS_DOWN_HEAD_BYTES];
        memcpy(h2, head, sizeof h2);
        h2[k] = (uint8_t)(k == 8 ? 2 : 1);
        len = t_from_authority(t_buf, KZ_BUS_DOWN, h2, sizeof h2);
        t_attack(k == 8 ? "DOWN flags 2" : "DOWN reserved byte", F.edge, KZ_BUS_SUBJECT_DOWN, 1,
                 t_buf, len, KZ_BUS_DROP_MALFORMED);
    }
    uint8_t h3[KZ_BUS_DOWN_HEAD_BYTES];
    memcpy(h3, head, sizeof h3);
    kz_bus_put32(h3 + 4, 1);
    len = t_from_authority(t_buf, KZ_BUS_DOWN, h3, sizeof h3);
    t_attack("DOWN counting a record it lacks", F.edge, KZ_BUS_SUBJECT_DOWN, 1, t_buf, len,
             KZ_BUS_DROP_MALFORMED);

    /* Records whose body does not have the shape of their kind, each after
     * a valid record (which must not be applied either). */
    static const t_down_fault faults[] = {
        {"SESSION of 3 bytes", KZ_BUS_D_SESSION, 0, 0, 1, {1, 0, 0, 0}, 3},
        {"SESSION of 5 bytes", KZ_BUS_D_SESSION, 0, 0, 1, {1, 0, 0, 0, 0}, 5},
        {"SESSION avatar past the cap", KZ_BUS_D_SESSION, 0, 0, 1, {0xff, 0xff, 0xff, 0x7f}, 4},
        {"SEND empty", KZ_BUS_D_SEND, KZ_CHANNEL_EVENT, 0, 1, {0}, 0},
        {"SEND on the snapshot channel", KZ_BUS_D_SEND, KZ_CHANNEL_SNAPSHOT, 0, 1, {1, 2}, 2},
        {"SEND on channel 4", KZ_BUS_D_SEND, KZ_CHANNEL_COUNT, 0, 1, {1, 2}, 2},
        {"SEND on channel 255", KZ_BUS_D_SEND, 255, 0, 1, {1, 2}, 2},
        {"KICK of 3 bytes", KZ_BUS_D_KICK, 0, 0, 1, {1, 0, 0}, 3},
        {"KICK reason 256", KZ_BUS_D_KICK, 0, 0, 1, {0, 1, 0, 0}, 4},
        {"NEAR of 5 bytes", KZ_BUS_D_NEAR, KZ_CHANNEL_EVENT, 0, 0, {4, 0, 0, 0, 0x80}, 5},
        {"NEAR echo 2", KZ_BUS_D_NEAR, KZ_CHANNEL_EVENT, 0, 0, {4, 2, 0, 0, 0x80, 0x3f}, 6},
        {"NEAR with a serial", KZ_BUS_D_NEAR, KZ_CHANNEL_EVENT, 0, 1, {4, 0, 0, 0, 0x80, 0x3f}, 6},
        {"NEAR from past the cap", KZ_BUS_D_NEAR, KZ_CHANNEL_EVENT, UINT32_MAX, 0,
         {4, 0, 0, 0, 0x80, 0x3f}, 6},
        {"NEAR radius NaN", KZ_BUS_D_NEAR, KZ_CHANNEL_EVENT, 0, 0, {4, 0, 0, 0, 0xc0, 0x7f}, 6},
        {"NEAR radius -1", KZ_BUS_D_NEAR, KZ_CHANNEL_EVENT, 0, 0, {4, 0, 0, 0, 0x80, 0xbf}, 6},
        {"NEAR radius 1e6", KZ_BUS_D_NEAR, KZ_CHANNEL_EVENT, 0, 0, {4, 0, 0, 0x24, 0x74, 0x49}, 6},
        {"NEAR on the snapshot channel", KZ_BUS_D_NEAR, KZ_CHANNEL_SNAPSHOT, 0, 0,
         {4, 0, 0, 0, 0x80, 0x3f}, 6},
        {"kind 0", 0, 0, 0, 1, {0}, 0},
        {"kind 5", KZ_BUS_D_NEAR + 1u, 0, 0, 1, {0}, 0},
        {"kind 255", 255, 0, 0, 1, {1, 2, 3, 4}, 4},
    };
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++) {
        uint8_t *p = body + KZ_BUS_DOWN_HEAD_BYTES;
        static const uint8_t kick[4] = {1, 0, 0, 0};
        kz_bus_rec ok = {.kind = KZ_BUS_D_KICK, .len = 4, .slot = 0, .serial = 1, .body = kick};
        cr_assert(kz_bus_rec_write(&ok, 0, &p, body + sizeof body));
        kz_bus_rec r = {.kind = faults[i].kind, .sub = faults[i].sub, .len = faults[i].len,
                        .slot = faults[i].slot, .serial = faults[i].serial,
                        .body = faults[i].body};
        cr_assert(kz_bus_rec_write(&r, 0, &p, body + sizeof body));
        memcpy(body, head, KZ_BUS_DOWN_HEAD_BYTES);
        kz_bus_put32(body + 4, 2);
        len = t_from_authority(t_buf, KZ_BUS_DOWN, body, (uint32_t)(p - body));
        t_attack(faults[i].why, F.edge, KZ_BUS_SUBJECT_DOWN, 1, t_buf, len,
                 KZ_BUS_DROP_MALFORMED);
    }
    /* A SEND one byte past the message limit. */
    uint8_t *p = body + KZ_BUS_DOWN_HEAD_BYTES;
    static uint8_t big[KZ_MAX_MESSAGE_BYTES + 2];
    kz_bus_rec r = {.kind = KZ_BUS_D_SEND, .sub = KZ_CHANNEL_EVENT, .len = sizeof big,
                    .slot = 0, .serial = 1, .body = big};
    cr_assert(kz_bus_rec_write(&r, 0, &p, body + sizeof body));
    memcpy(body, head, KZ_BUS_DOWN_HEAD_BYTES);
    kz_bus_put32(body + 4, 1);
    len = t_from_authority(t_buf, KZ_BUS_DOWN, body, (uint32_t)(p - body));
    t_attack("SEND past the message limit", F.edge, KZ_BUS_SUBJECT_DOWN, 1, t_buf, len,
             KZ_BUS_DROP_MALFORMED);
    /* The edge still takes the authority's next DOWN. */
    t_steps(30);
    cr_assert_eq(F.pump_drops, 0);
    t_stop();
}

Test(bus_fleet, hostile_tick_and_sync_heads_are_dropped_whole)
{
    t_start_synced();
    uint32_t cap = F.edge->world.cap, tick = F.edge->fleet->rtick + 1u;
    static const struct {
        const char *why;
        uint8_t type;
        kz_bus_tick_head h;
        uint32_t extra;  /* bytes after the head (zero) */
    } faults[] = {
        {"TICK tick 0", KZ_BUS_TICK, {0, 0, KZ_BUS_TICK_LAST, 0, 0, 0, 0}, 0},
        {"TICK flag 4", KZ_BUS_TICK, {1, 0, KZ_BUS_TICK_LAST | 4, 0, 0, 0, 0}, 0},
        {"TICK with a target", KZ_BUS_TICK, {1, 0, KZ_BUS_TICK_LAST, 1, 0, 0, 0}, 0},
        {"TICK flagged full", KZ_BUS_TICK, {1, 0, KZ_BUS_TICK_LAST | KZ_BUS_TICK_FULL, 0, 0, 0, 0},
         0},
        {"TICK past the cap", KZ_BUS_TICK, {1, 0, KZ_BUS_TICK_LAST, 0, 0, 1, 0}, 0},
        {"TICK empty range", KZ_BUS_TICK, {1, 0, KZ_BUS_TICK_LAST, 0, 0, 0, 0}, 0},
        {"TICK counting a record it lacks", KZ_BUS_TICK, {1, 0, KZ_BUS_TICK_LAST, 0, 0, 0, 1}, 0},
        {"TICK with a trailing byte", KZ_BUS_TICK, {1, 0, KZ_BUS_TICK_LAST, 0, 0, 0, 0}, 1},
        {"SYNC without a target", KZ_BUS_SYNC,
         {1, 0, KZ_BUS_TICK_LAST | KZ_BUS_TICK_FULL, 0, 0, 0, 0}, KZ_BUS_LIMITS_BYTES},
        {"SYNC not flagged full", KZ_BUS_SYNC, {1, 0, KZ_BUS_TICK_LAST, 1, 0, 0, 0},
         KZ_BUS_LIMITS_BYTES},
        {"SYNC without its limits", KZ_BUS_SYNC,
         {1, 0, KZ_BUS_TICK_LAST | KZ_BUS_TICK_FULL, 1, 0, 0, 0}, 0},
        {"SYNC with its limits cut", KZ_BUS_SYNC,
         {1, 0, KZ_BUS_TICK_LAST | KZ_BUS_TICK_FULL, 1, 0, 0, 0}, KZ_BUS_LIMITS_BYTES - 1u},
        {"SYNC target 65", KZ_BUS_SYNC,
         {1, 0, KZ_BUS_TICK_LAST | KZ_BUS_TICK_FULL, 65, 0, 0, 0}, KZ_BUS_LIMITS_BYTES},
    };
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++) {
        uint8_t body[KZ_BUS_TICK_HEAD_BYTES + KZ_BUS_LIMITS_BYTES];
        kz_bus_tick_head h = faults[i].h;
        if (h.tick)
            h.tick = tick;
        /* end: 0 in the table is the cap; 1 is one past it; an empty range is [cap, cap) */
        if (strcmp(faults[i].why, "TICK empty range") == 0)
            h.first = h.end = cap;
        else
            h.end = h.end ? cap + 1u : cap;
        kz_bus_tick_head_write(&h, body);
        memset(body + KZ_BUS_TICK_HEAD_BYTES, 0, KZ_BUS_LIMITS_BYTES);
        uint32_t len = t_from_authority(t_buf, faults[i].type, body,
                                        KZ_BUS_TICK_HEAD_BYTES + faults[i].extra);
        t_attack(faults[i].why, F.edge, KZ_BUS_SUBJECT_TICK, 0, t_buf, len,
                 KZ_BUS_DROP_MALFORMED);
    }
    for (uint32_t cut = 0; cut < KZ_BUS_TICK_HEAD_BYTES; cut++) {
        uint8_t body[KZ_BUS_TICK_HEAD_BYTES];
        kz_bus_tick_head h = {tick, 0, KZ_BUS_TICK_LAST, 0, 0, cap, 0};
        kz_bus_tick_head_write(&h, body);
        uint32_t len = t_from_authority(t_buf, KZ_BUS_TICK, body, cut);
        t_attack("TICK head cut", F.edge, KZ_BUS_SUBJECT_TICK, 0, t_buf, len,
                 KZ_BUS_DROP_MALFORMED);
    }
    t_steps(30);
    cr_assert_eq(F.pump_drops, 0);
    cr_assert(kz__fleet_synced(F.edge));
    t_stop();
}

/* ---- TICKs corrupted and withheld ------------------------------------------- */

static int t_tap_hold_records(const kz__bus_msg *m)
{
    if (F.held.len || t_type(m->data) != KZ_BUS_TICK || kz_bus_get32(m->data + T_TICK_COUNT) == 0)
        return 0;
    t_keep(&F.held, m->data, m->len);
    return 1;
}

static int t_tap_hold_any(const kz__bus_msg *m)
{
    if (F.held.len || t_type(m->data) != KZ_BUS_TICK)
        return 0;
    t_keep(&F.held, m->data, m->len);
    return 1;
}

/* Adds an object at the authority and withholds the TICK that carries it
 * from the edge (in F.held); returns the object's id. */
static uint32_t t_hold_tick_with_an_object(void)
{
    float pos[3] = {5.0f, 0.0f, -5.0f};
    uint32_t id;
    cr_assert_eq(kz_server_object_add(F.auth, pos, NULL, &id), KZ_OK);
    F.held.len = 0;
    F.tap = t_tap_hold_records;
    for (uint32_t k = 0; k < 100 && !F.held.len; k++)
        t_step();
    F.tap = NULL;
    cr_assert_gt(F.held.len, 0, "no TICK carried the new object");
    cr_assert_eq(kz_bus_get32(F.held.data + T_TICK_REC), id & KZ_ENTITY_MAX,
                 "the first record is the object's");
    cr_assert(F.held.data[T_TICK_REC + T_E_WHAT] & KZ_BUS_E_STATE);
    return id;
}

/* A copy of the held TICK with fault `kind` in its first record (or its
 * count, or its length). `out` has room for T_COPY_MAX bytes. */
static uint32_t t_corrupt(int kind, uint8_t *out)
{
    uint32_t len = F.held.len;
    cr_assert_lt(len, T_COPY_MAX);
    memcpy(out, F.held.data, len);
    uint8_t *rec = out + T_TICK_REC;
    switch (kind) {
    case 0: rec[T_E_WHAT] |= 0x40; break;                                 /* unknown part */
    case 1:                                                               /* beyond the bound */
        kz_bus_put32(rec + T_E_PARTS + T_S_POS, (uint32_t)F.edge->world.codec.pos_max + 1u);
        break;
    case 2: rec[T_E_PARTS + T_S_KIND] = 9; break;                        /* unknown kind */
    case 3: kz_bus_put32(rec, F.edge->world.cap); break;                 /* index past the cap */
    case 4: rec[T_E_PARTS] ^= 1; break;                                  /* id of another index */
    case 5:                                                               /* a record more */
        kz_bus_put32(out + T_TICK_COUNT, kz_bus_get32(out + T_TICK_COUNT) + 1u);
        break;
    default:                                                              /* a trailing byte */
        out[len] = 0;
        len++;
        kz_bus_put32(out + T_H_LENGTH, len - KZ_BUS_HEADER_BYTES);
        break;
    }
    return len;
}

#define T_CORRUPTIONS 7

Test(bus_fleet, a_tick_with_a_corrupted_record_is_dropped_whole_and_the_next_applies)
{
    t_start_synced();
    uint32_t id = t_hold_tick_with_an_object();
    uint32_t idx = id & KZ_ENTITY_MAX;
    const kz__fleet *f = F.edge->fleet;
    uint32_t rtick = f->rtick;
    for (int k = 0; k < T_CORRUPTIONS; k++) {
        uint32_t len = t_corrupt(k, t_buf);
        char why[40];
        snprintf(why, sizeof why, "TICK corruption %d", k);
        t_attack(why, F.edge, KZ_BUS_SUBJECT_TICK, 0, t_buf, len, KZ_BUS_DROP_MALFORMED);
        cr_assert_eq(f->rstate[idx].entity, 0, "the object came in from a refused TICK");
    }
    /* The TICK itself, untouched, is still taken. */
    t_counts ce = t_counts_of(F.edge);
    uint8_t *m = t_exact(F.held.data, F.held.len);
    cr_assert_eq(kz__fleet_receive(F.edge, KZ_BUS_SUBJECT_TICK, 0, m, F.held.len), KZ_BUS_OK);
    free(m);
    const t_delta applied[] = {{KZ__FLEET_C_MSGS_IN, 1},
                               {KZ__FLEET_C_BYTES_IN, F.held.len},
                               {KZ__FLEET_C_TICKS_APPLIED, 1},
                               T_END};
    t_assert_moved(F.edge, &ce, applied, 0);
    cr_assert_eq(f->rtick, rtick + 1u);
    cr_assert_eq(f->rstate[idx].entity, id);
    t_steps(30);
    cr_assert_eq(F.pump_drops, 0);
    cr_assert_eq(t_counter(F.edge, KZ__FLEET_C_GAP), 0);
    cr_assert(kz__fleet_synced(F.edge));
    t_assert_replica();
    t_stop();
}

/* Steps until the edge holds the image again; returns the steps taken. */
static uint32_t t_until_synced(uint32_t limit)
{
    uint32_t k = 0;
    for (; k < limit && !kz__fleet_synced(F.edge); k++)
        t_step();
    cr_assert(kz__fleet_synced(F.edge), "no SYNC again within %u steps", limit);
    t_step();  /* and the tick after it */
    return k;
}

Test(bus_fleet, a_corrupted_tick_never_repaired_makes_the_edge_ask_for_a_sync)
{
    t_start_synced();
    uint32_t id = t_hold_tick_with_an_object();
    uint32_t len = t_corrupt(0, t_buf);
    t_attack("a TICK with an unknown part", F.edge, KZ_BUS_SUBJECT_TICK, 0, t_buf, len,
             KZ_BUS_DROP_MALFORMED);
    uint64_t hellos = t_counter(F.auth, KZ__FLEET_C_HELLOS);
    uint64_t syncs = t_counter(F.auth, KZ__FLEET_C_SYNCS);
    uint32_t sent = F.hellos;
    t_counts ca = t_counts_of(F.auth), ce = t_counts_of(F.edge);
    /* The next TICK comes after a hole: the edge asks for the image. */
    t_step();
    for (uint32_t k = 0; k < 40 && t_counter(F.edge, KZ__FLEET_C_GAP) == 0; k++)
        t_step();
    cr_assert_eq(t_counter(F.edge, KZ__FLEET_C_GAP), 1);
    (void)t_until_synced(1000);
    cr_assert_eq(F.hellos, sent + 1u);
    cr_assert_eq(F.hello_reason, 2, "a HELLO for a gap");
    cr_assert_eq(t_counter(F.auth, KZ__FLEET_C_HELLOS), hellos + 1u);
    cr_assert_eq(t_counter(F.auth, KZ__FLEET_C_SYNCS), syncs + 1u);
    t_assert_drops(F.edge, &ce, KZ__FLEET_C_GAP, 1);
    t_assert_drops(F.auth, &ca, UINT32_MAX, 0);
    cr_assert_eq(F.pump_drops, 0);
    cr_assert_eq(F.edge->fleet->rstate[id & KZ_ENTITY_MAX].entity, id);
    t_assert_replica();
    t_stop();
}

Test(bus_fleet, a_withheld_tick_is_a_gap_and_the_edge_takes_the_image_again)
{
    t_start_synced();
    F.held.len = 0;
    F.tap = t_tap_hold_any;
    for (uint32_t k = 0; k < 100 && !F.held.len; k++)
        t_step();
    F.tap = NULL;
    cr_assert_gt(F.held.len, 0);
    cr_assert(kz__fleet_synced(F.edge), "nothing is known missing yet");
    uint64_t hellos = t_counter(F.auth, KZ__FLEET_C_HELLOS);
    uint64_t syncs = t_counter(F.auth, KZ__FLEET_C_SYNCS);
    uint32_t sent = F.hellos;
    t_counts ca = t_counts_of(F.auth), ce = t_counts_of(F.edge);
    for (uint32_t k = 0; k < 40 && t_counter(F.edge, KZ__FLEET_C_GAP) == 0; k++)
        t_step();
    cr_assert_eq(t_counter(F.edge, KZ__FLEET_C_GAP), 1);
    cr_assert_not(kz__fleet_synced(F.edge));
    (void)t_until_synced(1000);
    cr_assert_eq(F.hellos, sent + 1u);
    cr_assert_eq(F.hello_reason, 2);
    cr_assert_eq(t_counter(F.auth, KZ__FLEET_C_HELLOS), hellos + 1u);
    cr_assert_eq(t_counter(F.auth, KZ__FLEET_C_SYNCS), syncs + 1u);
    t_assert_drops(F.edge, &ce, KZ__FLEET_C_GAP, 1);
    t_assert_drops(F.auth, &ca, UINT32_MAX, 0);
    cr_assert_eq(F.pump_drops, 0);
    t_assert_replica();
    /* The withheld TICK arriving late is a replay now. */
    t_attack("the withheld TICK, late", F.edge, KZ_BUS_SUBJECT_TICK, 0, F.held.data, F.held.len,
             KZ_BUS_DROP_REPLAY);
    t_stop();
}

/* docs/SCALING.md, the receiver's checks: "The whole body is checked
 * before any of it is applied: a refused message changes nothing, not even
 * the sequence window." Each of these is refused for its body. */
Test(bus_fleet, a_refused_tick_after_a_hole_in_the_sequence_changes_nothing)
{
    t_start_synced();
    (void)t_hold_tick_with_an_object();
    uint32_t len = t_corrupt(0, t_buf);
    t_put64(t_buf + T_H_SEQ, t_seq(F.held.data) + 4u);
    t_attack("a refused TICK four ahead", F.edge, KZ_BUS_SUBJECT_TICK, 0, t_buf, len,
             KZ_BUS_DROP_MALFORMED);
    t_stop();
}

Test(bus_fleet, a_refused_down_after_a_hole_in_the_sequence_changes_nothing)
{
    t_start_synced();
    uint8_t body[KZ_BUS_DOWN_HEAD_BYTES] = {1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0};  /* flags 2 */
    uint32_t len = t_write_msg(t_buf, KZ_BUS_DOWN, 0, T_AUTH_INSTANCE, T_EPOCH,
                               F.edge->fleet->auth_seq_down + 4u, body, sizeof body);
    t_attack("a refused DOWN three ahead", F.edge, KZ_BUS_SUBJECT_DOWN, 1, t_buf, len,
             KZ_BUS_DROP_MALFORMED);
    t_stop();
}

Test(bus_fleet, a_refused_tick_of_a_newer_authority_changes_nothing)
{
    t_start_synced();
    (void)t_hold_tick_with_an_object();
    uint32_t len = t_corrupt(0, t_buf);
    t_put64(t_buf + T_H_INSTANCE, 0xC0);
    t_put64(t_buf + T_H_EPOCH, 2000);
    t_put64(t_buf + T_H_SEQ, 1);
    t_attack("a refused TICK of a newer authority", F.edge, KZ_BUS_SUBJECT_TICK, 0, t_buf, len,
             KZ_BUS_DROP_MALFORMED);
    t_stop();
}

Test(bus_fleet, a_refused_tick_part_out_of_place_changes_nothing)
{
    t_start_synced();
    uint8_t body[KZ_BUS_TICK_HEAD_BYTES];
    kz_bus_tick_head h = {F.edge->fleet->rtick + 1u, 0, KZ_BUS_TICK_LAST, 0, 1,
                          F.edge->world.cap, 0};
    kz_bus_tick_head_write(&h, body);
    uint32_t len = t_from_authority(t_buf, KZ_BUS_TICK, body, sizeof body);
    t_attack("a TICK whose part 0 starts at index 1", F.edge, KZ_BUS_SUBJECT_TICK, 0, t_buf, len,
             KZ_BUS_DROP_MALFORMED);
    t_stop();
}

/* ---- garbage ---------------------------------------------------------------- */

static uint64_t t_rng(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* One garbage message for `to` on (subject, edge): random bytes; or the
 * magic and version, then random bytes; or a header the receiver would
 * take (its world, a sender and type for the subject, the instance it
 * follows, the next sequence number) before a random body. */
static uint32_t t_garbage(uint64_t *rng, kz_server *to, unsigned subject, uint32_t edge,
                          uint8_t *b)
{
    uint32_t flavour = (uint32_t)(t_rng(rng) % 3u);
    uint32_t len = (uint32_t)(t_rng(rng) % 600u);
    if (flavour)
        len += KZ_BUS_HEADER_BYTES + 1u;
    for (uint32_t i = 0; i < len; i++)
        b[i] = (uint8_t)t_rng(rng);
    if (flavour == 0)
        return len;
    memcpy(b, KZ_BUS_MAGIC, 4);
    b[4] = KZ_BUS_VERSION;
    if (flavour == 1)
        return len;
    kz_bus_header h = {.length = len - KZ_BUS_HEADER_BYTES, .world = T_WORLD, .epoch = T_EPOCH};
    if (to == F.auth) {
        static const uint8_t types[3] = {KZ_BUS_HELLO, KZ_BUS_BATCH, KZ_BUS_BYE};
        const kz__peer *p = &F.auth->fleet->peers[edge <= KZ_BUS_MAX_EDGES ? edge : 0];
        h.type = types[t_rng(rng) % 3u];
        h.sender = (uint16_t)edge;
        h.instance = p->instance ? p->instance : T_EDGE_INSTANCE;
        h.seq = p->seq + 1u;
    } else {
        const kz__fleet *f = F.edge->fleet;
        h.type = subject == KZ_BUS_SUBJECT_DOWN ? KZ_BUS_DOWN
                                                : (t_rng(rng) & 1u) ? KZ_BUS_TICK : KZ_BUS_SYNC;
        h.instance = f->auth_instance;
        h.seq = (subject == KZ_BUS_SUBJECT_DOWN ? f->auth_seq_down : f->auth_seq_tick) + 1u;
    }
    kz_bus_header_write(&h, b);
    return len;
}

#define T_GARBAGE 10000u

Test(bus_fleet, garbage_on_every_subject_of_each_role_is_dropped_and_counted)
{
    t_start_synced();
    static const struct {
        int to_edge;
        unsigned subject;
        uint32_t edge;       /* UINT32_MAX: a random one each time */
    } where[] = {
        {0, KZ_BUS_SUBJECT_UP, 1},   {0, KZ_BUS_SUBJECT_UP, UINT32_MAX},
        {0, KZ_BUS_SUBJECT_TICK, 0}, {0, KZ_BUS_SUBJECT_DOWN, UINT32_MAX},
        {1, KZ_BUS_SUBJECT_TICK, 0}, {1, KZ_BUS_SUBJECT_DOWN, 1},
        {1, KZ_BUS_SUBJECT_DOWN, UINT32_MAX}, {1, KZ_BUS_SUBJECT_UP, UINT32_MAX},
    };
    uint64_t rng = 0x5EED0B05ull;
    static uint8_t b[KZ_BUS_HEADER_BYTES + 1024];
    for (size_t w = 0; w < sizeof where / sizeof where[0]; w++) {
        kz_server *to = where[w].to_edge ? F.edge : F.auth;
        t_print pa = t_auth_print(), pe = t_edge_print();
        t_counts ca = t_counts_of(F.auth), ce = t_counts_of(F.edge);
        uint64_t by[KZ_BUS_DROP_COUNT] = {0}, bytes = 0;
        for (uint32_t k = 0; k < T_GARBAGE; k++) {
            uint32_t edge = where[w].edge;
            if (edge == UINT32_MAX) {
                edge = (uint32_t)(t_rng(&rng) % 70u);
                if (where[w].to_edge && where[w].subject == KZ_BUS_SUBJECT_DOWN && edge == 1)
                    edge = 2;  /* only another edge's down subject */
            }
            uint32_t len = t_garbage(&rng, to, where[w].subject, edge, b);
            uint8_t *m = t_exact(b, len);
            kz_bus_drop d = kz__fleet_receive(to, where[w].subject, edge, m, len);
            free(m);
            cr_assert_neq(d, KZ_BUS_OK, "case %zu: garbage %u (%u bytes) was taken", w, k, len);
            cr_assert_lt((unsigned)d, KZ_BUS_DROP_COUNT);
            by[d]++;
            bytes += len;
        }
        t_delta want[KZ_BUS_DROP_COUNT + 3];
        uint32_t n = 0;
        want[n++] = (t_delta){KZ__FLEET_C_MSGS_IN, T_GARBAGE};
        want[n++] = (t_delta){KZ__FLEET_C_BYTES_IN, bytes};
        for (uint32_t r = 1; r < KZ_BUS_DROP_COUNT; r++)
            if (by[r])
                want[n++] = (t_delta){t_drop_counter[r], by[r]};
        want[n] = (t_delta)T_END;
        const t_delta none[] = {T_END};
        t_assert_moved(F.auth, &ca, to == F.auth ? want : none, 1);
        t_assert_moved(F.edge, &ce, to == F.edge ? want : none, 1);
        t_print qa = t_auth_print(), qe = t_edge_print();
        cr_assert_arr_eq(qa.h, pa.h, sizeof qa.h, "case %zu changed the authority", w);
        cr_assert_arr_eq(qe.h, pe.h, sizeof qe.h, "case %zu changed the edge", w);
    }
    /* The world goes on as if nothing had come. */
    uint64_t applied = t_counter(F.edge, KZ__FLEET_C_TICKS_APPLIED);
    t_steps(60);
    cr_assert_eq(F.pump_drops, 0);
    cr_assert(kz__fleet_synced(F.edge));
    cr_assert_gt(t_counter(F.edge, KZ__FLEET_C_TICKS_APPLIED), applied);
    cr_assert_eq(t_counter(F.edge, KZ__FLEET_C_GAP), 0);
    t_assert_replica();
    t_stop();
}
