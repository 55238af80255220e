/*
 * Unit tests of the fleet directory's entries (server/fleet.c) without a
 * bus: a member's value reads back field by field; every hostile key and
 * value a writer on the bus could store (malformed keys, oversized
 * values, bad JSON, fields missing or of the wrong type or range, a value
 * that names another world, role or id than its key) gets its own
 * verdict; seeded garbage and mutations of a good value never crash the
 * reader and whatever it accepts encodes back to the same entry. Last,
 * the directory address made from the token addresses.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet.h"

#define GOOD_KEY "w1.single.0123456789abcdef"

static kzs_fleet_entry good_entry(void)
{
    kzs_fleet_entry e;
    memset(&e, 0, sizeof e);
    strcpy(e.world, "w1");
    strcpy(e.role, "single");
    strcpy(e.id, "0123456789abcdef");
    strcpy(e.address, "127.0.0.1:40000,10.0.0.2:40000");
    strcpy(e.version, "0.2.0");
    e.sessions = 17;
    e.max = 1024;
    return e;
}

static void assert_same(const kzs_fleet_entry *a, const kzs_fleet_entry *b)
{
    cr_assert_str_eq(a->world, b->world);
    cr_assert_str_eq(a->role, b->role);
    cr_assert_str_eq(a->id, b->id);
    cr_assert_str_eq(a->address, b->address);
    cr_assert_str_eq(a->version, b->version);
    cr_assert_eq(a->sessions, b->sessions);
    cr_assert_eq(a->max, b->max);
}

static kzs_fleet_verdict parse_text(const char *key, const char *value, kzs_fleet_entry *out)
{
    return kzs_fleet_entry_parse(key, value, strlen(value), out);
}

Test(fleet, value_reads_back_field_by_field)
{
    kzs_fleet_entry e = good_entry(), got;
    char key[KZS_FLEET_KEY_SIZE], value[KZS_FLEET_VALUE_MAX];
    cr_assert_eq(kzs_fleet_key(&e, key, sizeof key), 0);
    cr_assert_str_eq(key, GOOD_KEY);
    int n = kzs_fleet_entry_encode(&e, value, sizeof value);
    cr_assert_gt(n, 0);
    cr_assert_lt((size_t)n, 400u, "a member's value stays far below the reader's bound");
    cr_assert_eq(kzs_fleet_entry_parse(key, value, (size_t)n, &got), KZS_FLEET_OK);
    assert_same(&e, &got);
}

Test(fleet, encode_refuses_what_a_reader_would_skip)
{
    char value[KZS_FLEET_VALUE_MAX];
    kzs_fleet_entry e = good_entry();
    strcpy(e.world, "w.1");
    cr_assert_eq(kzs_fleet_entry_encode(&e, value, sizeof value), -1);
    e = good_entry();
    strcpy(e.role, "boss");
    cr_assert_eq(kzs_fleet_entry_encode(&e, value, sizeof value), -1);
    e = good_entry();
    e.sessions = e.max + 1;
    cr_assert_eq(kzs_fleet_entry_encode(&e, value, sizeof value), -1);
    e = good_entry();
    strcpy(e.address, "nowhere");
    cr_assert_eq(kzs_fleet_entry_encode(&e, value, sizeof value), -1);
    e = good_entry();
    cr_assert_eq(kzs_fleet_entry_encode(&e, value, 40), -1, "a value that does not fit");
}

typedef struct hostile {
    const char *key, *value;
    kzs_fleet_verdict want;
} hostile;

#define V_OK "{\"v\":1,\"world\":\"w1\",\"role\":\"single\",\"id\":\"0123456789abcdef\"," \
             "\"address\":\"127.0.0.1:40000\",\"sessions\":3,\"max\":10,\"version\":\"0.2.0\"}"

static const hostile hostiles[] = {
    {GOOD_KEY, V_OK, KZS_FLEET_OK},
    /* keys */
    {"", V_OK, KZS_FLEET_BAD_KEY},
    {"w1", V_OK, KZS_FLEET_BAD_KEY},
    {"w1.single", V_OK, KZS_FLEET_BAD_KEY},
    {"w1.single.0123456789abcdef.x", V_OK, KZS_FLEET_BAD_KEY},
    {"w1.boss.0123456789abcdef", V_OK, KZS_FLEET_BAD_KEY},
    {"w1.single.0123456789ABCDEF", V_OK, KZS_FLEET_BAD_KEY},
    {"w1.single.0123456789abcde", V_OK, KZS_FLEET_BAD_KEY},
    {"w1.single.0123456789abcdeg", V_OK, KZS_FLEET_BAD_KEY},
    {"*.single.0123456789abcdef", V_OK, KZS_FLEET_BAD_KEY},
    {"w=1.single.0123456789abcdef", V_OK, KZS_FLEET_BAD_KEY},
    {".single.0123456789abcdef", V_OK, KZS_FLEET_BAD_KEY},
    {"abcdefghijabcdefghijabcdefghijabc.single.0123456789abcdef", V_OK, KZS_FLEET_BAD_KEY},
    /* not a JSON object */
    {GOOD_KEY, "", KZS_FLEET_BAD_JSON},
    {GOOD_KEY, "{", KZS_FLEET_BAD_JSON},
    {GOOD_KEY, "[]", KZS_FLEET_BAD_JSON},
    {GOOD_KEY, "null", KZS_FLEET_BAD_JSON},
    {GOOD_KEY, "\"w1\"", KZS_FLEET_BAD_JSON},
    {GOOD_KEY, V_OK "x", KZS_FLEET_BAD_JSON},
    {GOOD_KEY, V_OK V_OK, KZS_FLEET_BAD_JSON},
    /* fields */
    {GOOD_KEY, "{}", KZS_FLEET_BAD_FIELD},
    {GOOD_KEY, "{\"v\":2,\"world\":\"w1\",\"role\":\"single\",\"id\":\"0123456789abcdef\","
               "\"address\":\"127.0.0.1:40000\",\"sessions\":3,\"max\":10,\"version\":\"0.2.0\"}",
     KZS_FLEET_BAD_FIELD},
    {GOOD_KEY, "{\"v\":\"1\",\"world\":\"w1\",\"role\":\"single\",\"id\":\"0123456789abcdef\","
               "\"address\":\"127.0.0.1:40000\",\"sessions\":3,\"max\":10,\"version\":\"0.2.0\"}",
     KZS_FLEET_BAD_FIELD},
    {GOOD_KEY, "{\"v\":1,\"world\":7,\"role\":\"single\",\"id\":\"0123456789abcdef\","
               "\"address\":\"127.0.0.1:40000\",\"sessions\":3,\"max\":10,\"version\":\"0.2.0\"}",
     KZS_FLEET_BAD_FIELD},
    {GOOD_KEY, "{\"v\":1,\"world\":\"w1\",\"role\":\"single\",\"id\":\"0123456789abcdef\","
               "\"address\":\"127.0.0.1:40000\",\"sessions\":-1,\"max\":10,\"version\":\"0.2.0\"}",
     KZS_FLEET_BAD_FIELD},
    {GOOD_KEY, "{\"v\":1,\"world\":\"w1\",\"role\":\"single\",\"id\":\"0123456789abcdef\","
               "\"address\":\"127.0.0.1:40000\",\"sessions\":1.5,\"max\":10,\"version\":\"0.2.0\"}",
     KZS_FLEET_BAD_FIELD},
    {GOOD_KEY, "{\"v\":1,\"world\":\"w1\",\"role\":\"single\",\"id\":\"0123456789abcdef\","
               "\"address\":\"127.0.0.1:40000\",\"sessions\":3,\"max\":1e300,\"version\":\"0.2.0\"}",
     KZS_FLEET_BAD_FIELD},
    {GOOD_KEY, "{\"v\":1,\"world\":\"w1\",\"role\":\"single\",\"id\":\"0123456789abcdef\","
               "\"address\":\"127.0.0.1:40000\",\"sessions\":\"3\",\"max\":10,\"version\":\"0.2.0\"}",
     KZS_FLEET_BAD_FIELD},
    {GOOD_KEY, "{\"v\":1,\"world\":\"w1\",\"role\":\"single\",\"id\":\"0123456789abcdef\","
               "\"address\":\"127.0.0.1:40000\",\"sessions\":11,\"max\":10,\"version\":\"0.2.0\"}",
     KZS_FLEET_BAD_FIELD},
    {GOOD_KEY, "{\"v\":1,\"world\":\"w1\",\"role\":\"single\",\"id\":\"0123456789abcdef\","
               "\"address\":\"127.0.0.1:40000\",\"sessions\":0,\"max\":0,\"version\":\"0.2.0\"}",
     KZS_FLEET_BAD_FIELD},
    {GOOD_KEY, "{\"v\":1,\"world\":\"w1\",\"role\":\"single\",\"id\":\"0123456789abcdef\","
               "\"address\":\"evil.example:1\",\"sessions\":3,\"max\":10,\"version\":\"0.2.0\"}",
     KZS_FLEET_BAD_FIELD},
    {GOOD_KEY, "{\"v\":1,\"world\":\"w1\",\"role\":\"single\",\"id\":\"0123456789abcdef\","
               "\"address\":[\"127.0.0.1:40000\"],\"sessions\":3,\"max\":10,\"version\":\"0.2.0\"}",
     KZS_FLEET_BAD_FIELD},
    {GOOD_KEY, "{\"v\":1,\"world\":\"w1\",\"role\":\"single\",\"id\":\"0123456789abcdef\","
               "\"address\":\"127.0.0.1:40000\",\"sessions\":3,\"max\":10,\"version\":\"0.2 .0\"}",
     KZS_FLEET_BAD_FIELD},
    {GOOD_KEY, "{\"v\":1,\"world\":\"w1\",\"role\":\"single\",\"id\":\"0123456789abcdef\","
               "\"address\":\"127.0.0.1:40000\",\"sessions\":3,\"max\":10,\"version\":null}",
     KZS_FLEET_BAD_FIELD},
    {GOOD_KEY, "{\"v\":1,\"world\":\"w1\",\"role\":\"king\",\"id\":\"0123456789abcdef\","
               "\"address\":\"127.0.0.1:40000\",\"sessions\":3,\"max\":10,\"version\":\"0.2.0\"}",
     KZS_FLEET_BAD_FIELD},
    /* a value naming another world, role or id than its key */
    {GOOD_KEY, "{\"v\":1,\"world\":\"w2\",\"role\":\"single\",\"id\":\"0123456789abcdef\","
               "\"address\":\"127.0.0.1:40000\",\"sessions\":3,\"max\":10,\"version\":\"0.2.0\"}",
     KZS_FLEET_MISMATCH},
    {GOOD_KEY, "{\"v\":1,\"world\":\"w1\",\"role\":\"edge\",\"id\":\"0123456789abcdef\","
               "\"address\":\"127.0.0.1:40000\",\"sessions\":3,\"max\":10,\"version\":\"0.2.0\"}",
     KZS_FLEET_MISMATCH},
    {GOOD_KEY, "{\"v\":1,\"world\":\"w1\",\"role\":\"single\",\"id\":\"fedcba9876543210\","
               "\"address\":\"127.0.0.1:40000\",\"sessions\":3,\"max\":10,\"version\":\"0.2.0\"}",
     KZS_FLEET_MISMATCH},
};

