/*
 * Fuzz target for the connect token parser and the client token file
 * decoder: bytes from the network and from disk. Invariants: the parser
 * never accepts what the field rules refuse, a parsed token's verdict is
 * never "malformed", and a decoded token file re-encodes to the same bytes.
 */
#include <stdlib.h>
#include <string.h>

#include <kizuna/token.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kz_token_info info;
    if (kz_token_parse(data, size, &info) == KZ_OK) {
        if (kz_token_info_check(&info, NULL) != KZ_OK)
            abort();
        kz_token_verifier v;
        memset(&v, 0, sizeof v);
        v.protocol_id = info.protocol_id;
        v.server_id = info.server_id;
        if (kz_token_precheck(&v, data, size, info.create_time, NULL) == KZ_TOKEN_MALFORMED)
            abort();
    }
    kz_connect_token ct;
    if (kz_connect_token_decode(data, size, &ct) == KZ_OK) {
        uint8_t again[KZ_CONNECT_TOKEN_FILE_MAX_BYTES];
        size_t len = 0;
        if (kz_connect_token_encode(&ct, again, sizeof again, &len) != KZ_OK || len != size ||
            memcmp(again, data, size) != 0)
            abort();
    }
    return 0;
}
