/*
 * A verified token's claims as bytes: every field of kz_token_info but
 * the keys, in the token's own layout (docs/PROTOCOL.md section 2) up to
 * the sealed keys. An edge forwards these to its world's authority
 * (docs/SCALING.md, JOIN); nothing here is signed or secret. Internal.
 */
#ifndef KZ_NET_TOKEN_CLAIMS_H
#define KZ_NET_TOKEN_CLAIMS_H

#include <stddef.h>

#include <kizuna/token.h>

/* Bytes written, or 0 when `cap` is too small or `t` fails
 * kz_token_info_check. */
size_t kz__token_claims_write(const kz_token_info *t, uint8_t *out, size_t cap);
/* 0 and *t, or KZ_EINVAL: malformed, trailing bytes, or refused by
 * kz_token_info_check. */
int kz__token_claims_read(const uint8_t *buf, size_t len, kz_token_info *t);

#endif /* KZ_NET_TOKEN_CLAIMS_H */
