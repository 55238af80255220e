/*
 * The client transport: gate handshake on the ENet host's own socket, then
 * an ENet connection from the same address, sealed both ways. Everything
 * runs inside kz_netclient_update on the caller's thread.
 */
#include <enet/enet.h>
#include <sodium.h>
#include <string.h>

#include <kizuna/transport.h>

#include "enet_mac.h"
#include "enet_tune.h"
#include "gate.h"
#include "netclient.h"
#include "seal.h"

#define KZ__CLIENT_QUEUE 256u

struct kz_netclient {
    kz_netclient_config cfg;
    ENetHost *host;
    ENetPeer *peer;
    ENetAddress gate_addr;
    kz__handshake hs;
    kz__seal tx, rx;
    kz__replay window;
    kz__enet_mac_pair mac;   /* ENet datagram MACs, from the ACCEPT on */
    uint32_t mac_set;
    uint32_t rx_tag, rx_verified;
    uint32_t state;
    uint32_t reason;
    kz_time_ns started, next_send, now;
    /* Received ENet packets waiting for poll, opened one at a time. */
    ENetPacket *queue[KZ__CLIENT_QUEUE];
    uint8_t queue_channel[KZ__CLIENT_QUEUE];
    uint32_t q_head, q_count;
    ENetPacket *held;
    uint8_t plain[KZ_MAX_MESSAGE_BYTES];
    kz_counters counters;
    kz_counter_block c;
};

static const char *const kz__client_counter_names[KZ_NET_C_COUNT] = {
#define KZ__NET_NAME(id, name) name,
    KZ_NET_COUNTERS(KZ__NET_NAME)
#undef KZ__NET_NAME
};

static _Thread_local kz_netclient *kz__updating;

/* An ENet datagram for the client: dropped (1) unless it names our one
 * peer and carries a valid MAC under the server-to-client ENet key
 * (enet_mac.h), so nobody but the server can end, stall or confuse the
 * connection. */
static int kz__client_intercept_enet(kz_netclient *c, ENetHost *host)
{
    kz__enet_header h;
    c->rx_verified = 0;
    if (!kz__enet_header_parse(host->receivedData, host->receivedDataLength, &h)) {
        kz_counter_inc(c->c, KZ_NET_C_DROP_ENET_MALFORMED);
        return 1;
    }
    if (!c->mac_set || c->peer == NULL || h.peer_id != c->peer->incomingPeerID ||
        host->receivedAddress.host != c->peer->address.host ||
        host->receivedAddress.port != c->peer->address.port) {
        kz_counter_inc(c->c, KZ_NET_C_DROP_ENET_PEER);
        return 1;
    }
    if (!kz__enet_mac_check(&c->mac.server_to_client, host->receivedData,
                            host->receivedDataLength, &h, c->peer->connectID, &c->rx_tag)) {
        kz_counter_inc(c->c, KZ_NET_C_DROP_ENET_MAC);
        return 1;
    }
    c->rx_verified = 1;
    return 0;
}

/* ENet's checksum callback on the client: the tag the intercept verified
 * for a received datagram, the client-to-server MAC for one being sent. */
static enet_uint32 kz__client_checksum(const ENetBuffer *b, size_t n)
{
    kz_netclient *c = kz__updating;
    if (c == NULL || !c->mac_set)
        return 0;
    if (kz__enet_checksum_is_receive(c->host, b, n)) {
        uint32_t verified = c->rx_verified;
        c->rx_verified = 0;
        return verified ? c->rx_tag : ~c->rx_tag;
    }
    return kz__enet_mac_buffers(&c->mac.client_to_server, b, n);
}

/* Gate replies arrive on the ENet socket; take them before ENet does. */
static int kz__client_intercept(ENetHost *host, ENetEvent *event)
{
    (void)event;
    kz_netclient *c = kz__updating;
    const uint8_t *d = host->receivedData;
    size_t n = host->receivedDataLength;
    if (c == NULL)
        return 1;
    if (n < 2 || d[0] != KZ_GATE_MARK0 || d[1] != KZ_GATE_MARK1)
        return kz__client_intercept_enet(c, host);
    if (c->state == KZ_NETCLIENT_HANDSHAKE &&
        host->receivedAddress.host == c->gate_addr.host &&
        host->receivedAddress.port == c->gate_addr.port) {
        kz__handshake_receive(&c->hs, d, n);
        if (c->hs.deny_reason)
            c->reason = c->hs.deny_reason;
    }
    return 1;
}

