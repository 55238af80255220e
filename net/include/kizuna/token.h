/*
 * Connect tokens: how a backend that verified a person (or an agent acting
 * for one) lets them into a Kizuna server.
 *
 * The backend mints a token with its Ed25519 secret key. The token carries,
 * in clear but signed: protocol id and version, create and expire times, a
 * nonce, the server id and addresses it is good for, and the identity the
 * server will enforce (client id, avatar id, display name, roles, allowed
 * zones, identity claims). It also carries the two per-direction session
 * keys, sealed to the server's X25519 public key (libsodium sealed box), so
 * only that server can read them; the backend hands the same keys to the
 * client beside the token, over its own authenticated channel. Servers hold
 * only the backend's public key: a stolen server cannot mint tokens.
 *
 * Times in tokens are Unix seconds (tokens cross machines, so they use wall
 * time); callers pass the current Unix time explicitly.
 *
 * Threading: all functions are reentrant; they share no state.
 * The wire layout is specified in docs/PROTOCOL.md, "Connect token".
 */
#ifndef KZ_TOKEN_H
#define KZ_TOKEN_H

#include <kizuna/common.h>
#include <kizuna/protocol.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An IPv4 or IPv6 endpoint. family: KZ_ADDR_IPV4 (first 4 bytes of ip) or
 * KZ_ADDR_IPV6; ip in network order; port in host order. */
typedef struct kz_address {
    uint8_t family;
    uint8_t ip[16];
    uint16_t port;
} kz_address;

/* Parses "1.2.3.4:5000", "[::1]:5000" or "localhost:5000" (numeric only,
 * plus "localhost" for 127.0.0.1). Returns 0 or KZ_EINVAL. */
KZ_API KZ_MUST_CHECK int kz_address_parse(const char *text, kz_address *out);
/* Writes "a.b.c.d:port" or "[v6]:port"; returns out. */
KZ_API char *kz_address_format(const kz_address *a, char *out, size_t cap);

/* The method of a claim that verified nothing (verification level
 * KZ_VERIFY_NONE); every other level names how the owner was verified. */
#define KZ_TOKEN_METHOD_NONE "none"

/* Who the avatar's owner is, as the backend verified it. Shown to others. */
typedef struct kz_claims {
    uint8_t verification_level;              /* KZ_VERIFY_* */
    uint8_t actor_kind;                      /* KZ_ACTOR_* */
    char method[KZ_TOKEN_METHOD_MAX + 1];    /* "ekyc-face", "oidc:<issuer>", "none" */
    uint64_t acting_for;                     /* principal client id; 0 = none */
} kz_claims;

/* Everything a token says, except the keys. Strings are NUL-terminated. */
typedef struct kz_token_info {
    uint64_t protocol_id;       /* the application's id; servers accept one */
    uint64_t create_time;       /* Unix seconds */
    uint64_t expire_time;       /* Unix seconds */
    uint8_t nonce[KZ_TOKEN_NONCE_BYTES];
    uint64_t server_id;
    uint16_t timeout_seconds;   /* a session silent this long ends (both ends);
                                   0 = 30 s, otherwise clamped to 2..600 */
    uint8_t n_addresses;
    kz_address addresses[KZ_TOKEN_MAX_ADDRESSES];
    uint64_t client_id;         /* non-zero */
    uint64_t avatar_id;         /* non-zero */
    char name[KZ_TOKEN_NAME_MAX + 1];
    uint8_t n_roles;
    char roles[KZ_TOKEN_MAX_ROLES][KZ_TOKEN_ROLE_MAX + 1];
    uint8_t n_zones;
    char zones[KZ_TOKEN_MAX_ZONES][KZ_TOKEN_ZONE_MAX + 1];
    kz_claims claims;
} kz_token_info;

/* The per-direction session keys (master keys; see protocol.h, KDF). */
typedef struct kz_session_keys {
    uint8_t client_to_server[KZ_KEY_BYTES];
    uint8_t server_to_client[KZ_KEY_BYTES];
} kz_session_keys;

/* Key pairs. */
typedef struct kz_sign_keypair {
    uint8_t public_key[KZ_SIGN_PUBLIC_KEY_BYTES];
    uint8_t secret_key[KZ_SIGN_SECRET_KEY_BYTES];
} kz_sign_keypair;

