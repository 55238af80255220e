/*
 * The viewer's HTTP side, on libmicrohttpd with one internal polling
 * thread: GET / returns the page, GET /state.json the newest published
 * view. That thread never calls Kizuna; it copies the view out of
 * kzv_shared under the lock (a memcpy of the used part, so the main loop
 * waits microseconds at most) and renders JSON from the copy afterwards.
 *
 * Requests are tiny and the page polls about ten times a second, so one
 * thread and one scratch copy (touched only by that thread) are enough.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "viewer.h"

struct kzv_http {
    struct MHD_Daemon *daemon;
    kzv_shared *shared;
    kzv_view *scratch;   /* the HTTP thread's copy of the view */
};

static enum MHD_Result kzv_queue(struct MHD_Connection *conn, unsigned status,
                                 struct MHD_Response *r, const char *type)
{
    if (!r)
        return MHD_NO;
    enum MHD_Result ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (ok == MHD_YES)
        ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (ok == MHD_YES && status == MHD_HTTP_METHOD_NOT_ALLOWED)
        ok = MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    if (ok == MHD_YES)
        ok = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ok;
}

/* A short plain-text answer (errors). */
static enum MHD_Result kzv_text(struct MHD_Connection *conn, unsigned status, const char *text)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    return kzv_queue(conn, status, r, "text/plain; charset=utf-8");
}

static enum MHD_Result kzv_page_answer(struct MHD_Connection *conn)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(kzv_page_len, (void *)kzv_page, MHD_RESPMEM_PERSISTENT);
    return kzv_queue(conn, MHD_HTTP_OK, r, "text/html; charset=utf-8");
}

static enum MHD_Result kzv_state_answer(kzv_http *h, struct MHD_Connection *conn)
{
    pthread_mutex_lock(&h->shared->lock);
    kzv_view_copy(h->scratch, &h->shared->view);
    pthread_mutex_unlock(&h->shared->lock);
    char *json = kzv_state_json(h->scratch, &h->shared->info);
    if (!json)
        return kzv_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    struct MHD_Response *r =
        MHD_create_response_from_buffer_with_free_callback(strlen(json), json, cJSON_free);
    if (!r) {
        cJSON_free(json);
        return MHD_NO;
    }
    return kzv_queue(conn, MHD_HTTP_OK, r, "application/json");
}

/* The access handler: called once per request here, since nothing this
 * server accepts has a body. */
static enum MHD_Result kzv_answer(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    kzv_http *h = cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return kzv_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    if (strcmp(url, "/") == 0 || strcmp(url, "/index.html") == 0)
        return kzv_page_answer(conn);
    if (strcmp(url, "/state.json") == 0)
        return kzv_state_answer(h, conn);
    return kzv_text(conn, MHD_HTTP_NOT_FOUND, "not found: try / or /state.json\n");
}

/* host:port as a loopback-or-other IPv4 socket address. */
static int kzv_sockaddr(const char *host, uint16_t port, struct sockaddr_in *sa)
{
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons(port);
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

kzv_http *kzv_http_start(const char *host, uint16_t port, kzv_shared *sh, uint16_t *bound_port)
{
    struct sockaddr_in sa;
    if (kzv_sockaddr(host, port, &sa) != 0) {
        fprintf(stderr, "viewer: --http host must be an IPv4 address or localhost, not %s\n", host);
        return NULL;
    }
    kzv_http *h = calloc(1, sizeof *h);
    if (!h || !(h->scratch = malloc(sizeof *h->scratch))) {
        free(h);
        return NULL;
    }
    h->shared = sh;
    h->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, port, NULL, NULL, kzv_answer, h,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_LIMIT, 64u,
        MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
    const union MHD_DaemonInfo *di =
        h->daemon ? MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT) : NULL;
    if (!di) {
        fprintf(stderr, "viewer: cannot listen on %s:%u\n", host, (unsigned)port);
        kzv_http_stop(h);
        return NULL;
    }
    *bound_port = di->port;
    return h;
}

void kzv_http_stop(kzv_http *h)
{
    if (!h)
        return;
    if (h->daemon)
        MHD_stop_daemon(h->daemon);
    free(h->scratch);
    free(h);
}
