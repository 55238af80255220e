/*
 * kz-fleet-bots --seconds S TOKEN_FILE...: world clients for the fleet
 * test (fleet_world.sh), one per token file, connecting 20 a second and
 * standing at their spawn points for S seconds. It reports what a crowd
 * spread over several edges must show and kizuna-bench cannot: which
 * other avatars the bots saw, by the display names their tokens carry
 * ("bot-<id>", as kizuna-bench names its bots), so that a script can tell
 * avatars served by other edges. Printed at the end:
 *   bots=N connected=N stayed=N disconnects=N reconnects=N
 *   min_seen=K                 fewest other avatars one bot saw
 *   seen ID ID ...             every "bot-<id>" any bot saw, ascending
 *   lost token=FILE reason=R   one line per bot that was disconnected
 * Exit 0 when every bot connected and none was disconnected, 1 otherwise,
 * 2 on bad arguments.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kizuna/client.h>

#define MAX_BOTS 256u
#define MAX_IDS 4096u

typedef struct bot {
    kz_client *c;
    int started, connected, lost;
    uint32_t reason;              /* why it was disconnected */
    uint32_t reconnects;          /* resumes it went through */
    uint32_t n_seen;              /* distinct entities that entered its view */
    uint32_t seen[MAX_BOTS * 4];  /* their entity ids */
} bot;

static bot bots[MAX_BOTS];
static uint64_t seen_ids[MAX_IDS];
static uint32_t n_seen_ids;

static kz_time_ns now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (kz_time_ns)ts.tv_sec * KZ_NS_PER_S + (kz_time_ns)ts.tv_nsec;
}

static int load_token(const char *path, kz_connect_token *ct)
{
    uint8_t buf[KZ_CONNECT_TOKEN_FILE_MAX_BYTES + 1];
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f)
        fclose(f);
    return kz_connect_token_decode(buf, n, ct) == KZ_OK ? 0 : -1;
}

/* Records that `b` saw entity `id` named `name`. */
static void saw(bot *b, uint32_t id, const char *name)
{
    uint32_t k = 0;
    while (k < b->n_seen && b->seen[k] != id)
        k++;
    if (k == b->n_seen && b->n_seen < sizeof b->seen / sizeof b->seen[0])
        b->seen[b->n_seen++] = id;
    char *end;
    if (strncmp(name, "bot-", 4) != 0)
        return;
    unsigned long long n = strtoull(name + 4, &end, 10);
    if (*end != '\0' || end == name + 4)
        return;
    for (k = 0; k < n_seen_ids; k++)
        if (seen_ids[k] == n)
            return;
    if (n_seen_ids < MAX_IDS)
        seen_ids[n_seen_ids++] = n;
}

static void events(bot *b)
{
    kz_client_event ev;
    while (kz_client_poll_event(b->c, &ev) == KZ_OK) {
        if (ev.type == KZ_EV_ENTER) {
            saw(b, ev.entity, ev.badge.name);
        } else if (ev.type == KZ_EV_DISCONNECTED && !b->lost) {
            b->lost = 1;
            b->reason = ev.code;
        } else if (ev.type == KZ_EV_RECONNECTING) {
            b->reconnects++;
        }
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    double seconds = 10;
    int first = 1;
    if (argc > 2 && strcmp(argv[1], "--seconds") == 0) {
        seconds = atof(argv[2]);
        first = 3;
    }
    uint32_t n = (uint32_t)(argc - first);
    if (n == 0 || n > MAX_BOTS || seconds <= 0) {
        fprintf(stderr, "usage: kz-fleet-bots --seconds S TOKEN_FILE... (1..%u files)\n", MAX_BOTS);
        return 2;
    }
    kz_connect_token tokens[MAX_BOTS];
    for (uint32_t i = 0; i < n; i++) {
        if (load_token(argv[first + (int)i], &tokens[i]) != 0) {
            fprintf(stderr, "kz-fleet-bots: %s is not a client token file\n", argv[first + (int)i]);
            return 2;
        }
        kz_client_config cfg;
        memset(&cfg, 0, sizeof cfg);
        kz_client_config_default(&cfg);
        cfg.net.log.level = KZ_LOG_ERROR;
        bots[i].c = kz_client_create(&cfg);
        if (bots[i].c == NULL)
            return 1;
    }
    kz_avatar_state rest;
    kz_avatar_state_rest(&rest);
    kz_time_ns start = now_ns(), next_input = start;
    struct timespec pause = {0, 2000000};
    for (kz_time_ns now = start; now - start < (kz_time_ns)(seconds * 1e9); now = now_ns()) {
        /* 20 connects a second: well inside the gate's budget per address. */
        uint32_t due = (uint32_t)((now - start) / (KZ_NS_PER_S / 20)) + 1u;
        int input = now >= next_input;
        if (input)
            next_input += KZ_NS_PER_S / 30;
        for (uint32_t i = 0; i < n; i++) {
            bot *b = &bots[i];
            if (!b->started && i < due) {
                b->started = 1;
                if (kz_client_connect(b->c, &tokens[i], now) != KZ_OK)
                    b->lost = 1;
            }
            if (!b->started || b->lost)
                continue;
            kz_client_update(b->c, now);
            events(b);
            uint32_t st = kz_client_state(b->c);
            if (st == KZ_CLIENT_CONNECTED)
                b->connected = 1;
            if ((st == KZ_CLIENT_FAILED || st == KZ_CLIENT_DISCONNECTED) && !b->lost) {
                b->lost = 1;
                b->reason = kz_client_reason(b->c);
            }
            if (input && st == KZ_CLIENT_CONNECTED)
                (void)kz_client_send_input(b->c, &rest);
        }
        nanosleep(&pause, NULL);
    }
    uint32_t connected = 0, stayed = 0, lost = 0, reconnects = 0, min_seen = UINT32_MAX;
    for (uint32_t i = 0; i < n; i++) {
        reconnects += bots[i].reconnects;
        connected += (uint32_t)bots[i].connected;
        stayed += (uint32_t)(bots[i].connected && !bots[i].lost);
        lost += (uint32_t)bots[i].lost;
        if (bots[i].n_seen < min_seen)
            min_seen = bots[i].n_seen;
        if (bots[i].lost)
            printf("lost token=%s reason=%u\n", argv[first + (int)i], bots[i].reason);
    }
    printf("bots=%u connected=%u stayed=%u disconnects=%u reconnects=%u\n", n, connected, stayed,
           lost, reconnects);
    printf("min_seen=%u\n", min_seen);
    qsort(seen_ids, n_seen_ids, sizeof seen_ids[0], cmp_u64);
    printf("seen");
    for (uint32_t k = 0; k < n_seen_ids; k++)
        printf(" %llu", (unsigned long long)seen_ids[k]);
    printf("\n");
    for (uint32_t i = 0; i < n; i++)
        kz_client_destroy(bots[i].c);
    return connected == n && lost == 0 ? 0 : 1;
}
