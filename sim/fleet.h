/*
 * One world on many processes (docs/SCALING.md): a kz_server in the role
 * of the world's **authority** (simulation, validation, rules, audit; no
 * transport) or of one of its **edges** (gate, sessions, replicators fed
 * by a replica of the authority's world image). The library encodes,
 * checks and applies the bus messages (sim/bus.h); the server program
 * moves them over NATS. Nothing here blocks or allocates after creation.
 * Simulation thread only. Internal.
 *
 * The program's loop, per role:
 *   authority  kz__fleet_receive every message of kz.W.edge.*.up, then
 *              kz_server_step, then publish kz__fleet_out's messages;
 *   edge       kz__fleet_receive every message of kz.W.tick and
 *              kz.W.edge.E.down, then kz_server_step (the edge ticks when
 *              a world update is complete, not by its own clock), then
 *              publish kz__fleet_out's messages.
 */
#ifndef KZ_SIM_FLEET_H
#define KZ_SIM_FLEET_H

#include <kizuna/counters.h>
#include <kizuna/server.h>

#include "sim/bus.h"

#define KZ__ROLE_SINGLE 0u
#define KZ__ROLE_AUTHORITY 1u
#define KZ__ROLE_EDGE 2u

/* Authority: an edge silent this long has lost its sessions (held). */
#define KZ_BUS_EDGE_SILENCE_MS 500u
/* Edge: no complete world update this long: the authority is away. */
#define KZ_BUS_AUTHORITY_SILENCE_MS 500u
/* Edge: HELLOs asking for a SYNC at most this often. */
#define KZ_BUS_HELLO_MIN_MS 500u

typedef struct kz__fleet_config {
    unsigned role;             /* KZ__ROLE_AUTHORITY or KZ__ROLE_EDGE */
    uint32_t edge;             /* edge: its number, 1..KZ_BUS_MAX_EDGES */
    uint64_t world;            /* kz_bus_world_hash of the world's name */
    uint64_t instance;         /* this process, non-zero, new at every start */
    uint64_t started_ms;       /* Unix ms of this start (an authority's epoch) */
    uint32_t hold_ms;          /* authority: a session whose edge went away keeps its
                                  avatar this long for a JOIN elsewhere; 0 = 15,000 */
    uint32_t out_bytes;        /* room for one step's outgoing messages; 0 = 16 MiB */
} kz__fleet_config;

/* One message to publish: on the world's tick subject, or on edge
 * `edge`'s up or down subject. */
typedef struct kz__bus_msg {
    unsigned subject;          /* KZ_BUS_SUBJECT_* */
    uint32_t edge;
    const uint8_t *data;
    uint32_t len;
} kz__bus_msg;

/* The bus counters of a fleet server (names: kz__fleet_counter_names). */
#define KZ__FLEET_COUNTERS(X) \
    X(MSGS_IN, "bus_msgs_in") \
    X(BYTES_IN, "bus_bytes_in") \
    X(MSGS_OUT, "bus_msgs_out") \
    X(BYTES_OUT, "bus_bytes_out") \
    X(DROP_OVERSIZE, "bus_drop_oversize") \
    X(DROP_MALFORMED, "bus_drop_malformed") \
    X(DROP_VERSION, "bus_drop_version") \
    X(DROP_OTHER_WORLD, "bus_drop_other_world") \
    X(DROP_SENDER, "bus_drop_sender") \
    X(DROP_STALE_INSTANCE, "bus_drop_stale_instance") \
    X(DROP_REPLAY, "bus_drop_replay") \
    X(DROP_FOREIGN, "bus_drop_foreign_session") \
    X(GAP, "bus_gap") \
    X(OUT_DROPPED, "bus_out_dropped") \
    X(SYNCS, "bus_syncs") \
    X(HELLOS, "bus_hellos") \
    X(EDGES_LOST, "bus_edges_lost") \
    X(SESSIONS_HELD, "bus_sessions_held") \
    X(SESSIONS_REATTACHED, "bus_sessions_reattached") \
    X(HELD_ENDED, "bus_held_ended") \
    X(JOINS_IN_USE, "bus_joins_in_use") \
    X(LIMITS_DIFFER, "bus_limits_differ") \
    X(AUTHORITY_LOST, "bus_authority_lost") \
    X(TICKS_APPLIED, "bus_ticks_applied")

#define KZ__FLEET_ENUM(id, name) KZ__FLEET_C_##id,
enum { KZ__FLEET_COUNTERS(KZ__FLEET_ENUM) KZ__FLEET_C_COUNT };
#undef KZ__FLEET_ENUM
extern const char *const kz__fleet_counter_names[KZ__FLEET_C_COUNT];

/* A server in a fleet role. The edge's configuration (tick rate, world
 * bound, max_clients, max_objects, max_visible, snapshot_history, view
 * radius, max_speed) must equal the authority's: its first SYNC is
 * checked against it (bus_limits_differ, kz__fleet_failed). An
 * authority's `net` settings other than max_clients and the log are not
 * used: it has no transport. NULL on a bad configuration. */
kz_server *kz__fleet_server_create(const kz_server_config *cfg, const kz__fleet_config *fc);

/* One message from the bus, on `subject` (the E of an up or down subject
 * in `subject_edge`). Checked (header, instance, sequence, body) and
 * applied, or dropped and counted. KZ_BUS_OK or the drop reason. */
kz_bus_drop kz__fleet_receive(kz_server *s, unsigned subject, uint32_t subject_edge,
                              const uint8_t *msg, size_t len);

/* The messages to publish, oldest first; valid until kz__fleet_out_clear. */
uint32_t kz__fleet_out(kz_server *s, const kz__bus_msg **msgs);
void kz__fleet_out_clear(kz_server *s);

/* Edge: queues a HELLO (1 start, 2 gap, 3 reconnected). */
void kz__fleet_hello(kz_server *s, uint8_t reason);
/* Edge: queues a BYE (it is leaving: the authority holds its sessions at
 * once instead of after its silence). */
void kz__fleet_bye(kz_server *s);
/* Edge: 1 once it holds a replica of the world (its first SYNC). */
int kz__fleet_synced(const kz_server *s);
/* Edge: 1 when the authority's world has other settings (it must stop). */
int kz__fleet_failed(const kz_server *s);
/* Sessions served (edge) or attached and held (authority). */
uint32_t kz__fleet_sessions(const kz_server *s, uint32_t *held);

const kz_counters *kz__fleet_counters(const kz_server *s);
unsigned kz__fleet_role(const kz_server *s);

#endif /* KZ_SIM_FLEET_H */
