/*
 * The resume codec (net/resume.h) under hostile input: RESUMEs of every
 * wrong size, with a non-zero reserved or padding byte, with a proof made
 * under another key or over a ticket or cookie with one bit flipped;
 * RESUMEDs forged (another key, any byte changed, wrong size, type,
 * version or mark, a correct seal behind a wrong header); TICKET messages
 * of wrong sizes and graces out of range. Round trips compare every field.
 * Inputs of a wrong size are copied into heap blocks of exactly that size,
 * so a read past the end shows under AddressSanitizer.
 */
#include <criterion/criterion.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "net/resume.h"

/* Offsets of section 4a's RESUME and RESUMED, written out here so the
 * tests do not borrow the codec's own arithmetic. */
#define T_RESUME_RESERVED_AT 4u
#define T_RESUME_COOKIE_AT 8u
#define T_RESUME_TICKET_AT 32u
#define T_RESUME_PROOF_AT 64u
#define T_RESUME_PAD_AT 80u
#define T_RESUMED_NONCE_AT 4u
#define T_RESUMED_SEALED_AT 28u
#define T_FILL 0xA5u /* what an output holds before a call that must not write it */

static void t_init(void)
{
    cr_assert_geq(sodium_init(), 0);
}

static void t_random_keys(kz_session_keys *k)
{
    randombytes_buf(k->client_to_server, sizeof k->client_to_server);
    randombytes_buf(k->server_to_client, sizeof k->server_to_client);
}

static void t_random_ticket(kz__ticket *t)
{
    memset(t, 0, sizeof *t);
    t->slot = randombytes_uniform(1u << 20);
    t->path = 1 + randombytes_uniform(1000);
    randombytes_buf(&t->session_id, sizeof t->session_id);
    randombytes_buf(t->secret, sizeof t->secret);
}

static void t_assert_ticket_eq(const kz__ticket *got, const kz__ticket *want)
{
    cr_assert_eq(got->slot, want->slot);
    cr_assert_eq(got->path, want->path);
    cr_assert_eq(got->session_id, want->session_id);
    cr_assert_arr_eq(got->secret, want->secret, sizeof want->secret);
}

static int t_all(const uint8_t *b, size_t n, uint8_t v)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] != v)
            return 0;
    return 1;
}

/* A heap copy of exactly n bytes of src (n may exceed what src holds: the
 * rest is zero). The caller frees it. */
static uint8_t *t_exact(const uint8_t *src, size_t have, size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    cr_assert_not_null(p);
    memset(p, 0, n);
    memcpy(p, src, have < n ? have : n);
    return p;
}

/* A RESUME under k for a random ticket and cookie. */
typedef struct t_resume {
    kz_session_keys keys;
    kz__ticket ticket;
    uint8_t packed[KZ_TICKET_BYTES];
    uint8_t cookie[KZ_COOKIE_BYTES];
    uint8_t d[KZ_GATE_RESUME_BYTES];
} t_resume;

static void t_resume_make(t_resume *r)
{
    t_init();
    t_random_keys(&r->keys);
    t_random_ticket(&r->ticket);
    kz__ticket_pack(&r->ticket, r->packed);
    randombytes_buf(r->cookie, sizeof r->cookie);
    cr_assert_eq(kz__resume_build(&r->keys, r->cookie, r->packed, r->d),
                 (size_t)KZ_GATE_RESUME_BYTES);
}

/* ---- ticket --------------------------------------------------------------- */

Test(resume_codec, ticket_pack_unpack_round_trip_field_by_field)
{
    t_init();
    kz__ticket cases[4];
    t_random_ticket(&cases[0]);
    memset(&cases[1], 0, sizeof cases[1]);
    memset(&cases[2], 0xff, sizeof cases[2]);
    cases[3] = cases[0];
    cases[3].slot = 0x80000001u;
    cases[3].path = 0xfffffffeu;
    cases[3].session_id = 0x8000000000000001ull;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t b[KZ_TICKET_BYTES];
        kz__ticket back;
        memset(&back, T_FILL, sizeof back);
        kz__ticket_pack(&cases[i], b);
        kz__ticket_unpack(b, &back);
        t_assert_ticket_eq(&back, &cases[i]);
    }
}

