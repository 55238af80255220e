/*
 * Audit log: round trip, the tamper table of the requirement (every byte
 * changed, every record deleted, every adjacent pair swapped, truncation at
 * every offset, a duplicate, a spliced history, a wrong key), crash
 * recovery (torn tail, zero tail, kill -9 of a writing process), appends
 * from four threads, ring-full drops, and no allocation on append.
 * Write failures are injected through kz_audit_io: a full file system
 * (with a short write), a failing fdatasync, an append-only file, a log
 * that never comes back before close; each must end in a log that
 * verifies and names every loss. Hostile LOST records are refused.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include <kizuna/audit.h>
#include <kizuna/token.h>

typedef struct {
    char dir[64];
    char path[96];
    kz_sign_keypair key;
} fixture;

static void fixture_init(fixture *f)
{
    snprintf(f->dir, sizeof f->dir, "/tmp/kz-audit-XXXXXX");
    cr_assert_not_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/audit.log", f->dir);
    cr_assert_eq(kz_sign_keypair_generate(&f->key), KZ_OK);
}

static void fixture_fini(fixture *f)
{
    unlink(f->path);
    rmdir(f->dir);
}

static void quiet(void *ctx, int32_t level, const char *module, const char *msg)
{
    (void)ctx, (void)level, (void)module, (void)msg;
}

static kz_audit_config config_for(const fixture *f, uint32_t checkpoint_records)
{
    kz_audit_config c;
    memset(&c, 0, sizeof c);
    c.path = f->path;
    memcpy(c.sign_secret_key, f->key.secret_key, sizeof c.sign_secret_key);
    c.checkpoint_records = checkpoint_records;
    c.log.level = KZ_LOG_OFF;
    c.log.sink = quiet;
    return c;
}

static kz_audit_record event(uint8_t type, uint64_t client, uint32_t code, const char *detail)
{
    kz_audit_record r;
    memset(&r, 0, sizeof r);
    r.type = type;
    r.client_id = client;
    r.entity = (uint32_t)client * 3u;
    r.verification_level = KZ_VERIFY_BASIC;
    r.actor_kind = client % 2 ? KZ_ACTOR_AGENT : KZ_ACTOR_HUMAN;
    r.acting_for = client % 2 ? client + 1000 : 0;
    r.code = code;
    if (detail)
        snprintf(r.detail, sizeof r.detail, "%s", detail);
    return r;
}

/* Appends `n` events with a checkpoint every `every` records, closes. */
static void write_log(const fixture *f, int n, uint32_t every)
{
    kz_audit_config c = config_for(f, every);
    kz_audit *a = NULL;
    cr_assert_eq(kz_audit_open(&c, &a), KZ_OK);
    kz_audit_record start = event(KZ_AUDIT_SERVER_START, 0, 40000, "test");
    cr_assert_eq(kz_audit_append(a, &start), KZ_OK);
    for (int i = 0; i < n; i++) {
        kz_audit_record r = event((uint8_t)(KZ_AUDIT_CONNECT + i % 8), (uint64_t)i + 1,
                                  (uint32_t)i, i % 3 ? "zone-a" : NULL);
        cr_assert_eq(kz_audit_append(a, &r), KZ_OK);
    }
    kz_audit_record stop = event(KZ_AUDIT_SERVER_STOP, 0, 0, NULL);
    cr_assert_eq(kz_audit_append(a, &stop), KZ_OK);
    cr_assert_eq(kz_audit_close(a), KZ_OK);
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    cr_assert_not_null(fp);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    cr_assert_eq(fread(b, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return b;
}

static void write_all(const char *path, const uint8_t *b, size_t len)
{
    FILE *fp = fopen(path, "wb");
    cr_assert_not_null(fp);
    if (len > 0)
        cr_assert_eq(fwrite(b, 1, len, fp), len);
    fclose(fp);
}

/* Record start offsets; returns the count. off[count] = len. */
static size_t record_offsets(const uint8_t *b, size_t len, size_t *off, size_t cap)
{
    size_t n = 0, at = 0;
    kz_audit_entry e;
    while (at < len) {
        cr_assert_lt(n, cap);
        cr_assert_eq(kz_audit_decode(b + at, len - at, &e), KZ_OK);
        off[n++] = at;
        at += e.size;
    }
    off[n] = len;
    return n;
}

static kz_audit_verify_result verify_buf(const fixture *f, const uint8_t *b, size_t len)
{
    kz_audit_verify_result r;
    int rc = kz_audit_verify_buffer(b, len, f->key.public_key, 0, &r);
    cr_assert_eq(rc == KZ_OK, r.verdict == KZ_AUDIT_VALID);
    return r;
}

Test(audit, round_trip)
{
    fixture f;
    fixture_init(&f);
    write_log(&f, 10, 4);
    kz_audit_verify_result r;
    cr_assert_eq(kz_audit_verify(f.path, f.key.public_key, 0, &r), KZ_OK, "%s", r.why);
    size_t len, off[64];
    uint8_t *b = read_all(f.path, &len);
    size_t n = record_offsets(b, len, off, 63);
    /* 12 events, a checkpoint after every 4 records, and the final one. */
    cr_assert_eq(r.records, n);
    cr_assert_eq(n, 12 + 3 + 1);
    cr_assert_eq(r.checkpoints, 4);
    cr_assert_eq(r.unsigned_tail, 0);
    cr_assert_eq(r.head_seq, n - 1);
    int events = 0;
    for (size_t i = 0; i < n; i++) {
        kz_audit_entry e;
        cr_assert_eq(kz_audit_decode(b + off[i], len - off[i], &e), KZ_OK);
        cr_assert_eq(e.seq, i);
        cr_assert_neq(e.rec.unix_ns, 0);
        if (e.rec.type == KZ_AUDIT_CHECKPOINT) {
            cr_assert_eq(e.rec.code, i == n - 1 ? KZ_AUDIT_CHECKPOINT_FINAL : 0u);
            continue;
        }
        if (events >= 1 && events <= 10) {
            int k = events - 1;
            kz_audit_record want = event((uint8_t)(KZ_AUDIT_CONNECT + k % 8), (uint64_t)k + 1,
                                         (uint32_t)k, k % 3 ? "zone-a" : NULL);
            cr_assert_eq(e.rec.type, want.type);
            cr_assert_eq(e.rec.client_id, want.client_id);
            cr_assert_eq(e.rec.entity, want.entity);
            cr_assert_eq(e.rec.verification_level, want.verification_level);
            cr_assert_eq(e.rec.actor_kind, want.actor_kind);
            cr_assert_eq(e.rec.acting_for, want.acting_for);
            cr_assert_eq(e.rec.code, want.code);
            cr_assert_str_eq(e.rec.detail, want.detail);
        }
        events++;
    }
    cr_assert_eq(events, 12);
    free(b);
    fixture_fini(&f);
}

/* Index of the record holding byte `at`. */
static size_t record_of(const size_t *off, size_t n, size_t at)
{
    size_t i = 0;
    while (i + 1 < n && off[i + 1] <= at)
        i++;
    return i;
}

Test(audit, every_byte_changed_is_altered)
{
    fixture f;
    fixture_init(&f);
    write_log(&f, 5, 3);
    size_t len, off[64];
    uint8_t *b = read_all(f.path, &len);
    size_t n = record_offsets(b, len, off, 63);
    static const uint8_t masks[] = {0x01, 0x80, 0xff};
    for (size_t m = 0; m < sizeof masks; m++) {
        for (size_t i = 0; i < len; i++) {
            b[i] ^= masks[m];
            kz_audit_verify_result r = verify_buf(&f, b, len);
            cr_assert_eq(r.verdict, KZ_AUDIT_ALTERED, "byte %zu mask %02x: %s (%s)", i,
                         masks[m], kz_audit_verdict_name(r.verdict), r.why);
            cr_assert_eq(r.bad_index, record_of(off, n, i), "byte %zu", i);
            cr_assert_eq(r.bad_offset, off[record_of(off, n, i)]);
            b[i] ^= masks[m];
        }
    }
    cr_assert_eq(verify_buf(&f, b, len).verdict, KZ_AUDIT_VALID);
    free(b);
    fixture_fini(&f);
}

Test(audit, every_record_deleted)
{
    fixture f;
    fixture_init(&f);
    write_log(&f, 5, 3);
    size_t len, off[64];
    uint8_t *b = read_all(f.path, &len);
    size_t n = record_offsets(b, len, off, 63);
    uint8_t *t = malloc(len);
    for (size_t i = 0; i < n; i++) {
        size_t rl = off[i + 1] - off[i];
        memcpy(t, b, off[i]);
        memcpy(t + off[i], b + off[i + 1], len - off[i + 1]);
        kz_audit_verify_result r = verify_buf(&f, t, len - rl);
        if (i + 1 < n) {
            cr_assert_eq(r.verdict, KZ_AUDIT_DROPPED_RECORD, "record %zu: %s", i, r.why);
            cr_assert_eq(r.bad_index, i);
            cr_assert_eq(r.expected_seq, i);
            cr_assert_eq(r.found_seq, i + 1);
        } else {
            /* The last record is the final checkpoint: without it the log
             * is a cut one. */
            cr_assert_eq(r.verdict, KZ_AUDIT_TRUNCATED, "record %zu: %s", i, r.why);
        }
    }
    free(t);
    free(b);
    fixture_fini(&f);
}

Test(audit, every_adjacent_pair_swapped)
{
    fixture f;
    fixture_init(&f);
    write_log(&f, 5, 3);
    size_t len, off[64];
    uint8_t *b = read_all(f.path, &len);
    size_t n = record_offsets(b, len, off, 63);
    uint8_t *t = malloc(len);
    for (size_t i = 0; i + 1 < n; i++) {
        size_t l1 = off[i + 1] - off[i], l2 = off[i + 2] - off[i + 1];
        memcpy(t, b, len);
        memcpy(t + off[i], b + off[i + 1], l2);
        memcpy(t + off[i] + l2, b + off[i], l1);
        kz_audit_verify_result r = verify_buf(&f, t, len);
        cr_assert_eq(r.verdict, KZ_AUDIT_REORDERED, "pair %zu: %s", i, r.why);
        cr_assert_eq(r.bad_index, i);
    }
    free(t);
    free(b);
    fixture_fini(&f);
}

Test(audit, truncation_at_every_offset)
{
    fixture f;
    fixture_init(&f);
    write_log(&f, 5, 3);
    size_t len, off[64];
    uint8_t *b = read_all(f.path, &len);
    size_t n = record_offsets(b, len, off, 63);
    for (size_t cut = 0; cut < len; cut++) {
        /* An exact-size copy, so that ASan sees any read past the end. */
        uint8_t *t = malloc(cut ? cut : 1);
        memcpy(t, b, cut);
        kz_audit_verify_result r = verify_buf(&f, t, cut);
        cr_assert_eq(r.verdict, KZ_AUDIT_TRUNCATED, "cut at %zu: %s", cut, r.why);
        cr_assert_eq(r.bad_index, cut ? record_of(off, n, cut - 1) + (cut == off[record_of(off, n, cut - 1) + 1]) : 0);
        free(t);
    }
    free(b);
    fixture_fini(&f);
}

Test(audit, duplicate_record_is_forked)
{
    fixture f;
    fixture_init(&f);
    write_log(&f, 5, 3);
    size_t len, off[64];
    uint8_t *b = read_all(f.path, &len);
    size_t n = record_offsets(b, len, off, 63);
    for (size_t i = 0; i < n; i++) {
        size_t rl = off[i + 1] - off[i];
        uint8_t *t = malloc(len + rl);
        memcpy(t, b, off[i + 1]);
        memcpy(t + off[i + 1], b + off[i], rl);
        memcpy(t + off[i + 1] + rl, b + off[i + 1], len - off[i + 1]);
        kz_audit_verify_result r = verify_buf(&f, t, len + rl);
        cr_assert_eq(r.verdict, KZ_AUDIT_FORKED, "record %zu: %s", i, r.why);
        cr_assert_eq(r.bad_index, i + 1);
        free(t);
    }
    free(b);
    fixture_fini(&f);
}

/* Two logs from the same key: A's first records followed by B's later ones
 * chain wrongly at the splice. */
Test(audit, spliced_history_is_forked)
{
    fixture f, g;
    fixture_init(&f);
    fixture_init(&g);
    g.key = f.key;
    write_log(&f, 5, 100);
    write_log(&g, 5, 100);
    size_t la, lb, oa[64], ob[64];
    uint8_t *a = read_all(f.path, &la), *b = read_all(g.path, &lb);
    size_t na = record_offsets(a, la, oa, 63);
    cr_assert_eq(record_offsets(b, lb, ob, 63), na);
    uint8_t *t = malloc(la + lb);
    memcpy(t, a, oa[3]);
    memcpy(t + oa[3], b + ob[3], lb - ob[3]);
    kz_audit_verify_result r = verify_buf(&f, t, oa[3] + lb - ob[3]);
    cr_assert_eq(r.verdict, KZ_AUDIT_FORKED, "%s", r.why);
    cr_assert_eq(r.bad_index, 3);
    free(t);
    free(a);
    free(b);
    fixture_fini(&f);
    fixture_fini(&g);
}

Test(audit, wrong_key_is_bad_signature)
{
    fixture f;
    fixture_init(&f);
    write_log(&f, 5, 3);
    kz_sign_keypair other;
    cr_assert_eq(kz_sign_keypair_generate(&other), KZ_OK);
    kz_audit_verify_result r;
    cr_assert_eq(kz_audit_verify(f.path, other.public_key, 0, &r), KZ_EAUTH);
    cr_assert_eq(r.verdict, KZ_AUDIT_BAD_SIGNATURE);
    cr_assert_eq(r.bad_index, 3); /* the first checkpoint, after 3 records */
    fixture_fini(&f);
}

Test(audit, empty_and_missing_files)
{
    fixture f;
    fixture_init(&f);
    kz_audit_verify_result r;
    cr_assert_eq(kz_audit_verify(f.path, f.key.public_key, 0, &r), KZ_EIO);
    cr_assert_eq(r.verdict, KZ_AUDIT_UNREADABLE);
    write_all(f.path, NULL, 0);
    cr_assert_eq(kz_audit_verify(f.path, f.key.public_key, 0, &r), KZ_EAUTH);
    cr_assert_eq(r.verdict, KZ_AUDIT_TRUNCATED);
    fixture_fini(&f);
}

/* Opens, appends `n` events, closes; returns the recovered byte count. */
static uint64_t reopen_append(const fixture *f, int n)
{
    kz_audit_config c = config_for(f, 4);
    kz_audit *a = NULL;
    cr_assert_eq(kz_audit_open(&c, &a), KZ_OK);
    kz_audit_stats st;
    kz_audit_stats_get(a, &st);
    for (int i = 0; i < n; i++) {
        kz_audit_record r = event(KZ_AUDIT_KICK, 77, (uint32_t)i, "speed");
        cr_assert_eq(kz_audit_append(a, &r), KZ_OK);
    }
    cr_assert_eq(kz_audit_close(a), KZ_OK);
    return st.recovered_bytes;
}

/* Counts records of `type` in a valid log. */
static int count_type(const char *path, uint8_t type)
{
    size_t len;
    uint8_t *b = read_all(path, &len);
    int k = 0;
    for (size_t at = 0; at < len;) {
        kz_audit_entry e;
        cr_assert_eq(kz_audit_decode(b + at, len - at, &e), KZ_OK);
        k += e.rec.type == type;
        at += e.size;
    }
    free(b);
    return k;
}

/* The (only) RECOVERED record of a valid log. */
static kz_audit_entry recovered_entry(const char *path)
{
    size_t len;
    uint8_t *b = read_all(path, &len);
    kz_audit_entry e, found;
    int n = 0;
    memset(&found, 0, sizeof found);
    for (size_t at = 0; at < len; at += e.size) {
        cr_assert_eq(kz_audit_decode(b + at, len - at, &e), KZ_OK);
        if (e.rec.type == KZ_AUDIT_RECOVERED) {
            found = e;
            n++;
        }
    }
    free(b);
    cr_assert_eq(n, 1);
    return found;
}

Test(audit, torn_tail_recovered_and_chain_continues)
{
    fixture f;
    fixture_init(&f);
    write_log(&f, 5, 3);
    size_t len, off[64];
    uint8_t *b = read_all(f.path, &len);
    size_t n = record_offsets(b, len, off, 63);
    /* A crash while the next record was being written: part of a record
     * (here a copy of the first bytes of record 2) after the last one. */
    for (size_t part = 1; part < off[3] - off[2]; part += 13) {
        uint8_t *t = malloc(len + part);
        memcpy(t, b, len);
        memcpy(t + len, b + off[2], part);
        write_all(f.path, t, len + part);
        cr_assert_eq(reopen_append(&f, 2), part, "part %zu", part);
        kz_audit_verify_result r;
        cr_assert_eq(kz_audit_verify(f.path, f.key.public_key, 0, &r), KZ_OK,
                     "part %zu: %s at %llu", part, r.why, (unsigned long long)r.bad_index);
        cr_assert_gt(r.records, n + 2);
        cr_assert_eq(count_type(f.path, KZ_AUDIT_RECOVERED), 1);
        /* The cut is reported by verify, not only kept in the file. */
        cr_assert_eq(r.recoveries, 1);
        cr_assert_eq(r.gaps, 1);
        cr_assert_eq(r.cut_bytes, part);
        cr_assert_eq(recovered_entry(f.path).lost, 1, "one incomplete record cut");
        write_all(f.path, b, len);
        free(t);
    }
    free(b);
    fixture_fini(&f);
}

Test(audit, zero_filled_tail_recovered)
{
    fixture f;
    fixture_init(&f);
    write_log(&f, 5, 3);
    size_t len;
    uint8_t *b = read_all(f.path, &len);
    uint8_t *t = calloc(1, len + 4096);
    memcpy(t, b, len);
    write_all(f.path, t, len + 4096);
    cr_assert_eq(reopen_append(&f, 3), 4096);
    kz_audit_verify_result r;
    cr_assert_eq(kz_audit_verify(f.path, f.key.public_key, 0, &r), KZ_OK, "%s", r.why);
    cr_assert_eq(r.recoveries, 1);
    cr_assert_eq(r.cut_bytes, 4096);
    kz_audit_entry e = recovered_entry(f.path);
    cr_assert_eq(e.rec.code, 4096);
    cr_assert_eq(e.lost, 0, "zeros hold no record");
    free(t);
    free(b);
    fixture_fini(&f);
}

Test(audit, damaged_middle_refused_and_untouched)
{
    fixture f;
    fixture_init(&f);
    write_log(&f, 5, 3);
    size_t len, off[64];
    uint8_t *b = read_all(f.path, &len);
    record_offsets(b, len, off, 63);
    b[off[2] + 20] ^= 4;
    write_all(f.path, b, len);
    kz_audit_config c = config_for(&f, 4);
    kz_audit *a = NULL;
    cr_assert_eq(kz_audit_open(&c, &a), KZ_EPROTO);
    cr_assert_null(a);
    size_t len2;
    uint8_t *b2 = read_all(f.path, &len2);
    cr_assert_eq(len2, len);
    cr_assert_eq(memcmp(b, b2, len), 0);
    free(b2);
    /* A log signed by another key is refused too. */
    b[off[2] + 20] ^= 4;
    write_all(f.path, b, len);
    cr_assert_eq(kz_sign_keypair_generate(&f.key), KZ_OK);
    c = config_for(&f, 4);
    cr_assert_eq(kz_audit_open(&c, &a), KZ_EAUTH);
    free(b);
    fixture_fini(&f);
}

Test(audit, clean_restart_continues_without_recovery_record)
{
    fixture f;
    fixture_init(&f);
    write_log(&f, 3, 3);
    cr_assert_eq(reopen_append(&f, 3), 0);
    write_log(&f, 3, 3);
    kz_audit_verify_result r;
    cr_assert_eq(kz_audit_verify(f.path, f.key.public_key, 0, &r), KZ_OK, "%s", r.why);
    cr_assert_eq(count_type(f.path, KZ_AUDIT_RECOVERED), 0);
    cr_assert_eq(count_type(f.path, KZ_AUDIT_SERVER_START), 2);
    fixture_fini(&f);
}

Test(audit, second_writer_refused)
{
    fixture f;
    fixture_init(&f);
    kz_audit_config c = config_for(&f, 4);
    kz_audit *a = NULL, *b = NULL;
    cr_assert_eq(kz_audit_open(&c, &a), KZ_OK);
    cr_assert_eq(kz_audit_open(&c, &b), KZ_EIO);
    cr_assert_eq(kz_audit_close(a), KZ_OK);
    fixture_fini(&f);
}

Test(audit, bad_config_and_types_refused)
{
    fixture f;
    fixture_init(&f);
    kz_audit_config c = config_for(&f, 4);
    kz_audit *a = NULL;
    c.sign_secret_key[40] ^= 1; /* public half no longer the seed's */
    cr_assert_eq(kz_audit_open(&c, &a), KZ_EINVAL);
    c = config_for(&f, 4);
    c.ring_capacity = 1000;
    cr_assert_eq(kz_audit_open(&c, &a), KZ_EINVAL);
    c = config_for(&f, 4);
    cr_assert_eq(kz_audit_open(&c, &a), KZ_OK);
    kz_audit_record r = event(KZ_AUDIT_CHECKPOINT, 1, 1, NULL);
    cr_assert_eq(kz_audit_append(a, &r), KZ_EINVAL);
    r.type = 0;
    cr_assert_eq(kz_audit_append(a, &r), KZ_EINVAL);
    /* Non-printable detail bytes are written as '?', never refused. */
    r = event(KZ_AUDIT_VIOLATION, 1, 1, "a\tb\x7f");
    cr_assert_eq(kz_audit_append(a, &r), KZ_OK);
    cr_assert_eq(kz_audit_close(a), KZ_OK);
    kz_audit_verify_result v;
    cr_assert_eq(kz_audit_verify(f.path, f.key.public_key, 0, &v), KZ_OK, "%s", v.why);
    fixture_fini(&f);
}

Test(audit, live_log_verifies_open_but_not_final)
{
    fixture f;
    fixture_init(&f);
    kz_audit_config c = config_for(&f, 1000);
    kz_audit *a = NULL;
    cr_assert_eq(kz_audit_open(&c, &a), KZ_OK);
    for (int i = 0; i < 5; i++) {
        kz_audit_record r = event(KZ_AUDIT_CONNECT, (uint64_t)i + 1, 0, NULL);
        cr_assert_eq(kz_audit_append(a, &r), KZ_OK);
    }
    cr_assert_eq(kz_audit_flush(a, 5000), KZ_OK);
    kz_audit_stats st;
    kz_audit_stats_get(a, &st);
    cr_assert_eq(st.durable, 5);
    cr_assert_eq(st.lag, 0);
    cr_assert_eq(st.acked_seq, 5);
    cr_assert_geq(st.fsyncs, 1);
    kz_audit_verify_result r;
    cr_assert_eq(kz_audit_verify(f.path, f.key.public_key, KZ_AUDIT_VERIFY_ALLOW_OPEN, &r),
                 KZ_OK, "%s", r.why);
    cr_assert_eq(r.unsigned_tail, 5);
    cr_assert_eq(kz_audit_verify(f.path, f.key.public_key, 0, &r), KZ_EAUTH);
    cr_assert_eq(r.verdict, KZ_AUDIT_TRUNCATED);
    cr_assert_eq(kz_audit_close(a), KZ_OK);
    cr_assert_eq(kz_audit_verify(f.path, f.key.public_key, 0, &r), KZ_OK, "%s", r.why);
    fixture_fini(&f);
}

/* A child process appends as fast as it can; the parent kills it with
 * SIGKILL mid-way, reopens (recovery), appends, closes, verifies. */
Test(audit, kill_9_during_writes_then_restart)
{
    fixture f;
    fixture_init(&f);
    for (int round = 0; round < 3; round++) {
        int ready[2];
        cr_assert_eq(pipe(ready), 0);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            kz_audit_config c = config_for(&f, 16);
            c.commit_ms = 1;
            kz_audit *a = NULL;
            if (kz_audit_open(&c, &a) != KZ_OK)
                _exit(3);
            for (uint32_t i = 0;; i++) {
                kz_audit_record r = event(KZ_AUDIT_ROLE_ACTION, i % 50 + 1, i, "moderator");
                if (kz_audit_append(a, &r) == KZ_EFULL)
                    sched_yield();
                /* Tell the parent once something is durable. */
                if (i == 100 && (kz_audit_flush(a, 5000) != KZ_OK || write(ready[1], "x", 1) != 1))
                    _exit(4);
            }
        }
        char x;
        close(ready[1]);
        cr_assert_eq(read(ready[0], &x, 1), 1, "child did not start writing");
        close(ready[0]);
        struct timespec pause = {0, 30000000 + round * 20000000};
        nanosleep(&pause, NULL);
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        cr_assert(WIFSIGNALED(status), "child exited with %d", WEXITSTATUS(status));
        reopen_append(&f, 5);
        kz_audit_verify_result r;
        cr_assert_eq(kz_audit_verify(f.path, f.key.public_key, 0, &r), KZ_OK,
                     "round %d: %s at record %llu", round, r.why,
                     (unsigned long long)r.bad_index);
        cr_assert_gt(r.records, 10);
    }
    cr_assert_eq(count_type(f.path, KZ_AUDIT_RECOVERED), 3);
    kz_audit_verify_result r;
    cr_assert_eq(kz_audit_verify(f.path, f.key.public_key, 0, &r), KZ_OK, "%s", r.why);
    cr_assert_eq(r.recoveries, 3, "every unclean end is reported");
    fixture_fini(&f);
}

#define PRODUCERS 4
#define PER_PRODUCER 20000

typedef struct {
    kz_audit *a;
    uint32_t id;
    uint64_t full;
} producer;

static void *produce(void *arg)
{
    producer *p = arg;
    for (uint32_t i = 0; i < PER_PRODUCER; i++) {
        kz_audit_record r = event(KZ_AUDIT_VIOLATION, p->id, i, NULL);
        int rc;
        while ((rc = kz_audit_append(p->a, &r)) == KZ_EFULL) {
            p->full++;
            sched_yield();
        }
        cr_assert_eq(rc, KZ_OK);
    }
    return NULL;
}

Test(audit, four_threads_all_records_in_order)
{
    fixture f;
    fixture_init(&f);
    kz_audit_config c = config_for(&f, 500);
    c.ring_capacity = 1024;
    kz_audit *a = NULL;
    cr_assert_eq(kz_audit_open(&c, &a), KZ_OK);
    producer p[PRODUCERS];
    pthread_t th[PRODUCERS];
    for (uint32_t i = 0; i < PRODUCERS; i++) {
        p[i] = (producer){a, i + 1, 0};
        pthread_create(&th[i], NULL, produce, &p[i]);
    }
    uint64_t full = 0;
    for (uint32_t i = 0; i < PRODUCERS; i++) {
        pthread_join(th[i], NULL);
        full += p[i].full;
    }
    kz_audit_stats st;
    kz_audit_stats_get(a, &st);
    cr_assert_eq(st.appended, PRODUCERS * PER_PRODUCER);
    cr_assert_eq(st.dropped, full);
    cr_assert_eq(kz_audit_close(a), KZ_OK);
    size_t len;
    uint8_t *b = read_all(f.path, &len);
    kz_audit_verify_result r;
    cr_assert_eq(kz_audit_verify_buffer(b, len, f.key.public_key, 0, &r), KZ_OK, "%s", r.why);
    uint32_t next[PRODUCERS] = {0};
    uint64_t dropped_noted = 0;
    for (size_t at = 0; at < len;) {
        kz_audit_entry e;
        cr_assert_eq(kz_audit_decode(b + at, len - at, &e), KZ_OK);
        at += e.size;
        if (e.rec.type == KZ_AUDIT_LOST) {
            cr_assert_eq(e.rec.code, KZ_AUDIT_LOSS_QUEUE_FULL);
            dropped_noted += e.lost;
        }
        if (e.rec.type != KZ_AUDIT_VIOLATION)
            continue;
        uint32_t id = (uint32_t)e.rec.client_id - 1;
        cr_assert_lt(id, PRODUCERS);
        cr_assert_eq(e.rec.code, next[id], "producer %u: got %u, want %u", id, e.rec.code,
                     next[id]);
        next[id]++;
    }
    for (uint32_t i = 0; i < PRODUCERS; i++)
        cr_assert_eq(next[i], PER_PRODUCER);
    /* Refused pushes were retried here, yet each refusal is in the log. */
    cr_assert_eq(dropped_noted, full);
    free(b);
    fixture_fini(&f);
}

Test(audit, ring_full_drops_counted_and_logged)
{
    fixture f;
    fixture_init(&f);
    kz_audit_config c = config_for(&f, 1000);
    c.ring_capacity = 2;
    kz_audit *a = NULL;
    cr_assert_eq(kz_audit_open(&c, &a), KZ_OK);
    uint64_t refused = 0, ok = 0;
    for (uint32_t i = 0; i < 20000; i++) {
        kz_audit_record r = event(KZ_AUDIT_BLOCK, 5, i, NULL);
        int rc = kz_audit_append(a, &r);
        cr_assert(rc == KZ_OK || rc == KZ_EFULL);
        refused += rc == KZ_EFULL;
        ok += rc == KZ_OK;
    }
    cr_assert_gt(refused, 0);
    kz_audit_stats st;
    kz_audit_stats_get(a, &st);
    cr_assert_eq(st.dropped, refused);
    cr_assert_eq(st.appended, ok);
    cr_assert_eq(kz_audit_close(a), KZ_OK);
    size_t len;
    uint8_t *b = read_all(f.path, &len);
    uint64_t noted = 0, blocks = 0;
    for (size_t at = 0; at < len;) {
        kz_audit_entry e;
        cr_assert_eq(kz_audit_decode(b + at, len - at, &e), KZ_OK);
        at += e.size;
        noted += e.rec.type == KZ_AUDIT_LOST ? e.lost : 0;
        blocks += e.rec.type == KZ_AUDIT_BLOCK;
    }
    cr_assert_eq(noted, refused);
    cr_assert_eq(blocks, ok);
    /* The verifier says the chain is intact and reports the loss. */
    kz_audit_verify_result v;
    cr_assert_eq(kz_audit_verify_buffer(b, len, f.key.public_key, 0, &v), KZ_OK, "%s", v.why);
    cr_assert_eq(v.lost_records, refused);
    cr_assert_gt(v.gaps, 0);
    cr_assert_eq(v.outages, 0);
    free(b);
    fixture_fini(&f);
}

Test(audit, append_and_writer_allocate_nothing)
{
    fixture f;
    fixture_init(&f);
    kz_counting_alloc ca;
    kz_counting_alloc_init(&ca, NULL);
    kz_audit_config c = config_for(&f, 64);
    c.alloc = kz_counting_alloc_allocator(&ca);
    kz_audit *a = NULL;
    cr_assert_eq(kz_audit_open(&c, &a), KZ_OK);
    uint64_t before = kz_counting_alloc_allocs(&ca);
    for (uint32_t i = 0; i < 5000; i++) {
        kz_audit_record r = event(KZ_AUDIT_CONNECT, i + 1, i, "zone-a");
        while (kz_audit_append(a, &r) == KZ_EFULL)
            sched_yield();
        if (i % 1000 == 999)
            cr_assert_eq(kz_audit_flush(a, 5000), KZ_OK);
    }
    cr_assert_eq(kz_audit_flush(a, 5000), KZ_OK);
    cr_assert_eq(kz_counting_alloc_allocs(&ca), before);
    cr_assert_eq(kz_audit_close(a), KZ_OK);
    cr_assert_eq(kz_counting_alloc_live_bytes(&ca), 0);
    fixture_fini(&f);
}

/* ---- injected write failures (kz_audit_io) ------------------------------ */

/*
 * The hooks: each passes through to the system call unless its error is
 * set (a negative errno). With `half_first`, the first write of a failing
 * attempt writes half its bytes for real before the next call fails, as a
 * file system filling up mid-write does.
 */
typedef struct fault {
    _Atomic int write_err, sync_err, truncate_err;
    _Atomic int half_first;
    _Atomic int half_done;
    _Atomic uint64_t writes, syncs, truncates, injected;
} fault;

static int64_t fault_write(void *ctx, int fd, const void *buf, size_t n)
{
    fault *ft = ctx;
    ft->writes++;
    int err = ft->write_err;
    if (err != 0) {
        if (ft->half_first && !ft->half_done && n > 1) {
            ft->half_done = 1;
            return write(fd, buf, n / 2);
        }
        ft->injected++;
        return err;
    }
    ft->half_done = 0;
    ssize_t w = write(fd, buf, n);
    return w < 0 ? -errno : w;
}

static int fault_sync(void *ctx, int fd)
{
    fault *ft = ctx;
    ft->syncs++;
    int err = ft->sync_err;
    if (err != 0) {
        ft->injected++;
        return err;
    }
    return fdatasync(fd) == 0 ? 0 : -errno;
}

static int fault_truncate(void *ctx, int fd, uint64_t size)
{
    fault *ft = ctx;
    ft->truncates++;
    int err = ft->truncate_err;
    if (err != 0)
        return err;
    return ftruncate(fd, (off_t)size) == 0 ? 0 : -errno;
}

/* A constant wall clock: the writer's own records carry this time. */
#define FAULT_CLOCK_NS 1700000000000000000ull

static uint64_t fixed_clock(void *ctx)
{
    (void)ctx;
    return FAULT_CLOCK_NS;
}

static kz_audit_config fault_config(const fixture *f, fault *ft, uint32_t ring)
{
    kz_audit_config c = config_for(f, 1000);
    c.ring_capacity = ring;
    c.retry_max_ms = 2; /* retries come fast; the test waits for states, not time */
    c.io.write = fault_write;
    c.io.sync = fault_sync;
    c.io.truncate = fault_truncate;
    c.io.ctx = ft;
    c.clock = fixed_clock;
    return c;
}

/* Polls the writer's stats until `cond` holds; fails after a generous
 * bound (a hung writer, never a slow one). */
#define WAIT_FOR(a, st, cond)                                                     \
    do {                                                                          \
        int waited_ = 0;                                                          \
        for (;;) {                                                                \
            kz_audit_stats_get((a), &(st));                                       \
            if (cond)                                                             \
                break;                                                            \
            cr_assert_lt(waited_++, 30000, "timed out waiting for %s", #cond);    \
            struct timespec p_ = {0, 1000000};                                    \
            nanosleep(&p_, NULL);                                                 \
        }                                                                         \
    } while (0)

static void append_ok(kz_audit *a, uint8_t type, uint64_t client, uint32_t code, uint64_t t)
{
    kz_audit_record r = event(type, client, code, NULL);
    r.unix_ns = t;
    cr_assert_eq(kz_audit_append(a, &r), KZ_OK);
}

/* Every record of a valid log file, decoded; *n set. Caller frees. */
static kz_audit_entry *entries_of(const char *path, size_t *n)
{
    size_t len, cap = 4096;
    uint8_t *b = read_all(path, &len);
    kz_audit_entry *es = calloc(cap, sizeof *es);
    *n = 0;
    for (size_t at = 0; at < len; at += es[*n - 1].size) {
        cr_assert_lt(*n, cap);
        cr_assert_eq(kz_audit_decode(b + at, len - at, &es[*n]), KZ_OK);
        ++*n;
    }
    free(b);
    return es;
}

/* A full file system that fills in the middle of a write, then frees up:
 * nothing is lost, the writer never stops, the log verifies, and one LOST
 * record with a zero count marks the outage, signed at once. */
Test(audit, full_disk_mid_write_retries_and_resumes_without_loss)
{
    fixture f;
    fixture_init(&f);
    fault ft = {0};
    kz_audit_config c = fault_config(&f, &ft, 1024);
    kz_audit *a = NULL;
    kz_audit_stats st;
    cr_assert_eq(kz_audit_open(&c, &a), KZ_OK);
    for (uint32_t i = 0; i < 10; i++)
        append_ok(a, KZ_AUDIT_CONNECT, i + 1, i, 0);
    cr_assert_eq(kz_audit_flush(a, 10000), KZ_OK);
    ft.half_first = 1;
    ft.write_err = -ENOSPC;
    for (uint32_t i = 10; i < 30; i++)
        append_ok(a, KZ_AUDIT_CONNECT, i + 1, i, 0);
    /* It keeps trying (the old writer stopped for good after one error). */
    WAIT_FOR(a, st, st.error == KZ_EIO && st.write_failures >= 5);
    cr_assert_eq(st.reason, KZ_AUDIT_LOSS_NO_SPACE);
    cr_assert_eq(st.outages, 1);
    cr_assert_eq(kz_audit_flush(a, 10000), KZ_EIO, "flush says the writer is failing");
    /* Appends during the outage wait in the ring: accepted, not lost. */
    for (uint32_t i = 30; i < 50; i++)
        append_ok(a, KZ_AUDIT_CONNECT, i + 1, i, 0);
    ft.write_err = 0; /* space is back */
    WAIT_FOR(a, st, st.error == 0 && st.durable == 50);
    cr_assert_eq(st.dropped, 0);
    cr_assert_eq(st.appended, 50);
    cr_assert_eq(kz_audit_close(a), KZ_OK);

    kz_audit_verify_result r;
    cr_assert_eq(kz_audit_verify(f.path, f.key.public_key, 0, &r), KZ_OK, "%s at %llu", r.why,
                 (unsigned long long)r.bad_index);
    cr_assert_eq(r.gaps, 0, "an outage without loss is not a gap");
    cr_assert_eq(r.outages, 1);
    cr_assert_eq(r.lost_records, 0);
    size_t n;
    kz_audit_entry *es = entries_of(f.path, &n);
    uint32_t next = 0, lost_at = 0;
    for (size_t i = 0; i < n; i++) {
        if (es[i].rec.type == KZ_AUDIT_CONNECT) {
            cr_assert_eq(es[i].rec.code, next++, "records once each, in order");
        } else if (es[i].rec.type == KZ_AUDIT_LOST) {
            cr_assert_eq(lost_at, 0, "one LOST record");
            lost_at = (uint32_t)i;
            cr_assert_eq(es[i].rec.code, KZ_AUDIT_LOSS_NO_SPACE);
            cr_assert_eq(es[i].lost, 0);
            cr_assert_eq(es[i].since_ns, FAULT_CLOCK_NS);
            cr_assert_eq(es[i].until_ns, FAULT_CLOCK_NS);
            cr_assert_eq(strncmp(es[i].rec.detail, "write: ", 7), 0, "%s", es[i].rec.detail);
            cr_assert_eq(es[i + 1].rec.type, KZ_AUDIT_CHECKPOINT, "signed at once");
        }
    }
    cr_assert_eq(next, 50);
    cr_assert_gt(lost_at, 0);
    free(es);
    fixture_fini(&f);
}

/* A ring that overflows while the disk is full: the refused records are
 * counted, and the first record after the outage is a LOST record with
 * their count, the span from the outage's start to the last refusal, and
 * the reason; verify reports it. */
Test(audit, overflow_during_outage_is_noted_before_the_next_record)
{
    fixture f;
    fixture_init(&f);
    fault ft = {0};
    kz_audit_config c = fault_config(&f, &ft, 16);
    kz_audit *a = NULL;
    kz_audit_stats st;
    cr_assert_eq(kz_audit_open(&c, &a), KZ_OK);
    ft.write_err = -ENOSPC;
    const uint64_t t0 = FAULT_CLOCK_NS + 1000000000ull;
    append_ok(a, KZ_AUDIT_SERVER_START, 0, 1, t0);
    cr_assert_eq(kz_audit_flush(a, 10000), KZ_EIO);
    WAIT_FOR(a, st, st.error == KZ_EIO);
    /* The writer takes nothing while it fails: exactly 16 fit. */
    uint64_t refused = 0, last_refused_t = 0;
    for (uint32_t i = 0; i < 100; i++) {
        kz_audit_record r = event(KZ_AUDIT_VIOLATION, 9, i, "speed");
        r.unix_ns = t0 + 1 + i;
        int rc = kz_audit_append(a, &r);
        cr_assert(rc == KZ_OK || rc == KZ_EFULL);
        if (rc == KZ_EFULL) {
            refused++;
            last_refused_t = r.unix_ns;
        }
    }
    cr_assert_eq(refused, 84);
    kz_audit_stats_get(a, &st);
    cr_assert_eq(st.dropped, 84);
    cr_assert_eq(st.lost_noted, 0);
    cr_assert_eq(st.queued, 16);
    ft.write_err = 0;
    WAIT_FOR(a, st, st.lost_noted == 84 && st.durable == 17);
    cr_assert_eq(kz_audit_close(a), KZ_OK);

    kz_audit_verify_result r;
    cr_assert_eq(kz_audit_verify(f.path, f.key.public_key, 0, &r), KZ_OK, "%s", r.why);
    cr_assert_eq(r.gaps, 1);
    cr_assert_eq(r.lost_records, 84);
    cr_assert_eq(r.outages, 1);
    size_t n;
    kz_audit_entry *es = entries_of(f.path, &n);
    cr_assert_eq(es[0].rec.type, KZ_AUDIT_SERVER_START);
    cr_assert_eq(es[1].rec.type, KZ_AUDIT_LOST, "the note comes before any later record");
    cr_assert_eq(es[1].lost, 84);
    cr_assert_eq(es[1].rec.code, KZ_AUDIT_LOSS_NO_SPACE);
    cr_assert_eq(es[1].since_ns, FAULT_CLOCK_NS, "from the outage's start");
    cr_assert_eq(es[1].until_ns, last_refused_t, "to the last refusal");
    cr_assert_eq(es[2].rec.type, KZ_AUDIT_CHECKPOINT);
    for (uint32_t i = 0; i < 16; i++) {
        cr_assert_eq(es[3 + i].rec.type, KZ_AUDIT_VIOLATION);
        cr_assert_eq(es[3 + i].rec.code, i);
    }
    cr_assert_eq(es[n - 1].rec.type, KZ_AUDIT_CHECKPOINT);
    cr_assert_eq(es[n - 1].rec.code, KZ_AUDIT_CHECKPOINT_FINAL);
    free(es);
    fixture_fini(&f);
}

/* fdatasync fails after the bytes reached the file: the writer must cut
 * and write them again rather than trust them, and must not write them
 * twice. */
Test(audit, failed_sync_rewrites_the_unsynced_bytes_once)
{
    fixture f;
    fixture_init(&f);
    fault ft = {0};
    kz_audit_config c = fault_config(&f, &ft, 1024);
    kz_audit *a = NULL;
    kz_audit_stats st;
    cr_assert_eq(kz_audit_open(&c, &a), KZ_OK);
    append_ok(a, KZ_AUDIT_CONNECT, 1, 0, 0);
    cr_assert_eq(kz_audit_flush(a, 10000), KZ_OK);
    ft.sync_err = -EIO;
    for (uint32_t i = 1; i < 8; i++)
        append_ok(a, KZ_AUDIT_CONNECT, i + 1, i, 0);
    WAIT_FOR(a, st, st.error == KZ_EIO && st.write_failures >= 3);
    cr_assert_eq(st.reason, KZ_AUDIT_LOSS_IO_ERROR);
    cr_assert_gt(ft.truncates, 0, "each retry cuts back to the last synced byte");
    ft.sync_err = 0;
    WAIT_FOR(a, st, st.error == 0 && st.durable == 8);
    cr_assert_eq(kz_audit_close(a), KZ_OK);
    kz_audit_verify_result r;
    cr_assert_eq(kz_audit_verify(f.path, f.key.public_key, 0, &r), KZ_OK, "%s at %llu", r.why,
                 (unsigned long long)r.bad_index);
    cr_assert_eq(count_type(f.path, KZ_AUDIT_CONNECT), 8);
    size_t n;
    kz_audit_entry *es = entries_of(f.path, &n);
    int notes = 0;
    for (size_t i = 0; i < n; i++)
        if (es[i].rec.type == KZ_AUDIT_LOST) {
            notes++;
            cr_assert_str_eq(es[i].rec.detail, "fdatasync: Input/output error");
        }
    cr_assert_eq(notes, 1);
    free(es);
    fixture_fini(&f);
}

/* An append-only file (chattr +a) cannot be cut: after a short write the
 * writer continues after the bytes that did reach the file. */
Test(audit, append_only_file_continues_after_a_short_write)
{
    fixture f;
    fixture_init(&f);
    fault ft = {0};
    kz_audit_config c = fault_config(&f, &ft, 1024);
    kz_audit *a = NULL;
    kz_audit_stats st;
    cr_assert_eq(kz_audit_open(&c, &a), KZ_OK);
    ft.truncate_err = -EPERM;
    ft.half_first = 1;
    ft.write_err = -EDQUOT;
    for (uint32_t i = 0; i < 12; i++)
        append_ok(a, KZ_AUDIT_KICK, i + 1, i, 0);
    WAIT_FOR(a, st, st.error == KZ_EIO && st.write_failures >= 3);
    cr_assert_eq(st.reason, KZ_AUDIT_LOSS_NO_SPACE);
    ft.write_err = 0;
    WAIT_FOR(a, st, st.error == 0 && st.durable == 12);
    cr_assert_eq(kz_audit_close(a), KZ_OK);
    kz_audit_verify_result r;
    cr_assert_eq(kz_audit_verify(f.path, f.key.public_key, 0, &r), KZ_OK, "%s at %llu", r.why,
                 (unsigned long long)r.bad_index);
    cr_assert_eq(count_type(f.path, KZ_AUDIT_KICK), 12);
    fixture_fini(&f);
}

/* The file never becomes writable before close: close gives up after
 * close_wait_ms, says so, and leaves no final checkpoint; strict verify
 * refuses the log until the next open notes the unclean end, after which
 * verify reports it as a gap. */
Test(audit, close_while_failing_gives_up_and_the_next_open_notes_it)
{
    fixture f;
    fixture_init(&f);
    fault ft = {0};
    kz_audit_config c = fault_config(&f, &ft, 64);
    c.close_wait_ms = 20;
    kz_audit *a = NULL;
    kz_audit_stats st;
    cr_assert_eq(kz_audit_open(&c, &a), KZ_OK);
    for (uint32_t i = 0; i < 5; i++)
        append_ok(a, KZ_AUDIT_CONNECT, i + 1, i, 0);
    cr_assert_eq(kz_audit_flush(a, 10000), KZ_OK);
    ft.write_err = -EROFS;
    for (uint32_t i = 5; i < 9; i++)
        append_ok(a, KZ_AUDIT_CONNECT, i + 1, i, 0);
    WAIT_FOR(a, st, st.error == KZ_EIO);
    cr_assert_eq(st.reason, KZ_AUDIT_LOSS_READ_ONLY);
    cr_assert_eq(kz_audit_close(a), KZ_EIO);
    kz_audit_verify_result r;
    cr_assert_eq(kz_audit_verify(f.path, f.key.public_key, 0, &r), KZ_EAUTH);
    cr_assert_eq(r.verdict, KZ_AUDIT_TRUNCATED, "no final checkpoint: never OK");
    cr_assert_eq(count_type(f.path, KZ_AUDIT_CONNECT), 5);
    ft.write_err = 0;
    cr_assert_eq(reopen_append(&f, 1), 0);
    cr_assert_eq(kz_audit_verify(f.path, f.key.public_key, 0, &r), KZ_OK, "%s", r.why);
    cr_assert_eq(r.recoveries, 1);
    cr_assert_eq(r.gaps, 1);
    fixture_fini(&f);
}

/* ---- hostile LOST and RECOVERED records ---- */

/* Builds one well-framed, correctly hashed record by hand: the decoder's
 * field rules are all that stand between it and acceptance. `fields` is
 * (tag, len, value...) bytes. Returns the size. */
static size_t craft(uint8_t *out, uint8_t type, const uint8_t *fields, size_t flen)
{
    memset(out, 0, 56);
    out[4] = 1;
    out[5] = type;
    out[16] = 1; /* time */
    memcpy(out + 56, fields, flen);
    size_t size = 56 + flen + 32;
    out[0] = (uint8_t)size;
    out[1] = (uint8_t)(size >> 8);
    out[2] = (uint8_t)~size;
    out[3] = (uint8_t)(~size >> 8);
    crypto_generichash(out + 56 + flen, 32, out, 56 + flen, NULL, 0);
    return size;
}

Test(audit, hostile_loss_fields_are_refused)
{
    static const struct {
        uint8_t type;
        uint8_t fields[40];
        size_t flen;
        int ok;
    } cases[] = {
        /* code 2 (no space), lost 5, since 1, until 2: accepted. */
        {KZ_AUDIT_LOST, {6, 4, 2, 0, 0, 0, 9, 8, 5, 0, 0, 0, 0, 0, 0, 0, 10, 8, 1, 0, 0, 0, 0,
                         0, 0, 0, 11, 8, 2, 0, 0, 0, 0, 0, 0, 0}, 36, 1},
        /* No reason code. */
        {KZ_AUDIT_LOST, {9, 8, 5, 0, 0, 0, 0, 0, 0, 0}, 10, 0},
        /* An unknown reason. */
        {KZ_AUDIT_LOST, {6, 4, 99, 0, 0, 0, 9, 8, 5, 0, 0, 0, 0, 0, 0, 0}, 16, 0},
        /* A span that ends before it starts. */
        {KZ_AUDIT_LOST, {6, 4, 1, 0, 0, 0, 10, 8, 9, 0, 0, 0, 0, 0, 0, 0, 11, 8, 2, 0, 0, 0, 0,
                         0, 0, 0}, 26, 0},
        /* A loss count on a caller's record. */
        {KZ_AUDIT_CONNECT, {9, 8, 5, 0, 0, 0, 0, 0, 0, 0}, 10, 0},
        /* A span on a recovered record. */
        {KZ_AUDIT_RECOVERED, {10, 8, 1, 0, 0, 0, 0, 0, 0, 0}, 10, 0},
        /* A count on a recovered record is allowed. */
        {KZ_AUDIT_RECOVERED, {6, 4, 7, 0, 0, 0, 9, 8, 1, 0, 0, 0, 0, 0, 0, 0}, 16, 1},
        /* A loss field with a short width. */
        {KZ_AUDIT_LOST, {6, 4, 1, 0, 0, 0, 9, 4, 5, 0, 0, 0}, 12, 0},
        /* Loss fields out of order. */
        {KZ_AUDIT_LOST, {6, 4, 1, 0, 0, 0, 11, 8, 2, 0, 0, 0, 0, 0, 0, 0, 10, 8, 1, 0, 0, 0, 0,
                         0, 0, 0}, 26, 0},
        /* A tag past the last one. */
        {KZ_AUDIT_LOST, {6, 4, 1, 0, 0, 0, 12, 8, 1, 0, 0, 0, 0, 0, 0, 0}, 16, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t buf[KZ_AUDIT_RECORD_MAX];
        size_t n = craft(buf, cases[i].type, cases[i].fields, cases[i].flen);
        kz_audit_entry e;
        int rc = kz_audit_decode(buf, n, &e);
        cr_assert_eq(rc, cases[i].ok ? KZ_OK : KZ_EPROTO, "case %zu: %d", i, rc);
        if (i == 0) {
            cr_assert_eq(e.lost, 5);
            cr_assert_eq(e.since_ns, 1);
            cr_assert_eq(e.until_ns, 2);
            cr_assert_eq(e.rec.code, KZ_AUDIT_LOSS_NO_SPACE);
        }
    }
}

/* The failing path allocates nothing either: the buffer and ring are all
 * the memory an outage uses. */
Test(audit, outage_allocates_nothing)
{
    fixture f;
    fixture_init(&f);
    fault ft = {0};
    kz_counting_alloc ca;
    kz_counting_alloc_init(&ca, NULL);
    kz_audit_config c = fault_config(&f, &ft, 64);
    c.alloc = kz_counting_alloc_allocator(&ca);
    kz_audit *a = NULL;
    kz_audit_stats st;
    cr_assert_eq(kz_audit_open(&c, &a), KZ_OK);
    uint64_t before = kz_counting_alloc_allocs(&ca);
    ft.write_err = -ENOSPC;
    for (uint32_t i = 0; i < 200; i++) {
        kz_audit_record r = event(KZ_AUDIT_CONNECT, i + 1, i, NULL);
        (void)kz_audit_append(a, &r);
    }
    WAIT_FOR(a, st, st.write_failures >= 5);
    ft.write_err = 0;
    WAIT_FOR(a, st, st.error == 0 && st.lost_noted == st.dropped && st.durable == st.appended);
    cr_assert_eq(kz_counting_alloc_allocs(&ca), before);
    cr_assert_eq(kz_audit_close(a), KZ_OK);
    fixture_fini(&f);
}

/* Fails every other write: the writer fails and resumes again and again
 * (a disk at the edge of full). Every record still lands once, in order,
 * the log verifies, and the outages are noted without a loss count. */
typedef struct flap {
    _Atomic uint64_t calls;
    _Atomic int on;
} flap;

static int64_t flap_write(void *ctx, int fd, const void *buf, size_t n)
{
    flap *fl = ctx;
    if (fl->on && fl->calls++ % 2 == 0)
        return -ENOSPC;
    ssize_t w = write(fd, buf, n);
    return w < 0 ? -errno : w;
}

Test(audit, flapping_disk_keeps_every_record_once)
{
    fixture f;
    fixture_init(&f);
    flap fl = {0};
    kz_audit_config c = config_for(&f, 50);
    c.retry_max_ms = 1;
    c.commit_records = 8;
    c.io.write = flap_write;
    c.io.ctx = &fl;
    kz_audit *a = NULL;
    kz_audit_stats st;
    cr_assert_eq(kz_audit_open(&c, &a), KZ_OK);
    fl.on = 1;
    for (uint32_t i = 0; i < 400; i++) {
        kz_audit_record r = event(KZ_AUDIT_VIOLATION, 3, i, "pose");
        while (kz_audit_append(a, &r) == KZ_EFULL)
            sched_yield();
    }
    WAIT_FOR(a, st, st.durable == 400);
    fl.on = 0;
    WAIT_FOR(a, st, st.error == 0);
    cr_assert_gt(st.outages, 1);
    cr_assert_eq(kz_audit_close(a), KZ_OK);
    kz_audit_verify_result r;
    cr_assert_eq(kz_audit_verify(f.path, f.key.public_key, 0, &r), KZ_OK, "%s at %llu", r.why,
                 (unsigned long long)r.bad_index);
    cr_assert_geq(r.outages, 1);
    size_t n;
    kz_audit_entry *es = entries_of(f.path, &n);
    uint32_t next = 0;
    for (size_t i = 0; i < n; i++)
        if (es[i].rec.type == KZ_AUDIT_VIOLATION)
            cr_assert_eq(es[i].rec.code, next++);
    cr_assert_eq(next, 400);
    free(es);
    fixture_fini(&f);
}
