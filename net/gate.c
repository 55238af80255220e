/*
 * The gate: stateless challenge, token checks, session slots. See gate.h
 * for the contract and docs/PROTOCOL.md for the datagrams.
 */
#include "gate.h"

#include <sodium.h>
#include <string.h>

#include "core/assert.h"
#include "bytes.h"
#include "crypto.h"
#include "fixmap.h"
#include "seal.h"

#define KZ__EXPIRE_SCAN 64u

/* Per-source-IP token bucket, in thousandths of a token. */
typedef struct kz__rate_bucket {
    uint32_t milli_tokens;
    uint32_t last_ms;
} kz__rate_bucket;

/* A token seen by the gate: which address used it, until when. */
typedef struct kz__used_token {
    uint8_t hash[16];
    uint64_t expire_unix;
    kz_address addr;
} kz__used_token;

/* Sampling of the drop log, per reason. */
typedef struct kz__drop_log {
    kz_time_ns next;          /* no line for this reason before then */
    uint64_t unlogged;        /* drops since the last line */
    uint32_t logged;
} kz__drop_log;

struct kz__gate {
    kz__gate_config cfg;
    kz_time_ns now;           /* of the datagram being handled */
    kz__drop_log drop_log[KZ_GATE_C_COUNT];
    kz_counters counters;
    kz_counter_block c;
    kz__gate_slot *slots;
    uint32_t *free_stack;
    uint32_t n_free;
    kz__fixmap by_addr;
    kz__fixmap by_client;
    kz__fixmap by_token;
    kz__used_token *used;     /* ring, oldest evicted first */
    uint32_t used_cap, used_head, used_count;
    kz__rate_bucket *buckets;
    uint8_t rate_key[crypto_shorthash_KEYBYTES];
    uint8_t cookie_key[crypto_generichash_KEYBYTES];
    uint32_t next_port;
    uint32_t expire_cursor;
    uint8_t refusing;         /* KZ_DENY_* new sessions get, 0 = accepting */
    int32_t moved;            /* slot the datagram being handled moved, or -1 */
    uint32_t replacing;       /* slots with `replace` set, not yet released */
};

static const char *const kz__gate_counter_names[KZ_GATE_C_COUNT] = {
#define KZ__GATE_NAME(id, name) name,
    KZ_GATE_COUNTERS(KZ__GATE_NAME)
#undef KZ__GATE_NAME
};

/* ---- addresses ---------------------------------------------------------- */

static void kz__addr_bytes(const kz_address *a, uint8_t out[KZ_ADDRESS_BYTES])
{
    out[0] = a->family;
    memcpy(out + 1, a->ip, 16);
    out[17] = (uint8_t)a->port;
    out[18] = (uint8_t)(a->port >> 8);
}

/* Map key of an address: exact for IPv4 (ip and port), hashed for IPv6;
 * lookups compare the slot's address as well. */
static uint64_t kz__addr_key(const kz__gate *g, const kz_address *a)
{
    if (a->family == KZ_ADDR_IPV4)
        return (uint64_t)a->ip[0] << 40 | (uint64_t)a->ip[1] << 32 | (uint64_t)a->ip[2] << 24 |
               (uint64_t)a->ip[3] << 16 | a->port;
    uint8_t bytes[KZ_ADDRESS_BYTES], h[crypto_shorthash_BYTES];
    kz__addr_bytes(a, bytes);
    crypto_shorthash(h, bytes, sizeof bytes, g->rate_key);
    return kz__load_u64(h) | 1ull << 63;
}

static int kz__addr_eq(const kz_address *a, const kz_address *b)
{
    return a->family == b->family && a->port == b->port && memcmp(a->ip, b->ip, 16) == 0;
}

/* Slot index held by `a`, or -1. */
static int32_t kz__slot_of(const kz__gate *g, const kz_address *a)
{
    uint32_t idx;
    if (!kz__fixmap_get(&g->by_addr, kz__addr_key(g, a), &idx) ||
        !kz__addr_eq(&g->slots[idx].addr, a))
        return -1;
    return (int32_t)idx;
}

/* ---- creation ----------------------------------------------------------- */

static int kz__gate_config_resolve(kz__gate_config *c)
{
    if (c->max_sessions == 0 || c->max_sessions > (1u << 20) || c->n_ports == 0 ||
        c->n_ports > KZ_GATE_MAX_PORTS)
        return KZ_EINVAL;
    if (c->challenge_rate == 0)
        c->challenge_rate = KZ_GATE_DEFAULT_RATE;
    if (c->challenge_burst == 0)
        c->challenge_burst = 2 * c->challenge_rate;
    if (c->rate_buckets == 0)
        c->rate_buckets = 65536;
    if (c->pending_timeout_ms == 0)
        c->pending_timeout_ms = 30000;
    if ((c->rate_buckets & (c->rate_buckets - 1)) != 0)
        return KZ_EINVAL;
    kz_allocator_resolve(&c->alloc);
    return KZ_OK;
}

static int kz__gate_alloc_tables(kz__gate *g)
{
    uint32_t n = g->cfg.max_sessions;
    const kz_allocator *a = &g->cfg.alloc;
    g->used_cap = 4 * n;
    g->slots = kz_calloc(a, (size_t)n * sizeof *g->slots, 64);
    g->free_stack = kz_alloc(a, (size_t)n * sizeof *g->free_stack, 8);
    g->used = kz_calloc(a, (size_t)g->used_cap * sizeof *g->used, 8);
    g->buckets = kz_calloc(a, (size_t)g->cfg.rate_buckets * sizeof *g->buckets, 64);
    if (!g->slots || !g->free_stack || !g->used || !g->buckets)
        return KZ_ENOMEM;
    if (kz__fixmap_init(&g->by_addr, n, a) || kz__fixmap_init(&g->by_client, n, a) ||
        kz__fixmap_init(&g->by_token, g->used_cap, a))
        return KZ_ENOMEM;
    if (kz_counters_init(&g->counters, KZ_GATE_C_COUNT, 1, kz__gate_counter_names, a))
        return KZ_ENOMEM;
    /* Hand out low slots first. */
    for (uint32_t i = 0; i < n; i++)
        g->free_stack[i] = n - 1 - i;
    g->n_free = n;
    return KZ_OK;
}