Test(resume_codec, any_ticket_bytes_unpack_and_pack_to_the_same_bytes)
{
    t_init();
    for (int i = 0; i < 256; i++) {
        uint8_t b[KZ_TICKET_BYTES], again[KZ_TICKET_BYTES];
        randombytes_buf(b, sizeof b);
        kz__ticket t;
        kz__ticket_unpack(b, &t);
        kz__ticket_pack(&t, again);
        cr_assert_arr_eq(again, b, sizeof b, "ticket bytes are opaque: every value survives");
    }
}

/* ---- RESUME --------------------------------------------------------------- */

Test(resume_codec, resume_build_parse_round_trip)
{
    t_resume r;
    t_resume_make(&r);
    kz__resume p;
    cr_assert_eq(kz__resume_parse(r.d, sizeof r.d, &p), KZ_OK);
    cr_assert_eq(p.cookie, r.d + T_RESUME_COOKIE_AT);
    cr_assert_eq(p.ticket, r.d + T_RESUME_TICKET_AT);
    cr_assert_eq(p.proof, r.d + T_RESUME_PROOF_AT);
    cr_assert_arr_eq(p.cookie, r.cookie, sizeof r.cookie);
    kz__ticket back;
    kz__ticket_unpack(p.ticket, &back);
    t_assert_ticket_eq(&back, &r.ticket);
    cr_assert_eq(kz__resume_proof_ok(&r.keys, r.d), 1);

    uint8_t none[KZ_GATE_RESUME_BYTES];
    kz__resume_build(&r.keys, NULL, r.packed, none);
    cr_assert_eq(kz__resume_parse(none, sizeof none, &p), KZ_OK);
    cr_assert(t_all(p.cookie, KZ_COOKIE_BYTES, 0), "no cookie: the field is all zero");
    cr_assert_eq(kz__resume_proof_ok(&r.keys, none), 1);
}

Test(resume_codec, resume_of_every_wrong_size_is_refused_without_output)
{
    t_resume r;
    t_resume_make(&r);
    static const size_t sizes[] = {0, 1, 4, 64, 80, 127, 129, 256, 981, 1200};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint8_t *d = t_exact(r.d, sizeof r.d, sizes[i]);
        kz__resume p = {(const uint8_t *)&p, (const uint8_t *)&p, (const uint8_t *)&p};
        cr_assert_eq(kz__resume_parse(d, sizes[i], &p), KZ_ERANGE, "size %zu", sizes[i]);
        cr_assert(p.cookie == (const uint8_t *)&p && p.ticket == (const uint8_t *)&p &&
                      p.proof == (const uint8_t *)&p,
                  "size %zu: nothing written on failure", sizes[i]);
        free(d);
    }
}

Test(resume_codec, resume_with_a_non_zero_reserved_byte_is_refused)
{
    t_resume r;
    t_resume_make(&r);
    static const uint8_t values[] = {0x01, 0x80, 0xff};
    for (size_t at = T_RESUME_RESERVED_AT; at < T_RESUME_COOKIE_AT; at++)
        for (size_t v = 0; v < sizeof values; v++) {
            uint8_t d[KZ_GATE_RESUME_BYTES];
            memcpy(d, r.d, sizeof d);
            d[at] = values[v];
            kz__resume p;
            cr_assert_eq(kz__resume_parse(d, sizeof d, &p), KZ_EPROTO, "reserved byte %zu = %02x",
                         at, values[v]);
        }
}

Test(resume_codec, resume_with_a_non_zero_padding_byte_at_any_offset_is_refused)
{
    t_resume r;
    t_resume_make(&r);
    static const uint8_t values[] = {0x01, 0x80, 0xff};
    for (size_t at = T_RESUME_PAD_AT; at < KZ_GATE_RESUME_BYTES; at++)
        for (size_t v = 0; v < sizeof values; v++) {
            uint8_t d[KZ_GATE_RESUME_BYTES];
            memcpy(d, r.d, sizeof d);
            d[at] = values[v];
            kz__resume p;
            cr_assert_eq(kz__resume_parse(d, sizeof d, &p), KZ_EPROTO, "padding byte %zu = %02x",
                         at, values[v]);
            cr_assert_eq(kz__resume_proof_ok(&r.keys, d), 1,
                         "the padding is not under the proof: only the parser refuses it");
        }
}