typedef struct kz_box_keypair {
    uint8_t public_key[KZ_BOX_PUBLIC_KEY_BYTES];
    uint8_t secret_key[KZ_BOX_SECRET_KEY_BYTES];
} kz_box_keypair;

/* Fresh random key pairs from the operating system's CSPRNG. 0 or KZ_EIO. */
KZ_API KZ_MUST_CHECK int kz_sign_keypair_generate(kz_sign_keypair *kp);
KZ_API KZ_MUST_CHECK int kz_box_keypair_generate(kz_box_keypair *kp);

/*
 * Checks that `info` is something a token may say: non-zero client and
 * avatar ids, 1..KZ_TOKEN_MAX_ADDRESSES addresses with known families and
 * non-zero ports, expire_time > create_time and a lifetime of at most
 * KZ_TOKEN_MAX_TTL_SECONDS, a display name of at most KZ_TOKEN_NAME_MAX
 * bytes that passes kz_utf8_name_problem (no controls, no invisible or
 * text-direction characters, single inner spaces), role and zone names of
 * [a-z0-9_-], a printable ASCII method, and consistent identity claims:
 *   - a known level and actor kind;
 *   - level KZ_VERIFY_NONE if and only if the method is
 *     KZ_TOKEN_METHOD_NONE (a level says how far the owner was verified,
 *     the method how: one without the other claims nothing checkable);
 *   - an agent names the principal it acts for (acting_for != 0), a human
 *     names none, a bot may name one (its operator);
 *   - no one acts for itself (acting_for != client_id).
 * Returns 0 or KZ_EINVAL; `why` (may be NULL) gets a static string naming
 * the first problem. Minting and parsing both apply it, so a token that
 * breaks a rule is refused as KZ_TOKEN_MALFORMED by every server.
 */
KZ_API KZ_MUST_CHECK int kz_token_info_check(const kz_token_info *info, const char **why);

/*
 * Mints a token for `info` (checked as above; info->nonce is ignored and a
 * random one used). Generates fresh session keys, returns them in *keys for
 * the backend to hand to the client, seals them to `server_box_pk`, and
 * signs with `backend_sk`. Writes the token to out[0..*out_len).
 * Returns 0, KZ_EINVAL, or KZ_EOVERFLOW (cap too small; KZ_TOKEN_MAX_BYTES
 * always suffices). On failure *keys and out hold nothing secret.
 */
KZ_API KZ_MUST_CHECK int kz_token_mint(const kz_token_info *info,
                                       const uint8_t backend_sk[KZ_SIGN_SECRET_KEY_BYTES],
                                       const uint8_t server_box_pk[KZ_BOX_PUBLIC_KEY_BYTES],
                                       kz_session_keys *keys, uint8_t *out, size_t cap,
                                       size_t *out_len);

/*
 * Parses a token's structure without any cryptography: every length, count,
 * character set and enumeration is checked, trailing bytes are refused.
 * This is the cheap first look of the gate. Returns 0 or KZ_EPROTO.
 * Fills *info (may be NULL). The keys are not touched.
 */
KZ_API KZ_MUST_CHECK int kz_token_parse(const uint8_t *buf, size_t len, kz_token_info *info);

/* Why a token was refused: one counter each at the gate. */
typedef enum kz_token_verdict {
    KZ_TOKEN_VALID = 0,
    KZ_TOKEN_MALFORMED,      /* structure, sizes, charsets */
    KZ_TOKEN_BAD_VERSION,    /* unknown protocol version */
    KZ_TOKEN_BAD_PROTOCOL,   /* another application's protocol id */
    KZ_TOKEN_EXPIRED,        /* expire_time <= now */
    KZ_TOKEN_NOT_YET_VALID,  /* created further in the future than the skew allows */
    KZ_TOKEN_WRONG_SERVER,   /* this server's id is not the token's, or none of the
                                token's addresses is one this server serves */
    KZ_TOKEN_BAD_SIGNATURE,  /* not signed by the backend key */
    KZ_TOKEN_BAD_KEYS,       /* sealed keys do not open with this server's key */
    KZ_TOKEN_VERDICT_COUNT
} kz_token_verdict;

KZ_API const char *kz_token_verdict_name(kz_token_verdict v);

