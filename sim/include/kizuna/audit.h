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
 *
 * A loss is never silent. When a write or a sync fails (a full file
 * system, an immutable file, a read-only remount, an I/O error) the writer
 * keeps the unsynced records, retries with a bounded exponential backoff
 * and resumes by itself once the cause is gone; records appended meanwhile
 * wait in the ring. Records refused because the ring is full are counted,
 * and once the writer writes again it puts a KZ_AUDIT_LOST record into the
 * chain (how many, over which span of time, why) before any later record.
 * Recovery after a crash notes what it cut in a KZ_AUDIT_RECOVERED record.
 * `kz_audit_verify` reports both (kz_audit_verify_result.gaps).
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
 * The I/O hooks of kz_audit_io run on the writer thread (and on the
 * opening thread during recovery). The verify and decode functions share
 * no state and are reentrant.
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
    KZ_AUDIT_DETACH = 11,      /* client_id, entity: the session went silent (resume on);
                                  its avatar stands still; code: path changes of this
                                  client left out since its previous path record */
    KZ_AUDIT_RESUME = 12,      /* client_id, entity: the session came back (heard again,
                                  or moved to a new address); code: as for DETACH */
    KZ_AUDIT_CALLER_MAX = 12,
    KZ_AUDIT_CHECKPOINT = 64,  /* writer: signed chain head; code 1 = final */
    KZ_AUDIT_RECOVERED = 65,   /* writer: opened after a crash; code: torn bytes cut,
                                  lost: incomplete records among them */
    KZ_AUDIT_DROPPED = 66,     /* older writers: `code` records refused since the last one
                                  (read as a loss; no longer written) */
    KZ_AUDIT_LOST = 67         /* writer: `lost` records refused between `since_ns` and
                                  `until_ns`, or an outage of the writer over that span;
                                  code: kz_audit_loss_reason; detail: what failed */
} kz_audit_type;

/* Why records were lost or delayed: the code of a KZ_AUDIT_LOST record.
 * Part of the file format: append, never renumber. */
typedef enum kz_audit_loss_reason {
    KZ_AUDIT_LOSS_QUEUE_FULL = 1, /* appends outran a writer that was writing */
    KZ_AUDIT_LOSS_NO_SPACE = 2,   /* ENOSPC, EDQUOT: the file system or quota is full */
    KZ_AUDIT_LOSS_READ_ONLY = 3,  /* EROFS, EPERM, EACCES: read-only mount, immutable file */
    KZ_AUDIT_LOSS_IO_ERROR = 4,   /* EIO and anything else */
    KZ_AUDIT_LOSS_REASON_COUNT
} kz_audit_loss_reason;

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

/*
 * The writer's file operations, replaceable so that tests (and hosts with
 * their own storage checks) can inject failures deterministically. Each
 * NULL member is the system call. They follow the system calls' contracts
 * but return a negative errno value instead of setting errno:
 *   write:    bytes written (> 0; fewer than n is a short write), or -errno;
 *   sync:     fdatasync(fd): 0 or -errno;
 *   truncate: ftruncate(fd, size): 0 or -errno.
 * They are called on the writer thread, and on the thread in
 * kz_audit_open during recovery; `ctx` is passed through.
 */
typedef struct kz_audit_io {
    int64_t (*write)(void *ctx, int fd, const void *buf, size_t n);
    int (*sync)(void *ctx, int fd);
    int (*truncate)(void *ctx, int fd, uint64_t size);
    void *ctx;
} kz_audit_io;