Test(resume_codec, resume_proof_under_another_key_is_refused)
{
    t_resume r;
    t_resume_make(&r);
    for (int i = 0; i < 32; i++) {
        kz_session_keys other;
        t_random_keys(&other);
        cr_assert_eq(kz__resume_proof_ok(&other, r.d), 0);
    }
    /* Only the client-to-server key makes the proof. */
    kz_session_keys same_c2s = r.keys, same_s2c = r.keys;
    randombytes_buf(same_c2s.server_to_client, KZ_KEY_BYTES);
    randombytes_buf(same_s2c.client_to_server, KZ_KEY_BYTES);
    cr_assert_eq(kz__resume_proof_ok(&same_c2s, r.d), 1);
    cr_assert_eq(kz__resume_proof_ok(&same_s2c, r.d), 0);
    /* The two keys swapped: a server-to-client key never proves anything. */
    kz_session_keys swapped;
    memcpy(swapped.client_to_server, r.keys.server_to_client, KZ_KEY_BYTES);
    memcpy(swapped.server_to_client, r.keys.client_to_server, KZ_KEY_BYTES);
    cr_assert_eq(kz__resume_proof_ok(&swapped, r.d), 0);
}

/* The proof's subkey is its own (KZ_KDF_ID_RESUME): a MAC over the same
 * bytes under the REQUEST's subkey, or under the master key itself, is
 * not a proof. */
Test(resume_codec, resume_proof_under_another_subkey_is_refused)
{
    t_resume r;
    t_resume_make(&r);
    static const uint64_t ids[] = {KZ_KDF_ID_DATA, KZ_KDF_ID_GATE, KZ_KDF_ID_REQUEST};
    for (size_t i = 0; i <= sizeof ids / sizeof ids[0]; i++) {
        uint8_t key[KZ_KEY_BYTES], d[KZ_GATE_RESUME_BYTES];
        if (i < sizeof ids / sizeof ids[0])
            crypto_kdf_derive_from_key(key, sizeof key, ids[i], KZ_KDF_CONTEXT,
                                       r.keys.client_to_server);
        else
            memcpy(key, r.keys.client_to_server, sizeof key);
        memcpy(d, r.d, sizeof d);
        crypto_generichash(d + T_RESUME_PROOF_AT, KZ_RESUME_PROOF_BYTES, d, T_RESUME_PROOF_AT,
                           key, sizeof key);
        cr_assert_eq(kz__resume_proof_ok(&r.keys, d), 0, "subkey %zu", i);
    }
    /* And the recipe with the right subkey is the code's. */
    uint8_t key[KZ_KEY_BYTES], proof[KZ_RESUME_PROOF_BYTES];
    crypto_kdf_derive_from_key(key, sizeof key, KZ_KDF_ID_RESUME, KZ_KDF_CONTEXT,
                               r.keys.client_to_server);
    crypto_generichash(proof, sizeof proof, r.d, T_RESUME_PROOF_AT, key, sizeof key);
    cr_assert_arr_eq(proof, r.d + T_RESUME_PROOF_AT, sizeof proof);
}

/* One flipped bit anywhere before the proof (header, reserved, cookie,
 * ticket) or in the proof itself: the proof no longer holds. */
Test(resume_codec, resume_proof_with_any_flipped_bit_is_refused)
{
    t_resume r;
    t_resume_make(&r);
    for (size_t at = 0; at < T_RESUME_PAD_AT; at++)
        for (unsigned bit = 0; bit < 8; bit++) {
            uint8_t d[KZ_GATE_RESUME_BYTES];
            memcpy(d, r.d, sizeof d);
            d[at] ^= (uint8_t)(1u << bit);
            cr_assert_eq(kz__resume_proof_ok(&r.keys, d), 0, "byte %zu bit %u", at, bit);
        }
}

/* A client may resume under a cookie it was given: the same ticket with
 * another cookie is another proof, and neither stands for the other. */
