/*
 * Resume datagrams and the TICKET message (resume.h, docs/PROTOCOL.md).
 */
#include "resume.h"

#include <sodium.h>
#include <string.h>

#include "bytes.h"

void kz__ticket_pack(const kz__ticket *t, uint8_t out[KZ_TICKET_BYTES])
{
    kz__wbuf w = kz__wbuf_make(out, KZ_TICKET_BYTES);
    kz__put_u16(&w, (uint16_t)t->slot);
    kz__put_u16(&w, (uint16_t)(t->slot >> 16));
    kz__put_u16(&w, (uint16_t)t->path);
    kz__put_u16(&w, (uint16_t)(t->path >> 16));
    kz__put_u64(&w, t->session_id);
    kz__put_bytes(&w, t->secret, sizeof t->secret);
}

void kz__ticket_unpack(const uint8_t in[KZ_TICKET_BYTES], kz__ticket *t)
{
    t->slot = (uint32_t)in[0] | (uint32_t)in[1] << 8 | (uint32_t)in[2] << 16 |
              (uint32_t)in[3] << 24;
    t->path = (uint32_t)in[4] | (uint32_t)in[5] << 8 | (uint32_t)in[6] << 16 |
              (uint32_t)in[7] << 24;
    t->session_id = kz__load_u64(in + 8);
    memcpy(t->secret, in + 16, sizeof t->secret);
}

/* BLAKE2b-128 keyed with KDF(client-to-server master, KZ_KDF_ID_RESUME) of
 * the RESUME's first KZ_GATE_RESUME_FIXED_BYTES - proof bytes. */
static void kz__resume_mac(const kz_session_keys *keys, const uint8_t *d,
                           uint8_t out[KZ_RESUME_PROOF_BYTES])
{
    uint8_t key[KZ_KEY_BYTES];
    crypto_kdf_derive_from_key(key, sizeof key, KZ_KDF_ID_RESUME, KZ_KDF_CONTEXT,
                               keys->client_to_server);
    crypto_generichash(out, KZ_RESUME_PROOF_BYTES, d,
                       KZ_GATE_RESUME_FIXED_BYTES - KZ_RESUME_PROOF_BYTES, key, sizeof key);
    sodium_memzero(key, sizeof key);
}

#define KZ__RESUME_COOKIE_AT (KZ_GATE_HEADER_BYTES + 4u)
#define KZ__RESUME_TICKET_AT (KZ__RESUME_COOKIE_AT + KZ_COOKIE_BYTES)
#define KZ__RESUME_PROOF_AT (KZ__RESUME_TICKET_AT + KZ_TICKET_BYTES)

size_t kz__resume_build(const kz_session_keys *keys, const uint8_t *cookie,
                        const uint8_t ticket[KZ_TICKET_BYTES], uint8_t out[KZ_GATE_RESUME_BYTES])
{
    memset(out, 0, KZ_GATE_RESUME_BYTES);
    out[0] = KZ_GATE_MARK0;
    out[1] = KZ_GATE_MARK1;
    out[2] = KZ_GATE_RESUME;
    out[3] = (uint8_t)KZ_PROTOCOL_VERSION;
    if (cookie)
        memcpy(out + KZ__RESUME_COOKIE_AT, cookie, KZ_COOKIE_BYTES);
    memcpy(out + KZ__RESUME_TICKET_AT, ticket, KZ_TICKET_BYTES);
    kz__resume_mac(keys, out, out + KZ__RESUME_PROOF_AT);
    return KZ_GATE_RESUME_BYTES;
}

int kz__resume_parse(const uint8_t *d, size_t len, kz__resume *out)
{
    if (len != KZ_GATE_RESUME_BYTES)
        return KZ_ERANGE;
    for (size_t i = KZ_GATE_HEADER_BYTES; i < KZ__RESUME_COOKIE_AT; i++)
        if (d[i] != 0)
            return KZ_EPROTO;
    for (size_t i = KZ_GATE_RESUME_FIXED_BYTES; i < KZ_GATE_RESUME_BYTES; i++)
        if (d[i] != 0)
            return KZ_EPROTO;
    out->cookie = d + KZ__RESUME_COOKIE_AT;
    out->ticket = d + KZ__RESUME_TICKET_AT;
    out->proof = d + KZ__RESUME_PROOF_AT;
    return KZ_OK;
}

