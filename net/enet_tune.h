/*
 * ENet tuning shared by the server and client transports (internal).
 *
 * ENet 1.3 doubles a reliable command's retransmission timeout after every
 * loss and never caps it, and ends a peer when one command has been
 * retransmitted timeoutLimit times. On a path that loses a fifth of the
 * packets each way (a round trip fails a third of the time), that ends
 * healthy sessions: a command that fails five times in a row has waited 15
 * seconds and is given up on. Kizuna instead caps the retransmission
 * timeout at KZ_ENET_RTO_CAP_MS, so a lost reliable message is retried at
 * least that often, and ends a session only when the oldest unacknowledged
 * command is older than the session timeout (ENet's timeoutMaximum).
 */
#ifndef KZ_NET_ENET_TUNE_H
#define KZ_NET_ENET_TUNE_H

#include <enet/enet.h>

#define KZ_ENET_RTO_CAP_MS 1000u
#define KZ_ENET_SESSION_TIMEOUT_MS 30000u   /* when the token names none */
#define KZ_SESSION_TIMEOUT_MIN_S 2u
#define KZ_SESSION_TIMEOUT_MAX_S 600u

/* The session timeout in ms for a token's timeout_seconds: 0 means
 * KZ_ENET_SESSION_TIMEOUT_MS, anything else is clamped to 2 s .. 10 min.
 * Both ends use it (the client learns the value from the ACCEPT). */
static inline uint32_t kz__session_timeout_ms(uint32_t seconds)
{
    if (seconds == 0)
        return KZ_ENET_SESSION_TIMEOUT_MS;
    if (seconds < KZ_SESSION_TIMEOUT_MIN_S)
        seconds = KZ_SESSION_TIMEOUT_MIN_S;
    if (seconds > KZ_SESSION_TIMEOUT_MAX_S)
        seconds = KZ_SESSION_TIMEOUT_MAX_S;
    return seconds * 1000u;
}

/* Applies Kizuna's timeouts to a new peer. */
void kz__enet_peer_setup(ENetPeer *peer, uint32_t session_timeout_ms);

/* ENet's packet throttle drops unreliable packets on the sending side
 * whenever round trips grow, which under plain random loss turns into
 * bursts of missing snapshots. Kizuna budgets its unreliable traffic
 * itself (per-client snapshot byte budgets), so once a peer is connected
 * its throttle is pinned open and may never decelerate. Only after the
 * connection: ENet's client checks that the server echoes the throttle
 * values it sent in CONNECT, and refuses the connection otherwise. */
void kz__enet_unthrottle(ENetPeer *peer);
/* Caps the retransmission timeout of every reliable command in flight. */
void kz__enet_cap_rto(ENetPeer *peer);

#endif /* KZ_NET_ENET_TUNE_H */