kz__gate *kz__gate_create(const kz__gate_config *cfg)
{
    kz__gate_config c = *cfg;
    if (kz__crypto_init() != KZ_OK || kz__gate_config_resolve(&c) != KZ_OK) {
        kz_logf(&cfg->log, KZ_LOG_ERROR, "gate", "invalid gate configuration");
        return NULL;
    }
    kz__gate *g = kz_calloc(&c.alloc, sizeof *g, 64);
    if (g == NULL)
        return NULL;
    g->cfg = c;
    if (kz__gate_alloc_tables(g) != KZ_OK) {
        kz__gate_destroy(g);
        return NULL;
    }
    g->c = kz_counters_block(&g->counters, 0);
    g->moved = -1;
    randombytes_buf(g->rate_key, sizeof g->rate_key);
    randombytes_buf(g->cookie_key, sizeof g->cookie_key);
    return g;
}

void kz__gate_destroy(kz__gate *g)
{
    if (g == NULL)
        return;
    const kz_allocator a = g->cfg.alloc;
    uint32_t n = g->cfg.max_sessions;
    if (g->slots)
        sodium_memzero(g->slots, (size_t)n * sizeof *g->slots);
    kz_free(&a, g->slots, (size_t)n * sizeof *g->slots);
    kz_free(&a, g->free_stack, (size_t)n * sizeof *g->free_stack);
    kz_free(&a, g->used, (size_t)g->used_cap * sizeof *g->used);
    kz_free(&a, g->buckets, (size_t)g->cfg.rate_buckets * sizeof *g->buckets);
    kz__fixmap_fini(&g->by_addr);
    kz__fixmap_fini(&g->by_client);
    kz__fixmap_fini(&g->by_token);
    kz_counters_fini(&g->counters);
    sodium_memzero(g, sizeof *g);
    kz_free(&a, g, sizeof *g);
}

size_t kz__gate_footprint(const kz__gate *g)
{
    uint32_t n = g->cfg.max_sessions;
    return sizeof *g + (size_t)n * (sizeof *g->slots + sizeof *g->free_stack) +
           (size_t)g->used_cap * sizeof *g->used +
           (size_t)g->cfg.rate_buckets * sizeof *g->buckets +
           (size_t)(g->by_addr.mask + 1 + g->by_client.mask + 1 + g->by_token.mask + 1) *
               sizeof(kz__fixmap_entry);
}

/* ---- rate limit ---------------------------------------------------------- */

/* Takes one token from the verification budget of `from`'s IP (port
 * ignored: one host varies ports for free). Charged only for requests whose
 * cookie proved the source address, so only someone who receives at that
 * address can spend it. 1 when allowed. */
static int kz__rate_take(kz__gate *g, const kz_address *from, kz_time_ns now)
{
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, from->ip, 16, g->rate_key);
    kz__rate_bucket *b = &g->buckets[kz__load_u64(h) & (g->cfg.rate_buckets - 1)];
    uint32_t now_ms = (uint32_t)(now / KZ_NS_PER_MS);
    uint64_t cap = (uint64_t)g->cfg.challenge_burst * 1000;
    /* last_ms == 0 marks a bucket never used: it starts full. Several I/O
     * threads pass their own (slightly different) clocks: time that seems
     * to run backwards refills nothing and never moves last_ms back. */
    uint64_t tokens = b->last_ms == 0 ? cap : b->milli_tokens;
    int32_t elapsed = b->last_ms == 0 ? 0 : (int32_t)(now_ms - b->last_ms);
    if (elapsed > 0)
        tokens += (uint64_t)elapsed * g->cfg.challenge_rate;
    tokens = tokens > cap ? cap : tokens;
    if (b->last_ms == 0 || elapsed > 0)
        b->last_ms = now_ms ? now_ms : 1;
    if (tokens < 1000) {
        b->milli_tokens = (uint32_t)tokens;
        return 0;
    }
    b->milli_tokens = (uint32_t)(tokens - 1000);
    return 1;
}

/* ---- cookies ------------------------------------------------------------- */

static void kz__cookie_mac(const kz__gate *g, const kz_address *from, uint64_t bucket,
                           uint8_t mac[KZ_COOKIE_MAC_BYTES])
{
    uint8_t msg[KZ_ADDRESS_BYTES + 8];
    kz__addr_bytes(from, msg);
    kz__store_u64(msg + KZ_ADDRESS_BYTES, bucket);
    crypto_generichash(mac, KZ_COOKIE_MAC_BYTES, msg, sizeof msg, g->cookie_key,
                       sizeof g->cookie_key);
}

static void kz__cookie_make(const kz__gate *g, const kz_address *from, kz_time_ns now,
                            uint8_t cookie[KZ_COOKIE_BYTES])
{
    uint64_t bucket = now / (KZ_COOKIE_PERIOD_SECONDS * KZ_NS_PER_S);
    kz__store_u64(cookie, bucket);
    kz__cookie_mac(g, from, bucket, cookie + 8);
}

/* Valid when made for this address in this or the previous time bucket. */
static int kz__cookie_valid(const kz__gate *g, const kz_address *from, kz_time_ns now,
                            const uint8_t cookie[KZ_COOKIE_BYTES])
{
    uint64_t bucket = kz__load_u64(cookie);
    uint64_t current = now / (KZ_COOKIE_PERIOD_SECONDS * KZ_NS_PER_S);
    if (bucket != current && bucket + 1 != current)
        return 0;
    uint8_t mac[KZ_COOKIE_MAC_BYTES];
    kz__cookie_mac(g, from, bucket, mac);
    return sodium_memcmp(mac, cookie + 8, KZ_COOKIE_MAC_BYTES) == 0;
}

/* ---- replies ------------------------------------------------------------- */

static void kz__gate_header(uint8_t *out, uint8_t type)
{
    out[0] = KZ_GATE_MARK0;
    out[1] = KZ_GATE_MARK1;
    out[2] = type;
    out[3] = (uint8_t)KZ_PROTOCOL_VERSION;
}

static size_t kz__reply_challenge(kz__gate *g, const kz_address *from, kz_time_ns now,
                                  uint8_t *out)
{
    kz__gate_header(out, KZ_GATE_CHALLENGE);
    kz__cookie_make(g, from, now, out + KZ_GATE_HEADER_BYTES);
    kz_counter_inc(g->c, KZ_GATE_C_CHALLENGES);
    return KZ_GATE_CHALLENGE_BYTES;
}