int kz__resume_proof_ok(const kz_session_keys *keys, const uint8_t d[KZ_GATE_RESUME_BYTES])
{
    uint8_t mac[KZ_RESUME_PROOF_BYTES];
    kz__resume_mac(keys, d, mac);
    return sodium_memcmp(mac, d + KZ__RESUME_PROOF_AT, sizeof mac) == 0;
}

static void kz__resumed_key(const kz_session_keys *keys, uint8_t key[KZ_KEY_BYTES])
{
    crypto_kdf_derive_from_key(key, KZ_KEY_BYTES, KZ_KDF_ID_GATE, KZ_KDF_CONTEXT,
                               keys->server_to_client);
}

size_t kz__resumed_seal(const kz_session_keys *keys, const uint8_t ticket[KZ_TICKET_BYTES],
                        uint8_t out[KZ_GATE_RESUMED_BYTES])
{
    uint8_t key[KZ_KEY_BYTES];
    out[0] = KZ_GATE_MARK0;
    out[1] = KZ_GATE_MARK1;
    out[2] = KZ_GATE_RESUMED;
    out[3] = (uint8_t)KZ_PROTOCOL_VERSION;
    uint8_t *nonce = out + KZ_GATE_HEADER_BYTES;
    randombytes_buf(nonce, KZ_GATE_ACCEPT_NONCE_BYTES);
    kz__resumed_key(keys, key);
    crypto_aead_xchacha20poly1305_ietf_encrypt(nonce + KZ_GATE_ACCEPT_NONCE_BYTES, NULL, ticket,
                                               KZ_TICKET_BYTES, out, KZ_GATE_HEADER_BYTES, NULL,
                                               nonce, key);
    sodium_memzero(key, sizeof key);
    return KZ_GATE_RESUMED_BYTES;
}

int kz__resumed_open(const kz_session_keys *keys, const uint8_t *d, size_t len,
                     uint8_t ticket[KZ_TICKET_BYTES])
{
    if (len != KZ_GATE_RESUMED_BYTES || d[0] != KZ_GATE_MARK0 || d[1] != KZ_GATE_MARK1 ||
        d[2] != KZ_GATE_RESUMED || d[3] != KZ_PROTOCOL_VERSION)
        return KZ_EAUTH;
    uint8_t key[KZ_KEY_BYTES], plain[KZ_TICKET_BYTES];
    const uint8_t *nonce = d + KZ_GATE_HEADER_BYTES;
    kz__resumed_key(keys, key);
    /* Opened into a buffer of its own: libsodium zeroes the output when the
     * tag is wrong, and a forged RESUMED must not wipe the caller's ticket. */
    int rc = crypto_aead_xchacha20poly1305_ietf_decrypt(
        plain, NULL, NULL, nonce + KZ_GATE_ACCEPT_NONCE_BYTES,
        KZ_TICKET_BYTES + KZ_AEAD_TAG_BYTES, d, KZ_GATE_HEADER_BYTES, nonce, key);
    sodium_memzero(key, sizeof key);
    if (rc != 0)
        return KZ_EAUTH;
    memcpy(ticket, plain, KZ_TICKET_BYTES);
    sodium_memzero(plain, sizeof plain);
    return KZ_OK;
}

void kz__ticket_msg_encode(const uint8_t ticket[KZ_TICKET_BYTES], uint32_t grace_ms,
                           uint8_t out[KZ_TICKET_MSG_BYTES])
{
    memcpy(out, ticket, KZ_TICKET_BYTES);
    out[KZ_TICKET_BYTES] = (uint8_t)grace_ms;
    out[KZ_TICKET_BYTES + 1] = (uint8_t)(grace_ms >> 8);
    out[KZ_TICKET_BYTES + 2] = (uint8_t)(grace_ms >> 16);
    out[KZ_TICKET_BYTES + 3] = (uint8_t)(grace_ms >> 24);
}

int kz__ticket_msg_decode(const uint8_t *d, size_t len, uint8_t ticket[KZ_TICKET_BYTES],
                          uint32_t *grace_ms)
{
    if (len != KZ_TICKET_MSG_BYTES)
        return KZ_EPROTO;
    const uint8_t *g = d + KZ_TICKET_BYTES;
    uint32_t grace = (uint32_t)g[0] | (uint32_t)g[1] << 8 | (uint32_t)g[2] << 16 |
                     (uint32_t)g[3] << 24;
    if (grace < KZ_RESUME_GRACE_MIN_MS || grace > KZ_RESUME_GRACE_MAX_MS)
        return KZ_EPROTO;
    memcpy(ticket, d, KZ_TICKET_BYTES);
    *grace_ms = grace;
    return KZ_OK;
}
