/*
 * The session table (sim/sessions.h).
 */
#include "sim/sessions.h"

#include <string.h>

int kz__sessions_init(kz__sessions *t, uint32_t max_clients, uint32_t cap, const kz_allocator *a)
{
    memset(t, 0, sizeof *t);
    t->alloc = a ? *a : kz_allocator_default();
    kz_allocator_resolve(&t->alloc);
    t->max_clients = max_clients;
    t->words = (cap + 63u) / 64u;
    t->clients = kz_calloc(&t->alloc, (size_t)max_clients * sizeof *t->clients, 64);
    t->announced = kz_calloc(&t->alloc, (size_t)max_clients * t->words * sizeof *t->announced, 64);
    return t->clients && t->announced ? KZ_OK : KZ_ENOMEM;
}

void kz__sessions_fini(kz__sessions *t)
{
    if (t->clients)
        kz_free(&t->alloc, t->clients, (size_t)t->max_clients * sizeof *t->clients);
    if (t->announced)
        kz_free(&t->alloc, t->announced, (size_t)t->max_clients * t->words * sizeof *t->announced);
    t->clients = NULL;
    t->announced = NULL;
}

uint64_t *kz__session_announced(const kz__sessions *t, uint32_t slot)
{
    return t->announced + (size_t)slot * t->words;
}

void kz__session_forget_announced(kz__sessions *t, uint32_t slot)
{
    memset(kz__session_announced(t, slot), 0, t->words * sizeof *t->announced);
}

kz__client *kz__session_reset(kz__sessions *t, uint32_t slot, uint32_t serial, uint32_t host)
{
    kz__client *cl = &t->clients[slot];
    memset(cl, 0, sizeof *cl);  /* plain values only: zero is "nothing yet" */
    kz_validate_client_init(&cl->val);
    cl->serial = serial;
    cl->host = host;
    kz__session_forget_announced(t, slot);
    return cl;
}
