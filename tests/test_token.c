/*
 * Connect tokens: mint/verify round trip, each refusal verdict, every byte
 * flipped, every truncation, the field rules, a hand-built token that pins
 * the wire layout of docs/PROTOCOL.md, and the client token file.
 */
#include <criterion/criterion.h>
#include <sodium.h>
#include <string.h>

#include <kizuna/token.h>

#include "net/gate.h"

#define NOW 1800000000ull

typedef struct {
    kz_sign_keypair backend;
    kz_box_keypair server;
    kz_token_verifier verifier;
} world_keys;

static world_keys make_keys(void)
{
    world_keys k;
    cr_assert_eq(kz_sign_keypair_generate(&k.backend), KZ_OK);
    cr_assert_eq(kz_box_keypair_generate(&k.server), KZ_OK);
    memset(&k.verifier, 0, sizeof k.verifier);
    k.verifier.protocol_id = 0x4b495a554e41ull;
    k.verifier.server_id = 77;
    memcpy(k.verifier.backend_pk, k.backend.public_key, sizeof k.verifier.backend_pk[0]);
    k.verifier.server_keys = k.server;
    return k;
}

static kz_token_info sample_info(void)
{
    kz_token_info t;
    memset(&t, 0, sizeof t);
    t.protocol_id = 0x4b495a554e41ull;
    t.create_time = NOW - 10;
    t.expire_time = NOW + 300;
    t.server_id = 77;
    t.timeout_seconds = 10;
    t.n_addresses = 2;
    cr_assert_eq(kz_address_parse("127.0.0.1:40000", &t.addresses[0]), KZ_OK);
    cr_assert_eq(kz_address_parse("[::1]:40001", &t.addresses[1]), KZ_OK);
    t.client_id = 1001;
    t.avatar_id = 5001;
    strcpy(t.name, "Aiko \xe7\xb5\x86");
    t.n_roles = 2;
    strcpy(t.roles[0], "member");
    strcpy(t.roles[1], "moderator");
    t.n_zones = 1;
    strcpy(t.zones[0], "lobby");
    t.claims.verification_level = KZ_VERIFY_STRONG;
    strcpy(t.claims.method, "ekyc-face");
    t.claims.actor_kind = KZ_ACTOR_HUMAN;
    return t;
}

static size_t mint(const world_keys *k, const kz_token_info *info, uint8_t *buf,
                   kz_session_keys *keys)
{
    size_t len = 0;
    cr_assert_eq(kz_token_mint(info, k->backend.secret_key, k->server.public_key, keys, buf,
                               KZ_TOKEN_MAX_BYTES, &len),
                 KZ_OK);
    return len;
}

Test(token, mint_then_verify_round_trips_every_field)
{
    world_keys k = make_keys();
    kz_token_info in = sample_info(), out;
    kz_session_keys keys, got;
    uint8_t buf[KZ_TOKEN_MAX_BYTES];
    size_t len = mint(&k, &in, buf, &keys);
    cr_assert_eq(kz_token_verify(&k.verifier, buf, len, NOW, &out, &got), KZ_TOKEN_VALID);
    cr_assert_arr_eq(&keys, &got, sizeof keys, "the server reads the keys the client got");
    cr_assert_eq(out.client_id, 1001);
    cr_assert_eq(out.avatar_id, 5001);
    cr_assert_str_eq(out.name, in.name);
    cr_assert_eq(out.n_roles, 2);
    cr_assert_str_eq(out.roles[1], "moderator");
    cr_assert_str_eq(out.zones[0], "lobby");
    cr_assert_eq(out.n_addresses, 2);
    /* Field by field: kz_address has a padding byte before `port`. */
    cr_assert_eq(out.addresses[1].family, in.addresses[1].family);
    cr_assert_arr_eq(out.addresses[1].ip, in.addresses[1].ip, sizeof in.addresses[1].ip);
    cr_assert_eq(out.addresses[1].port, in.addresses[1].port);
    cr_assert_eq(out.claims.verification_level, KZ_VERIFY_STRONG);
    cr_assert_str_eq(out.claims.method, "ekyc-face");
    cr_assert_eq(out.timeout_seconds, 10);
    cr_assert_eq(out.expire_time, NOW + 300);
    /* Two mints of the same info differ (fresh nonce and keys). */
    uint8_t buf2[KZ_TOKEN_MAX_BYTES];
    kz_session_keys keys2;
    size_t len2 = mint(&k, &in, buf2, &keys2);
    cr_assert_eq(len, len2);
    cr_assert(memcmp(buf, buf2, len) != 0);
    cr_assert(memcmp(&keys, &keys2, sizeof keys) != 0);
}