static int kz__client_pick_server(kz_netclient *c)
{
    kz_address a = c->cfg.server;
    if (a.family == 0) {
        kz_token_info info;
        if (kz_token_parse(c->hs.token.token, c->hs.token.token_len, &info) != KZ_OK)
            return KZ_EPROTO;
        for (unsigned i = 0; i < info.n_addresses && a.family == 0; i++)
            if (info.addresses[i].family == KZ_ADDR_IPV4)
                a = info.addresses[i];
    }
    if (a.family != KZ_ADDR_IPV4)
        return KZ_EINVAL;
    memcpy(&c->gate_addr.host, a.ip, 4);
    c->gate_addr.port = a.port;
    return KZ_OK;
}

int kz__netclient_open(const kz_netclient_config *cfg, const kz_connect_token *token,
                       kz_netclient **out)
{
    kz_netclient_config conf = *cfg;
    *out = NULL;
    kz_allocator_resolve(&conf.alloc);
    if (conf.connect_timeout_ms == 0)
        conf.connect_timeout_ms = 5000;
    if (conf.resend_ms == 0)
        conf.resend_ms = 250;
    kz_netclient *c = kz_calloc(&conf.alloc, sizeof *c, 64);
    if (c == NULL) {
        kz_logf(&conf.log, KZ_LOG_ERROR, "net", "client: %s", kz_strerror(KZ_ENOMEM));
        return KZ_ENOMEM;
    }
    c->cfg = conf;
    int rc = kz__handshake_init(&c->hs, token);
    if (rc == KZ_OK && conf.disable_aes)
        c->hs.aead_mask = KZ_AEAD_BIT_CHACHA20;
    if (rc == KZ_OK)
        rc = kz__client_pick_server(c);
    if (rc == KZ_OK)
        rc = kz_counters_init(&c->counters, KZ_NET_C_COUNT, 1, kz__client_counter_names,
                              &conf.alloc);
    if (rc == KZ_OK && (enet_initialize() != 0 ||
                        !(c->host = enet_host_create(NULL, 1, KZ_CHANNEL_COUNT, 0, 0))))
        rc = KZ_EIO;
    if (rc != KZ_OK) {
        kz_logf(&conf.log, KZ_LOG_ERROR, "net", "client: %s", kz_strerror(rc));
        kz_netclient_destroy(c);
        return rc;
    }
    c->c = kz_counters_block(&c->counters, 0);
    c->host->checksum = kz__client_checksum;
    c->host->intercept = kz__client_intercept;
    c->host->mtu = KZ_MTU;
    c->host->maximumPacketSize = KZ_ENET_MAX_PACKET_BYTES;
    c->host->maximumWaitingData = KZ_ENET_MAX_WAITING_BYTES;
    c->state = KZ_NETCLIENT_HANDSHAKE;
    c->started = UINT64_MAX; /* set by the first update */
    *out = c;
    return KZ_OK;
}

kz_netclient *kz_netclient_create(const kz_netclient_config *cfg, const kz_connect_token *token)
{
    kz_netclient *c;
    return kz__netclient_open(cfg, token, &c) == KZ_OK ? c : NULL;
}

static void kz__client_drop_queue(kz_netclient *c)
{
    while (c->q_count) {
        enet_packet_destroy(c->queue[c->q_head]);
        c->q_head = (c->q_head + 1) % KZ__CLIENT_QUEUE;
        c->q_count--;
    }
    if (c->held) {
        enet_packet_destroy(c->held);
        c->held = NULL;
    }
}

void kz_netclient_destroy(kz_netclient *c)
{
    if (c == NULL)
        return;
    kz__client_drop_queue(c);
    if (c->host) {
        if (c->peer && c->state == KZ_NETCLIENT_CONNECTED) {
            kz__updating = c; /* the MAC callback needs the client */
            enet_peer_disconnect_now(c->peer, 0);
            enet_host_flush(c->host);
            kz__updating = NULL;
        }
        enet_host_destroy(c->host);
    }
    if (c->counters.cells)
        kz_counters_fini(&c->counters);
    kz_allocator a = c->cfg.alloc;
    sodium_memzero(c, sizeof *c);
    kz_free(&a, c, sizeof *c);
}

