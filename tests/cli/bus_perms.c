/*
 * kz-bus-perms: connects to NATS as one user and tries a list of actions
 * on the bus, printing for each whether the server allowed or refused it,
 * so that tests can check the per-role permissions of docs/SCALING.md
 * section 4 against a real nats-server.
 *
 *   kz-bus-perms [OPTION]... URL CREDENTIALS ACTION...
 *
 * CREDENTIALS is a file holding one line `user:password`, as a Kizuna
 * process's nats_credentials file does. Options:
 *
 *   --inbox PREFIX        reply prefix (natsOptions_SetCustomInboxPrefix)
 *   --peer CREDENTIALS    the user that publishes for the recv actions
 *   --peer-inbox PREFIX   that user's reply prefix
 *   --ca FILE             trust this CA for a tls:// URL (libnats 3.4.1
 *                         trusts OpenSSL's default store besides)
 *   --cert FILE --key FILE   the client certificate chain and its key
 *   --hostname NAME       the name the server's certificate must carry
 *   --wait MS             how long an allowed JetStream call may take (5000)
 *   --bucket NAME         the key-value bucket of the kv- actions (kizuna_fleet)
 *
 * Actions (each on a connection of its own, so that a refusal is never
 * taken for the next action's):
 *
 *   pub:SUBJECT           publish one message
 *   sub:SUBJECT           subscribe
 *   recv:SUBJECT=PUBLISH  subscribe to SUBJECT; the peer publishes to PUBLISH;
 *                         ok when that message arrives within two seconds
 *   wait:SUBJECT:MS       subscribe, print `ACTION listening`, then wait up to MS
 *                         for any message (one another process makes arrive)
 *   kv-create             create the bucket (the directory's settings, with a
 *                         time to live of 10 minutes, so a test's entries stay)
 *   kv-put:KEY  kv-claim:KEY (kvStore_Create)  kv-get:KEY  kv-del:KEY
 *   kv-status  kv-list[:FILTER] (kvStore_Watch, as `fleet list` reads)
 *   kv-scan[:FILTER]      the same keys read with direct gets only (no consumer)
 *   kv-fill:PREFIX:N      N values of 1000 bytes under PREFIX.<16 hex digits>
 *   stream-delete:NAME  stream-purge:NAME
 *   consumer:DELIVER      a push consumer on the bucket's stream delivering to DELIVER
 *
 * Output: `connect ok` or `connect refused <reason>` first, then one line
 * per action: `ACTION ok [detail]`, `ACTION denied SUBJECT` (the subject
 * the server named in its permissions violation), `ACTION missed` (a recv
 * whose message never came) or `ACTION failed <reason>`. Exit 0 when every
 * action ran, 1 when the first connection was refused, 2 on a usage error.
 * No password is ever printed.
 *
 * How a refusal is seen: nats-server answers a refused publish or
 * subscription with `-ERR 'Permissions Violation for ... "SUBJECT"'` and
 * keeps the connection. libnats records it as the connection's last error
 * (NATS_NOT_PERMITTED) and calls the error handler. The server handles a
 * connection's commands in order, so once a flush's PONG is back the
 * refusal of anything sent before it has been read: the last error is then
 * exact, and no timing is involved. A refused JetStream request gets no
 * reply at all; the error handler then closes the connection, which
 * releases the waiting call at once instead of after its timeout.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

#define KZB_BUCKET "kizuna_fleet"
#define KZB_DETAIL_MAX 4096
#define KZB_LIST_SHOWN 16
#define KZB_FILL_BYTES 1000
#define KZB_SUBJECT_MAX 512
#define KZB_FIELD_MAX 256
#define KZB_RECV_WAIT_MS 2000
#define KZB_CONNECT_TIMEOUT_MS 5000
#define KZB_BUCKET_TTL_NS (600ll * 1000 * 1000 * 1000)
#define KZB_BUCKET_VALUE_MAX 4096
#define KZB_BUCKET_BYTES (16 * 1024 * 1024)

/* Who connects, and how. */
typedef struct {
    const char *url;
    char user[KZB_FIELD_MAX];
    char pass[KZB_FIELD_MAX];
    const char *inbox;
    const char *ca, *cert, *key, *hostname;
} kzb_ident;

/*
 * One connection and what its error handler saw. The handler runs on a
 * library thread and may come after the connection was destroyed (libnats
 * keeps the connection alive for it), so each connection has a record of
 * its own that lives until the library's threads are stopped at exit.
 */
