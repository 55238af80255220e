/*
 * Work the application runs on the transport's I/O hosts: the world's
 * replicators (sim/replicator.h) encode and send each client's snapshot
 * on the thread of the host that serves the client, so that per-client
 * work is spread over the I/O threads instead of queued through the
 * simulation thread's rings. Internal to the library.
 *
 * Sessions are named by a serial as well as a slot: a slot is reused by
 * the next session once the application has seen the DISCONNECT, and a
 * snapshot prepared from an older image of the world must never reach
 * that next holder. kz__netserver_send_now checks the serial on the
 * host's own thread, where the session table of that host is written.
 */
#ifndef KZ_NET_NETSERVER_WORK_H
#define KZ_NET_NETSERVER_WORK_H

#include <kizuna/transport.h>

/* Runs on I/O host `host`'s thread once per pass (threaded mode), after
 * the pass has received and dispatched what arrived and before it
 * flushes. Must not block. */
typedef void (*kz__io_work_fn)(void *ctx, uint32_t host);

/* Application thread, once, before the first message is polled: every
 * I/O host calls `fn(ctx, host)` on each of its passes from now on. In
 * single-threaded mode nothing is called: the application runs the work
 * itself, between its polls and kz_netserver_service. */
void kz__netserver_set_work(kz_netserver *s, kz__io_work_fn fn, void *ctx);

/* Application thread: cuts every I/O host's pause between passes short,
 * so new work (a published tick) is taken at once rather than at the
 * next pass. One short lock per host; no-op in single-threaded mode. */
void kz__netserver_wake(kz_netserver *s);

/* Seals and hands to ENet what the application queued for host `host`
 * (kz_netserver_send) so far: called from that host's work before it
 * sends, so a message queued before the work was published (a welcome)
 * reaches ENet, and the client, before what the work sends. Threaded
 * mode: on the host's thread; single-threaded mode: the application's. */
void kz__netserver_flush_queued(kz_netserver *s, uint32_t host);

/* The number of I/O hosts (replicators the application should run). */
uint32_t kz__netserver_hosts(const kz_netserver *s);

/* Application thread, right after polling a KZ_NETMSG_CONNECT: the host
 * serving that session and its serial (never 0, unique for the life of
 * the transport). */
uint32_t kz__netserver_polled_host(const kz_netserver *s);
uint32_t kz__netserver_polled_serial(const kz_netserver *s);

/*
 * Seals `data` for the session `serial` in `slot` and hands it to ENet at
 * once, on host `host`: call it from that host's work (threaded mode) or
 * from the application thread (single-threaded mode). No ring, no copy
 * into a pool. Returns 0; KZ_EINVAL (bad channel or length); KZ_ESTATE
 * when that host no longer serves that session (it ended, or the slot
 * belongs to a newer one), counted as drop_no_session; or the drop of a
 * refused send, counted under its reason.
 */
int kz__netserver_send_now(kz_netserver *s, uint32_t host, uint32_t slot, uint32_t serial,
                           uint8_t channel, uint8_t type, const void *data, uint32_t len);

#endif /* KZ_NET_NETSERVER_WORK_H */