Test(token, largest_token_fits_the_stated_maximum)
{
    world_keys k = make_keys();
    kz_token_info t = sample_info();
    t.n_addresses = KZ_TOKEN_MAX_ADDRESSES;
    for (unsigned i = 0; i < t.n_addresses; i++)
        cr_assert_eq(kz_address_parse("[2001:db8::1]:5000", &t.addresses[i]), KZ_OK);
    memset(t.name, 'n', KZ_TOKEN_NAME_MAX);
    t.n_roles = KZ_TOKEN_MAX_ROLES;
    for (unsigned i = 0; i < t.n_roles; i++)
        memset(t.roles[i], 'r', KZ_TOKEN_ROLE_MAX);
    t.n_zones = KZ_TOKEN_MAX_ZONES;
    for (unsigned i = 0; i < t.n_zones; i++)
        memset(t.zones[i], 'z', KZ_TOKEN_ZONE_MAX);
    memset(t.claims.method, 'm', KZ_TOKEN_METHOD_MAX);
    t.claims.actor_kind = KZ_ACTOR_AGENT;
    t.claims.acting_for = 42;
    uint8_t buf[KZ_TOKEN_MAX_BYTES];
    kz_session_keys keys;
    size_t len = mint(&k, &t, buf, &keys);
    cr_assert_eq(len, KZ_TOKEN_MAX_BYTES);
    cr_assert_eq(kz_token_verify(&k.verifier, buf, len, NOW, NULL, &keys), KZ_TOKEN_VALID);
    /* One byte short of room: refused, nothing left behind. */
    uint8_t small[KZ_TOKEN_MAX_BYTES - 1];
    size_t out_len = 0;
    cr_assert_eq(kz_token_mint(&t, k.backend.secret_key, k.server.public_key, &keys, small,
                               sizeof small, &out_len),
                 KZ_EOVERFLOW);
    uint8_t zero[KZ_TOKEN_KEYS_BYTES] = {0};
    cr_assert_arr_eq(&keys, zero, sizeof keys);
}

Test(token, each_refusal_has_its_verdict)
{
    world_keys k = make_keys();
    kz_token_info t = sample_info();
    uint8_t buf[KZ_TOKEN_MAX_BYTES];
    kz_session_keys keys;
    size_t len = mint(&k, &t, buf, &keys);

    cr_assert_eq(kz_token_verify(&k.verifier, buf, len, NOW + 300, NULL, &keys), KZ_TOKEN_EXPIRED);
    cr_assert_eq(kz_token_verify(&k.verifier, buf, len, NOW - 10 - 61, NULL, &keys),
                 KZ_TOKEN_NOT_YET_VALID);
    cr_assert_eq(kz_token_verify(&k.verifier, buf, len, NOW - 10 - 60, NULL, &keys),
                 KZ_TOKEN_VALID, "60 s of clock skew is tolerated");

    kz_token_verifier other = k.verifier;
    other.server_id = 78;
    cr_assert_eq(kz_token_verify(&other, buf, len, NOW, NULL, &keys), KZ_TOKEN_WRONG_SERVER);
    other = k.verifier;
    other.protocol_id++;
    cr_assert_eq(kz_token_verify(&other, buf, len, NOW, NULL, &keys), KZ_TOKEN_BAD_PROTOCOL);

    /* Signed by another backend. */
    world_keys rogue = make_keys();
    rogue.server = k.server;
    len = mint(&rogue, &t, buf, &keys);
    cr_assert_eq(kz_token_verify(&k.verifier, buf, len, NOW, NULL, &keys),
                 KZ_TOKEN_BAD_SIGNATURE);
    uint8_t zero[sizeof keys];
    memset(zero, 0, sizeof zero);
    cr_assert_arr_eq(&keys, zero, sizeof keys, "no keys on refusal");

    /* Signed by the right backend, sealed to another server. */
    world_keys elsewhere = make_keys();
    elsewhere.backend = k.backend;
    len = mint(&elsewhere, &t, buf, &keys);
    cr_assert_eq(kz_token_verify(&k.verifier, buf, len, NOW, NULL, &keys), KZ_TOKEN_BAD_KEYS);

    /* Another protocol version (structure otherwise intact). */
    len = mint(&k, &t, buf, &keys);
    buf[4] = (uint8_t)(KZ_PROTOCOL_VERSION + 1);
    cr_assert_eq(kz_token_verify(&k.verifier, buf, len, NOW, NULL, &keys), KZ_TOKEN_BAD_VERSION);
    cr_assert_str_eq(kz_token_verdict_name(KZ_TOKEN_BAD_VERSION), "bad_version");
}

