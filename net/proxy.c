/*
 * The impairing relay. One listening socket faces the clients; each client
 * gets its own socket facing the server. Impairment tags carry the client
 * index, so one kz_impair per direction serves every client.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <kizuna/proxy.h>

#define KZ__PROXY_MAX_DATAGRAM 1500u

typedef struct kz__proxy_client {
    struct sockaddr_in addr;  /* the client as the relay sees it */
    int fd;                   /* socket facing the server */
} kz__proxy_client;

struct kz_proxy {
    kz_proxy_config cfg;
    int listen_fd;
    uint16_t port;
    struct sockaddr_in server;
    kz__proxy_client *clients;
    uint32_t n_clients;
    uint64_t refused;
    kz_impair *up, *down;
    uint8_t buf[KZ__PROXY_MAX_DATAGRAM];
};

static int kz__udp_socket(uint32_t ip, uint16_t port, uint16_t *bound_port)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = ip ? ip : htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        close(fd);
        return -1;
    }
    if (bound_port)
        *bound_port = ntohs(a.sin_port);
    return fd;
}

kz_proxy *kz_proxy_create(const kz_proxy_config *cfg)
{
    kz_proxy_config c = *cfg;
    kz_allocator_resolve(&c.alloc);
    if (c.server_port == 0 || c.max_clients == 0 || c.max_clients > 65536)
        return NULL;
    kz_proxy *p = kz_calloc(&c.alloc, sizeof *p, 16);
    if (p == NULL)
        return NULL;
    p->cfg = c;
    p->listen_fd = -1;
    p->server = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(c.server_port)};
    p->server.sin_addr.s_addr = c.server_ip ? c.server_ip : htonl(INADDR_LOOPBACK);
    p->clients = kz_calloc(&c.alloc, (size_t)c.max_clients * sizeof *p->clients, 16);
    p->up = kz_impair_create(&c.up, c.seed, &c.alloc);
    p->down = kz_impair_create(&c.down, c.seed ^ 0x9e3779b97f4a7c15ull, &c.alloc);
    p->listen_fd = kz__udp_socket(c.listen_ip, c.listen_port, &p->port);
    if (!p->clients || !p->up || !p->down || p->listen_fd < 0) {
        kz_proxy_destroy(p);
        return NULL;
    }
    return p;
}

void kz_proxy_destroy(kz_proxy *p)
{
    if (p == NULL)
        return;
    for (uint32_t i = 0; i < p->n_clients; i++)
        close(p->clients[i].fd);
    if (p->listen_fd >= 0)
        close(p->listen_fd);
    kz_impair_destroy(p->up);
    kz_impair_destroy(p->down);
    kz_allocator a = p->cfg.alloc;
    kz_free(&a, p->clients, (size_t)p->cfg.max_clients * sizeof *p->clients);
    kz_free(&a, p, sizeof *p);
}

uint16_t kz_proxy_port(const kz_proxy *p)
{
    return p->port;
}

uint32_t kz_proxy_clients(const kz_proxy *p)
{
    return p->n_clients;
}

void kz_proxy_stats(const kz_proxy *p, kz_impair_stats *up, kz_impair_stats *down)
{
    kz_impair_get_stats(p->up, up);
    kz_impair_get_stats(p->down, down);
}

/* Index of the client at `from`, opening its server-facing socket the
 * first time; -1 when the table is full. A linear scan: the relay serves
 * tests and benches of at most a few thousand clients. */
static int32_t kz__proxy_client_index(kz_proxy *p, const struct sockaddr_in *from)
{
    for (uint32_t i = 0; i < p->n_clients; i++)
        if (p->clients[i].addr.sin_addr.s_addr == from->sin_addr.s_addr &&
            p->clients[i].addr.sin_port == from->sin_port)
            return (int32_t)i;
    if (p->n_clients == p->cfg.max_clients)
        return -1;
    int fd = kz__udp_socket(0, 0, NULL);
    if (fd < 0)
        return -1;
    p->clients[p->n_clients] = (kz__proxy_client){*from, fd};
    return (int32_t)p->n_clients++;
}

static void kz__proxy_tap(kz_proxy *p, uint32_t dir, size_t len)
{
    if (p->cfg.tap)
        p->cfg.tap(p->cfg.tap_ctx, dir, p->buf, len);
}

static void kz__proxy_receive(kz_proxy *p, kz_time_ns now)
{
    struct sockaddr_in from;
    socklen_t flen = sizeof from;
    ssize_t n;
    while ((n = recvfrom(p->listen_fd, p->buf, sizeof p->buf, 0, (struct sockaddr *)&from,
                         &flen)) >= 0) {
        int32_t idx = kz__proxy_client_index(p, &from);
        flen = sizeof from;
        if (idx < 0) {
            p->refused++;
            continue;
        }
        kz__proxy_tap(p, KZ_PROXY_UP, (size_t)n);
        if (kz_impair_send(p->up, now, p->buf, (size_t)n, (uint64_t)idx) != KZ_OK)
            p->refused++; /* larger than the impairment's max_datagram */
    }
    for (uint32_t i = 0; i < p->n_clients; i++)
        while ((n = recv(p->clients[i].fd, p->buf, sizeof p->buf, 0)) >= 0) {
            kz__proxy_tap(p, KZ_PROXY_DOWN, (size_t)n);
            if (kz_impair_send(p->down, now, p->buf, (size_t)n, i) != KZ_OK)
                p->refused++;
        }
}

static uint32_t kz__proxy_deliver(kz_proxy *p, kz_time_ns now)
{
    uint32_t sent = 0;
    size_t len;
    uint64_t tag;
    while (kz_impair_poll(p->up, now, p->buf, sizeof p->buf, &len, &tag) == KZ_OK) {
        sendto(p->clients[tag].fd, p->buf, len, 0, (struct sockaddr *)&p->server,
               sizeof p->server);
        sent++;
    }
    while (kz_impair_poll(p->down, now, p->buf, sizeof p->buf, &len, &tag) == KZ_OK) {
        sendto(p->listen_fd, p->buf, len, 0, (struct sockaddr *)&p->clients[tag].addr,
               sizeof p->clients[tag].addr);
        sent++;
    }
    return sent;
}

uint32_t kz_proxy_pump(kz_proxy *p, kz_time_ns now)
{
    kz__proxy_receive(p, now);
    return kz__proxy_deliver(p, now);
}

int kz_proxy_set_impairment(kz_proxy *p, const kz_impair_config *up, const kz_impair_config *down)
{
    if (kz_impair_config_check(up) != KZ_OK || kz_impair_config_check(down) != KZ_OK)
        return KZ_EINVAL;
    if (kz_impair_set_config(p->up, up) != KZ_OK || kz_impair_set_config(p->down, down) != KZ_OK)
        return KZ_EINVAL;
    return KZ_OK;
}
