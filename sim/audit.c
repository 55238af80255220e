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
#define KZ__AUDIT_WBUF_BYTES (64u * 1024u)
#define KZ__AUDIT_BATCH 64u
#define KZ__AUDIT_IDLE_NS 1000000ull /* writer's poll period when idle */

/* Field tags, ascending in a record; part of the format. */
enum {
    KZ__TAG_CLIENT = 1,     /* u64 */
    KZ__TAG_ENTITY = 2,     /* u32 */
    KZ__TAG_LEVEL = 3,      /* u8 */
    KZ__TAG_ACTOR = 4,      /* u8 */
    KZ__TAG_ACTING_FOR = 5, /* u64 */
    KZ__TAG_CODE = 6,       /* u32 */
    KZ__TAG_DETAIL = 7,     /* 1..63 printable ASCII bytes */
    KZ__TAG_SIGNATURE = 8   /* 64 bytes; checkpoints only, required there */
};

#define KZ__A64(field) ((_Atomic uint64_t *)&(field))
#define KZ__AINT(field) ((_Atomic int *)&(field))

static uint64_t kz__ld(const uint64_t *p)
{
    return atomic_load_explicit((_Atomic uint64_t *)(uintptr_t)p, memory_order_acquire);
}

static void kz__add(uint64_t *p, uint64_t v)
{
    atomic_fetch_add_explicit(KZ__A64(*p), v, memory_order_acq_rel);
}

static void kz__st(uint64_t *p, uint64_t v)
{
    atomic_store_explicit(KZ__A64(*p), v, memory_order_release);
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
        "zone-refusal", "block", "violation", "kick", "key-change"};
    if (type <= KZ_AUDIT_CALLER_MAX)
        return names[type];
    if (type == KZ_AUDIT_CHECKPOINT)
        return "checkpoint";
    if (type == KZ_AUDIT_RECOVERED)
        return "recovered";
    if (type == KZ_AUDIT_DROPPED)
        return "dropped";
    return "?";
}

static int kz__type_known(uint32_t type)
{
    return (type >= 1 && type <= KZ_AUDIT_CALLER_MAX) || type == KZ_AUDIT_CHECKPOINT ||
           type == KZ_AUDIT_RECOVERED || type == KZ_AUDIT_DROPPED;
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

/*
 * Encodes one record with sequence `seq` after chain head `prev` into
 * out[KZ_AUDIT_RECORD_MAX]; a checkpoint is signed with `sk`. Writes its
 * hash to hash_out and returns the size. Detail bytes outside printable
 * ASCII become '?'.
 */
static uint32_t kz__encode(uint64_t seq, const uint8_t prev[KZ_AUDIT_HASH_BYTES],
                           const kz_audit_record *r, const uint8_t *sk, uint8_t *out,
                           uint8_t hash_out[KZ_AUDIT_HASH_BYTES])
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
    static const uint8_t w[] = {0, 8, 4, 1, 1, 8, 4, 0, 0};
    return tag < sizeof w ? w[tag] : 0;
}

/* Stores one numeric field's value into the record. */
static void kz__set_field(kz_audit_record *r, uint8_t tag, uint64_t v)
{
    switch (tag) {
    case KZ__TAG_CLIENT: r->client_id = v; break;
    case KZ__TAG_ENTITY: r->entity = (uint32_t)v; break;
    case KZ__TAG_LEVEL: r->verification_level = (uint8_t)v; break;
    case KZ__TAG_ACTOR: r->actor_kind = (uint8_t)v; break;
    case KZ__TAG_ACTING_FOR: r->acting_for = v; break;
    default: r->code = (uint32_t)v; break;
    }
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
        if (tag <= last || tag > KZ__TAG_SIGNATURE)
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
            kz__set_field(&e->rec, tag, x);
        }
        p = v + n;
    }
    if (signed_ != (e->rec.type == KZ_AUDIT_CHECKPOINT))
        return "signature missing from a checkpoint or present elsewhere";
    if (e->rec.type == KZ_AUDIT_CHECKPOINT && e->rec.code > KZ_AUDIT_CHECKPOINT_FINAL)
        return "checkpoint has unknown flags";
    return NULL;
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

