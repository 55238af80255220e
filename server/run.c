/*
 * `kizuna-server run`: serves a world (kz_server) over the secure
 * transport with its I/O threads; this thread is the simulation thread.
 *
 * Life of the process:
 *   1. configuration (config.h): flags > KIZUNA_* > INI file > defaults;
 *      any error is reported line by line and nothing starts (exit 2);
 *   2. start, in an order that leaves nothing half-started: keys, the UDP
 *      ports (probed first so a port in use is named), the admin HTTP
 *      endpoint, the audit log, the world, its zones; any failure is one
 *      line and exit 1, with everything already started stopped again;
 *   3. serve: ticks, metrics published four times a second, sd_notify
 *      READY=1 under systemd; while the audit log cannot be written,
 *      audit_on_failure = refuse closes the gate to new clients and fails
 *      /readyz until the writer recovers (kzs_audit_watch_step);
 *   4. SIGHUP: the file is read again; zones, their ACLs and the trusted
 *      backend keys change live (no one is dropped); other changes are
 *      named as needing a restart; a bad file changes nothing;
 *   5. SIGTERM or SIGINT: STOPPING=1, /readyz fails, the gate takes no
 *      one new, every client is told "server shutting down", the world
 *      drains for at most shutdown_grace seconds (a second signal cuts it
 *      short), the audit log is flushed with a final signed checkpoint,
 *      and the process exits 0.
 * The log is JSON lines on stderr (jsonlog.h).
 *
 * In a fleet role (role = authority or edge, docs/SCALING.md) the world
 * runs on several processes joined by the per-tick bus (bus.h): each pass
 * of the loop takes what the bus brought, steps, and publishes what the
 * step wrote. The authority has no UDP port and no gate; it is ready once
 * its bus is up. An edge asks for the world image at start (HELLO) and
 * is ready, listening and in the directory only once it holds it (until
 * then, and whenever it loses the authority, its gate refuses with DENY
 * unavailable); an image whose settings differ from its own stops it
 * (exit 1). On SIGTERM an edge leaves the directory, lets its clients go
 * (the authority holds their avatars) and publishes its last messages.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <systemd/sd-daemon.h>

#include <kizuna/audit.h>
#include <kizuna/server.h>

#include "admin.h"
#include "bus.h"
#include "commands.h"
#include "config.h"
#include "defaults.h"
#include "fleet.h"
#include "jsonlog.h"
#include "keys.h"
#include "metrics.h"
#include "public_address.h"
#include "sim/fleet.h"

/* The audit log's health as the admission policy sees it (sim thread). */
typedef struct kzs_audit_watch {
    int down;               /* failing or losing within the hold time */
    int refusing;           /* the gate is closed because of it */
    int bad_once;           /* bad_at is meaningful */
    uint64_t dropped_seen;  /* kz_audit_stats.dropped at the last step */
    uint64_t bad_at;        /* monotonic ns when the writer was last seen failing or losing */
    uint64_t remind_at;     /* monotonic ns of the next reminder line */
} kzs_audit_watch;

/* Everything one run holds. */
typedef struct kzs_run {
    kzs_config cfg;
    int argc;
    char **argv;
    kz_log log;
    kz_server *srv;
    kz_audit *audit;
    kzs_metrics *metrics;
    kzs_admin *admin;
    kzs_fleet_member *fleet;  /* NULL without a NATS URL */
    kzs_fleet_conn *fleet_conn; /* the directory's connection until it joins (an
                                   edge joins once it holds the world) */
    kzs_bus *bus;             /* NULL for a single process */
    unsigned role;            /* KZ__ROLE_* */
    int synced;               /* edge: holds the authority's world image */
    int ready_once;           /* ready, listening and registered (an edge: after a sync) */
    uint32_t refusal;         /* the gate's refusal now (0: admitting) */
    kz_time_ns started, missing_at, stats_at; /* monotonic ns */
    uint64_t server_id;
    kzs_audit_watch watch;
    char token_addresses[KZ_VERIFIER_MAX_ADDRESSES * 48]; /* what tokens must name */
} kzs_run;

/* Signals may arrive on any of the process's threads; lock-free atomics
 * are safe in a handler and read race-free by the simulation thread. */
static atomic_uint kzs_stop_signals;
static atomic_uint kzs_reload_signals;
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "signal counters must be lock-free");

static void kzs_on_stop(int sig)
{
    (void)sig;
    atomic_fetch_add(&kzs_stop_signals, 1u);
}

static void kzs_on_reload(int sig)
{
    (void)sig;
    atomic_fetch_add(&kzs_reload_signals, 1u);
}

