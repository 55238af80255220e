/*
 * The admin HTTP endpoint (admin.h) on libmicrohttpd. The listening socket
 * is opened here rather than by the library, so that a failure to bind is
 * reported with its errno ("address already in use") and the bound port
 * is known when port 0 was asked for. Every request is answered on the
 * handler's first call, when its headers are in: none of the endpoints
 * takes a body, so nothing is ever read past the headers.
 *
 * libmicrohttpd only offers an idle timeout, which a client sending one
 * byte every few seconds never reaches. So the library runs in its
 * external-polling mode on a thread of ours, which after every pass (at
 * most KZS_ADMIN_TICK_MS apart) closes connections older than the
 * deadline. The same thread sees each new connection (the STARTED notice)
 * and makes room for it by closing an older one. Because polling, notices
 * and closing all happen on that one thread, the table of connections
 * needs no lock and a descriptor cannot be reused under our feet.
 *
 * Workload: a few scrapes and probes a minute, and whatever an attacker on
 * the admin network can open; every structure is sized at start.
 */
#include "admin.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#define KZS_NS_PER_MS 1000000ull

_Static_assert(KZS_ADMIN_MAX_PER_IP >= 2 * KZS_ADMIN_ACCEPT_BATCH &&
                   KZS_ADMIN_MAX_CONNECTIONS >= 2 * KZS_ADMIN_ACCEPT_BATCH,
               "a flood could make a probe the oldest before its request is read");
_Static_assert(KZS_ADMIN_HEADROOM >= KZS_ADMIN_ACCEPT_BATCH,
               "one pass of evictions must fit in the headroom");

/* One admitted TCP connection, from libmicrohttpd's STARTED notice to its
 * CLOSED one. Touched only on the admin thread. */
typedef struct kzs_admin_conn {
    struct MHD_Connection *mhd; /* NULL: the slot is free */
    MHD_socket fd;              /* owned by libmicrohttpd; we only shut it down */
    uint32_t addr;              /* peer IPv4 address, network order */
    uint64_t seq;               /* admission order: lower is older */
    uint64_t opened_ns;         /* monotonic time of admission */
    int closing;                /* shut down by us; libmicrohttpd closes it next pass */
} kzs_admin_conn;

struct kzs_admin {
    struct MHD_Daemon *daemon;
    kzs_metrics *metrics;
    pthread_t thread;
    _Atomic int stop;
    uint16_t port;
    uint64_t deadline_ns;
    uint32_t max_connections, max_per_ip;
    uint32_t slots;         /* max_connections + KZS_ADMIN_HEADROOM */
    kzs_admin_conn *conns;  /* [slots] */
    uint64_t next_seq;
    _Atomic uint64_t accepted, closed_deadline, evicted_address, evicted_full, refused;
    _Atomic uint32_t open;
};

static const char kzs_text[] = "text/plain; charset=utf-8";
static const char kzs_exposition[] = "text/plain; version=0.0.4; charset=utf-8";

/* ---- address -------------------------------------------------------------- */

/* "HOST:PORT" into an IPv4 socket address. 0, or -1 with err written. */
static int kzs_parse_addr(const char *hp, struct sockaddr_in *sa, char *err, size_t errlen)
{
    const char *colon = strrchr(hp, ':');
    char host[64];
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    if (colon == NULL || colon == hp || (size_t)(colon - hp) >= sizeof host) {
        snprintf(err, errlen, "admin: '%s': expected HOST:PORT (an IPv4 address or localhost)", hp);
        return -1;
    }
    memcpy(host, hp, (size_t)(colon - hp));
    host[colon - hp] = '\0';
    if (strcmp(host, "localhost") == 0)
        sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (inet_pton(AF_INET, host, &sa->sin_addr) != 1) {
        snprintf(err, errlen, "admin: '%s': '%s' is not an IPv4 address or localhost", hp, host);
        return -1;
    }
    unsigned long port = 0;
    const char *p = colon + 1;
    for (; isdigit((unsigned char)*p) && port <= 65535; p++)
        port = port * 10 + (unsigned long)(*p - '0');
    if (p == colon + 1 || *p != '\0' || port > 65535) {
        snprintf(err, errlen, "admin: '%s': the port must be a number from 0 to 65535", hp);
        return -1;
    }
    sa->sin_port = htons((uint16_t)port);
    return 0;
}