typedef struct kz_audit_config {
    const char *path;            /* the log file; created 0640 if missing */
    uint8_t sign_secret_key[KZ_SIGN_SECRET_KEY_BYTES]; /* Ed25519 (seed || pk) */
    uint32_t ring_capacity;      /* power of two; 0 = 8192 records */
    uint32_t commit_records;     /* fdatasync after this many; 0 = 256 */
    uint32_t commit_ms;          /* ... or when the oldest unsynced is this old; 0 = 10 */
    uint32_t checkpoint_records; /* signed checkpoint after this many; 0 = 1024 */
    uint32_t checkpoint_ms;      /* ... or this long after the last; 0 = 10000 */
    uint32_t retry_max_ms;       /* longest pause between attempts while writes fail
                                    (backoff from 1 ms, doubling); 0 = 1000 */
    uint32_t close_wait_ms;      /* how long kz_audit_close keeps retrying a failing
                                    writer before it gives up; 0 = 2000 */
    kz_audit_clock_fn clock;     /* NULL: CLOCK_REALTIME */
    void *clock_ctx;
    kz_audit_io io;              /* zero: the system calls */
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
 * cut off. If bytes were cut or the previous session did not end with its
 * final checkpoint, a KZ_AUDIT_RECOVERED record notes how many bytes (and
 * incomplete records) were cut. The chain then continues: next sequence
 * number, previous hash.
 * Returns 0 and *out, or KZ_EINVAL (bad config), KZ_ENOMEM, KZ_EIO (cannot
 * open, lock, read or write; the log says why), KZ_EPROTO (the existing
 * file is damaged or altered before its tail: it is left untouched, move
 * it aside), KZ_EAUTH (a checkpoint in it is not signed by this key).
 */
KZ_API KZ_MUST_CHECK int kz_audit_open(const kz_audit_config *cfg, kz_audit **out);

/*
 * Any thread: queues a copy of *rec (type 1..KZ_AUDIT_CALLER_MAX) for the
 * writer. Never blocks, never allocates. While the writer cannot write,
 * records still queue and wait for it. Returns 0, KZ_EINVAL (unknown
 * type) or KZ_EFULL (ring full: the record is lost and counted in
 * `dropped`, with its time; once the writer writes again it puts a
 * KZ_AUDIT_LOST record with the count and the span into the chain).
 */
KZ_API int kz_audit_append(kz_audit *a, const kz_audit_record *rec);

/*
 * Waits until every record appended before the call is durable (written
 * and fdatasync'ed), asking the writer to commit now. Returns 0, KZ_EAGAIN
 * after `timeout_ms`, or KZ_EIO as soon as the writer is failing (it keeps
 * retrying; a later flush may succeed).
 */
KZ_API KZ_MUST_CHECK int kz_audit_flush(kz_audit *a, uint32_t timeout_ms);

typedef struct kz_audit_stats {
    uint64_t appended;     /* records accepted by kz_audit_append */
    uint64_t dropped;      /* records lost: refused because the ring was full, or
                              still unwritten when kz_audit_close gave up */
    uint64_t lost_noted;   /* of those, noted in KZ_AUDIT_LOST records now durable */
    uint64_t written;      /* records written this session, writer's own included */
    uint64_t durable;      /* appended records that are written and synced */
    uint64_t lag;          /* appended - durable */
    uint64_t fsyncs;
    uint64_t checkpoints;  /* written this session */
    uint64_t first_seq;    /* sequence number of this session's first record */
    uint64_t acked_seq;    /* highest durable seq + 1 (0: nothing yet) */
    uint64_t recovered_bytes; /* torn bytes cut on open */
    uint64_t write_failures;  /* failed attempts to write, sync or truncate */
    uint64_t outages;      /* times the writer went from writing to failing */
    uint64_t queued;       /* records waiting in the ring (approximate) */
    uint32_t reason;       /* kz_audit_loss_reason of the current or last failure, 0 none */
    int error;             /* KZ_EIO while the writer cannot write (it is retrying), else 0 */
} kz_audit_stats;

/* Any thread: a snapshot of the counters (each read atomically). */
KZ_API void kz_audit_stats_get(const kz_audit *a, kz_audit_stats *out);

/*
 * Drains the ring, notes any loss, writes a final signed checkpoint, syncs,
 * joins the writer, unlocks and closes the file, frees `a`. No appends may
 * be in flight. A failing writer keeps retrying for `close_wait_ms`; if it
 * still cannot write, the records it holds are counted as lost and the
 * log is left without its final checkpoint (the next open notes the
 * unclean end). Returns 0, or KZ_EIO when it gave up or records were lost
 * and not noted in the log. NULL is ignored.
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
/* Name of a record type ("connect", "checkpoint", "lost", ...); "?" if unknown. */
KZ_API const char *kz_audit_type_name(uint32_t type);
/* Name of a kz_audit_loss_reason ("queue full", "no space", "read-only",
 * "I/O error"); "?" if unknown. */
KZ_API const char *kz_audit_loss_reason_name(uint32_t reason);

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
    /* Gaps the writer itself recorded, among the good records. A valid
     * chain can still have them: the log is intact, but incomplete. */
    uint64_t gaps;           /* records that note a loss: lost/dropped with a count,
                                and every recovered record */
    uint64_t lost_records;   /* sum of the counts of lost and dropped records */
    uint64_t recoveries;     /* recovered records: a session ended without its final
                                checkpoint (records not yet durable then are gone) */
    uint64_t cut_bytes;      /* torn bytes those recoveries cut */
    uint64_t outages;        /* lost records for a writer outage (any count) */
} kz_audit_verify_result;

/*
 * Verifies a whole log held in memory against the Ed25519 public key
 * `pk`. Fills *r; returns 0 when r->verdict is KZ_AUDIT_VALID, else
 * KZ_EAUTH. A valid log may still record losses: check r->gaps. Never
 * reads outside buf[0..len).
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
    uint64_t lost;          /* lost records: records lost; recovered: incomplete records cut */
    uint64_t since_ns;      /* lost records: start of the span, Unix ns */
    uint64_t until_ns;      /* lost records: end of the span, Unix ns */
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
