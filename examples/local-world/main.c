/*
 * local-world: a Kizuna server and N headless clients in one process, on
 * loopback, using only the public API. Each client walks; once a second
 * the program prints what a few of them see (how many avatars, the nearest
 * ones with their identity badges); at the end, a summary for every
 * client.
 *
 *   kz-example-local-world [clients (default 50)] [seconds (default 10)]
 *
 * Copy from it: key and token setup (normally a backend's job), the
 * server's single-threaded loop, and the client's update / input / event /
 * view cycle that an engine runs once per frame.
 */
#include <arpa/inet.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kizuna/client.h>
#include <kizuna/server.h>

#define PROTOCOL_ID 0x4B495A554E410001ull
#define SERVER_ID 1u

static kz_time_ns now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (kz_time_ns)ts.tv_sec * KZ_NS_PER_S + (kz_time_ns)ts.tv_nsec;
}

/* A backend would do this: sign a token that lets `id` into our server. */
static int mint(const kz_sign_keypair *backend, const kz_box_keypair *server, uint16_t port,
                uint32_t id, kz_connect_token *out)
{
    kz_token_info t;
    memset(&t, 0, sizeof t);
    t.protocol_id = PROTOCOL_ID;
    t.create_time = (uint64_t)time(NULL) - 1;
    t.expire_time = t.create_time + 3600;
    t.server_id = SERVER_ID;
    t.n_addresses = 1;
    t.addresses[0].family = KZ_ADDR_IPV4;
    t.addresses[0].ip[0] = 127;
    t.addresses[0].ip[3] = 1;
    t.addresses[0].port = port;
    t.client_id = id;
    t.avatar_id = id;
    snprintf(t.name, sizeof t.name, "walker-%u", id);
    /* Every third walker is an AI agent acting for the walker before it. */
    if (id % 3 == 0) {
        t.claims.actor_kind = KZ_ACTOR_AGENT;
        t.claims.acting_for = id - 1;
        t.claims.verification_level = KZ_VERIFY_BASIC;
        strcpy(t.claims.method, "oidc:example");
    } else {
        t.claims.verification_level = id % 2 ? KZ_VERIFY_STRONG : KZ_VERIFY_NONE;
        strcpy(t.claims.method, id % 2 ? "ekyc-face" : "none");
    }
    size_t len = 0;
    int rc = kz_token_mint(&t, backend->secret_key, server->public_key, &out->keys, out->token,
                           sizeof out->token, &len);
    out->token_len = (uint16_t)len;
    return rc;
}

static const char *actor_name(uint8_t kind)
{
    return kind == KZ_ACTOR_AGENT ? "agent" : kind == KZ_ACTOR_BOT ? "bot" : "human";
}

/* Prints the three nearest avatars client `c` shows. */
static void print_view(uint32_t who, const kz_client *c)
{
    static kz_client_entity view[1024];
    kz_avatar_state self;
    if (kz_client_self(c, &self) != KZ_OK)
        return;
    uint32_t n = kz_client_view(c, view, 1024);
    if (n > 1024)
        n = 1024;
    printf("  walker-%u at (%6.1f, %6.1f) sees %u", who, self.pos[0], self.pos[2], n);
    for (int shown = 0; shown < 3 && n > 0; shown++) {
        uint32_t best = 0;
        float bd = INFINITY;
        for (uint32_t k = 0; k < n; k++) {
            float dx = view[k].state.pos[0] - self.pos[0], dz = view[k].state.pos[2] - self.pos[2];
            float d = sqrtf(dx * dx + dz * dz);
            if (d < bd && view[k].id != 0)
                bd = d, best = k;
        }
        if (!isfinite(bd))
            break;
        kz_badge b;
        if (kz_client_badge(c, view[best].id, &b) == KZ_OK)
            printf(" | %s %.1fm %s verified=%u/%s%s", b.name, bd, actor_name(b.actor_kind),
                   b.verification_level, b.method, b.acting_for ? " (acting for someone)" : "");
        view[best].id = 0;
    }
    printf("\n");
}