/* An errno text with a lower-case first letter, to sit inside a sentence. */
static void kzs_errno_text(int e, char *out, size_t n)
{
    snprintf(out, n, "%s", strerror(e));
    out[0] = (char)tolower((unsigned char)out[0]);
}

/* A bound, listening, non-blocking socket; -1 with err written. */
static int kzs_listen(const char *hp, const struct sockaddr_in *sa, uint16_t *port, char *err,
                      size_t errlen)
{
    char why[128];
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    /* Lets a restarted server bind while old connections sit in TIME_WAIT;
     * a port another socket listens on still refuses (EADDRINUSE). */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (const struct sockaddr *)sa, sizeof *sa) != 0 ||
        listen(fd, KZS_ADMIN_BACKLOG) != 0)
        goto fail;
    struct sockaddr_in bound;
    socklen_t blen = sizeof bound;
    if (getsockname(fd, (struct sockaddr *)&bound, &blen) != 0)
        goto fail;
    *port = ntohs(bound.sin_port);
    return fd;
fail:
    kzs_errno_text(errno, why, sizeof why);
    snprintf(err, errlen, "admin: %s: %s", hp, why);
    if (fd >= 0)
        close(fd);
    return -1;
}

/* ---- requests ------------------------------------------------------------- */

/* Queues a response; `body` is freed by libmicrohttpd when `owned`. */
static enum MHD_Result kzs_reply(struct MHD_Connection *c, unsigned int status, const char *type,
                                 char *body, size_t len, int owned, const char *allow)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, body, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (r == NULL) {
        if (owned)
            free(body);
        return MHD_NO;
    }
    enum MHD_Result ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (ok == MHD_YES)
        ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    /* One request per connection: a kept-alive connection would be one
     * more thing a client could hold open, and the deadline would cut it
     * while a request might be on its way. */
    if (ok == MHD_YES)
        ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    if (ok == MHD_YES && allow != NULL)
        ok = MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    if (ok == MHD_YES)
        ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result kzs_text_reply(struct MHD_Connection *c, unsigned int status,
                                      const char *text)
{
    return kzs_reply(c, status, kzs_text, (char *)text, strlen(text), 0, NULL);
}

/* Whether the request announces a body (any Transfer-Encoding, or a
 * Content-Length other than 0). */
static int kzs_has_body(struct MHD_Connection *c)
{
    const char *te = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_TRANSFER_ENCODING);
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_LENGTH);
    return te != NULL || (cl != NULL && strspn(cl, "0") != strlen(cl));
}

/* The endpoint's own figures in the exposition format, into out[0..n);
 * the length written, or n or more when it did not fit. */
static size_t kzs_admin_render(const kzs_admin *a, char *out, size_t n)
{
    kzs_admin_stats st;
    kzs_admin_stats_get(a, &st);
    const char *closed = "kizuna_admin_connections_closed_total{reason=";
    int len = snprintf(
        out, n,
        "# HELP kizuna_admin_connections Admin HTTP connections held now.\n"
        "# TYPE kizuna_admin_connections gauge\n"
        "kizuna_admin_connections %" PRIu32 "\n"
        "# HELP kizuna_admin_connections_accepted_total Admin HTTP connections admitted.\n"
        "# TYPE kizuna_admin_connections_accepted_total counter\n"
        "kizuna_admin_connections_accepted_total %" PRIu64 "\n"
        "# HELP kizuna_admin_connections_closed_total Admin HTTP connections closed "
        "unfinished by the server, by reason.\n"
        "# TYPE kizuna_admin_connections_closed_total counter\n"
        "%s\"deadline\"} %" PRIu64 "\n%s\"address_full\"} %" PRIu64 "\n"
        "%s\"server_full\"} %" PRIu64 "\n%s\"no_slot\"} %" PRIu64 "\n",
        st.open, st.accepted, closed, st.closed_deadline, closed, st.evicted_address, closed,
        st.evicted_full, closed, st.refused);
    return len < 0 ? n : (size_t)len;
}