typedef struct kzb_conn {
    struct kzb_conn *next; /* the run's list of records to free at exit */
    natsConnection *nc;
    pthread_mutex_t mu;
    int denied;   /* a permissions violation arrived */
    int done;     /* the verdict is taken: a later refusal closes nothing */
    int guard;    /* a refusal closes the connection (JetStream actions) */
    char subject[KZB_SUBJECT_MAX]; /* the first refused subject */
} kzb_conn;

typedef struct {
    kzb_ident self, peer;
    int have_peer;
    int64_t wait_ms;
    const char *bucket;
    kzb_conn **spent; /* every connection's record, freed at exit */
} kzb_run;

/* Reads `user:password` from the first line of `path`. 0 or -1. */
static int kzb_read_credentials(const char *path, kzb_ident *id)
{
    char line[2 * KZB_FIELD_MAX];
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        perror(path);
        return -1;
    }
    int got = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    char *colon = got ? strchr(line, ':') : NULL;
    if (colon == NULL) {
        fprintf(stderr, "kz-bus-perms: %s: want one line user:password\n", path);
        return -1;
    }
    *colon = '\0';
    colon[1 + strcspn(colon + 1, "\r\n")] = '\0';
    if (strlen(line) >= sizeof id->user || strlen(colon + 1) >= sizeof id->pass) {
        fprintf(stderr, "kz-bus-perms: %s: user or password too long\n", path);
        return -1;
    }
    strcpy(id->user, line);
    strcpy(id->pass, colon + 1);
    return 0;
}

/* The subject a violation text names: between its outer double quotes. */
static void kzb_violation_subject(const char *text, char *out, size_t len)
{
    const char *a = strchr(text, '"');
    const char *b = strrchr(text, '"');
    if (a == NULL || b == a)
        snprintf(out, len, "%s", text);
    else
        snprintf(out, len, "%.*s", (int)(b - a - 1), a + 1);
}

static void kzb_on_error(natsConnection *nc, natsSubscription *sub, natsStatus err,
                         void *closure)
{
    kzb_conn *c = closure;
    const char *text = NULL;
    if (err != NATS_NOT_PERMITTED)
        return;
    (void)natsConnection_GetLastError(nc, &text);
    pthread_mutex_lock(&c->mu);
    if (!c->denied)
        kzb_violation_subject(text ? text : "?", c->subject, sizeof c->subject);
    c->denied = 1;
    int close_now = c->guard && !c->done;
    pthread_mutex_unlock(&c->mu);
    /* Close releases every blocking call on the connection (nats.h):
     * a refused JetStream request returns now instead of at its timeout. */
    if (close_now)
        natsConnection_Close(nc);
}

static natsStatus kzb_options(natsOptions **out, const kzb_ident *id, kzb_conn *c)
{
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = natsOptions_SetURL(o, id->url);
    if (s == NATS_OK)
        s = natsOptions_SetUserInfo(o, id->user, id->pass);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(o, KZB_CONNECT_TIMEOUT_MS);
    if (s == NATS_OK)
        s = natsOptions_SetAllowReconnect(o, false);
    if (s == NATS_OK)
        s = natsOptions_SetErrorHandler(o, kzb_on_error, c);
    if (s == NATS_OK && id->inbox)
        s = natsOptions_SetCustomInboxPrefix(o, id->inbox);
    if (s == NATS_OK && (id->ca || id->cert))
        s = natsOptions_SetSecure(o, true);
    if (s == NATS_OK && id->ca)
        s = natsOptions_LoadCATrustedCertificates(o, id->ca);
    if (s == NATS_OK && id->cert)
        s = natsOptions_LoadCertificatesChain(o, id->cert, id->key);
    if (s == NATS_OK && id->hostname)
        s = natsOptions_SetExpectedHostname(o, id->hostname);
    if (s != NATS_OK)
        natsOptions_Destroy(o);
    else
        *out = o;
    return s;
}

/* Connects as `id`; *out is the new record (also on failure: close it).
 * On failure a reason (never the password) in why. */
