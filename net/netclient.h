/*
 * The client transport's internals shared with the world's client and the
 * tests.
 *
 * kz__netclient_open is the constructor with its error code: the world's
 * client (sim/client.c) reports why a connect could not start —
 * KZ_ENOMEM, KZ_EPROTO (token file), KZ_EINVAL (no IPv4 address), KZ_EIO
 * (no socket) — where the public kz_netclient_create can only return NULL.
 */
#ifndef KZ_NET_NETCLIENT_H
#define KZ_NET_NETCLIENT_H

#include <kizuna/protocol.h>
#include <kizuna/transport.h>

/* 0 and *out, or a KZ_E code (logged) and *out = NULL. */
int kz__netclient_open(const kz_netclient_config *cfg, const kz_connect_token *token,
                       kz_netclient **out);

/* 1 and the resume ticket the client holds with the server's grace, or 0
 * when it holds none (tests check what the transport took). */
int kz__netclient_ticket(const kz_netclient *c, uint8_t out[KZ_TICKET_BYTES], uint32_t *grace_ms);
/* ENet's session timeout of the client's peer in ms, 0 without a peer. */
uint32_t kz__netclient_enet_timeout(const kz_netclient *c);
/* resume_silence_ms as the client uses it (clamped once a ticket came). */
uint32_t kz__netclient_silence_ms(const kz_netclient *c);

/* For the world's client, which sees what the transport cannot: whether
 * the server still takes its inputs (each snapshot acknowledges the newest
 * input tick it applied). kz__netclient_resume_uplink starts resuming a
 * CONNECTED session with a ticket because the server has stopped
 * acknowledging inputs since `acked_at` (the grace is counted from then);
 * 1 when it started. Such a resume is not ended by the server's datagrams
 * (they arrived all along), only by a RESUMED that moves the session, by
 * kz__netclient_uplink_ok (acknowledgements advance again), or by the
 * grace. */
int kz__netclient_resume_uplink(kz_netclient *c, kz_time_ns acked_at);
void kz__netclient_uplink_ok(kz_netclient *c);

#endif /* KZ_NET_NETCLIENT_H */