int main(int argc, char **argv)
{
    uint32_t n = argc > 1 ? (uint32_t)atoi(argv[1]) : 50;
    uint32_t seconds = argc > 2 ? (uint32_t)atoi(argv[2]) : 10;
    if (n < 1 || n > 2000 || seconds < 1) {
        fprintf(stderr, "usage: %s [clients 1..2000] [seconds]\n", argv[0]);
        return 2;
    }
    kz_sign_keypair backend;
    kz_box_keypair server_keys;
    if (kz_sign_keypair_generate(&backend) || kz_box_keypair_generate(&server_keys))
        return 1;

    kz_server_config sc;
    memset(&sc, 0, sizeof sc);
    kz_server_config_default(&sc);
    sc.net.verifier.protocol_id = PROTOCOL_ID;
    sc.net.verifier.server_id = SERVER_ID;
    memcpy(sc.net.verifier.backend_pk, backend.public_key, sizeof sc.net.verifier.backend_pk[0]);
    sc.net.verifier.server_keys = server_keys;
    sc.net.bind_ip = htonl(INADDR_LOOPBACK);
    sc.net.max_clients = n;
    sc.net.gate_rate_per_ip = 10000;  /* all walkers share one address */
    sc.spawn_radius = 40.0f;
    kz_server *srv = kz_server_create(&sc);
    if (!srv)
        return 1;

    kz_client **clients = calloc(n, sizeof *clients);
    kz_client_config cc;
    memset(&cc, 0, sizeof cc);
    kz_client_config_default(&cc);
    for (uint32_t i = 0; i < n; i++) {
        kz_connect_token ct;
        if (mint(&backend, &server_keys, kz_server_port(srv), i + 1, &ct) != KZ_OK)
            return 1;
        clients[i] = kz_client_create(&cc);
        if (!clients[i] || kz_client_connect(clients[i], &ct, now_ns()) != KZ_OK)
            return 1;
    }

    kz_time_ns start = now_ns(), next_print = start + KZ_NS_PER_S;
    kz_time_ns end = start + (kz_time_ns)seconds * KZ_NS_PER_S;
    uint64_t chats = 0;
    for (kz_time_ns now = start; now < end; now = now_ns()) {
        kz_server_step(srv, now);
        for (uint32_t i = 0; i < n; i++) {
            kz_client *c = clients[i];
            kz_client_update(c, now);
            kz_client_event ev;
            while (kz_client_poll_event(c, &ev) == KZ_OK)
                chats += ev.type == KZ_EV_CHAT;
            /* Walk in a circle whose phase depends on the walker. */
            double t = (double)(now - start) / 1e9;
            kz_avatar_state in;
            kz_avatar_state_rest(&in);
            float heading = (float)(t * 0.3 + i);
            in.vel[0] = 1.4f * cosf(heading);
            in.vel[2] = 1.4f * sinf(heading);
            in.yaw = heading;
            kz_client_send_input(c, &in);
            if (i == 0 && now >= next_print - KZ_NS_PER_S / 2 && now < next_print - KZ_NS_PER_S / 2 + 5 * KZ_NS_PER_MS)
                (void)kz_client_chat(c, "hello from walker-1", 19);
        }
        if (now >= next_print) {
            printf("t=%2.0fs tick %u, %u clients in the world\n", (double)(now - start) / 1e9,
                   kz_server_tick(srv), kz_server_clients(srv));
            for (uint32_t i = 0; i < n && i < 3; i++)
                print_view(i + 1, clients[i]);
            next_print += KZ_NS_PER_S;
        }
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }

    printf("summary after %us: chat lines received %llu\n", seconds, (unsigned long long)chats);
    uint32_t ok = 0;
    for (uint32_t i = 0; i < n; i++) {
        const kz_counters *k = kz_client_counters(clients[i]);
        uint32_t seen = kz_client_view(clients[i], NULL, 0);
        ok += kz_client_state(clients[i]) == KZ_CLIENT_CONNECTED;
        if (i < 10 || i + 1 == n)
            printf("  walker-%u: state %u, %u in view, %llu snapshots, %llu corrections\n", i + 1,
                   kz_client_state(clients[i]), seen,
                   (unsigned long long)kz_counters_get(k, KZ_CLIENT_C_SNAPSHOTS),
                   (unsigned long long)kz_counters_get(k, KZ_CLIENT_C_CORRECTIONS));
    }
    printf("%u of %u clients connected at the end\n", ok, n);
    for (uint32_t i = 0; i < n; i++)
        kz_client_destroy(clients[i]);
    free(clients);
    kz_server_destroy(srv);
    return ok == n ? 0 : 1;
}
