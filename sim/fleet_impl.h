/*
 * The state of a fleet server (sim/fleet.h), shared by fleet.c (common
 * parts and the authority) and fleet_edge.c (the edge), and the hooks
 * server.c and server_tick.c call in a fleet role. Internal.
 */
#ifndef KZ_SIM_FLEET_IMPL_H
#define KZ_SIM_FLEET_IMPL_H

#include "sim/fleet.h"
#include "sim/server_impl.h"

#define KZ__NO_AVATAR UINT32_MAX
#define KZ__FLEET_MAX_MSGS 8192u

/* Authority: what it knows of one edge. */
typedef struct kz__peer {
    uint64_t instance;         /* 0 = none */
    uint64_t started;          /* its HELLO's start time: orders instances */
    uint64_t seq;              /* newest accepted on its up subject */
    uint64_t seq_down;         /* ours on its down subject */
    kz_time_ns heard;          /* when its last message was accepted */
    uint8_t heard_now;         /* accepted since the last step: `heard` is that step's time
                                  (messages are taken before the step that sets s->now) */
    uint8_t need_sync;
    uint8_t lost;              /* silent past KZ_BUS_EDGE_SILENCE_MS: its sessions are held,
                                  and come back to it if it speaks again (same instance) */
    uint32_t *by_slot;         /* its transport slot -> world slot + 1 */
} kz__peer;

/* Authority: where one world slot's session is served. */
typedef struct kz__wslot {
    uint32_t edge;             /* 0 = none (free, or held) */
    uint32_t eslot, eserial;   /* the edge's transport slot and serial */
    uint8_t held;              /* its edge went away: the avatar waits for a JOIN */
    uint32_t held_edge;        /* the edge it was on (eslot, eserial kept), 0 = none */
    uint64_t held_instance;    /* that edge's instance then */
    kz_time_ns held_since;
} kz__wslot;

typedef struct kz__fleet {
    kz__fleet_config cfg;
    kz_counters counters;
    kz_counter_block c;
    uint32_t cap, max_clients;
    /* outgoing messages of this step, in one arena */
    uint8_t *out;
    size_t out_cap, out_used;
    kz__bus_msg *msgs;
    uint32_t n_msgs;
    size_t open_at;            /* header offset of the message being built */
    int open;                  /* a message is being built */
    uint8_t open_type;
    unsigned open_subject;
    uint32_t open_edge;
    uint32_t open_count;       /* records in it */
    uint64_t seq_tick, seq_up; /* our sequence on the tick (authority) or up (edge) subject */

    /* ---- authority ---- */
    kz__peer peers[KZ_BUS_MAX_EDGES + 1];
    kz__wslot *ws;             /* per world slot */
    uint32_t next_serial;
    /* what the last TICK said of each dense index (the next TICK's baseline) */
    kz_snap_state *prev;
    uint8_t *prev_rule, *prev_zone;
    float *prev_imp;
    uint64_t *prev_owner;
    uint32_t *prev_badge_gen, *prev_blocked_gen, *prev_input;
    uint8_t *prev_corr;
    /* DOWN records of this step: u8 edge, then the record */
    uint8_t *stage;
    size_t stage_cap, stage_used;

    /* ---- edge ---- */
    uint64_t auth_instance, auth_epoch, auth_seq_tick, auth_seq_down;
    int auth_instance_seen;    /* an authority was followed before this one */
    int synced, failed;
    uint32_t rtick;            /* the replica's newest complete tick */
    int building;              /* parts of tick `part_tick` are being applied */
    int building_sync;
    uint32_t part_tick, part_next, part_end;
    kz_time_ns last_update, last_hello, last_batch;
    uint8_t hello_reason;      /* a HELLO is due (0 = none) */
    uint8_t paused;            /* its clients were told the world is paused */
    kz_snap_state *rstate;
    uint8_t *rrule, *rzone, *rn_blocked, *rcorr, *rgrid;
    float *rimp;
    uint64_t *rowner;
    kz_snap_badge *rbadge;
    uint32_t *rbadge_gen, *rblocked_gen, *rinput;
    uint64_t (*rblocked)[32];

    void *block;
    size_t block_size;
    kz_allocator alloc;
} kz__fleet;

/* fleet.c: the out arena */
uint8_t *kz__fleet_begin(kz__fleet *f, unsigned subject, uint32_t edge, uint8_t type,
                         size_t need);
void kz__fleet_end(kz__fleet *f, uint8_t *end);
int kz__fleet_room(const kz__fleet *f, size_t bytes);
uint8_t *kz__fleet_cursor(kz__fleet *f);

/* fleet_edge.c */
int kz__fleet_edge_init(kz_server *s, kz__fleet *f, uint8_t *base, size_t *off);
kz_bus_drop kz__fleet_edge_receive(kz_server *s, const kz_bus_header *h, const uint8_t *body,
                                   size_t len);
void kz__fleet_edge_step(kz_server *s);

/* ---- hooks from server.c and server_tick.c ---- */

/* Authority: a message for the client in world slot `slot` (its edge
 * sends it). */
void kz__fleet_send(kz_server *s, uint32_t slot, uint8_t channel, uint8_t type,
                    const void *data, uint32_t len);
/* Authority: the client in `slot` is to be kicked by its edge. */
int kz__fleet_kick(kz_server *s, uint32_t slot, uint32_t reason);
/* Authority: chat, emote or voice from dense index `from`: every edge
 * delivers it to its clients within `radius` that see `from`. */
void kz__fleet_near(kz_server *s, uint32_t from, float radius, int echo, uint8_t channel,
                    uint8_t type, const uint8_t *data, uint32_t len);
/* Authority: after each tick, the TICK, the SYNCs asked for and the DOWNs. */
void kz__fleet_after_tick(kz_server *s);
/* Both: once per kz_server_step (timers: edge silence, held sessions,
 * heartbeats, HELLOs). */
void kz__fleet_step(kz_server *s);
/* Edge: a record for the authority about local slot `slot`. */
void kz__fleet_up(kz_server *s, uint8_t kind, uint8_t sub, uint32_t slot, uint32_t serial,
                  uint32_t age_us, const void *body, uint32_t len);
/* Edge: what came into its observers' views goes up (once per tick). */
void kz__fleet_edge_observers(kz_server *s);
/* Edge: fills frame `fr` of the replica's tick (image row, attributes,
 * owner rows, grid). */
void kz__fleet_fill_frame(kz_server *s, kz__frame *fr);

/* server.c, for the fleet: the session events of the single process. */
void kz__server_connect(kz_server *s, uint32_t slot, const kz_token_info *info, uint32_t serial,
                        uint32_t host);
void kz__server_disconnect(kz_server *s, uint32_t slot);
void kz__server_path(kz_server *s, uint32_t slot, int detached);
void kz__server_data(kz_server *s, const kz_netmsg *m);
void kz__server_welcome(kz_server *s, uint32_t slot);
/* server_tick.c: the edge's tick `tick`: publishes the replica's frame
 * and replicates it. */
void kz__server_edge_tick(kz_server *s, uint32_t tick);

#endif /* KZ_SIM_FLEET_IMPL_H */