Test(resume_codec, resume_proof_binds_the_cookie)
{
    t_resume r;
    t_resume_make(&r);
    uint8_t other[KZ_GATE_RESUME_BYTES];
    kz__resume_build(&r.keys, NULL, r.packed, other);
    cr_assert(memcmp(other + T_RESUME_PROOF_AT, r.d + T_RESUME_PROOF_AT, KZ_RESUME_PROOF_BYTES) != 0);
    memcpy(other + T_RESUME_PROOF_AT, r.d + T_RESUME_PROOF_AT, KZ_RESUME_PROOF_BYTES);
    cr_assert_eq(kz__resume_proof_ok(&r.keys, other), 0, "a proof moved to a zero cookie");
}

/* ---- RESUMED -------------------------------------------------------------- */

typedef struct t_resumed {
    kz_session_keys keys;
    kz__ticket ticket;
    uint8_t packed[KZ_TICKET_BYTES];
    uint8_t d[KZ_GATE_RESUMED_BYTES];
} t_resumed;

static void t_resumed_make(t_resumed *r)
{
    t_init();
    t_random_keys(&r->keys);
    t_random_ticket(&r->ticket);
    kz__ticket_pack(&r->ticket, r->packed);
    cr_assert_eq(kz__resumed_seal(&r->keys, r->packed, r->d), (size_t)KZ_GATE_RESUMED_BYTES);
}

/* Opens d and requires KZ_EAUTH with the output left as it was. */
static void t_resumed_refused(const kz_session_keys *k, const uint8_t *d, size_t n,
                              const char *what)
{
    uint8_t out[KZ_TICKET_BYTES];
    memset(out, T_FILL, sizeof out);
    cr_assert_eq(kz__resumed_open(k, d, n, out), KZ_EAUTH, "%s", what);
    cr_assert(t_all(out, sizeof out, T_FILL), "%s: a refused RESUMED changed the ticket", what);
}

Test(resume_codec, resumed_seal_open_round_trip_field_by_field)
{
    t_resumed r;
    t_resumed_make(&r);
    cr_assert_eq(r.d[0], KZ_GATE_MARK0);
    cr_assert_eq(r.d[1], KZ_GATE_MARK1);
    cr_assert_eq(r.d[2], KZ_GATE_RESUMED);
    cr_assert_eq(r.d[3], KZ_PROTOCOL_VERSION);
    uint8_t out[KZ_TICKET_BYTES];
    cr_assert_eq(kz__resumed_open(&r.keys, r.d, sizeof r.d, out), KZ_OK);
    kz__ticket back;
    kz__ticket_unpack(out, &back);
    t_assert_ticket_eq(&back, &r.ticket);
    /* Only the server-to-client key opens it. */
    kz_session_keys same_s2c = r.keys;
    randombytes_buf(same_s2c.client_to_server, KZ_KEY_BYTES);
    cr_assert_eq(kz__resumed_open(&same_s2c, r.d, sizeof r.d, out), KZ_OK);
    /* The ticket does not show on the wire, and each seal has its own
     * nonce. */
    uint8_t again[KZ_GATE_RESUMED_BYTES];
    kz__resumed_seal(&r.keys, r.packed, again);
    cr_assert(memcmp(again + T_RESUMED_NONCE_AT, r.d + T_RESUMED_NONCE_AT,
                     KZ_GATE_ACCEPT_NONCE_BYTES) != 0);
    for (size_t at = 0; at + 8 <= sizeof r.d; at++)
        cr_assert(memcmp(r.d + at, r.packed + 16, 8) != 0, "the secret is visible at %zu", at);
}

Test(resume_codec, resumed_under_another_key_is_refused)
{
    t_resumed r;
    t_resumed_make(&r);
    for (int i = 0; i < 32; i++) {
        kz_session_keys other;
        t_random_keys(&other);
        t_resumed_refused(&other, r.d, sizeof r.d, "a random key");
    }
    kz_session_keys same_c2s = r.keys, swapped;
    randombytes_buf(same_c2s.server_to_client, KZ_KEY_BYTES);
    t_resumed_refused(&same_c2s, r.d, sizeof r.d, "only the client-to-server key in common");
    memcpy(swapped.client_to_server, r.keys.server_to_client, KZ_KEY_BYTES);
    memcpy(swapped.server_to_client, r.keys.client_to_server, KZ_KEY_BYTES);
    t_resumed_refused(&swapped, r.d, sizeof r.d, "the keys swapped");
}

