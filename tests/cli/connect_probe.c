/*
 * kz-connect-probe TOKEN_FILE [TIMEOUT_MS]: connects to a server with a
 * client token file, sends one sealed message on each channel, and prints
 * "connected slot N". Exit 0 when connected, 1 otherwise (with the client's
 * state and reason). Used by the run_server test.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <kizuna/transport.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: kz-connect-probe TOKEN_FILE [TIMEOUT_MS]\n");
        return 2;
    }
    uint8_t buf[KZ_CONNECT_TOKEN_FILE_MAX_BYTES + 1];
    FILE *f = fopen(argv[1], "rb");
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f)
        fclose(f);
    kz_connect_token ct;
    if (kz_connect_token_decode(buf, n, &ct) != KZ_OK) {
        fprintf(stderr, "probe: %s is not a client token file\n", argv[1]);
        return 1;
    }
    kz_netclient_config cfg = {0};
    cfg.connect_timeout_ms = argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 10) : 5000;
    kz_netclient *c = kz_netclient_create(&cfg, &ct);
    if (c == NULL)
        return 1;
    kz_clock clock = kz_clock_system();
    struct timespec pause = {0, 1000000};
    kz_time_ns end = kz_clock_now(&clock) + (kz_time_ns)(cfg.connect_timeout_ms + 1000) * KZ_NS_PER_MS;
    while (kz_netclient_state(c) < KZ_NETCLIENT_CONNECTED && kz_clock_now(&clock) < end) {
        kz_netclient_update(c, kz_clock_now(&clock));
        nanosleep(&pause, NULL);
    }
    int ok = kz_netclient_state(c) == KZ_NETCLIENT_CONNECTED;
    if (ok) {
        for (uint8_t ch = 0; ch < KZ_CHANNEL_COUNT; ch++)
            ok &= kz_netclient_send(c, ch, 1, "probe", 5) == KZ_OK;
        kz_netclient_update(c, kz_clock_now(&clock));
        printf("connected slot %u\n", kz_netclient_slot(c));
    } else {
        printf("not connected: state %u reason %u\n", kz_netclient_state(c), kz_netclient_reason(c));
    }
    kz_netclient_destroy(c);
    return ok ? 0 : 1;
}
