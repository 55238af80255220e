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

/* 2: keyed MAC in ENet's checksum field; 3: snapshot bodies may name an
 * older view and predict head and hand poses to second order. */
#define KZ_PROTOCOL_VERSION 3u

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

/* Smallest: one address, a 1-byte name, no roles or zones, a 1-byte method. */
#define KZ_TOKEN_MIN_BYTES \
    (KZ_TOKEN_HEADER_BYTES + KZ_ADDRESS_BYTES + 8u + 8u + (1u + 1u) + 1u + 1u + 1u + (1u + 1u) + 1u + 8u + \
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
 * purposes. Context is 8 bytes. The data key of a session is further bound
 * to its session id and cipher (see seal.c), because a token may open more
 * than one session from the same address. */
#define KZ_KDF_CONTEXT "kizuna01"
#define KZ_KDF_ID_DATA 1u     /* sealed application packets (then per session) */
#define KZ_KDF_ID_GATE 2u     /* gate ACCEPT, under the server-to-client key */
#define KZ_KDF_ID_REQUEST 3u  /* REQUEST proof of key possession, client-to-server key */
#define KZ_KDF_ID_ENET_MAC 4u /* MAC in ENet's checksum field, each direction (then per session) */
#define KZ_KDF_ID_RESUME 5u   /* RESUME proof of key possession, client-to-server key */

/* ---- gate (handshake datagrams, before ENet) ---------------------------- */

/* Every gate datagram starts with these two bytes. 0xFF as the first byte
 * sets ENet's "compressed" header flag, which Kizuna's ENet hosts never use,
 * so a gate datagram can never be a valid ENet datagram and vice versa. */
#define KZ_GATE_MARK0 0xFFu
#define KZ_GATE_MARK1 0x4Bu   /* 'K' */
/* Mark (2), type (1), protocol version (1). */
#define KZ_GATE_HEADER_BYTES 4u

#define KZ_GATE_REQUEST 1u    /* client -> server: token, maybe a cookie */
#define KZ_GATE_CHALLENGE 2u  /* server -> client: a cookie */
#define KZ_GATE_ACCEPT 3u     /* server -> client: sealed session parameters */
#define KZ_GATE_DENY 4u       /* server -> client: reason, unauthenticated */
#define KZ_GATE_RESUME 5u     /* client -> server: move a session to this address */
#define KZ_GATE_RESUMED 6u    /* server -> client: sealed, the session is on this path */

/* Cookie: time bucket (8) and a 16-byte keyed BLAKE2b MAC of the source
 * address and the bucket. Valid for the current and the previous bucket. */
#define KZ_COOKIE_MAC_BYTES 16u
#define KZ_COOKIE_BYTES (8u + KZ_COOKIE_MAC_BYTES)
#define KZ_COOKIE_PERIOD_SECONDS 10u

/* Request: header, AEAD algorithms the client supports (1), reserved (1),
 * token length (2), cookie (zero on the first try), proof (a MAC of the
 * cookie and the token's signature under a key derived from the
 * client-to-server key: only the holder of the keys can use the token from
 * its own address), token, zero padding to the fixed size. Fixed size so
 * that every reply is smaller than it. */
#define KZ_REQUEST_PROOF_BYTES 16u
#define KZ_GATE_REQUEST_FIXED_BYTES \
    (KZ_GATE_HEADER_BYTES + 1u + 1u + 2u + KZ_COOKIE_BYTES + KZ_REQUEST_PROOF_BYTES)
#define KZ_GATE_REQUEST_BYTES (KZ_GATE_REQUEST_FIXED_BYTES + KZ_TOKEN_MAX_BYTES)

#define KZ_GATE_CHALLENGE_BYTES (KZ_GATE_HEADER_BYTES + KZ_COOKIE_BYTES)

/* Accept: header, 24-byte nonce, then sealed with XChaCha20-Poly1305 under
 * the server-to-client gate key: session id (8), AEAD algorithm (1),
 * reserved (1), ENet port (2), client slot (4), idle timeout seconds (2). */
#define KZ_GATE_ACCEPT_NONCE_BYTES 24u
#define KZ_GATE_ACCEPT_PLAIN_BYTES (8u + 1u + 1u + 2u + 4u + 2u)
#define KZ_GATE_ACCEPT_BYTES \
    (KZ_GATE_HEADER_BYTES + KZ_GATE_ACCEPT_NONCE_BYTES + KZ_GATE_ACCEPT_PLAIN_BYTES + KZ_AEAD_TAG_BYTES)

/* Deny: header, reason (1). */
#define KZ_GATE_DENY_BYTES (KZ_GATE_HEADER_BYTES + 1u)
#define KZ_DENY_SERVER_FULL 1u
#define KZ_DENY_TOKEN_IN_USE 2u     /* token already used from another address */
#define KZ_DENY_CLIENT_IN_USE 3u    /* client id already connected */
#define KZ_DENY_SHUTTING_DOWN 4u    /* the server is stopping and takes no one new */
#define KZ_DENY_UNAVAILABLE 5u      /* the server takes no one new for now (its audit
                                       log cannot be written); try again later */
#define KZ_DENY_NO_SESSION 6u       /* RESUME: no live session holds this ticket */
#define KZ_DENY_REPLACING 7u        /* REQUEST: the token's old session is being ended
                                       for this one; ask again in a moment */

