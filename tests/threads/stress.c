#include "stress.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

#include <kizuna/counters.h>
#include <kizuna/mpsc.h>
#include <kizuna/ring.h>

static void note(kzt_result *r, const char *fmt, ...)
{
    if (r->violations++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->first, sizeof r->first, fmt, ap);
        va_end(ap);
    }
}

/* ---- SPSC -------------------------------------------------------------- */

typedef struct {
    uint64_t seq;
    uint64_t check; /* function of seq: catches torn or stale element bytes */
    uint64_t pad;
} record;

static uint64_t check_of(uint64_t seq)
{
    return seq * 0x9e3779b97f4a7c15ull ^ 0xdeadbeefcafef00dull;
}

typedef struct {
    kz_spsc *ring;
    uint64_t items;
} spsc_arg;

static void *spsc_producer(void *p)
{
    spsc_arg *a = p;
    record batch[37];
    uint64_t seq = 0;
    while (seq < a->items) {
        /* Every third call a single push, else batches of 2..37. */
        uint64_t want = seq % 3 == 0 ? 1 : 1 + seq % 37;
        if (want > a->items - seq)
            want = a->items - seq;
        for (uint64_t i = 0; i < want; i++)
            batch[i] = (record){seq + i, check_of(seq + i), 0};
        uint32_t done = 0;
        while (done < want) {
            if (want == 1)
                done += kz_spsc_push(a->ring, batch) == KZ_OK;
            else
                done += kz_spsc_push_n(a->ring, batch + done, (uint32_t)want - done);
        }
        seq += want;
    }
    return NULL;
}

kzt_result kzt_spsc_stress(uint64_t items)
{
    kzt_result res = {0};
    kz_spsc ring;
    if (kz_spsc_init(&ring, 1024, sizeof(record), NULL) != KZ_OK) {
        note(&res, "init failed");
        return res;
    }
    spsc_arg arg = {&ring, items};
    pthread_t th;
    pthread_create(&th, NULL, spsc_producer, &arg);
    record out[64];
    uint64_t expect = 0;
    while (expect < items) {
        uint32_t got = kz_spsc_pop_n(&ring, out, (uint32_t)(expect % 64) + 1);
        for (uint32_t i = 0; i < got; i++, expect++)
            if (out[i].seq != expect || out[i].check != check_of(expect))
                note(&res, "at %llu got seq %llu", (unsigned long long)expect,
                     (unsigned long long)out[i].seq);
    }
    pthread_join(th, NULL);
    if (kz_spsc_pop(&ring, out) != KZ_EEMPTY)
        note(&res, "an element remained after the last one");
    res.delivered = expect;
    kz_spsc_fini(&ring);
    return res;
}

/* ---- MPSC -------------------------------------------------------------- */

typedef struct {
    uint32_t producer;
    uint32_t pad;
    uint64_t seq;
} tagged;

typedef struct {
    kz_mpsc *q;
    uint32_t id;
    uint64_t count;
} mpsc_arg;

static void *mpsc_producer(void *p)
{
    mpsc_arg *a = p;
    for (uint64_t s = 0; s < a->count; s++) {
        tagged t = {a->id, 0, s};
        while (kz_mpsc_push(a->q, &t) == KZ_EFULL) {
        }
    }
    return NULL;
}

kzt_result kzt_mpsc_stress(uint32_t producers, uint64_t per_producer)
{
    kzt_result res = {0};
    enum { MAX_PRODUCERS = 16 };
    if (producers == 0 || producers > MAX_PRODUCERS) {
        note(&res, "bad producer count");
        return res;
    }
    kz_mpsc q;
    if (kz_mpsc_init(&q, 4096, sizeof(tagged), NULL) != KZ_OK) {
        note(&res, "init failed");
        return res;
    }
    pthread_t th[MAX_PRODUCERS];
    mpsc_arg args[MAX_PRODUCERS];
    for (uint32_t i = 0; i < producers; i++) {
        args[i] = (mpsc_arg){&q, i, per_producer};
        pthread_create(&th[i], NULL, mpsc_producer, &args[i]);
    }
    uint64_t next[MAX_PRODUCERS] = {0}, total = producers * per_producer;
    tagged batch[128];
    while (res.delivered < total) {
        uint32_t got = kz_mpsc_pop_n(&q, batch, 128);
        for (uint32_t i = 0; i < got; i++) {
            uint32_t p = batch[i].producer;
            if (p >= producers || batch[i].seq != next[p])
                note(&res, "producer %u: got seq %llu", p, (unsigned long long)batch[i].seq);
            else
                next[p]++;
        }
        res.delivered += got;
    }
    for (uint32_t i = 0; i < producers; i++)
        pthread_join(th[i], NULL);
    if (kz_mpsc_pop(&q, batch) != KZ_EEMPTY)
        note(&res, "an element remained after the last one");
    for (uint32_t i = 0; i < producers; i++)
        if (next[i] != per_producer)
            note(&res, "producer %u delivered %llu", i, (unsigned long long)next[i]);
    kz_mpsc_fini(&q);
    return res;
}

/* ---- counters ---------------------------------------------------------- */

typedef struct {
    kz_counters *c;
    uint32_t thread;
    uint64_t count;
} counter_arg;

static void *count_writer(void *p)
{
    counter_arg *a = p;
    kz_counter_block b = kz_counters_block(a->c, a->thread);
    for (uint64_t i = 0; i < a->count; i++) {
        kz_counter_inc(b, 0);
        if (i % 10 == 0)
            kz_counter_add(b, 1, 2);
    }
    return NULL;
}

kzt_result kzt_counters_stress(uint32_t writers, uint64_t per_writer)
{
    kzt_result res = {0};
    enum { MAX_WRITERS = 16 };
    kz_counters c;
    if (writers == 0 || writers > MAX_WRITERS || kz_counters_init(&c, 2, writers, NULL, NULL)) {
        note(&res, "init failed");
        return res;
    }
    pthread_t th[MAX_WRITERS];
    counter_arg args[MAX_WRITERS];
    for (uint32_t i = 0; i < writers; i++) {
        args[i] = (counter_arg){&c, i, per_writer};
        pthread_create(&th[i], NULL, count_writer, &args[i]);
    }
    uint64_t prev = 0;
    for (int i = 0; i < 2000; i++) {
        uint64_t now = kz_counters_get(&c, 0);
        if (now < prev)
            note(&res, "total went backwards: %llu after %llu", (unsigned long long)now,
                 (unsigned long long)prev);
        prev = now;
    }
    for (uint32_t i = 0; i < writers; i++)
        pthread_join(th[i], NULL);
    res.delivered = kz_counters_get(&c, 0);
    if (res.delivered != writers * per_writer)
        note(&res, "counter 0 is %llu", (unsigned long long)res.delivered);
    if (kz_counters_get(&c, 1) != writers * ((per_writer + 9) / 10) * 2)
        note(&res, "counter 1 is %llu", (unsigned long long)kz_counters_get(&c, 1));
    kz_counters_fini(&c);
    return res;
}