static void kzs_signals_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = kzs_on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = kzs_on_reload;
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    /* A file size limit (RLIMIT_FSIZE, systemd's LimitFSIZE=) reached by
     * the audit log must fail the write with EFBIG, which the audit
     * writer retries and reports, rather than kill the server. */
    sigaction(SIGXFSZ, &sa, NULL);
}

static kz_time_ns kzs_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (kz_time_ns)ts.tv_sec * KZ_NS_PER_S + (kz_time_ns)ts.tv_nsec;
}

/* Config problems found while running go to the JSON log. */
static void kzs_report_to_log(void *ctx, const char *line)
{
    const kzs_run *r = ctx;
    char quoted[KZS_PATH_MAX + 320];
    kz_logf(&r->log, KZ_LOG_ERROR, "config", "config_error problem=\"%s\"",
            kz_log_quote(line, quoted, sizeof quoted));
}

/* ---- start ------------------------------------------------------------- */

/*
 * Binds each UDP port the transport will use, then lets go: the world's
 * own failure to bind would only say that it failed, this says why.
 */
static int kzs_probe_udp(const kzs_config *c)
{
    if (c->port == 0)
        return 0;
    for (uint32_t i = 0; i < c->io_threads; i++) {
        struct sockaddr_in a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_port = htons((uint16_t)(c->port + i));
        if (inet_pton(AF_INET, c->bind, &a.sin_addr) != 1)
            return -1;
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        int rc = fd < 0 ? -1 : bind(fd, (struct sockaddr *)&a, sizeof a);
        int err = errno;
        if (fd >= 0)
            close(fd);
        if (rc != 0) {
            kzs_error("run: cannot listen on UDP %s:%u: %s", c->bind, c->port + i,
                      strerror(err));
            return -1;
        }
    }
    return 0;
}

static int kzs_load_keys(const kzs_config *c, kz_server_config *sc)
{
    kz_token_verifier *v = &sc->net.verifier;
    char why[160];
    if (kzs_keys_load_server(c->keys, &v->server_keys) != 0 ||
        kzs_config_backend_keys(c, v->backend_pk, &v->n_backend_keys) != 0)
        return -1; /* the loaders have said what is wrong */
    v->server_id = kzs_server_id(v->server_keys.public_key);
    /* Tokens must name one of these (public_address.h). */
    if (kzs_public_addresses(c, v, why, sizeof why) != 0) {
        kzs_error("run: %s", why);
        return -1;
    }
    return 0;
}

static int kzs_audit_open(kzs_run *r)
{
    const kzs_config *c = &r->cfg;
    kz_audit_config ac;
    if (c->audit[0] == '\0')
        return 0;
    memset(&ac, 0, sizeof ac);
    kz_audit_config_default(&ac);
    ac.path = c->audit;
    ac.log = r->log;
    ac.checkpoint_records = c->audit_checkpoint_records;
    ac.checkpoint_ms = c->audit_checkpoint_seconds * 1000u;
    ac.commit_ms = c->audit_commit_ms;
    if (kzs_keys_load_audit_secret(c->keys, ac.sign_secret_key) != 0)
        return -1;
    int rc = kz_audit_open(&ac, &r->audit);
    sodium_memzero(ac.sign_secret_key, sizeof ac.sign_secret_key);
    if (rc != KZ_OK) {
        kzs_error("run: %s: cannot open the audit log: %s", c->audit, kz_strerror(rc));
        return -1;
    }
    return 0;
}

/* Appends a server record; a refusal is counted by the log itself. */
static void kzs_audit_note(kzs_run *r, uint8_t type, uint32_t code, const char *detail)
{
    if (r->audit == NULL)
        return;
    kz_audit_record rec;
    memset(&rec, 0, sizeof rec);
    rec.type = type;
    rec.code = code;
    snprintf(rec.detail, sizeof rec.detail, "%s", detail);
    if (kz_audit_append(r->audit, &rec) != KZ_OK)
        kz_logf(&r->log, KZ_LOG_ERROR, "audit", "audit_refused type=%u", type);
}

/* The log counts as down for this long after the writer was last seen
 * failing or losing a record, so that a burst that overflows the queue, or
 * a disk at the edge of full, closes the gate for a while instead of
 * flapping it (and the state lines are at least this far apart). */
#define KZS_AUDIT_HOLD_NS KZ_NS_PER_S
/* While the audit log is down, a reminder line at most this often. */
#define KZS_AUDIT_REMIND_NS (10 * KZ_NS_PER_S)

static void kzs_audit_log_state(const kzs_run *r, const kz_audit_stats *st, int down,
                                const char *event)
{
    kz_logf(&r->log, down ? KZ_LOG_ERROR : KZ_LOG_WARN, "audit",
            "%s policy=%s reason=\"%s\" queued=%llu lost=%llu lost_noted=%llu "
            "write_failures=%llu admissions=%s", event, r->cfg.audit_on_failure,
            st->error ? kz_audit_loss_reason_name(st->reason) : "none",
            (unsigned long long)st->queued, (unsigned long long)st->dropped,
            (unsigned long long)st->lost_noted, (unsigned long long)st->write_failures,
            down && strcmp(r->cfg.audit_on_failure, "refuse") == 0 ? "refused" : "open");
}

