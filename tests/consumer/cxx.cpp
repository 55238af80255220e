// The umbrella header from C++: every public header must compile as
// C++11 and give C linkage, so an engine written in C++ includes
// <kizuna/kizuna.h> and links the C library directly. Exits 0 on success.
#include <cstdio>
#include <cstring>

#include <kizuna/kizuna.h>

int main()
{
    kz_client_config cc;
    std::memset(&cc, 0, sizeof cc);
    kz_client_config_default(&cc);
    kz_client *c = kz_client_create(&cc);
    kz_address a;
    bool ok = c != nullptr && kz_client_state(c) == KZ_CLIENT_IDLE &&
              kz_address_parse("127.0.0.1:4000", &a) == KZ_OK && a.port == 4000 &&
              kz_version_number() == KZ_VERSION_NUMBER;
    kz_client_destroy(c);
    if (!ok) {
        std::fprintf(stderr, "cxx: FAILED\n");
        return 1;
    }
    std::printf("cxx: kizuna %s from C++\n", kz_version());
    return 0;
}