static size_t kz__reply_deny(kz__gate *g, uint8_t reason, uint8_t *out)
{
    kz__gate_header(out, KZ_GATE_DENY);
    out[KZ_GATE_HEADER_BYTES] = reason;
    kz_counter_inc(g->c, KZ_GATE_C_DENIES);
    return KZ_GATE_DENY_BYTES;
}

/* The client's key for gate replies, derived from its server-to-client
 * master key (protocol.h, KDF). */
static void kz__gate_key(const kz_session_keys *keys, uint8_t key[KZ_KEY_BYTES])
{
    crypto_kdf_derive_from_key(key, KZ_KEY_BYTES, KZ_KDF_ID_GATE, KZ_KDF_CONTEXT,
                               keys->server_to_client);
}

static size_t kz__reply_accept(kz__gate *g, uint32_t idx, uint8_t *out)
{
    const kz__gate_slot *s = &g->slots[idx];
    uint8_t plain[KZ_GATE_ACCEPT_PLAIN_BYTES], key[KZ_KEY_BYTES];
    kz__wbuf w = kz__wbuf_make(plain, sizeof plain);
    kz__put_u64(&w, s->session_id);
    kz__put_u8(&w, s->alg);
    kz__put_u8(&w, 0);
    kz__put_u16(&w, s->port);
    kz__put_u16(&w, (uint16_t)idx);
    kz__put_u16(&w, (uint16_t)(idx >> 16));
    kz__put_u16(&w, s->info.timeout_seconds);
    kz__gate_header(out, KZ_GATE_ACCEPT);
    uint8_t *nonce = out + KZ_GATE_HEADER_BYTES;
    randombytes_buf(nonce, KZ_GATE_ACCEPT_NONCE_BYTES);
    kz__gate_key(&s->keys, key);
    crypto_aead_xchacha20poly1305_ietf_encrypt(nonce + KZ_GATE_ACCEPT_NONCE_BYTES, NULL, plain,
                                               sizeof plain, out, KZ_GATE_HEADER_BYTES, NULL,
                                               nonce, key);
    sodium_memzero(key, sizeof key);
    kz_counter_inc(g->c, KZ_GATE_C_ACCEPTS);
    return KZ_GATE_ACCEPT_BYTES;
}

/* ---- requests ------------------------------------------------------------ */

/* Splits a request of exactly KZ_GATE_REQUEST_BYTES; 0 when any field is
 * out of range or the padding is not zero (one encoding per request). */
static int kz__request_parse(const uint8_t *d, kz__request *r)
{
    const uint8_t *p = d + KZ_GATE_HEADER_BYTES, *end = d + KZ_GATE_REQUEST_BYTES;
    uint8_t reserved;
    if (!kz__get_u8(&p, end, &r->aead_mask) || !kz__get_u8(&p, end, &reserved) ||
        !kz__get_u16(&p, end, &r->token_len) || reserved != 0 || r->aead_mask == 0 ||
        (r->aead_mask & ~(KZ_AEAD_BIT_CHACHA20 | KZ_AEAD_BIT_AES256GCM)) != 0 ||
        r->token_len < KZ_TOKEN_MIN_BYTES || r->token_len > KZ_TOKEN_MAX_BYTES)
        return 0;
    r->cookie = p;
    r->proof = p + KZ_COOKIE_BYTES;
    r->token = r->proof + KZ_REQUEST_PROOF_BYTES;
    for (const uint8_t *q = r->token + r->token_len; q < end; q++)
        if (*q != 0)
            return 0;
    return 1;
}

static const uint32_t kz__verdict_counter[KZ_TOKEN_VERDICT_COUNT] = {
    [KZ_TOKEN_MALFORMED] = KZ_GATE_C_DROP_TOKEN_MALFORMED,
    [KZ_TOKEN_BAD_VERSION] = KZ_GATE_C_DROP_TOKEN_VERSION,
    [KZ_TOKEN_BAD_PROTOCOL] = KZ_GATE_C_DROP_TOKEN_PROTOCOL,
    [KZ_TOKEN_EXPIRED] = KZ_GATE_C_DROP_TOKEN_EXPIRED,
    [KZ_TOKEN_NOT_YET_VALID] = KZ_GATE_C_DROP_TOKEN_FUTURE,
    [KZ_TOKEN_WRONG_SERVER] = KZ_GATE_C_DROP_TOKEN_SERVER,
    [KZ_TOKEN_BAD_SIGNATURE] = KZ_GATE_C_DROP_TOKEN_SIGNATURE,
    [KZ_TOKEN_BAD_KEYS] = KZ_GATE_C_DROP_TOKEN_KEYS,
};

/* Counts a drop under its reason; logs it at most once a second per
 * reason, with how many went unlogged since, so a flood of one kind of bad
 * datagram cannot flood the log. */
static kz__gate_action kz__drop(kz__gate *g, uint32_t counter, const char *why)
{
    kz_counter_inc(g->c, counter);
    kz__drop_log *l = &g->drop_log[counter];
    if (l->logged && g->now < l->next) {
        l->unlogged++;
        return KZ_GATE_DROP;
    }
    if (kz_log_enabled(&g->cfg.log, KZ_LOG_DEBUG))
        kz_logf(&g->cfg.log, KZ_LOG_DEBUG, "gate", "drop: %s (and %llu more unlogged)", why,
                (unsigned long long)l->unlogged);
    l->logged = 1;
    l->unlogged = 0;
    l->next = g->now + KZ_NS_PER_S;
    return KZ_GATE_DROP;
}

static uint8_t kz__choose_cipher(const kz__gate *g, uint8_t client_mask)
{
    if ((client_mask & KZ_AEAD_BIT_AES256GCM) && !g->cfg.disable_aes &&
        kz__aead_aes_available())
        return KZ_AEAD_AES256GCM;
    return (client_mask & KZ_AEAD_BIT_CHACHA20) ? KZ_AEAD_CHACHA20 : 0;
}

/* The live record of the token with `hash`, if any. The map is keyed by
 * the first 8 bytes; the record holds all 16. */