/*
 * The gate's refusal from what stands against admitting: the audit log
 * (audit_on_failure = refuse) and, for an edge, a world it does not hold
 * (a client admitted then would have no avatar: DENY unavailable sends it
 * to its token's next address). Not called while draining: the drain's
 * own refusal stands. An authority has no gate.
 */
static void kzs_gate_apply(kzs_run *r)
{
    kz_netserver *net = kz_server_net(r->srv);
    int edge_waits = r->role == KZ__ROLE_EDGE && !r->synced;
    uint32_t want = r->watch.refusing || edge_waits ? KZ_DENY_UNAVAILABLE : 0;
    if (net == NULL || want == r->refusal)
        return;
    kz_netserver_set_refusal(net, want);
    r->refusal = want;
}

/*
 * Simulation thread, every step: applies audit_on_failure. The log is
 * down while its writer cannot write or loses records, and for a second
 * after. `refuse` then closes the gate to new clients and fails
 * /readyz; both reopen by themselves once the log is up again. `continue`
 * only reports. The state is logged when it changes and every ten seconds
 * while it is down. A draining server's gate is never reopened.
 */
static void kzs_audit_watch_step(kzs_run *r, kz_time_ns now, int draining)
{
    kzs_audit_watch *w = &r->watch;
    kz_audit_stats st;
    if (r->audit == NULL)
        return;
    kz_audit_stats_get(r->audit, &st);
    if (st.dropped != w->dropped_seen || st.error != 0) {
        w->dropped_seen = st.dropped;
        w->bad_at = now;
        w->bad_once = 1;
    }
    int down = w->bad_once && now - w->bad_at < KZS_AUDIT_HOLD_NS;
    if (down != w->down || (down && now >= w->remind_at)) {
        kzs_audit_log_state(r, &st, down, down == w->down ? "audit_still_unavailable"
                                          : down ? "audit_unavailable" : "audit_available");
        w->down = down;
        w->remind_at = now + KZS_AUDIT_REMIND_NS;
    }
    int refuse = down && strcmp(r->cfg.audit_on_failure, "refuse") == 0;
    if (refuse != w->refusing && !draining) {
        kzs_metrics_set_audit_refusing(r->metrics, refuse);
        w->refusing = refuse;
        kzs_gate_apply(r);
    }
}

static const kz_zone_def *kzs_zone_named(const kzs_config *c, const char *name)
{
    for (uint32_t i = 0; c && i < c->n_zones; i++)
        if (strcmp(c->zones[i].name, name) == 0)
            return &c->zones[i];
    return NULL;
}

/*
 * Makes the world's zones those of `want`, given that it has those of
 * `had` (NULL at start). Zones whose definition did not change are left
 * alone, so a lock set over the wire survives a reload. New and changed
 * zones are set first and removals come last, so a zone the world refuses
 * stops the reload before anything was removed. Returns 0 or -1 (logged).
 */
static int kzs_zones_apply(kzs_run *r, const kzs_config *want, const kzs_config *had)
{
    for (uint32_t i = 0; i < want->n_zones; i++) {
        const kz_zone_def *old = kzs_zone_named(had, want->zones[i].name);
        if (old && memcmp(old, &want->zones[i], sizeof *old) == 0)
            continue;
        int rc = kz_server_zone_set(r->srv, &want->zones[i]);
        if (rc != KZ_OK) {
            kz_logf(&r->log, KZ_LOG_ERROR, "config", "zone_refused zone=%s error=%s",
                    want->zones[i].name, kz_strerror(rc));
            return -1;
        }
    }
    for (uint32_t i = 0; had && i < had->n_zones; i++)
        if (!kzs_zone_named(want, had->zones[i].name))
            (void)kz_server_zone_remove(r->srv, had->zones[i].name); /* gone already: fine */
    return 0;
}

/* Closes the bus, then the directory: whichever NATS connection closes
 * last releases libnats' threads (kzs_fleet_disconnect does), so the bus
 * goes first. */
static void kzs_nats_close(kzs_run *r)
{
    kzs_bus_destroy(r->bus, r->fleet == NULL && r->fleet_conn == NULL);
    r->bus = NULL;
    kzs_fleet_member_leave(r->fleet);
    r->fleet = NULL;
    kzs_fleet_disconnect(r->fleet_conn);
    r->fleet_conn = NULL;
}

