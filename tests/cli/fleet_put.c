/*
 * kz-fleet-put: writes any bytes under any key of the fleet directory's
 * bucket, as a hostile or broken member on the bus could, so that the
 * tests can check what readers make of it.
 *
 *   kz-fleet-put URL KEY FILE [KEY FILE]...
 *
 * Each FILE's bytes (at most 64 KiB) become the value of the KEY before
 * it, all over one connection, so that a batch is stored well within the
 * bucket's time to live. Exit 0 when the bucket stored every one, 1 when
 * it refused one (the reason on stderr), 2 on a usage error. The bucket
 * must exist (a member creates it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

#define KZ_FLEET_PUT_MAX (64 * 1024)

static int kz_fleet_read(const char *path, char *data, int *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        return -1;
    }
    *len = (int)fread(data, 1, KZ_FLEET_PUT_MAX, f);
    fclose(f);
    return 0;
}

int main(int argc, char **argv)
{
    static char data[KZ_FLEET_PUT_MAX];
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    kvStore *kv = NULL;
    if (argc < 4 || argc % 2 != 0) {
        fputs("usage: kz-fleet-put URL KEY FILE [KEY FILE]...\n", stderr);
        return 2;
    }
    natsStatus s = natsConnection_ConnectTo(&nc, argv[1]);
    if (s == NATS_OK)
        s = natsConnection_JetStream(&js, nc, NULL);
    if (s == NATS_OK)
        s = js_KeyValue(&kv, js, "kizuna_fleet");
    int rc = s == NATS_OK ? 0 : 1;
    for (int i = 2; rc == 0 && i + 1 < argc; i += 2) {
        int len = 0;
        if (kz_fleet_read(argv[i + 1], data, &len) != 0) {
            rc = 2;
            break;
        }
        s = kvStore_Put(NULL, kv, argv[i], data, len);
        rc = s == NATS_OK ? 0 : 1;
    }
    if (s != NATS_OK)
        fprintf(stderr, "kz-fleet-put: %s: %s\n", natsStatus_GetText(s), nats_GetLastError(NULL));
    kvStore_Destroy(kv);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    nats_Close();
    return rc;
}
