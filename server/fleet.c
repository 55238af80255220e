/*
 * The fleet directory in a JetStream key-value bucket (fleet.h): the
 * entry's key and JSON value, their checks, the NATS connection, the list
 * and the member's heartbeat thread.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <nats/nats.h>
#include <sodium.h>

#include "fleet.h"
#include "keys.h"
#include "public_address.h"

/* ---- names and keys ---------------------------------------------------- */

static const char *const kzs_fleet_verdict_names[KZS_FLEET_N_VERDICTS] = {
    "ok", "bad_key", "oversize", "bad_json", "bad_field", "mismatch",
};

static const char *const kzs_fleet_roles[] = {"authority", "edge", "single"};

const char *kzs_fleet_verdict_name(kzs_fleet_verdict v)
{
    return (unsigned)v < KZS_FLEET_N_VERDICTS ? kzs_fleet_verdict_names[v] : "unknown";
}

int kzs_fleet_world_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= KZS_FLEET_WORLD_SIZE)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)name[i]) || name[i] == '_' || name[i] == '-'))
            return 0;
    return 1;
}

int kzs_fleet_role_ok(const char *role)
{
    for (size_t i = 0; i < sizeof kzs_fleet_roles / sizeof kzs_fleet_roles[0]; i++)
        if (strcmp(role, kzs_fleet_roles[i]) == 0)
            return 1;
    return 0;
}

static int kzs_fleet_id_ok(const char *id)
{
    if (strlen(id) != KZS_FLEET_ID_SIZE - 1)
        return 0;
    for (size_t i = 0; id[i]; i++)
        if (!(isdigit((unsigned char)id[i]) || (id[i] >= 'a' && id[i] <= 'f')))
            return 0;
    return 1;
}

/* A program version: 1..32 printable ASCII characters, no spaces. */
static int kzs_fleet_version_ok(const char *v)
{
    size_t n = strlen(v);
    if (n == 0 || n >= KZS_FLEET_VERSION_SIZE)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isgraph((unsigned char)v[i]))
            return 0;
    return 1;
}

/* An address list a token could name (public_address syntax). */
static int kzs_fleet_address_ok(const char *a)
{
    return a[0] != '\0' && strlen(a) < KZS_FLEET_ADDRESS_SIZE &&
           kzs_public_address_parse(a, NULL, NULL) == NULL;
}

int kzs_fleet_key(const kzs_fleet_entry *e, char *out, size_t cap)
{
    if (!kzs_fleet_world_ok(e->world) || !kzs_fleet_role_ok(e->role) || !kzs_fleet_id_ok(e->id))
        return -1;
    int n = snprintf(out, cap, "%s.%s.%s", e->world, e->role, e->id);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* Splits `key` into its three parts and checks each. 0 or -1. */
static int kzs_fleet_key_split(const char *key, kzs_fleet_entry *parts)
{
    char buf[KZS_FLEET_KEY_SIZE];
    size_t n = strlen(key);
    if (n >= sizeof buf)
        return -1;
    memcpy(buf, key, n + 1);
    char *role = strchr(buf, '.');
    char *id = role ? strchr(role + 1, '.') : NULL;
    if (id == NULL || strchr(id + 1, '.') != NULL)
        return -1;
    *role++ = '\0';
    *id++ = '\0';
    if (!kzs_fleet_world_ok(buf) || !kzs_fleet_role_ok(role) || !kzs_fleet_id_ok(id))
        return -1;
    memcpy(parts->world, buf, strlen(buf) + 1);
    memcpy(parts->role, role, strlen(role) + 1);
    memcpy(parts->id, id, strlen(id) + 1);
    return 0;
}

/* ---- values ------------------------------------------------------------ */

/* Every field passes the checks a reader applies. An authority takes no
 * clients, so its address may be empty: it offers none to a token. */
static int kzs_fleet_entry_ok(const kzs_fleet_entry *e)
{
    int no_address = e->address[0] == '\0' && strcmp(e->role, "authority") == 0;
    return kzs_fleet_world_ok(e->world) && kzs_fleet_role_ok(e->role) &&
           kzs_fleet_id_ok(e->id) && (no_address || kzs_fleet_address_ok(e->address)) &&
           kzs_fleet_version_ok(e->version) && e->max >= 1 &&
           e->max <= KZS_FLEET_SESSIONS_MAX && e->sessions <= e->max;
}

int kzs_fleet_entry_encode(const kzs_fleet_entry *e, char *out, size_t cap)
{
    if (!kzs_fleet_entry_ok(e) || cap > INT32_MAX)
        return -1;
    cJSON *o = cJSON_CreateObject();
    int ok = o != NULL && cJSON_AddNumberToObject(o, "v", KZS_FLEET_FORMAT) &&
             cJSON_AddStringToObject(o, "world", e->world) &&
             cJSON_AddStringToObject(o, "role", e->role) &&
             cJSON_AddStringToObject(o, "id", e->id) &&
             cJSON_AddStringToObject(o, "address", e->address) &&
             cJSON_AddNumberToObject(o, "sessions", e->sessions) &&
             cJSON_AddNumberToObject(o, "max", e->max) &&
             cJSON_AddStringToObject(o, "version", e->version) &&
             cJSON_PrintPreallocated(o, out, (int)cap, 0);
    cJSON_Delete(o);
    return ok ? (int)strlen(out) : -1;
}

/* Copies the string field `name` of `o` into out[0..cap) if it is a
 * string that fits. 0 or -1. */
static int kzs_fleet_get_text(const cJSON *o, const char *name, char *out, size_t cap)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsString(f) || f->valuestring == NULL || strlen(f->valuestring) >= cap)
        return -1;
    memcpy(out, f->valuestring, strlen(f->valuestring) + 1);
    return 0;
}