Test(token, every_flipped_byte_is_refused, .timeout = 120)
{
    world_keys k = make_keys();
    kz_token_info t = sample_info();
    uint8_t buf[KZ_TOKEN_MAX_BYTES];
    kz_session_keys keys;
    size_t len = mint(&k, &t, buf, &keys);
    static const uint8_t masks[] = {0x01, 0x80, 0xff};
    for (size_t i = 0; i < len; i++) {
        for (size_t m = 0; m < sizeof masks; m++) {
            buf[i] ^= masks[m];
            kz_token_verdict v = kz_token_verify(&k.verifier, buf, len, NOW, NULL, &keys);
            cr_assert_neq(v, KZ_TOKEN_VALID, "byte %zu mask %02x accepted", i, masks[m]);
            buf[i] ^= masks[m];
        }
    }
    cr_assert_eq(kz_token_verify(&k.verifier, buf, len, NOW, NULL, &keys), KZ_TOKEN_VALID);
}

Test(token, every_truncation_and_extension_is_malformed)
{
    world_keys k = make_keys();
    kz_token_info t = sample_info();
    uint8_t buf[KZ_TOKEN_MAX_BYTES + 1];
    kz_session_keys keys;
    size_t len = mint(&k, &t, buf, &keys);
    for (size_t n = 0; n < len; n++)
        cr_assert_eq(kz_token_verify(&k.verifier, buf, n, NOW, NULL, &keys), KZ_TOKEN_MALFORMED,
                     "length %zu", n);
    buf[len] = 0;
    cr_assert_eq(kz_token_verify(&k.verifier, buf, len + 1, NOW, NULL, &keys),
                 KZ_TOKEN_MALFORMED);
}