/* Every byte changed in any way a flip can: header, nonce, ciphertext,
 * tag. The output ticket is never touched. */
Test(resume_codec, resumed_with_any_byte_changed_is_refused)
{
    t_resumed r;
    t_resumed_make(&r);
    static const uint8_t masks[] = {0x01, 0x80, 0xff};
    char what[64];
    for (size_t at = 0; at < sizeof r.d; at++)
        for (size_t m = 0; m < sizeof masks; m++) {
            uint8_t d[KZ_GATE_RESUMED_BYTES];
            memcpy(d, r.d, sizeof d);
            d[at] ^= masks[m];
            const char *part = at < T_RESUMED_NONCE_AT ? "header"
                               : at < T_RESUMED_SEALED_AT ? "nonce"
                               : at < T_RESUMED_SEALED_AT + KZ_TICKET_BYTES ? "ciphertext"
                                                                            : "tag";
            snprintf(what, sizeof what, "%s byte %zu ^ %02x", part, at, masks[m]);
            t_resumed_refused(&r.keys, d, sizeof d, what);
        }
}

Test(resume_codec, resumed_of_a_wrong_size_is_refused)
{
    t_resumed r;
    t_resumed_make(&r);
    static const size_t sizes[] = {0, 1, 4, 28, 62, 75, 77, 128, 1200};
    char what[32];
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint8_t *d = t_exact(r.d, sizeof r.d, sizes[i]);
        snprintf(what, sizeof what, "size %zu", sizes[i]);
        t_resumed_refused(&r.keys, d, sizes[i], what);
        free(d);
    }
}

/* XChaCha20-Poly1305 of the ticket under the RESUMED's key, with the
 * given header as both the datagram's header and the associated data. */
static void t_seal_with_header(const kz_session_keys *k, const uint8_t hdr[4],
                               const uint8_t ticket[KZ_TICKET_BYTES],
                               uint8_t out[KZ_GATE_RESUMED_BYTES])
{
    uint8_t key[KZ_KEY_BYTES];
    crypto_kdf_derive_from_key(key, sizeof key, KZ_KDF_ID_GATE, KZ_KDF_CONTEXT,
                               k->server_to_client);
    memcpy(out, hdr, 4);
    randombytes_buf(out + T_RESUMED_NONCE_AT, KZ_GATE_ACCEPT_NONCE_BYTES);
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + T_RESUMED_SEALED_AT, NULL, ticket,
                                               KZ_TICKET_BYTES, out, 4, NULL,
                                               out + T_RESUMED_NONCE_AT, key);
}

/* A correct seal behind a header that is not a RESUMED's (another type,
 * another version, not a gate datagram) is refused: the header is checked
 * for itself, not only through the tag. */
Test(resume_codec, resumed_with_a_wrong_type_version_or_mark_is_refused_even_when_sealed)
{
    t_resumed r;
    t_resumed_make(&r);
    const uint8_t good[4] = {KZ_GATE_MARK0, KZ_GATE_MARK1, KZ_GATE_RESUMED, KZ_PROTOCOL_VERSION};
    uint8_t d[KZ_GATE_RESUMED_BYTES], out[KZ_TICKET_BYTES];
    t_seal_with_header(&r.keys, good, r.packed, d);
    cr_assert_eq(kz__resumed_open(&r.keys, d, sizeof d, out), KZ_OK, "the recipe is right");
    cr_assert_arr_eq(out, r.packed, sizeof out);
    char what[64];
    for (unsigned pos = 0; pos < 4; pos++)
        for (unsigned v = 0; v < 256; v++) {
            if (v == good[pos])
                continue;
            uint8_t hdr[4];
            memcpy(hdr, good, sizeof hdr);
            hdr[pos] = (uint8_t)v;
            t_seal_with_header(&r.keys, hdr, r.packed, d);
            snprintf(what, sizeof what, "header byte %u = %02x, sealed with it", pos, v);
            t_resumed_refused(&r.keys, d, sizeof d, what);
        }
}

/* A RESUMED is not an ACCEPT and not a RESUME: the gate's other datagrams
 * under the same keys never open as one. */