/* Reads the number field `name` of `o` if it is a whole number in
 * 0..max. 0 or -1. */
static int kzs_fleet_get_count(const cJSON *o, const char *name, uint32_t max, uint32_t *out)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsNumber(f))
        return -1;
    double d = f->valuedouble;
    if (!isfinite(d) || d < 0 || d > (double)max || floor(d) != d)
        return -1;
    *out = (uint32_t)d;
    return 0;
}

/* Fills *e from the object `o`; the checks are those of encoding. */
static kzs_fleet_verdict kzs_fleet_fields(const cJSON *o, kzs_fleet_entry *e)
{
    uint32_t format;
    if (kzs_fleet_get_count(o, "v", UINT32_MAX, &format) != 0 || format != KZS_FLEET_FORMAT ||
        kzs_fleet_get_text(o, "world", e->world, sizeof e->world) != 0 ||
        kzs_fleet_get_text(o, "role", e->role, sizeof e->role) != 0 ||
        kzs_fleet_get_text(o, "id", e->id, sizeof e->id) != 0 ||
        kzs_fleet_get_text(o, "address", e->address, sizeof e->address) != 0 ||
        kzs_fleet_get_text(o, "version", e->version, sizeof e->version) != 0 ||
        kzs_fleet_get_count(o, "sessions", KZS_FLEET_SESSIONS_MAX, &e->sessions) != 0 ||
        kzs_fleet_get_count(o, "max", KZS_FLEET_SESSIONS_MAX, &e->max) != 0 ||
        !kzs_fleet_entry_ok(e))
        return KZS_FLEET_BAD_FIELD;
    return KZS_FLEET_OK;
}

kzs_fleet_verdict kzs_fleet_entry_parse(const char *key, const void *data, size_t len,
                                        kzs_fleet_entry *out)
{
    kzs_fleet_entry parts;
    char text[KZS_FLEET_VALUE_MAX + 1];
    memset(out, 0, sizeof *out);
    memset(&parts, 0, sizeof parts);
    if (key == NULL || kzs_fleet_key_split(key, &parts) != 0)
        return KZS_FLEET_BAD_KEY;
    if (len > KZS_FLEET_VALUE_MAX)
        return KZS_FLEET_OVERSIZE;
    if (len == 0 || data == NULL || memchr(data, '\0', len) != NULL)
        return KZS_FLEET_BAD_JSON;
    memcpy(text, data, len);
    text[len] = '\0';
    cJSON *o = cJSON_ParseWithLengthOpts(text, len + 1, NULL, 1);
    kzs_fleet_verdict v = KZS_FLEET_BAD_JSON;
    if (cJSON_IsObject(o))
        v = kzs_fleet_fields(o, out);
    cJSON_Delete(o);
    if (v == KZS_FLEET_OK && (strcmp(out->world, parts.world) != 0 ||
                              strcmp(out->role, parts.role) != 0 || strcmp(out->id, parts.id) != 0))
        v = KZS_FLEET_MISMATCH;
    if (v != KZS_FLEET_OK)
        memset(out, 0, sizeof *out);
    return v;
}

