/*
 * Internal: libsodium start-up and the choice of AEAD.
 */
#ifndef KZ_NET_CRYPTO_H
#define KZ_NET_CRYPTO_H

/* Initializes libsodium once per process (thread-safe, idempotent, cheap
 * after the first call). Returns 0 or KZ_EIO. */
int kz__crypto_init(void);

#endif /* KZ_NET_CRYPTO_H */
