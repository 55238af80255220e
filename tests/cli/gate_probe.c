/*
 * kz-gate-probe TOKEN_FILE HOST:PORT: completes the gate handshake (request,
 * challenge, proven request, accept) and stops there, without an ENet
 * connect, leaving the server holding a granted slot for a client that
 * never arrives. Prints "accepted slot N" and exits 0, or explains and
 * exits 1. Used by drain_pending.sh.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <kizuna/token.h>

#include "net/gate.h"

static int read_token(const char *path, kz_connect_token *ct)
{
    uint8_t buf[KZ_CONNECT_TOKEN_FILE_MAX_BYTES + 1];
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f)
        fclose(f);
    return kz_connect_token_decode(buf, n, ct);
}

int main(int argc, char **argv)
{
    kz_connect_token ct;
    kz_address to;
    if (argc != 3 || read_token(argv[1], &ct) != KZ_OK || kz_address_parse(argv[2], &to) != KZ_OK ||
        to.family != KZ_ADDR_IPV4) {
        fprintf(stderr, "usage: kz-gate-probe TOKEN_FILE IPV4:PORT\n");
        return 1;
    }
    kz__handshake hs;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct timeval tv = {0, 200000};
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(to.port)};
    memcpy(&sa.sin_addr, to.ip, 4);
    if (fd < 0 || kz__handshake_init(&hs, &ct) != KZ_OK ||
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0)
        return 1;
    for (int attempt = 0; attempt < 25 && hs.state == KZ_HS_REQUESTING; attempt++) {
        uint8_t req[KZ_GATE_REQUEST_BYTES], reply[KZ_GATE_REQUEST_BYTES];
        size_t n = kz__handshake_request(&hs, req);
        if (sendto(fd, req, n, 0, (struct sockaddr *)&sa, sizeof sa) < 0)
            return 1;
        ssize_t got = recv(fd, reply, sizeof reply, 0);
        if (got > 0)
            (void)kz__handshake_receive(&hs, reply, (size_t)got);
    }
    close(fd);
    if (hs.state != KZ_HS_ACCEPTED) {
        printf("not accepted: state %u deny %u\n", hs.state, hs.deny_reason);
        return 1;
    }
    printf("accepted slot %u\n", hs.slot);
    return 0;
}
