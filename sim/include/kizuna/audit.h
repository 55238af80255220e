/*
 * The audit log: an append-only file of who did what on a server, kept so
 * that an operator (or a regulator, or a user who was kicked) can later
 * check that nothing was altered, dropped, reordered or cut off.
 *
 * Records are hash-chained with BLAKE2b-256; every `checkpoint_records`
 * records or `checkpoint_ms` milliseconds the writer adds a checkpoint
 * record signed with the server's Ed25519 audit key, and on close a final
 * checkpoint. A dedicated writer thread owns the file: any thread hands it
 * records through a bounded MPSC ring (kizuna/mpsc.h) and never waits for
 * the disk. The writer group-commits: it calls fdatasync once per
 * `commit_records` records or `commit_ms` milliseconds, whichever comes
 * first (defaults 256 and 10 ms), so a record is durable at most about
 * commit_ms + 1 ms + one fdatasync after it was appended.
 * The file format, the chain, recovery and the verifier's reasons are
 * specified in docs/AUDIT.md.
 *
 * Privacy: a record carries ids and identity claims (client id, entity,
 * verification level, actor kind, acting_for principal), a numeric code and
 * a short printable ASCII detail (zone or role name, key id, reason word).
 * It never carries chat text, voice, positions or display names; callers
 * must not put them in `detail`.
 *
 * Ownership and threading: kz_audit_open returns a kz_audit the caller owns
 * and frees with kz_audit_close. kz_audit_append and kz_audit_stats may be
 * called from any thread at once, and never block or allocate.
 * kz_audit_flush may be called from any thread; it waits. kz_audit_close
 * must be called once, after every appending thread has stopped appending.
 * The verify and decode functions share no state and are reentrant.
 */
#ifndef KZ_AUDIT_H
#define KZ_AUDIT_H

#include <kizuna/alloc.h>
#include <kizuna/log.h>
#include <kizuna/protocol.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What happened. Values are part of the file format: append, never
 * renumber. Callers append the types below KZ_AUDIT_CALLER_MAX; the writer
 * alone writes the others. */
typedef enum kz_audit_type {
    KZ_AUDIT_SERVER_START = 1, /* detail: program version; code: server port */
    KZ_AUDIT_SERVER_STOP = 2,  /* code: clients still connected */
    KZ_AUDIT_CONNECT = 3,      /* client_id, entity, claims */
    KZ_AUDIT_DISCONNECT = 4,   /* client_id, entity; code: reason */
    KZ_AUDIT_ROLE_ACTION = 5,  /* a role-gated action; detail: role or action name */
    KZ_AUDIT_ZONE_REFUSAL = 6, /* detail: zone name; code: why */
    KZ_AUDIT_BLOCK = 7,        /* client_id blocked (or was blocked by) the avatar `entity` */
    KZ_AUDIT_VIOLATION = 8,    /* code: which rule; detail: short rule name */
    KZ_AUDIT_KICK = 9,         /* code: reason */
    KZ_AUDIT_KEY_CHANGE = 10,  /* detail: which key and its short id */
    KZ_AUDIT_CALLER_MAX = 10,
    KZ_AUDIT_CHECKPOINT = 64,  /* writer: signed chain head; code 1 = final */
    KZ_AUDIT_RECOVERED = 65,   /* writer: opened after a crash; code: torn bytes cut */
    KZ_AUDIT_DROPPED = 66      /* writer: `code` records refused since the last one */
} kz_audit_type;

/* Bytes of detail text, including the terminating NUL. */
#define KZ_AUDIT_DETAIL_MAX 64u
/* The largest encoded record (a checkpoint or a record with every field). */
#define KZ_AUDIT_RECORD_MAX 320u
#define KZ_AUDIT_HASH_BYTES 32u

/* KZ_AUDIT_CHECKPOINT code bits. */
#define KZ_AUDIT_CHECKPOINT_FINAL 1u

/*
 * One event as a caller hands it in. Unused fields stay zero. `detail` is
 * NUL-terminated printable ASCII (bytes outside 0x20..0x7e are written as
 * '?'); never chat text or a display name.
 */
