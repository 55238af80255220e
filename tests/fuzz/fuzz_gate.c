/*
 * Fuzz target for the gate: every datagram a server receives from anyone
 * goes through kz__gate_datagram first, and every datagram a client
 * receives during the handshake through kz__handshake_receive.
 * Invariants: a reply is always smaller than the datagram that caused it
 * and is a challenge or a deny; no input without a valid cookie (which the
 * fuzzer cannot forge: the cookie key is random) reaches public-key work or
 * claims a slot.
 */
#include <stdlib.h>
#include <string.h>

#include "net/gate.h"

static kz__gate *gate;
static kz__handshake hs;

static void setup(void)
{
    kz__gate_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.verifier.protocol_id = 1;
    cfg.verifier.server_id = 1;
    if (kz_box_keypair_generate(&cfg.verifier.server_keys) != KZ_OK)
        abort();
    cfg.max_sessions = 8;
    cfg.n_ports = 1;
    cfg.ports[0] = 4000;
    cfg.rate_buckets = 1024;
    gate = kz__gate_create(&cfg);
    if (!gate)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!gate)
        setup();
    kz_address from;
    memset(&from, 0, sizeof from);
    from.family = KZ_ADDR_IPV4;
    from.ip[0] = 10;
    from.ip[3] = (uint8_t)(size & 0xff);
    from.port = 4242;
    uint8_t reply[KZ_GATE_REQUEST_BYTES];
    size_t rlen = 0;
    /* Time moves with the input so the rate limiter does not mask paths. */
    static kz_time_ns now = KZ_NS_PER_S;
    now += KZ_NS_PER_S;
    kz__gate_action act = kz__gate_datagram(gate, &from, data, size, now, 1000, reply,
                                            sizeof reply, &rlen);
    if (act == KZ_GATE_REPLY &&
        (rlen >= size || (reply[2] != KZ_GATE_CHALLENGE && reply[2] != KZ_GATE_DENY)))
        abort();
    if (act == KZ_GATE_PASS || kz__gate_sessions(gate) != 0 ||
        kz_counters_get(kz__gate_counters(gate), KZ_GATE_C_VERIFIES) != 0)
        abort();
    /* The client side: any datagram may arrive from anyone. */
    if (hs.token.token_len == 0) {
        memset(&hs, 0, sizeof hs);
        hs.state = KZ_HS_REQUESTING;
        hs.aead_mask = KZ_AEAD_BIT_CHACHA20;
        hs.token.token_len = 1;
    }
    if (kz__handshake_receive(&hs, data, size) == KZ_OK && hs.state == KZ_HS_ACCEPTED)
        abort(); /* an accept the fuzzer could forge without the key */
    hs.has_cookie = 0;
    return 0;
}
