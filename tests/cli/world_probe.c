/*
 * kz-world-probe TOKEN_FILE [--walk-to X,Z] [--seconds S]: a real world
 * client for the kizuna-server tests. It connects with the token file,
 * walks toward (X, Z) at 3 m/s if asked, and prints one line per event:
 *   connected entity=N
 *   pos x=.. z=..                        every half second
 *   reached                              once, within 1 m of the target
 *   disconnected reason=R text="..."     when the server ends the session
 * Exit 0 when it was connected (whatever ended it), 1 when it never was.
 * Output is flushed line by line so a script can watch it live.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kizuna/client.h>

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

/* Steers toward the target, slowing down for the last meter. */
static void steer(kz_client *c, const float target[2])
{
    kz_avatar_state self, in;
    kz_avatar_state_rest(&in);
    if (kz_client_self(c, &self) == KZ_OK) {
        float dx = target[0] - self.pos[0], dz = target[1] - self.pos[2];
        float d = sqrtf(dx * dx + dz * dz);
        float speed = d > 1.0f ? 3.0f : 3.0f * d;
        if (d > 0.01f) {
            in.vel[0] = speed * dx / d;
            in.vel[2] = speed * dz / d;
            in.yaw = atan2f(dz, dx);
        }
    }
    kz_client_send_input(c, &in);
}

int main(int argc, char **argv)
{
    float target[2] = {0, 0};
    int walk = 0;
    double seconds = 10;
    if (argc < 2) {
        fprintf(stderr, "usage: kz-world-probe TOKEN_FILE [--walk-to X,Z] [--seconds S]\n");
        return 2;
    }
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--walk-to") == 0 &&
            sscanf(argv[i + 1], "%f,%f", &target[0], &target[1]) == 2)
            walk = 1;
        else if (strcmp(argv[i], "--seconds") == 0)
            seconds = atof(argv[i + 1]);
        else {
            fprintf(stderr, "probe: bad option %s\n", argv[i]);
            return 2;
        }
    }
    kz_connect_token ct;
    if (load_token(argv[1], &ct) != 0) {
        fprintf(stderr, "probe: %s is not a client token file\n", argv[1]);
        return 1;
    }
    kz_client_config cfg;
    memset(&cfg, 0, sizeof cfg);
    kz_client_config_default(&cfg);
    kz_client *c = kz_client_create(&cfg);
    kz_time_ns start = now_ns(), next_pos = start;
    if (c == NULL || kz_client_connect(c, &ct, start) != KZ_OK)
        return 1;
    int was_connected = 0, reached = 0;
    struct timespec pause = {0, 2000000};
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (kz_time_ns now = start; now - start < (kz_time_ns)(seconds * 1e9); now = now_ns()) {
        kz_client_update(c, now);
        kz_client_event ev;
        while (kz_client_poll_event(c, &ev) == KZ_OK) {
            if (ev.type == KZ_EV_DISCONNECTED) {
                printf("disconnected reason=%u text=\"%.*s\"\n", ev.code, (int)ev.len,
                       (const char *)ev.data);
                kz_client_destroy(c);
                return was_connected ? 0 : 1;
            }
        }
        uint32_t state = kz_client_state(c);
        if (state == KZ_CLIENT_CONNECTED && !was_connected) {
            was_connected = 1;
            printf("connected entity=%u\n", kz_client_self_id(c));
        }
        if (state == KZ_CLIENT_FAILED || state == KZ_CLIENT_DISCONNECTED) {
            printf("%s reason=%u\n", state == KZ_CLIENT_FAILED ? "failed" : "disconnected",
                   kz_client_reason(c));
            break;
        }
        if (state == KZ_CLIENT_CONNECTED) {
            kz_avatar_state self;
            if (walk)
                steer(c, target);
            if (kz_client_self(c, &self) == KZ_OK) {
                float dx = target[0] - self.pos[0], dz = target[1] - self.pos[2];
                if (walk && !reached && dx * dx + dz * dz < 1.0f) {
                    reached = 1;
                    printf("reached\n");
                }
                if (now >= next_pos) {
                    printf("pos x=%.2f z=%.2f\n", self.pos[0], self.pos[2]);
                    next_pos = now + KZ_NS_PER_S / 2;
                }
            }
        }
        nanosleep(&pause, NULL);
    }
    kz_client_destroy(c);
    return was_connected ? 0 : 1;
}