static void kzs_stop_all(kzs_run *r)
{
    kzs_nats_close(r);
    kzs_admin_stop(r->admin);
    r->admin = NULL;
    if (r->srv) {
        kz_server_destroy(r->srv);
        r->srv = NULL;
    }
    if (r->audit) {
        kz_audit_close(r->audit);
        r->audit = NULL;
    }
    if (r->metrics) {
        kzs_metrics_destroy(r->metrics);
        r->metrics = NULL;
    }
}

/* The world in its role: alone, or the authority or an edge of a fleet,
 * with a new instance id and start time at every run. */
static kz_server *kzs_world_create(const kzs_run *r, const kz_server_config *sc)
{
    if (r->role == KZ__ROLE_SINGLE)
        return kz_server_create(sc);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    kz__fleet_config fc = {
        .role = r->role,
        .edge = r->cfg.edge,
        .world = kz_bus_world_hash(r->cfg.world),
        .started_ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u,
        /* An avatar whose edge went away waits this long for its client
         * at another edge; with resume off (0) it ends at the next step. */
        .hold_ms = r->cfg.resume_grace ? r->cfg.resume_grace * 1000u : 1u,
    };
    while (fc.instance == 0)
        randombytes_buf(&fc.instance, sizeof fc.instance);
    return kz__fleet_server_create(sc, &fc);
}

static int kzs_start(kzs_run *r)
{
    const kzs_config *c = &r->cfg;
    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kzs_config_to_server(c, &sc);
    sc.net.log = r->log;
    char err[256];
    /* An authority has no transport: no server key, no token to verify,
     * no port. */
    int authority = r->role == KZ__ROLE_AUTHORITY;
    int ok = authority || (kzs_load_keys(c, &sc) == 0 && kzs_probe_udp(c) == 0);
    if (ok && (r->metrics = kzs_metrics_create()) == NULL) {
        kzs_error("run: out of memory");
        ok = 0;
    }
    if (ok) {
        kzs_metrics_set_stale_after(r->metrics, (uint64_t)c->watchdog_seconds * KZ_NS_PER_S);
        if (strcmp(c->admin, "off") != 0 &&
            (r->admin = kzs_admin_start(c->admin, r->metrics, err, sizeof err)) == NULL) {
            kzs_error("run: %s", err);
            ok = 0;
        }
    }
    ok = ok && kzs_audit_open(r) == 0;
    if (ok) {
        sc.audit = r->audit;
        r->srv = kzs_world_create(r, &sc);
        if (r->srv == NULL && authority)
            kzs_error("run: cannot start the world (see the log line above)");
        else if (r->srv == NULL)
            kzs_error("run: cannot start the world on UDP %s:%u (see the log line above)",
                      c->bind, c->port);
        ok = r->srv != NULL;
        if (ok)
            kzs_gate_apply(r); /* an edge admits no one before it holds the world */
    }
    r->server_id = sc.net.verifier.server_id;
    kzs_public_addresses_format(&sc.net.verifier, r->token_addresses, sizeof r->token_addresses);
    sodium_memzero(&sc.net.verifier.server_keys, sizeof sc.net.verifier.server_keys);
    if (ok && kzs_zones_apply(r, c, NULL) != 0) {
        kzs_error("run: the world refused a zone (see the log line above)");
        ok = 0;
    }
    if (!ok) {
        kzs_stop_all(r);
        return -1;
    }
    return 0;
}

/*
 * With a NATS URL: connects to the fleet directory (and binds its bucket)
 * so that an unreachable NATS stops the start. Registering is
 * kzs_fleet_join. Without a URL, nothing. Returns 0 or -1 (printed).
 */
static int kzs_fleet_start(kzs_run *r)
{
    const kzs_config *c = &r->cfg;
    char why[512];
    if (c->nats[0] == '\0')
        return 0;
    r->fleet_conn = kzs_fleet_connect(c->nats, c->nats_credentials, 1, 1, why, sizeof why);
    if (r->fleet_conn == NULL) {
        kzs_error("run: fleet directory: %s", why);
        return -1;
    }
    return 0;
}

/*
 * Registers this process in the fleet directory over the connection
 * kzs_fleet_start made (the member then owns it): its role, and the
 * addresses tokens name (none for an authority, which takes no clients).
 * The member's own thread keeps the entry alive; this thread only hands
 * it the load. Returns 0 or -1 (printed); nothing without a NATS URL.
 */
