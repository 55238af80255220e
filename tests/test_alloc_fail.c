/*
 * Out-of-memory paths. Each constructor meets a counting allocator that
 * refuses request number n + 1 and every later one, for n = 0, 1, 2, ...
 * until the constructor succeeds. A constructor that returns a code must
 * return KZ_ENOMEM, never KZ_EINVAL or another code that would send an
 * operator looking for a configuration mistake; one that returns an object
 * must return NULL. In both cases every byte taken before the refusal must
 * have been given back with the size it was taken with, so the allocator's
 * live byte count is zero again.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <kizuna/audit.h>
#include <kizuna/client.h>
#include <kizuna/counters.h>
#include <kizuna/entity.h>
#include <kizuna/grid.h>
#include <kizuna/hist.h>
#include <kizuna/impair.h>
#include <kizuna/mpsc.h>
#include <kizuna/proxy.h>
#include <kizuna/ring.h>
#include <kizuna/server.h>

#include "net/fixmap.h"
#include "sim/interest.h"
#include "sim/snapshot.h"
#include "support/loopback.h"

/* More allocations than any constructor here makes; the sweep fails if one
 * is still refused after this many. */
#define KZT_MAX_ALLOCS 256

static void quiet(void *ctx, int32_t level, const char *module, const char *msg)
{
    (void)ctx, (void)level, (void)module, (void)msg;
}

/* Builds the object with `a`; on success tears it down again. Returns the
 * constructor's code. */
typedef int (*kzt_build_fn)(const kz_allocator *a, void *ctx);

/* Runs `build` once per refused allocation number and checks the code and
 * the live bytes after each; returns how many allocations it refused. */
static int sweep(const char *what, kzt_build_fn build, void *ctx)
{
    for (int64_t n = 0; n < KZT_MAX_ALLOCS; n++) {
        kz_counting_alloc ca;
        kz_counting_alloc_init(&ca, NULL);
        ca.fail_after = n;
        kz_allocator a = kz_counting_alloc_allocator(&ca);
        int rc = build(&a, ctx);
        cr_assert_eq(kz_counting_alloc_live_bytes(&ca), 0,
                     "%s with allocation %lld refused: %llu bytes not given back", what,
                     (long long)n + 1, (unsigned long long)kz_counting_alloc_live_bytes(&ca));
        if (rc == KZ_OK) {
            cr_assert_eq(ca.failed, 0, "%s succeeded although an allocation was refused", what);
            cr_assert_gt(n, 0, "%s allocates nothing through the hook", what);
            return (int)n;
        }
        cr_assert_gt(ca.failed, 0, "%s failed (%s) before any allocation was refused", what,
                     kz_strerror(rc));
        cr_assert_eq(rc, KZ_ENOMEM, "%s with allocation %lld refused returned %s, not %s", what,
                     (long long)n + 1, kz_strerror(rc), kz_strerror(KZ_ENOMEM));
    }
    cr_assert_fail("%s still fails after %d allocations", what, KZT_MAX_ALLOCS);
    return -1;
}

/* ---- core --------------------------------------------------------------- */

static int build_spsc(const kz_allocator *a, void *ctx)
{
    (void)ctx;
    kz_spsc r;
    int rc = kz_spsc_init(&r, 64, 24, a);
    if (rc == KZ_OK)
        kz_spsc_fini(&r);
    return rc;
}

static int build_mpsc(const kz_allocator *a, void *ctx)
{
    (void)ctx;
    kz_mpsc q;
    int rc = kz_mpsc_init(&q, 64, 24, a);
    if (rc == KZ_OK)
        kz_mpsc_fini(&q);
    return rc;
}

static int build_counters(const kz_allocator *a, void *ctx)
{
    (void)ctx;
    kz_counters c;
    int rc = kz_counters_init(&c, 20, 3, NULL, a);
    if (rc == KZ_OK)
        kz_counters_fini(&c);
    return rc;
}