static natsStatus kzb_connect(kzb_conn **out, const kzb_run *r, const kzb_ident *id, char *why,
                              size_t why_len)
{
    kzb_conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        perror("kz-bus-perms");
        exit(2);
    }
    pthread_mutex_init(&c->mu, NULL);
    c->next = *r->spent;
    *r->spent = c;
    *out = c;
    natsOptions *o = NULL;
    natsStatus s = kzb_options(&o, id, c);
    if (s == NATS_OK)
        s = natsConnection_Connect(&c->nc, o);
    natsOptions_Destroy(o);
    if (s != NATS_OK) {
        const char *detail = nats_GetLastError(NULL);
        snprintf(why, why_len, "%s: %s", natsStatus_GetText(s), detail ? detail : "");
    }
    return s;
}

static void kzb_close(kzb_conn *c)
{
    natsConnection_Destroy(c->nc);
}

/* After nats_CloseAndWait: no handler can run any more. */
static void kzb_free_spent(kzb_conn *list)
{
    while (list != NULL) {
        kzb_conn *next = list->next;
        pthread_mutex_destroy(&list->mu);
        free(list);
        list = next;
    }
}

/*
 * After a flush: 1 with the refused subject in `subject` when the server
 * refused something on this connection. The last error is exact once the
 * flush returned (see the file's head); the handler's record covers a
 * connection that the handler already closed.
 */
static int kzb_refused(kzb_conn *c, char *subject, size_t len)
{
    const char *text = NULL;
    pthread_mutex_lock(&c->mu);
    c->done = 1;
    int denied = c->denied;
    if (denied)
        snprintf(subject, len, "%s", c->subject);
    pthread_mutex_unlock(&c->mu);
    if (!denied && natsConnection_GetLastError(c->nc, &text) == NATS_NOT_PERMITTED) {
        kzb_violation_subject(text ? text : "?", subject, len);
        denied = 1;
    }
    return denied;
}

/* Prints the verdict of one action from its status and the refusals seen. */
static void kzb_verdict(const char *action, kzb_conn *c, natsStatus s, const char *detail)
{
    char subject[KZB_SUBJECT_MAX];
    if (s == NATS_OK)
        s = natsConnection_FlushTimeout(c->nc, KZB_CONNECT_TIMEOUT_MS);
    if (kzb_refused(c, subject, sizeof subject))
        printf("%s denied %s\n", action, subject);
    else if (s == NATS_OK)
        printf("%s ok%s%s\n", action, detail && detail[0] ? " " : "", detail ? detail : "");
    else
        printf("%s failed %s: %s\n", action, natsStatus_GetText(s),
               nats_GetLastError(NULL) ? nats_GetLastError(NULL) : "");
}

/* ---- core subjects ------------------------------------------------------ */

static void kzb_pub(kzb_conn *c, const char *action, const char *subject)
{
    natsStatus s = natsConnection_PublishString(c->nc, subject, "kz-bus-perms");
    kzb_verdict(action, c, s, NULL);
}

static void kzb_sub(kzb_conn *c, const char *action, const char *subject)
{
    natsSubscription *sub = NULL;
    natsStatus s = natsConnection_SubscribeSync(&sub, c->nc, subject);
    kzb_verdict(action, c, s, NULL);
    natsSubscription_Destroy(sub);
}

/* The peer publishes a marked message to `publish`; 0, or -1 with a line
 * printed when it could not. */
static int kzb_peer_publish(const kzb_run *r, const char *action, const char *publish,
                            const char *mark)
{
    kzb_conn *p = NULL;
    char why[KZB_SUBJECT_MAX], subject[KZB_SUBJECT_MAX];
    if (!r->have_peer) {
        printf("%s failed no --peer given\n", action);
        return -1;
    }
    if (kzb_connect(&p, r, &r->peer, why, sizeof why) != NATS_OK) {
        printf("%s failed peer connect %s\n", action, why);
        kzb_close(p);
        return -1;
    }
    natsStatus s = natsConnection_PublishString(p->nc, publish, mark);
    if (s == NATS_OK)
        s = natsConnection_FlushTimeout(p->nc, KZB_CONNECT_TIMEOUT_MS);
    int rc = 0;
    if (kzb_refused(p, subject, sizeof subject)) {
        printf("%s failed peer denied %s\n", action, subject);
        rc = -1;
    } else if (s != NATS_OK) {
        printf("%s failed peer publish %s\n", action, natsStatus_GetText(s));
        rc = -1;
    }
    kzb_close(p);
    return rc;
}

/* recv:SUBJECT=PUBLISH: the subscription must be allowed and the peer's
 * message on PUBLISH must reach it. */