Test(token, field_rules)
{
    kz_token_info t;
    const char *why = NULL;
#define REFUSED(stmt)                                                       \
    do {                                                                    \
        t = sample_info();                                                  \
        stmt;                                                               \
        cr_assert_eq(kz_token_info_check(&t, &why), KZ_EINVAL, "%s", #stmt); \
        cr_assert_not_null(why);                                            \
    } while (0)
    t = sample_info();
    cr_assert_eq(kz_token_info_check(&t, &why), KZ_OK);
    cr_assert_null(why);
    REFUSED(t.client_id = 0);
    REFUSED(t.avatar_id = 0);
    REFUSED(t.expire_time = t.create_time);
    REFUSED(t.expire_time = t.create_time + KZ_TOKEN_MAX_TTL_SECONDS + 1);
    REFUSED(t.n_addresses = 0);
    REFUSED(t.n_addresses = KZ_TOKEN_MAX_ADDRESSES + 1);
    REFUSED(t.addresses[0].port = 0);
    REFUSED(t.addresses[0].family = 5);
    REFUSED(t.addresses[0].ip[10] = 1); /* IPv4 with junk in the unused bytes */
    REFUSED(t.name[0] = '\0');
    REFUSED(strcpy(t.name, "bad\nname"));
    REFUSED(strcpy(t.name, "\xc3\x28"));
    REFUSED(memset(t.name, 'x', KZ_TOKEN_NAME_MAX + 1));
    REFUSED(strcpy(t.roles[0], "Admin"));
    REFUSED(strcpy(t.roles[0], ""));
    REFUSED(t.n_roles = KZ_TOKEN_MAX_ROLES + 1);
    REFUSED(strcpy(t.zones[0], "zone one"));
    REFUSED(t.n_zones = KZ_TOKEN_MAX_ZONES + 1);
    REFUSED(t.claims.verification_level = KZ_VERIFY_MAX + 1);
    REFUSED(strcpy(t.claims.method, ""));
    REFUSED(strcpy(t.claims.method, "two words"));
    REFUSED(t.claims.actor_kind = KZ_ACTOR_MAX + 1);
    REFUSED(t.claims.actor_kind = KZ_ACTOR_AGENT);              /* agent without principal */
    REFUSED(t.claims.acting_for = 9);                            /* human acting for someone */
    /* Identity claims must agree with one another. */
    REFUSED(strcpy(t.claims.method, "none"));                    /* strong, verified by nothing */
    REFUSED(t.claims.verification_level = KZ_VERIFY_BASIC; strcpy(t.claims.method, "none"));
    REFUSED(t.claims.verification_level = KZ_VERIFY_NONE);       /* a method, no level */
    REFUSED(t.claims.actor_kind = KZ_ACTOR_AGENT; t.claims.acting_for = t.client_id);
    REFUSED(t.claims.actor_kind = KZ_ACTOR_BOT; t.claims.acting_for = t.client_id);
    REFUSED(t.claims.actor_kind = 3; t.claims.acting_for = 5);
    /* Display names that could pass for another. */
    REFUSED(strcpy(t.name, "Aiko\xe2\x80\xae" "oki"));            /* right-to-left override */
    REFUSED(strcpy(t.name, "Ai\xe2\x80\x8bko"));                  /* zero-width space */
    REFUSED(strcpy(t.name, "Aiko\xe2\x81\xa6"));                  /* bidi isolate */
    REFUSED(strcpy(t.name, "\xef\xbb\xbf" "Aiko"));                /* byte order mark */
    REFUSED(strcpy(t.name, "Aiko\xc2\xa0" "Aoki"));                /* no-break space */
    REFUSED(strcpy(t.name, " Aiko"));
    REFUSED(strcpy(t.name, "Aiko "));
    REFUSED(strcpy(t.name, "Aiko  Aoki"));
    t = sample_info();
    t.claims.verification_level = KZ_VERIFY_NONE;
    strcpy(t.claims.method, KZ_TOKEN_METHOD_NONE);
    cr_assert_eq(kz_token_info_check(&t, NULL), KZ_OK, "an unverified person");
    t = sample_info();
    t.claims.actor_kind = KZ_ACTOR_AGENT;
    t.claims.acting_for = 1002;
    cr_assert_eq(kz_token_info_check(&t, NULL), KZ_OK, "an agent acting for a person");
    t.claims.actor_kind = KZ_ACTOR_BOT;
    t.claims.acting_for = 0;
    cr_assert_eq(kz_token_info_check(&t, NULL), KZ_OK, "a bot on its own");
}

/* Builds a token byte by byte from docs/PROTOCOL.md and checks the parser
 * reads every field from where the specification puts it. */
Test(token, hand_built_token_matches_the_specification)
{
    uint8_t b[KZ_TOKEN_MAX_BYTES];
    size_t n = 0;
#define PUT(ptr, len) (memcpy(b + n, (ptr), (len)), n += (len))
#define PUT8(v) (b[n++] = (uint8_t)(v))
#define PUT16(v) (PUT8((v) & 0xff), PUT8(((v) >> 8) & 0xff))
#define PUT64(v) do { for (int i_ = 0; i_ < 8; i_++) PUT8(((uint64_t)(v) >> (8 * i_)) & 0xff); } while (0)
    PUT("KZT1", 4);
    PUT16(KZ_PROTOCOL_VERSION);     /* version */
    PUT16(0);                       /* flags */
    PUT64(0x1122334455667788ull);   /* protocol id */
    PUT64(1000);                    /* create */
    PUT64(2000);                    /* expire */
    for (int i = 0; i < 16; i++)    /* nonce */
        PUT8(0xa0 + i);
    PUT64(9);                       /* server id */
    PUT16(15);                      /* timeout seconds */
    PUT8(1);                        /* one address */
    PUT8(4);                        /* IPv4 */
    PUT("\x0a\x00\x00\x01", 4);
    for (int i = 0; i < 12; i++)
        PUT8(0);
    PUT16(7777);
    PUT64(31);                      /* client id */
    PUT64(32);                      /* avatar id */
    PUT8(3);
    PUT("Ren", 3);
    PUT8(1);                        /* roles */
    PUT8(5);
    PUT("admin", 5);
    PUT8(0);                        /* zones */
    PUT8(1);                        /* level basic */
    PUT8(13);
    PUT("oidc:login.jp", 13);
    PUT8(1);                        /* actor: agent */
    PUT64(31000);                   /* acting for */
    memset(b + n, 0x5a, KZ_TOKEN_SEALED_KEYS_BYTES + KZ_SIGNATURE_BYTES);
    n += KZ_TOKEN_SEALED_KEYS_BYTES + KZ_SIGNATURE_BYTES;

    kz_token_info t;
    cr_assert_eq(kz_token_parse(b, n, &t), KZ_OK);
    cr_assert_eq(t.protocol_id, 0x1122334455667788ull);
    cr_assert_eq(t.create_time, 1000);
    cr_assert_eq(t.expire_time, 2000);
    cr_assert_eq(t.nonce[15], 0xaf);
    cr_assert_eq(t.server_id, 9);
    cr_assert_eq(t.timeout_seconds, 15);
    cr_assert_eq(t.addresses[0].family, KZ_ADDR_IPV4);
    cr_assert_eq(t.addresses[0].ip[0], 10);
    cr_assert_eq(t.addresses[0].ip[3], 1);
    cr_assert_eq(t.addresses[0].port, 7777);
    cr_assert_eq(t.client_id, 31);
    cr_assert_eq(t.avatar_id, 32);
    cr_assert_str_eq(t.name, "Ren");
    cr_assert_str_eq(t.roles[0], "admin");
    cr_assert_eq(t.n_zones, 0);
    cr_assert_eq(t.claims.verification_level, KZ_VERIFY_BASIC);
    cr_assert_str_eq(t.claims.method, "oidc:login.jp");
    cr_assert_eq(t.claims.actor_kind, KZ_ACTOR_AGENT);
    cr_assert_eq(t.claims.acting_for, 31000);
}

Test(token, connect_token_file_round_trip_and_rejects)
{
    world_keys k = make_keys();
    kz_token_info t = sample_info();
    kz_connect_token ct, back;
    size_t len = 0;
    ct.token_len = (uint16_t)mint(&k, &t, ct.token, &ct.keys);
    uint8_t file[KZ_CONNECT_TOKEN_FILE_MAX_BYTES];
    cr_assert_eq(kz_connect_token_encode(&ct, file, sizeof file, &len), KZ_OK);
    cr_assert_eq(kz_connect_token_decode(file, len, &back), KZ_OK);
    cr_assert_eq(back.token_len, ct.token_len);
    cr_assert_arr_eq(back.token, ct.token, ct.token_len);
    cr_assert_arr_eq(&back.keys, &ct.keys, sizeof ct.keys);
    for (size_t n = 0; n < len; n++)
        cr_assert_eq(kz_connect_token_decode(file, n, &back), KZ_EPROTO, "length %zu", n);
    file[0] = 'X';
    cr_assert_eq(kz_connect_token_decode(file, len, &back), KZ_EPROTO);
}

Test(token, addresses_parse_and_format)
{
    kz_address a;
    char text[64];
    cr_assert_eq(kz_address_parse("192.168.1.20:5000", &a), KZ_OK);
    cr_assert_str_eq(kz_address_format(&a, text, sizeof text), "192.168.1.20:5000");
    cr_assert_eq(kz_address_parse("[::1]:1", &a), KZ_OK);
    cr_assert_eq(a.family, KZ_ADDR_IPV6);
    cr_assert_str_eq(kz_address_format(&a, text, sizeof text), "[::1]:1");
    cr_assert_eq(kz_address_parse("localhost:9", &a), KZ_OK);
    cr_assert_str_eq(kz_address_format(&a, text, sizeof text), "127.0.0.1:9");
    static const char *const bad[] = {"", "1.2.3.4", "1.2.3.4:", "1.2.3.4:0", "1.2.3.4:65536",
                                      "1.2.3.4:12x", "example.com:80", "[::1:80", "::1:80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(kz_address_parse(bad[i], &a), KZ_EINVAL, "'%s'", bad[i]);
}

/* ---- claims and names a backend's own encoder could still sign ---------- */

/* Signs buf[0..len) again with the backend key, as a backend that skipped
 * kz_token_info_check (or a stolen backend key) would. */
static void resign(const world_keys *k, uint8_t *buf, size_t len)
{
    crypto_sign_detached(buf + len - KZ_SIGNATURE_BYTES, NULL, buf, len - KZ_SIGNATURE_BYTES,
                         k->backend.secret_key);
}

static uint8_t *find(uint8_t *buf, size_t len, const char *what)
{
    size_t n = strlen(what);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(buf + i, what, n) == 0)
            return buf + i;
    cr_assert_fail("'%s' not in the token", what);
    return NULL;
}

Test(token, signed_inconsistent_claims_are_refused_by_the_server)
{
    world_keys k = make_keys();
    kz_token_info t = sample_info();
    uint8_t buf[KZ_TOKEN_MAX_BYTES];
    kz_session_keys keys;
    strcpy(t.claims.method, "nonx"); /* the length of "none" */
    size_t len = mint(&k, &t, buf, &keys);
    cr_assert_eq(kz_token_verify(&k.verifier, buf, len, NOW, NULL, &keys), KZ_TOKEN_VALID);
    /* Level strong, method "none": validly signed, still refused. */
    uint8_t *m = find(buf, len, "nonx");
    cr_assert_eq(m[-2], KZ_VERIFY_STRONG, "the level byte precedes the method's length");
    m[3] = 'e';
    resign(&k, buf, len);
    cr_assert_eq(kz_token_verify(&k.verifier, buf, len, NOW, NULL, &keys), KZ_TOKEN_MALFORMED);
    cr_assert_eq(kz_token_precheck(&k.verifier, buf, len, NOW, NULL), KZ_TOKEN_MALFORMED,
                 "refused before any public-key work");
    /* The same with level none: consistent, accepted. */
    m[-2] = KZ_VERIFY_NONE;
    resign(&k, buf, len);
    cr_assert_eq(kz_token_verify(&k.verifier, buf, len, NOW, NULL, &keys), KZ_TOKEN_VALID);
    /* Level none with a real method. */
    m[3] = 'x';
    resign(&k, buf, len);
    cr_assert_eq(kz_token_verify(&k.verifier, buf, len, NOW, NULL, &keys), KZ_TOKEN_MALFORMED);
}

Test(token, signed_agent_acting_for_itself_or_unknown_kind_is_refused)
{
    world_keys k = make_keys();
    kz_token_info t = sample_info();
    uint8_t buf[KZ_TOKEN_MAX_BYTES];
    kz_session_keys keys;
    t.claims.actor_kind = KZ_ACTOR_AGENT;
    t.claims.acting_for = 1002;
    size_t len = mint(&k, &t, buf, &keys);
    /* actor kind (1) then acting_for (8) sit just before the sealed keys. */
    uint8_t *kind = buf + len - KZ_SIGNATURE_BYTES - KZ_TOKEN_SEALED_KEYS_BYTES - 9;
    cr_assert_eq(kind[0], KZ_ACTOR_AGENT);
    cr_assert_eq(kind[1], 1002 & 0xff);
    kind[1] = 1001 & 0xff;                      /* acting for its own client id */
    kind[2] = 1001 >> 8;
    resign(&k, buf, len);
    cr_assert_eq(kz_token_verify(&k.verifier, buf, len, NOW, NULL, &keys), KZ_TOKEN_MALFORMED);
    kind[1] = 1002 & 0xff;
    kind[0] = KZ_ACTOR_MAX + 1;                 /* an actor kind no one defined */
    resign(&k, buf, len);
    cr_assert_eq(kz_token_verify(&k.verifier, buf, len, NOW, NULL, &keys), KZ_TOKEN_MALFORMED);
    kind[0] = KZ_ACTOR_HUMAN;                   /* a human acting for someone */
    resign(&k, buf, len);
    cr_assert_eq(kz_token_verify(&k.verifier, buf, len, NOW, NULL, &keys), KZ_TOKEN_MALFORMED);
    kind[0] = KZ_ACTOR_BOT;                     /* a bot may name its operator */
    resign(&k, buf, len);
    cr_assert_eq(kz_token_verify(&k.verifier, buf, len, NOW, NULL, &keys), KZ_TOKEN_VALID);
}

Test(token, signed_lookalike_names_are_refused)
{
    world_keys k = make_keys();
    kz_token_info t = sample_info();
    uint8_t buf[KZ_TOKEN_MAX_BYTES];
    kz_session_keys keys;
    strcpy(t.name, "Ai---ko");
    size_t len = mint(&k, &t, buf, &keys);
    uint8_t *name = find(buf, len, "Ai---ko");
    static const char *const swaps[] = {
        "\xe2\x80\xae", /* U+202E right-to-left override */
        "\xe2\x80\x8b", /* U+200B zero-width space */
        "\xe2\x81\xa7", /* U+2067 right-to-left isolate */
        "\xe2\x80\x8f", /* U+200F right-to-left mark */
        "\xef\xbb\xbf", /* U+FEFF */
        "\xe3\x80\x80", /* U+3000 ideographic space */
        "\xee\x80\x81", /* U+E001 private use */
    };
    for (size_t i = 0; i < sizeof swaps / sizeof swaps[0]; i++) {
        memcpy(name + 2, swaps[i], 3);
        resign(&k, buf, len);
        cr_assert_eq(kz_token_verify(&k.verifier, buf, len, NOW, NULL, &keys),
                     KZ_TOKEN_MALFORMED, "swap %zu accepted", i);
    }
    memcpy(name + 2, "\xe7\xb5\x86", 3); /* U+7D46, a letter: fine */
    resign(&k, buf, len);
    cr_assert_eq(kz_token_verify(&k.verifier, buf, len, NOW, NULL, &keys), KZ_TOKEN_VALID);
}

/* ---- the server's addresses ------------------------------------------- */

static kz_token_verifier serving(const world_keys *k, const char *const *addrs, uint32_t n)
{
    kz_token_verifier v = k->verifier;
    v.n_addresses = n;
    for (uint32_t i = 0; i < n; i++)
        cr_assert_eq(kz_address_parse(addrs[i], &v.addresses[i]), KZ_OK, "%s", addrs[i]);
    return v;
}

Test(token, server_refuses_tokens_for_addresses_it_does_not_serve)
{
    world_keys k = make_keys();
    kz_token_info t = sample_info(); /* for 127.0.0.1:40000 and [::1]:40001 */
    uint8_t buf[KZ_TOKEN_MAX_BYTES];
    kz_session_keys keys;
    size_t len = mint(&k, &t, buf, &keys);
    static const struct {
        const char *addr[2];
        uint32_t n;
        kz_token_verdict want;
    } cases[] = {
        {{"127.0.0.1:40000"}, 1, KZ_TOKEN_VALID},
        {{"10.0.0.1:40000", "[::1]:40001"}, 2, KZ_TOKEN_VALID},   /* the second entry */
        {{"10.0.0.1:40000"}, 1, KZ_TOKEN_WRONG_SERVER},           /* another host */
        {{"127.0.0.1:40001"}, 1, KZ_TOKEN_WRONG_SERVER},          /* another port */
        {{"127.0.0.2:40000", "[::2]:40001"}, 2, KZ_TOKEN_WRONG_SERVER},
        {{"[::1]:40000"}, 1, KZ_TOKEN_WRONG_SERVER},              /* v6 host, v4 port */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kz_token_verifier v = serving(&k, cases[i].addr, cases[i].n);
        cr_assert_eq(kz_token_precheck(&v, buf, len, NOW, NULL), cases[i].want, "case %zu", i);
        cr_assert_eq(kz_token_verify(&v, buf, len, NOW, NULL, &keys), cases[i].want, "case %zu",
                     i);
    }
    /* Port 0: this IP at any port (a server whose port is picked at start). */
    kz_token_verifier any = serving(&k, (const char *const[]){"127.0.0.1:1"}, 1);
    any.addresses[0].port = 0;
    cr_assert_eq(kz_token_verify(&any, buf, len, NOW, NULL, &keys), KZ_TOKEN_VALID);
    any.addresses[0].ip[3] = 2;
    cr_assert_eq(kz_token_verify(&any, buf, len, NOW, NULL, &keys), KZ_TOKEN_WRONG_SERVER);
    /* The same IPv4 bytes under the other family are another address. */
    kz_token_verifier fam = serving(&k, (const char *const[]){"127.0.0.1:40000"}, 1);
    fam.addresses[0].family = KZ_ADDR_IPV6;
    cr_assert_eq(kz_token_verify(&fam, buf, len, NOW, NULL, &keys), KZ_TOKEN_WRONG_SERVER);
    /* A verifier claiming more addresses than it can hold trusts no one. */
    kz_token_verifier broken = serving(&k, (const char *const[]){"127.0.0.1:40000"}, 1);
    broken.n_addresses = KZ_VERIFIER_MAX_ADDRESSES + 1;
    cr_assert_eq(kz_token_verify(&broken, buf, len, NOW, NULL, &keys), KZ_TOKEN_WRONG_SERVER);
    /* Every address slot of the verifier is searched. */
    kz_token_verifier last = serving(&k, (const char *const[]){"10.9.9.9:9"}, 1);
    last.n_addresses = KZ_VERIFIER_MAX_ADDRESSES;
    for (uint32_t i = 0; i < KZ_VERIFIER_MAX_ADDRESSES; i++)
        last.addresses[i] = last.addresses[0];
    last.addresses[KZ_VERIFIER_MAX_ADDRESSES - 1] = t.addresses[1];
    cr_assert_eq(kz_token_verify(&last, buf, len, NOW, NULL, &keys), KZ_TOKEN_VALID);
}

/* At the gate: a request whose token names another address is dropped
 * with no reply, counted as drop_token_wrong_server, and costs no
 * signature check (the address check is one of the cheap ones). */
Test(token, gate_counts_a_token_for_another_address_as_wrong_server)
{
    world_keys k = make_keys();
    kz_token_info t = sample_info();
    kz_connect_token ct;
    ct.token_len = (uint16_t)mint(&k, &t, ct.token, &ct.keys);
    kz__gate_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.verifier = serving(&k, (const char *const[]){"192.0.2.7:40000"}, 1);
    cfg.max_sessions = 2;
    cfg.n_ports = 1;
    kz__gate *g = kz__gate_create(&cfg);
    cr_assert_not_null(g);
    kz__handshake hs;
    cr_assert_eq(kz__handshake_init(&hs, &ct), KZ_OK);
    uint8_t req[KZ_GATE_REQUEST_BYTES], reply[KZ_GATE_REQUEST_BYTES];
    size_t n = kz__handshake_request(&hs, req), reply_len = 1;
    kz_address from;
    cr_assert_eq(kz_address_parse("198.51.100.9:5555", &from), KZ_OK);
    cr_assert_eq(kz__gate_datagram(g, &from, req, n, KZ_NS_PER_S, NOW, reply, sizeof reply,
                                   &reply_len),
                 KZ_GATE_DROP);
    cr_assert_eq(reply_len, 0, "no reply: not even a challenge");
    const kz_counters *c = kz__gate_counters(g);
    cr_assert_eq(kz_counters_get(c, KZ_GATE_C_DROP_TOKEN_SERVER), 1);
    cr_assert_eq(kz_counters_get(c, KZ_GATE_C_VERIFIES), 0);
    kz__gate_destroy(g);
    /* The same token at a gate that serves 127.0.0.1:40000 is challenged. */
    cfg.verifier = serving(&k, (const char *const[]){"127.0.0.1:40000"}, 1);
    g = kz__gate_create(&cfg);
    cr_assert_eq(kz__gate_datagram(g, &from, req, n, KZ_NS_PER_S, NOW, reply, sizeof reply,
                                   &reply_len),
                 KZ_GATE_REPLY);
    cr_assert_eq(reply[2], KZ_GATE_CHALLENGE);
    kz__gate_destroy(g);
}
