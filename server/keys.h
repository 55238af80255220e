/*
 * Key files of kizuna-server: the four files `kizuna-server keygen` writes
 * into a keys directory, their text format, and the server id derived from
 * the server's public key.
 *
 *   backend.key  Ed25519 secret key (64 bytes), mode 0600. Mints tokens;
 *                belongs on the backend only, never on a game server.
 *   backend.pub  Ed25519 public key (32 bytes), mode 0644. Servers check
 *                token signatures with it.
 *   server.key   X25519 secret key (32 bytes), mode 0600. Opens the session
 *                keys sealed inside tokens; belongs on the server.
 *   server.pub   X25519 public key (32 bytes), mode 0644. The backend seals
 *                session keys to it; the server id is derived from it.
 *   audit.key    Ed25519 secret key (64 bytes), mode 0600. Signs the audit
 *                log's checkpoints; belongs on the server. Written only by
 *                `keygen --audit` (a separate pair, because server.key is an
 *                X25519 box key and cannot sign).
 *   audit.pub    Ed25519 public key (32 bytes), mode 0644. `audit verify
 *                --pubkey` checks checkpoints with it.
 *
 * Each file is three lines of ASCII, every line ending in "\n":
 *
 *   kizuna <kind> v1             kind: backend-secret-key, backend-public-key,
 *                                server-secret-key, server-public-key,
 *                                audit-secret-key, audit-public-key
 *   <key as lowercase hex>       exactly 2 * size characters of [0-9a-f]
 *   check <8 lowercase hex>      first 4 bytes of BLAKE2b-256 over the first
 *                                line (without "\n") followed by the key bytes
 *
 * Nothing else is accepted: no blank lines, no "\r", no uppercase, no
 * trailing bytes. The check line catches a changed or truncated file that
 * would otherwise still be well-formed hex.
 *
 * Who may change or read a key file (the loaders, kzs_key_load and
 * kzs_key_load_file, in the spirit of OpenSSH's StrictModes): the file and
 * the directory it is read from (the keys directory, or the directory of a
 * path given by name) must each be owned by this process's effective user
 * or by root, and writable by nobody else: neither group nor other mode
 * bits, nor a group or another user named in a POSIX ACL. A secret key
 * must also be readable by nobody else. A key file that is a symbolic link
 * is refused (opened with O_NOFOLLOW): only the file in the checked
 * directory is trusted. A directory reached through a symbolic link is
 * followed, and the directory it leads to is the one checked. Everything
 * is checked on the descriptors the key is then read from (fstat, and the
 * file opened relative to the checked directory), so nothing can be
 * swapped between the check and the read. systemd's credentials directory
 * passes: root-owned 0400 files with an ACL entry for the service's user
 * (mode shown as 0440) in a 0500 directory, or files and directory owned
 * by that user. kzs_keys_set_perms(KZS_KEY_PERMS_WARN) turns every such
 * refusal into a warning (kizuna-server run's insecure_key_permissions).
 *
 * Errors: the pure functions (encode, decode, server id) return codes and
 * static reasons; the file functions print "kizuna-server: <path>: <reason>"
 * to stderr themselves and return -1. Secrets read or written here are wiped
 * from every intermediate buffer with sodium_memzero.
 *
 * Threading: single-threaded program code.
 */
#ifndef KZS_KEYS_H
#define KZS_KEYS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <kizuna/token.h>

typedef enum kzs_key_kind {
    KZS_KEY_BACKEND_SECRET = 0,  /* backend.key */
    KZS_KEY_BACKEND_PUBLIC,      /* backend.pub */
    KZS_KEY_SERVER_SECRET,       /* server.key */
    KZS_KEY_SERVER_PUBLIC,       /* server.pub */
    KZS_KEY_AUDIT_SECRET,        /* audit.key */
    KZS_KEY_AUDIT_PUBLIC,        /* audit.pub */
    KZS_KEY_KIND_COUNT
} kzs_key_kind;

/* Largest key, and largest key file (header + hex + check line). */
#define KZS_KEY_MAX_BYTES KZ_SIGN_SECRET_KEY_BYTES
#define KZS_KEY_FILE_MAX_BYTES 256u
/* Longest path the program builds (directory + "/" + file name). */
#define KZS_PATH_MAX 4096u

/* Where messages go: fn(ctx, "<path>: <text>") instead of stderr with the
 * program prefix; NULL restores stderr. A running server sends them to its
 * JSON log while it reloads. */
typedef void (*kzs_report_fn)(void *ctx, const char *line);
void kzs_keys_set_report(kzs_report_fn fn, void *ctx);

/* What the loaders do with a key file or directory that breaks the
 * ownership and permission rules above. */
typedef enum kzs_key_perms {
    KZS_KEY_PERMS_REFUSE = 0, /* default: the load fails, naming the problem */
    KZS_KEY_PERMS_WARN        /* the key loads; each problem is reported */
} kzs_key_perms;

/* Sets the rule for every later load in this process (the default is
 * KZS_KEY_PERMS_REFUSE). */
void kzs_keys_set_perms(kzs_key_perms perms);