static void kzb_recv(const kzb_run *r, kzb_conn *c, const char *action, const char *arg)
{
    char subject[KZB_SUBJECT_MAX], refused[KZB_SUBJECT_MAX], mark[64];
    snprintf(subject, sizeof subject, "%s", arg);
    char *eq = strchr(subject, '=');
    const char *publish = eq ? eq + 1 : arg;
    if (eq)
        *eq = '\0';
    natsSubscription *sub = NULL;
    natsStatus s = natsConnection_SubscribeSync(&sub, c->nc, subject);
    if (s == NATS_OK)
        s = natsConnection_FlushTimeout(c->nc, KZB_CONNECT_TIMEOUT_MS);
    if (kzb_refused(c, refused, sizeof refused)) {
        printf("%s denied %s\n", action, refused);
    } else if (s != NATS_OK) {
        printf("%s failed %s\n", action, natsStatus_GetText(s));
    } else {
        snprintf(mark, sizeof mark, "kz-bus-perms %p", (void *)sub);
        natsMsg *m = NULL;
        if (kzb_peer_publish(r, action, publish, mark) == 0) {
            s = natsSubscription_NextMsg(&m, sub, KZB_RECV_WAIT_MS);
            int same = s == NATS_OK && natsMsg_GetDataLength(m) == (int)strlen(mark) &&
                       memcmp(natsMsg_GetData(m), mark, strlen(mark)) == 0;
            printf("%s %s\n", action, same ? "ok" : "missed");
        }
        natsMsg_Destroy(m);
    }
    natsSubscription_Destroy(sub);
}

/* wait:SUBJECT:MS: subscribe, say so, and wait for any message. For a
 * message that someone else (a test's other process) makes arrive. */
static void kzb_wait(kzb_conn *c, const char *action, const char *arg)
{
    char subject[KZB_SUBJECT_MAX], refused[KZB_SUBJECT_MAX];
    snprintf(subject, sizeof subject, "%s", arg);
    char *colon = strrchr(subject, ':');
    int64_t ms = colon ? atoll(colon + 1) : KZB_RECV_WAIT_MS;
    if (colon)
        *colon = '\0';
    natsSubscription *sub = NULL;
    natsStatus s = natsConnection_SubscribeSync(&sub, c->nc, subject);
    if (s == NATS_OK)
        s = natsConnection_FlushTimeout(c->nc, KZB_CONNECT_TIMEOUT_MS);
    if (kzb_refused(c, refused, sizeof refused)) {
        printf("%s denied %s\n", action, refused);
    } else if (s != NATS_OK) {
        printf("%s failed %s\n", action, natsStatus_GetText(s));
    } else {
        printf("%s listening\n", action);
        fflush(stdout);
        natsMsg *m = NULL;
        s = natsSubscription_NextMsg(&m, sub, ms);
        if (s == NATS_OK)
            printf("%s ok %d bytes\n", action, natsMsg_GetDataLength(m));
        else
            printf("%s missed\n", action);
        natsMsg_Destroy(m);
    }
    natsSubscription_Destroy(sub);
}

/* ---- JetStream: the buckets --------------------------------------------- */

static natsStatus kzb_kv_create(const kzb_run *r, jsCtx *js, kvStore **kv)
{
    kvConfig kc;
    kvConfig_Init(&kc);
    kc.Bucket = r->bucket;
    kc.History = 1;
    kc.TTL = KZB_BUCKET_TTL_NS;
    kc.MaxValueSize = KZB_BUCKET_VALUE_MAX;
    kc.MaxBytes = KZB_BUCKET_BYTES;
    kc.StorageType = js_FileStorage;
    return js_CreateKeyValue(kv, js, &kc);
}

/* kv-list[:FILTER]: every key present, read as `fleet list` reads them;
 * detail gets the count, then the keys in stream order. */
static natsStatus kzb_kv_list(kvStore *kv, const char *filter, char *detail, size_t len)
{
    kvWatchOptions wo;
    kvWatchOptions_Init(&wo);
    wo.IgnoreDeletes = true;
    kvWatcher *w = NULL;
    int n = 0;
    size_t used = 0;
    char keys[KZB_DETAIL_MAX - 16] = ""; /* room left for the count */
    natsStatus s = kvStore_Watch(&w, kv, filter[0] ? filter : ">", &wo);
    while (s == NATS_OK) {
        kvEntry *e = NULL;
        s = kvWatcher_Next(&e, w, KZB_CONNECT_TIMEOUT_MS);
        if (s != NATS_OK || e == NULL)
            break; /* NULL: every value present at the start was read */
        int wrote = snprintf(keys + used, sizeof keys - used, " %s", kvEntry_Key(e));
        if (wrote > 0 && (size_t)wrote < sizeof keys - used)
            used += (size_t)wrote;
        n++;
        kvEntry_Destroy(e);
    }
    kvWatcher_Destroy(w);
    snprintf(detail, len, "%d%s", n, n <= KZB_LIST_SHOWN ? keys : " keys");
    return s;
}

