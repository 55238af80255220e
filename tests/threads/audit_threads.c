/*
 * Concurrent audit appends for the ThreadSanitizer build (Criterion's
 * sandbox cannot start under TSan): `producers` threads append
 * `per_producer` records each (retrying on a full ring) while the writer
 * thread hashes, commits and checkpoints; the caller polls the stats and
 * flushes meanwhile, and a fault thread makes the file system "full" for
 * a while, several times, through the injected write hook, so the
 * writer's failing, retrying and resuming paths run under the same
 * concurrency. Afterwards the log must verify, hold every record once in
 * per-producer order, account for every refusal in LOST records, and
 * note each outage. Declared here rather than in stress.h; add to stress.h:
 *
 *   kzt_result kzt_audit_append_stress(uint32_t producers, uint64_t per_producer);
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include <kizuna/audit.h>
#include <kizuna/token.h>

#include "stress.h"

kzt_result kzt_audit_append_stress(uint32_t producers, uint64_t per_producer);

#define KZT_AUDIT_MAX_PRODUCERS 16
/* Outages the fault thread causes, and how long each lasts. */
#define KZT_AUDIT_OUTAGES 5
#define KZT_AUDIT_OUTAGE_NS 3000000

/* The injected write: fails with ENOSPC while `full` is set. */
typedef struct {
    _Atomic int full;
    _Atomic int stop;
    kz_audit *a;
    int outages; /* caused, with the writer seen failing */
} kzt_audit_fault;

static int64_t kzt_audit_write(void *ctx, int fd, const void *buf, size_t n)
{
    kzt_audit_fault *f = ctx;
    if (atomic_load(&f->full))
        return -ENOSPC;
    ssize_t w = write(fd, buf, n);
    return w < 0 ? -errno : w;
}

static void kzt_sleep_ns(long ns)
{
    struct timespec t = {0, ns};
    nanosleep(&t, NULL);
}

/* Fills and frees the "disk" a few times while the producers run; each
 * outage lasts until the writer has seen it fail. */
static void *kzt_audit_faults(void *arg)
{
    kzt_audit_fault *f = arg;
    for (int i = 0; i < KZT_AUDIT_OUTAGES && !atomic_load(&f->stop); i++) {
        kzt_sleep_ns(KZT_AUDIT_OUTAGE_NS);
        atomic_store(&f->full, 1);
        kz_audit_stats st;
        for (int k = 0; k < 20000; k++) {
            kz_audit_stats_get(f->a, &st);
            if (st.error != 0)
                break;
            kzt_sleep_ns(100000);
        }
        f->outages += st.error != 0;
        kzt_sleep_ns(KZT_AUDIT_OUTAGE_NS);
        atomic_store(&f->full, 0);
    }
    return NULL;
}

typedef struct {
    kz_audit *a;
    uint32_t id;
    uint64_t n;
    uint64_t full;
} kzt_audit_producer;

static void *kzt_audit_produce(void *arg)
{
    kzt_audit_producer *p = arg;
    kz_audit_record r;
    memset(&r, 0, sizeof r);
    r.type = KZ_AUDIT_VIOLATION;
    r.client_id = p->id;
    for (uint64_t i = 0; i < p->n; i++) {
        r.code = (uint32_t)i;
        while (kz_audit_append(p->a, &r) == KZ_EFULL) {
            p->full++;
            sched_yield();
        }
    }
    return NULL;
}

static void kzt_audit_fail(kzt_result *res, const char *what)
{
    if (res->violations++ == 0)
        snprintf(res->first, sizeof res->first, "%s", what);
}

