#include "seal.h"

#include <string.h>

#include "bytes.h"
#include "crypto.h"

int kz__aead_aes_available(void)
{
    return kz__crypto_init() == KZ_OK && crypto_aead_aes256gcm_is_available();
}

/* The data key of one session and direction: the direction's data subkey,
 * then keyed BLAKE2b over the session id and the cipher. A token that opens
 * a second session (the same client reconnecting from the same address)
 * gets fresh keys, so sequence numbers restarting at 0 never repeat a nonce
 * under a key, and no key serves two ciphers. */
static void kz__seal_session_key(const uint8_t master[KZ_KEY_BYTES], uint8_t alg,
                                 uint64_t session_id, uint8_t out[KZ_KEY_BYTES])
{
    uint8_t sub[KZ_KEY_BYTES], msg[9];
    crypto_kdf_derive_from_key(sub, sizeof sub, KZ_KDF_ID_DATA, KZ_KDF_CONTEXT, master);
    kz__store_u64(msg, session_id);
    msg[8] = alg;
    crypto_generichash(out, KZ_KEY_BYTES, msg, sizeof msg, sub, sizeof sub);
    sodium_memzero(sub, sizeof sub);
}

int kz__seal_init(kz__seal *s, const uint8_t master[KZ_KEY_BYTES], uint8_t alg,
                  uint64_t session_id)
{
    memset(s, 0, sizeof *s);
    if (kz__crypto_init() != KZ_OK)
        return KZ_EIO;
    if (alg != KZ_AEAD_CHACHA20 && alg != KZ_AEAD_AES256GCM)
        return KZ_EINVAL;
    if (alg == KZ_AEAD_AES256GCM && !crypto_aead_aes256gcm_is_available())
        return KZ_EINVAL;
    kz__seal_session_key(master, alg, session_id, s->key);
    if (alg == KZ_AEAD_AES256GCM)
        crypto_aead_aes256gcm_beforenm(&s->aes, s->key);
    s->alg = alg;
    s->session_id = session_id;
    return KZ_OK;
}

void kz__seal_fini(kz__seal *s)
{
    sodium_memzero(s, sizeof *s);
}

/* Associated data: what the receiver must agree on besides the bytes. */
static void kz__seal_ad(const kz__seal *s, uint8_t type, uint8_t ad[10])
{
    ad[0] = type;
    kz__store_u64(ad + 1, s->session_id);
    ad[9] = (uint8_t)KZ_PROTOCOL_VERSION;
}

static void kz__seal_nonce(uint64_t seq, uint8_t nonce[12])
{
    kz__store_u64(nonce, seq);
    memset(nonce + 8, 0, 4);
}

int kz__seal_packet(kz__seal *s, uint8_t type, const uint8_t *plain, size_t n, uint8_t *out,
                    size_t cap, size_t *out_len)
{
    if (s->exhausted)
        return KZ_EEXPIRED;
    if (cap < KZ_SEAL_OVERHEAD || n > cap - KZ_SEAL_OVERHEAD)
        return KZ_EOVERFLOW;
    uint64_t seq = s->next_seq;
    uint8_t ad[10], nonce[12];
    kz__seal_ad(s, type, ad);
    kz__seal_nonce(seq, nonce);
    out[0] = type;
    kz__store_u64(out + 1, seq);
    uint8_t *ct = out + KZ_SEAL_HEADER_BYTES, *tag = ct + n;
    if (s->alg == KZ_AEAD_AES256GCM)
        crypto_aead_aes256gcm_encrypt_detached_afternm(ct, tag, NULL, plain, n, ad, sizeof ad,
                                                       NULL, nonce, &s->aes);
    else
        crypto_aead_chacha20poly1305_ietf_encrypt_detached(ct, tag, NULL, plain, n, ad,
                                                           sizeof ad, NULL, nonce, s->key);
    /* Never reuse a nonce: after UINT64_MAX there is no next one. */
    if (seq == UINT64_MAX)
        s->exhausted = 1;
    else
        s->next_seq = seq + 1;
    *out_len = n + KZ_SEAL_OVERHEAD;
    return KZ_OK;
}

int kz__open_packet(const kz__seal *s, kz__replay *window, const uint8_t *pkt, size_t n,
                    uint8_t *type, uint8_t *plain, size_t cap, size_t *plain_len)
{
    if (n < KZ_SEAL_OVERHEAD)
        return KZ_EPROTO;
    size_t body = n - KZ_SEAL_OVERHEAD;
    if (body > cap)
        return KZ_EOVERFLOW;
    uint64_t seq = kz__load_u64(pkt + 1);
    /* Refuse replays before spending any cryptography on them. */
    if (kz__replay_check(window, seq) != KZ_OK)
        return KZ_EREPLAY;
    uint8_t ad[10], nonce[12];
    kz__seal_ad(s, pkt[0], ad);
    kz__seal_nonce(seq, nonce);
    const uint8_t *ct = pkt + KZ_SEAL_HEADER_BYTES, *tag = ct + body;
    int rc;
    if (s->alg == KZ_AEAD_AES256GCM)
        rc = crypto_aead_aes256gcm_decrypt_detached_afternm(plain, NULL, ct, body, tag, ad,
                                                            sizeof ad, nonce, &s->aes);
    else
        rc = crypto_aead_chacha20poly1305_ietf_decrypt_detached(plain, NULL, ct, body, tag, ad,
                                                                sizeof ad, nonce, s->key);
    if (rc != 0) {
        sodium_memzero(plain, cap);
        return KZ_EAUTH;
    }
    kz__replay_update(window, seq);
    *type = pkt[0];
    *plain_len = body;
    return KZ_OK;
}
