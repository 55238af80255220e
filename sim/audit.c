/*
 * The audit log (kizuna/audit.h, docs/AUDIT.md): record codec, chain
 * verifier, crash recovery and the writer thread.
 *
 * The workload is a trickle of small records (a few per second per
 * hundred clients: connects, kicks, refusals) with bursts when a crowd
 * joins, appended from the simulation thread, which must never wait for a
 * disk. So appends are one copy into a bounded MPSC ring; one writer thread
 * encodes, chains, buffers and group-commits with fdatasync, and signs a
 * checkpoint now and then. Verification is a single forward pass over the
 * mapped file that stops at the first problem and names it.
 *
 * The writer keeps every encoded record in its buffer until an fdatasync
 * has covered it. A failed write or sync therefore loses nothing: the
 * writer cuts what the failed attempt may have left past the last synced
 * byte, writes the whole buffer again and syncs, after a pause that
 * doubles from 1 ms up to retry_max_ms. While it fails it takes nothing
 * from the ring, so the ring is the only (bounded) queue, and records it
 * refuses are counted with their times and noted in a LOST record as
 * soon as writing works again.
 *
 * Record layout (little-endian; docs/AUDIT.md has the table):
 *   0  u16 size L   2  u16 ~L   4  u8 version   5  u8 type   6  u16 flags=0
 *   8  u64 seq     16  u64 unix ns             24  prev hash (32)
 *  56  fields: (u8 tag, u8 len, value) with ascending tags, non-zero values
 * L-32 hash = BLAKE2b-256(bytes[0 .. L-32)), which covers prev.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <kizuna/audit.h>
#include <kizuna/mpsc.h>

#include "core/assert.h"
#include "net/crypto.h"

#define KZ__AUDIT_VERSION 1u
#define KZ__AUDIT_HEAD_BYTES 56u
#define KZ__AUDIT_MIN_BYTES (KZ__AUDIT_HEAD_BYTES + KZ_AUDIT_HASH_BYTES)
#define KZ__AUDIT_SIGN_DOMAIN "kizuna-audit-checkpoint-v1"
#define KZ__AUDIT_WBUF_BYTES (128u * 1024u)
#define KZ__AUDIT_BATCH 64u
#define KZ__AUDIT_IDLE_NS 1000000ull /* writer's poll period when idle */
/* Room kept free in the buffer past the records of one batch: a LOST
 * record, the checkpoint after it and the final checkpoint. */
#define KZ__AUDIT_WBUF_RESERVE (4u * KZ_AUDIT_RECORD_MAX)
/* Each record popped may be followed by a checkpoint. */
#define KZ__AUDIT_SLOT_BYTES (2u * KZ_AUDIT_RECORD_MAX)
#define KZ__AUDIT_RETRY_MIN_NS 1000000ull     /* first pause after a failed attempt */
#define KZ__AUDIT_RETRY_MAX_MS 1000u          /* default retry_max_ms */
#define KZ__AUDIT_CLOSE_WAIT_MS 2000u         /* default close_wait_ms */
#define KZ__AUDIT_LOG_EVERY_NS 10000000000ull /* a failing writer's reminder period */
#define KZ__AUDIT_LOG_GAP_NS 1000000000ull    /* least time between outage start/end lines */
#define KZ__AUDIT_NOTE_EVERY_NS 100000000ull  /* queue-full losses noted at most this often */

/* Field tags, ascending in a record; part of the format. */
enum {
    KZ__TAG_CLIENT = 1,     /* u64 */
    KZ__TAG_ENTITY = 2,     /* u32 */
    KZ__TAG_LEVEL = 3,      /* u8 */
    KZ__TAG_ACTOR = 4,      /* u8 */
    KZ__TAG_ACTING_FOR = 5, /* u64 */
    KZ__TAG_CODE = 6,       /* u32 */
    KZ__TAG_DETAIL = 7,     /* 1..63 printable ASCII bytes */
    KZ__TAG_SIGNATURE = 8,  /* 64 bytes; checkpoints only, required there */
    KZ__TAG_LOST = 9,       /* u64; lost and recovered records only */
    KZ__TAG_SINCE = 10,     /* u64 Unix ns; lost records only */
    KZ__TAG_UNTIL = 11,     /* u64 Unix ns; lost records only */
    KZ__TAG_MAX = KZ__TAG_UNTIL
};

/* Accessors for the log's shared counters, which are declared _Atomic. */
static uint64_t kz__ld(const _Atomic uint64_t *p)
{
    return atomic_load_explicit(p, memory_order_acquire);
}

static void kz__add(_Atomic uint64_t *p, uint64_t v)
{
    atomic_fetch_add_explicit(p, v, memory_order_acq_rel);
}

static void kz__st(_Atomic uint64_t *p, uint64_t v)
{
    atomic_store_explicit(p, v, memory_order_release);
}

/* ---- little-endian helpers -------------------------------------------- */