int kzs_fleet_address(const char *token_addresses, uint16_t port, char *out, size_t cap)
{
    char buf[KZS_FLEET_ADDRESS_SIZE * 2];
    size_t len = 0;
    if (strlen(token_addresses) >= sizeof buf || cap == 0)
        return -1;
    memcpy(buf, token_addresses, strlen(token_addresses) + 1);
    out[0] = '\0';
    for (char *save = NULL, *a = strtok_r(buf, " ", &save); a; a = strtok_r(NULL, " ", &save)) {
        size_t n = strlen(a);
        int any = n >= 2 && strcmp(a + n - 2, ":*") == 0;
        if (any)
            a[n - 1] = '\0'; /* keep the colon, the port follows */
        int w = any ? snprintf(out + len, cap - len, "%s%s%u", len ? "," : "", a, port)
                    : snprintf(out + len, cap - len, "%s%s", len ? "," : "", a);
        if (w < 0 || (size_t)w >= cap - len)
            return -1;
        len += (size_t)w;
    }
    return len > 0 ? 0 : -1;
}

/* ---- connection -------------------------------------------------------- */

struct kzs_fleet_conn {
    natsConnection *nc;
    jsCtx *js;
    kvStore *kv; /* NULL: no bucket yet (a reader that does not create) */
};

/* The largest credentials file read (a .creds file is about 1 KiB). */
#define KZS_FLEET_CREDS_MAX 8192u
/* The line that starts a NATS .creds file's JWT block. */
#define KZS_FLEET_CREDS_MARK "-----BEGIN NATS USER JWT-----"

/* Writes "what: status" into why, with the library's detail when it
 * says more than the status (its "(file.c:line): " prefix dropped). */
void kzs_fleet_why(char *why, size_t why_len, const char *what, natsStatus s)
{
    const char *text = natsStatus_GetText(s);
    const char *detail = nats_GetLastError(NULL);
    if (detail && detail[0] == '(' && strstr(detail, "): ") != NULL)
        detail = strstr(detail, "): ") + 3;
    if (detail == NULL || detail[0] == '\0' || strcmp(detail, text) == 0)
        snprintf(why, why_len, "%s: %s", what, text);
    else
        snprintf(why, why_len, "%s: %s (%s)", what, text, detail);
}

/* "user:password" on the first line of buf[0..len) into the options. */
static int kzs_fleet_user_password(natsOptions *o, char *buf, size_t len, const char *path,
                                   char *why, size_t why_len)
{
    size_t line = strcspn(buf, "\r\n");
    buf[line < len ? line : len] = '\0';
    char *colon = strchr(buf, ':');
    int ok = colon != NULL && colon != buf && colon[1] != '\0';
    for (size_t i = 0; ok && buf[i]; i++)
        ok = !iscntrl((unsigned char)buf[i]);
    if (!ok) {
        snprintf(why, why_len, "%s: expected a NATS .creds file or one line user:password", path);
        return -1;
    }
    *colon = '\0';
    /* Replies come to "_INBOX_<user>", every character of the user name
     * but [A-Za-z0-9_] as '_' ("plaza-edge-1" -> "_INBOX_plaza_edge_1"):
     * each user may read only its own replies (docs/SCALING.md section 4). */
    char prefix[96];
    snprintf(prefix, sizeof prefix, "_INBOX_%.80s", buf);
    for (char *c = prefix; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '_')
            *c = '_';
    natsStatus s = natsOptions_SetUserInfo(o, buf, colon + 1);
    if (s == NATS_OK)
        s = natsOptions_SetCustomInboxPrefix(o, prefix);
    if (s != NATS_OK) {
        kzs_fleet_why(why, why_len, "nats credentials", s);
        return -1;
    }
    return 0;
}

/* Applies the credentials file at `path` to the options. 0 or -1. */
static int kzs_fleet_credentials(natsOptions *o, const char *path, char *why, size_t why_len)
{
    static uint8_t buf[KZS_FLEET_CREDS_MAX + 1];
    size_t len = 0;
    mode_t mode = 0;
    if (kzs_file_read(path, buf, KZS_FLEET_CREDS_MAX, &len, &mode) != 0) {
        snprintf(why, why_len, "%s: cannot read the NATS credentials (see above)", path);
        return -1;
    }
    int rc = 0;
    buf[len] = '\0';
    if ((mode & 077) != 0) {
        snprintf(why, why_len, "%s: NATS credentials readable or writable by others (mode "
                 "%04o); chmod 600 it", path, (unsigned)(mode & 07777));
        rc = -1;
    } else if (memchr(buf, '\0', len) != NULL) {
        snprintf(why, why_len, "%s: NUL byte in the NATS credentials", path);
        rc = -1;
    } else if (strstr((const char *)buf, KZS_FLEET_CREDS_MARK) != NULL) {
        natsStatus s = natsOptions_SetUserCredentialsFromFiles(o, path, NULL);
        if (s != NATS_OK) {
            kzs_fleet_why(why, why_len, "nats credentials", s);
            rc = -1;
        }
    } else {
        rc = kzs_fleet_user_password(o, (char *)buf, len, path, why, why_len);
    }
    sodium_memzero(buf, sizeof buf);
    return rc;
}