Test(fleet, every_hostile_entry_gets_its_verdict)
{
    for (size_t i = 0; i < sizeof hostiles / sizeof hostiles[0]; i++) {
        kzs_fleet_entry out;
        kzs_fleet_verdict v = parse_text(hostiles[i].key, hostiles[i].value, &out);
        cr_assert_eq(v, hostiles[i].want, "case %zu (%s = %s): %s, want %s", i, hostiles[i].key,
                     hostiles[i].value, kzs_fleet_verdict_name(v),
                     kzs_fleet_verdict_name(hostiles[i].want));
        if (v != KZS_FLEET_OK)
            cr_assert_eq(out.world[0] | out.role[0] | out.address[0], 0,
                         "case %zu: a skipped entry leaves nothing behind", i);
    }
}

Test(fleet, size_bound_is_exact_and_nul_bytes_are_refused)
{
    static char buf[KZS_FLEET_VALUE_MAX + 2];
    kzs_fleet_entry out;
    size_t n = strlen(V_OK);
    /* A good value padded with JSON white space to exactly the bound. */
    memcpy(buf, V_OK, n);
    memset(buf + n, ' ', sizeof buf - n);
    cr_assert_eq(kzs_fleet_entry_parse(GOOD_KEY, buf, KZS_FLEET_VALUE_MAX, &out), KZS_FLEET_OK);
    cr_assert_eq(out.sessions, 3u);
    cr_assert_eq(kzs_fleet_entry_parse(GOOD_KEY, buf, KZS_FLEET_VALUE_MAX + 1, &out),
                 KZS_FLEET_OVERSIZE);
    buf[n] = '\0';
    cr_assert_eq(kzs_fleet_entry_parse(GOOD_KEY, buf, n + 1, &out), KZS_FLEET_BAD_JSON);
    cr_assert_eq(kzs_fleet_entry_parse(GOOD_KEY, NULL, 0, &out), KZS_FLEET_BAD_JSON);
}