static void kz__client_send_request(kz_netclient *c)
{
    uint8_t req[KZ_GATE_REQUEST_BYTES];
    size_t n = kz__handshake_request(&c->hs, req);
    ENetBuffer b = {.data = req, .dataLength = n};
    enet_socket_send(c->host->socket, &c->gate_addr, &b, 1);
}

/* After the accept: ENet connect from this same socket to the given port. */
static void kz__client_start_enet(kz_netclient *c)
{
    /* Port 0: ENet listens on the gate's own socket, so connect to the very
     * address the handshake went to (which may be a relay or a NAT). */
    ENetAddress to = {.host = c->gate_addr.host,
                      .port = c->hs.port ? c->hs.port : c->gate_addr.port};
    const kz_session_keys *k = &c->hs.token.keys;
    kz__enet_mac_pair_derive(&c->mac, k, c->hs.session_id);
    c->mac_set = 1;
    if (kz__seal_init(&c->tx, k->client_to_server, c->hs.alg, c->hs.session_id) != KZ_OK ||
        kz__seal_init(&c->rx, k->server_to_client, c->hs.alg, c->hs.session_id) != KZ_OK ||
        !(c->peer = enet_host_connect(c->host, &to, KZ_CHANNEL_COUNT,
                                      kz__connect_tag(k, c->hs.session_id)))) {
        c->state = KZ_NETCLIENT_FAILED;
        return;
    }
    kz__enet_peer_setup(c->peer, kz__session_timeout_ms(c->hs.timeout_seconds));
    kz__replay_init(&c->window);
    c->state = KZ_NETCLIENT_CONNECTING;
}

static void kz__client_on_receive(kz_netclient *c, uint8_t channel, ENetPacket *pkt)
{
    kz_counter_inc(c->c, KZ_NET_C_RX_PACKETS);
    kz_counter_add(c->c, KZ_NET_C_RX_BYTES, pkt->dataLength);
    if (c->q_count == KZ__CLIENT_QUEUE) {
        kz_counter_inc(c->c, KZ_NET_C_DROP_INBOUND_FULL);
        enet_packet_destroy(pkt);
        return;
    }
    uint32_t at = (c->q_head + c->q_count++) % KZ__CLIENT_QUEUE;
    c->queue[at] = pkt;
    c->queue_channel[at] = channel;
}

static void kz__client_dispatch(kz_netclient *c, ENetEvent *ev)
{
    switch (ev->type) {
    case ENET_EVENT_TYPE_CONNECT:
        kz__enet_unthrottle(ev->peer);
        c->state = KZ_NETCLIENT_CONNECTED;
        break;
    case ENET_EVENT_TYPE_RECEIVE:
        kz__client_on_receive(c, ev->channelID, ev->packet);
        break;
    case ENET_EVENT_TYPE_DISCONNECT:
        c->reason = ev->data;
        c->state = c->state == KZ_NETCLIENT_CONNECTED ? KZ_NETCLIENT_DISCONNECTED
                                                      : KZ_NETCLIENT_FAILED;
        c->peer = NULL;
        break;
    default:
        break;
    }
}

static void kz__client_handshake_step(kz_netclient *c, kz_time_ns now)
{
    if (c->hs.state == KZ_HS_ACCEPTED) {
        kz__client_start_enet(c);
    } else if (now - c->started >= (kz_time_ns)c->cfg.connect_timeout_ms * KZ_NS_PER_MS) {
        c->state = KZ_NETCLIENT_FAILED;
    } else if (now >= c->next_send) {
        kz__client_send_request(c);
        c->next_send = now + (kz_time_ns)c->cfg.resend_ms * KZ_NS_PER_MS;
    }
}

