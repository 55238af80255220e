/*
 * kz-fleet-bots [--seconds S] [--silence-ms MS] TOKEN_FILE...: world clients for the fleet
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
 *   left ID ID ...             every "bot-<id>" some bot saw leave its view
 *   failover token=FILE self=E gap_ms=G resume_ms=R
 *                              one line per resume: E the own entity after
 *                              it, G the silence as the library measured it
 *                              (last datagram before the break to the first
 *                              after it), R this process's monotonic time
 *                              from KZ_EV_RECONNECTING to KZ_EV_RESUMED
 *   resumed=N fresh=N self_changed=N failover_max_gap_ms=G failover_max_resume_ms=R
 *                              N resumes, connects after the first (a new
 *                              avatar), resumes that changed the own entity
 * With a token naming several servers (token mint --server A --server B
 * ...), a bot whose server dies fails over to the next address by itself.
 * --silence-ms sets the client's resume_silence_ms (0: the library's).
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
    uint32_t self;                /* own entity at the first CONNECTED */
    uint32_t resumed, fresh, self_changed;
    kz_time_ns broke;             /* when KZ_EV_RECONNECTING came, 0 if none pending */
    uint32_t n_names;             /* entity -> "bot-<id>" number, for LEAVE */
    uint32_t name_ent[MAX_BOTS * 4];
    uint64_t name_id[MAX_BOTS * 4];
    uint32_t n_seen;              /* distinct entities that entered its view */
    uint32_t seen[MAX_BOTS * 4];  /* their entity ids */
} bot;

static bot bots[MAX_BOTS];
static uint64_t seen_ids[MAX_IDS];
static uint32_t n_seen_ids;
static uint64_t left_ids[MAX_IDS];
static uint32_t n_left_ids;
static uint32_t max_gap_ms, max_resume_ms;
static const char *const *token_names;

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

static uint64_t bot_number(const char *name);
static void add_id(uint64_t *ids, uint32_t *count, uint64_t n);

/* Records that `b` saw entity `id` named `name`. */
static void saw(bot *b, uint32_t id, const char *name)
{
    uint32_t k = 0;
    while (k < b->n_seen && b->seen[k] != id)
        k++;
    if (k == b->n_seen && b->n_seen < sizeof b->seen / sizeof b->seen[0])
        b->seen[b->n_seen++] = id;
    uint64_t n = bot_number(name);
    if (n != 0)
        add_id(seen_ids, &n_seen_ids, n);
}

/* Adds `n` to the set `ids` of `*count` (bounded by MAX_IDS). */
static void add_id(uint64_t *ids, uint32_t *count, uint64_t n)
{
    for (uint32_t k = 0; k < *count; k++)
        if (ids[k] == n)
            return;
    if (*count < MAX_IDS)
        ids[(*count)++] = n;
}

/* The "bot-<id>" number of a display name, 0 when it is not one. */
static uint64_t bot_number(const char *name)
{
    char *end;
    if (strncmp(name, "bot-", 4) != 0)
        return 0;
    unsigned long long n = strtoull(name + 4, &end, 10);
    return *end != '\0' || end == name + 4 ? 0 : (uint64_t)n;
}

static void events(bot *b, uint32_t index, kz_time_ns now)
{
    kz_client_event ev;
    while (kz_client_poll_event(b->c, &ev) == KZ_OK) {
        if (ev.type == KZ_EV_ENTER) {
            saw(b, ev.entity, ev.badge.name);
            uint64_t num = bot_number(ev.badge.name);
            uint32_t k = 0;
            while (k < b->n_names && b->name_ent[k] != ev.entity)
                k++;
            if (k == b->n_names && k < sizeof b->name_ent / sizeof b->name_ent[0])
                b->n_names++;
            if (k < b->n_names) {
                b->name_ent[k] = ev.entity;
                b->name_id[k] = num;
            }
        } else if (ev.type == KZ_EV_LEAVE) {
            for (uint32_t k = 0; k < b->n_names; k++)
                if (b->name_ent[k] == ev.entity && b->name_id[k] != 0)
                    add_id(left_ids, &n_left_ids, b->name_id[k]);
        } else if (ev.type == KZ_EV_CONNECTED) {
            /* A CONNECTED after the first is a failover that found no
             * avatar to take up: a new one, the old one gone. */
            if (b->self == 0)
                b->self = ev.entity;
            else
                b->fresh++;
            b->broke = 0;
        } else if (ev.type == KZ_EV_RESUMED) {
            b->resumed++;
            if (ev.entity != b->self || kz_client_self_id(b->c) != b->self)
                b->self_changed++;
            uint32_t resume_ms = b->broke ? (uint32_t)((now - b->broke) / 1000000) : 0;
            b->broke = 0;
            if (ev.code > max_gap_ms)
                max_gap_ms = ev.code;
            if (resume_ms > max_resume_ms)
                max_resume_ms = resume_ms;
            printf("failover token=%s self=%u gap_ms=%u resume_ms=%u\n", token_names[index],
                   ev.entity, ev.code, resume_ms);
        } else if (ev.type == KZ_EV_DISCONNECTED && !b->lost) {
            b->lost = 1;
            b->reason = ev.code;
        } else if (ev.type == KZ_EV_RECONNECTING) {
            b->reconnects++;
            b->broke = now;
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
    long silence_ms = 0;
    int first = 1;
    while (argc > first + 1 && strncmp(argv[first], "--", 2) == 0) {
        if (strcmp(argv[first], "--seconds") == 0)
            seconds = atof(argv[first + 1]);
        else if (strcmp(argv[first], "--silence-ms") == 0)
            silence_ms = atol(argv[first + 1]);
        else
            break;
        first += 2;
    }
    uint32_t n = (uint32_t)(argc - first);
    if (n == 0 || n > MAX_BOTS || seconds <= 0 || silence_ms < 0 || silence_ms > 60000) {
        fprintf(stderr, "usage: kz-fleet-bots [--seconds S] [--silence-ms MS] TOKEN_FILE... (1..%u files)\n",
                MAX_BOTS);
        return 2;
    }
    token_names = (const char *const *)(argv + first);
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
        cfg.net.resume_silence_ms = (uint32_t)silence_ms;
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
            events(b, i, now);
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
    uint32_t resumed = 0, fresh = 0, self_changed = 0;
    for (uint32_t i = 0; i < n; i++) {
        resumed += bots[i].resumed;
        fresh += bots[i].fresh;
        self_changed += bots[i].self_changed;
    }
    printf("resumed=%u fresh=%u self_changed=%u failover_max_gap_ms=%u failover_max_resume_ms=%u\n",
           resumed, fresh, self_changed, max_gap_ms, max_resume_ms);
    qsort(left_ids, n_left_ids, sizeof left_ids[0], cmp_u64);
    printf("left");
    for (uint32_t k = 0; k < n_left_ids; k++)
        printf(" %llu", (unsigned long long)left_ids[k]);
    printf("\n");
    qsort(seen_ids, n_seen_ids, sizeof seen_ids[0], cmp_u64);
    printf("seen");
    for (uint32_t k = 0; k < n_seen_ids; k++)
        printf(" %llu", (unsigned long long)seen_ids[k]);
    printf("\n");
    for (uint32_t i = 0; i < n; i++)
        kz_client_destroy(bots[i].c);
    return connected == n && lost == 0 ? 0 : 1;
}