Test(fleet, deep_nesting_is_refused_without_harm)
{
    static char buf[KZS_FLEET_VALUE_MAX];
    kzs_fleet_entry out;
    memset(buf, '[', sizeof buf);
    cr_assert_eq(kzs_fleet_entry_parse(GOOD_KEY, buf, sizeof buf, &out), KZS_FLEET_BAD_JSON);
}

/* Whatever the reader accepts is a well-formed entry: it encodes, and the
 * encoding reads back to the same fields. */
static void assert_accepted_is_clean(const char *key, const kzs_fleet_entry *got)
{
    char value[KZS_FLEET_VALUE_MAX];
    kzs_fleet_entry again;
    int n = kzs_fleet_entry_encode(got, value, sizeof value);
    cr_assert_gt(n, 0);
    cr_assert_eq(kzs_fleet_entry_parse(key, value, (size_t)n, &again), KZS_FLEET_OK);
    assert_same(got, &again);
}

Test(fleet, seeded_garbage_and_mutations_never_crash)
{
    static char buf[KZS_FLEET_VALUE_MAX + 64];
    uint64_t seed = 0x6b697a756e61ull;
    size_t good_len = strlen(V_OK);
    uint32_t accepted = 0;
    for (int round = 0; round < 20000; round++) {
        size_t len;
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        if (round % 2 == 0) { /* a good value with a few bytes changed */
            memcpy(buf, V_OK, good_len);
            len = good_len;
            for (int k = 0; k < 1 + (int)(seed >> 60) % 3; k++) {
                seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                buf[(seed >> 33) % len] = (char)(seed >> 20);
            }
        } else { /* random bytes of a random length up to past the bound */
            len = (size_t)(seed >> 40) % sizeof buf;
            for (size_t i = 0; i < len; i++) {
                seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                buf[i] = (char)(seed >> 56);
            }
        }
        kzs_fleet_entry out;
        kzs_fleet_verdict v = kzs_fleet_entry_parse(GOOD_KEY, buf, len, &out);
        cr_assert_lt((unsigned)v, (unsigned)KZS_FLEET_N_VERDICTS);
        if (v == KZS_FLEET_OK) {
            accepted++;
            assert_accepted_is_clean(GOOD_KEY, &out);
        }
    }
    cr_assert_gt(accepted, 0u, "some mutations (in white space or digits) stay valid");
}

