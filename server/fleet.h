/*
 * The fleet directory: every kizuna-server process of a deployment that
 * runs with a NATS URL registers itself in one JetStream key-value bucket,
 * and `kizuna-server fleet list` reads it back (docs/SCALING.md).
 *
 *   bucket  KZS_FLEET_BUCKET, created by the first member if missing, with
 *           a time to live of KZS_FLEET_TTL_MS on every value and one
 *           value kept per key;
 *   key     "<world>.<role>.<id>": the world's name, the process's role
 *           (authority, edge or single) and a random 64-bit instance id
 *           in 16 lower-case hex digits, new at every start;
 *   value   a JSON object (kzs_fleet_entry_encode): format version, world,
 *           role, id, address, sessions, max, version.
 * A member writes its value again every KZS_FLEET_HEARTBEAT_MS from a
 * thread of its own, so a process that dies (kill -9) leaves the directory
 * when its last value ages out, within the time to live; a clean stop
 * deletes its key at once.
 *
 * Everything read from the bucket is untrusted: anyone with write access
 * to the bus can put any bytes under any key. A reader bounds each value,
 * checks the key's form, parses the JSON with cJSON, checks every field's
 * type and range and that the value names the key it is stored under. An
 * entry that fails is skipped and counted under its reason
 * (kzs_fleet_skips); nothing read can crash the reader or grow its memory
 * past the bounds below.
 *
 * Credentials: the NATS URL must not carry a user or password (it would
 * be seen in `ps`, the shell history and the log). A credentials file
 * holds them: either a NATS .creds file (user JWT and NKey seed), or one
 * line "user:password". It must not be readable by group or others.
 *
 * Threading: the connection functions and kzs_fleet_list are for one
 * thread at a time (program code). A member runs its own heartbeat thread;
 * kzs_fleet_member_set_load may be called from any thread (atomics), the
 * others from the thread that joined. NATS is never touched from the
 * caller's thread after kzs_fleet_member_join returns, except in
 * kzs_fleet_member_leave. Only the server program links libnats.
 */
#ifndef KZS_FLEET_H
#define KZS_FLEET_H

#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#include <kizuna/log.h>
#include <kizuna/token.h>

/* The JetStream key-value bucket of the directory. */
#define KZS_FLEET_BUCKET "kizuna_fleet"
/* A value ages out of the bucket this long after it was written, so a
 * killed member is gone within 3 s: its last value was written at most
 * this long before the kill (the server's expiry adds a few ms). */
#define KZS_FLEET_TTL_MS 2500u
/* A member writes its value this often: three chances per time to live. */
#define KZS_FLEET_HEARTBEAT_MS 800u
/* The bucket refuses values larger than this (its MaxValueSize). */
#define KZS_FLEET_BUCKET_VALUE_MAX 4096u
/* The bucket's total size; the oldest values go first past it. */
#define KZS_FLEET_BUCKET_BYTES (16u * 1024u * 1024u)
/* A reader skips values larger than this: a member's value is about 250
 * bytes; the gap to the bucket's limit leaves room for a later format. */
#define KZS_FLEET_VALUE_MAX 1024u
/* A list reads at most this many entries; the rest are counted. */
#define KZS_FLEET_LIST_MAX 4096u
/* Connecting, and each request to JetStream, gives up after this long. */
#define KZS_FLEET_TIMEOUT_MS 2000u
/* A member that lost NATS tries again this often, for ever. */
#define KZS_FLEET_RECONNECT_WAIT_MS 250u
/* The format version of a value ("v"). */
#define KZS_FLEET_FORMAT 1u

/* Field limits, each counting the terminating NUL. */
#define KZS_FLEET_WORLD_SIZE 33u   /* 1..32 of [A-Za-z0-9_-] */
#define KZS_FLEET_ROLE_SIZE 10u    /* authority, edge, single */
#define KZS_FLEET_ID_SIZE 17u      /* 16 lower-case hex digits */
#define KZS_FLEET_ADDRESS_SIZE 256u /* HOST:PORT[,HOST:PORT...] */
#define KZS_FLEET_VERSION_SIZE 33u /* printable ASCII, no spaces */
#define KZS_FLEET_KEY_SIZE (KZS_FLEET_WORLD_SIZE + KZS_FLEET_ROLE_SIZE + KZS_FLEET_ID_SIZE)
/* The largest session count a value may carry. */
#define KZS_FLEET_SESSIONS_MAX 1000000u

/* One member as the directory shows it. */
typedef struct kzs_fleet_entry {
    char world[KZS_FLEET_WORLD_SIZE];
    char role[KZS_FLEET_ROLE_SIZE];
    char id[KZS_FLEET_ID_SIZE];
    char address[KZS_FLEET_ADDRESS_SIZE];
    char version[KZS_FLEET_VERSION_SIZE];
    uint32_t sessions; /* sessions now */
    uint32_t max;      /* sessions at most (max_clients) */
} kzs_fleet_entry;