int kz_netclient_update(kz_netclient *c, kz_time_ns now)
{
    if (c->started == UINT64_MAX)
        c->started = c->next_send = now;
    c->now = now;
    kz__updating = c;
    /* Read before servicing: a challenge received during the service must
     * be answered in this same update, not after the resend interval. */
    uint32_t had_cookie = c->hs.has_cookie;
    ENetEvent ev;
    int rc = enet_host_service(c->host, &ev, 0);
    while (rc > 0) {
        kz__client_dispatch(c, &ev);
        rc = enet_host_check_events(c->host, &ev);
    }
    if (c->state == KZ_NETCLIENT_HANDSHAKE) {
        kz__client_handshake_step(c, now);
        if (!had_cookie && c->hs.has_cookie && c->state == KZ_NETCLIENT_HANDSHAKE) {
            kz__client_send_request(c);
            c->next_send = now + (kz_time_ns)c->cfg.resend_ms * KZ_NS_PER_MS;
        }
    }
    if (c->peer && (c->state == KZ_NETCLIENT_CONNECTING || c->state == KZ_NETCLIENT_CONNECTED))
        kz__enet_cap_rto(c->peer);
    enet_host_flush(c->host);
    kz__updating = NULL;
    return KZ_OK;
}

uint32_t kz_netclient_state(const kz_netclient *c)
{
    return c->state;
}

uint32_t kz_netclient_reason(const kz_netclient *c)
{
    return c->reason;
}

uint32_t kz_netclient_slot(const kz_netclient *c)
{
    return c->hs.slot;
}

void kz_netclient_traffic(const kz_netclient *c, kz_net_traffic *out)
{
    memset(out, 0, sizeof *out);
    if (!c->host)
        return;
    out->bytes_in = c->host->totalReceivedData;
    out->bytes_out = c->host->totalSentData;
    out->packets_in = c->host->totalReceivedPackets;
    out->packets_out = c->host->totalSentPackets;
}

int kz_netclient_send(kz_netclient *c, uint8_t channel, uint8_t type, const void *data,
                      uint32_t len)
{
    if (channel >= KZ_CHANNEL_COUNT || len > KZ_MAX_MESSAGE_BYTES)
        return KZ_EINVAL;
    if (c->state != KZ_NETCLIENT_CONNECTED)
        return KZ_ESTATE;
    enet_uint32 flags = channel == KZ_CHANNEL_EVENT      ? ENET_PACKET_FLAG_RELIABLE
                        : channel == KZ_CHANNEL_SNAPSHOT ? ENET_PACKET_FLAG_UNSEQUENCED
                                                         : 0;
    ENetPacket *pkt = enet_packet_create(NULL, len + KZ_SEAL_OVERHEAD, flags);
    size_t out_len;
    if (pkt == NULL)
        return KZ_ENOMEM;
    int rc = kz__seal_packet(&c->tx, type, data, len, pkt->data, pkt->dataLength, &out_len);
    if (rc != KZ_OK || enet_peer_send(c->peer, channel, pkt) != 0) {
        enet_packet_destroy(pkt);
        return rc != KZ_OK ? rc : KZ_EIO;
    }
    kz_counter_inc(c->c, KZ_NET_C_TX_PACKETS);
    kz_counter_add(c->c, KZ_NET_C_TX_BYTES, pkt->dataLength);
    return KZ_OK;
}

int kz_netclient_poll(kz_netclient *c, kz_netmsg *msg)
{
    if (c->held) {
        enet_packet_destroy(c->held);
        c->held = NULL;
    }
    while (c->q_count) {
        ENetPacket *pkt = c->queue[c->q_head];
        uint8_t channel = c->queue_channel[c->q_head];
        c->q_head = (c->q_head + 1) % KZ__CLIENT_QUEUE;
        c->q_count--;
        uint8_t type;
        size_t len;
        int rc = kz__open_packet(&c->rx, &c->window, pkt->data, pkt->dataLength, &type,
                                 c->plain, sizeof c->plain, &len);
        enet_packet_destroy(pkt);
        if (rc == KZ_OK) {
            *msg = (kz_netmsg){0, KZ_NETMSG_DATA, channel, type, 0, (uint32_t)len, c->plain, c->now};
            return KZ_OK;
        }
        kz_counter_inc(c->c, rc == KZ_EREPLAY ? KZ_NET_C_DROP_REPLAY : KZ_NET_C_DROP_AUTH);
    }
    return KZ_EEMPTY;
}

const kz_counters *kz_netclient_counters(const kz_netclient *c)
{
    return &c->counters;
}