Test(fleet, directory_address_fills_in_the_port)
{
    char out[KZS_FLEET_ADDRESS_SIZE];
    cr_assert_eq(kzs_fleet_address("127.0.0.1:* 10.0.0.1:5000", 4000, out, sizeof out), 0);
    cr_assert_str_eq(out, "127.0.0.1:4000,10.0.0.1:5000");
    cr_assert_eq(kzs_fleet_address("[::1]:7000", 4000, out, sizeof out), 0);
    cr_assert_str_eq(out, "[::1]:7000");
    cr_assert_eq(kzs_fleet_address("", 4000, out, sizeof out), -1);
    cr_assert_eq(kzs_fleet_address("127.0.0.1:* 10.0.0.1:5000", 4000, out, 20), -1);
}

Test(fleet, names)
{
    cr_assert(kzs_fleet_world_ok("Plaza_2-b"));
    cr_assert(!kzs_fleet_world_ok(""));
    cr_assert(!kzs_fleet_world_ok("a.b"));
    cr_assert(!kzs_fleet_world_ok("a>"));
    cr_assert(kzs_fleet_world_ok("abcdefghijabcdefghijabcdefghijab"));
    cr_assert(!kzs_fleet_world_ok("abcdefghijabcdefghijabcdefghijabc"));
    cr_assert(kzs_fleet_role_ok("authority") && kzs_fleet_role_ok("edge") &&
              kzs_fleet_role_ok("single"));
    cr_assert(!kzs_fleet_role_ok("Edge"));
    cr_assert_str_eq(kzs_fleet_verdict_name(KZS_FLEET_MISMATCH), "mismatch");
}