struct kz_audit {
    kz_mpsc ring;                /* kz_audit_record, producers -> writer */
    kz_allocator alloc;
    kz_log log;
    kz_audit_clock_fn clock;
    void *clock_ctx;
    int fd;
    pthread_t thread;
    uint32_t commit_records, checkpoint_records;
    uint64_t commit_ns, checkpoint_ns;
    uint8_t sk[KZ_SIGN_SECRET_KEY_BYTES];
    /* Writer-owned state. */
    uint64_t next_seq;
    uint8_t head[KZ_AUDIT_HASH_BYTES];
    uint8_t *wbuf;
    size_t wlen;
    uint64_t pending;            /* records written or buffered, not yet synced */
    uint64_t pending_events;     /* of which appended by callers */
    uint64_t pending_since;      /* monotonic ns of the oldest pending record */
    uint64_t since_checkpoint;   /* records since the last checkpoint */
    uint64_t last_checkpoint;    /* monotonic ns */
    uint64_t drops_reported;
    /* Shared, atomic. */
    uint64_t appended, dropped, written, durable, fsyncs, checkpoints;
    uint64_t first_seq, acked_seq, recovered_bytes;
    uint64_t stop, flush_req;
    int error;
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
}

static int kz__write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return KZ_EIO;
        p += w;
        n -= (size_t)w;
    }
    return KZ_OK;
}

/* The writer failed: remember the first error; later records are counted
 * as dropped instead of being written. */
static void kz__writer_fail(kz_audit *a, const char *what)
{
    int expected = 0;
    if (atomic_compare_exchange_strong(KZ__AINT(a->error), &expected, KZ_EIO))
        kz_logf(&a->log, KZ_LOG_ERROR, "audit", "%s failed: %s; audit records are being lost",
                what, strerror(errno));
}

static int kz__failed(const kz_audit *a)
{
    return atomic_load_explicit((_Atomic int *)(uintptr_t)&a->error, memory_order_acquire) != 0;
}

/* Writes out the buffer without syncing (the buffer is full). */
static void kz__spill(kz_audit *a)
{
    if (a->wlen > 0 && !kz__failed(a) && kz__write_all(a->fd, a->wbuf, a->wlen) != KZ_OK)
        kz__writer_fail(a, "write");
    a->wlen = 0;
}