#define KZ_TOKEN_MAX_BACKEND_KEYS 4u
/* Public addresses a verifier holds: IPv4 and IPv6 of a few interfaces. */
#define KZ_VERIFIER_MAX_ADDRESSES 16u
/* Clock skew tolerated on create_time when the verifier names none. */
#define KZ_TOKEN_DEFAULT_CLOCK_SKEW_SECONDS 60u

/*
 * What a server checks a token against. A token is accepted when any of
 * the trusted backend keys signed it, so a backend can rotate its key:
 * trust old and new, move the backend to the new one, then drop the old.
 * Each extra key costs one more signature check per refused token.
 *
 * Server addresses: a token names the addresses of the server it is for
 * (as netcode.io's do), and servers sharing one key pair share a server
 * id, so the id alone does not say which of them may take it. A verifier
 * with addresses refuses (KZ_TOKEN_WRONG_SERVER) every token none of whose
 * addresses is one of them: same family, IP and port, where an entry with
 * port 0 matches its IP at any port (for a server whose port is picked
 * when it starts). These are the addresses clients send their REQUESTs
 * to, as the backend wrote them: behind a NAT or a relay, the public
 * ones. With n_addresses 0 the address list is not checked: only for an
 * embedder whose server id names exactly one server (one key pair per
 * server); kizuna-server always fills the list (docs/OPERATIONS.md,
 * public_address).
 */
typedef struct kz_token_verifier {
    uint64_t protocol_id;
    uint64_t server_id;
    uint32_t max_clock_skew_seconds;  /* 0 = KZ_TOKEN_DEFAULT_CLOCK_SKEW_SECONDS */
    uint32_t n_backend_keys;          /* keys in backend_pk; 0 = 1 (only backend_pk[0]) */
    uint8_t backend_pk[KZ_TOKEN_MAX_BACKEND_KEYS][KZ_SIGN_PUBLIC_KEY_BYTES];
    kz_box_keypair server_keys;
    uint32_t n_addresses;             /* 0..KZ_VERIFIER_MAX_ADDRESSES; 0 = not checked */
    kz_address addresses[KZ_VERIFIER_MAX_ADDRESSES];
} kz_token_verifier;

/*
 * The cheap checks, no public-key work: structure (kz_token_info_check
 * included), version, protocol id, expiry against `now_unix`, server id
 * and server addresses. Returns the verdict; fills *info (may be NULL)
 * when the structure parsed. A verifier with more than
 * KZ_VERIFIER_MAX_ADDRESSES addresses is broken and accepts nothing
 * (KZ_TOKEN_WRONG_SERVER).
 */
KZ_API kz_token_verdict kz_token_precheck(const kz_token_verifier *v, const uint8_t *buf,
                                          size_t len, uint64_t now_unix, kz_token_info *info);

/*
 * The full check: kz_token_precheck, then the signature, then opening the
 * sealed keys. On KZ_TOKEN_VALID fills *info and *keys; on any other
 * verdict *keys is zeroed.
 */
KZ_API kz_token_verdict kz_token_verify(const kz_token_verifier *v, const uint8_t *buf,
                                        size_t len, uint64_t now_unix, kz_token_info *info,
                                        kz_session_keys *keys);

/*
 * What a client holds to connect: the token bytes and its session keys.
 * Encoded as a small file by kizuna-server token mint (docs/PROTOCOL.md,
 * "Client token file").
 */
typedef struct kz_connect_token {
    uint16_t token_len;
    uint8_t token[KZ_TOKEN_MAX_BYTES];
    kz_session_keys keys;
} kz_connect_token;

#define KZ_CONNECT_TOKEN_FILE_MAGIC "KZC1"
#define KZ_CONNECT_TOKEN_FILE_MAX_BYTES (4u + 2u + KZ_TOKEN_MAX_BYTES + KZ_TOKEN_KEYS_BYTES)

KZ_API KZ_MUST_CHECK int kz_connect_token_encode(const kz_connect_token *ct, uint8_t *out,
                                                 size_t cap, size_t *out_len);
/* Returns 0, or KZ_EPROTO when the bytes are not a well-formed file whose
 * token parses. */
KZ_API KZ_MUST_CHECK int kz_connect_token_decode(const uint8_t *buf, size_t len,
                                                 kz_connect_token *ct);

#ifdef __cplusplus
}
#endif

#endif /* KZ_TOKEN_H */