/* Reads back the log: order per producer, counts, refusals noted. */
static void kzt_audit_check(const char *path, const uint8_t *pk, uint32_t producers,
                            uint64_t per, uint64_t full, int outages, kzt_result *res)
{
    kz_audit_verify_result v;
    if (kz_audit_verify(path, pk, 0, &v) != KZ_OK)
        return kzt_audit_fail(res, v.why);
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        return kzt_audit_fail(res, "cannot reopen the log");
    size_t len = (size_t)st.st_size;
    const uint8_t *b = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (b == MAP_FAILED)
        return kzt_audit_fail(res, "cannot map the log");
    uint64_t next[KZT_AUDIT_MAX_PRODUCERS] = {0}, noted = 0, outage_notes = 0;
    for (size_t at = 0; at < len;) {
        kz_audit_entry e;
        if (kz_audit_decode(b + at, len - at, &e) != KZ_OK)
            break;
        at += e.size;
        noted += e.rec.type == KZ_AUDIT_LOST ? e.lost : 0;
        outage_notes += e.rec.type == KZ_AUDIT_LOST && e.rec.code == KZ_AUDIT_LOSS_NO_SPACE;
        if (e.rec.type != KZ_AUDIT_VIOLATION)
            continue;
        uint64_t id = e.rec.client_id - 1;
        if (id >= producers || e.rec.code != (uint32_t)next[id])
            kzt_audit_fail(res, "a record is out of per-producer order or foreign");
        else
            next[id]++, res->delivered++;
    }
    munmap((void *)(uintptr_t)b, len);
    for (uint32_t i = 0; i < producers; i++)
        if (next[i] != per)
            kzt_audit_fail(res, "records lost");
    if (noted != full)
        kzt_audit_fail(res, "ring refusals not all noted in LOST records");
    /* A note can cover two outages when the second began before the first
     * was written down, never none. */
    if (outages > 0 && outage_notes == 0)
        kzt_audit_fail(res, "outages not noted in LOST records");
}

kzt_result kzt_audit_append_stress(uint32_t producers, uint64_t per_producer)
{
    kzt_result res;
    memset(&res, 0, sizeof res);
    if (producers == 0 || producers > KZT_AUDIT_MAX_PRODUCERS) {
        kzt_audit_fail(&res, "bad producer count");
        return res;
    }
    char dir[] = "/tmp/kzt-audit-XXXXXX", path[64];
    kz_sign_keypair key;
    if (mkdtemp(dir) == NULL || kz_sign_keypair_generate(&key) != KZ_OK) {
        kzt_audit_fail(&res, "setup failed");
        return res;
    }
    snprintf(path, sizeof path, "%s/audit.log", dir);
    kzt_audit_fault fault;
    memset(&fault, 0, sizeof fault);
    kz_audit_config c;
    memset(&c, 0, sizeof c);
    c.path = path;
    c.ring_capacity = 512;
    c.checkpoint_records = 300;
    c.retry_max_ms = 1;
    c.io.write = kzt_audit_write;
    c.io.ctx = &fault;
    memcpy(c.sign_secret_key, key.secret_key, sizeof c.sign_secret_key);
    kz_audit *a = NULL;
    if (kz_audit_open(&c, &a) != KZ_OK) {
        kzt_audit_fail(&res, "open failed");
        return res;
    }
    fault.a = a;
    pthread_t faults;
    pthread_create(&faults, NULL, kzt_audit_faults, &fault);
    kzt_audit_producer p[KZT_AUDIT_MAX_PRODUCERS];
    pthread_t th[KZT_AUDIT_MAX_PRODUCERS];
    for (uint32_t i = 0; i < producers; i++) {
        p[i] = (kzt_audit_producer){a, i + 1, per_producer, 0};
        pthread_create(&th[i], NULL, kzt_audit_produce, &p[i]);
    }
    kz_audit_stats st;
    for (int i = 0; i < 20; i++) {
        kz_audit_stats_get(a, &st); /* concurrent reads of the counters */
        /* KZ_EIO only says the writer is failing right now. */
        int rc = kz_audit_flush(a, 10000);
        if (rc != KZ_OK && rc != KZ_EIO)
            kzt_audit_fail(&res, "flush timed out");
    }
    uint64_t full = 0;
    for (uint32_t i = 0; i < producers; i++) {
        pthread_join(th[i], NULL);
        full += p[i].full;
    }
    atomic_store(&fault.stop, 1);
    pthread_join(faults, NULL);
    if (kz_audit_close(a) != KZ_OK)
        kzt_audit_fail(&res, "close failed");
    kzt_audit_check(path, key.public_key, producers, per_producer, full, fault.outages, &res);
    unlink(path);
    rmdir(dir);
    return res;
}