static kz__used_token *kz__used_find(kz__gate *g, const uint8_t hash[16], uint64_t unix_now)
{
    uint32_t idx;
    if (!kz__fixmap_get(&g->by_token, kz__load_u64(hash), &idx) ||
        memcmp(g->used[idx].hash, hash, 16) != 0 || g->used[idx].expire_unix <= unix_now)
        return NULL;
    return &g->used[idx];
}

/* Records that `key` was used from `from`. The records form a ring: when
 * it is full the oldest is forgotten (after 4 * max_sessions newer tokens),
 * so the table stays fixed in size. */
static void kz__used_add(kz__gate *g, const uint8_t hash[16], const kz_address *from,
                         uint64_t expire)
{
    uint32_t idx;
    uint64_t key = kz__load_u64(hash);
    if (kz__fixmap_get(&g->by_token, key, &idx)) {
        /* Same token again, or a 64-bit prefix collision: either way the
         * newest use wins the record. */
        memcpy(g->used[idx].hash, hash, 16);
        g->used[idx].addr = *from;
        g->used[idx].expire_unix = expire;
        return;
    }
    if (g->used_count == g->used_cap) {
        kz__fixmap_del(&g->by_token, kz__load_u64(g->used[g->used_head].hash));
        g->used_head = (g->used_head + 1) % g->used_cap;
        g->used_count--;
    }
    idx = (g->used_head + g->used_count) % g->used_cap;
    memcpy(g->used[idx].hash, hash, 16);
    g->used[idx].expire_unix = expire;
    g->used[idx].addr = *from;
    g->used_count++;
    (void)kz__fixmap_put(&g->by_token, key, idx); /* room: ring and map sized alike */
}

/* Claims a slot for a verified token. Returns the slot or -1 (full). */
static int32_t kz__slot_claim(kz__gate *g, const kz_address *from, const kz_token_info *info,
                              const kz_session_keys *keys, const uint8_t token_hash[16],
                              const uint8_t cookie[KZ_COOKIE_BYTES], uint8_t alg, kz_time_ns now)
{
    if (g->n_free == 0)
        return -1;
    uint32_t idx = g->free_stack[--g->n_free];
    kz__gate_slot *s = &g->slots[idx];
    s->state = KZ_SLOT_PENDING;
    s->alg = alg;
    s->port = g->cfg.ports[g->next_port++ % g->cfg.n_ports];
    s->addr = *from;
    randombytes_buf(&s->session_id, sizeof s->session_id);
    s->pending_deadline = now + (kz_time_ns)g->cfg.pending_timeout_ms * KZ_NS_PER_MS;
    memcpy(s->token_hash, token_hash, 16);
    memcpy(s->admit_cookie, cookie, KZ_COOKIE_BYTES);
    s->connect_tag = kz__connect_tag(keys, s->session_id);
    s->connect_id_set = 0;
    kz__enet_mac_pair_derive(&s->mac, keys, s->session_id);
    s->keys = *keys;
    s->info = *info;
    s->ticket.slot = idx;
    s->ticket.path = 1;
    s->ticket.session_id = s->session_id;
    randombytes_buf(s->ticket.secret, sizeof s->ticket.secret);
    (void)kz__fixmap_put(&g->by_addr, kz__addr_key(g, from), idx);
    (void)kz__fixmap_put(&g->by_client, info->client_id, idx);
    return (int32_t)idx;
}

/* The drop counter of a token verdict; verdicts without a counter of their
 * own are counted as malformed tokens. */
static uint32_t kz__verdict_drop(kz_token_verdict v)
{
    uint32_t c = (unsigned)v < KZ_TOKEN_VERDICT_COUNT ? kz__verdict_counter[v] : 0;
    return c ? c : KZ_GATE_C_DROP_TOKEN_MALFORMED;
}

/* The slot held by `client_id`, or -1. */
static int32_t kz__client_slot(const kz__gate *g, uint64_t client_id)
{
    uint32_t idx;
    return kz__fixmap_get(&g->by_client, client_id, &idx) ? (int32_t)idx : -1;
}

/* The DENY a refusing gate (draining, unavailable) answers new sessions. */
static kz__gate_action kz__deny_refusing(kz__gate *g, uint8_t *reply, size_t *reply_len)
{
    kz_counter_inc(g->c, g->refusing == KZ_DENY_SHUTTING_DOWN ? KZ_GATE_C_DROP_DRAINING
                                                              : KZ_GATE_C_DROP_UNAVAILABLE);
    *reply_len = kz__reply_deny(g, g->refusing, reply);
    return KZ_GATE_REPLY;
}

/* Checks of a proven request that need the gate's tables, made before the
 * signature check (so repeats and reuse cost nothing) and again after it
 * (another thread may have claimed the address, token or client id in
 * between). KZ_GATE_VERIFY means "go on". */
static kz__gate_action kz__proven_tables(kz__gate *g, const kz_address *from,
                                         const uint8_t token_hash[16], uint64_t client_id,
                                         const uint8_t *cookie, uint64_t unix_now,
                                         uint8_t *reply, size_t *reply_len)
{
    int32_t held = kz__slot_of(g, from);
    /* With resume on, a connect of a client whose session lives (a process
     * restarted with its token file) goes on to full verification, and is
     * then allowed to replace that session (kz__replace). */
    int replaceable = g->cfg.resume_grace_ms != 0 && kz__client_slot(g, client_id) >= 0;
    if (held >= 0) {
        const kz__gate_slot *h = &g->slots[held];
        int same = sodium_memcmp(h->token_hash, token_hash, 16) == 0;
        /* The admitting REQUEST again (a replay or a duplicate) is answered
         * as before resume existed: its ACCEPT again, no verification. */
        int replay = same && sodium_memcmp(cookie, h->admit_cookie, KZ_COOKIE_BYTES) == 0;
        if (same && (h->state == KZ_SLOT_PENDING || !replaceable || replay)) {
            *reply_len = kz__reply_accept(g, (uint32_t)held, reply); /* lost accept: resend */
            return KZ_GATE_REPLY;
        }
        if (!replaceable || h->info.client_id != client_id)
            return kz__drop(g, KZ_GATE_C_DROP_ADDR_IN_USE, "address holds another session");
        return g->refusing ? kz__deny_refusing(g, reply, reply_len) : KZ_GATE_VERIFY;
    }
    /* A token used from another address is refused while resume is off.
     * With resume on, the proof of key possession is what binds a token
     * (a copy without the keys gets nothing), so its holder may come back
     * from anywhere: a restart after its old session ended, or a live
     * session replaced (kz__replace). */
    kz__used_token *used = kz__used_find(g, token_hash, unix_now);
    if (used && !kz__addr_eq(&used->addr, from) && g->cfg.resume_grace_ms == 0) {
        kz_counter_inc(g->c, KZ_GATE_C_DROP_TOKEN_REUSE);
        *reply_len = kz__reply_deny(g, KZ_DENY_TOKEN_IN_USE, reply);
        return KZ_GATE_REPLY;
    }
    /* After the cookie round trip, so the deny goes only to a proven
     * address; before the signature check, which would be wasted. */
    return g->refusing ? kz__deny_refusing(g, reply, reply_len) : KZ_GATE_VERIFY;
}