static int build_hist(const kz_allocator *a, void *ctx)
{
    (void)ctx;
    kz_hist_config hc;
    kz_hist_config_default(&hc);
    kz_hist h;
    int rc = kz_hist_init(&h, &hc, a);
    if (rc == KZ_OK)
        kz_hist_fini(&h);
    return rc;
}

Test(alloc_fail, core_value_types_report_enomem)
{
    cr_expect_eq(sweep("kz_spsc_init", build_spsc, NULL), 1);
    cr_expect_eq(sweep("kz_mpsc_init", build_mpsc, NULL), 1);
    cr_expect_eq(sweep("kz_counters_init", build_counters, NULL), 1);
    cr_expect_eq(sweep("kz_hist_init", build_hist, NULL), 1);
}

/* ---- simulation tables --------------------------------------------------- */

static int build_entities(const kz_allocator *a, void *ctx)
{
    (void)ctx;
    kz_entities e;
    int rc = kz_entities_init(&e, 1000, a);
    if (rc == KZ_OK)
        kz_entities_fini(&e);
    return rc;
}

static int build_grid(const kz_allocator *a, void *ctx)
{
    (void)ctx;
    kz_grid_config gc;
    kz_grid_config_default(&gc);
    gc.max_entities = 1000;
    kz_grid g;
    int rc = kz_grid_init(&g, &gc, a);
    if (rc == KZ_OK)
        kz_grid_fini(&g);
    return rc;
}

static int build_interest(const kz_allocator *a, void *ctx)
{
    (void)ctx;
    kz_interest in;
    int rc = kz_interest_init(&in, NULL, 1000, a);
    if (rc == KZ_OK)
        kz_interest_fini(&in);
    return rc;
}

static int build_snap_cache(const kz_allocator *a, void *ctx)
{
    (void)ctx;
    kz_snap_cache k;
    int rc = kz_snap_cache_init(&k, 1000, 2, a);
    if (rc == KZ_OK)
        kz_snap_cache_fini(&k);
    return rc;
}

Test(alloc_fail, entity_table_partial_failure_frees_what_it_took)
{
    /* Three arrays: refusing the second or third must free the first ones
     * with the sizes they were allocated with. */
    cr_expect_eq(sweep("kz_entities_init", build_entities, NULL), 3);
}

Test(alloc_fail, simulation_tables_report_enomem)
{
    cr_expect_eq(sweep("kz_grid_init", build_grid, NULL), 1);
    cr_expect_eq(sweep("kz_interest_init", build_interest, NULL), 3);
    cr_expect_eq(sweep("kz_snap_cache_init", build_snap_cache, NULL), 1);
}

/* ---- transport pieces ---------------------------------------------------- */

static int build_fixmap(const kz_allocator *a, void *ctx)
{
    (void)ctx;
    kz__fixmap m;
    int rc = kz__fixmap_init(&m, 100, a);
    if (rc == KZ_OK)
        kz__fixmap_fini(&m);
    return rc;
}

/* Object constructors report failure as NULL; the sweep wants a code. */
static int build_impair(const kz_allocator *a, void *ctx)
{
    (void)ctx;
    kz_impair_config ic;
    kz_impair_config_default(&ic);
    kz_impair *im = kz_impair_create(&ic, 7, a);
    if (im == NULL)
        return KZ_ENOMEM;
    kz_impair_destroy(im);
    return KZ_OK;
}

Test(alloc_fail, transport_pieces_report_enomem)
{
    cr_expect_eq(sweep("kz__fixmap_init", build_fixmap, NULL), 1);
    cr_expect_eq(sweep("kz_impair_create", build_impair, NULL), 1);
}

/* ---- audit log ------------------------------------------------------------ */

typedef struct audit_ctx {
    char dir[64];
    char path[96];
    kz_sign_keypair key;
} audit_ctx;

static int build_audit(const kz_allocator *a, void *ctx)
{
    const audit_ctx *f = ctx;
    kz_audit_config c;
    memset(&c, 0, sizeof c);
    c.path = f->path;
    memcpy(c.sign_secret_key, f->key.secret_key, sizeof c.sign_secret_key);
    c.alloc = *a;
    c.log.level = KZ_LOG_OFF;
    c.log.sink = quiet;
    kz_audit *log = NULL;
    int rc = kz_audit_open(&c, &log);
    if (rc == KZ_OK)
        cr_assert_eq(kz_audit_close(log), KZ_OK);
    else
        cr_assert_null(log, "a failed open hands out no log");
    return rc;
}