natsOptions *kzs_fleet_options(const char *url, const char *credentials, int reconnect,
                               char *why, size_t why_len)
{
    natsOptions *o = NULL;
    if (strchr(url, '@') != NULL) {
        snprintf(why, why_len, "the NATS URL must not carry a user or password; put them in "
                 "the nats_credentials file");
        return NULL;
    }
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = natsOptions_SetURL(o, url);
    if (s == NATS_OK)
        s = natsOptions_SetName(o, "kizuna-server");
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(o, KZS_FLEET_TIMEOUT_MS);
    if (s == NATS_OK && reconnect) {
        s = natsOptions_SetMaxReconnect(o, -1);
        if (s == NATS_OK)
            s = natsOptions_SetReconnectWait(o, KZS_FLEET_RECONNECT_WAIT_MS);
    } else if (s == NATS_OK) {
        s = natsOptions_SetAllowReconnect(o, false);
    }
    if (s != NATS_OK) {
        kzs_fleet_why(why, why_len, "nats options", s);
        natsOptions_Destroy(o);
        return NULL;
    }
    if (credentials[0] != '\0' && kzs_fleet_credentials(o, credentials, why, why_len) != 0) {
        natsOptions_Destroy(o);
        return NULL;
    }
    return o;
}

/* Binds fc->kv to the bucket, creating it when asked. 0 or -1. */
static int kzs_fleet_bind(kzs_fleet_conn *fc, int create, char *why, size_t why_len)
{
    kvStore *kv = NULL;
    natsStatus s = js_KeyValue(&kv, fc->js, KZS_FLEET_BUCKET);
    if (s == NATS_NOT_FOUND && !create)
        return 0; /* no directory yet: an empty one */
    if (s == NATS_NOT_FOUND) {
        kvConfig kc;
        kvConfig_Init(&kc);
        kc.Bucket = KZS_FLEET_BUCKET;
        kc.Description = "kizuna-server fleet directory";
        kc.History = 1;
        kc.TTL = (int64_t)KZS_FLEET_TTL_MS * 1000000; /* the stream's MaxAge, nanoseconds */
        kc.MaxValueSize = KZS_FLEET_BUCKET_VALUE_MAX;
        kc.MaxBytes = KZS_FLEET_BUCKET_BYTES;
        kc.StorageType = js_FileStorage;
        s = js_CreateKeyValue(&kv, fc->js, &kc);
    }
    if (s != NATS_OK) {
        kzs_fleet_why(why, why_len, "cannot open the fleet directory (is JetStream on?)", s);
        return -1;
    }
    if (fc->kv)
        kvStore_Destroy(fc->kv);
    fc->kv = kv;
    return 0;
}

/*
 * The NATS library's threads (reader, flusher, timers) inherit the signal
 * mask of the thread that starts them: they are started with every signal
 * blocked, so signals reach the program's own threads only.
 */
static void kzs_fleet_block_signals(sigset_t *old)
{
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, old);
}