typedef struct kz_audit_record {
    uint8_t type;               /* kz_audit_type */
    uint8_t verification_level; /* KZ_VERIFY_* claim of client_id */
    uint8_t actor_kind;         /* KZ_ACTOR_* */
    uint8_t reserved_;          /* zero */
    uint32_t entity;            /* the avatar's entity id, 0 = none */
    uint64_t client_id;         /* 0 = none (server events) */
    uint64_t acting_for;        /* principal an agent acts for, 0 = none */
    uint32_t code;              /* type-specific number (reason, port, count) */
    uint64_t unix_ns;           /* when; 0: stamped by kz_audit_append */
    char detail[KZ_AUDIT_DETAIL_MAX];
} kz_audit_record;

/* Clock: wall time in Unix nanoseconds (records cross machines). */
typedef uint64_t (*kz_audit_clock_fn)(void *ctx);

typedef struct kz_audit_config {
    const char *path;            /* the log file; created 0640 if missing */
    uint8_t sign_secret_key[KZ_SIGN_SECRET_KEY_BYTES]; /* Ed25519 (seed || pk) */
    uint32_t ring_capacity;      /* power of two; 0 = 8192 records */
    uint32_t commit_records;     /* fdatasync after this many; 0 = 256 */
    uint32_t commit_ms;          /* ... or when the oldest unsynced is this old; 0 = 10 */
    uint32_t checkpoint_records; /* signed checkpoint after this many; 0 = 1024 */
    uint32_t checkpoint_ms;      /* ... or this long after the last; 0 = 10000 */
    kz_audit_clock_fn clock;     /* NULL: CLOCK_REALTIME */
    void *clock_ctx;
    kz_allocator alloc;
    kz_log log;
} kz_audit_config;

typedef struct kz_audit kz_audit;

/* Fills the defaults (zero fields mean the same). The key is left zero. */
KZ_API void kz_audit_config_default(kz_audit_config *cfg);

/*
 * Opens (or creates) the log, takes an exclusive lock on it, recovers and
 * starts the writer thread. Recovery reads the whole file and checks the
 * chain and every checkpoint signature against the key's public half; a
 * torn tail (an incomplete last record, or zero bytes past the last
 * record, which only a crash leaves and which was never acknowledged) is
 * cut off and a KZ_AUDIT_RECOVERED record notes how many bytes. The chain
 * then continues: next sequence number, previous hash.
 * Returns 0 and *out, or KZ_EINVAL (bad config), KZ_ENOMEM, KZ_EIO (cannot
 * open, lock, read or write; the log says why), KZ_EPROTO (the existing
 * file is damaged or altered before its tail: it is left untouched, move
 * it aside), KZ_EAUTH (a checkpoint in it is not signed by this key).
 */
KZ_API KZ_MUST_CHECK int kz_audit_open(const kz_audit_config *cfg, kz_audit **out);

/*
 * Any thread: queues a copy of *rec (type 1..KZ_AUDIT_CALLER_MAX) for the
 * writer. Never blocks, never allocates. Returns 0, KZ_EINVAL (unknown
 * type), KZ_EFULL (ring full: the record is counted in `dropped`, and the
 * writer later writes a KZ_AUDIT_DROPPED record with the count, so a loss
 * is never silent) or KZ_EIO (the writer has failed; counted too).
 */
KZ_API int kz_audit_append(kz_audit *a, const kz_audit_record *rec);

/*
 * Waits until every record appended before the call is durable (written
 * and fdatasync'ed), asking the writer to commit now. Returns 0, KZ_EAGAIN
 * after `timeout_ms`, or KZ_EIO if the writer failed.
 */
KZ_API KZ_MUST_CHECK int kz_audit_flush(kz_audit *a, uint32_t timeout_ms);

typedef struct kz_audit_stats {
    uint64_t appended;     /* records accepted by kz_audit_append */
    uint64_t dropped;      /* records refused (ring full or writer failed) */
    uint64_t written;      /* records written this session, writer's own included */
    uint64_t durable;      /* appended records that are written and synced */
    uint64_t lag;          /* appended - durable */
    uint64_t fsyncs;
    uint64_t checkpoints;  /* written this session */
    uint64_t first_seq;    /* sequence number of this session's first record */
    uint64_t acked_seq;    /* highest durable seq + 1 (0: nothing yet) */
    uint64_t recovered_bytes; /* torn bytes cut on open */
    int error;             /* first write error (KZ_EIO) or 0 */
} kz_audit_stats;

/* Any thread: a snapshot of the counters (each read atomically). */
KZ_API void kz_audit_stats_get(const kz_audit *a, kz_audit_stats *out);