static int kzs_fleet_join(kzs_run *r)
{
    const kzs_config *c = &r->cfg;
    kzs_fleet_entry self;
    char why[512];
    if (r->fleet_conn == NULL)
        return 0;
    memset(&self, 0, sizeof self);
    snprintf(self.world, sizeof self.world, "%s", c->world);
    snprintf(self.role, sizeof self.role, "%s", c->role);
    snprintf(self.version, sizeof self.version, "%s", kz_version());
    self.max = c->max_clients;
    if (r->role != KZ__ROLE_AUTHORITY &&
        kzs_fleet_address(r->token_addresses, kz_server_port(r->srv), self.address,
                          sizeof self.address) != 0) {
        kzs_error("run: the token addresses do not fit a fleet entry");
        return -1;
    }
    kzs_fleet_conn *fc = r->fleet_conn;
    r->fleet_conn = NULL;
    r->fleet = kzs_fleet_member_join(fc, &self, r->log, why, sizeof why);
    if (r->fleet == NULL) {
        kzs_error("run: fleet directory: %s", why);
        return -1;
    }
    return 0;
}

/*
 * A fleet role's bus (bus.h): connected and subscribed before the process
 * announces anything; an edge asks for the world image at once (HELLO).
 * Nothing for a single process. Returns 0 or -1 (printed).
 */
static int kzs_bus_start(kzs_run *r)
{
    char why[512];
    if (r->role == KZ__ROLE_SINGLE)
        return 0;
    kzs_bus_config bc = {.nats = r->cfg.nats, .credentials = r->cfg.nats_credentials,
                         .world = r->cfg.world, .role = r->role, .edge = r->cfg.edge,
                         .log = r->log};
    r->bus = kzs_bus_create(&bc, why, sizeof why);
    if (r->bus == NULL) {
        kzs_error("run: bus: %s", why);
        return -1;
    }
    kzs_metrics_set_bus(r->metrics, kz__fleet_counters(r->srv), kzs_bus_counters(r->bus));
    if (r->role == KZ__ROLE_EDGE)
        kz__fleet_hello(r->srv, 1);
    kz_logf(&r->log, KZ_LOG_INFO, "bus", "bus_connected role=%s world=%s edge=%u", r->cfg.role,
            r->cfg.world, r->cfg.edge);
    return 0;
}

/* ---- reload ------------------------------------------------------------ */

/* Settings a reload applies; every other changed setting needs a restart
 * and is named. */
static int kzs_live_setting(const char *key)
{
    return strcmp(key, "trusted_backend_keys") == 0 || strcmp(key, "shutdown_grace") == 0 ||
           strcmp(key, "watchdog_seconds") == 0 || strcmp(key, "audit_on_failure") == 0;
}

static void kzs_note_changed(void *ctx, const char *key)
{
    kzs_run *r = ctx;
    if (!kzs_live_setting(key))
        kz_logf(&r->log, KZ_LOG_WARN, "config", "reload_ignored setting=%s why=\"needs a restart\"",
                key);
}

static void kzs_reload(kzs_run *r)
{
    static kzs_config fresh; /* large (paths, zones): kept off the stack */
    uint8_t keys[KZ_TOKEN_MAX_BACKEND_KEYS][KZ_SIGN_PUBLIC_KEY_BYTES];
    uint32_t n_keys = 0;
    kzs_config_set_report(kzs_report_to_log, r);
    kzs_keys_set_report(kzs_report_to_log, r);
    int errors = kzs_config_load(&fresh, r->argc, r->argv);
    /* The keys directory is restart-only: backend.pub comes from the one
     * the server started with. */
    char new_keys_dir[sizeof fresh.keys];
    memcpy(new_keys_dir, fresh.keys, sizeof new_keys_dir);
    memcpy(fresh.keys, r->cfg.keys, sizeof fresh.keys);
    /* An authority verifies no token: it has no backend keys to change. */
    int has_gate = kz_server_net(r->srv) != NULL;
    if (errors == 0 && has_gate && kzs_config_backend_keys(&fresh, keys, &n_keys) != 0)
        errors = 1;
    memcpy(fresh.keys, new_keys_dir, sizeof fresh.keys);
    kzs_config_set_report(NULL, NULL);
    kzs_keys_set_report(NULL, NULL);
    if (errors != 0) {
        kz_logf(&r->log, KZ_LOG_ERROR, "config",
                "reload_failed errors=%d why=\"nothing changed; fix the file and send SIGHUP again\"",
                errors);
        return;
    }
    kzs_config_diff(&r->cfg, &fresh, kzs_note_changed, r);
    if (kzs_zones_apply(r, &fresh, &r->cfg) != 0) {
        kz_logf(&r->log, KZ_LOG_ERROR, "config",
                "reload_failed errors=1 why=\"a zone was refused (line above); nothing removed, "
                "keys unchanged\"");
        return;
    }
    if (has_gate && kz_netserver_trust(kz_server_net(r->srv), keys, n_keys) != KZ_OK)
        kz_logf(&r->log, KZ_LOG_ERROR, "config", "reload_keys_refused backend_keys=%u", n_keys);
    char detail[KZ_AUDIT_DETAIL_MAX];
    snprintf(detail, sizeof detail, "reload: %u zones", fresh.n_zones);
    kzs_audit_note(r, KZ_AUDIT_ROLE_ACTION, fresh.n_zones, detail);
    snprintf(detail, sizeof detail, "reload: %u trusted backend keys", n_keys);
    if (has_gate)
        kzs_audit_note(r, KZ_AUDIT_KEY_CHANGE, n_keys, detail);
    /* Only what was applied is remembered: the restart-only settings keep
     * their running values, so the next reload compares against them. */
    memcpy(r->cfg.zones, fresh.zones, sizeof fresh.zones);
    r->cfg.n_zones = fresh.n_zones;
    memcpy(r->cfg.trusted_backend_keys, fresh.trusted_backend_keys,
           sizeof fresh.trusted_backend_keys);
    r->cfg.shutdown_grace = fresh.shutdown_grace;
    r->cfg.watchdog_seconds = fresh.watchdog_seconds;
    memcpy(r->cfg.audit_on_failure, fresh.audit_on_failure, sizeof r->cfg.audit_on_failure);
    kzs_metrics_set_stale_after(r->metrics, (uint64_t)r->cfg.watchdog_seconds * KZ_NS_PER_S);
    kz_logf(&r->log, KZ_LOG_INFO, "config", "reloaded zones=%u backend_keys=%u", fresh.n_zones,
            n_keys);
}