kzs_fleet_conn *kzs_fleet_connect(const char *url, const char *credentials, int create,
                                  int reconnect, char *why, size_t why_len)
{
    kzs_fleet_conn *fc = calloc(1, sizeof *fc);
    if (fc == NULL) {
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    sigset_t old;
    kzs_fleet_block_signals(&old);
    natsOptions *o = kzs_fleet_options(url, credentials, reconnect, why, why_len);
    natsStatus s = o ? natsConnection_Connect(&fc->nc, o) : NATS_ERR;
    natsOptions_Destroy(o);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (o != NULL && s != NATS_OK) {
        char what[KZS_FLEET_ADDRESS_SIZE + 32];
        snprintf(what, sizeof what, "cannot reach NATS at %s", url);
        kzs_fleet_why(why, why_len, what, s);
    }
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = KZS_FLEET_TIMEOUT_MS;
    if (s == NATS_OK && (s = natsConnection_JetStream(&fc->js, fc->nc, &jo)) != NATS_OK)
        kzs_fleet_why(why, why_len, "nats jetstream", s);
    if (s != NATS_OK || kzs_fleet_bind(fc, create, why, why_len) != 0) {
        kzs_fleet_disconnect(fc);
        return NULL;
    }
    return fc;
}

void kzs_fleet_disconnect(kzs_fleet_conn *fc)
{
    if (fc == NULL)
        return;
    kvStore_Destroy(fc->kv);
    jsCtx_Destroy(fc->js);
    natsConnection_Destroy(fc->nc);
    free(fc);
    /* One connection per process: release the library's own threads too,
     * so that nothing of NATS outlives its last user. */
    nats_CloseAndWait(KZS_FLEET_TIMEOUT_MS);
}

/* ---- list -------------------------------------------------------------- */

/* One entry of a list: counted as skipped, or handed to fn. */
static void kzs_fleet_list_one(kvEntry *e, void (*fn)(void *, const kzs_fleet_entry *),
                               void *ctx, kzs_fleet_skips *skips)
{
    kzs_fleet_entry entry;
    int len = kvEntry_ValueLen(e);
    kzs_fleet_verdict v = kzs_fleet_entry_parse(kvEntry_Key(e), kvEntry_Value(e),
                                                len < 0 ? 0 : (size_t)len, &entry);
    if (v == KZS_FLEET_OK)
        fn(ctx, &entry);
    else
        skips->by[v]++;
}

int kzs_fleet_list(kzs_fleet_conn *fc, const char *world,
                   void (*fn)(void *ctx, const kzs_fleet_entry *e), void *ctx,
                   kzs_fleet_skips *skips, char *why, size_t why_len)
{
    char filter[KZS_FLEET_WORLD_SIZE + 2];
    memset(skips, 0, sizeof *skips);
    if (world && world[0] && !kzs_fleet_world_ok(world)) {
        snprintf(why, why_len, "a world name is 1 to 32 characters of [A-Za-z0-9_-]");
        return -1;
    }
    if (fc->kv == NULL)
        return 0;
    snprintf(filter, sizeof filter, "%s", world && world[0] ? world : ">");
    if (world && world[0])
        strcat(filter, ".>");
    kvWatchOptions wo;
    kvWatchOptions_Init(&wo);
    wo.IgnoreDeletes = true;
    kvWatcher *w = NULL;
    natsStatus s = kvStore_Watch(&w, fc->kv, filter, &wo);
    for (uint32_t n = 0; s == NATS_OK; n++) {
        kvEntry *e = NULL;
        s = kvWatcher_Next(&e, w, KZS_FLEET_TIMEOUT_MS);
        if (s != NATS_OK || e == NULL)
            break; /* NULL: the values present when the list started are all read */
        if (n == KZS_FLEET_LIST_MAX) {
            skips->truncated = kvEntry_Delta(e) + 1; /* this one and those pending */
            kvEntry_Destroy(e);
            break;
        }
        kzs_fleet_list_one(e, fn, ctx, skips);
        kvEntry_Destroy(e);
    }
    kvWatcher_Destroy(w);
    if (s != NATS_OK) {
        kzs_fleet_why(why, why_len, "cannot read the fleet directory", s);
        return -1;
    }
    return 0;
}

/* ---- choosing members for a token --------------------------------------- */

void kzs_fleet_choice_init(kzs_fleet_choice *c, const char *world)
{
    memset(c, 0, sizeof *c);
    snprintf(c->world, sizeof c->world, "%s", world);
}

/* 1 when a ranks before b: more free capacity, then the smaller id, then
 * the smaller role. Both passed kzs_fleet_entry_ok, so sessions <= max. */
static int kzs_fleet_ranks_before(const kzs_fleet_entry *a, const kzs_fleet_entry *b)
{
    uint32_t free_a = a->max - a->sessions, free_b = b->max - b->sessions;
    if (free_a != free_b)
        return free_a > free_b;
    int by_id = strcmp(a->id, b->id);
    return by_id != 0 ? by_id < 0 : strcmp(a->role, b->role) < 0;
}

static int kzs_fleet_loopback(const kz_address *a)
{
    static const uint8_t v6_loopback[16] = {[15] = 1};
    return a->family == KZ_ADDR_IPV4 ? a->ip[0] == 127
                                     : memcmp(a->ip, v6_loopback, sizeof v6_loopback) == 0;
}

/* The address a token names for e: its first non-loopback one, else its
 * first. 0, or -1 when the list does not parse (cannot happen for a
 * checked entry). */
static int kzs_fleet_token_address(const kzs_fleet_entry *e, kz_address *out)
{
    kz_address list[KZ_VERIFIER_MAX_ADDRESSES];
    uint32_t n = 0;
    if (kzs_public_address_parse(e->address, list, &n) != NULL || n == 0)
        return -1;
    *out = list[0];
    for (uint32_t i = 0; i < n; i++)
        if (!kzs_fleet_loopback(&list[i])) {
            *out = list[i];
            break;
        }
    return 0;
}

static int kzs_fleet_same_address(const kz_address *a, const kz_address *b)
{
    size_t ip_len = a->family == KZ_ADDR_IPV4 ? 4 : 16;
    return a->family == b->family && a->port == b->port && memcmp(a->ip, b->ip, ip_len) == 0;
}

static void kzs_fleet_choice_remove(kzs_fleet_choice *c, uint32_t i)
{
    memmove(&c->chosen[i], &c->chosen[i + 1], (c->n - i - 1) * sizeof c->chosen[0]);
    memmove(&c->address[i], &c->address[i + 1], (c->n - i - 1) * sizeof c->address[0]);
    c->n--;
}

/* Puts e at its rank; the last one falls off when the list is full. */
static void kzs_fleet_choice_insert(kzs_fleet_choice *c, const kzs_fleet_entry *e,
                                    const kz_address *a)
{
    uint32_t at = 0;
    while (at < c->n && kzs_fleet_ranks_before(&c->chosen[at], e))
        at++;
    if (at == KZS_FLEET_CHOICE_MAX) {
        c->left_out++;
        return;
    }
    if (c->n == KZS_FLEET_CHOICE_MAX) {
        c->left_out++;
        c->n--;
    }
    memmove(&c->chosen[at + 1], &c->chosen[at], (c->n - at) * sizeof c->chosen[0]);
    memmove(&c->address[at + 1], &c->address[at], (c->n - at) * sizeof c->address[0]);
    c->chosen[at] = *e;
    c->address[at] = *a;
    c->n++;
}

void kzs_fleet_choice_offer(void *choice, const kzs_fleet_entry *e)
{
    kzs_fleet_choice *c = choice;
    kz_address a;
    if (strcmp(e->world, c->world) != 0) {
        c->other_world++;
        return;
    }
    if (strcmp(e->role, "single") != 0 && strcmp(e->role, "edge") != 0) {
        c->authority++;
        return;
    }
    if (e->sessions >= e->max) {
        c->full++;
        return;
    }
    if (kzs_fleet_token_address(e, &a) != 0) {
        c->bad_address++; /* not for a checked entry; counted, never used */
        return;
    }
    for (uint32_t i = 0; i < c->n; i++) {
        if (!kzs_fleet_same_address(&c->address[i], &a))
            continue;
        c->duplicate++;
        if (!kzs_fleet_ranks_before(e, &c->chosen[i]))
            return;
        kzs_fleet_choice_remove(c, i);
        break;
    }
    kzs_fleet_choice_insert(c, e, &a);
}

int kzs_fleet_choose(kzs_fleet_conn *fc, const char *world, kzs_fleet_choice *c,
                     kzs_fleet_skips *skips, char *why, size_t why_len)
{
    kzs_fleet_choice_init(c, world);
    if (!kzs_fleet_world_ok(world)) {
        memset(skips, 0, sizeof *skips);
        snprintf(why, why_len, "a world name is 1 to 32 characters of [A-Za-z0-9_-]");
        return -1;
    }
    return kzs_fleet_list(fc, world, kzs_fleet_choice_offer, c, skips, why, why_len);
}

uint64_t kzs_fleet_skips_total(const kzs_fleet_skips *sk)
{
    uint64_t n = sk->truncated;
    for (int v = 1; v < KZS_FLEET_N_VERDICTS; v++)
        n += sk->by[v];
    return n;
}

char *kzs_fleet_skips_format(const kzs_fleet_skips *sk, char *out, size_t cap)
{
    size_t len = 0;
    if (cap == 0)
        return out;
    out[0] = '\0';
    for (int v = 1; v <= KZS_FLEET_N_VERDICTS; v++) {
        uint64_t count = v < KZS_FLEET_N_VERDICTS ? sk->by[v] : sk->truncated;
        const char *name = v < KZS_FLEET_N_VERDICTS ? kzs_fleet_verdict_name((kzs_fleet_verdict)v)
                                                    : "truncated";
        if (count == 0 || len >= cap)
            continue;
        int w = snprintf(out + len, cap - len, "%s%s=%llu", len ? " " : "", name,
                         (unsigned long long)count);
        len = w < 0 ? cap : len + (size_t)w;
    }
    return out;
}

/* ---- member ------------------------------------------------------------ */

/* While the directory cannot be written, a reminder line at most this
 * often. */
#define KZS_FLEET_REMIND_NS (10ull * 1000000000ull)

struct kzs_fleet_member {
    kzs_fleet_conn *fc;
    kz_log log;
    kzs_fleet_entry self;     /* fixed fields; the load comes from the atomics */
    char key[KZS_FLEET_KEY_SIZE];
    _Atomic uint32_t sessions, max;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    int stop;                 /* under mu */
    int thread_started;
    pthread_t thread;
    /* The heartbeat thread's own state. */
    int failing;
    uint64_t failures, remind_at;
};

static uint64_t kzs_fleet_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Writes the member's value once. Returns the NATS status. */
static natsStatus kzs_fleet_put(kzs_fleet_member *m)
{
    kzs_fleet_entry e = m->self;
    char value[KZS_FLEET_VALUE_MAX];
    e.max = atomic_load(&m->max);
    e.sessions = atomic_load(&m->sessions);
    if (e.sessions > e.max)
        e.sessions = e.max;
    int len = kzs_fleet_entry_encode(&e, value, sizeof value);
    if (len < 0)
        return NATS_INVALID_ARG; /* cannot happen: the fields were checked at join */
    return kvStore_Put(NULL, m->fc->kv, m->key, value, len);
}

/* One heartbeat: write, and after a failure try to bind the bucket again
 * (a restarted nats-server without its store, or a deleted bucket).
 * State changes are logged, and a reminder every ten seconds. */
static void kzs_fleet_beat(kzs_fleet_member *m)
{
    char why[256];
    natsStatus s = kzs_fleet_put(m);
    if (s == NATS_NOT_FOUND || s == NATS_NO_RESPONDERS) {
        if (kzs_fleet_bind(m->fc, 1, why, sizeof why) == 0)
            s = kzs_fleet_put(m);
    }
    uint64_t now = kzs_fleet_now_ns();
    if (s == NATS_OK) {
        if (m->failing)
            kz_logf(&m->log, KZ_LOG_INFO, "fleet", "fleet_registered key=%s failures=%llu",
                    m->key, (unsigned long long)m->failures);
        m->failing = 0;
        return;
    }
    m->failures++;
    if (!m->failing || now >= m->remind_at) {
        kzs_fleet_why(why, sizeof why, "heartbeat", s);
        char quoted[320];
        kz_logf(&m->log, KZ_LOG_WARN, "fleet",
                "fleet_unreachable key=%s failures=%llu error=\"%s\"", m->key,
                (unsigned long long)m->failures, kz_log_quote(why, quoted, sizeof quoted));
        m->remind_at = now + KZS_FLEET_REMIND_NS;
    }
    m->failing = 1;
}

/* Waits until the next heartbeat is due or a stop is asked; returns 1 to
 * stop. Called with mu held. */
static int kzs_fleet_wait(kzs_fleet_member *m)
{
    struct timespec at;
    clock_gettime(CLOCK_MONOTONIC, &at);
    at.tv_sec += KZS_FLEET_HEARTBEAT_MS / 1000u;
    at.tv_nsec += (long)(KZS_FLEET_HEARTBEAT_MS % 1000u) * 1000000L;
    if (at.tv_nsec >= 1000000000L) {
        at.tv_sec++;
        at.tv_nsec -= 1000000000L;
    }
    while (!m->stop && pthread_cond_timedwait(&m->wake, &m->mu, &at) != ETIMEDOUT) {
    }
    return m->stop;
}

static void *kzs_fleet_thread(void *arg)
{
    kzs_fleet_member *m = arg;
    pthread_mutex_lock(&m->mu);
    while (!kzs_fleet_wait(m)) {
        pthread_mutex_unlock(&m->mu);
        kzs_fleet_beat(m);
        pthread_mutex_lock(&m->mu);
    }
    pthread_mutex_unlock(&m->mu);
    natsStatus s = kvStore_Delete(m->fc->kv, m->key);
    kz_logf(&m->log, s == NATS_OK ? KZ_LOG_INFO : KZ_LOG_WARN, "fleet",
            "fleet_left key=%s deleted=%d", m->key, s == NATS_OK);
    return NULL;
}

static int kzs_fleet_member_sync_init(kzs_fleet_member *m)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return -1;
    int rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(&m->wake, &ca);
    pthread_condattr_destroy(&ca);
    if (rc == 0 && pthread_mutex_init(&m->mu, NULL) != 0) {
        pthread_cond_destroy(&m->wake);
        rc = -1;
    }
    return rc == 0 ? 0 : -1;
}

