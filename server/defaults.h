/*
 * Defaults of the kizuna-server program that several commands must agree
 * on: the token minter writes them and the server (later, its
 * configuration) expects them. Kept in one place so the two cannot drift.
 * Library-wide limits stay in net/include/kizuna/protocol.h.
 */
#ifndef KZS_DEFAULTS_H
#define KZS_DEFAULTS_H

#include <stdint.h>

/* The program name every message starts with. */
#define KZS_PROGRAM "kizuna-server"

/*
 * The protocol id tokens carry unless told otherwise: the ASCII bytes
 * "KIZUNA" followed by a 16-bit application number, 1. An application
 * built on Kizuna should choose its own, so that its tokens are refused
 * (bad_protocol) by another application's servers.
 */
#define KZ_DEFAULT_PROTOCOL_ID UINT64_C(0x4B495A554E410001)

/* Token lifetime when --ttl is not given, in seconds. The ceiling is
 * KZ_TOKEN_MAX_TTL_SECONDS. */
#define KZS_DEFAULT_TOKEN_TTL_SECONDS 3600u

/* Idle timeout a token asks the session to use, in seconds. */
#define KZS_DEFAULT_TIMEOUT_SECONDS 10u

/* Role given to a client when --roles is not given. */
#define KZS_DEFAULT_ROLE "visitor"

/* Verification method meaning "not verified". */
#define KZS_METHOD_NONE "none"

/* Largest Unix time accepted on the command line: 9999-12-31T23:59:59Z, so
 * that now + ttl never wraps and always formats as ISO-8601. */
#define KZS_MAX_UNIX_TIME UINT64_C(253402300799)

#endif /* KZS_DEFAULTS_H */