/* First half of a proven request, under the caller's lock: table checks
 * and the per-source budget, then the job for the signature check. */
static kz__gate_action kz__request_proven(kz__gate *g, const kz_address *from,
                                          const kz__request *r, uint64_t client_id,
                                          kz_time_ns now, uint64_t unix_now, uint8_t *reply,
                                          size_t *reply_len, kz__gate_job *job)
{
    uint8_t token_hash[16];
    crypto_generichash(token_hash, sizeof token_hash, r->token, r->token_len, NULL, 0);
    kz__gate_action act = kz__proven_tables(g, from, token_hash, client_id, r->cookie, unix_now,
                                            reply, reply_len);
    if (act != KZ_GATE_VERIFY)
        return act;
    if (!kz__rate_take(g, from, now))
        return kz__drop(g, KZ_GATE_C_DROP_RATE, "verification rate");
    kz_counter_inc(g->c, KZ_GATE_C_VERIFIES);
    memset(job, 0, sizeof *job);
    job->from = *from;
    job->request = *r;
    memcpy(job->token_hash, token_hash, sizeof token_hash);
    job->verifier = g->cfg.verifier;
    return KZ_GATE_VERIFY;
}

void kz__gate_job_run(kz__gate_job *job, uint64_t unix_now)
{
    const kz__request *r = &job->request;
    job->verdict = kz_token_verify(&job->verifier, r->token, r->token_len, unix_now, &job->info,
                                   &job->keys);
    sodium_memzero(&job->verifier, sizeof job->verifier);
    if (job->verdict != KZ_TOKEN_VALID)
        return;
    uint8_t proof[KZ_REQUEST_PROOF_BYTES];
    kz__request_proof(&job->keys, r->cookie, r->token, r->token_len, proof);
    job->proof_ok = sodium_memcmp(proof, r->proof, sizeof proof) == 0;
}

#define KZ__REPLACING INT32_MAX

/* A verified connect for a client id whose slot `other` is taken (resume
 * on). A slot still pending (its ENet connect never came) is freed at
 * once: it is no session yet. A session is marked for its host to end
 * (KZ_KICK_REPLACED) when the new token is not older than its own; the
 * token's record moves to the new address, so the client's next REQUEST
 * (after the slot is freed) passes the reuse check. Returns -1 (the slot
 * is free: claim), KZ__REPLACING (answer "replacing, ask again") or
 * `other` (an older token: the client id stays in use). */
static int32_t kz__replace(kz__gate *g, uint32_t other, const kz__gate_job *job)
{
    kz__gate_slot *o = &g->slots[other];
    if (job->info.create_time < o->info.create_time)
        return (int32_t)other;
    if (o->state == KZ_SLOT_PENDING) {
        kz__gate_release(g, other);
        return -1;
    }
    /* The REQUEST that admitted the session, replayed from where it was
     * sent (its cookie is valid only there): not a restart. A restarted
     * client asks for a cookie of its own, which differs unless it is at
     * the same address within the same cookie period. */
    if (sodium_memcmp(job->request.cookie, o->admit_cookie, KZ_COOKIE_BYTES) == 0)
        return (int32_t)other;
    /* Only a silent session is replaced: a live one is never taken over,
     * so no replayed REQUEST (whatever its cookie) can end a client that is
     * talking. A crashed client's session goes silent within
     * KZ_DETACH_SILENCE_MS; until then its successor is told to ask again. */
    if (!o->silent && !o->replace)
        return KZ__REPLACING;
    if (!o->replace) {
        o->replace = 1;
        o->ending = 1;
        g->replacing++;
        kz_counter_inc(g->c, KZ_GATE_C_REPLACED);
        kz_logf(&g->cfg.log, KZ_LOG_INFO, "gate",
                "client %llu connected again: its session in slot %u is replaced",
                (unsigned long long)job->info.client_id, other);
    }
    kz__used_add(g, job->token_hash, &job->from, job->info.expire_time);
    return KZ__REPLACING;
}

/* Claims a slot for a verified job (tables checked again). */
static kz__gate_action kz__job_claim(kz__gate *g, kz__gate_job *job, kz_time_ns now,
                                     uint64_t unix_now, uint8_t *reply, size_t *reply_len)
{
    kz__gate_action act = kz__proven_tables(g, &job->from, job->token_hash, job->info.client_id,
                                            job->request.cookie, unix_now, reply, reply_len);
    if (act != KZ_GATE_VERIFY)
        return act;
    uint8_t alg = kz__choose_cipher(g, job->request.aead_mask);
    if (alg == 0)
        return kz__drop(g, KZ_GATE_C_DROP_NO_CIPHER, "no common cipher");
    int32_t other = kz__client_slot(g, job->info.client_id);
    if (other >= 0 && g->cfg.resume_grace_ms != 0)
        other = kz__replace(g, (uint32_t)other, job);
    if (other >= 0) {
        int waiting = other == KZ__REPLACING;
        kz_counter_inc(g->c, waiting ? KZ_GATE_C_REPLACE_WAITS : KZ_GATE_C_DROP_CLIENT_IN_USE);
        *reply_len =
            kz__reply_deny(g, waiting ? KZ_DENY_REPLACING : KZ_DENY_CLIENT_IN_USE, reply);
        return KZ_GATE_REPLY;
    }
    int32_t idx = kz__slot_claim(g, &job->from, &job->info, &job->keys, job->token_hash,
                                 job->request.cookie, alg, now);
    if (idx < 0) {
        kz_counter_inc(g->c, KZ_GATE_C_DROP_FULL);
        *reply_len = kz__reply_deny(g, KZ_DENY_SERVER_FULL, reply);
        return KZ_GATE_REPLY;
    }
    kz__used_add(g, job->token_hash, &job->from, job->info.expire_time);
    *reply_len = kz__reply_accept(g, (uint32_t)idx, reply);
    return KZ_GATE_REPLY;
}

