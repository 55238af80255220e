/*
 * Connect tokens: encode, parse, check, mint, verify. The layout is in
 * docs/PROTOCOL.md; this file follows it field by field. Parsing is strict:
 * every count and length is bounded before it is used, every string is
 * checked for its character set, and trailing bytes are refused, so that a
 * token has exactly one encoding.
 */
#include <arpa/inet.h>
#include <sodium.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <kizuna/token.h>
#include <kizuna/utf8.h>

#include "bytes.h"
#include "crypto.h"
#include "token_claims.h"

/* ---- addresses ---------------------------------------------------------- */

int kz_address_parse(const char *text, kz_address *out)
{
    char host[64];
    const char *colon;
    int bracketed = text && text[0] == '[';
    memset(out, 0, sizeof *out);
    if (text == NULL)
        return KZ_EINVAL;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':' || (size_t)(close - text - 1) >= sizeof host)
            return KZ_EINVAL;
        memcpy(host, text + 1, (size_t)(close - text - 1));
        host[close - text - 1] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(text, ':');
        if (!colon || (size_t)(colon - text) >= sizeof host)
            return KZ_EINVAL;
        memcpy(host, text, (size_t)(colon - text));
        host[colon - text] = '\0';
    }
    char *end;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || port == 0 || port > 65535)
        return KZ_EINVAL;
    out->port = (uint16_t)port;
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    if (!bracketed && inet_pton(AF_INET, host, out->ip) == 1) {
        out->family = KZ_ADDR_IPV4;
        return KZ_OK;
    }
    /* IPv6 only in brackets: "::1:80" would be ambiguous. */
    if (bracketed && inet_pton(AF_INET6, host, out->ip) == 1) {
        out->family = KZ_ADDR_IPV6;
        return KZ_OK;
    }
    memset(out, 0, sizeof *out);
    return KZ_EINVAL;
}

char *kz_address_format(const kz_address *a, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (a->family == KZ_ADDR_IPV4) {
        inet_ntop(AF_INET, a->ip, host, sizeof host);
        snprintf(out, cap, "%s:%u", host, a->port);
    } else {
        inet_ntop(AF_INET6, a->ip, host, sizeof host);
        snprintf(out, cap, "[%s]:%u", host, a->port);
    }
    return out;
}

/* ---- keys --------------------------------------------------------------- */

int kz_sign_keypair_generate(kz_sign_keypair *kp)
{
    if (kz__crypto_init() != KZ_OK)
        return KZ_EIO;
    crypto_sign_keypair(kp->public_key, kp->secret_key);
    return KZ_OK;
}

int kz_box_keypair_generate(kz_box_keypair *kp)
{
    if (kz__crypto_init() != KZ_OK)
        return KZ_EIO;
    crypto_box_keypair(kp->public_key, kp->secret_key);
    return KZ_OK;
}

/* ---- semantic checks ---------------------------------------------------- */

