/*
 * kz-minimal-server: the smallest complete Kizuna world server, plus the
 * backend that lets players in.
 *
 *   kz-minimal-server [--port P] [--seconds S] TOKEN_FILE...
 *
 * It makes throwaway keys (the backend's signing pair, the server's box
 * pair), serves a world on 127.0.0.1:P (P = 0 picks a free port) with one
 * shared object at the origin, then does the backend's job: mints a connect
 * token per TOKEN_FILE (player-1, player-2, ...) and writes each as a client
 * token file. The files appear only once the server listens, so a script
 * may wait for them. It serves for S seconds (0, the default: until SIGINT
 * or SIGTERM) and exits 0 after a clean stop. Tokens of an earlier run are
 * refused: their keys are gone.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <kizuna/kizuna.h>

/* Servers refuse tokens of other applications (protocol id) and of other
 * servers (server id). This is kizuna-server's default protocol id. */
#define PROTOCOL_ID UINT64_C(0x4B495A554E410001)
#define SERVER_ID 1u

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

/* A whole number in [0, max], or -1. */
static long number(const char *s, long max)
{
    char *end;
    long v = strtol(s, &end, 10);
    return *s != '\0' && *end == '\0' && v >= 0 && v <= max ? v : -1;
}

/* The backend's side: sign a token letting player `id` into this server
 * and write the client token file (it holds session keys: keep it private).
 * It is written beside `path` and renamed, so no reader sees half a file. */
static int write_token(const kz_sign_keypair *backend, const kz_box_keypair *server,
                       uint16_t port, uint32_t id, const char *path)
{
    kz_token_info t = {0};
    kz_connect_token ct;
    uint8_t file[KZ_CONNECT_TOKEN_FILE_MAX_BYTES];
    size_t token_len = 0, file_len = 0;
    char tmp[4096];
    t.protocol_id = PROTOCOL_ID;
    t.server_id = SERVER_ID;
    t.create_time = (uint64_t)time(NULL);
    t.expire_time = t.create_time + 3600;
    t.timeout_seconds = 10;
    t.n_addresses = 1;
    t.addresses[0] = (kz_address){.family = KZ_ADDR_IPV4, .ip = {127, 0, 0, 1}, .port = port};
    t.client_id = t.avatar_id = id;
    snprintf(t.name, sizeof t.name, "player-%u", (unsigned)id);
    strcpy(t.claims.method, "none");  /* KZ_VERIFY_NONE, KZ_ACTOR_HUMAN: both 0 */
    if (kz_token_mint(&t, backend->secret_key, server->public_key, &ct.keys, ct.token,
                      sizeof ct.token, &token_len) != KZ_OK)
        return -1;
    ct.token_len = (uint16_t)token_len;
    int ok = kz_connect_token_encode(&ct, file, sizeof file, &file_len) == KZ_OK &&
             (size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) < sizeof tmp;
    int fd = ok ? open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600) : -1;
    ok = fd >= 0 && write(fd, file, file_len) == (ssize_t)file_len;
    ok = fd >= 0 && close(fd) == 0 && ok && rename(tmp, path) == 0;
    return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    long port = 0, seconds = 0;
    int first = 1;
    for (; first + 1 < argc && strncmp(argv[first], "--", 2) == 0; first += 2) {
        if (strcmp(argv[first], "--port") == 0)
            port = number(argv[first + 1], 65535);
        else if (strcmp(argv[first], "--seconds") == 0)
            seconds = number(argv[first + 1], 86400);
        else
            port = -1;  /* unknown option: show the usage */
    }
    if (first >= argc || argv[first][0] == '-' || port < 0 || seconds < 0) {
        fprintf(stderr, "usage: %s [--port P] [--seconds S] TOKEN_FILE...\n", argv[0]);
        return 2;
    }
    kz_sign_keypair backend;
    kz_box_keypair keys;
    if (kz_sign_keypair_generate(&backend) != KZ_OK || kz_box_keypair_generate(&keys) != KZ_OK)
        return 1;

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    kz_server_config sc = {0};
    kz_server_config_default(&sc);
    sc.net.verifier.protocol_id = PROTOCOL_ID;
    sc.net.verifier.server_id = SERVER_ID;
    memcpy(sc.net.verifier.backend_pk[0], backend.public_key, sizeof backend.public_key);
    sc.net.verifier.server_keys = keys;
    sc.net.bind_ip = htonl(INADDR_LOOPBACK);
    sc.net.port = (uint16_t)port;
    sc.net.max_clients = 64;
    sc.net.threaded = 1;     /* the transport runs its own I/O thread */
    sc.spawn_radius = 5.0f;  /* everyone starts within sight of the object */
    kz_server *srv = kz_server_create(&sc);
    const float origin[3] = {0.0f, 0.0f, 0.0f};
    uint32_t object = 0;
    if (!srv || kz_server_object_add(srv, origin, NULL, &object) != KZ_OK) {
        fprintf(stderr, "minimal-server: cannot start the world (logged above)\n");
        kz_server_destroy(srv);
        return 1;
    }
    uint16_t bound = kz_server_port(srv);
    printf("minimal-server: listening on 127.0.0.1:%u, object #%u at the origin\n",
           (unsigned)bound, (unsigned)object);
    for (int i = first; i < argc; i++) {
        if (write_token(&backend, &keys, bound, (uint32_t)(i - first + 1), argv[i]) != 0) {
            fprintf(stderr, "minimal-server: cannot write token file %s\n", argv[i]);
            kz_server_destroy(srv);
            return 1;
        }
        printf("minimal-server: wrote %s for player-%d\n", argv[i], i - first + 1);
    }
    fflush(stdout);

    kz_clock clock = kz_clock_system();
    kz_time_ns now = kz_clock_now(&clock), end = now + (kz_time_ns)seconds * KZ_NS_PER_S;
    uint32_t players = 0, peak = 0;
    for (; !stop && (seconds == 0 || now < end); now = kz_clock_now(&clock)) {
        kz_server_step(srv, now);  /* runs every tick due at `now` */
        if (kz_server_clients(srv) != players) {
            players = kz_server_clients(srv);
            peak = players > peak ? players : peak;
            printf("minimal-server: %u player(s) in the world\n", (unsigned)players);
            fflush(stdout);
        }
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    /* A clean stop: players are told and disconnected (up to 2 s' grace). */
    kz_server_shutdown(srv, NULL);
    for (end = now + 2 * KZ_NS_PER_S; kz_server_clients(srv) > 0 && now < end;
         now = kz_clock_now(&clock)) {
        kz_server_step(srv, now);
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    printf("minimal-server: stopped after %u ticks, at most %u player(s) at once\n",
           (unsigned)kz_server_tick(srv), (unsigned)peak);
    kz_server_destroy(srv);
    return 0;
}