kz__gate_action kz__gate_job_finish(kz__gate *g, kz__gate_job *job, kz_time_ns now,
                                    uint64_t unix_now, uint8_t *reply, size_t reply_cap,
                                    size_t *reply_len)
{
    KZ_ASSERT(reply_cap >= KZ_GATE_REQUEST_BYTES);
    g->now = now;
    g->moved = -1; /* a move another thread made while this job ran is not ours */
    *reply_len = 0;
    kz__gate_action act;
    if (job->verdict != KZ_TOKEN_VALID)
        act = kz__drop(g, kz__verdict_drop(job->verdict), kz_token_verdict_name(job->verdict));
    else if (!job->proof_ok)
        act = kz__drop(g, KZ_GATE_C_DROP_PROOF, "request proof (token used without its keys)");
    else
        act = kz__job_claim(g, job, now, unix_now, reply, reply_len);
    if (act == KZ_GATE_REPLY)
        kz_counter_add(g->c, KZ_GATE_C_TX_BYTES, *reply_len);
    sodium_memzero(job, sizeof *job);
    return act;
}

static kz__gate_action kz__gate_request(kz__gate *g, const kz_address *from, const uint8_t *d,
                                        size_t len, kz_time_ns now, uint64_t unix_now,
                                        uint8_t *reply, size_t *reply_len, kz__gate_job *job)
{
    kz__request r;
    if (len != KZ_GATE_REQUEST_BYTES)
        return kz__drop(g, KZ_GATE_C_DROP_SIZE, "request size");
    if (d[3] != KZ_PROTOCOL_VERSION)
        return kz__drop(g, KZ_GATE_C_DROP_VERSION, "protocol version");
    if (!kz__request_parse(d, &r))
        return kz__drop(g, KZ_GATE_C_DROP_REQUEST_FORMAT, "request fields");
    kz_token_info info;
    kz_token_verdict v = kz_token_precheck(&g->cfg.verifier, r.token, r.token_len, unix_now, &info);
    if (v != KZ_TOKEN_VALID)
        return kz__drop(g, kz__verdict_drop(v), kz_token_verdict_name(v));
    if (!kz__cookie_valid(g, from, now, r.cookie)) {
        static const uint8_t zero[KZ_COOKIE_BYTES];
        if (sodium_memcmp(r.cookie, zero, KZ_COOKIE_BYTES) != 0)
            kz_counter_inc(g->c, KZ_GATE_C_BAD_COOKIE);
        /* No budget here: a request without a valid cookie proves nothing
         * about its source, so charging the source's budget would let a
         * spoofer spend a victim's (a player's, a whole NAT's) admission.
         * A challenge costs one keyed hash and a reply smaller than the
         * request, so a flood of them costs the flooder more than us. */
        *reply_len = kz__reply_challenge(g, from, now, reply);
        return KZ_GATE_REPLY;
    }
    return kz__request_proven(g, from, &r, info.client_id, now, unix_now, reply, reply_len, job);
}

/* ---- resume (docs/PROTOCOL.md, "Resume") --------------------------------- */

/* The slot whose live session the ticket names, or NULL. *prev is set when
 * it names the previous path (the RESUMED that handed over the current
 * ticket was lost): from the session's address it earns that RESUMED
 * again, from another proven address it moves the session once more.
 * Secrets compared in constant time. */
static kz__gate_slot *kz__ticket_slot(kz__gate *g, const uint8_t *bytes, int *prev)
{
    kz__ticket t;
    kz__ticket_unpack(bytes, &t);
    *prev = 0;
    if (t.slot >= g->cfg.max_sessions)
        return NULL;
    kz__gate_slot *s = &g->slots[t.slot];
    if (s->state != KZ_SLOT_CONNECTED || s->ending || t.session_id != s->session_id)
        return NULL;
    if (t.path == s->ticket.path && sodium_memcmp(t.secret, s->ticket.secret, 16) == 0)
        return s;
    if (s->ticket.path > 1 && t.path + 1u == s->ticket.path &&
        sodium_memcmp(t.secret, s->prev_secret, 16) == 0) {
        *prev = 1;
        return s;
    }
    return NULL;
}

static size_t kz__reply_resumed(const kz__gate_slot *s, uint8_t *out)
{
    uint8_t ticket[KZ_TICKET_BYTES];
    kz__ticket_pack(&s->ticket, ticket);
    size_t n = kz__resumed_seal(&s->keys, ticket, out);
    sodium_memzero(ticket, sizeof ticket);
    return n;
}

/* A CHALLENGE or DENY answering a RESUME ends with that RESUME's proof, so
 * a client takes only answers to what it sent: a blind spoofer cannot
 * forge one (PROTOCOL.md "Resume"). Returns the new length. */
static size_t kz__echo_proof(uint8_t *reply, size_t len, const kz__resume *r)
{
    memcpy(reply + len, r->proof, KZ_RESUME_PROOF_BYTES);
    return len + KZ_RESUME_PROOF_BYTES;
}

/* Moves the session of slot `idx` to `from`: the address map follows, the
 * ticket is used up (a new path number and secret). */
static void kz__session_move(kz__gate *g, uint32_t idx, const kz_address *from)
{
    kz__gate_slot *s = &g->slots[idx];
    kz__fixmap_del(&g->by_addr, kz__addr_key(g, &s->addr));
    s->addr = *from;
    (void)kz__fixmap_put(&g->by_addr, kz__addr_key(g, from), idx); /* room: one per slot */
    memcpy(s->prev_secret, s->ticket.secret, sizeof s->prev_secret);
    s->ticket.path++;
    randombytes_buf(s->ticket.secret, sizeof s->ticket.secret);
    g->moved = (int32_t)idx;
}

/* A RESUME, in the order of docs/PROTOCOL.md "Server processing of a
 * RESUME". No public-key work: at most two keyed BLAKE2b computations. */