static enum MHD_Result kzs_metrics_reply(struct MHD_Connection *c, const kzs_admin *a)
{
    char own[1024];
    size_t len, own_len = kzs_admin_render(a, own, sizeof own);
    char *body = kzs_metrics_render(a->metrics, &len);
    char *all = body == NULL || own_len >= sizeof own ? NULL : realloc(body, len + own_len + 1);
    if (all == NULL) {
        free(body);
        return kzs_text_reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    }
    memcpy(all + len, own, own_len + 1);
    return kzs_reply(c, MHD_HTTP_OK, kzs_exposition, all, len + own_len, 1, NULL);
}

static enum MHD_Result kzs_health_reply(struct MHD_Connection *c, kzs_metrics *m)
{
    char why[160];
    if (kzs_metrics_health(m, why, sizeof why - 1))
        return kzs_text_reply(c, MHD_HTTP_OK, "ok\n");
    size_t len = strlen(why);
    char *body = malloc(len + 2);
    if (body == NULL)
        return kzs_text_reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "unhealthy\n");
    memcpy(body, why, len);
    memcpy(body + len, "\n", 2);
    return kzs_reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, kzs_text, body, len + 1, 1, NULL);
}

static enum MHD_Result kzs_ready_reply(struct MHD_Connection *c, kzs_metrics *m)
{
    switch (kzs_metrics_readiness(m)) {
    case KZS_READY: return kzs_text_reply(c, MHD_HTTP_OK, "ready\n");
    case KZS_READY_DRAINING: return kzs_text_reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "draining\n");
    case KZS_READY_AUDIT:
        return kzs_text_reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "audit log unavailable\n");
    default: return kzs_text_reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready\n");
    }
}

static enum MHD_Result kzs_on_request(void *cls, struct MHD_Connection *c, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **con_cls)
{
    kzs_admin *a = cls;
    enum { METRICS, HEALTH, READY, NONE } what = NONE;
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)con_cls;
    if (strcmp(url, "/metrics") == 0)
        what = METRICS;
    else if (strcmp(url, "/healthz") == 0)
        what = HEALTH;
    else if (strcmp(url, "/readyz") == 0)
        what = READY;
    if (what == NONE)
        return kzs_text_reply(c, MHD_HTTP_NOT_FOUND, "not found\n");
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return kzs_reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, kzs_text, "method not allowed\n",
                         strlen("method not allowed\n"), 0, "GET, HEAD");
    /* Answering now, before any body is read, makes libmicrohttpd discard
     * the body and close the connection after the reply. */
    if (kzs_has_body(c))
        return kzs_text_reply(c, MHD_HTTP_CONTENT_TOO_LARGE, "request body not accepted\n");
    switch (what) {
    case METRICS: return kzs_metrics_reply(c, a);
    case HEALTH: return kzs_health_reply(c, a->metrics);
    default: return kzs_ready_reply(c, a->metrics);
    }
}

/* ---- connections ---------------------------------------------------------- */

static uint64_t kzs_admin_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void kzs_admin_count(_Atomic uint64_t *counter)
{
    atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
}

/* Closes `k` for `reason`. Shutting the socket down, rather than closing
 * it, leaves the descriptor to libmicrohttpd: the hang-up wakes its poll
 * and it closes the connection on its next pass; anything the peer sends
 * meanwhile is answered with a reset. */
