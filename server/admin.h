/*
 * kizuna-server's admin HTTP endpoint, served by libmicrohttpd on a thread
 * of its own:
 *
 *   GET /metrics   200, the figures of server/metrics.h in the Prometheus
 *                  text format, Content-Type
 *                  "text/plain; version=0.0.4; charset=utf-8", followed by
 *                  the endpoint's own connection figures
 *   GET /healthz   200 "ok\n" while the simulation thread publishes (see
 *                  kzs_metrics_health), else 503 with one line saying why
 *   GET /readyz    200 "ready\n" when set ready, else 503 "not ready\n"
 *                  (starting) or "draining\n"
 *
 * HEAD is answered wherever GET is. Any other path is 404; any other
 * method on these paths is 405 with "Allow: GET, HEAD"; a request with a
 * body is 413. Every answer carries "Connection: close": one request per
 * connection.
 *
 * Built to stay answerable while hostile clients connect to it (slowloris,
 * floods, slow readers), so that an orchestrator's health probe is never
 * starved:
 *   - a whole-connection deadline: every connection is closed at most
 *     deadline_ms after it was accepted, however it trickles bytes (partial
 *     headers, a slow body, a slow reader, an idle keep-alive);
 *   - eviction rather than refusal: a new connection from an address that
 *     already holds max_per_ip connections closes that address's oldest
 *     one, and a new connection that would exceed max_connections closes
 *     the oldest one of all. A probe's request arrives right after its
 *     connection, so it is the newest and is answered before a flood can
 *     make it the oldest; a flood from one address only displaces its own
 *     connections.
 * Each closing is counted by reason (kzs_admin_stats, and on /metrics as
 * kizuna_admin_connections_closed_total). Each connection gets
 * KZS_ADMIN_MEMORY_BYTES for its request. There is no authentication: bind
 * it to loopback or a private network.
 *
 * Ownership and threading: kzs_admin_start* and kzs_admin_stop from one
 * thread; kzs_admin_stats_get from any thread. The kzs_metrics must
 * outlive the admin. Requests are served on the admin thread and only
 * read the metrics through their lock.
 */
#ifndef KZS_ADMIN_H
#define KZS_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#include "metrics.h"

/* libmicrohttpd (0.9.75, epoll) accepts at most this many connections per
 * pass, and reads a new connection's request in the pass after the one
 * that accepted it, after that pass's accepts: so at most
 * 2 * KZS_ADMIN_ACCEPT_BATCH - 1 newer connections are admitted before a
 * probe's request, already sent, is read and answered. */
#define KZS_ADMIN_ACCEPT_BATCH 10u
/* Defaults of kzs_admin_limits. Both limits exceed twice the accept batch,
 * so no flood, from one address or many and however fast, can make a
 * probe the oldest before it is answered. */
#define KZS_ADMIN_DEADLINE_MS 5000u      /* accept to close, whatever happens */
#define KZS_ADMIN_MAX_CONNECTIONS 64u    /* open at once before the oldest goes */
#define KZS_ADMIN_MAX_PER_IP 24u         /* from one address before its oldest goes */
/* Largest values kzs_admin_start_limited accepts. */
#define KZS_ADMIN_DEADLINE_MS_MAX 600000u
#define KZS_ADMIN_CONNECTIONS_CAP 1024u
/* Slots beyond max_connections for connections already told to close that
 * libmicrohttpd has not yet closed (it closes them on its next pass). */
#define KZS_ADMIN_HEADROOM 16u
/* The admin thread checks deadlines at least this often. */
#define KZS_ADMIN_TICK_MS 100u
/* Connections the kernel queues until the admin thread accepts them. When
 * the queue is full, new connections' SYNs are dropped and a probe waits
 * for TCP's retransmission (1 s, then 3 s): a burst should fit. */
#define KZS_ADMIN_BACKLOG 256
#define KZS_ADMIN_MEMORY_BYTES (16u * 1024u)

typedef struct kzs_admin kzs_admin;

/* Limits of one endpoint; a zero field means its KZS_ADMIN_ default. */
typedef struct kzs_admin_limits {
    uint32_t deadline_ms;     /* 1..KZS_ADMIN_DEADLINE_MS_MAX */
    uint32_t max_connections; /* 1..KZS_ADMIN_CONNECTIONS_CAP */
    uint32_t max_per_ip;      /* 1..max_connections */
} kzs_admin_limits;

/* What the endpoint did with connections since it started. */
typedef struct kzs_admin_stats {
    uint64_t accepted;        /* connections admitted */
    uint64_t closed_deadline; /* closed at the deadline, unfinished */
    uint64_t evicted_address; /* closed for a newer one from the same address */
    uint64_t evicted_full;    /* closed for a newer one when all were taken */
    uint64_t refused;         /* closed at once for want of a slot (a safety net:
                                 libmicrohttpd admits no more than there are slots) */
    uint32_t open;            /* held now, including those told to close */
} kzs_admin_stats;

/*
 * Parses `host_port` ("HOST:PORT": HOST an IPv4 literal or "localhost",
 * PORT 0..65535, 0 picking a free port), binds, listens and starts the
 * server thread. On failure returns NULL and writes one line (no newline)
 * into err[0..errlen), e.g. "admin: 127.0.0.1:9100: address already in use".
 */
kzs_admin *kzs_admin_start(const char *host_port, kzs_metrics *m, char *err, size_t errlen);
/* kzs_admin_start with limits other than the defaults (NULL: defaults). A
 * limit out of range fails like a bad address, with err written. */
kzs_admin *kzs_admin_start_limited(const char *host_port, kzs_metrics *m,
                                   const kzs_admin_limits *limits, char *err, size_t errlen);
/* The bound TCP port. */
uint16_t kzs_admin_port(const kzs_admin *a);
/* Copies the connection figures. Each field is read atomically on its own,
 * so two fields may come from moments a few microseconds apart. */
void kzs_admin_stats_get(const kzs_admin *a, kzs_admin_stats *out);
/* Stops the thread (within KZS_ADMIN_TICK_MS), closes every connection and
 * the socket, frees `a`. NULL is ignored. */
void kzs_admin_stop(kzs_admin *a);

#endif /* KZS_ADMIN_H */