static kz__gate_action kz__gate_resume(kz__gate *g, const kz_address *from, const uint8_t *d,
                                       size_t len, kz_time_ns now, uint8_t *reply,
                                       size_t *reply_len)
{
    kz__resume r;
    if (len != KZ_GATE_RESUME_BYTES)
        return kz__drop(g, KZ_GATE_C_DROP_SIZE, "resume size");
    if (d[3] != KZ_PROTOCOL_VERSION)
        return kz__drop(g, KZ_GATE_C_DROP_VERSION, "protocol version");
    if (kz__resume_parse(d, len, &r) != KZ_OK)
        return kz__drop(g, KZ_GATE_C_DROP_REQUEST_FORMAT, "resume fields");
    if (!kz__cookie_valid(g, from, now, r.cookie)) {
        static const uint8_t zero[KZ_COOKIE_BYTES];
        if (sodium_memcmp(r.cookie, zero, KZ_COOKIE_BYTES) != 0)
            kz_counter_inc(g->c, KZ_GATE_C_BAD_COOKIE);
        *reply_len = kz__reply_challenge(g, from, now, reply);
        *reply_len = kz__echo_proof(reply, *reply_len, &r);
        return KZ_GATE_REPLY;
    }
    int prev = 0;
    kz__gate_slot *s = g->cfg.resume_grace_ms ? kz__ticket_slot(g, r.ticket, &prev) : NULL;
    if (s == NULL) {
        (void)kz__drop(g, g->cfg.resume_grace_ms ? KZ_GATE_C_RESUME_TICKET : KZ_GATE_C_RESUME_OFF,
                       g->cfg.resume_grace_ms ? "resume: no live session holds the ticket"
                                              : "resume: resume is off");
        *reply_len = kz__reply_deny(g, KZ_DENY_NO_SESSION, reply);
        *reply_len = kz__echo_proof(reply, *reply_len, &r);
        return KZ_GATE_REPLY;
    }
    if (!kz__resume_proof_ok(&s->keys, d))
        return kz__drop(g, KZ_GATE_C_RESUME_PROOF, "resume proof (ticket used without its keys)");
    uint32_t idx = (uint32_t)(s - g->slots);
    if (kz__addr_eq(&s->addr, from)) {
        kz_counter_inc(g->c, prev ? KZ_GATE_C_RESUME_RESENT : KZ_GATE_C_RESUME_SAME);
    } else {
        if (kz__slot_of(g, from) >= 0)
            return kz__drop(g, KZ_GATE_C_DROP_ADDR_IN_USE, "address holds another session");
        kz__session_move(g, idx, from);
        kz_counter_inc(g->c, KZ_GATE_C_RESUMES);
    }
    *reply_len = kz__reply_resumed(s, reply);
    return KZ_GATE_REPLY;
}

/* The CONNECT command of a datagram whose header is `h`, or NULL when the
 * datagram does not hold one whole (ENet's own layout, by its names). */
static const ENetProtocolConnect *kz__enet_connect_command(const uint8_t *d, size_t len,
                                                          const kz__enet_header *h)
{
    size_t at = h->checksum_at + KZ_ENET_CHECKSUM_BYTES;
    if (len < at + sizeof(ENetProtocolConnect))
        return NULL;
    const ENetProtocolConnect *c = (const ENetProtocolConnect *)(d + at);
    if ((c->header.command & ENET_PROTOCOL_COMMAND_MASK) != ENET_PROTOCOL_COMMAND_CONNECT)
        return NULL;
    return c;
}

/* ENet datagrams addressed to ENET_PROTOCOL_MAXIMUM_PEER_ID carry a
 * CONNECT. One is let through only for a pending slot, only with a valid
 * MAC under the slot's client-to-server ENet key (checksum field zero, as
 * ENet computes it for a CONNECT), only with the slot's connect tag in its
 * data field (big-endian, as ENet sends it), and only with the connectID
 * of the first one let through (its retransmissions): one ENet peer per
 * slot, opened by the key holder. Other ENet datagrams are the
 * transport's to authenticate (enet_mac.h). */
static kz__gate_action kz__enet_connect_check(kz__gate *g, kz__gate_slot *s, const uint8_t *d,
                                              size_t len)
{
    kz__enet_header h;
    if (!kz__enet_header_parse(d, len, &h))
        return kz__drop(g, KZ_GATE_C_DROP_ENET_CONNECT, "short ENet datagram");
    if (h.peer_id != ENET_PROTOCOL_MAXIMUM_PEER_ID)
        return KZ_GATE_PASS;
    const ENetProtocolConnect *c = kz__enet_connect_command(d, len, &h);
    if (s->state != KZ_SLOT_PENDING || c == NULL || len > ENET_PROTOCOL_MAXIMUM_MTU)
        return kz__drop(g, KZ_GATE_C_DROP_ENET_CONNECT, "ENet connect not for this slot");
    uint8_t copy[ENET_PROTOCOL_MAXIMUM_MTU];
    uint32_t tag;
    memcpy(copy, d, len);
    if (!kz__enet_mac_check(&s->mac.client_to_server, copy, len, &h, 0, &tag))
        return kz__drop(g, KZ_GATE_C_DROP_ENET_CONNECT_MAC, "ENet connect with a bad MAC");
    if (ENET_NET_TO_HOST_32(c->data) != s->connect_tag)
        return kz__drop(g, KZ_GATE_C_DROP_ENET_CONNECT, "ENet connect without the slot's tag");
    _Static_assert(sizeof c->connectID == sizeof s->connect_id, "connectID is 32 bits");
    if (s->connect_id_set && memcmp(&c->connectID, s->connect_id, sizeof s->connect_id) != 0)
        return kz__drop(g, KZ_GATE_C_DROP_ENET_CONNECT, "second ENet connect for one slot");
    memcpy(s->connect_id, &c->connectID, sizeof s->connect_id);
    s->connect_id_set = 1;
    return KZ_GATE_PASS;
}