/* Why an entry read from the bucket was skipped. */
typedef enum kzs_fleet_verdict {
    KZS_FLEET_OK = 0,
    KZS_FLEET_BAD_KEY,   /* not "<world>.<role>.<id>" in the allowed characters */
    KZS_FLEET_OVERSIZE,  /* value larger than KZS_FLEET_VALUE_MAX */
    KZS_FLEET_BAD_JSON,  /* not a JSON object */
    KZS_FLEET_BAD_FIELD, /* a field missing, of the wrong type or out of range */
    KZS_FLEET_MISMATCH,  /* world, role or id differ from the key's */
    KZS_FLEET_N_VERDICTS
} kzs_fleet_verdict;

/* Entries skipped by one list, by reason; `truncated` counts entries past
 * KZS_FLEET_LIST_MAX that were not read. */
typedef struct kzs_fleet_skips {
    uint64_t by[KZS_FLEET_N_VERDICTS]; /* by[KZS_FLEET_OK] stays 0 */
    uint64_t truncated;
} kzs_fleet_skips;

/* The verdict's name in output and logs: "ok", "bad_key", "oversize",
 * "bad_json", "bad_field", "mismatch". */
const char *kzs_fleet_verdict_name(kzs_fleet_verdict v);

/* 1 when `name` is a world name: 1..32 characters of [A-Za-z0-9_-]. */
int kzs_fleet_world_ok(const char *name);

/* 1 when `role` is "authority", "edge" or "single". */
int kzs_fleet_role_ok(const char *role);

/* Writes e's key "<world>.<role>.<id>" into out[0..cap). Returns 0, or -1
 * when it does not fit or a part is malformed. */
int kzs_fleet_key(const kzs_fleet_entry *e, char *out, size_t cap);

/* Writes e's value (JSON, no newline) into out[0..cap). Returns its
 * length, or -1 when a field is malformed or it does not fit. */
int kzs_fleet_entry_encode(const kzs_fleet_entry *e, char *out, size_t cap);

/*
 * Checks the entry stored under `key` with value data[0..len) (not
 * NUL-terminated, any bytes) and fills *out when it is good. Returns
 * KZS_FLEET_OK or the reason it is not; *out is zeroed either way first.
 */
kzs_fleet_verdict kzs_fleet_entry_parse(const char *key, const void *data, size_t len,
                                        kzs_fleet_entry *out);

/*
 * Writes the directory address of a server: the token address list
 * `token_addresses` ("a:p b:p", kzs_public_addresses_format) with the
 * "any port" entries ("ip:*") given `port`, joined by commas. Returns 0,
 * or -1 when it does not fit.
 */
int kzs_fleet_address(const char *token_addresses, uint16_t port, char *out, size_t cap);

/* ---- connection -------------------------------------------------------- */

typedef struct kzs_fleet_conn kzs_fleet_conn;

/*
 * Connects to NATS at `url` (one or more nats:// or tls:// URLs, comma
 * separated, without user or password) with the credentials in
 * `credentials` ("" for none), and binds to the directory's bucket,
 * creating it when `create` is set. Without `create`, a missing bucket is
 * an empty directory. reconnect != 0 keeps reconnecting for ever after a
 * loss (a member); 0 gives up (a one-shot command). Returns the
 * connection, or NULL with a sentence in why[0..why_len) (no secret in
 * it).
 */
kzs_fleet_conn *kzs_fleet_connect(const char *url, const char *credentials, int create,
                                  int reconnect, char *why, size_t why_len);

/* Writes "what: status" into why, with the library's detail when it says
 * more than the status (its "(file.c:line): " prefix dropped). */
void kzs_fleet_why(char *why, size_t why_len, const char *what, natsStatus s);

/*
 * The options every connection of the program starts from: `url` (no
 * user or password in it), the credentials file (as above), the name
 * "kizuna-server", a connect timeout of KZS_FLEET_TIMEOUT_MS, and either
 * reconnecting for ever every KZS_FLEET_RECONNECT_WAIT_MS (`reconnect`)
 * or not at all. The per-tick bus (bus.h) adds its own to them. The
 * caller destroys them. NULL with a sentence in why (no secret in it).
 */
natsOptions *kzs_fleet_options(const char *url, const char *credentials, int reconnect,
                               char *why, size_t why_len);

/* Closes the connection and releases the NATS library's threads. NULL is
 * a no-op. */
void kzs_fleet_disconnect(kzs_fleet_conn *fc);

/*
 * Reads every live entry of world `world` (NULL or "": every world) and
 * calls fn(ctx, entry) for each good one, in key order of the bucket.
 * Skipped entries are counted into *skips (zeroed first). Returns 0, or -1
 * with a sentence in why when the bus did not answer.
 */
