/*
 * kizuna-server's admin HTTP endpoint, served by libmicrohttpd on its own
 * thread:
 *
 *   GET /metrics   200, the figures of server/metrics.h in the Prometheus
 *                  text format, Content-Type
 *                  "text/plain; version=0.0.4; charset=utf-8"
 *   GET /healthz   200 "ok\n" while the simulation thread publishes (see
 *                  kzs_metrics_health), else 503 with one line saying why
 *   GET /readyz    200 "ready\n" when set ready, else 503 "not ready\n"
 *                  (starting) or "draining\n"
 *
 * HEAD is answered wherever GET is. Any other path is 404; any other
 * method on these paths is 405 with "Allow: GET, HEAD"; a request with a
 * body is 413. Bounded: at most KZS_ADMIN_MAX_CONNECTIONS connections
 * (KZS_ADMIN_MAX_PER_IP from one address), each closed after
 * KZS_ADMIN_TIMEOUT_S idle seconds, with KZS_ADMIN_MEMORY_BYTES for its
 * request. There is no authentication: bind it to loopback or a private
 * network.
 *
 * Ownership and threading: kzs_admin_start and kzs_admin_stop from one
 * thread; the kzs_metrics must outlive the admin. Requests are served on
 * libmicrohttpd's thread and only read the metrics through their lock.
 */
#ifndef KZS_ADMIN_H
#define KZS_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#include "metrics.h"

#define KZS_ADMIN_MAX_CONNECTIONS 16u
#define KZS_ADMIN_MAX_PER_IP 8u
#define KZS_ADMIN_TIMEOUT_S 10u
#define KZS_ADMIN_MEMORY_BYTES (16u * 1024u)

typedef struct kzs_admin kzs_admin;

/*
 * Parses `host_port` ("HOST:PORT": HOST an IPv4 literal or "localhost",
 * PORT 0..65535, 0 picking a free port), binds, listens and starts the
 * server thread. On failure returns NULL and writes one line (no newline)
 * into err[0..errlen), e.g. "admin: 127.0.0.1:9100: address already in use".
 */
kzs_admin *kzs_admin_start(const char *host_port, kzs_metrics *m, char *err, size_t errlen);
/* The bound TCP port. */
uint16_t kzs_admin_port(const kzs_admin *a);
/* Stops the thread, closes every connection and the socket, frees `a`.
 * NULL is ignored. */
void kzs_admin_stop(kzs_admin *a);

#endif /* KZS_ADMIN_H */
