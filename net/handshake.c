/*
 * The client's side of the gate: build requests, keep the cookie, open the
 * accept. See gate.h and docs/PROTOCOL.md, "Gate".
 */
#include <sodium.h>
#include <string.h>

#include "bytes.h"
#include "crypto.h"
#include "gate.h"
#include "seal.h"

int kz__handshake_init(kz__handshake *h, const kz_connect_token *token)
{
    memset(h, 0, sizeof *h);
    if (kz__crypto_init() != KZ_OK)
        return KZ_EIO;
    if (kz_token_parse(token->token, token->token_len, NULL) != KZ_OK)
        return KZ_EPROTO;
    h->token = *token;
    h->aead_mask = KZ_AEAD_BIT_CHACHA20;
    if (kz__aead_aes_available())
        h->aead_mask |= KZ_AEAD_BIT_AES256GCM;
    h->state = KZ_HS_REQUESTING;
    return KZ_OK;
}

void kz__request_proof(const kz_session_keys *keys, const uint8_t cookie[KZ_COOKIE_BYTES],
                       const uint8_t *token, size_t token_len,
                       uint8_t out[KZ_REQUEST_PROOF_BYTES])
{
    uint8_t key[KZ_KEY_BYTES];
    crypto_generichash_state st;
    crypto_kdf_derive_from_key(key, sizeof key, KZ_KDF_ID_REQUEST, KZ_KDF_CONTEXT,
                               keys->client_to_server);
    crypto_generichash_init(&st, key, sizeof key, KZ_REQUEST_PROOF_BYTES);
    crypto_generichash_update(&st, cookie, KZ_COOKIE_BYTES);
    crypto_generichash_update(&st, token + token_len - KZ_SIGNATURE_BYTES, KZ_SIGNATURE_BYTES);
    crypto_generichash_final(&st, out, KZ_REQUEST_PROOF_BYTES);
    sodium_memzero(key, sizeof key);
    sodium_memzero(&st, sizeof st);
}

uint32_t kz__connect_tag(const kz_session_keys *keys, uint64_t session_id)
{
    uint8_t key[KZ_KEY_BYTES], msg[8 + 8], tag[16];
    crypto_kdf_derive_from_key(key, sizeof key, KZ_KDF_ID_REQUEST, KZ_KDF_CONTEXT,
                               keys->client_to_server);
    memcpy(msg, "connect\0", 8);
    kz__store_u64(msg + 8, session_id);
    crypto_generichash(tag, sizeof tag, msg, sizeof msg, key, sizeof key);
    sodium_memzero(key, sizeof key);
    return (uint32_t)tag[0] | (uint32_t)tag[1] << 8 | (uint32_t)tag[2] << 16 |
           (uint32_t)tag[3] << 24;
}

size_t kz__handshake_request(const kz__handshake *h, uint8_t out[KZ_GATE_REQUEST_BYTES])
{
    memset(out, 0, KZ_GATE_REQUEST_BYTES);
    out[0] = KZ_GATE_MARK0;
    out[1] = KZ_GATE_MARK1;
    out[2] = KZ_GATE_REQUEST;
    out[3] = (uint8_t)KZ_PROTOCOL_VERSION;
    out[4] = h->aead_mask;
    out[5] = 0;
    out[6] = (uint8_t)h->token.token_len;
    out[7] = (uint8_t)(h->token.token_len >> 8);
    if (h->has_cookie)
        memcpy(out + 8, h->cookie, KZ_COOKIE_BYTES);
    kz__request_proof(&h->token.keys, out + 8, h->token.token, h->token.token_len,
                      out + 8 + KZ_COOKIE_BYTES);
    memcpy(out + KZ_GATE_REQUEST_FIXED_BYTES, h->token.token, h->token.token_len);
    return KZ_GATE_REQUEST_BYTES;
}

/* Opens an accept with the gate key derived from our server-to-client key;
 * a forged or corrupted accept fails here and is ignored. */
static int kz__handshake_accept(kz__handshake *h, const uint8_t *d, size_t len)
{
    uint8_t key[KZ_KEY_BYTES], plain[KZ_GATE_ACCEPT_PLAIN_BYTES];
    if (len != KZ_GATE_ACCEPT_BYTES)
        return KZ_EAGAIN;
    crypto_kdf_derive_from_key(key, sizeof key, KZ_KDF_ID_GATE, KZ_KDF_CONTEXT,
                               h->token.keys.server_to_client);
    const uint8_t *nonce = d + KZ_GATE_HEADER_BYTES;
    int rc = crypto_aead_xchacha20poly1305_ietf_decrypt(
        plain, NULL, NULL, nonce + KZ_GATE_ACCEPT_NONCE_BYTES,
        KZ_GATE_ACCEPT_PLAIN_BYTES + KZ_AEAD_TAG_BYTES, d, KZ_GATE_HEADER_BYTES, nonce, key);
    sodium_memzero(key, sizeof key);
    if (rc != 0)
        return KZ_EAGAIN;
    const uint8_t *p = plain, *end = plain + sizeof plain;
    uint8_t reserved;
    uint16_t lo, hi;
    /* The plaintext has a fixed size, so these reads cannot run short; the
     * check is kept because the code must not rely on that silently. */
    if (!kz__get_u64(&p, end, &h->session_id) || !kz__get_u8(&p, end, &h->alg) ||
        !kz__get_u8(&p, end, &reserved) || !kz__get_u16(&p, end, &h->port) ||
        !kz__get_u16(&p, end, &lo) || !kz__get_u16(&p, end, &hi) ||
        !kz__get_u16(&p, end, &h->timeout_seconds))
        return KZ_EAGAIN;
    h->slot = (uint32_t)lo | (uint32_t)hi << 16;
    if ((h->alg != KZ_AEAD_CHACHA20 && h->alg != KZ_AEAD_AES256GCM) ||
        !(h->aead_mask & (h->alg == KZ_AEAD_CHACHA20 ? KZ_AEAD_BIT_CHACHA20
                                                      : KZ_AEAD_BIT_AES256GCM)))
        return KZ_EAGAIN; /* authentic but asks for a cipher we did not offer */
    h->state = KZ_HS_ACCEPTED;
    return KZ_OK;
}

int kz__handshake_receive(kz__handshake *h, const uint8_t *d, size_t len)
{
    if (h->state != KZ_HS_REQUESTING || len < KZ_GATE_HEADER_BYTES || d[0] != KZ_GATE_MARK0 ||
        d[1] != KZ_GATE_MARK1 || d[3] != KZ_PROTOCOL_VERSION)
        return KZ_EAGAIN;
    switch (d[2]) {
    case KZ_GATE_CHALLENGE:
        if (len != KZ_GATE_CHALLENGE_BYTES)
            return KZ_EAGAIN;
        memcpy(h->cookie, d + KZ_GATE_HEADER_BYTES, KZ_COOKIE_BYTES);
        h->has_cookie = 1;
        return KZ_OK;
    case KZ_GATE_ACCEPT:
        return kz__handshake_accept(h, d, len);
    case KZ_GATE_DENY:
        /* Unauthenticated: recorded for the caller, who keeps retrying
         * until its own timeout (an on-path forger could send it). */
        if (len != KZ_GATE_DENY_BYTES)
            return KZ_EAGAIN;
        h->deny_reason = d[KZ_GATE_HEADER_BYTES];
        return KZ_OK;
    default:
        return KZ_EAGAIN;
    }
}
