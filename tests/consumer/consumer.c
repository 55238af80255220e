/*
 * A program built against Kizuna from outside its tree, as an integrator
 * would: proves that the umbrella header compiles in strict C11, that the
 * library links (shared or static, with libsodium and ENet behind it) and
 * that the linked library is the version the headers describe. Exits 0
 * and prints one line on success; prints what failed otherwise.
 */
#include <stdio.h>
#include <string.h>

#include <kizuna/kizuna.h>

/* A ring round trip: core, no dependencies. */
static int check_ring(void)
{
    kz_spsc r;
    int in = 42, out = 0;
    if (kz_spsc_init(&r, 4, sizeof(int), NULL) != KZ_OK)
        return 0;
    int ok = kz_spsc_push(&r, &in) == KZ_OK && kz_spsc_pop(&r, &out) == KZ_OK && out == 42;
    kz_spsc_fini(&r);
    return ok;
}

/* Mint, encode, decode and verify a token: libsodium through the library. */
static int check_token(void)
{
    kz_sign_keypair backend;
    kz_token_verifier v;
    kz_token_info t, back;
    kz_connect_token ct, ct2;
    kz_session_keys keys;
    uint8_t file[KZ_CONNECT_TOKEN_FILE_MAX_BYTES];
    size_t len = 0, file_len = 0;
    memset(&v, 0, sizeof v);
    memset(&t, 0, sizeof t);
    if (kz_sign_keypair_generate(&backend) != KZ_OK ||
        kz_box_keypair_generate(&v.server_keys) != KZ_OK)
        return 0;
    t.protocol_id = v.protocol_id = 7;
    t.server_id = v.server_id = 9;
    t.create_time = 1000;
    t.expire_time = 2000;
    t.n_addresses = 1;
    if (kz_address_parse("127.0.0.1:4000", &t.addresses[0]) != KZ_OK)
        return 0;
    t.client_id = t.avatar_id = 1;
    strcpy(t.name, "consumer");
    strcpy(t.claims.method, "none");
    memcpy(v.backend_pk[0], backend.public_key, sizeof backend.public_key);
    if (kz_token_mint(&t, backend.secret_key, v.server_keys.public_key, &ct.keys, ct.token,
                      sizeof ct.token, &len) != KZ_OK)
        return 0;
    ct.token_len = (uint16_t)len;
    if (kz_connect_token_encode(&ct, file, sizeof file, &file_len) != KZ_OK ||
        kz_connect_token_decode(file, file_len, &ct2) != KZ_OK)
        return 0;
    return kz_token_verify(&v, ct2.token, ct2.token_len, 1500, &back, &keys) == KZ_TOKEN_VALID &&
           strcmp(back.name, "consumer") == 0 &&
           memcmp(&keys, &ct.keys, sizeof keys) == 0;
}

int main(void)
{
    const char *failed = !check_ring()                               ? "ring round trip"
                         : !check_token()                            ? "token round trip"
                         : kz_version_number() != KZ_VERSION_NUMBER ? "library version"
                                                                     : NULL;
    if (failed) {
        fprintf(stderr, "consumer: %s FAILED (kizuna %s)\n", failed, kz_version());
        return 1;
    }
    printf("consumer: kizuna %s works\n", kz_version());
    return 0;
}
