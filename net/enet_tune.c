#include "enet_tune.h"

void kz__enet_peer_setup(ENetPeer *peer, uint32_t session_timeout_ms)
{
    /* A limit this large never triggers ENet's retransmission-count rule;
     * the maximum is the only way a silent peer ends. */
    enet_peer_timeout(peer, 1u << 20, session_timeout_ms, session_timeout_ms);
}

void kz__enet_unthrottle(ENetPeer *peer)
{
    peer->packetThrottle = ENET_PEER_PACKET_THROTTLE_SCALE;
    peer->packetThrottleAcceleration = ENET_PEER_PACKET_THROTTLE_SCALE;
    peer->packetThrottleDeceleration = 0;
}

void kz__enet_cap_rto(ENetPeer *peer)
{
    ENetList *sent = &peer->sentReliableCommands;
    for (ENetListIterator it = enet_list_begin(sent); it != enet_list_end(sent);
         it = enet_list_next(it)) {
        ENetOutgoingCommand *cmd = (ENetOutgoingCommand *)it;
        if (cmd->roundTripTimeout > KZ_ENET_RTO_CAP_MS)
            cmd->roundTripTimeout = KZ_ENET_RTO_CAP_MS;
    }
    /* ENet wakes for the first command's timeout; keep it consistent. */
    if (!enet_list_empty(sent)) {
        ENetOutgoingCommand *first = (ENetOutgoingCommand *)enet_list_begin(sent);
        peer->nextTimeout = first->sentTime + first->roundTripTimeout;
    }
}