/* Role and zone names: 1..max bytes of [a-z0-9_-]. */
static int kz__is_ident(const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* Verification method: 1..max bytes of printable ASCII without spaces. */
static int kz__is_method(const char *s)
{
    size_t n = strnlen(s, KZ_TOKEN_METHOD_MAX + 1);
    if (n == 0 || n > KZ_TOKEN_METHOD_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e)
            return 0;
    return 1;
}

static int kz__address_ok(const kz_address *a)
{
    if (a->port == 0)
        return 0;
    if (a->family == KZ_ADDR_IPV4) {
        for (int i = 4; i < 16; i++)
            if (a->ip[i] != 0)
                return 0;
        return 1;
    }
    return a->family == KZ_ADDR_IPV6;
}

/* The identity claims: known values that agree with one another (token.h
 * states the rule). NULL or the first problem. */
static const char *kz__claims_problem(const kz_claims *c, uint64_t client_id)
{
    int unverified = strcmp(c->method, KZ_TOKEN_METHOD_NONE) == 0;
    if (c->verification_level > KZ_VERIFY_MAX)
        return "unknown verification level";
    if (!kz__is_method(c->method))
        return "verification method empty, too long, or not printable ASCII";
    if (c->verification_level != KZ_VERIFY_NONE && unverified)
        return "a verification level above none needs the method that verified the owner";
    if (c->verification_level == KZ_VERIFY_NONE && !unverified)
        return "a verification method needs a level above none";
    if (c->actor_kind > KZ_ACTOR_MAX)
        return "unknown actor kind";
    if (c->actor_kind == KZ_ACTOR_AGENT && c->acting_for == 0)
        return "an agent must name the principal it acts for";
    if (c->actor_kind == KZ_ACTOR_HUMAN && c->acting_for != 0)
        return "a human does not act for another principal";
    if (c->acting_for != 0 && c->acting_for == client_id)
        return "an actor cannot act for itself";
    return NULL;
}

/* The display name: length, then the rule of kz_utf8_name_problem. */
static const char *kz__name_problem(const char *name)
{
    size_t n = strnlen(name, KZ_TOKEN_NAME_MAX + 1);
    if (n == 0)
        return "display name is empty";
    if (n > KZ_TOKEN_NAME_MAX)
        return "display name longer than KZ_TOKEN_NAME_MAX bytes";
    if (!kz_utf8_valid((const uint8_t *)name, n))
        return "display name is not well-formed UTF-8";
    if (kz_utf8_name_problem((const uint8_t *)name, n, NULL) != NULL)
        return "display name has a control, invisible, text-direction or private-use "
               "character, a space other than U+0020, or spaces at an end or doubled";
    return NULL;
}

int kz_token_info_check(const kz_token_info *t, const char **why)
{
    const char *w = NULL;
    if (t->client_id == 0)
        w = "client id is zero";
    else if (t->avatar_id == 0)
        w = "avatar id is zero";
    else if (t->expire_time <= t->create_time)
        w = "token expires before it is created";
    else if (t->expire_time - t->create_time > KZ_TOKEN_MAX_TTL_SECONDS)
        w = "lifetime exceeds KZ_TOKEN_MAX_TTL_SECONDS";
    else if (t->n_addresses == 0 || t->n_addresses > KZ_TOKEN_MAX_ADDRESSES)
        w = "address count out of range";
    else if ((w = kz__name_problem(t->name)) != NULL)
        ;
    else if (t->n_roles > KZ_TOKEN_MAX_ROLES)
        w = "too many roles";
    else if (t->n_zones > KZ_TOKEN_MAX_ZONES)
        w = "too many zones";
    else
        w = kz__claims_problem(&t->claims, t->client_id);
    for (unsigned i = 0; !w && i < t->n_addresses; i++)
        if (!kz__address_ok(&t->addresses[i]))
            w = "bad server address";
    for (unsigned i = 0; !w && i < t->n_roles; i++)
        if (!kz__is_ident(t->roles[i], KZ_TOKEN_ROLE_MAX))
            w = "role name not [a-z0-9_-] or too long";
    for (unsigned i = 0; !w && i < t->n_zones; i++)
        if (!kz__is_ident(t->zones[i], KZ_TOKEN_ZONE_MAX))
            w = "zone name not [a-z0-9_-] or too long";
    if (why)
        *why = w;
    return w ? KZ_EINVAL : KZ_OK;
}

/* ---- encoding ----------------------------------------------------------- */

static void kz__put_str(kz__wbuf *w, const char *s, size_t max)
{
    size_t n = strnlen(s, max);
    kz__put_u8(w, (uint8_t)n);
    kz__put_bytes(w, s, n);
}

/* Writes everything up to (not including) the sealed keys. */
static void kz__encode_body(kz__wbuf *w, const kz_token_info *t)
{
    kz__put_bytes(w, KZ_TOKEN_MAGIC, 4);
    kz__put_u16(w, KZ_PROTOCOL_VERSION);
    kz__put_u16(w, 0); /* flags: none defined */
    kz__put_u64(w, t->protocol_id);
    kz__put_u64(w, t->create_time);
    kz__put_u64(w, t->expire_time);
    kz__put_bytes(w, t->nonce, KZ_TOKEN_NONCE_BYTES);
    kz__put_u64(w, t->server_id);
    kz__put_u16(w, t->timeout_seconds);
    kz__put_u8(w, t->n_addresses);
    for (unsigned i = 0; i < t->n_addresses; i++) {
        kz__put_u8(w, t->addresses[i].family);
        kz__put_bytes(w, t->addresses[i].ip, 16);
        kz__put_u16(w, t->addresses[i].port);
    }
    kz__put_u64(w, t->client_id);
    kz__put_u64(w, t->avatar_id);
    kz__put_str(w, t->name, KZ_TOKEN_NAME_MAX);
    kz__put_u8(w, t->n_roles);
    for (unsigned i = 0; i < t->n_roles; i++)
        kz__put_str(w, t->roles[i], KZ_TOKEN_ROLE_MAX);
    kz__put_u8(w, t->n_zones);
    for (unsigned i = 0; i < t->n_zones; i++)
        kz__put_str(w, t->zones[i], KZ_TOKEN_ZONE_MAX);
    kz__put_u8(w, t->claims.verification_level);
    kz__put_str(w, t->claims.method, KZ_TOKEN_METHOD_MAX);
    kz__put_u8(w, t->claims.actor_kind);
    kz__put_u64(w, t->claims.acting_for);
}

int kz_token_mint(const kz_token_info *info, const uint8_t backend_sk[KZ_SIGN_SECRET_KEY_BYTES],
                  const uint8_t server_box_pk[KZ_BOX_PUBLIC_KEY_BYTES], kz_session_keys *keys,
                  uint8_t *out, size_t cap, size_t *out_len)
{
    uint8_t plain_keys[KZ_TOKEN_KEYS_BYTES];
    int rc = KZ_OK;
    if (kz__crypto_init() != KZ_OK)
        return KZ_EIO;
    if (kz_token_info_check(info, NULL) != KZ_OK)
        return KZ_EINVAL;
    kz_token_info t = *info;
    randombytes_buf(t.nonce, sizeof t.nonce);
    randombytes_buf(keys->client_to_server, KZ_KEY_BYTES);
    randombytes_buf(keys->server_to_client, KZ_KEY_BYTES);
    memcpy(plain_keys, keys->client_to_server, KZ_KEY_BYTES);
    memcpy(plain_keys + KZ_KEY_BYTES, keys->server_to_client, KZ_KEY_BYTES);

    kz__wbuf w = kz__wbuf_make(out, cap);
    kz__encode_body(&w, &t);
    if (w.overflow || (size_t)(w.end - w.p) < KZ_TOKEN_SEALED_KEYS_BYTES + KZ_SIGNATURE_BYTES) {
        rc = KZ_EOVERFLOW;
        goto out;
    }
    if (crypto_box_seal(w.p, plain_keys, sizeof plain_keys, server_box_pk) != 0) {
        rc = KZ_EINVAL; /* not a valid X25519 public key */
        goto out;
    }
    w.p += KZ_TOKEN_SEALED_KEYS_BYTES;
    crypto_sign_detached(w.p, NULL, out, (size_t)(w.p - out), backend_sk);
    w.p += KZ_SIGNATURE_BYTES;
    *out_len = (size_t)(w.p - out);
out:
    sodium_memzero(plain_keys, sizeof plain_keys);
    if (rc != KZ_OK) {
        sodium_memzero(keys, sizeof *keys);
        sodium_memzero(out, cap);
    }
    return rc;
}

/* ---- parsing ------------------------------------------------------------ */

/* Reads a length-prefixed string of at most `max` bytes into dst[max + 1].
 * Embedded NULs are refused, so the C string is the whole field. */
static int kz__get_str(const uint8_t **p, const uint8_t *end, char *dst, size_t max)
{
    uint8_t n;
    if (!kz__get_u8(p, end, &n) || n > max || !kz__get_bytes(p, end, dst, n))
        return 0;
    dst[n] = '\0';
    return memchr(dst, '\0', n) == NULL;
}

/* Parses the fixed header after magic and version. */
static int kz__parse_header(const uint8_t **p, const uint8_t *end, kz_token_info *t)
{
    uint16_t flags;
    if (!kz__get_u16(p, end, &flags) || flags != 0)
        return 0;
    return kz__get_u64(p, end, &t->protocol_id) && kz__get_u64(p, end, &t->create_time) &&
           kz__get_u64(p, end, &t->expire_time) &&
           kz__get_bytes(p, end, t->nonce, KZ_TOKEN_NONCE_BYTES) &&
           kz__get_u64(p, end, &t->server_id) && kz__get_u16(p, end, &t->timeout_seconds);
}

static int kz__parse_addresses(const uint8_t **p, const uint8_t *end, kz_token_info *t)
{
    if (!kz__get_u8(p, end, &t->n_addresses) || t->n_addresses > KZ_TOKEN_MAX_ADDRESSES)
        return 0;
    for (unsigned i = 0; i < t->n_addresses; i++) {
        kz_address *a = &t->addresses[i];
        if (!kz__get_u8(p, end, &a->family) || !kz__get_bytes(p, end, a->ip, 16) ||
            !kz__get_u16(p, end, &a->port))
            return 0;
    }
    return 1;
}

static int kz__parse_identity(const uint8_t **p, const uint8_t *end, kz_token_info *t)
{
    if (!kz__get_u64(p, end, &t->client_id) || !kz__get_u64(p, end, &t->avatar_id) ||
        !kz__get_str(p, end, t->name, KZ_TOKEN_NAME_MAX))
        return 0;
    if (!kz__get_u8(p, end, &t->n_roles) || t->n_roles > KZ_TOKEN_MAX_ROLES)
        return 0;
    for (unsigned i = 0; i < t->n_roles; i++)
        if (!kz__get_str(p, end, t->roles[i], KZ_TOKEN_ROLE_MAX))
            return 0;
    if (!kz__get_u8(p, end, &t->n_zones) || t->n_zones > KZ_TOKEN_MAX_ZONES)
        return 0;
    for (unsigned i = 0; i < t->n_zones; i++)
        if (!kz__get_str(p, end, t->zones[i], KZ_TOKEN_ZONE_MAX))
            return 0;
    return kz__get_u8(p, end, &t->claims.verification_level) &&
           kz__get_str(p, end, t->claims.method, KZ_TOKEN_METHOD_MAX) &&
           kz__get_u8(p, end, &t->claims.actor_kind) &&
           kz__get_u64(p, end, &t->claims.acting_for);
}

/* Magic and version, separated so the gate can count version mismatches
 * on their own. Returns a verdict. */
static kz_token_verdict kz__parse_prefix(const uint8_t **p, const uint8_t *end)
{
    uint16_t version;
    if ((size_t)(end - *p) < KZ_TOKEN_MIN_BYTES || (size_t)(end - *p) > KZ_TOKEN_MAX_BYTES ||
        memcmp(*p, KZ_TOKEN_MAGIC, 4) != 0)
        return KZ_TOKEN_MALFORMED;
    *p += 4;
    if (!kz__get_u16(p, end, &version))
        return KZ_TOKEN_MALFORMED;
    return version == KZ_PROTOCOL_VERSION ? KZ_TOKEN_VALID : KZ_TOKEN_BAD_VERSION;
}

static kz_token_verdict kz__parse(const uint8_t *buf, size_t len, kz_token_info *t)
{
    const uint8_t *p = buf, *end = buf + len;
    memset(t, 0, sizeof *t);
    kz_token_verdict v = kz__parse_prefix(&p, end);
    if (v != KZ_TOKEN_VALID)
        return v;
    if (!kz__parse_header(&p, end, t) || !kz__parse_addresses(&p, end, t) ||
        !kz__parse_identity(&p, end, t))
        return KZ_TOKEN_MALFORMED;
    /* Exactly the sealed keys and the signature must remain. */
    if ((size_t)(end - p) != KZ_TOKEN_SEALED_KEYS_BYTES + KZ_SIGNATURE_BYTES)
        return KZ_TOKEN_MALFORMED;
    if (kz_token_info_check(t, NULL) != KZ_OK)
        return KZ_TOKEN_MALFORMED;
    return KZ_TOKEN_VALID;
}

size_t kz__token_claims_write(const kz_token_info *t, uint8_t *out, size_t cap)
{
    if (kz_token_info_check(t, NULL) != KZ_OK)
        return 0;
    kz__wbuf w = kz__wbuf_make(out, cap);
    kz__encode_body(&w, t);
    return w.overflow ? 0 : (size_t)(w.p - out);
}

int kz__token_claims_read(const uint8_t *buf, size_t len, kz_token_info *t)
{
    const uint8_t *p = buf, *end = buf + len;
    uint16_t version;
    memset(t, 0, sizeof *t);
    if (len < 6 || memcmp(p, KZ_TOKEN_MAGIC, 4) != 0)
        return KZ_EINVAL;
    p += 4;
    if (!kz__get_u16(&p, end, &version) || version != KZ_PROTOCOL_VERSION ||
        !kz__parse_header(&p, end, t) || !kz__parse_addresses(&p, end, t) ||
        !kz__parse_identity(&p, end, t) || p != end || kz_token_info_check(t, NULL) != KZ_OK) {
        memset(t, 0, sizeof *t);
        return KZ_EINVAL;
    }
    return KZ_OK;
}

int kz_token_parse(const uint8_t *buf, size_t len, kz_token_info *info)
{
    kz_token_info local;
    kz_token_info *t = info ? info : &local;
    return kz__parse(buf, len, t) == KZ_TOKEN_VALID ? KZ_OK : KZ_EPROTO;
}

/* ---- verification ------------------------------------------------------- */

static const char *const kz__verdict_names[KZ_TOKEN_VERDICT_COUNT] = {
    "valid",   "malformed",    "bad_version",   "bad_protocol", "expired",
    "not_yet_valid", "wrong_server", "bad_signature", "bad_keys",
};

const char *kz_token_verdict_name(kz_token_verdict v)
{
    return (unsigned)v < KZ_TOKEN_VERDICT_COUNT ? kz__verdict_names[v] : "?";
}

/* `mine` (a verifier's address) serves `named` (a token's): the same
 * family and IP, and the same port unless mine is 0 (any port). */
static int kz__serves(const kz_address *mine, const kz_address *named)
{
    return mine->family == named->family && memcmp(mine->ip, named->ip, 16) == 0 &&
           (mine->port == 0 || mine->port == named->port);
}

/* One of the token's addresses is one this server serves (token.h). */
static int kz__addresses_match(const kz_token_verifier *v, const kz_token_info *t)
{
    if (v->n_addresses == 0)
        return 1;
    if (v->n_addresses > KZ_VERIFIER_MAX_ADDRESSES)
        return 0; /* a broken verifier serves no one */
    for (uint32_t i = 0; i < v->n_addresses; i++)
        for (unsigned j = 0; j < t->n_addresses; j++)
            if (kz__serves(&v->addresses[i], &t->addresses[j]))
                return 1;
    return 0;
}

kz_token_verdict kz_token_precheck(const kz_token_verifier *v, const uint8_t *buf, size_t len,
                                   uint64_t now_unix, kz_token_info *info)
{
    kz_token_info local;
    kz_token_info *t = info ? info : &local;
    uint32_t skew = v->max_clock_skew_seconds ? v->max_clock_skew_seconds
                                              : KZ_TOKEN_DEFAULT_CLOCK_SKEW_SECONDS;
    kz_token_verdict verdict = kz__parse(buf, len, t);
    if (verdict != KZ_TOKEN_VALID)
        return verdict;
    if (t->protocol_id != v->protocol_id)
        return KZ_TOKEN_BAD_PROTOCOL;
    if (t->expire_time <= now_unix)
        return KZ_TOKEN_EXPIRED;
    if (t->create_time > now_unix + skew)
        return KZ_TOKEN_NOT_YET_VALID;
    if (t->server_id != v->server_id || !kz__addresses_match(v, t))
        return KZ_TOKEN_WRONG_SERVER;
    return KZ_TOKEN_VALID;
}

kz_token_verdict kz_token_verify(const kz_token_verifier *v, const uint8_t *buf, size_t len,
                                 uint64_t now_unix, kz_token_info *info, kz_session_keys *keys)
{
    uint8_t plain_keys[KZ_TOKEN_KEYS_BYTES];
    sodium_memzero(keys, sizeof *keys);
    kz_token_verdict verdict = kz_token_precheck(v, buf, len, now_unix, info);
    if (verdict != KZ_TOKEN_VALID)
        return verdict;
    if (kz__crypto_init() != KZ_OK)
        return KZ_TOKEN_BAD_KEYS;
    const uint8_t *sig = buf + len - KZ_SIGNATURE_BYTES;
    const uint8_t *sealed = sig - KZ_TOKEN_SEALED_KEYS_BYTES;
    /* Signature first: it covers the sealed keys, so nothing unsigned is
     * ever decrypted. */
    uint32_t n_keys = v->n_backend_keys ? v->n_backend_keys : 1u;
    if (n_keys > KZ_TOKEN_MAX_BACKEND_KEYS)
        return KZ_TOKEN_BAD_SIGNATURE;  /* a broken verifier trusts no one */
    uint32_t k = 0;
    while (k < n_keys &&
           crypto_sign_verify_detached(sig, buf, len - KZ_SIGNATURE_BYTES, v->backend_pk[k]) != 0)
        k++;
    if (k == n_keys)
        return KZ_TOKEN_BAD_SIGNATURE;
    if (crypto_box_seal_open(plain_keys, sealed, KZ_TOKEN_SEALED_KEYS_BYTES,
                             v->server_keys.public_key, v->server_keys.secret_key) != 0)
        return KZ_TOKEN_BAD_KEYS;
    memcpy(keys->client_to_server, plain_keys, KZ_KEY_BYTES);
    memcpy(keys->server_to_client, plain_keys + KZ_KEY_BYTES, KZ_KEY_BYTES);
    sodium_memzero(plain_keys, sizeof plain_keys);
    return KZ_TOKEN_VALID;
}

/* ---- client token file -------------------------------------------------- */

int kz_connect_token_encode(const kz_connect_token *ct, uint8_t *out, size_t cap,
                            size_t *out_len)
{
    if (ct->token_len > KZ_TOKEN_MAX_BYTES)
        return KZ_EINVAL;
    kz__wbuf w = kz__wbuf_make(out, cap);
    kz__put_bytes(&w, KZ_CONNECT_TOKEN_FILE_MAGIC, 4);
    kz__put_u16(&w, ct->token_len);
    kz__put_bytes(&w, ct->token, ct->token_len);
    kz__put_bytes(&w, ct->keys.client_to_server, KZ_KEY_BYTES);
    kz__put_bytes(&w, ct->keys.server_to_client, KZ_KEY_BYTES);
    if (w.overflow)
        return KZ_EOVERFLOW;
    *out_len = (size_t)(w.p - out);
    return KZ_OK;
}

int kz_connect_token_decode(const uint8_t *buf, size_t len, kz_connect_token *ct)
{
    const uint8_t *p = buf, *end = buf + len;
    uint8_t magic[4];
    memset(ct, 0, sizeof *ct);
    if (!kz__get_bytes(&p, end, magic, 4) || memcmp(magic, KZ_CONNECT_TOKEN_FILE_MAGIC, 4) ||
        !kz__get_u16(&p, end, &ct->token_len) || ct->token_len > KZ_TOKEN_MAX_BYTES ||
        !kz__get_bytes(&p, end, ct->token, ct->token_len) ||
        !kz__get_bytes(&p, end, ct->keys.client_to_server, KZ_KEY_BYTES) ||
        !kz__get_bytes(&p, end, ct->keys.server_to_client, KZ_KEY_BYTES) || p != end ||
        kz_token_parse(ct->token, ct->token_len, NULL) != KZ_OK) {
        sodium_memzero(ct, sizeof *ct);
        return KZ_EPROTO;
    }
    return KZ_OK;
}