/* ---- serve and stop ---------------------------------------------------- */

#define KZS_PUBLISH_NS (KZ_NS_PER_S / 4)
/* A fleet role logs its bus_stats line this often, and once at the end. */
#define KZS_BUS_STATS_NS (5 * KZ_NS_PER_S)
/* An edge still without the world says so after this long, then this
 * often. */
#define KZS_MISSING_AFTER_NS (5 * KZ_NS_PER_S)
#define KZS_MISSING_EVERY_NS (10 * KZ_NS_PER_S)

/* The process is ready: /readyz, the "listening" line, READY=1. */
static void kzs_announce(kzs_run *r)
{
    kzs_metrics_set_ready(r->metrics, 1);
    kz_logf(&r->log, KZ_LOG_INFO, "run",
            "listening udp_port=%u bind=%s admin_port=%u server_id=0x%016llx max_clients=%u "
            "io_threads=%u tick_hz=%u zones=%u version=%s role=%s",
            kz_server_port(r->srv), r->cfg.bind, r->admin ? kzs_admin_port(r->admin) : 0u,
            (unsigned long long)r->server_id, r->cfg.max_clients,
            r->cfg.io_threads, r->cfg.tick_hz, r->cfg.n_zones, kz_version(), r->cfg.role);
    if (r->role != KZ__ROLE_AUTHORITY)
        kz_logf(&r->log, KZ_LOG_INFO, "run", "token_addresses addresses=\"%s\"",
                r->token_addresses);
    sd_notify(0, "READY=1");
    r->ready_once = 1;
}

/* The bus counters as one line (longer than kz_logf's line: straight to
 * the sink). */
static void kzs_bus_stats_log(kzs_run *r)
{
    char line[4096];
    if (r->bus == NULL || !kz_log_enabled(&r->log, KZ_LOG_INFO))
        return;
    kzs_bus_stats(r->bus, r->srv, line, sizeof line);
    if (r->log.sink)
        r->log.sink(r->log.ctx, KZ_LOG_INFO, "bus", line);
    else
        kz_log_sink_logfmt(r->log.ctx, KZ_LOG_INFO, "bus", line);
}

/*
 * An edge's hold on the world, after each step: the first image makes it
 * ready (directory, listening); losing the authority closes the gate
 * until an image comes again; an image with other settings stops it.
 * Returns 0, or -1 when the process must exit 1 (logged).
 */
static int kzs_edge_watch(kzs_run *r, kz_time_ns now, int draining)
{
    if (kz__fleet_failed(r->srv)) {
        kz_logf(&r->log, KZ_LOG_ERROR, "run",
                "fleet_failed edge=%u tick_hz=%u why=\"the authority's world has other "
                "settings than this edge (see the line above): run the edge with the "
                "authority's [world] settings and max_clients\"", r->cfg.edge, r->cfg.tick_hz);
        return -1;
    }
    int synced = kz__fleet_synced(r->srv);
    if (synced == r->synced) {
        if (!synced && now >= r->missing_at) {
            kz_logf(&r->log, KZ_LOG_WARN, "run", "authority_missing world=%s edge=%u "
                    "seconds=%llu", r->cfg.world, r->cfg.edge,
                    (unsigned long long)((now - r->started) / KZ_NS_PER_S));
            r->missing_at = now + KZS_MISSING_EVERY_NS;
        }
        return 0;
    }
    r->synced = synced;
    if (!draining)
        kzs_gate_apply(r);
    if (!synced) {
        kz_logf(&r->log, KZ_LOG_WARN, "run", "authority_lost world=%s edge=%u clients=%u "
                "why=\"no world update for %u ms; new clients refused until it is back\"",
                r->cfg.world, r->cfg.edge, kz_server_clients(r->srv),
                KZ_BUS_AUTHORITY_SILENCE_MS);
        r->missing_at = now + KZS_MISSING_AFTER_NS;
        return 0;
    }
    kz_logf(&r->log, KZ_LOG_INFO, "run", "world_synced world=%s edge=%u tick=%u", r->cfg.world,
            r->cfg.edge, kz_server_tick(r->srv));
    if (r->ready_once || draining)
        return 0;
    if (kzs_fleet_join(r) != 0)
        return -1;
    kzs_announce(r);
    return 0;
}