/* Resume (docs/PROTOCOL.md, "Resume"). A ticket names one session and one
 * path of it: slot (4), path number (4), session id (8), random secret
 * (16). The server gives it over the sealed channel (the TICKET message)
 * and again in every RESUMED; each move of the session to a new address
 * uses it up. */
#define KZ_TICKET_BYTES 32u
#define KZ_RESUME_PROOF_BYTES 16u
/* RESUME: header, reserved (4), cookie (24), ticket (32), proof (16), zero
 * padding to the fixed size. The proof is BLAKE2b-128 keyed with
 * KDF(client-to-server key, KZ_KDF_ID_RESUME) of the 64 bytes before it. */
#define KZ_GATE_RESUME_FIXED_BYTES \
    (KZ_GATE_HEADER_BYTES + 4u + KZ_COOKIE_BYTES + KZ_TICKET_BYTES + KZ_RESUME_PROOF_BYTES)
#define KZ_GATE_RESUME_BYTES 128u
/* A CHALLENGE or DENY answering a RESUME: the usual datagram, then the
 * RESUME's 16-byte proof, echoed (a blind spoofer cannot make one). */
#define KZ_GATE_RESUME_CHALLENGE_BYTES (KZ_GATE_CHALLENGE_BYTES + KZ_RESUME_PROOF_BYTES)
#define KZ_GATE_RESUME_DENY_BYTES (KZ_GATE_DENY_BYTES + KZ_RESUME_PROOF_BYTES)
/* RESUMED: header, 24-byte nonce, then the next ticket sealed with
 * XChaCha20-Poly1305 under the server-to-client gate key (associated data:
 * the header). */
#define KZ_GATE_RESUMED_BYTES \
    (KZ_GATE_HEADER_BYTES + KZ_GATE_ACCEPT_NONCE_BYTES + KZ_TICKET_BYTES + KZ_AEAD_TAG_BYTES)
/* The TICKET message (sealed, event channel, server to client): ticket (32)
 * and the grace in milliseconds (u32) the server holds a silent session. */
#define KZ_MSG_TICKET 12u
#define KZ_TICKET_MSG_BYTES (KZ_TICKET_BYTES + 4u)
#define KZ_RESUME_DEFAULT_GRACE_MS 15000u
#define KZ_RESUME_GRACE_MIN_MS 1000u
#define KZ_RESUME_GRACE_MAX_MS 600000u
/* With resume on, both ends' ENet timeout is at least the grace plus this,
 * so the grace (not ENet) decides when a silent session ends. */
#define KZ_RESUME_TIMEOUT_MARGIN_MS 5000u
/* The kick reason (ENet DISCONNECT data) of a session a newer connect of
 * the same client replaced (kizuna/server.h lists the others). */
#define KZ_KICK_REPLACED 5u
/* A session silent this long is detached: its avatar stands still. */
#define KZ_DETACH_SILENCE_MS 2000u

/* AEAD algorithm bits in the request; the server picks one. */
#define KZ_AEAD_BIT_CHACHA20 0x01u
#define KZ_AEAD_BIT_AES256GCM 0x02u

/* Largest application message (before sealing) and the ENet limits derived
 * from it: nothing a peer sends can make ENet buffer more than this. */
#define KZ_MAX_MESSAGE_BYTES 4096u
#define KZ_ENET_MAX_PACKET_BYTES (KZ_MAX_MESSAGE_BYTES + 1u + 8u + KZ_AEAD_TAG_BYTES)
#define KZ_ENET_MAX_WAITING_BYTES (32u * KZ_ENET_MAX_PACKET_BYTES)

/* ---- checks of the derivations ------------------------------------------ */

/* C11 spells it _Static_assert, C++11 static_assert. */
#ifdef __cplusplus
#define KZ__STATIC_ASSERT static_assert
#else
#define KZ__STATIC_ASSERT _Static_assert
#endif

KZ__STATIC_ASSERT(KZ_GATE_REQUEST_BYTES <= KZ_MTU, "a gate request must fit one datagram");
KZ__STATIC_ASSERT(KZ_GATE_CHALLENGE_BYTES < KZ_GATE_REQUEST_BYTES, "challenge must not amplify");
KZ__STATIC_ASSERT(KZ_GATE_ACCEPT_BYTES < KZ_GATE_REQUEST_BYTES, "accept must not amplify");
KZ__STATIC_ASSERT(KZ_GATE_DENY_BYTES < KZ_GATE_REQUEST_BYTES, "deny must not amplify");
KZ__STATIC_ASSERT(KZ_GATE_RESUME_FIXED_BYTES <= KZ_GATE_RESUME_BYTES, "resume fields fit");
KZ__STATIC_ASSERT(KZ_GATE_RESUMED_BYTES < KZ_GATE_RESUME_BYTES, "resumed must not amplify");
KZ__STATIC_ASSERT(KZ_GATE_RESUME_CHALLENGE_BYTES < KZ_GATE_RESUME_BYTES,
                  "challenge must not amplify");
KZ__STATIC_ASSERT(KZ_GATE_RESUME_DENY_BYTES < KZ_GATE_RESUME_BYTES, "deny must not amplify");
KZ__STATIC_ASSERT(KZ_TOKEN_MAX_BYTES < 65536u, "token length fits its 16-bit field");

#endif /* KZ_PROTOCOL_H */