/* File name inside a keys directory ("backend.key", ...). */
const char *kzs_key_file_name(kzs_key_kind kind);
/* The header line without its newline ("kizuna backend-secret-key v1"). */
const char *kzs_key_header(kzs_key_kind kind);
/* Size of the key in bytes (64 or 32). */
size_t kzs_key_bytes(kzs_key_kind kind);
/* 1 for the two secret kinds (written 0600), 0 for public ones (0644). */
int kzs_key_is_secret(kzs_key_kind kind);

/*
 * Writes the file text for `key` (kzs_key_bytes(kind) bytes) into
 * out[KZS_KEY_FILE_MAX_BYTES], NUL-terminated; returns its length without
 * the NUL. For secret kinds the caller wipes `out` after use.
 */
size_t kzs_key_encode(kzs_key_kind kind, const uint8_t *key, char out[KZS_KEY_FILE_MAX_BYTES]);

/*
 * Parses file text strictly (format above). On success returns 0 and fills
 * key[kzs_key_bytes(kind)]. On failure returns KZ_EPROTO, sets *why to a
 * static sentence naming the first problem, and zeroes `key`.
 */
KZ_MUST_CHECK int kzs_key_decode(kzs_key_kind kind, const char *text, size_t len, uint8_t *key,
                                 const char **why);

/*
 * The server id tokens are bound to: the first 8 bytes, read little-endian,
 * of BLAKE2b-256("kizuna-server-id" || server_pk), where the prefix is those
 * 16 ASCII bytes without a terminator. One fact (server.pub) names the
 * server, so no separate id file can fall out of step with the keys.
 */
uint64_t kzs_server_id(const uint8_t server_pk[KZ_BOX_PUBLIC_KEY_BYTES]);

/* Writes dir + "/" + name into out[KZS_PATH_MAX]; -1 (printed) if too long. */
int kzs_path_join(const char *dir, const char *name, char out[KZS_PATH_MAX]);

/*
 * Reads a whole regular file of at most `cap` bytes into buf; *len gets its
 * size and *mode (may be NULL) its permission bits. Returns 0, or -1 after
 * printing why (cannot open, not a regular file, larger than cap). No
 * ownership or permission rule applies: this is for files that are not
 * keys (client token files). A FIFO or device is refused, not waited on.
 */
int kzs_file_read(const char *path, uint8_t *buf, size_t cap, size_t *len, mode_t *mode);

/*
 * Writes `len` bytes to `path` with permission bits exactly `mode`, synced
 * to disk. replace == 0: the file must not exist (O_CREAT|O_EXCL, created
 * with `mode` from the start, so a secret is never readable by others even
 * for a moment). replace != 0: written to a temporary file in the same
 * directory, created 0600, then renamed over `path` atomically; readers
 * see the old file or the new one, never a part. On failure nothing is
 * left behind at `path` or in the temporary; returns -1 after printing why.
 */
int kzs_file_write(const char *path, const void *data, size_t len, mode_t mode, int replace);

/*
 * Reads and parses one key file of directory `dir`, after checking the
 * directory and the file against the ownership and permission rules above.
 * Returns 0 or -1 (printed, one line naming the path and the problem); on
 * failure `key` is zeroed.
 */
int kzs_key_load(const char *dir, kzs_key_kind kind, uint8_t *key);

/*
 * Loads backend.key and checks that its public half is the one its seed
 * derives (a mixed or hand-edited file is refused). 0 or -1 (printed).
 */
int kzs_keys_load_backend_secret(const char *dir, uint8_t sk[KZ_SIGN_SECRET_KEY_BYTES]);

/*
 * Loads audit.key and checks, as for backend.key, that its public half is
 * its seed's. 0 or -1 (printed); on failure `sk` is zeroed.
 */
int kzs_keys_load_audit_secret(const char *dir, uint8_t sk[KZ_SIGN_SECRET_KEY_BYTES]);

/*
 * Reads a key file at `path` (any name: a trusted backend .pub, an
 * audit.pub), with the same rules, the directory checked being the one
 * `path` names (the current directory when it names none). 0 or -1
 * (printed); on failure `key` is zeroed.
 */
int kzs_key_load_file(const char *path, kzs_key_kind kind, uint8_t *key);

/*
 * The work of `keygen --audit`: creates `dir` if missing and writes a new
 * Ed25519 audit pair (audit.key, audit.pub). Refuses if either exists
 * unless `force`. 0 or -1 (printed).
 */
int kzs_keys_generate_audit(const char *dir, int force);

/*
 * Loads server.key and server.pub and checks that they are one pair.
 * 0 or -1 (printed); on failure *kp is zeroed.
 */
int kzs_keys_load_server(const char *dir, kz_box_keypair *kp);

/*
 * The work of `keygen`: creates `dir` if missing (mode 0700), generates a
 * backend Ed25519 pair and a server X25519 pair, and writes the four files.
 * Without `force` it refuses, before writing anything, if any of them
 * exists; with `force` each file is replaced atomically. On success
 * *server_id (may be NULL) gets the new server's id. 0 or -1 (printed).
 */
int kzs_keys_generate(const char *dir, int force, uint64_t *server_id);

#endif /* KZS_KEYS_H */