static uint32_t kzs_sessions(kzs_run *r)
{
    kz_netserver *net = kz_server_net(r->srv);
    return net ? kz_netserver_sessions(net) : kz__fleet_sessions(r->srv, NULL);
}

/* Serves until a stop signal has drained the world (returns 0) or an edge
 * must stop (returns -1, logged). */
static int kzs_serve(kzs_run *r)
{
    struct timespec pause = {0, 1000000};
    kz_time_ns next_publish = 0, drain_deadline = 0;
    unsigned reloads_seen = 0;
    int draining = 0;
    r->missing_at = r->started + KZS_MISSING_AFTER_NS;
    r->stats_at = r->started + KZS_BUS_STATS_NS;
    for (;;) {
        kz_time_ns now = kzs_now();
        if (r->bus)
            kzs_bus_pump_in(r->bus, r->srv);
        kz_server_step(r->srv, now);
        if (r->bus)
            kzs_bus_pump_out(r->bus, r->srv);
        if (r->role == KZ__ROLE_EDGE && kzs_edge_watch(r, now, draining) != 0)
            return -1;
        kzs_audit_watch_step(r, now, draining);
        if (now >= next_publish) {
            kzs_metrics_publish(r->metrics, r->srv, r->audit);
            kzs_fleet_member_set_load(r->fleet, kzs_sessions(r), r->cfg.max_clients);
            next_publish = now + KZS_PUBLISH_NS;
        }
        if (r->bus && now >= r->stats_at) {
            kzs_bus_stats_log(r);
            r->stats_at = now + KZS_BUS_STATS_NS;
        }
        unsigned reloads = atomic_load(&kzs_reload_signals);
        unsigned stops = atomic_load(&kzs_stop_signals);
        if (reloads != reloads_seen && !draining) {
            reloads_seen = reloads;
            kzs_reload(r);
        }
        if (stops > 0 && !draining) {
            draining = 1;
            /* At least a quarter second, so the notices queued below are
             * sent even with shutdown_grace = 0. */
            drain_deadline = now + (r->cfg.shutdown_grace
                                        ? (kz_time_ns)r->cfg.shutdown_grace * KZ_NS_PER_S
                                        : KZ_NS_PER_S / 4);
            sd_notify(0, "STOPPING=1");
            kzs_metrics_set_ready(r->metrics, 0);
            kzs_fleet_member_stop(r->fleet); /* leave the directory first */
            kz_logf(&r->log, KZ_LOG_INFO, "run", "draining clients=%u grace_s=%u",
                    kz_server_clients(r->srv), r->cfg.shutdown_grace);
            /* An edge's clients go with the notice; the authority holds
             * their avatars for a JOIN at another edge. */
            kz_server_shutdown(r->srv, "server shutting down");
        }
        if (draining) {
            /* Disconnects are delivered when acknowledged: wait for the
             * world and the transport (a session admitted just before the
             * gate closed has no avatar yet) to empty, the grace to end, or
             * a second signal. */
            uint32_t left = kz_server_clients(r->srv);
            kz_netserver *net = kz_server_net(r->srv);
            uint32_t sessions = net ? kz_netserver_sessions(net) : 0;
            if (sessions > left)
                left = sessions;
            if (left == 0 || now >= drain_deadline || stops > 1) {
                if (left)
                    kz_logf(&r->log, KZ_LOG_WARN, "run", "drain_cut clients=%u why=\"%s\"", left,
                            stops > 1 ? "second signal" : "grace period over");
                return 0;
            }
        }
        /* An edge ticks when a world update arrives: it waits for one. */
        if (r->role == KZ__ROLE_EDGE && r->bus)
            (void)kzs_bus_wait(r->bus, r->srv, KZS_BUS_EDGE_WAIT_MS);
        else
            nanosleep(&pause, NULL);
    }
}

/* Publishes the last messages (an edge's last leaves), waits a moment for
 * NATS to have them, and closes the bus and the directory. */