/* The key a direct get's message names (its Nats-Subject header without
 * the bucket's prefix), or NULL for a delete or purge marker. */
static const char *kzb_scan_key(natsMsg *m, const char *prefix)
{
    const char *subject = NULL, *op = NULL;
    if (natsMsgHeader_Get(m, "Nats-Subject", &subject) != NATS_OK ||
        strncmp(subject, prefix, strlen(prefix)) != 0)
        return NULL;
    if (natsMsgHeader_Get(m, "KV-Operation", &op) == NATS_OK)
        return NULL; /* DEL or PURGE: the key is gone */
    return subject + strlen(prefix);
}

/* kv-scan[:FILTER]: every key present, read with direct gets only
 * (`next_by_subj` from sequence to sequence), so the reader needs no
 * consumer and no permission to create one. Same detail as kv-list. */
static natsStatus kzb_kv_scan(const kzb_run *r, jsCtx *js, const char *filter, char *detail,
                              size_t len)
{
    char stream[KZB_SUBJECT_MAX], prefix[KZB_SUBJECT_MAX], next[2 * KZB_SUBJECT_MAX];
    char keys[KZB_DETAIL_MAX - 16] = ""; /* room left for the count */
    size_t used = 0;
    int n = 0;
    snprintf(stream, sizeof stream, "KV_%s", r->bucket);
    snprintf(prefix, sizeof prefix, "$KV.%s.", r->bucket);
    snprintf(next, sizeof next, "%s%s", prefix, filter[0] ? filter : ">");
    jsDirectGetMsgOptions dg;
    jsDirectGetMsgOptions_Init(&dg);
    dg.NextBySubject = next;
    natsStatus s = NATS_OK;
    for (uint64_t seq = 1; s == NATS_OK;) {
        natsMsg *m = NULL;
        const char *got = NULL;
        dg.Sequence = seq;
        s = js_DirectGetMsg(&m, js, stream, NULL, &dg);
        if (s == NATS_OK && natsMsgHeader_Get(m, "Nats-Sequence", &got) == NATS_OK) {
            const char *key = kzb_scan_key(m, prefix);
            int wrote = key ? snprintf(keys + used, sizeof keys - used, " %s", key) : 0;
            if (wrote > 0 && (size_t)wrote < sizeof keys - used)
                used += (size_t)wrote;
            n += key != NULL;
            seq = strtoull(got, NULL, 10) + 1;
        } else if (s == NATS_OK) {
            s = NATS_PROTOCOL_ERROR; /* a direct get always names its sequence */
        }
        natsMsg_Destroy(m);
    }
    snprintf(detail, len, "%d%s", n, n <= KZB_LIST_SHOWN ? keys : " keys");
    return s == NATS_NOT_FOUND ? NATS_OK : s; /* not found: past the last one */
}

/* kv-fill:PREFIX:N: N values of KZB_FILL_BYTES under PREFIX.<16 hex digits>,
 * enough for a list to need JetStream's flow control. */
static natsStatus kzb_kv_fill(kvStore *kv, const char *arg, char *detail, size_t len)
{
    static char value[KZB_FILL_BYTES];
    char prefix[KZB_SUBJECT_MAX], key[KZB_SUBJECT_MAX + 20];
    snprintf(prefix, sizeof prefix, "%s", arg);
    char *colon = strrchr(prefix, ':');
    long n = colon ? atol(colon + 1) : 0;
    if (colon)
        *colon = '\0';
    memset(value, 'v', sizeof value);
    natsStatus s = n > 0 ? NATS_OK : NATS_INVALID_ARG;
    for (long i = 0; s == NATS_OK && i < n; i++) {
        snprintf(key, sizeof key, "%s.%016lx", prefix, (unsigned long)i);
        s = kvStore_Put(NULL, kv, key, value, (int)sizeof value);
    }
    snprintf(detail, len, "%ld", n);
    return s;
}