/* ---- choosing members for a token (kzs_fleet_choice) ------------------- */

/* A checked entry of world w1: role, id made from n, address 10.0.0.n:port,
 * sessions and max. */
static kzs_fleet_entry member(const char *role, unsigned n, unsigned port, uint32_t sessions,
                              uint32_t max)
{
    kzs_fleet_entry e;
    memset(&e, 0, sizeof e);
    strcpy(e.world, "w1");
    snprintf(e.role, sizeof e.role, "%s", role);
    snprintf(e.id, sizeof e.id, "%016x", n);
    snprintf(e.address, sizeof e.address, "10.0.0.%u:%u", n, port);
    strcpy(e.version, "0.2.0");
    e.sessions = sessions;
    e.max = max;
    return e;
}

/* Offers e the way the directory reader does: encoded, parsed back, then
 * offered only when the reader accepts it. Returns the reader's verdict. */
static kzs_fleet_verdict offer_read(kzs_fleet_choice *c, const char *key, const char *value)
{
    kzs_fleet_entry got;
    kzs_fleet_verdict v = kzs_fleet_entry_parse(key, value, strlen(value), &got);
    if (v == KZS_FLEET_OK)
        kzs_fleet_choice_offer(c, &got);
    return v;
}

static void offer_member(kzs_fleet_choice *c, const kzs_fleet_entry *e)
{
    char key[KZS_FLEET_KEY_SIZE], value[KZS_FLEET_VALUE_MAX];
    cr_assert_eq(kzs_fleet_key(e, key, sizeof key), 0);
    cr_assert_gt(kzs_fleet_entry_encode(e, value, sizeof value), 0);
    cr_assert_eq(offer_read(c, key, value), KZS_FLEET_OK);
}

/* chosen[i] is the member with id number ids[i], and its address. */
static void assert_chosen(const kzs_fleet_choice *c, const unsigned *ids, uint32_t n)
{
    char want[KZS_FLEET_ID_SIZE], text[64];
    cr_assert_eq(c->n, n, "chose %u, want %u", c->n, n);
    for (uint32_t i = 0; i < n; i++) {
        snprintf(want, sizeof want, "%016x", ids[i]);
        cr_assert_str_eq(c->chosen[i].id, want, "rank %u", i + 1);
        kz_address_format(&c->address[i], text, sizeof text);
        cr_assert_eq(strncmp(text, "10.0.0.", 7), 0, "rank %u address %s", i + 1, text);
        cr_assert_eq((unsigned)atoi(text + 7), ids[i], "rank %u address %s", i + 1, text);
    }
}