static void kz__put_le(uint8_t *b, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        b[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t kz__get_le(const uint8_t *b, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = n; i > 0; i--)
        v = v << 8 | b[i - 1];
    return v;
}

/* ---- names ------------------------------------------------------------- */

const char *kz_audit_verdict_name(kz_audit_verdict v)
{
    static const char *const names[KZ_AUDIT_VERDICT_COUNT] = {
        "ok", "altered", "dropped", "reordered", "truncated", "forked",
        "bad checkpoint signature", "unreadable"};
    return (unsigned)v < KZ_AUDIT_VERDICT_COUNT ? names[v] : "?";
}

const char *kz_audit_type_name(uint32_t type)
{
    static const char *const names[] = {
        "?", "server-start", "server-stop", "connect", "disconnect", "role-action",
        "zone-refusal", "block", "violation", "kick", "key-change", "detach", "resume"};
    if (type <= KZ_AUDIT_CALLER_MAX)
        return names[type];
    if (type == KZ_AUDIT_CHECKPOINT)
        return "checkpoint";
    if (type == KZ_AUDIT_RECOVERED)
        return "recovered";
    if (type == KZ_AUDIT_DROPPED)
        return "dropped";
    if (type == KZ_AUDIT_LOST)
        return "lost";
    return "?";
}

const char *kz_audit_loss_reason_name(uint32_t reason)
{
    static const char *const names[KZ_AUDIT_LOSS_REASON_COUNT] = {
        "?", "queue full", "no space", "read-only", "I/O error"};
    return reason < KZ_AUDIT_LOSS_REASON_COUNT ? names[reason] : "?";
}

static int kz__type_known(uint32_t type)
{
    return (type >= 1 && type <= KZ_AUDIT_CALLER_MAX) || type == KZ_AUDIT_CHECKPOINT ||
           type == KZ_AUDIT_RECOVERED || type == KZ_AUDIT_DROPPED || type == KZ_AUDIT_LOST;
}

/* ---- codec ------------------------------------------------------------- */

static uint8_t *kz__put_field(uint8_t *p, uint8_t tag, uint64_t v, unsigned n)
{
    if (v == 0)
        return p; /* canonical form: zero fields are absent */
    p[0] = tag;
    p[1] = (uint8_t)n;
    kz__put_le(p + 2, v, n);
    return p + 2 + n;
}

/* The message a checkpoint signs: domain, header bytes 4..56 (version,
 * type, flags, seq, time, prev hash) and the code (final flag). */
static void kz__sign_message(const uint8_t *head, uint32_t code, uint8_t *msg, size_t *len)
{
    const size_t d = sizeof KZ__AUDIT_SIGN_DOMAIN - 1;
    memcpy(msg, KZ__AUDIT_SIGN_DOMAIN, d);
    memcpy(msg + d, head + 4, KZ__AUDIT_HEAD_BYTES - 4);
    kz__put_le(msg + d + KZ__AUDIT_HEAD_BYTES - 4, code, 4);
    *len = d + KZ__AUDIT_HEAD_BYTES - 4 + 4;
}

#define KZ__SIGN_MSG_MAX (sizeof KZ__AUDIT_SIGN_DOMAIN + KZ__AUDIT_HEAD_BYTES + 4)

/* The loss fields of a LOST or RECOVERED record (zero: absent). */
typedef struct kz__loss_fields {
    uint64_t lost, since_ns, until_ns;
} kz__loss_fields;

/*
 * Encodes one record with sequence `seq` after chain head `prev` into
 * out[KZ_AUDIT_RECORD_MAX]; a checkpoint is signed with `sk`; `loss` (may
 * be NULL) adds the loss fields. Writes its hash to hash_out and returns
 * the size. Detail bytes outside printable ASCII become '?'.
 */
static uint32_t kz__encode(uint64_t seq, const uint8_t prev[KZ_AUDIT_HASH_BYTES],
                           const kz_audit_record *r, const kz__loss_fields *loss,
                           const uint8_t *sk, uint8_t *out, uint8_t hash_out[KZ_AUDIT_HASH_BYTES])
{
    out[4] = KZ__AUDIT_VERSION;
    out[5] = r->type;
    kz__put_le(out + 6, 0, 2);
    kz__put_le(out + 8, seq, 8);
    kz__put_le(out + 16, r->unix_ns, 8);
    memcpy(out + 24, prev, KZ_AUDIT_HASH_BYTES);
    uint8_t *p = out + KZ__AUDIT_HEAD_BYTES;
    p = kz__put_field(p, KZ__TAG_CLIENT, r->client_id, 8);
    p = kz__put_field(p, KZ__TAG_ENTITY, r->entity, 4);
    p = kz__put_field(p, KZ__TAG_LEVEL, r->verification_level, 1);
    p = kz__put_field(p, KZ__TAG_ACTOR, r->actor_kind, 1);
    p = kz__put_field(p, KZ__TAG_ACTING_FOR, r->acting_for, 8);
    p = kz__put_field(p, KZ__TAG_CODE, r->code, 4);
    size_t n = strnlen(r->detail, KZ_AUDIT_DETAIL_MAX - 1);
    if (n > 0) {
        p[0] = KZ__TAG_DETAIL;
        p[1] = (uint8_t)n;
        for (size_t i = 0; i < n; i++) {
            uint8_t c = (uint8_t)r->detail[i];
            p[2 + i] = (c >= 0x20 && c <= 0x7e) ? c : '?';
        }
        p += 2 + n;
    }
    if (r->type == KZ_AUDIT_CHECKPOINT) {
        uint8_t msg[KZ__SIGN_MSG_MAX];
        size_t mlen;
        kz__sign_message(out, r->code, msg, &mlen);
        p[0] = KZ__TAG_SIGNATURE;
        p[1] = KZ_SIGNATURE_BYTES;
        crypto_sign_detached(p + 2, NULL, msg, mlen, sk);
        p += 2 + KZ_SIGNATURE_BYTES;
    }
    if (loss != NULL) {
        p = kz__put_field(p, KZ__TAG_LOST, loss->lost, 8);
        p = kz__put_field(p, KZ__TAG_SINCE, loss->since_ns, 8);
        p = kz__put_field(p, KZ__TAG_UNTIL, loss->until_ns, 8);
    }
    uint32_t size = (uint32_t)(p - out) + KZ_AUDIT_HASH_BYTES;
    kz__put_le(out, size, 2);
    kz__put_le(out + 2, ~size & 0xffffu, 2);
    crypto_generichash(p, KZ_AUDIT_HASH_BYTES, out, size - KZ_AUDIT_HASH_BYTES, NULL, 0);
    memcpy(hash_out, p, KZ_AUDIT_HASH_BYTES);
    return size;
}

/* Fixed width of a numeric tag's value; 0 for the variable ones. */
static unsigned kz__tag_width(uint8_t tag)
{
    static const uint8_t w[] = {0, 8, 4, 1, 1, 8, 4, 0, 0, 8, 8, 8};
    return tag < sizeof w ? w[tag] : 0;
}

/* Stores one numeric field's value into the entry. */
static void kz__set_field(kz_audit_entry *e, uint8_t tag, uint64_t v)
{
    kz_audit_record *r = &e->rec;
    switch (tag) {
    case KZ__TAG_CLIENT: r->client_id = v; break;
    case KZ__TAG_ENTITY: r->entity = (uint32_t)v; break;
    case KZ__TAG_LEVEL: r->verification_level = (uint8_t)v; break;
    case KZ__TAG_ACTOR: r->actor_kind = (uint8_t)v; break;
    case KZ__TAG_ACTING_FOR: r->acting_for = v; break;
    case KZ__TAG_LOST: e->lost = v; break;
    case KZ__TAG_SINCE: e->since_ns = v; break;
    case KZ__TAG_UNTIL: e->until_ns = v; break;
    default: r->code = (uint32_t)v; break;
    }
}

/* Which record types may carry the loss fields; NULL or the problem. */
static const char *kz__loss_fields_ok(const kz_audit_entry *e)
{
    uint8_t t = e->rec.type;
    if (e->lost != 0 && t != KZ_AUDIT_LOST && t != KZ_AUDIT_RECOVERED)
        return "a loss count outside a lost or recovered record";
    if ((e->since_ns != 0 || e->until_ns != 0) && t != KZ_AUDIT_LOST)
        return "a loss span outside a lost record";
    if (t == KZ_AUDIT_LOST && (e->rec.code == 0 || e->rec.code >= KZ_AUDIT_LOSS_REASON_COUNT ||
                               e->since_ns > e->until_ns))
        return "a lost record with an unknown reason or a span that ends before it starts";
    return NULL;
}

/* Parses the field list fields[0..end); returns NULL or the problem. */
static const char *kz__decode_fields(const uint8_t *p, const uint8_t *end, kz_audit_entry *e)
{
    uint8_t last = 0;
    int signed_ = 0;
    while (p < end) {
        /* Two bytes of tag and length before the value: a lie about the
         * length is caught before any pointer moves past `end`. */
        if (end - p < 2)
            return "a field header runs past the record";
        uint8_t tag = p[0], n = p[1];
        const uint8_t *v = p + 2;
        if ((size_t)(end - v) < n)
            return "a field runs past the record";
        if (tag <= last || tag > KZ__TAG_MAX)
            return "fields out of order, repeated or unknown";
        last = tag;
        if (tag == KZ__TAG_DETAIL) {
            if (n == 0 || n >= KZ_AUDIT_DETAIL_MAX)
                return "detail has a bad length";
            for (unsigned i = 0; i < n; i++)
                if (v[i] < 0x20 || v[i] > 0x7e)
                    return "detail is not printable ASCII";
            memcpy(e->rec.detail, v, n);
        } else if (tag == KZ__TAG_SIGNATURE) {
            if (n != KZ_SIGNATURE_BYTES)
                return "signature has a bad length";
            memcpy(e->signature, v, n);
            signed_ = 1;
        } else {
            uint64_t x;
            if (n != kz__tag_width(tag) || (x = kz__get_le(v, n)) == 0)
                return "a numeric field has a bad width or a zero value";
            kz__set_field(e, tag, x);
        }
        p = v + n;
    }
    if (signed_ != (e->rec.type == KZ_AUDIT_CHECKPOINT))
        return "signature missing from a checkpoint or present elsewhere";
    if (e->rec.type == KZ_AUDIT_CHECKPOINT && e->rec.code > KZ_AUDIT_CHECKPOINT_FINAL)
        return "checkpoint has unknown flags";
    return kz__loss_fields_ok(e);
}

/*
 * kz_audit_decode with a reason: returns 0, KZ_EOVERFLOW (buf ends inside
 * the record) or KZ_EPROTO, and sets *why on failure.
 */
static int kz__decode(const uint8_t *buf, size_t len, kz_audit_entry *e, const char **why)
{
    memset(e, 0, sizeof *e);
    *why = "the file ends inside a record";
    if (len < 4)
        return KZ_EOVERFLOW;
    uint32_t size = (uint32_t)kz__get_le(buf, 2);
    *why = "record size field is damaged";
    if ((size ^ (uint32_t)kz__get_le(buf + 2, 2)) != 0xffffu)
        return KZ_EPROTO;
    *why = "record size out of range";
    if (size < KZ__AUDIT_MIN_BYTES || size > KZ_AUDIT_RECORD_MAX)
        return KZ_EPROTO;
    *why = "the file ends inside a record";
    if (len < size)
        return KZ_EOVERFLOW;
    uint8_t h[KZ_AUDIT_HASH_BYTES];
    crypto_generichash(h, sizeof h, buf, size - KZ_AUDIT_HASH_BYTES, NULL, 0);
    *why = "record bytes do not match its hash";
    if (sodium_memcmp(h, buf + size - KZ_AUDIT_HASH_BYTES, sizeof h) != 0)
        return KZ_EPROTO;
    *why = "unknown version, flags or record type";
    if (buf[4] != KZ__AUDIT_VERSION || kz__get_le(buf + 6, 2) != 0 || !kz__type_known(buf[5]))
        return KZ_EPROTO;
    e->rec.type = buf[5];
    e->seq = kz__get_le(buf + 8, 8);
    e->rec.unix_ns = kz__get_le(buf + 16, 8);
    memcpy(e->prev, buf + 24, KZ_AUDIT_HASH_BYTES);
    memcpy(e->hash, h, sizeof h);
    e->size = size;
    *why = kz__decode_fields(buf + KZ__AUDIT_HEAD_BYTES, buf + size - KZ_AUDIT_HASH_BYTES, e);
    return *why ? KZ_EPROTO : KZ_OK;
}

int kz_audit_decode(const uint8_t *buf, size_t len, kz_audit_entry *out)
{
    const char *why;
    KZ_ASSERT(buf != NULL || len == 0);
    KZ_ASSERT(out != NULL);
    return kz__decode(buf, len, out, &why);
}

static int kz__checkpoint_ok(const uint8_t *rec, const kz_audit_entry *e, const uint8_t *pk)
{
    uint8_t msg[KZ__SIGN_MSG_MAX];
    size_t mlen;
    kz__sign_message(rec, e->rec.code, msg, &mlen);
    return crypto_sign_verify_detached(e->signature, msg, mlen, pk) == 0;
}

/* ---- verifier ---------------------------------------------------------- */

typedef struct kz__scan {
    kz_audit_verify_result *r;
    int final_at_end;   /* the last good record is a final checkpoint */
    int torn;           /* stopped at a record the file ends inside */
    uint64_t good_end;  /* offset just past the last good record */
} kz__scan;

static int kz__fail(kz__scan *s, kz_audit_verdict v, const char *why, uint64_t off)
{
    s->r->verdict = v;
    s->r->why = why;
    s->r->bad_index = s->r->records;
    s->r->bad_offset = off;
    return KZ_EAUTH;
}

/* A record whose seq is ahead of the expected one: if the next record
 * holds the expected seq, two were swapped; otherwise some are missing. */
static int kz__seq_ahead(kz__scan *s, const uint8_t *buf, size_t len, size_t off,
                         const kz_audit_entry *e)
{
    kz_audit_entry next;
    const char *why;
    size_t at = off + e->size;
    if (kz__decode(buf + at, len - at, &next, &why) == KZ_OK && next.seq == s->r->expected_seq)
        return kz__fail(s, KZ_AUDIT_REORDERED, "a record appears before one with a lower "
                        "sequence number (records were swapped or moved)", off);
    return kz__fail(s, KZ_AUDIT_DROPPED_RECORD, "sequence numbers skip: a record before this "
                    "one was removed", off);
}

/* Checks the record at `off` against the chain so far; 0 or KZ_EAUTH. */
static int kz__scan_one(kz__scan *s, const uint8_t *buf, size_t len, size_t off,
                        const uint8_t *pk, const uint8_t head[KZ_AUDIT_HASH_BYTES],
                        kz_audit_entry *e)
{
    kz_audit_verify_result *r = s->r;
    const char *why;
    int rc = kz__decode(buf + off, len - off, e, &why);
    if (rc == KZ_EOVERFLOW) {
        s->torn = 1;
        return kz__fail(s, KZ_AUDIT_TRUNCATED, why, off);
    }
    if (rc != KZ_OK)
        return kz__fail(s, KZ_AUDIT_ALTERED, why, off);
    r->found_seq = e->seq;
    if (e->seq > r->expected_seq)
        return kz__seq_ahead(s, buf, len, off, e);
    if (e->seq < r->expected_seq)
        return kz__fail(s, KZ_AUDIT_FORKED, "a sequence number repeats (a duplicated "
                        "record or a second history)", off);
    if (sodium_memcmp(e->prev, head, KZ_AUDIT_HASH_BYTES) != 0)
        return kz__fail(s, KZ_AUDIT_FORKED, "the record does not chain to the one before "
                        "it (its prev hash differs: another history was spliced in)", off);
    if (e->rec.type == KZ_AUDIT_CHECKPOINT && !kz__checkpoint_ok(buf + off, e, pk))
        return kz__fail(s, KZ_AUDIT_BAD_SIGNATURE, "checkpoint signature does not verify "
                        "with this public key (wrong key, or a forged chain)", off);
    return KZ_OK;
}

/* Adds what a good record says about losses to the result. */
static void kz__scan_gaps(kz_audit_verify_result *r, const kz_audit_entry *e)
{
    switch (e->rec.type) {
    case KZ_AUDIT_LOST:
        r->gaps += e->lost != 0;
        r->lost_records += e->lost;
        r->outages += e->rec.code != KZ_AUDIT_LOSS_QUEUE_FULL;
        break;
    case KZ_AUDIT_DROPPED:
        r->gaps += e->rec.code != 0;
        r->lost_records += e->rec.code;
        break;
    case KZ_AUDIT_RECOVERED:
        r->gaps++;
        r->recoveries++;
        r->cut_bytes += e->rec.code;
        break;
    default:
        break;
    }
}

/* The forward pass shared by kz_audit_verify_buffer and recovery. */
static int kz__scan_run(kz__scan *s, const uint8_t *buf, size_t len, const uint8_t *pk,
                        uint32_t flags)
{
    kz_audit_verify_result *r = s->r;
    uint8_t head[KZ_AUDIT_HASH_BYTES] = {0};
    kz_audit_entry e;
    size_t off = 0;
    memset(r, 0, sizeof *r);
    while (off < len) {
        if (kz__scan_one(s, buf, len, off, pk, head, &e) != KZ_OK)
            return KZ_EAUTH;
        memcpy(head, e.hash, sizeof head);
        memcpy(r->head_hash, e.hash, sizeof head);
        r->head_seq = e.seq;
        r->records++;
        r->expected_seq++;
        r->unsigned_tail = e.rec.type == KZ_AUDIT_CHECKPOINT ? 0 : r->unsigned_tail + 1;
        r->checkpoints += e.rec.type == KZ_AUDIT_CHECKPOINT;
        kz__scan_gaps(r, &e);
        s->final_at_end = e.rec.type == KZ_AUDIT_CHECKPOINT &&
                          (e.rec.code & KZ_AUDIT_CHECKPOINT_FINAL) != 0;
        off += e.size;
        s->good_end = off;
    }
    if (r->records == 0)
        return kz__fail(s, KZ_AUDIT_TRUNCATED, "the log is empty", 0);
    if (!s->final_at_end && !(flags & KZ_AUDIT_VERIFY_ALLOW_OPEN))
        return kz__fail(s, KZ_AUDIT_TRUNCATED, "the log does not end with a final signed "
                        "checkpoint (its tail was cut, or the server has not stopped "
                        "cleanly since it last wrote)", len);
    r->verdict = KZ_AUDIT_VALID;
    r->why = "every record is intact, in order and covered by a valid signature";
    return KZ_OK;
}

int kz_audit_verify_buffer(const uint8_t *buf, size_t len,
                           const uint8_t pk[KZ_SIGN_PUBLIC_KEY_BYTES], uint32_t flags,
                           kz_audit_verify_result *r)
{
    KZ_ASSERT(r != NULL && pk != NULL && (buf != NULL || len == 0));
    kz__scan s = {r, 0, 0, 0};
    if (kz__crypto_init() != KZ_OK) {
        memset(r, 0, sizeof *r);
        r->verdict = KZ_AUDIT_UNREADABLE;
        r->why = "libsodium failed to start";
        return KZ_EIO;
    }
    return kz__scan_run(&s, buf, len, pk, flags);
}

/* Maps a file read-only; *len 0 with *map NULL for an empty file. */
static int kz__map(int fd, const uint8_t **map, size_t *len)
{
    struct stat st;
    *map = NULL;
    *len = 0;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return KZ_EIO;
    if (st.st_size == 0)
        return KZ_OK;
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        return KZ_EIO;
    *map = m;
    *len = (size_t)st.st_size;
    return KZ_OK;
}

int kz_audit_verify(const char *path, const uint8_t pk[KZ_SIGN_PUBLIC_KEY_BYTES],
                    uint32_t flags, kz_audit_verify_result *r)
{
    KZ_ASSERT(path != NULL && r != NULL);
    const uint8_t *map;
    size_t len;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int rc = fd < 0 ? KZ_EIO : kz__map(fd, &map, &len);
    if (rc != KZ_OK) {
        memset(r, 0, sizeof *r);
        r->verdict = KZ_AUDIT_UNREADABLE;
        r->why = "cannot open or map the file (missing, not a regular file, or no access)";
    } else {
        rc = kz_audit_verify_buffer(map, len, pk, flags, r);
        if (map)
            munmap((void *)(uintptr_t)map, len);
    }
    if (fd >= 0)
        close(fd);
    return rc;
}

/* ---- writer ------------------------------------------------------------ */

/* A failure of the writer not yet noted in the log. Writer-owned. */
typedef struct kz__outage {
    int active;                      /* began, and no LOST record says so yet */
    uint32_t reason;                 /* kz_audit_loss_reason of the latest failure */
    uint64_t since_ns, until_ns;     /* wall clock: first failure, writing worked again */
    char what[KZ_AUDIT_DETAIL_MAX];  /* the call and its error, for the record */
} kz__outage;

/* The writer's retry state. Writer-owned. */
typedef struct kz__retry {
    int failing;         /* the last attempt failed */
    int dirty;           /* an attempt may have left bytes past synced_size */
    uint64_t pause_ns;   /* the current backoff */
    uint64_t at_ns;      /* monotonic: the next attempt */
    uint64_t log_at_ns;  /* monotonic: the next "still failing" line */
    uint64_t attempts;   /* failed attempts in this outage */
    uint64_t line_at_ns; /* monotonic: when an outage start or end line may be logged */
    uint64_t unlogged;   /* outage start and end lines left out since the last one */
} kz__retry;

struct kz_audit {
    kz_mpsc ring;                /* kz_audit_record, producers -> writer */
    kz_allocator alloc;
    kz_log log;
    kz_audit_clock_fn clock;
    void *clock_ctx;
    kz_audit_io io;
    int fd;
    pthread_t thread;
    uint32_t commit_records, checkpoint_records;
    uint64_t commit_ns, checkpoint_ns, retry_max_ns, close_wait_ns;
    uint8_t sk[KZ_SIGN_SECRET_KEY_BYTES];
    /* Writer-owned state. */
    uint64_t next_seq;
    uint8_t head[KZ_AUDIT_HASH_BYTES];
    uint8_t *wbuf;               /* every record no fdatasync has covered yet */
    size_t wlen;
    uint64_t synced_size;        /* file bytes an fdatasync has covered */
    uint64_t pending;            /* records in wbuf */
    uint64_t pending_events;     /* of which appended by callers */
    uint64_t pending_since;      /* monotonic ns of the oldest pending record */
    uint64_t since_checkpoint;   /* records since the last checkpoint */
    uint64_t last_checkpoint;    /* monotonic ns */
    uint64_t drops_reported;     /* `dropped` as of the last LOST record */
    uint64_t pending_noted;      /* lost records counted by LOST records in wbuf */
    uint64_t last_note;          /* monotonic ns of the last LOST record */
    int final_written;           /* the final checkpoint is in wbuf or the file */
    int gave_up;                 /* closed without being able to write */
    kz__retry retry;
    kz__outage outage;
    /* Shared between threads; zeroed by kz_calloc before the writer starts. */
    _Atomic uint64_t appended, dropped, lost_noted, written, durable, fsyncs, checkpoints;
    _Atomic uint64_t first_seq, acked_seq, recovered_bytes, write_failures, outages;
    _Atomic uint64_t drop_first_ns, drop_last_ns; /* times of refusals not yet noted */
    _Atomic uint64_t stop, flush_req;
    _Atomic uint32_t reason;
    _Atomic int error;           /* KZ_EIO while the writer cannot write */
};

static uint64_t kz__mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t kz__realtime_ns(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void kz__pause(uint64_t ns)
{
    struct timespec t = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
    nanosleep(&t, NULL);
}

void kz_audit_config_default(kz_audit_config *cfg)
{
    KZ_ASSERT(cfg != NULL);
    if (cfg->ring_capacity == 0)
        cfg->ring_capacity = 8192;
    if (cfg->commit_records == 0)
        cfg->commit_records = 256;
    if (cfg->commit_ms == 0)
        cfg->commit_ms = 10;
    if (cfg->checkpoint_records == 0)
        cfg->checkpoint_records = 1024;
    if (cfg->checkpoint_ms == 0)
        cfg->checkpoint_ms = 10000;
    if (cfg->retry_max_ms == 0)
        cfg->retry_max_ms = KZ__AUDIT_RETRY_MAX_MS;
    if (cfg->close_wait_ms == 0)
        cfg->close_wait_ms = KZ__AUDIT_CLOSE_WAIT_MS;
}

/* ---- file operations (kz_audit_io) ---- */

static int64_t kz__sys_write(void *ctx, int fd, const void *buf, size_t n)
{
    (void)ctx;
    ssize_t w = write(fd, buf, n);
    return w < 0 ? -(int64_t)errno : (int64_t)w;
}

static int kz__sys_sync(void *ctx, int fd)
{
    (void)ctx;
    return fdatasync(fd) == 0 ? 0 : -errno;
}

static int kz__sys_truncate(void *ctx, int fd, uint64_t size)
{
    (void)ctx;
    return ftruncate(fd, (off_t)size) == 0 ? 0 : -errno;
}

static void kz__io_resolve(kz_audit_io *io)
{
    if (io->write == NULL)
        io->write = kz__sys_write;
    if (io->sync == NULL)
        io->sync = kz__sys_sync;
    if (io->truncate == NULL)
        io->truncate = kz__sys_truncate;
}

/* Writes all of p[0..n); 0 or a negative errno. A hook that reports no
 * progress is an I/O error rather than a reason to spin. */
static int kz__write_all(kz_audit *a, const uint8_t *p, size_t n)
{
    while (n > 0) {
        int64_t w = a->io.write(a->io.ctx, a->fd, p, n);
        if (w == -EINTR)
            continue;
        if (w < 0)
            return (int)w;
        if (w == 0 || (uint64_t)w > n)
            return -EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static uint32_t kz__reason_of(int err)
{
    switch (-err) {
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
        return KZ_AUDIT_LOSS_NO_SPACE;
    case EROFS:
    case EPERM:
    case EACCES:
        return KZ_AUDIT_LOSS_READ_ONLY;
    default:
        return KZ_AUDIT_LOSS_IO_ERROR;
    }
}

/*
 * Before writing the buffer again after a failed attempt: cuts whatever
 * that attempt left past the last synced byte. A file that may not be cut
 * (append-only) keeps those bytes, which are a prefix of the buffer, and
 * *skip says how many to leave out. 0 or a negative errno.
 */
static int kz__rewind(kz_audit *a, size_t *skip, const char **what)
{
    struct stat st;
    *skip = 0;
    *what = "ftruncate";
    int rc = a->io.truncate(a->io.ctx, a->fd, a->synced_size);
    if (rc == 0)
        return 0;
    if (fstat(a->fd, &st) != 0 || (uint64_t)st.st_size < a->synced_size ||
        (uint64_t)st.st_size - a->synced_size > a->wlen)
        return rc; /* not what a failed append leaves: try again later */
    *skip = (size_t)((uint64_t)st.st_size - a->synced_size);
    return 0;
}

/* One attempt to make the whole buffer durable. 0, or a negative errno
 * with *what naming the call that failed. */
static int kz__attempt(kz_audit *a, const char **what)
{
    size_t skip = 0;
    int rc = a->retry.dirty ? kz__rewind(a, &skip, what) : 0;
    if (rc != 0)
        return rc;
    a->retry.dirty = 1; /* until the sync below covers what is written */
    *what = "write";
    if ((rc = kz__write_all(a, a->wbuf + skip, a->wlen - skip)) != 0)
        return rc;
    *what = "fdatasync";
    if ((rc = a->io.sync(a->io.ctx, a->fd)) != 0)
        return rc;
    a->retry.dirty = 0;
    return 0;
}

/* ---- failure, retry and resumption ---- */

/* Widens the span of the refusals not yet noted to include `unix_ns`
 * (any thread, lock-free). */
static void kz__note_refusal_time(kz_audit *a, uint64_t unix_ns)
{
    uint64_t zero = 0, last = kz__ld(&a->drop_last_ns);
    if (unix_ns == 0)
        return;
    atomic_compare_exchange_strong(&a->drop_first_ns, &zero, unix_ns);
    while (last < unix_ns && !atomic_compare_exchange_weak(&a->drop_last_ns, &last, unix_ns))
        ;
}

/* Whether an outage's start or end may be logged now: a file system at
 * the edge of full can make the writer fail and resume many times a
 * second, so these lines are at least KZ__AUDIT_LOG_GAP_NS apart and the
 * next one says how many were left out. */
static int kz__outage_line_ok(kz_audit *a, uint64_t now)
{
    if (now < a->retry.line_at_ns) {
        a->retry.unlogged++;
        return 0;
    }
    a->retry.line_at_ns = now + KZ__AUDIT_LOG_GAP_NS;
    return 1;
}

/* The first failed attempt of an outage: remember why and since when. An
 * outage not yet noted in the log (a new failure soon after resuming)
 * keeps its start. */
static void kz__outage_begin(kz_audit *a, int err, const char *what, uint64_t now)
{
    kz__outage *o = &a->outage;
    if (!o->active) {
        o->active = 1;
        o->since_ns = a->clock(a->clock_ctx);
    }
    o->reason = kz__reason_of(err);
    snprintf(o->what, sizeof o->what, "%s: %s", what, strerror(-err));
    kz__add(&a->outages, 1);
    if (!kz__outage_line_ok(a, now))
        return;
    kz_logf(&a->log, KZ_LOG_ERROR, "audit",
            "audit_write_failed op=%s error=\"%s\" queued=%u lines_left_out=%llu "
            "why=\"records wait in the queue and are retried; new ones are lost once it is "
            "full\"", what, strerror(-err), kz_mpsc_size(&a->ring),
            (unsigned long long)a->retry.unlogged);
    a->retry.unlogged = 0;
}

/* A failed attempt: enter or stay in the failing state, back off. */
static void kz__attempt_failed(kz_audit *a, int err, const char *what)
{
    kz__retry *t = &a->retry;
    uint64_t now = kz__mono_ns();
    kz__add(&a->write_failures, 1);
    atomic_store(&a->reason, kz__reason_of(err));
    atomic_store(&a->error, KZ_EIO);
    t->attempts++;
    if (!t->failing) {
        t->failing = 1;
        t->pause_ns = KZ__AUDIT_RETRY_MIN_NS;
        t->log_at_ns = now + KZ__AUDIT_LOG_EVERY_NS;
        kz__outage_begin(a, err, what, now);
    } else {
        t->pause_ns = t->pause_ns * 2 < a->retry_max_ns ? t->pause_ns * 2 : a->retry_max_ns;
        if (now >= t->log_at_ns) {
            t->log_at_ns = now + KZ__AUDIT_LOG_EVERY_NS;
            kz_logf(&a->log, KZ_LOG_ERROR, "audit",
                    "audit_still_failing op=%s error=\"%s\" attempts=%llu queued=%u lost=%llu",
                    what, strerror(-err), (unsigned long long)t->attempts,
                    kz_mpsc_size(&a->ring),
                    (unsigned long long)(kz__ld(&a->dropped) - a->drops_reported));
        }
    }
    t->at_ns = now + t->pause_ns;
}

/* A commit succeeded after failures: the outage ends now; the LOST record
 * that says so is written by the next turn, before any other record. */
static void kz__resumed(kz_audit *a)
{
    a->outage.until_ns = a->clock(a->clock_ctx);
    if (a->outage.until_ns < a->outage.since_ns)
        a->outage.until_ns = a->outage.since_ns; /* the wall clock stepped back */
    if (kz__outage_line_ok(a, kz__mono_ns())) {
        kz_logf(&a->log, KZ_LOG_WARN, "audit", "audit_write_resumed attempts=%llu "
                "outage_ms=%llu lost=%llu lines_left_out=%llu",
                (unsigned long long)a->retry.attempts,
                (unsigned long long)((a->outage.until_ns - a->outage.since_ns) / 1000000ull),
                (unsigned long long)(kz__ld(&a->dropped) - a->drops_reported),
                (unsigned long long)a->retry.unlogged);
        a->retry.unlogged = 0;
    }
    a->retry.failing = 0;
    a->retry.attempts = 0;
    atomic_store(&a->error, 0);
}

/* ---- encoding into the buffer ---- */

/* Encodes, chains and buffers one record; `event` if a caller appended
 * it. The callers keep KZ_AUDIT_RECORD_MAX bytes free (kz__room). */
static void kz__emit(kz_audit *a, const kz_audit_record *rec, const kz__loss_fields *loss,
                     int event)
{
    uint8_t hash[KZ_AUDIT_HASH_BYTES];
    KZ_ASSERT(KZ__AUDIT_WBUF_BYTES - a->wlen >= KZ_AUDIT_RECORD_MAX);
    a->wlen += kz__encode(a->next_seq, a->head, rec, loss, a->sk, a->wbuf + a->wlen, hash);
    memcpy(a->head, hash, sizeof hash);
    a->next_seq++;
    if (a->pending == 0)
        a->pending_since = kz__mono_ns();
    a->pending++;
    a->pending_events += (uint64_t)event;
    a->since_checkpoint++;
    kz__add(&a->written, 1);
}

/* Emits a record of the writer's own, stamped now. */
static void kz__emit_own(kz_audit *a, uint8_t type, uint32_t code, const char *detail,
                         const kz__loss_fields *loss)
{
    kz_audit_record r;
    memset(&r, 0, sizeof r);
    r.type = type;
    r.code = code;
    r.unix_ns = a->clock(a->clock_ctx);
    if (detail != NULL)
        snprintf(r.detail, sizeof r.detail, "%s", detail);
    kz__emit(a, &r, loss, 0);
}

static void kz__checkpoint(kz_audit *a, uint32_t code)
{
    kz__emit_own(a, KZ_AUDIT_CHECKPOINT, code, NULL, NULL);
    a->since_checkpoint = 0;
    a->last_checkpoint = kz__mono_ns();
    kz__add(&a->checkpoints, 1);
}

/* Group commit: make the buffer durable and publish the progress. On
 * failure the buffer is kept for the next attempt. 0 or KZ_EIO. */
static int kz__commit(kz_audit *a)
{
    const char *what = "write";
    int err = kz__attempt(a, &what);
    if (err != 0) {
        kz__attempt_failed(a, err, what);
        return KZ_EIO;
    }
    kz__add(&a->fsyncs, 1);
    kz__add(&a->durable, a->pending_events);
    kz__add(&a->lost_noted, a->pending_noted); /* noted once the note is durable */
    kz__st(&a->acked_seq, a->next_seq);
    a->synced_size += a->wlen;
    a->wlen = 0;
    a->pending = a->pending_events = a->pending_noted = 0;
    if (a->retry.failing)
        kz__resumed(a);
    return KZ_OK;
}

/* The span of a LOST record: the outage's, widened by the refusals. */
static void kz__loss_span(kz_audit *a, kz__loss_fields *f)
{
    uint64_t first = atomic_exchange(&a->drop_first_ns, 0);
    uint64_t last = atomic_exchange(&a->drop_last_ns, 0);
    uint64_t now = a->clock(a->clock_ctx);
    if (a->outage.active) {
        f->since_ns = first && first < a->outage.since_ns ? first : a->outage.since_ns;
        f->until_ns = last > a->outage.until_ns ? last : a->outage.until_ns;
    } else {
        /* A refusal whose time was taken just after the previous note can
         * leave one side unknown: fall back to the other, or now. */
        f->since_ns = first ? first : last ? last : now;
        f->until_ns = last ? last : f->since_ns;
    }
    if (f->until_ns < f->since_ns)
        f->until_ns = f->since_ns;
}

/*
 * Puts a LOST record into the chain, before any later record, for an
 * outage that ended and for records refused since the last one. A note
 * for an outage is followed by a checkpoint, so that it is signed at
 * once. Queue-full notes come at most every KZ__AUDIT_NOTE_EVERY_NS
 * unless `force`, so an overload does not fill the log with notes.
 */
static void kz__note_losses(kz_audit *a, int force)
{
    uint64_t d = kz__ld(&a->dropped), n = d - a->drops_reported, now = kz__mono_ns();
    int outage = a->outage.active;
    if (!outage && (n == 0 || (!force && now - a->last_note < KZ__AUDIT_NOTE_EVERY_NS)))
        return;
    kz__loss_fields f = {n, 0, 0};
    kz__loss_span(a, &f);
    kz__emit_own(a, KZ_AUDIT_LOST, outage ? a->outage.reason : KZ_AUDIT_LOSS_QUEUE_FULL,
                 outage ? a->outage.what : "queue full", &f);
    a->drops_reported = d;
    a->last_note = now;
    a->pending_noted += n;
    if (outage) {
        kz__checkpoint(a, 0);
        a->outage.active = 0;
    }
}

/* ---- the writer thread ---- */

/* How many records may be taken from the ring now: each may bring a
 * checkpoint, and the reserve stays free for notes and the final one. */
static uint32_t kz__room(const kz_audit *a)
{
    size_t left = KZ__AUDIT_WBUF_BYTES - a->wlen;
    if (left <= KZ__AUDIT_WBUF_RESERVE)
        return 0;
    size_t n = (left - KZ__AUDIT_WBUF_RESERVE) / KZ__AUDIT_SLOT_BYTES;
    return n < KZ__AUDIT_BATCH ? (uint32_t)n : KZ__AUDIT_BATCH;
}

static uint32_t kz__drain(kz_audit *a)
{
    kz_audit_record batch[KZ__AUDIT_BATCH];
    uint32_t n = kz_mpsc_pop_n(&a->ring, batch, kz__room(a));
    for (uint32_t i = 0; i < n; i++) {
        kz__emit(a, &batch[i], NULL, 1);
        if (a->since_checkpoint >= a->checkpoint_records)
            kz__checkpoint(a, 0);
    }
    return n;
}

/* One turn of a writer that can write: note losses, drain a batch,
 * checkpoint and commit when due. Returns non-zero if it did work that
 * may have more behind it (records taken, or a full buffer committed). */
static int kz__turn(kz_audit *a, int stopping)
{
    /* An outage that ended within NOTE_EVERY of the last note waits, and
     * the ring with it, so that a writer failing and resuming many times a
     * second writes one merged note per period, still before any later
     * record. */
    if (a->outage.active && !stopping && kz__mono_ns() - a->last_note < KZ__AUDIT_NOTE_EVERY_NS)
        return 0;
    kz__note_losses(a, stopping);
    uint32_t n = kz__drain(a);
    uint64_t now = kz__mono_ns();
    if (a->since_checkpoint > 0 && now - a->last_checkpoint >= a->checkpoint_ns)
        kz__checkpoint(a, 0);
    int full = kz__room(a) == 0;
    int flush = atomic_exchange(&a->flush_req, 0) != 0;
    if (a->pending > 0 && (full || flush || stopping || a->pending >= a->commit_records ||
                           now - a->pending_since >= a->commit_ns))
        (void)kz__commit(a); /* a failure is handled by the failing state */
    return n > 0 || full;
}

/* Closing with the ring empty: note what was lost, sign the end. */
static int kz__finish(kz_audit *a)
{
    if (!a->final_written) {
        kz__note_losses(a, 1);
        kz__checkpoint(a, KZ_AUDIT_CHECKPOINT_FINAL);
        a->final_written = 1;
    }
    return kz__commit(a);
}

/*
 * Closing while the file still cannot be written: everything unwritten
 * is lost. It is counted, the file is cut back to its last synced byte
 * when possible (the next open notes the unclean end either way) and the
 * loss is logged.
 */
static void kz__give_up(kz_audit *a)
{
    kz_audit_record r;
    uint64_t left = a->pending_events;
    while (kz_mpsc_pop(&a->ring, &r) == KZ_OK)
        left++;
    kz__add(&a->dropped, left);
    if (a->retry.dirty)
        (void)a->io.truncate(a->io.ctx, a->fd, a->synced_size);
    a->gave_up = 1;
    kz_logf(&a->log, KZ_LOG_ERROR, "audit", "audit_gave_up lost=%llu unnoted=%llu why=\"%s; "
            "the log ends at its last synced record and the next open notes the unclean end\"",
            (unsigned long long)left,
            (unsigned long long)(kz__ld(&a->dropped) - a->drops_reported), a->outage.what);
}

/* A turn of a failing writer: retry when due; while closing, give up
 * after close_wait. Returns 1 when the writer is done. */
static int kz__retry_turn(kz_audit *a, int stopping, uint64_t *give_up_at)
{
    uint64_t now = kz__mono_ns();
    if (stopping) {
        if (*give_up_at == 0)
            *give_up_at = now + a->close_wait_ns;
        if (now >= *give_up_at) {
            kz__give_up(a);
            return 1;
        }
    }
    if (now >= a->retry.at_ns && kz__commit(a) == KZ_OK)
        return a->final_written;
    kz__pause(KZ__AUDIT_IDLE_NS);
    return 0;
}

static void *kz__writer(void *arg)
{
    kz_audit *a = arg;
    uint64_t give_up_at = 0;
    for (;;) {
        int stopping = kz__ld(&a->stop) != 0;
        if (a->retry.failing) {
            if (kz__retry_turn(a, stopping, &give_up_at))
                return NULL;
            continue;
        }
        if (kz__turn(a, stopping) || a->retry.failing)
            continue;
        /* Closing: no appends are in flight and the ring is empty. */
        if (stopping) {
            if (kz__finish(a) == KZ_OK)
                return NULL;
            continue;
        }
        kz__pause(KZ__AUDIT_IDLE_NS);
    }
}

int kz_audit_append(kz_audit *a, const kz_audit_record *rec)
{
    KZ_ASSERT(a != NULL && rec != NULL);
    if (rec->type < 1 || rec->type > KZ_AUDIT_CALLER_MAX)
        return KZ_EINVAL;
    kz_audit_record r = *rec;
    if (r.unix_ns == 0)
        r.unix_ns = a->clock(a->clock_ctx);
    if (kz_mpsc_push(&a->ring, &r) != KZ_OK) {
        /* The time first, then the count: the writer reads the count
         * first, so a note never counts a refusal whose time it missed. */
        kz__note_refusal_time(a, r.unix_ns);
        kz__add(&a->dropped, 1);
        return KZ_EFULL;
    }
    kz__add(&a->appended, 1);
    return KZ_OK;
}

int kz_audit_flush(kz_audit *a, uint32_t timeout_ms)
{
    KZ_ASSERT(a != NULL);
    uint64_t target = kz__ld(&a->appended);
    uint64_t deadline = kz__mono_ns() + (uint64_t)timeout_ms * 1000000ull;
    for (;;) {
        if (atomic_load(&a->error) != 0)
            return KZ_EIO;
        if (kz__ld(&a->durable) >= target)
            return KZ_OK;
        if (kz__mono_ns() >= deadline)
            return KZ_EAGAIN;
        kz__st(&a->flush_req, 1);
        kz__pause(200000);
    }
}

void kz_audit_stats_get(const kz_audit *a, kz_audit_stats *out)
{
    KZ_ASSERT(a != NULL && out != NULL);
    memset(out, 0, sizeof *out);
    out->appended = kz__ld(&a->appended);
    out->dropped = kz__ld(&a->dropped);
    out->lost_noted = kz__ld(&a->lost_noted);
    out->written = kz__ld(&a->written);
    out->durable = kz__ld(&a->durable);
    out->lag = out->appended > out->durable ? out->appended - out->durable : 0;
    out->fsyncs = kz__ld(&a->fsyncs);
    out->checkpoints = kz__ld(&a->checkpoints);
    out->first_seq = kz__ld(&a->first_seq);
    out->acked_seq = kz__ld(&a->acked_seq);
    out->recovered_bytes = kz__ld(&a->recovered_bytes);
    out->write_failures = kz__ld(&a->write_failures);
    out->outages = kz__ld(&a->outages);
    out->queued = kz_mpsc_size(&a->ring);
    out->reason = atomic_load(&a->reason);
    out->error = atomic_load(&a->error);
}

/* ---- open, recovery, close --------------------------------------------- */

static int kz__all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return 0;
    return 1;
}

/* Cuts the torn tail at `good_end` and syncs; 0 or KZ_EIO (logged). */
static int kz__cut_tail(kz_audit *a, const char *path, uint64_t good_end)
{
    int err = a->io.truncate(a->io.ctx, a->fd, good_end);
    if (err == 0)
        err = a->io.sync(a->io.ctx, a->fd);
    if (err == 0)
        return KZ_OK;
    kz_logf(&a->log, KZ_LOG_ERROR, "audit", "%s: cannot cut the torn tail: %s", path,
            strerror(-err));
    return KZ_EIO;
}

/*
 * Notes an unclean end in a RECOVERED record: bytes cut in `code`,
 * incomplete records among them in `lost`. Records the crashed session
 * had appended but not yet written are not in the file and cannot be
 * counted; the record marks where they would have been.
 */
static void kz__note_recovery(kz_audit *a, const char *path, uint64_t kept, uint64_t cut,
                              int torn)
{
    kz__loss_fields f = {(uint64_t)(cut > 0 && torn), 0, 0};
    kz_logf(&a->log, KZ_LOG_WARN, "audit", "%s: recovered after a crash: %llu records "
            "kept, %llu torn bytes cut", path, (unsigned long long)kept,
            (unsigned long long)cut);
    kz__emit_own(a, KZ_AUDIT_RECOVERED, cut > UINT32_MAX ? UINT32_MAX : (uint32_t)cut,
                 "unclean end", &f);
}

/*
 * Scans the existing file, cuts a torn tail and sets the chain state.
 * A damaged record followed by anything but zero bytes is refused: only a
 * crash leaves a torn tail, and a crash cannot damage synced records.
 */
static int kz__recover(kz_audit *a, const char *path, const uint8_t *pk)
{
    const uint8_t *map;
    size_t len;
    kz_audit_verify_result r;
    kz__scan s = {&r, 0, 0, 0};
    memset(&r, 0, sizeof r);
    if (kz__map(a->fd, &map, &len) != KZ_OK) {
        kz_logf(&a->log, KZ_LOG_ERROR, "audit", "%s: cannot read: %s", path, strerror(errno));
        return KZ_EIO;
    }
    int rc = len ? kz__scan_run(&s, map, len, pk, KZ_AUDIT_VERIFY_ALLOW_OPEN) : KZ_OK;
    int torn = rc != KZ_OK && (s.torn || (r.verdict == KZ_AUDIT_ALTERED &&
                                          kz__all_zero(map + s.good_end, len - s.good_end)));
    if (len && map)
        munmap((void *)(uintptr_t)map, len);
    if (rc != KZ_OK && !torn) {
        kz_logf(&a->log, KZ_LOG_ERROR, "audit", "%s: record %llu (offset %llu): %s: %s; "
                "refusing to append (move the file aside)", path,
                (unsigned long long)r.bad_index, (unsigned long long)r.bad_offset,
                kz_audit_verdict_name(r.verdict), r.why);
        return r.verdict == KZ_AUDIT_BAD_SIGNATURE ? KZ_EAUTH : KZ_EPROTO;
    }
    uint64_t cut = len - s.good_end;
    if (cut > 0 && kz__cut_tail(a, path, s.good_end) != KZ_OK)
        return KZ_EIO;
    a->synced_size = s.good_end;
    a->next_seq = r.records ? r.head_seq + 1 : 0;
    memcpy(a->head, r.head_hash, sizeof a->head);
    kz__st(&a->first_seq, a->next_seq);
    kz__st(&a->acked_seq, a->next_seq);
    kz__st(&a->recovered_bytes, cut);
    if (cut > 0 || (r.records > 0 && !s.final_at_end))
        kz__note_recovery(a, path, r.records, cut, s.torn);
    return KZ_OK;
}

/* Syncs the directory holding `path`, so a new file's name is durable. */
static void kz__sync_dir(const char *path)
{
    char dir[4096] = ".";
    const char *slash = strrchr(path, '/');
    if (slash != NULL) {
        size_t n = slash == path ? 1 : (size_t)(slash - path);
        if (n >= sizeof dir)
            return;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

static int kz__open_file(kz_audit *a, const char *path)
{
    struct stat st;
    int existed = stat(path, &st) == 0;
    a->fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (a->fd < 0) {
        kz_logf(&a->log, KZ_LOG_ERROR, "audit", "%s: cannot open: %s", path, strerror(errno));
        return KZ_EIO;
    }
    /* One writer per file: a second server on the same file would fork the
     * chain. */
    if (flock(a->fd, LOCK_EX | LOCK_NB) != 0) {
        kz_logf(&a->log, KZ_LOG_ERROR, "audit", "%s: cannot lock (another server writes "
                "it?): %s", path, strerror(errno));
        return KZ_EIO;
    }
    if (!existed)
        kz__sync_dir(path);
    return KZ_OK;
}

/* Frees everything open() set up; the thread is not running. */
static void kz__destroy(kz_audit *a)
{
    if (a->fd >= 0)
        close(a->fd); /* releases the lock */
    kz_free(&a->alloc, a->wbuf, KZ__AUDIT_WBUF_BYTES);
    if (a->ring.slots)
        kz_mpsc_fini(&a->ring);
    sodium_memzero(a->sk, sizeof a->sk);
    kz_allocator al = a->alloc;
    kz_free(&al, a, sizeof *a);
}

static int kz__config_ok(const kz_audit_config *c, uint8_t pk[KZ_SIGN_PUBLIC_KEY_BYTES])
{
    uint8_t sk2[KZ_SIGN_SECRET_KEY_BYTES];
    if (c->path == NULL || c->path[0] == '\0' ||
        (c->ring_capacity & (c->ring_capacity - 1)) != 0 || c->ring_capacity < 2)
        return 0;
    /* The secret key is seed || public key: both halves must agree. */
    crypto_sign_seed_keypair(pk, sk2, c->sign_secret_key);
    int ok = sodium_memcmp(sk2, c->sign_secret_key, sizeof sk2) == 0;
    sodium_memzero(sk2, sizeof sk2);
    return ok;
}

/* Copies the settings of a checked, defaulted config into `a`. */
static void kz__settings(kz_audit *a, const kz_audit_config *c)
{
    a->alloc = c->alloc;
    a->log = c->log;
    a->fd = -1;
    a->clock = c->clock ? c->clock : kz__realtime_ns;
    a->clock_ctx = c->clock_ctx;
    a->io = c->io;
    kz__io_resolve(&a->io);
    a->commit_records = c->commit_records;
    a->checkpoint_records = c->checkpoint_records;
    a->commit_ns = (uint64_t)c->commit_ms * 1000000ull;
    a->checkpoint_ns = (uint64_t)c->checkpoint_ms * 1000000ull;
    a->retry_max_ns = (uint64_t)c->retry_max_ms * 1000000ull;
    a->close_wait_ns = (uint64_t)c->close_wait_ms * 1000000ull;
    memcpy(a->sk, c->sign_secret_key, sizeof a->sk);
}

int kz_audit_open(const kz_audit_config *cfg, kz_audit **out)
{
    KZ_ASSERT(cfg != NULL && out != NULL);
    kz_audit_config c = *cfg;
    uint8_t pk[KZ_SIGN_PUBLIC_KEY_BYTES];
    *out = NULL;
    kz_audit_config_default(&c);
    kz_allocator_resolve(&c.alloc);
    if (kz__crypto_init() != KZ_OK)
        return KZ_EIO;
    if (!kz__config_ok(&c, pk))
        return KZ_EINVAL;
    kz_audit *a = kz_calloc(&c.alloc, sizeof *a, KZ_CACHE_LINE);
    if (a == NULL)
        return KZ_ENOMEM;
    kz__settings(a, &c);
    sodium_memzero(c.sign_secret_key, sizeof c.sign_secret_key);
    int rc = KZ_ENOMEM;
    a->wbuf = kz_alloc(&a->alloc, KZ__AUDIT_WBUF_BYTES, 64);
    if (a->wbuf == NULL ||
        kz_mpsc_init(&a->ring, c.ring_capacity, sizeof(kz_audit_record), &a->alloc) != KZ_OK)
        goto fail;
    if ((rc = kz__open_file(a, c.path)) != KZ_OK || (rc = kz__recover(a, c.path, pk)) != KZ_OK)
        goto fail;
    a->last_checkpoint = kz__mono_ns();
    rc = KZ_EIO;
    if (pthread_create(&a->thread, NULL, kz__writer, a) != 0)
        goto fail;
    *out = a;
    return KZ_OK;
fail:
    kz__destroy(a);
    return rc;
}

int kz_audit_close(kz_audit *a)
{
    if (a == NULL)
        return KZ_OK;
    kz__st(&a->stop, 1);
    pthread_join(a->thread, NULL);
    /* Every loss is in the log unless the writer gave up. */
    int rc = a->gave_up || kz__ld(&a->dropped) != kz__ld(&a->lost_noted) ? KZ_EIO : KZ_OK;
    kz__destroy(a);
    return rc;
}
