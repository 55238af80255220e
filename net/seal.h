/*
 * Sealed packets (internal to net/): AEAD protection of every application
 * packet after the handshake.
 *
 * Wire form:  type (1) | sequence (8, LE) | ciphertext | tag (16)
 * Nonce:      sequence (8, LE) | 0 0 0 0        (12 bytes)
 * AD:         type (1) | session id (8, LE) | protocol version (1)
 *
 * Each direction has its own key (derived from the token's per-direction
 * master key with crypto_kdf, id KZ_KDF_ID_DATA), so a sequence number is
 * never used twice under one key: the sender's counter only goes up, and
 * sealing stops with KZ_EEXPIRED once sequence UINT64_MAX has been used.
 * The algorithm is ChaCha20-Poly1305 (IETF) or AES-256-GCM; the server
 * picks AES-256-GCM when both ends have AES-NI (see docs/PROTOCOL.md).
 *
 * Opening checks, in order: size, replay window (cheap, before any
 * cryptography), authentication and decryption, then the replay window is
 * updated. A packet that fails leaves the window unchanged and no plaintext
 * behind.
 */
#ifndef KZ_NET_SEAL_H
#define KZ_NET_SEAL_H

#include <sodium.h>

#include <kizuna/protocol.h>

#include "replay.h"

#define KZ_AEAD_CHACHA20 1u
#define KZ_AEAD_AES256GCM 2u

#define KZ_SEAL_HEADER_BYTES (1u + 8u)
#define KZ_SEAL_OVERHEAD (KZ_SEAL_HEADER_BYTES + KZ_AEAD_TAG_BYTES)

typedef struct kz__seal {
    /* libsodium wants the precomputed AES state 16-byte aligned; the
     * structure is only ever allocated by Kizuna (session pools, tests). */
    crypto_aead_aes256gcm_state aes;
    uint8_t key[KZ_KEY_BYTES];
    uint64_t session_id;
    uint64_t next_seq;    /* sender: next sequence to use */
    uint32_t exhausted;   /* sender: sequence UINT64_MAX was used */
    uint8_t alg;
} kz__seal;

/* 1 when this CPU runs AES-256-GCM in hardware (libsodium's check). */
int kz__aead_aes_available(void);

/* Derives the data key for one direction from its master key and prepares
 * the cipher. alg: KZ_AEAD_*. Returns 0, KZ_EINVAL (unknown alg, or AES
 * without hardware support) or KZ_EIO. */
int kz__seal_init(kz__seal *s, const uint8_t master[KZ_KEY_BYTES], uint8_t alg,
                  uint64_t session_id);
/* Wipes the keys. */
void kz__seal_fini(kz__seal *s);

/* Seals `plain` as a packet of `type` with the next sequence number into
 * out[0..n + KZ_SEAL_OVERHEAD). Returns 0, KZ_EOVERFLOW (cap too small),
 * or KZ_EEXPIRED (nonce space used up: the session must end). */
int kz__seal_packet(kz__seal *s, uint8_t type, const uint8_t *plain, size_t n, uint8_t *out,
                    size_t cap, size_t *out_len);

/* Opens a packet sealed by the peer's kz__seal for this direction.
 * Returns 0 with *type and plain[0..*plain_len), or KZ_EPROTO (too short),
 * KZ_EOVERFLOW (cap too small), KZ_EREPLAY (seen or too old), KZ_EAUTH
 * (forged, corrupted, wrong key or session). `plain` must not overlap
 * `pkt`. On failure plain[0..cap) holds no plaintext. */
int kz__open_packet(const kz__seal *s, kz__replay *window, const uint8_t *pkt, size_t n,
                    uint8_t *type, uint8_t *plain, size_t cap, size_t *plain_len);

#endif /* KZ_NET_SEAL_H */