/* consumer:DELIVER: a push consumer on the bucket's stream that delivers
 * to DELIVER, as anyone allowed to create consumers could make. */
static natsStatus kzb_consumer(const kzb_run *r, jsCtx *js, const char *deliver)
{
    char stream[KZB_SUBJECT_MAX];
    jsConsumerConfig cc;
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    jsConsumerConfig_Init(&cc);
    cc.DeliverSubject = deliver;
    cc.DeliverPolicy = js_DeliverAll;
    cc.AckPolicy = js_AckNone;
    snprintf(stream, sizeof stream, "KV_%s", r->bucket);
    natsStatus s = js_AddConsumer(&ci, js, stream, &cc, NULL, &jerr);
    jsConsumerInfo_Destroy(ci);
    return s;
}

/* The actions that need the bucket bound first. */
static natsStatus kzb_kv_do(kvStore *kv, const char *verb, const char *arg, char *detail,
                            size_t len)
{
    kvEntry *e = NULL;
    natsStatus s = NATS_INVALID_ARG;
    if (strcmp(verb, "kv-put") == 0)
        s = kvStore_PutString(NULL, kv, arg, "kz-bus-perms");
    else if (strcmp(verb, "kv-claim") == 0)
        s = kvStore_CreateString(NULL, kv, arg, "kz-bus-perms");
    else if (strcmp(verb, "kv-del") == 0)
        s = kvStore_Delete(kv, arg);
    else if (strcmp(verb, "kv-list") == 0)
        s = kzb_kv_list(kv, arg, detail, len);
    else if (strcmp(verb, "kv-fill") == 0)
        s = kzb_kv_fill(kv, arg, detail, len);
    else if (strcmp(verb, "kv-status") == 0) {
        kvStatus *st = NULL;
        s = kvStore_Status(&st, kv);
        kvStatus_Destroy(st);
    } else if (strcmp(verb, "kv-get") == 0) {
        s = kvStore_Get(&e, kv, arg);
        if (s == NATS_OK)
            snprintf(detail, len, "%.*s", kvEntry_ValueLen(e), kvEntry_ValueString(e));
        else if (s == NATS_NOT_FOUND)
            snprintf(detail, len, "absent"); /* the read was allowed: no such key */
        s = s == NATS_NOT_FOUND ? NATS_OK : s;
    }
    kvEntry_Destroy(e);
    return s;
}

/* One JetStream action on an open connection; `detail` gets what to print. */
static natsStatus kzb_js_do(const kzb_run *r, jsCtx *js, const char *verb, const char *arg,
                            char *detail, size_t len)
{
    kvStore *kv = NULL;
    jsErrCode jerr = 0;
    natsStatus s;
    if (strcmp(verb, "kv-create") == 0)
        s = kzb_kv_create(r, js, &kv);
    else if (strcmp(verb, "stream-delete") == 0)
        s = js_DeleteStream(js, arg, NULL, &jerr);
    else if (strcmp(verb, "stream-purge") == 0)
        s = js_PurgeStream(js, arg, NULL, &jerr);
    else if (strcmp(verb, "consumer") == 0)
        s = kzb_consumer(r, js, arg);
    else if (strcmp(verb, "kv-scan") == 0)
        s = kzb_kv_scan(r, js, arg, detail, len);
    else if ((s = js_KeyValue(&kv, js, r->bucket)) == NATS_OK)
        s = kzb_kv_do(kv, verb, arg, detail, len);
    kvStore_Destroy(kv);
    return s;
}

static int kzb_js_verb(const char *verb)
{
    static const char *const verbs[] = {
        "kv-create", "kv-put", "kv-claim", "kv-get", "kv-del", "kv-status", "kv-list",
        "kv-scan", "kv-fill", "consumer", "stream-delete", "stream-purge"};
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        if (strcmp(verb, verbs[i]) == 0)
            return 1;
    return 0;
}

static void kzb_js(const kzb_run *r, kzb_conn *c, const char *action, const char *verb,
                   const char *arg)
{
    char detail[KZB_DETAIL_MAX] = "";
    jsCtx *js = NULL;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = r->wait_ms;
    pthread_mutex_lock(&c->mu);
    c->guard = 1;
    pthread_mutex_unlock(&c->mu);
    natsStatus s = natsConnection_JetStream(&js, c->nc, &jo);
    if (s == NATS_OK)
        s = kzb_js_do(r, js, verb, arg, detail, sizeof detail);
    jsCtx_Destroy(js);
    kzb_verdict(action, c, s, detail);
}

