/*
 * An impairing UDP relay on loopback: clients send to the relay's port, it
 * forwards each client's datagrams to the server from a socket of that
 * client's own (so the server sees one source address per client), and
 * relays the replies back, passing both directions through a kz_impair.
 * This is how tests and the load-test harness put a lossy, jittery network
 * between a real client and a real server on one machine without netem.
 *
 * Caller-driven: kz_proxy_pump(p, now) moves every datagram that arrived
 * and every datagram whose impaired delivery time has come. A tap callback
 * sees every datagram as it crossed the wire (before impairment), which is
 * what a packet capture would show.
 *
 * Sockets are IPv4, non-blocking. Up to max_clients client sockets are
 * opened on first sight of a client (then kept); the tables are fixed at
 * creation. One thread at a time.
 */
#ifndef KZ_PROXY_H
#define KZ_PROXY_H

#include <kizuna/impair.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Direction of a tapped datagram. */
#define KZ_PROXY_UP 0u    /* client -> server */
#define KZ_PROXY_DOWN 1u  /* server -> client */

typedef void (*kz_proxy_tap_fn)(void *ctx, uint32_t direction, const uint8_t *data, size_t len);

typedef struct kz_proxy_config {
    uint32_t listen_ip;            /* network order; 0 = 127.0.0.1 */
    uint16_t listen_port;          /* 0 = any free port */
    uint32_t server_ip;            /* network order; 0 = 127.0.0.1 */
    uint16_t server_port;          /* required */
    uint32_t max_clients;          /* required */
    kz_impair_config up, down;     /* zero = no impairment */
    uint64_t seed;
    kz_proxy_tap_fn tap;           /* may be NULL */
    void *tap_ctx;
    kz_allocator alloc;
} kz_proxy_config;

typedef struct kz_proxy kz_proxy;

KZ_API kz_proxy *kz_proxy_create(const kz_proxy_config *cfg);
KZ_API void kz_proxy_destroy(kz_proxy *p);
KZ_API uint16_t kz_proxy_port(const kz_proxy *p);
/* Receives, impairs and forwards. Returns the number of datagrams sent. */
KZ_API uint32_t kz_proxy_pump(kz_proxy *p, kz_time_ns now);
/* Clients seen; datagrams from further clients are dropped and counted. */
KZ_API uint32_t kz_proxy_clients(const kz_proxy *p);
KZ_API void kz_proxy_stats(const kz_proxy *p, kz_impair_stats *up, kz_impair_stats *down);
/* Changes the impairment of each direction from now on (a network that
 * worsens mid-run); datagrams already held keep their delivery times.
 * 0, or KZ_EINVAL (a config kz_impair_config_check refuses; nothing
 * changed). */
KZ_API KZ_MUST_CHECK int kz_proxy_set_impairment(kz_proxy *p, const kz_impair_config *up,
                                                 const kz_impair_config *down);

#ifdef __cplusplus
}
#endif

#endif /* KZ_PROXY_H */