kz__gate_action kz__gate_datagram_begin(kz__gate *g, const kz_address *from,
                                        const uint8_t *data, size_t len, kz_time_ns now,
                                        uint64_t unix_now, uint8_t *reply, size_t reply_cap,
                                        size_t *reply_len, kz__gate_job *job)
{
    KZ_ASSERT(reply_cap >= KZ_GATE_REQUEST_BYTES);
    g->now = now;
    g->moved = -1;
    kz_counter_inc(g->c, KZ_GATE_C_RX_DATAGRAMS);
    kz_counter_add(g->c, KZ_GATE_C_RX_BYTES, len);
    *reply_len = 0;
    if (len < 2 || data[0] != KZ_GATE_MARK0 || data[1] != KZ_GATE_MARK1) {
        int32_t slot = kz__slot_of(g, from);
        if (slot < 0)
            return kz__drop(g, KZ_GATE_C_DROP_UNVALIDATED, "datagram from unvalidated address");
        if (kz__enet_connect_check(g, &g->slots[slot], data, len) != KZ_GATE_PASS)
            return KZ_GATE_DROP;
        kz_counter_inc(g->c, KZ_GATE_C_PASSED);
        return KZ_GATE_PASS;
    }
    if (len < KZ_GATE_HEADER_BYTES)
        return kz__drop(g, KZ_GATE_C_DROP_SIZE, "short gate datagram");
    kz__gate_action act;
    if (data[2] == KZ_GATE_REQUEST)
        act = kz__gate_request(g, from, data, len, now, unix_now, reply, reply_len, job);
    else if (data[2] == KZ_GATE_RESUME)
        act = kz__gate_resume(g, from, data, len, now, reply, reply_len);
    else
        return kz__drop(g, KZ_GATE_C_DROP_TYPE, "gate type a server does not take");
    if (act == KZ_GATE_REPLY)
        kz_counter_add(g->c, KZ_GATE_C_TX_BYTES, *reply_len);
    return act;
}

kz__gate_action kz__gate_datagram(kz__gate *g, const kz_address *from, const uint8_t *data,
                                  size_t len, kz_time_ns now, uint64_t unix_now, uint8_t *reply,
                                  size_t reply_cap, size_t *reply_len)
{
    kz__gate_job job;
    kz__gate_action act = kz__gate_datagram_begin(g, from, data, len, now, unix_now, reply,
                                                  reply_cap, reply_len, &job);
    if (act != KZ_GATE_VERIFY)
        return act;
    kz__gate_job_run(&job, unix_now);
    return kz__gate_job_finish(g, &job, now, unix_now, reply, reply_cap, reply_len);
}

/* ---- slots --------------------------------------------------------------- */

int32_t kz__gate_mark_connected(kz__gate *g, const kz_address *from)
{
    int32_t idx = kz__slot_of(g, from);
    if (idx < 0 || g->slots[idx].state != KZ_SLOT_PENDING)
        return -1;
    g->slots[idx].state = KZ_SLOT_CONNECTED;
    return idx;
}

void kz__gate_release(kz__gate *g, uint32_t idx)
{
    KZ_ASSERT(idx < g->cfg.max_sessions);
    kz__gate_slot *s = &g->slots[idx];
    if (s->state == KZ_SLOT_FREE)
        return;
    kz__fixmap_del(&g->by_addr, kz__addr_key(g, &s->addr));
    kz__fixmap_del(&g->by_client, s->info.client_id);
    if (s->replace)
        g->replacing--;
    sodium_memzero(s, sizeof *s);
    g->free_stack[g->n_free++] = idx;
}

void kz__gate_expire(kz__gate *g, kz_time_ns now)
{
    uint32_t n = g->cfg.max_sessions;
    for (uint32_t i = 0; i < KZ__EXPIRE_SCAN && i < n; i++) {
        uint32_t idx = g->expire_cursor++ % n;
        kz__gate_slot *s = &g->slots[idx];
        if (s->state == KZ_SLOT_PENDING && now >= s->pending_deadline) {
            kz_counter_inc(g->c, KZ_GATE_C_PENDING_EXPIRED);
            kz__gate_release(g, idx);
        }
    }
}

const kz__gate_slot *kz__gate_slot_at(const kz__gate *g, uint32_t idx)
{
    KZ_ASSERT(idx < g->cfg.max_sessions);
    return &g->slots[idx];
}

void kz__gate_set_silent(kz__gate *g, uint32_t idx, int silent)
{
    KZ_ASSERT(idx < g->cfg.max_sessions);
    if (g->slots[idx].state != KZ_SLOT_FREE)
        g->slots[idx].silent = (uint8_t)(silent != 0);
}

uint32_t kz__gate_replacing(const kz__gate *g)
{
    return g->replacing;
}

void kz__gate_end(kz__gate *g, uint32_t idx)
{
    KZ_ASSERT(idx < g->cfg.max_sessions);
    if (g->slots[idx].state != KZ_SLOT_FREE)
        g->slots[idx].ending = 1;
}

int32_t kz__gate_moved_slot(const kz__gate *g)
{
    return g->moved;
}

int32_t kz__gate_slot_index(const kz__gate *g, const kz_address *from)
{
    return kz__slot_of(g, from);
}

const kz_counters *kz__gate_counters(const kz__gate *g)
{
    return &g->counters;
}

uint32_t kz__gate_sessions(const kz__gate *g)
{
    return g->cfg.max_sessions - g->n_free;
}

int kz__gate_trust(kz__gate *g, const uint8_t (*keys)[KZ_SIGN_PUBLIC_KEY_BYTES], uint32_t n)
{
    if (n == 0 || n > KZ_TOKEN_MAX_BACKEND_KEYS)
        return KZ_EINVAL;
    memcpy(g->cfg.verifier.backend_pk, keys, (size_t)n * KZ_SIGN_PUBLIC_KEY_BYTES);
    g->cfg.verifier.n_backend_keys = n;
    return KZ_OK;
}

void kz__gate_set_accepting(kz__gate *g, int accepting)
{
    kz__gate_refuse(g, accepting ? 0 : KZ_DENY_SHUTTING_DOWN);
}

void kz__gate_refuse(kz__gate *g, uint8_t deny_reason)
{
    g->refusing = deny_reason;
    if (deny_reason == 0)
        return;
    /* Granted slots that never connected are not clients: a drain waiting
     * for "no sessions" would otherwise wait pending_timeout for each. Their
     * late ENet connects are refused; asking again earns a DENY. */
    for (uint32_t i = 0; i < g->cfg.max_sessions; i++)
        if (g->slots[i].state == KZ_SLOT_PENDING) {
            kz_counter_inc(g->c, KZ_GATE_C_PENDING_CANCELLED);
            kz__gate_release(g, i);
        }
}