/* ---- main --------------------------------------------------------------- */

/* Runs one action on a connection of its own. */
static void kzb_action(const kzb_run *r, const char *action)
{
    char verb[64], why[KZB_SUBJECT_MAX];
    const char *colon = strchr(action, ':');
    const char *arg = colon ? colon + 1 : "";
    size_t vlen = colon ? (size_t)(colon - action) : strlen(action);
    snprintf(verb, sizeof verb, "%.*s", (int)(vlen < sizeof verb ? vlen : sizeof verb - 1),
             action);
    kzb_conn *c = NULL;
    if (kzb_connect(&c, r, &r->self, why, sizeof why) != NATS_OK) {
        printf("%s failed connect %s\n", action, why);
    } else if (strcmp(verb, "pub") == 0) {
        kzb_pub(c, action, arg);
    } else if (strcmp(verb, "sub") == 0) {
        kzb_sub(c, action, arg);
    } else if (strcmp(verb, "recv") == 0) {
        kzb_recv(r, c, action, arg);
    } else if (strcmp(verb, "wait") == 0) {
        kzb_wait(c, action, arg);
    } else if (kzb_js_verb(verb)) {
        kzb_js(r, c, action, verb, arg);
    } else {
        printf("%s failed unknown action\n", action);
    }
    fflush(stdout);
    kzb_close(c);
}

static int kzb_usage(void)
{
    fputs("usage: kz-bus-perms [--inbox P] [--peer CREDS] [--peer-inbox P] [--ca F] [--cert F "
          "--key F] [--hostname H] [--wait MS] [--bucket B] URL CREDENTIALS ACTION...\n",
          stderr);
    return 2;
}

/* Parses the options; returns the index of URL, or -1. */
static int kzb_parse(int argc, char **argv, kzb_run *r, const char **peer_creds)
{
    int i = 1;
    for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        const char *o = argv[i], *v = argv[i + 1];
        if (strcmp(o, "--inbox") == 0)
            r->self.inbox = v;
        else if (strcmp(o, "--peer") == 0)
            *peer_creds = v;
        else if (strcmp(o, "--peer-inbox") == 0)
            r->peer.inbox = v;
        else if (strcmp(o, "--ca") == 0)
            r->self.ca = r->peer.ca = v;
        else if (strcmp(o, "--cert") == 0)
            r->self.cert = v;
        else if (strcmp(o, "--key") == 0)
            r->self.key = v;
        else if (strcmp(o, "--hostname") == 0)
            r->self.hostname = r->peer.hostname = v;
        else if (strcmp(o, "--wait") == 0)
            r->wait_ms = atoll(v);
        else if (strcmp(o, "--bucket") == 0)
            r->bucket = v;
        else
            return -1;
    }
    return argc - i >= 3 && r->wait_ms > 0 ? i : -1;
}

int main(int argc, char **argv)
{
    static kzb_run r;
    const char *peer_creds = NULL;
    char why[KZB_SUBJECT_MAX];
    r.wait_ms = 5000;
    r.bucket = KZB_BUCKET;
    int i = kzb_parse(argc, argv, &r, &peer_creds);
    if (i < 0)
        return kzb_usage();
    r.self.url = r.peer.url = argv[i];
    if (kzb_read_credentials(argv[i + 1], &r.self) != 0)
        return 2;
    if (peer_creds != NULL) {
        if (kzb_read_credentials(peer_creds, &r.peer) != 0)
            return 2;
        r.peer.cert = r.self.cert; /* the same machine's certificate */
        r.peer.key = r.self.key;
        r.have_peer = 1;
    }
    kzb_conn *spent = NULL, *c = NULL;
    r.spent = &spent;
    int refused = kzb_connect(&c, &r, &r.self, why, sizeof why) != NATS_OK;
    if (refused)
        printf("connect refused %s\n", why);
    else
        printf("connect ok\n");
    fflush(stdout);
    kzb_close(c);
    for (int a = i + 2; !refused && a < argc; a++)
        kzb_action(&r, argv[a]);
    nats_CloseAndWait(KZB_CONNECT_TIMEOUT_MS);
    kzb_free_spent(spent);
    return refused ? 1 : 0;
}