static void kzs_admin_close(kzs_admin_conn *k, _Atomic uint64_t *reason)
{
    (void)shutdown(k->fd, SHUT_RDWR);
    k->closing = 1;
    kzs_admin_count(reason);
}

/* Connections not yet told to close: how many, and the oldest. */
typedef struct kzs_admin_scan {
    uint32_t live;
    kzs_admin_conn *oldest;
} kzs_admin_scan;

/* Scans the live connections, only those from *addr when addr is not NULL. */
static kzs_admin_scan kzs_admin_scan_live(kzs_admin *a, const uint32_t *addr)
{
    kzs_admin_scan s = {0, NULL};
    for (uint32_t i = 0; i < a->slots; i++) {
        kzs_admin_conn *k = &a->conns[i];
        if (k->mhd == NULL || k->closing || (addr != NULL && k->addr != *addr))
            continue;
        s.live++;
        if (s.oldest == NULL || k->seq < s.oldest->seq)
            s.oldest = k;
    }
    return s;
}

/* Before a connection from `addr` is admitted: if its address, or the
 * endpoint, already holds all it may, the oldest such connection goes.
 * Admitting one after closing one keeps both counts within their limits. */
static void kzs_admin_make_room(kzs_admin *a, uint32_t addr)
{
    kzs_admin_scan same = kzs_admin_scan_live(a, &addr);
    if (same.live >= a->max_per_ip) {
        kzs_admin_close(same.oldest, &a->evicted_address);
        return;
    }
    kzs_admin_scan all = kzs_admin_scan_live(a, NULL);
    if (all.live >= a->max_connections)
        kzs_admin_close(all.oldest, &a->evicted_full);
}

static kzs_admin_conn *kzs_admin_free_slot(kzs_admin *a)
{
    for (uint32_t i = 0; i < a->slots; i++)
        if (a->conns[i].mhd == NULL)
            return &a->conns[i];
    return NULL;
}

/* The peer's IPv4 address in network order; 0 if it is not IPv4 (the
 * socket is IPv4 only, so that cannot happen). */
static uint32_t kzs_admin_peer(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci == NULL || ci->client_addr == NULL || ci->client_addr->sa_family != AF_INET)
        return 0;
    struct sockaddr_in sin;
    memcpy(&sin, ci->client_addr, sizeof sin);
    return sin.sin_addr.s_addr;
}

static MHD_socket kzs_admin_fd(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci == NULL ? MHD_INVALID_SOCKET : ci->connect_fd;
}

/* A new connection: room is made for it, then it takes a slot, which
 * *ctx (libmicrohttpd's per-socket pointer) remembers until it closes. */
static void kzs_admin_admit(kzs_admin *a, struct MHD_Connection *c, void **ctx)
{
    uint32_t addr = kzs_admin_peer(c);
    MHD_socket fd = kzs_admin_fd(c);
    kzs_admin_make_room(a, addr);
    kzs_admin_conn *k = kzs_admin_free_slot(a);
    if (k == NULL || fd == MHD_INVALID_SOCKET) {
        if (fd != MHD_INVALID_SOCKET)
            (void)shutdown(fd, SHUT_RDWR);
        kzs_admin_count(&a->refused);
        return;
    }
    *k = (kzs_admin_conn){.mhd = c, .fd = fd, .addr = addr, .seq = a->next_seq++,
                          .opened_ns = kzs_admin_now_ns()};
    *ctx = k;
    kzs_admin_count(&a->accepted);
    atomic_fetch_add_explicit(&a->open, 1, memory_order_relaxed);
}

/* libmicrohttpd is about to close the descriptor: the slot is free again.
 * (It notifies before closing, so a shut-down never reaches a reused
 * descriptor.) */
