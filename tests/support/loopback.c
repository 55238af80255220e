#include "loopback.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int kzt_keys_make(kzt_keys *k)
{
    int rc = kz_sign_keypair_generate(&k->backend);
    return rc ? rc : kz_box_keypair_generate(&k->server);
}

int kzt_mint_as(const kzt_keys *k, uint64_t protocol_id, uint64_t server_id, uint16_t port,
                uint64_t client_id, const char *role, uint8_t actor_kind, kz_connect_token *out)
{
    kz_token_info t;
    memset(&t, 0, sizeof t);
    t.protocol_id = protocol_id;
    t.create_time = (uint64_t)time(NULL) - 1;
    t.expire_time = t.create_time + 600;
    t.server_id = server_id;
    t.n_addresses = 1;
    t.addresses[0].family = KZ_ADDR_IPV4;
    t.addresses[0].ip[0] = 127;
    t.addresses[0].ip[3] = 1;
    t.addresses[0].port = port;
    t.client_id = client_id;
    t.avatar_id = client_id + 1000;
    snprintf(t.name, sizeof t.name, "test-%llu", (unsigned long long)client_id);
    strcpy(t.claims.method, "none");
    t.claims.actor_kind = actor_kind;
    if (actor_kind == KZ_ACTOR_AGENT)
        t.claims.acting_for = client_id + 1;
    if (role) {
        t.n_roles = 1;
        snprintf(t.roles[0], sizeof t.roles[0], "%s", role);
    }
    size_t len = 0;
    int rc = kz_token_mint(&t, k->backend.secret_key, k->server.public_key, &out->keys,
                           out->token, sizeof out->token, &len);
    out->token_len = (uint16_t)len;
    return rc;
}

int kzt_mint(const kzt_keys *k, uint64_t protocol_id, uint64_t server_id, uint16_t port,
             uint64_t client_id, kz_connect_token *out)
{
    return kzt_mint_as(k, protocol_id, server_id, port, client_id, NULL, KZ_ACTOR_HUMAN, out);
}

void kzt_server_config(kz_netserver_config *cfg, const kzt_keys *k, uint64_t protocol_id,
                       uint64_t server_id, uint32_t max_clients)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->verifier.protocol_id = protocol_id;
    cfg->verifier.server_id = server_id;
    memcpy(cfg->verifier.backend_pk, k->backend.public_key, sizeof cfg->verifier.backend_pk[0]);
    cfg->verifier.server_keys = k->server;
    cfg->bind_ip = htonl(0x7f000001);
    cfg->max_clients = max_clients;
}