Test(resume_codec, a_resume_is_never_taken_for_a_resumed)
{
    t_resume r;
    t_resume_make(&r);
    t_resumed_refused(&r.keys, r.d, sizeof r.d, "a RESUME");
    t_resumed_refused(&r.keys, r.d, KZ_GATE_RESUMED_BYTES, "a RESUME's first 76 bytes");
}

/* ---- TICKET message ------------------------------------------------------- */

static void t_ticket_msg_refused(const uint8_t *d, size_t n, const char *what)
{
    uint8_t ticket[KZ_TICKET_BYTES];
    uint32_t grace = T_FILL;
    memset(ticket, T_FILL, sizeof ticket);
    cr_assert_eq(kz__ticket_msg_decode(d, n, ticket, &grace), KZ_EPROTO, "%s", what);
    cr_assert(t_all(ticket, sizeof ticket, T_FILL) && grace == T_FILL,
              "%s: a refused TICKET changed the outputs", what);
}

Test(resume_codec, ticket_message_round_trip_field_by_field)
{
    t_init();
    static const uint32_t graces[] = {KZ_RESUME_GRACE_MIN_MS, KZ_RESUME_GRACE_MIN_MS + 1,
                                      KZ_RESUME_DEFAULT_GRACE_MS, 0x00012345u,
                                      KZ_RESUME_GRACE_MAX_MS - 1, KZ_RESUME_GRACE_MAX_MS};
    for (size_t i = 0; i < sizeof graces / sizeof graces[0]; i++) {
        kz__ticket t, back;
        t_random_ticket(&t);
        uint8_t packed[KZ_TICKET_BYTES], msg[KZ_TICKET_MSG_BYTES], out[KZ_TICKET_BYTES];
        kz__ticket_pack(&t, packed);
        kz__ticket_msg_encode(packed, graces[i], msg);
        uint32_t grace = 0;
        cr_assert_eq(kz__ticket_msg_decode(msg, sizeof msg, out, &grace), KZ_OK, "grace %u",
                     graces[i]);
        cr_assert_eq(grace, graces[i]);
        kz__ticket_unpack(out, &back);
        t_assert_ticket_eq(&back, &t);
    }
}

Test(resume_codec, ticket_message_of_a_wrong_size_is_refused)
{
    t_init();
    uint8_t packed[KZ_TICKET_BYTES], msg[KZ_TICKET_MSG_BYTES];
    randombytes_buf(packed, sizeof packed);
    kz__ticket_msg_encode(packed, KZ_RESUME_DEFAULT_GRACE_MS, msg);
    static const size_t sizes[] = {0, 1, 4, 32, 35, 37, 40, 64, 1200};
    char what[32];
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint8_t *d = t_exact(msg, sizeof msg, sizes[i]);
        snprintf(what, sizeof what, "size %zu", sizes[i]);
        t_ticket_msg_refused(d, sizes[i], what);
        free(d);
    }
}

Test(resume_codec, ticket_message_with_a_grace_out_of_range_is_refused)
{
    t_init();
    uint8_t packed[KZ_TICKET_BYTES], msg[KZ_TICKET_MSG_BYTES];
    randombytes_buf(packed, sizeof packed);
    static const uint32_t bad[] = {0, 1, KZ_RESUME_GRACE_MIN_MS - 1, KZ_RESUME_GRACE_MAX_MS + 1,
                                   0x01000000u + KZ_RESUME_DEFAULT_GRACE_MS, UINT32_MAX};
    char what[48];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kz__ticket_msg_encode(packed, bad[i], msg);
        snprintf(what, sizeof what, "grace %u ms", bad[i]);
        t_ticket_msg_refused(msg, sizeof msg, what);
    }
    /* The grace is little-endian: the bytes of 15000 in the other order
     * are a grace far out of range. */
    kz__ticket_msg_encode(packed, KZ_RESUME_DEFAULT_GRACE_MS, msg);
    uint8_t *g = msg + KZ_TICKET_BYTES;
    cr_assert_eq(g[0] | g[1] << 8 | g[2] << 16 | (uint32_t)g[3] << 24, KZ_RESUME_DEFAULT_GRACE_MS);
    uint8_t t0 = g[0], t1 = g[1];
    g[0] = g[3];
    g[1] = g[2];
    g[2] = t1;
    g[3] = t0;
    t_ticket_msg_refused(msg, sizeof msg, "the grace big-endian");
}
