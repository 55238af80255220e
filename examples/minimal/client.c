/*
 * kz-minimal-client: the smallest complete Kizuna client, the frame loop
 * an engine runs.
 *
 *   kz-minimal-client TOKEN_FILE [--seconds S]
 *
 * Loads a client token file (from kz-minimal-server, or from
 * `kizuna-server token mint`), connects, walks in a circle for S seconds
 * (default 5) once in the world, and prints what it sees: entities entering
 * with their identity badges, leaving, chat. Exits 0 when it is still
 * connected at the end, received snapshots and saw at least one entity;
 * 1 otherwise (with the reason), 2 for a bad command line or token file.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kizuna/kizuna.h>

/* Reads and decodes a client token file. 0, or -1 when it cannot be read
 * or is not a well-formed token file. */
static int read_token(const char *path, kz_connect_token *ct)
{
    uint8_t buf[KZ_CONNECT_TOKEN_FILE_MAX_BYTES + 1];
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return n < sizeof buf && kz_connect_token_decode(buf, n, ct) == KZ_OK ? 0 : -1;
}

/* Prints one event; counts entities that came into view. */
static void show(const kz_client_event *ev, uint32_t *entered)
{
    static const char *const actor[] = {"human", "agent", "bot"};
    static const char *const level[] = {"none", "basic", "strong"};
    const kz_badge *b = &ev->badge;
    switch (ev->type) {
    case KZ_EV_CONNECTED:
        printf("minimal-client: in the world as entity #%u\n", (unsigned)ev->entity);
        break;
    case KZ_EV_ENTER:
        (*entered)++;
        if (b->name[0] == '\0')  /* only avatars carry a badge */
            printf("  enter #%u: shared object\n", (unsigned)ev->entity);
        else
            printf("  enter #%u: %s, %s, verified %s (%s)\n", (unsigned)ev->entity, b->name,
                   b->actor_kind <= KZ_ACTOR_MAX ? actor[b->actor_kind] : "?",
                   b->verification_level <= KZ_VERIFY_MAX ? level[b->verification_level] : "?",
                   b->method);
        break;
    case KZ_EV_LEAVE:
        printf("  leave #%u\n", (unsigned)ev->entity);
        break;
    case KZ_EV_CHAT:
        printf("  #%u says: %.*s\n", (unsigned)ev->entity, (int)ev->len, (const char *)ev->data);
        break;
    case KZ_EV_DISCONNECTED:
        printf("minimal-client: session ended, reason %u %.*s\n", (unsigned)ev->code,
               (int)ev->len, ev->data ? (const char *)ev->data : "");
        break;
    }
}

int main(int argc, char **argv)
{
    long seconds = 5;
    if (argc == 4 && strcmp(argv[2], "--seconds") == 0)
        seconds = strtol(argv[3], NULL, 10);
    else if (argc != 2)
        seconds = 0;  /* shows the usage */
    if (seconds < 1 || seconds > 86400) {
        fprintf(stderr, "usage: %s TOKEN_FILE [--seconds S]\n", argv[0]);
        return 2;
    }
    kz_connect_token ct;
    if (read_token(argv[1], &ct) != 0) {
        fprintf(stderr, "minimal-client: %s: cannot read it or not a client token file\n", argv[1]);
        return 2;
    }
    kz_client_config cc = {0};
    kz_client_config_default(&cc);
    kz_client *c = kz_client_create(&cc);
    kz_clock clock = kz_clock_system();
    kz_time_ns now = kz_clock_now(&clock), joined = 0;
    int rc = c ? kz_client_connect(c, &ct, now) : KZ_ENOMEM;
    if (rc != KZ_OK) {
        fprintf(stderr, "minimal-client: cannot connect: %s\n", kz_strerror(rc));
        kz_client_destroy(c);
        return 1;
    }

    uint32_t state, entered = 0;
    kz_client_event ev;
    for (;; now = kz_clock_now(&clock)) {
        state = kz_client_update(c, now);  /* handshake, network, input ticks */
        while (kz_client_poll_event(c, &ev) == KZ_OK)
            show(&ev, &entered);
        if (state == KZ_CLIENT_FAILED || state == KZ_CLIENT_DISCONNECTED)
            break;
        if (state == KZ_CLIENT_CONNECTED) {
            joined = joined ? joined : now;
            if (now - joined >= (kz_time_ns)seconds * KZ_NS_PER_S)
                break;
            /* The intent: walk at 1.5 m/s, turning slowly. The server moves the
             * avatar; the client predicts it meanwhile. */
            float heading = (float)((double)(now - joined) / 1e9 * 0.5);
            kz_avatar_state intent;
            kz_avatar_state_rest(&intent);
            intent.vel[0] = 1.5f * cosf(heading);
            intent.vel[2] = 1.5f * sinf(heading);
            intent.yaw = heading;
            kz_client_send_input(c, &intent);
        }
        nanosleep(&(struct timespec){0, 5000000}, NULL);  /* a 200 Hz "frame" */
    }

    uint64_t snapshots = kz_counters_get(kz_client_counters(c), KZ_CLIENT_C_SNAPSHOTS);
    kz_avatar_state me;
    int ok = state == KZ_CLIENT_CONNECTED && snapshots > 0 && entered > 0 &&
             kz_client_self(c, &me) == KZ_OK;
    if (ok)
        printf("minimal-client: ok: %ld s in the world, %llu snapshots, %u entities seen, "
               "now at (%.1f, %.1f)\n", seconds, (unsigned long long)snapshots,
               (unsigned)entered, me.pos[0], me.pos[2]);
    else
        fprintf(stderr, "minimal-client: FAILED: %s (reason %u), %llu snapshots, %u entities seen\n",
                state == KZ_CLIENT_FAILED ? "could not connect"
                : state == KZ_CLIENT_DISCONNECTED ? "the session ended early"
                                                  : "connected but saw nothing",
                (unsigned)kz_client_reason(c), (unsigned long long)snapshots, (unsigned)entered);
    kz_client_destroy(c);
    return ok ? 0 : 1;
}
