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
    return t->clients ? KZ_OK : KZ_ENOMEM;
}

void kz__sessions_fini(kz__sessions *t)
{
    if (t->clients)
        kz_free(&t->alloc, t->clients, (size_t)t->max_clients * sizeof *t->clients);
    t->clients = NULL;
}

kz__client *kz__session_reset(kz__sessions *t, uint32_t slot, uint32_t serial, uint32_t host)
{
    kz__client *cl = &t->clients[slot];
    memset(cl, 0, sizeof *cl);  /* plain values only: zero is "nothing yet" */
    kz_validate_client_init(&cl->val);
    cl->serial = serial;
    cl->host = host;
    return cl;
}