static void kzs_admin_forget(kzs_admin *a, kzs_admin_conn *k)
{
    if (k == NULL)
        return;
    *k = (kzs_admin_conn){.mhd = NULL, .fd = MHD_INVALID_SOCKET};
    atomic_fetch_sub_explicit(&a->open, 1, memory_order_relaxed);
}

static void kzs_on_connection(void *cls, struct MHD_Connection *c, void **ctx,
                              enum MHD_ConnectionNotificationCode code)
{
    if (code == MHD_CONNECTION_NOTIFY_STARTED)
        kzs_admin_admit(cls, c, ctx);
    else if (code == MHD_CONNECTION_NOTIFY_CLOSED)
        kzs_admin_forget(cls, *ctx);
}

/* Closes every connection accepted deadline_ns or more before `now`,
 * whatever it has sent or is being sent. */
static void kzs_admin_sweep(kzs_admin *a, uint64_t now)
{
    for (uint32_t i = 0; i < a->slots; i++) {
        kzs_admin_conn *k = &a->conns[i];
        if (k->mhd != NULL && !k->closing && now - k->opened_ns >= a->deadline_ns)
            kzs_admin_close(k, &a->closed_deadline);
    }
}

/* The admin thread: libmicrohttpd's passes, each followed by the sweep. */
static void *kzs_admin_main(void *arg)
{
    kzs_admin *a = arg;
    const struct timespec pause = {0, (long)KZS_ADMIN_TICK_MS * (long)KZS_NS_PER_MS};
    while (!atomic_load_explicit(&a->stop, memory_order_acquire)) {
        /* A failing poll returns at once; the pause keeps it from spinning. */
        if (MHD_run_wait(a->daemon, (int32_t)KZS_ADMIN_TICK_MS) != MHD_YES)
            nanosleep(&pause, NULL);
        kzs_admin_sweep(a, kzs_admin_now_ns());
    }
    return NULL;
}

void kzs_admin_stats_get(const kzs_admin *a, kzs_admin_stats *out)
{
    memset(out, 0, sizeof *out);
    out->accepted = atomic_load_explicit(&a->accepted, memory_order_relaxed);
    out->closed_deadline = atomic_load_explicit(&a->closed_deadline, memory_order_relaxed);
    out->evicted_address = atomic_load_explicit(&a->evicted_address, memory_order_relaxed);
    out->evicted_full = atomic_load_explicit(&a->evicted_full, memory_order_relaxed);
    out->refused = atomic_load_explicit(&a->refused, memory_order_relaxed);
    out->open = atomic_load_explicit(&a->open, memory_order_relaxed);
}

/* ---- lifecycle ------------------------------------------------------------ */

/* `in` (NULL: defaults) with zeros replaced by defaults into *out; 0, or
 * -1 with err written when a limit is out of range. */
static int kzs_admin_resolve(const kzs_admin_limits *in, kzs_admin_limits *out, const char *hp,
                             char *err, size_t errlen)
{
    kzs_admin_limits l = in != NULL ? *in : (kzs_admin_limits){0};
    if (l.deadline_ms == 0)
        l.deadline_ms = KZS_ADMIN_DEADLINE_MS;
    if (l.max_connections == 0)
        l.max_connections = KZS_ADMIN_MAX_CONNECTIONS;
    if (l.max_per_ip == 0)
        l.max_per_ip = l.max_connections < KZS_ADMIN_MAX_PER_IP ? l.max_connections
                                                                 : KZS_ADMIN_MAX_PER_IP;
    if (l.deadline_ms > KZS_ADMIN_DEADLINE_MS_MAX || l.max_connections > KZS_ADMIN_CONNECTIONS_CAP ||
        l.max_per_ip > l.max_connections) {
        snprintf(err, errlen,
                 "admin: %s: limits out of range (deadline 1..%u ms, connections 1..%u, "
                 "per address 1..connections)",
                 hp, KZS_ADMIN_DEADLINE_MS_MAX, KZS_ADMIN_CONNECTIONS_CAP);
        return -1;
    }
    *out = l;
    return 0;
}

