/*
 * The admin HTTP endpoint (admin.h) on libmicrohttpd. The listening socket
 * is opened here rather than by the library, so that a failure to bind is
 * reported with its errno ("address already in use") and the bound port
 * is known when port 0 was asked for. Every request is answered on the
 * handler's first call, when its headers are in: none of the endpoints
 * takes a body, so nothing is ever read past the headers.
 */
#include "admin.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

struct kzs_admin {
    struct MHD_Daemon *daemon;
    kzs_metrics *metrics;
    uint16_t port;
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
        listen(fd, (int)KZS_ADMIN_MAX_CONNECTIONS) != 0)
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

static enum MHD_Result kzs_metrics_reply(struct MHD_Connection *c, kzs_metrics *m)
{
    size_t len;
    char *body = kzs_metrics_render(m, &len);
    if (body == NULL)
        return kzs_text_reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    return kzs_reply(c, MHD_HTTP_OK, kzs_exposition, body, len, 1, NULL);
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
    case METRICS: return kzs_metrics_reply(c, a->metrics);
    case HEALTH: return kzs_health_reply(c, a->metrics);
    default: return kzs_ready_reply(c, a->metrics);
    }
}

/* ---- lifecycle ------------------------------------------------------------ */

kzs_admin *kzs_admin_start(const char *host_port, kzs_metrics *m, char *err, size_t errlen)
{
    struct sockaddr_in sa;
    if (kzs_parse_addr(host_port, &sa, err, errlen) != 0)
        return NULL;
    kzs_admin *a = calloc(1, sizeof *a);
    if (a == NULL) {
        snprintf(err, errlen, "admin: %s: out of memory", host_port);
        return NULL;
    }
    a->metrics = m;
    int fd = kzs_listen(host_port, &sa, &a->port, err, errlen);
    if (fd < 0) {
        free(a);
        return NULL;
    }
    /* libmicrohttpd gets a duplicate and closes it in MHD_stop_daemon.
     * Whether it closes it when it fails to start differs between its
     * versions; with a duplicate, closing ours is right either way (at
     * worst the duplicate leaks on that failure). */
    int mhd_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (mhd_fd >= 0)
        a->daemon = MHD_start_daemon(
            MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, kzs_on_request, a,
            MHD_OPTION_LISTEN_SOCKET, (MHD_socket)mhd_fd,
            MHD_OPTION_CONNECTION_LIMIT, (unsigned int)KZS_ADMIN_MAX_CONNECTIONS,
            MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)KZS_ADMIN_MAX_PER_IP,
            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)KZS_ADMIN_TIMEOUT_S,
            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)KZS_ADMIN_MEMORY_BYTES,
            MHD_OPTION_END);
    close(fd);
    if (a->daemon == NULL) {
        snprintf(err, errlen, "admin: %s: cannot start the HTTP server thread", host_port);
        free(a);
        return NULL;
    }
    return a;
}

uint16_t kzs_admin_port(const kzs_admin *a)
{
    return a->port;
}

void kzs_admin_stop(kzs_admin *a)
{
    if (a == NULL)
        return;
    MHD_stop_daemon(a->daemon);
    free(a);
}