/* Encodes, chains and buffers one record; `event` if a caller appended it. */
static void kz__emit(kz_audit *a, const kz_audit_record *rec, int event)
{
    if (kz__failed(a)) {
        if (event)
            kz__add(&a->dropped, 1);
        return;
    }
    if (KZ__AUDIT_WBUF_BYTES - a->wlen < KZ_AUDIT_RECORD_MAX)
        kz__spill(a);
    uint8_t hash[KZ_AUDIT_HASH_BYTES];
    a->wlen += kz__encode(a->next_seq, a->head, rec, a->sk, a->wbuf + a->wlen, hash);
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
static void kz__emit_own(kz_audit *a, uint8_t type, uint32_t code)
{
    kz_audit_record r;
    memset(&r, 0, sizeof r);
    r.type = type;
    r.code = code;
    r.unix_ns = a->clock(a->clock_ctx);
    kz__emit(a, &r, 0);
}

static void kz__checkpoint(kz_audit *a, uint32_t code)
{
    kz__emit_own(a, KZ_AUDIT_CHECKPOINT, code);
    a->since_checkpoint = 0;
    a->last_checkpoint = kz__mono_ns();
    kz__add(&a->checkpoints, 1);
}

/* Group commit: write what is buffered, fdatasync, publish progress. */
static void kz__commit(kz_audit *a)
{
    kz__spill(a);
    if (!kz__failed(a)) {
        if (fdatasync(a->fd) != 0)
            kz__writer_fail(a, "fdatasync");
        else {
            kz__add(&a->fsyncs, 1);
            kz__add(&a->durable, a->pending_events);
            kz__st(&a->acked_seq, a->next_seq);
        }
    }
    if (kz__failed(a))
        kz__add(&a->dropped, a->pending_events);
    a->pending = a->pending_events = 0;
}

/* A record of refusals since the last one, so that a loss is in the log. */
static void kz__note_drops(kz_audit *a)
{
    uint64_t d = kz__ld(&a->dropped);
    if (d == a->drops_reported)
        return;
    uint64_t n = d - a->drops_reported;
    a->drops_reported = d;
    kz__emit_own(a, KZ_AUDIT_DROPPED, n > UINT32_MAX ? UINT32_MAX : (uint32_t)n);
}

/* One turn of the writer: drain a batch, checkpoint and commit when due.
 * Returns the number of records taken from the ring. */
static uint32_t kz__turn(kz_audit *a, int stopping)
{
    kz_audit_record batch[KZ__AUDIT_BATCH];
    uint32_t n = kz_mpsc_pop_n(&a->ring, batch, KZ__AUDIT_BATCH);
    for (uint32_t i = 0; i < n; i++) {
        kz__emit(a, &batch[i], 1);
        if (a->since_checkpoint >= a->checkpoint_records)
            kz__checkpoint(a, 0);
    }
    if (!kz__failed(a))
        kz__note_drops(a);
    uint64_t now = kz__mono_ns();
    if (a->since_checkpoint > 0 && now - a->last_checkpoint >= a->checkpoint_ns)
        kz__checkpoint(a, 0);
    int flush = atomic_exchange(KZ__A64(a->flush_req), 0) != 0;
    if (a->pending > 0 && (a->pending >= a->commit_records || flush || stopping ||
                           now - a->pending_since >= a->commit_ns))
        kz__commit(a);
    return n;
}

static void *kz__writer(void *arg)
{
    kz_audit *a = arg;
    for (;;) {
        int stopping = kz__ld(&a->stop) != 0;
        if (kz__turn(a, stopping) > 0)
            continue;
        if (stopping)
            break;
        struct timespec pause = {0, KZ__AUDIT_IDLE_NS};
        nanosleep(&pause, NULL);
    }
    /* Closing: no appends are in flight, the ring is empty. */
    if (!kz__failed(a))
        kz__note_drops(a);
    kz__checkpoint(a, KZ_AUDIT_CHECKPOINT_FINAL);
    kz__commit(a);
    return NULL;
}

int kz_audit_append(kz_audit *a, const kz_audit_record *rec)
{
    KZ_ASSERT(a != NULL && rec != NULL);
    if (rec->type < 1 || rec->type > KZ_AUDIT_CALLER_MAX)
        return KZ_EINVAL;
    if (kz__failed(a)) {
        kz__add(&a->dropped, 1);
        return KZ_EIO;
    }
    kz_audit_record r = *rec;
    if (r.unix_ns == 0)
        r.unix_ns = a->clock(a->clock_ctx);
    if (kz_mpsc_push(&a->ring, &r) != KZ_OK) {
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
        if (kz__failed(a))
            return KZ_EIO;
        if (kz__ld(&a->durable) >= target)
            return KZ_OK;
        if (kz__mono_ns() >= deadline)
            return KZ_EAGAIN;
        kz__st(&a->flush_req, 1);
        struct timespec pause = {0, 200000};
        nanosleep(&pause, NULL);
    }
}

void kz_audit_stats_get(const kz_audit *a, kz_audit_stats *out)
{
    KZ_ASSERT(a != NULL && out != NULL);
    memset(out, 0, sizeof *out);
    out->appended = kz__ld(&a->appended);
    out->dropped = kz__ld(&a->dropped);
    out->written = kz__ld(&a->written);
    out->durable = kz__ld(&a->durable);
    out->lag = out->appended > out->durable ? out->appended - out->durable : 0;
    out->fsyncs = kz__ld(&a->fsyncs);
    out->checkpoints = kz__ld(&a->checkpoints);
    out->first_seq = kz__ld(&a->first_seq);
    out->acked_seq = kz__ld(&a->acked_seq);
    out->recovered_bytes = kz__ld(&a->recovered_bytes);
    out->error = atomic_load_explicit((_Atomic int *)(uintptr_t)&a->error, memory_order_acquire);
}

/* ---- open, recovery, close --------------------------------------------- */

static int kz__all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return 0;
    return 1;
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
    if (cut > 0 && (ftruncate(a->fd, (off_t)s.good_end) != 0 || fdatasync(a->fd) != 0)) {
        kz_logf(&a->log, KZ_LOG_ERROR, "audit", "%s: cannot cut the torn tail: %s", path,
                strerror(errno));
        return KZ_EIO;
    }
    a->next_seq = r.records ? r.head_seq + 1 : 0;
    memcpy(a->head, r.head_hash, sizeof a->head);
    kz__st(&a->first_seq, a->next_seq);
    kz__st(&a->acked_seq, a->next_seq);
    kz__st(&a->recovered_bytes, cut);
    if (r.records > 0 && (cut > 0 || !s.final_at_end)) {
        kz_logf(&a->log, KZ_LOG_WARN, "audit", "%s: recovered after a crash: %llu records "
                "kept, %llu torn bytes cut", path, (unsigned long long)r.records,
                (unsigned long long)cut);
        kz__emit_own(a, KZ_AUDIT_RECOVERED, cut > UINT32_MAX ? UINT32_MAX : (uint32_t)cut);
    }
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
    a->alloc = c.alloc;
    a->log = c.log;
    a->fd = -1;
    a->clock = c.clock ? c.clock : kz__realtime_ns;
    a->clock_ctx = c.clock_ctx;
    a->commit_records = c.commit_records;
    a->checkpoint_records = c.checkpoint_records;
    a->commit_ns = (uint64_t)c.commit_ms * 1000000ull;
    a->checkpoint_ns = (uint64_t)c.checkpoint_ms * 1000000ull;
    memcpy(a->sk, c.sign_secret_key, sizeof a->sk);
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
    int rc = a->error;
    kz__destroy(a);
    return rc;
}