/* The member's fixed fields from `self`, a fresh id, the key. 0 or -1. */
static int kzs_fleet_member_identity(kzs_fleet_member *m, const kzs_fleet_entry *self)
{
    uint8_t raw[(KZS_FLEET_ID_SIZE - 1) / 2];
    m->self = *self;
    randombytes_buf(raw, sizeof raw);
    sodium_bin2hex(m->self.id, sizeof m->self.id, raw, sizeof raw);
    m->self.sessions = 0;
    atomic_store(&m->sessions, 0u);
    atomic_store(&m->max, self->max);
    return kzs_fleet_entry_ok(&m->self) && kzs_fleet_key(&m->self, m->key, sizeof m->key) == 0
               ? 0 : -1;
}

/* A bucket made by someone else with another time to live changes how fast
 * a dead member leaves: said once, at join. */
static void kzs_fleet_check_ttl(const kzs_fleet_member *m)
{
    kvStatus *st = NULL;
    if (kvStore_Status(&st, m->fc->kv) != NATS_OK)
        return;
    int64_t ttl_ms = kvStatus_TTL(st) / 1000000;
    kvStatus_Destroy(st);
    if (ttl_ms != (int64_t)KZS_FLEET_TTL_MS)
        kz_logf(&m->log, KZ_LOG_WARN, "fleet",
                "fleet_bucket_ttl bucket=%s ttl_ms=%lld expected_ms=%u why=\"the bucket was "
                "made with another time to live; delete it to have it made again\"",
                KZS_FLEET_BUCKET, (long long)ttl_ms, KZS_FLEET_TTL_MS);
}