static void kzs_bus_finish(kzs_run *r)
{
    if (r->bus) {
        kz__fleet_bye(r->srv);  /* an edge: the authority holds its sessions at once */
        kzs_bus_pump_out(r->bus, r->srv);
        if (kzs_bus_flush(r->bus, 500) != 0)
            kz_logf(&r->log, KZ_LOG_WARN, "bus", "bus_flush_failed why=\"the last messages "
                    "may not have reached NATS\"");
        kzs_bus_stats_log(r);
    }
    kzs_nats_close(r);
}

static int kzs_finish(kzs_run *r, int failed)
{
    uint32_t clients = kz_server_clients(r->srv);
    kzs_metrics_publish(r->metrics, r->srv, r->audit);
    kz_logf(&r->log, KZ_LOG_INFO, "run", "stopping clients=%u ticks=%u", clients,
            kz_server_tick(r->srv));
    int rc = 0;
    kzs_bus_finish(r);
    kzs_admin_stop(r->admin);
    r->admin = NULL;
    kz_server_destroy(r->srv);
    r->srv = NULL;
    if (r->audit) {
        kz_audit_stats st;
        kzs_audit_note(r, KZ_AUDIT_SERVER_STOP, clients, KZS_PROGRAM);
        kz_audit_stats_get(r->audit, &st);
        rc = kz_audit_close(r->audit); /* flushes, syncs, final checkpoint */
        r->audit = NULL;
        kz_logf(&r->log, rc == KZ_OK ? KZ_LOG_INFO : KZ_LOG_ERROR, "audit",
                "audit_closed appended=%llu dropped=%llu lost_noted=%llu write_failures=%llu "
                "fsyncs=%llu ok=%d", (unsigned long long)st.appended,
                (unsigned long long)st.dropped, (unsigned long long)st.lost_noted,
                (unsigned long long)st.write_failures, (unsigned long long)st.fsyncs,
                rc == KZ_OK);
    }
    kzs_metrics_destroy(r->metrics);
    r->metrics = NULL;
    int ok = rc == KZ_OK && !failed;
    kz_logf(&r->log, KZ_LOG_INFO, "run", "stopped exit=%d", ok ? 0 : 1);
    return ok ? KZS_EXIT_OK : KZS_EXIT_FAIL;
}

static unsigned kzs_role_of(const char *name)
{
    return strcmp(name, "authority") == 0 ? KZ__ROLE_AUTHORITY
           : strcmp(name, "edge") == 0    ? KZ__ROLE_EDGE
                                          : KZ__ROLE_SINGLE;
}

int cmd_run(int argc, char **argv)
{
    static kzs_run r; /* large (config paths and zones) */
    memset(&r, 0, sizeof r);
    r.argc = argc;
    r.argv = argv;
    int errors = kzs_config_load(&r.cfg, argc, argv);
    if (errors < 0)
        return KZS_EXIT_OK; /* --help */
    if (errors > 0) {
        kzs_error("run: %d configuration problem%s; nothing started", errors,
                  errors == 1 ? "" : "s");
        return KZS_EXIT_USAGE;
    }
    r.log = kzs_jsonlog(r.cfg.log_level);
    r.role = kzs_role_of(r.cfg.role);
    /* Restart-only like the keys directory: a reload keeps the rule the
     * server started with. */
    kzs_keys_set_perms(strcmp(r.cfg.insecure_key_permissions, "warn") == 0 ? KZS_KEY_PERMS_WARN
                                                                            : KZS_KEY_PERMS_REFUSE);
    kzs_signals_install();
    if (kzs_start(&r) != 0)
        return KZS_EXIT_FAIL;
    /* The directory's connection, then the bus; a single process or an
     * authority registers at once, an edge once it holds the world. */
    if (kzs_fleet_start(&r) != 0 || kzs_bus_start(&r) != 0 ||
        (r.role != KZ__ROLE_EDGE && kzs_fleet_join(&r) != 0)) {
        kzs_stop_all(&r);
        return KZS_EXIT_FAIL;
    }
    char detail[KZ_AUDIT_DETAIL_MAX];
    snprintf(detail, sizeof detail, "%s %s", KZS_PROGRAM, kz_version());
    kzs_audit_note(&r, KZ_AUDIT_SERVER_START, kz_server_port(r.srv), detail);
    kzs_metrics_publish(r.metrics, r.srv, r.audit);
    r.started = kzs_now();
    if (r.role != KZ__ROLE_EDGE)
        kzs_announce(&r);
    else
        kz_logf(&r.log, KZ_LOG_INFO, "run", "waiting_for_world world=%s edge=%u udp_port=%u",
                r.cfg.world, r.cfg.edge, kz_server_port(r.srv));
    int failed = kzs_serve(&r) != 0;
    return kzs_finish(&r, failed);
}