static kzs_admin *kzs_admin_create(const kzs_admin_limits *l, kzs_metrics *m)
{
    kzs_admin *a = calloc(1, sizeof *a);
    if (a == NULL)
        return NULL;
    a->metrics = m;
    a->deadline_ns = (uint64_t)l->deadline_ms * KZS_NS_PER_MS;
    a->max_connections = l->max_connections;
    a->max_per_ip = l->max_per_ip;
    a->slots = l->max_connections + KZS_ADMIN_HEADROOM;
    a->conns = calloc(a->slots, sizeof *a->conns);
    if (a->conns == NULL) {
        free(a);
        return NULL;
    }
    return a;
}

static void kzs_admin_free(kzs_admin *a)
{
    free(a->conns);
    free(a);
}

/* The daemon on a duplicate of `fd`, polled by our thread. libmicrohttpd
 * admits no more connections than there are slots; its idle timeout is
 * only a backstop a second past the deadline, which the sweep enforces. */
static struct MHD_Daemon *kzs_admin_daemon(kzs_admin *a, int fd)
{
    /* libmicrohttpd gets a duplicate and closes it in MHD_stop_daemon.
     * Whether it closes it when it fails to start differs between its
     * versions; with a duplicate, closing ours is right either way (at
     * worst the duplicate leaks on that failure). */
    int mhd_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (mhd_fd < 0)
        return NULL;
    unsigned int backstop_s =
        (unsigned int)((a->deadline_ns + 999u * KZS_NS_PER_MS) / (1000u * KZS_NS_PER_MS)) + 1u;
    return MHD_start_daemon(
        MHD_USE_AUTO, 0, NULL, NULL, kzs_on_request, a,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)mhd_fd,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)a->slots,
        MHD_OPTION_CONNECTION_TIMEOUT, backstop_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)KZS_ADMIN_MEMORY_BYTES,
        MHD_OPTION_NOTIFY_CONNECTION, kzs_on_connection, a,
        MHD_OPTION_END);
}

kzs_admin *kzs_admin_start_limited(const char *host_port, kzs_metrics *m,
                                   const kzs_admin_limits *limits, char *err, size_t errlen)
{
    struct sockaddr_in sa;
    kzs_admin_limits lim;
    if (kzs_parse_addr(host_port, &sa, err, errlen) != 0 ||
        kzs_admin_resolve(limits, &lim, host_port, err, errlen) != 0)
        return NULL;
    kzs_admin *a = kzs_admin_create(&lim, m);
    if (a == NULL) {
        snprintf(err, errlen, "admin: %s: out of memory", host_port);
        return NULL;
    }
    int fd = kzs_listen(host_port, &sa, &a->port, err, errlen);
    if (fd < 0) {
        kzs_admin_free(a);
        return NULL;
    }
    a->daemon = kzs_admin_daemon(a, fd);
    close(fd);
    if (a->daemon != NULL && pthread_create(&a->thread, NULL, kzs_admin_main, a) != 0) {
        MHD_stop_daemon(a->daemon);
        a->daemon = NULL;
    }
    if (a->daemon == NULL) {
        snprintf(err, errlen, "admin: %s: cannot start the HTTP server thread", host_port);
        kzs_admin_free(a);
        return NULL;
    }
    return a;
}

kzs_admin *kzs_admin_start(const char *host_port, kzs_metrics *m, char *err, size_t errlen)
{
    return kzs_admin_start_limited(host_port, m, NULL, err, errlen);
}

uint16_t kzs_admin_port(const kzs_admin *a)
{
    return a->port;
}

void kzs_admin_stop(kzs_admin *a)
{
    if (a == NULL)
        return;
    atomic_store_explicit(&a->stop, 1, memory_order_release);
    pthread_join(a->thread, NULL);
    MHD_stop_daemon(a->daemon);
    kzs_admin_free(a);
}
