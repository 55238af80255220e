/*
 * The per-tick bus of a world on many processes (docs/SCALING.md,
 * sections 1-3): moves the library's bus messages (sim/fleet.h) between a
 * fleet server and NATS core subjects. The library encodes, checks and
 * applies the bytes; this module only carries them.
 *
 *   kz.W.tick          the authority publishes, every edge subscribes;
 *   kz.W.edge.E.up     edge E publishes, the authority subscribes to
 *                      kz.W.edge.*.up and reads E from the subject;
 *   kz.W.edge.E.down   the authority publishes, edge E subscribes.
 *
 * One NATS connection of its own, apart from the fleet directory's
 * (fleet.h), so that a slow JetStream request never delays a tick: it
 * writes each publish to the socket at once (SendAsap: libnats' flusher
 * would hold it up to 1 ms), gives a blocked socket KZS_BUS_WRITE_
 * DEADLINE_MS before it counts as broken, and reconnects for ever every
 * KZS_FLEET_RECONNECT_WAIT_MS, with the directory's credentials file.
 * Subscriptions are synchronous and drained without waiting
 * (natsSubscription_NextMsg(.., 0)) by the simulation thread; no NATS
 * thread calls into Kizuna code: the connection callbacks only bump
 * counters and flags.
 *
 * Everything received is untrusted: the subject an up message came on is
 * parsed strictly (kzs_bus_subject_edge) and the bytes go to
 * kz__fleet_receive, which checks them; what fails is counted, never
 * applied.
 *
 * Threading: create, pump, flush and destroy on the simulation thread
 * that owns the kz_server; the counters may be read from any thread.
 * Workload: a tick's few messages each way at 10..128 Hz per process.
 */
#ifndef KZS_BUS_H
#define KZS_BUS_H

#include <stddef.h>
#include <stdint.h>

#include <kizuna/counters.h>
#include <kizuna/log.h>
#include <kizuna/server.h>

/* A blocked socket is a broken connection after this long (reconnect). */
#define KZS_BUS_WRITE_DEADLINE_MS 50
/* Publishes libnats keeps while it reconnects (its default, named). */
#define KZS_BUS_RECONNECT_BUF (8 * 1024 * 1024)
/* Messages and bytes a subscription holds before libnats drops (counted:
 * bus_nats_dropped; the receiver sees a gap and resynchronises). */
#define KZS_BUS_PENDING_MSGS 4096
#define KZS_BUS_PENDING_BYTES (64 * 1024 * 1024)
/* A pump takes at most this many messages of one subscription, so a
 * flood cannot hold the simulation thread; the rest wait for the next. */
#define KZS_BUS_PUMP_MAX 4096u
/* An edge's loop passes at most this far apart: it waits on its first
 * subscription (the world updates) for up to this long, and ticks as soon
 * as one arrives, not by its own clock. A shorter fixed pause cost an idle
 * edge about 15 % of a core in wake-ups. */
#define KZS_BUS_EDGE_WAIT_MS 1
/* Publish and receive failures are logged at most this often (with the
 * count since the last line). */
#define KZS_BUS_LOG_EVERY_NS 1000000000ull

/* The program's own counters of the bus (the library's are
 * kz__fleet_counter_names). Block 0 is the simulation thread's, block 1
 * the NATS callbacks'. */
#define KZS_BUS_COUNTERS(X) \
    X(PUBLISH_FAILED, "bus_publish_failed") \
    X(UNSENT, "bus_unsent_disconnected") \
    X(DROP_SUBJECT, "bus_drop_subject") \
    X(RECEIVE_FAILED, "bus_receive_failed") \
    X(NATS_DROPPED, "bus_nats_dropped") \
    X(DISCONNECTS, "bus_nats_disconnects") \
    X(RECONNECTS, "bus_nats_reconnects") \
    X(NATS_ERRORS, "bus_nats_errors")

#define KZS_BUS_ENUM(id, name) KZS_BUS_C_##id,
enum { KZS_BUS_COUNTERS(KZS_BUS_ENUM) KZS_BUS_C_COUNT };
#undef KZS_BUS_ENUM

typedef struct kzs_bus_config {
    const char *nats;          /* NATS URL(s), no user or password */
    const char *credentials;   /* credentials file, "" for none (fleet.h) */
    const char *world;         /* the world's name, 1..32 of [A-Za-z0-9_-] */
    unsigned role;             /* KZ__ROLE_AUTHORITY or KZ__ROLE_EDGE */
    uint32_t edge;             /* an edge's number, 1..KZ_BUS_MAX_EDGES */
    kz_log log;
} kzs_bus_config;

typedef struct kzs_bus kzs_bus;

/*
 * Connects and subscribes (authority: kz.W.edge.*.up; edge: kz.W.tick and
 * kz.W.edge.E.down). Returns the bus, or NULL with a sentence in
 * why[0..why_len) (no secret in it) when NATS cannot be reached or a
 * subscription is refused.
 */
kzs_bus *kzs_bus_create(const kzs_bus_config *cfg, char *why, size_t why_len);

/*
 * Unsubscribes and closes. With `last` (no other NATS connection of the
 * process is left) the library's own threads are released too; otherwise
 * the last connection's owner does that (kzs_fleet_disconnect), after
 * this. NULL is a no-op.
 */
void kzs_bus_destroy(kzs_bus *b, int last);

/*
 * Drains every subscription (at most KZS_BUS_PUMP_MAX messages each) into
 * kz__fleet_receive. An edge that reconnected to NATS first asks for a
 * new image (HELLO reason 3). Returns the messages taken.
 */
uint32_t kzs_bus_pump_in(kzs_bus *b, kz_server *s);

/*
 * Waits up to `timeout_ms` for a message on the first subscription (an
 * edge's world updates) and hands it to kz__fleet_receive at once.
 * Returns 1 when one came, 0 after the timeout; when the subscription
 * cannot be waited on (closed, NATS away) it sleeps the timeout instead,
 * so a loop around it never spins.
 */
int kzs_bus_wait(kzs_bus *b, kz_server *s, int timeout_ms);

/*
 * Publishes kz__fleet_out's messages, oldest first, then clears them.
 * An authority publishes nothing while NATS is away (stale ticks are
 * worthless; counted bus_unsent_disconnected); an edge's publishes wait
 * in libnats' reconnect buffer. A refused publish is counted and logged
 * (rate-limited). Returns the messages published.
 */
uint32_t kzs_bus_pump_out(kzs_bus *b, kz_server *s);

/* Waits up to `timeout_ms` for the server to have everything published
 * (a round trip): before a stopping process closes. 0 or -1. */
int kzs_bus_flush(kzs_bus *b, int timeout_ms);

/* 1 while the connection is up. */
int kzs_bus_connected(kzs_bus *b);

/* The program's counters of the bus (KZS_BUS_COUNTERS). */
const kz_counters *kzs_bus_counters(const kzs_bus *b);

/*
 * The edge number of an up subject of `world`, "kz.<world>.edge.<E>.up",
 * with E in 1..KZ_BUS_MAX_EDGES written in decimal without leading zeros;
 * 0 for anything else (counted by the caller as bus_drop_subject).
 */
uint32_t kzs_bus_subject_edge(const char *world, const char *subject);

/*
 * One log line's worth of the bus state: role, edge, sessions (and
 * held), synced (edge), connected, then every library and program
 * counter as name=value, into out[0..cap). Returns out.
 */
char *kzs_bus_stats(kzs_bus *b, const kz_server *s, char *out, size_t cap);

#endif /* KZS_BUS_H */