Test(alloc_fail, audit_open_reports_enomem)
{
    audit_ctx f;
    snprintf(f.dir, sizeof f.dir, "/tmp/kz-allocfail-XXXXXX");
    cr_assert_not_null(mkdtemp(f.dir));
    snprintf(f.path, sizeof f.path, "%s/audit.log", f.dir);
    cr_assert_eq(kz_sign_keypair_generate(&f.key), KZ_OK);
    cr_expect_geq(sweep("kz_audit_open", build_audit, &f), 2);
    unlink(f.path);
    rmdir(f.dir);
}

/* ---- whole objects ---------------------------------------------------------- */

#define KZT_PROTOCOL 0x4B5A414C4C4F4346ull
#define KZT_SERVER_ID 5u

static int build_client(const kz_allocator *a, void *ctx)
{
    (void)ctx;
    kz_client_config cc;
    memset(&cc, 0, sizeof cc);
    kz_client_config_default(&cc);
    cc.net.alloc = *a;
    cc.net.log.level = KZ_LOG_OFF;
    cc.net.log.sink = quiet;
    kz_client *c = kz_client_create(&cc);
    if (c == NULL)
        return KZ_ENOMEM;
    kz_client_destroy(c);
    return KZ_OK;
}

/* A client created and connecting (its transport allocated): connect
 * reports why it could not start, KZ_ENOMEM here. */
static int build_connecting_client(const kz_allocator *a, void *ctx)
{
    const kz_connect_token *ct = ctx;
    kz_client_config cc;
    memset(&cc, 0, sizeof cc);
    kz_client_config_default(&cc);
    cc.net.alloc = *a;
    cc.net.log.level = KZ_LOG_OFF;
    cc.net.log.sink = quiet;
    kz_client *c = kz_client_create(&cc);
    if (c == NULL)
        return KZ_ENOMEM;
    int rc = kz_client_connect(c, ct, 0);
    kz_client_destroy(c);
    return rc;
}

static int build_server(const kz_allocator *a, void *ctx)
{
    const kzt_keys *keys = ctx;
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    kzt_server_config(&sc.net, keys, KZT_PROTOCOL, KZT_SERVER_ID, 8);
    sc.max_objects = 16;
    sc.net.alloc = *a;
    sc.net.log.level = KZ_LOG_OFF;
    sc.net.log.sink = quiet;
    kz_server *s = kz_server_create(&sc);
    if (s == NULL)
        return KZ_ENOMEM;
    kz_server_destroy(s);
    return KZ_OK;
}

static int build_proxy(const kz_allocator *a, void *ctx)
{
    (void)ctx;
    kz_proxy_config pc;
    memset(&pc, 0, sizeof pc);
    pc.server_port = 9;
    pc.max_clients = 4;
    pc.alloc = *a;
    kz_proxy *p = kz_proxy_create(&pc);
    if (p == NULL)
        return KZ_ENOMEM;
    kz_proxy_destroy(p);
    return KZ_OK;
}

Test(alloc_fail, objects_return_null_and_leak_nothing)
{
    kzt_keys keys;
    cr_assert_eq(kzt_keys_make(&keys), KZ_OK);
    cr_expect_geq(sweep("kz_client_create", build_client, NULL), 3);
    cr_expect_geq(sweep("kz_server_create", build_server, &keys), 10);
    cr_expect_geq(sweep("kz_proxy_create", build_proxy, NULL), 3);
    kz_connect_token ct;
    cr_assert_eq(kzt_mint(&keys, KZT_PROTOCOL, KZT_SERVER_ID, 40000, 7, &ct), KZ_OK);
    cr_expect_geq(sweep("kz_client_connect", build_connecting_client, &ct), 4);
}
