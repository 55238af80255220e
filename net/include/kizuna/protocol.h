/*
 * Every constant of Kizuna's wire protocol, in one place. Sizes are derived
 * from one another so that changing a limit changes every size built on it;
 * the static assertions at the end check the derivations that matter for
 * security (every gate reply smaller than the request that caused it, every
 * datagram within the MTU).
 *
 * docs/PROTOCOL.md is the prose specification of what these numbers mean.
 * Byte order on the wire is little-endian throughout.
 */
#ifndef KZ_PROTOCOL_H
#define KZ_PROTOCOL_H

#include <stdint.h>

/* ---- versions and framing ---------------------------------------------- */

#define KZ_PROTOCOL_VERSION 1u

/* Largest UDP payload Kizuna ever sends: fits the IPv6 minimum MTU (1280)
 * minus IPv6 and UDP headers with room to spare. ENet's MTU is set to it. */
#define KZ_MTU 1200u

/* ---- key and primitive sizes (libsodium) -------------------------------- */

#define KZ_KEY_BYTES 32u              /* AEAD key, either algorithm */
#define KZ_AEAD_TAG_BYTES 16u         /* Poly1305 / GCM tag */
#define KZ_SIGN_PUBLIC_KEY_BYTES 32u  /* Ed25519 */
#define KZ_SIGN_SECRET_KEY_BYTES 64u
#define KZ_SIGNATURE_BYTES 64u
#define KZ_BOX_PUBLIC_KEY_BYTES 32u   /* X25519 */
#define KZ_BOX_SECRET_KEY_BYTES 32u
#define KZ_SEAL_OVERHEAD_BYTES 48u    /* crypto_box_seal: ephemeral pk + tag */

/* ---- connect token ------------------------------------------------------ */

#define KZ_TOKEN_MAGIC "KZT1"          /* 4 bytes, no terminator on the wire */
#define KZ_TOKEN_NONCE_BYTES 16u
#define KZ_TOKEN_MAX_ADDRESSES 8u
#define KZ_TOKEN_NAME_MAX 32u          /* display name, UTF-8 bytes */
#define KZ_TOKEN_MAX_ROLES 8u
#define KZ_TOKEN_ROLE_MAX 16u          /* role name bytes, [a-z0-9_-] */
#define KZ_TOKEN_MAX_ZONES 12u
#define KZ_TOKEN_ZONE_MAX 24u          /* zone name bytes, [a-z0-9_-] */
#define KZ_TOKEN_METHOD_MAX 48u        /* verification method, printable ASCII */
#define KZ_TOKEN_MAX_TTL_SECONDS (7u * 24u * 3600u)

/* Address entry: family (1), address (16, IPv4 in the first 4), port (2). */
#define KZ_ADDRESS_BYTES (1u + 16u + 2u)

/* Session keys sealed to the server: client-to-server then server-to-client. */
#define KZ_TOKEN_KEYS_BYTES (2u * KZ_KEY_BYTES)
#define KZ_TOKEN_SEALED_KEYS_BYTES (KZ_TOKEN_KEYS_BYTES + KZ_SEAL_OVERHEAD_BYTES)

/* Fixed header: magic 4, version 2, flags 2, protocol id 8, create 8,
 * expire 8, nonce, server id 8, timeout 2, address count 1. */
#define KZ_TOKEN_HEADER_BYTES (4u + 2u + 2u + 8u + 8u + 8u + KZ_TOKEN_NONCE_BYTES + 8u + 2u + 1u)

/* Identity: client id 8, avatar id 8, name (1 + max), role count 1 +
 * roles (1 + max each), zone count 1 + zones (1 + max each), verification
 * level 1, method (1 + max), actor kind 1, acting-for 8. */
#define KZ_TOKEN_IDENTITY_MAX_BYTES                                            \
    (8u + 8u + (1u + KZ_TOKEN_NAME_MAX) + 1u +                                 \
     KZ_TOKEN_MAX_ROLES * (1u + KZ_TOKEN_ROLE_MAX) + 1u +                      \
     KZ_TOKEN_MAX_ZONES * (1u + KZ_TOKEN_ZONE_MAX) + 1u +                      \
     (1u + KZ_TOKEN_METHOD_MAX) + 1u + 8u)

#define KZ_TOKEN_MIN_BYTES \
    (KZ_TOKEN_HEADER_BYTES + KZ_ADDRESS_BYTES + 8u + 8u + 1u + 1u + 1u + 1u + 1u + 1u + 8u + \
     KZ_TOKEN_SEALED_KEYS_BYTES + KZ_SIGNATURE_BYTES)
#define KZ_TOKEN_MAX_BYTES                                                      \
    (KZ_TOKEN_HEADER_BYTES + KZ_TOKEN_MAX_ADDRESSES * KZ_ADDRESS_BYTES +        \
     KZ_TOKEN_IDENTITY_MAX_BYTES + KZ_TOKEN_SEALED_KEYS_BYTES + KZ_SIGNATURE_BYTES)

/* Verification levels (token claim). */
#define KZ_VERIFY_NONE 0u     /* anonymous */
#define KZ_VERIFY_BASIC 1u    /* e-mail, phone or a federated login */
#define KZ_VERIFY_STRONG 2u   /* identity document, eKYC, national ID card */
#define KZ_VERIFY_MAX KZ_VERIFY_STRONG

/* Actor kinds (token claim). An agent must name whom it acts for. */
#define KZ_ACTOR_HUMAN 0u
#define KZ_ACTOR_AGENT 1u
#define KZ_ACTOR_BOT 2u
#define KZ_ACTOR_MAX KZ_ACTOR_BOT

/* Address families in tokens. */
#define KZ_ADDR_IPV4 4u
#define KZ_ADDR_IPV6 6u

/* ---- key derivation ----------------------------------------------------- */

/* Each direction's 32-byte session key is a master key; libsodium's
 * crypto_kdf derives from it one subkey per use, so no key ever serves two
 * algorithms. Context is 8 bytes. */
#define KZ_KDF_CONTEXT "kizuna01"
#define KZ_KDF_ID_DATA 1u   /* sealed application packets */
#define KZ_KDF_ID_GATE 2u   /* gate replies (accept, deny) */

#endif /* KZ_PROTOCOL_H */
