/*
 * Fuzz target for the impairment profile parser (text from command lines
 * and bench configuration). Invariant: a profile that parses is a valid
 * configuration and an instance can be built from it.
 */
#include <stdlib.h>
#include <string.h>

#include <kizuna/impair.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char text[1024];
    if (size >= sizeof text)
        size = sizeof text - 1;
    memcpy(text, data, size);
    text[size] = '\0';
    kz_impair_config cfg;
    if (kz_impair_profile(text, &cfg) != KZ_OK)
        return 0;
    if (kz_impair_config_check(&cfg) != KZ_OK)
        abort();
    /* Keep the instance small: the queue is what costs memory. */
    if (cfg.queue_limit > 4096)
        return 0;
    kz_impair *im = kz_impair_create(&cfg, 1, NULL);
    if (im == NULL)
        abort();
    kz_impair_destroy(im);
    return 0;
}