Test(fleet_choice, most_free_first_ties_by_id)
{
    kzs_fleet_choice c;
    kzs_fleet_choice_init(&c, "w1");
    kzs_fleet_entry m5 = member("edge", 5, 4000, 10, 100);   /* 90 free */
    kzs_fleet_entry m3 = member("edge", 3, 4000, 0, 50);     /* 50 free */
    kzs_fleet_entry m7 = member("single", 7, 4000, 0, 90);   /* 90 free, id 7 > 5 */
    kzs_fleet_entry m2 = member("edge", 2, 4000, 99, 100);   /* 1 free */
    kzs_fleet_entry m4 = member("edge", 4, 4000, 60, 200);   /* 140 free */
    offer_member(&c, &m5);
    offer_member(&c, &m3);
    offer_member(&c, &m7);
    offer_member(&c, &m2);
    offer_member(&c, &m4);
    assert_chosen(&c, (const unsigned[]){4, 5, 7, 3, 2}, 5);
    cr_assert_eq(c.chosen[0].sessions, 60u);
    cr_assert_eq(c.chosen[0].max, 200u);
    cr_assert_str_eq(c.chosen[2].role, "single");
    cr_assert_eq(c.authority + c.full + c.duplicate + c.left_out + c.other_world, 0u);

    /* The same members offered in the reverse order: the same choice. */
    kzs_fleet_choice again;
    kzs_fleet_choice_init(&again, "w1");
    offer_member(&again, &m4);
    offer_member(&again, &m2);
    offer_member(&again, &m7);
    offer_member(&again, &m3);
    offer_member(&again, &m5);
    assert_chosen(&again, (const unsigned[]){4, 5, 7, 3, 2}, 5);
}

Test(fleet_choice, full_members_and_authorities_are_passed_over)
{
    kzs_fleet_choice c;
    kzs_fleet_choice_init(&c, "w1");
    kzs_fleet_entry full = member("edge", 1, 4000, 100, 100);
    kzs_fleet_entry authority = member("authority", 2, 4000, 0, 1000000);
    kzs_fleet_entry room = member("edge", 3, 4000, 99, 100);
    offer_member(&c, &full);
    offer_member(&c, &authority);
    offer_member(&c, &room);
    assert_chosen(&c, (const unsigned[]){3}, 1);
    cr_assert_eq(c.full, 1u);
    cr_assert_eq(c.authority, 1u);

    kzs_fleet_choice none;
    kzs_fleet_choice_init(&none, "w1");
    offer_member(&none, &full);
    offer_member(&none, &authority);
    cr_assert_eq(none.n, 0u, "no member with room: nothing to name");
    cr_assert_eq(none.full + none.authority, 2u);
}

Test(fleet_choice, more_than_eight_keeps_the_best_eight)
{
    kzs_fleet_choice c;
    kzs_fleet_choice_init(&c, "w1");
    /* Members 1..20 with 10 * n free, offered in a scrambled order. */
    for (unsigned k = 0; k < 20; k++) {
        unsigned n = 1 + (k * 7) % 20;
        kzs_fleet_entry e = member("edge", n, 4000, 1000 - 10 * n, 1000);
        offer_member(&c, &e);
    }
    cr_assert_eq(KZS_FLEET_CHOICE_MAX, 8u);
    assert_chosen(&c, (const unsigned[]){20, 19, 18, 17, 16, 15, 14, 13}, 8);
    cr_assert_eq(c.left_out, 12u);
}

Test(fleet_choice, one_address_per_server)
{
    kzs_fleet_choice c;
    kzs_fleet_choice_init(&c, "w1");
    kzs_fleet_entry a = member("edge", 1, 4000, 50, 100); /* 50 free */
    kzs_fleet_entry copy = member("edge", 2, 4000, 0, 100); /* 100 free, a's address */
    kzs_fleet_entry worse = member("edge", 3, 4000, 90, 100); /* 10 free, a's address */
    strcpy(copy.address, a.address);
    strcpy(worse.address, a.address);
    offer_member(&c, &a);
    offer_member(&c, &copy);
    offer_member(&c, &worse);
    cr_assert_eq(c.n, 1u, "one server named once");
    cr_assert_str_eq(c.chosen[0].id, "0000000000000002", "the better ranked entry stays");
    cr_assert_eq(c.duplicate, 2u);
}