/*
 * Drains the ring, writes a final signed checkpoint, syncs, joins the
 * writer, unlocks and closes the file, frees `a`. No appends may be in
 * flight. Returns 0 or the writer's first error (KZ_EIO). NULL is ignored.
 */
KZ_API int kz_audit_close(kz_audit *a);

/* ---- reading and verifying ---------------------------------------------- */

/* Why a log failed verification; the first problem wins. */
typedef enum kz_audit_verdict {
    KZ_AUDIT_VALID = 0,
    KZ_AUDIT_ALTERED,       /* a record's bytes do not match its hash, or its framing/fields are malformed */
    KZ_AUDIT_DROPPED_RECORD, /* a sequence number is missing */
    KZ_AUDIT_REORDERED,     /* records are out of sequence order */
    KZ_AUDIT_TRUNCATED,     /* the file ends inside a record, is empty, or does not end with a final signed checkpoint */
    KZ_AUDIT_FORKED,        /* a sequence number repeats, or a record does not chain to the one before */
    KZ_AUDIT_BAD_SIGNATURE, /* a checkpoint is not signed by the given key */
    KZ_AUDIT_UNREADABLE,    /* the file cannot be opened or read */
    KZ_AUDIT_VERDICT_COUNT
} kz_audit_verdict;

/* Lower-case name ("altered", "dropped", ...); "?" if unknown. */
KZ_API const char *kz_audit_verdict_name(kz_audit_verdict v);
/* Name of a record type ("connect", "checkpoint", ...); "?" if unknown. */
KZ_API const char *kz_audit_type_name(uint32_t type);

/* Verify flags. */
#define KZ_AUDIT_VERIFY_ALLOW_OPEN 1u /* a live log: records after the last checkpoint are reported in unsigned_tail, not refused */

typedef struct kz_audit_verify_result {
    kz_audit_verdict verdict;
    const char *why;         /* static sentence: what was found */
    uint64_t records;        /* good records before the first bad one */
    uint64_t checkpoints;    /* good checkpoints among them */
    uint64_t bad_index;      /* position (0-based) in the file of the first bad record */
    uint64_t bad_offset;     /* its byte offset */
    uint64_t expected_seq;   /* the sequence number that position should hold */
    uint64_t found_seq;      /* what it holds (if it could be read) */
    uint64_t unsigned_tail;  /* good records after the last checkpoint */
    uint64_t head_seq;       /* seq of the last good record */
    uint8_t head_hash[KZ_AUDIT_HASH_BYTES]; /* its hash: the chain head */
} kz_audit_verify_result;

/*
 * Verifies a whole log held in memory against the Ed25519 public key
 * `pk`. Fills *r; returns 0 when r->verdict is KZ_AUDIT_VALID, else
 * KZ_EAUTH. Never reads outside buf[0..len).
 */
KZ_API int kz_audit_verify_buffer(const uint8_t *buf, size_t len,
                                  const uint8_t pk[KZ_SIGN_PUBLIC_KEY_BYTES], uint32_t flags,
                                  kz_audit_verify_result *r);

/* As kz_audit_verify_buffer over the file at `path` (mapped read-only).
 * Returns 0, KZ_EAUTH, or KZ_EIO with r->verdict = KZ_AUDIT_UNREADABLE. */
KZ_API int kz_audit_verify(const char *path, const uint8_t pk[KZ_SIGN_PUBLIC_KEY_BYTES],
                           uint32_t flags, kz_audit_verify_result *r);

/* One decoded record, as read from a file. */
typedef struct kz_audit_entry {
    uint64_t seq;
    kz_audit_record rec;    /* rec.type is the record type, any of them */
    uint8_t prev[KZ_AUDIT_HASH_BYTES];
    uint8_t hash[KZ_AUDIT_HASH_BYTES];
    uint8_t signature[KZ_SIGNATURE_BYTES]; /* checkpoints only */
    uint32_t size;          /* encoded bytes */
} kz_audit_entry;

/*
 * Decodes the record at the start of buf[0..len): framing, hash and field
 * rules (but not the chain or signatures). Returns 0, KZ_EOVERFLOW when
 * len ends inside the record (a torn or truncated tail), or KZ_EPROTO.
 */
KZ_API KZ_MUST_CHECK int kz_audit_decode(const uint8_t *buf, size_t len, kz_audit_entry *out);

#ifdef __cplusplus
}
#endif

#endif /* KZ_AUDIT_H */