int kzs_fleet_list(kzs_fleet_conn *fc, const char *world,
                   void (*fn)(void *ctx, const kzs_fleet_entry *e), void *ctx,
                   kzs_fleet_skips *skips, char *why, size_t why_len);

/* ---- choosing members for a token --------------------------------------- */

/* A token names at most this many addresses: one per chosen member. */
#define KZS_FLEET_CHOICE_MAX KZ_TOKEN_MAX_ADDRESSES

/*
 * The members of one world a connect token should name, best first, and
 * why the others were passed over. A member is a candidate when its role
 * takes clients ("single" or "edge", never "authority") and it has room
 * (sessions < max). Candidates rank by free capacity (max - sessions),
 * most first; ties by id, then role, in byte order, so the same directory
 * always gives the same token. Each chosen member contributes one
 * address: the first of its list that is not a loopback address
 * (127.0.0.0/8, ::1), or the first when all are (a member on one host for
 * tests). Two candidates with the same address are one server twice (a
 * copied entry, or a restart whose old entry has not aged out yet): the
 * better ranked one stays. Memory is fixed: the best KZS_FLEET_CHOICE_MAX
 * are kept as entries are offered, whatever the directory holds.
 */
typedef struct kzs_fleet_choice {
    char world[KZS_FLEET_WORLD_SIZE];
    uint32_t n;                                    /* chosen[0..n) */
    kzs_fleet_entry chosen[KZS_FLEET_CHOICE_MAX];  /* best first */
    kz_address address[KZS_FLEET_CHOICE_MAX];      /* chosen[i]'s address */
    /* Every offered entry is counted once: chosen (n), or one of these. */
    uint64_t other_world; /* named another world (a caller's mistake) */
    uint64_t authority;   /* a role that takes no clients */
    uint64_t full;        /* sessions == max */
    uint64_t bad_address; /* an address list that does not parse (an
                           * entry offered without kzs_fleet_entry_parse) */
    uint64_t duplicate;   /* the same address as a better ranked member */
    uint64_t left_out;    /* a candidate ranked past KZS_FLEET_CHOICE_MAX */
} kzs_fleet_choice;

/* Starts an empty choice for `world` (a checked world name). */
void kzs_fleet_choice_init(kzs_fleet_choice *c, const char *world);

/* Offers one entry (already checked by kzs_fleet_entry_parse); keeps it
 * if it ranks among the best. The signature fits kzs_fleet_list's fn. */
void kzs_fleet_choice_offer(void *choice, const kzs_fleet_entry *e);

/*
 * Reads world `world`'s live entries and chooses among them (the choice
 * is started here). Bad entries are skipped and counted into *skips.
 * Returns 0 (c->n may be 0: no member with room), or -1 with a sentence
 * in why when the bus did not answer.
 */
int kzs_fleet_choose(kzs_fleet_conn *fc, const char *world, kzs_fleet_choice *c,
                     kzs_fleet_skips *skips, char *why, size_t why_len);

/* Entries skipped by a list, all reasons and the truncated ones. */
uint64_t kzs_fleet_skips_total(const kzs_fleet_skips *sk);

/* Writes the nonzero skip counts as "oversize=1 mismatch=2" into
 * out[0..cap) ("" when none); returns out. */
char *kzs_fleet_skips_format(const kzs_fleet_skips *sk, char *out, size_t cap);

/* ---- member ------------------------------------------------------------ */

typedef struct kzs_fleet_member kzs_fleet_member;

/*
 * Registers `self` (its id is drawn here and written back into the
 * member's copy; the caller's world, role, address, version and max are
 * used) over the connection `fc`, which the member then owns, and starts
 * the heartbeat thread. The first write happens before this returns, so a
 * bus that refuses it fails the start. Returns the member, or NULL with a
 * sentence in why (and `fc` disconnected).
 */
kzs_fleet_member *kzs_fleet_member_join(kzs_fleet_conn *fc, const kzs_fleet_entry *self,
                                        kz_log log, char *why, size_t why_len);

/* The member's current load; read by the next heartbeat. Any thread. */
void kzs_fleet_member_set_load(kzs_fleet_member *m, uint32_t sessions, uint32_t max);

/* The member's key (valid until leave). */
const char *kzs_fleet_member_key(const kzs_fleet_member *m);

/* Asks the heartbeat thread to delete the member's key and stop; does not
 * wait (nothing blocks the caller). Idempotent. NULL is a no-op. */
void kzs_fleet_member_stop(kzs_fleet_member *m);

/* Stops (as above) if not yet stopped, waits for the thread, disconnects,
 * frees. NULL is a no-op. */
void kzs_fleet_member_leave(kzs_fleet_member *m);

#endif /* KZS_FLEET_H */