Test(fleet_choice, first_address_that_is_not_loopback)
{
    kzs_fleet_choice c;
    char text[64];
    kzs_fleet_choice_init(&c, "w1");
    kzs_fleet_entry e = member("edge", 1, 4000, 0, 10);
    strcpy(e.address, "127.0.0.1:4000,[::1]:4000,203.0.113.7:4001,10.0.0.1:4000");
    offer_member(&c, &e);
    kzs_fleet_entry local = member("edge", 2, 4000, 0, 5);
    strcpy(local.address, "127.0.0.2:4002,[::1]:4002");
    offer_member(&c, &local);
    cr_assert_eq(c.n, 2u);
    cr_assert_str_eq(kz_address_format(&c.address[0], text, sizeof text), "203.0.113.7:4001");
    cr_assert_str_eq(kz_address_format(&c.address[1], text, sizeof text), "127.0.0.2:4002",
                     "all loopback: the first");
}

Test(fleet_choice, bad_entries_never_reach_the_choice)
{
    kzs_fleet_choice c;
    kzs_fleet_choice_init(&c, "w1");
    /* Each would rank first if it were taken: a huge free capacity. */
    static const struct {
        const char *key, *value;
    } bad[] = {
        {"w1.edge.00000000000000ff",
         "{\"v\":1,\"world\":\"w1\",\"role\":\"edge\",\"id\":\"00000000000000ff\","
         "\"address\":\"10.0.0.255:1\",\"sessions\":0,\"max\":1000001,\"version\":\"x\"}"},
        {"w1.edge.00000000000000fe",
         "{\"v\":1,\"world\":\"w1\",\"role\":\"edge\",\"id\":\"00000000000000fe\","
         "\"address\":\"10.0.0.254:1\",\"sessions\":-5,\"max\":1000000,\"version\":\"x\"}"},
        {"w1.edge.00000000000000fd",
         "{\"v\":1,\"world\":\"w2\",\"role\":\"edge\",\"id\":\"00000000000000fd\","
         "\"address\":\"10.0.0.253:1\",\"sessions\":0,\"max\":1000000,\"version\":\"x\"}"},
        {"w1.edge.00000000000000fc",
         "{\"v\":1,\"world\":\"w1\",\"role\":\"authority\",\"id\":\"00000000000000fc\","
         "\"address\":\"10.0.0.252:1\",\"sessions\":0,\"max\":1000000,\"version\":\"x\"}"},
        {"w1.edge.zz", "{\"v\":1}"},
        {"w1.edge.00000000000000fb",
         "{\"v\":1,\"world\":\"w1\",\"role\":\"edge\",\"id\":\"00000000000000fb\","
         "\"address\":\"evil.example:1\",\"sessions\":0,\"max\":1000000,\"version\":\"x\"}"},
        {"w1.edge.00000000000000fa", "{\"v\":1,\"world\":\"w1\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_neq(offer_read(&c, bad[i].key, bad[i].value), KZS_FLEET_OK, "case %zu", i);
    kzs_fleet_entry good = member("edge", 1, 4000, 0, 10);
    offer_member(&c, &good);
    assert_chosen(&c, (const unsigned[]){1}, 1);
    cr_assert_eq(c.authority + c.full + c.duplicate + c.left_out + c.other_world, 0u);
}

Test(fleet_choice, another_worlds_entry_is_counted_not_chosen)
{
    kzs_fleet_choice c;
    kzs_fleet_choice_init(&c, "w2");
    kzs_fleet_entry e = member("edge", 1, 4000, 0, 10);
    kzs_fleet_choice_offer(&c, &e);
    cr_assert_eq(c.n, 0u);
    cr_assert_eq(c.other_world, 1u);
}

Test(fleet_choice, skips_format)
{
    kzs_fleet_skips sk;
    char text[128];
    memset(&sk, 0, sizeof sk);
    cr_assert_str_eq(kzs_fleet_skips_format(&sk, text, sizeof text), "");
    cr_assert_eq(kzs_fleet_skips_total(&sk), 0u);
    sk.by[KZS_FLEET_OVERSIZE] = 1;
    sk.by[KZS_FLEET_MISMATCH] = 2;
    sk.truncated = 3;
    cr_assert_str_eq(kzs_fleet_skips_format(&sk, text, sizeof text),
                     "oversize=1 mismatch=2 truncated=3");
    cr_assert_eq(kzs_fleet_skips_total(&sk), 6u);
}
