/*
 * libsodium start-up. sodium_init takes a lock on every call, so the
 * result is cached in an atomic flag and the lock is taken only until the
 * first success.
 */
#include <sodium.h>
#include <stdatomic.h>

#include <kizuna/common.h>

#include "crypto.h"

static atomic_int kz__sodium_ready;

int kz__crypto_init(void)
{
    if (atomic_load_explicit(&kz__sodium_ready, memory_order_acquire))
        return KZ_OK;
    if (sodium_init() < 0)
        return KZ_EIO;
    atomic_store_explicit(&kz__sodium_ready, 1, memory_order_release);
    return KZ_OK;
}