kzs_fleet_member *kzs_fleet_member_join(kzs_fleet_conn *fc, const kzs_fleet_entry *self,
                                        kz_log log, char *why, size_t why_len)
{
    kzs_fleet_member *m = calloc(1, sizeof *m);
    if (m == NULL || kzs_fleet_member_sync_init(m) != 0) {
        snprintf(why, why_len, "out of memory");
        free(m);
        kzs_fleet_disconnect(fc);
        return NULL;
    }
    m->fc = fc;
    m->log = log;
    natsStatus s = NATS_INVALID_ARG;
    if (kzs_fleet_member_identity(m, self) != 0)
        snprintf(why, why_len, "fleet entry: world, role, address or version malformed");
    else if ((s = kzs_fleet_put(m)) != NATS_OK)
        kzs_fleet_why(why, why_len, "cannot register in the fleet directory", s);
    sigset_t old;
    kzs_fleet_block_signals(&old);
    if (s == NATS_OK && pthread_create(&m->thread, NULL, kzs_fleet_thread, m) != 0) {
        snprintf(why, why_len, "cannot start the fleet heartbeat thread");
        s = NATS_ERR;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (s != NATS_OK) {
        if (m->key[0] && kzs_fleet_entry_ok(&m->self))
            (void)kvStore_Delete(fc->kv, m->key); /* best effort: the TTL ends it anyway */
        kzs_fleet_member_leave(m);
        return NULL;
    }
    m->thread_started = 1;
    kzs_fleet_check_ttl(m);
    kz_logf(&log, KZ_LOG_INFO, "fleet", "fleet_joined key=%s bucket=%s ttl_ms=%u heartbeat_ms=%u",
            m->key, KZS_FLEET_BUCKET, KZS_FLEET_TTL_MS, KZS_FLEET_HEARTBEAT_MS);
    return m;
}

void kzs_fleet_member_set_load(kzs_fleet_member *m, uint32_t sessions, uint32_t max)
{
    if (m == NULL)
        return;
    atomic_store(&m->sessions, sessions);
    if (max >= 1 && max <= KZS_FLEET_SESSIONS_MAX)
        atomic_store(&m->max, max);
}

const char *kzs_fleet_member_key(const kzs_fleet_member *m)
{
    return m->key;
}

void kzs_fleet_member_stop(kzs_fleet_member *m)
{
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->mu);
    m->stop = 1;
    pthread_cond_signal(&m->wake);
    pthread_mutex_unlock(&m->mu);
}

void kzs_fleet_member_leave(kzs_fleet_member *m)
{
    if (m == NULL)
        return;
    kzs_fleet_member_stop(m);
    if (m->thread_started)
        pthread_join(m->thread, NULL);
    kzs_fleet_disconnect(m->fc);
    pthread_cond_destroy(&m->wake);
    pthread_mutex_destroy(&m->mu);
    free(m);
}
