/*
 * Test support: tokens and server configurations for transports on
 * loopback, shared by the transport suites, the hostile-ENet suite, the
 * impaired-network suite, the thread stress driver and the transport
 * benchmarks (bench/micro).
 */
#ifndef KZ_TESTS_SUPPORT_LOOPBACK_H
#define KZ_TESTS_SUPPORT_LOOPBACK_H

#include <kizuna/transport.h>

/* Keys of a test world: the backend that signs and the server that verifies. */
typedef struct kzt_keys {
    kz_sign_keypair backend;
    kz_box_keypair server;
} kzt_keys;

/* Fresh keys; 0 or a KZ_E code. */
int kzt_keys_make(kzt_keys *k);

/* Mints a token for `client_id` (avatar client_id + 1000, name
 * "test-<id>") to the server at 127.0.0.1:`port`, created a second ago and
 * valid for ten minutes. Returns 0 or the KZ_E code of kz_token_mint. */
int kzt_mint(const kzt_keys *k, uint64_t protocol_id, uint64_t server_id, uint16_t port,
             uint64_t client_id, kz_connect_token *out);

/* kzt_mint with a role (NULL for none) and an actor kind (KZ_ACTOR_*; an
 * agent acts for client id + 1). */
int kzt_mint_as(const kzt_keys *k, uint64_t protocol_id, uint64_t server_id, uint16_t port,
                uint64_t client_id, const char *role, uint8_t actor_kind, kz_connect_token *out);

/* A server transport config bound to 127.0.0.1 on a free port, verifying
 * tokens of `k` for (protocol_id, server_id); single-threaded, one host. */
void kzt_server_config(kz_netserver_config *cfg, const kzt_keys *k, uint64_t protocol_id,
                       uint64_t server_id, uint32_t max_clients);

#endif /* KZ_TESTS_SUPPORT_LOOPBACK_H */
