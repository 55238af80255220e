/*
 * kz-example-viewer: what the viewer's three parts share.
 *
 * The main thread owns every Kizuna object (the embedded server, the bots
 * and the viewer's kz_client, whose API is single-threaded). Once per frame
 * it copies what the viewer client shows into kzv_shared.view under
 * kzv_shared.lock. The HTTP thread never calls Kizuna: it copies that view
 * out under the same lock and renders JSON from its copy. kzv_shared.info
 * is written before the HTTP server starts and only read afterwards, so it
 * needs no lock.
 */
#ifndef KZV_VIEWER_H
#define KZV_VIEWER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <kizuna/client.h>
#include <kizuna/server.h>

/* The most entities one published view holds: the server's own ceiling on
 * max_visible, so nothing a server sends is cut. */
#define KZV_MAX_ENTITIES 1024u
/* Zones described on the page (the embedded world defines two). */
#define KZV_MAX_ZONES 8u
/* Client ids whose display names the page may show for "agent for ...". */
#define KZV_MAX_PRINCIPALS 256u

/* One entity as the viewer client showed it at the published frame. */
typedef struct kzv_entity {
    uint32_t id;
    uint32_t holder;        /* objects: avatar holding it, 0 = none */
    uint8_t kind;           /* KZ_KIND_* */
    uint8_t has_badge;      /* avatars: badge below is the server's */
    float pos[3];           /* meters */
    float yaw;              /* radians; the avatar faces (cos yaw, sin yaw) in x, z */
    kz_badge badge;
} kzv_entity;

/* The viewer client's picture at one frame. Only the first n entries of e
 * are meaningful; kzv_view_copy copies just those. */
typedef struct kzv_view {
    uint64_t frame;          /* publications so far; 0 = nothing yet */
    uint32_t state;          /* KZ_CLIENT_* */
    uint32_t reason;         /* kz_client_reason once the session ended */
    uint32_t server_tick;    /* newest server tick received */
    uint32_t self_id;        /* 0 until the welcome */
    uint32_t have_self;
    uint32_t n;              /* entries in e */
    uint32_t in_view;        /* entities the client shows (n unless cut) */
    kz_avatar_state self;    /* predicted own state when have_self */
    kzv_entity e[KZV_MAX_ENTITIES];
} kzv_view;

/* A client id and the display name its token carries. */
typedef struct kzv_principal {
    uint64_t client_id;
    char name[33];
} kzv_principal;

/* Facts fixed at start-up. */
typedef struct kzv_info {
    const char *mode;                   /* "embedded" or "connect" */
    float view_radius;                  /* meters; the page scales its map to it */
    uint32_t zones_known;               /* 0: --connect, the protocol does not carry zones */
    uint32_t n_zones;
    kz_zone_def zones[KZV_MAX_ZONES];
    uint32_t self_badge_known;
    kz_badge self_badge;                /* the viewer's own claims, from its token */
    uint32_t n_principals;
    kzv_principal principals[KZV_MAX_PRINCIPALS];
} kzv_info;

typedef struct kzv_shared {
    pthread_mutex_t lock;    /* guards view */
    kzv_view view;
    kzv_info info;           /* immutable while the HTTP server runs */
} kzv_shared;

/* Zeroes n bytes at p in a way the compiler keeps (for keys). */
void kzv_wipe(void *p, size_t n);
/* Copies the header and the n used entities of src into dst. */
void kzv_view_copy(kzv_view *dst, const kzv_view *src);
/* The display name of client `id` from info's table, or NULL. */
const char *kzv_principal_name(const kzv_info *info, uint64_t id);

/* ---- json.c ------------------------------------------------------------ */

/* Renders /state.json for view `v` (see README.md for the fields). Returns
 * a NUL-terminated string to release with cJSON_free, or NULL when memory
 * ran out. */
char *kzv_state_json(const kzv_view *v, const kzv_info *info);

/* ---- http.c ------------------------------------------------------------ */

typedef struct kzv_http kzv_http;

/* Serves GET / (the page) and GET /state.json from `sh` on host:port
 * (IPv4 numeric, or "localhost"; port 0 = any free one) with one internal
 * polling thread. *bound_port receives the port listened on. NULL on
 * failure, with the reason on stderr. `sh` must outlive the server. */
kzv_http *kzv_http_start(const char *host, uint16_t port, kzv_shared *sh, uint16_t *bound_port);
/* Stops the HTTP thread (waits for it) and frees the server. */
void kzv_http_stop(kzv_http *h);

/* The page, embedded at build time from index.html (page.c is generated). */
extern const unsigned char kzv_page[];
extern const size_t kzv_page_len;

/* ---- world.c ----------------------------------------------------------- */

typedef struct kzv_world kzv_world;

typedef struct kzv_world_config {
    uint32_t bots;      /* wandering clients, 1..KZV_MAX_PRINCIPALS - 1 */
    uint64_t seed;      /* spawn points and every bot's walk */
} kzv_world_config;

/* Makes keys, starts an embedded single-threaded server with two zones
 * and two objects, and starts connecting `cfg->bots` bots. Mints the
 * viewer's token into *viewer_token and fills info (zones, view radius,
 * the names of every client id, the viewer's own badge). NULL on failure,
 * with the reason on stderr. */
kzv_world *kzv_world_create(const kzv_world_config *cfg, kzv_info *info,
                            kz_connect_token *viewer_token, kz_time_ns now);
/* Runs the server's due ticks and one frame of every bot at `now`. */
void kzv_world_step(kzv_world *w, kz_time_ns now);
/* Bots connected now. */
uint32_t kzv_world_bots_connected(const kzv_world *w);
void kzv_world_destroy(kzv_world *w);

#endif /* KZV_VIEWER_H */
