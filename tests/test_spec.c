/*
 * The specification against the code: docs/PROTOCOL.md and
 * docs/SNAPSHOT-WIRE.md are read as they are, and everything they state in
 * a machine-readable form is checked against the compiled library.
 *
 *   ```constants            NAME = value lines: each must equal the
 *                           compiled constant of that name, or, for a
 *                           lower-case "spec name", hold by a behavioural
 *                           check; every wire constant of the list below
 *                           must be stated. A markdown table row whose
 *                           first cell starts with a back-quoted name and
 *                           whose second cell is a number states it too.
 *   ```layout NAME          "offset size field" rows: a real message is
 *                           encoded with the library's own writer and each
 *                           field must sit at the stated offset with the
 *                           stated size, with no gap and no field missing.
 *   ```hex NAME             worked examples: the code, given the inputs
 *                           the document names, must produce these bytes.
 *   ```quat-examples        quaternion -> code -> decoded rows.
 *
 * The snapshot body is checked by a reference encoder written from
 * SNAPSHOT-WIRE.md (with the exp-Golomb orders and constants read from
 * it): on random views its bits must equal kz_snap_encode's. Crypto
 * recipes (key derivation, nonces, associated data, the connect tag) are
 * recomputed here with libsodium from the document's words and compared
 * with what the library sends.
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kizuna/avatar.h>
#include <kizuna/client.h>
#include <kizuna/protocol.h>
#include <kizuna/quant.h>
#include <kizuna/server.h>

#include "sim/bus.h"
#include <kizuna/token.h>
#include <kizuna/transport.h>

#include "net/enet_mac.h"
#include "net/enet_tune.h"
#include "net/gate.h"
#include "net/replay.h"
#include "net/resume.h"
#include "net/seal.h"
#include "sim/server_impl.h"
#include "sim/snapshot.h"
#include "sim/wire.h"

#ifndef KZ_SOURCE_DIR
#error "KZ_SOURCE_DIR must name the source tree (tests/CMakeLists.txt sets it)"
#endif

#define SPEC_MAX_STATED 600
#define SPEC_MAX_KNOWN 400
#define SPEC_NAME_MAX 64
#define SPEC_TEXT_MAX 64
#define SPEC_MAX_ROWS 24
#define SPEC_MAX_LAYOUTS 24
#define SPEC_MAX_HEX 24
#define SPEC_HEX_MAX_BYTES 256

/* ---- reading the documents ---------------------------------------------- */

static const char *const spec_docs[] = {"PROTOCOL.md", "SNAPSHOT-WIRE.md", "SCALING.md"};

typedef struct spec_stated {
    char name[SPEC_NAME_MAX];
    char text[SPEC_TEXT_MAX];   /* the value as written */
    int is_string;
    double num;
    const char *doc;
    int line;
} spec_stated;

typedef struct spec_row {
    long off;
    long size;                  /* -1: a variable size (a letter) */
    char field[SPEC_NAME_MAX];
} spec_row;

typedef struct spec_layout {
    char name[SPEC_NAME_MAX];
    spec_row row[SPEC_MAX_ROWS];
    int n;
} spec_layout;

typedef struct spec_hex {
    char name[SPEC_NAME_MAX];
    uint8_t b[SPEC_HEX_MAX_BYTES];
    size_t n;
} spec_hex;

typedef struct spec_doc {
    spec_stated stated[SPEC_MAX_STATED];
    int n_stated;
    spec_layout layout[SPEC_MAX_LAYOUTS];
    int n_layouts;
    spec_hex hex[SPEC_MAX_HEX];
    int n_hex;
    char quat[8][160];          /* quat-examples lines */
    int n_quat;
} spec_doc;

static spec_doc spec;

static char *spec_slurp(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/docs/%s", KZ_SOURCE_DIR, name);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    cr_assert(n > 0);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static char *spec_trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

/* Parses a value: "string", 0x hex, or a decimal number. */
static void spec_value(spec_stated *st, const char *v)
{
    snprintf(st->text, sizeof st->text, "%s", v);
    size_t n = strlen(v);
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
        st->is_string = 1;
        snprintf(st->text, sizeof st->text, "%.*s", (int)(n - 2), v + 1);
        return;
    }
    char *end = NULL;
    if (v[0] == '0' && (v[1] == 'x' || v[1] == 'X'))
        st->num = (double)strtoull(v, &end, 16);
    else
        st->num = strtod(v, &end);
    cr_assert(end && *end == '\0' && end != v, "%s:%d: '%s' is not a value", st->doc, st->line, v);
}

static void spec_add_stated(const char *doc, int line, const char *name, const char *value)
{
    cr_assert_lt(spec.n_stated, SPEC_MAX_STATED);
    spec_stated *st = &spec.stated[spec.n_stated++];
    memset(st, 0, sizeof *st);
    snprintf(st->name, sizeof st->name, "%s", name);
    st->doc = doc;
    st->line = line;
    spec_value(st, value);
}

/* "NAME = value" inside a constants block. */
static void spec_constant_line(const char *doc, int line, char *s)
{
    s = spec_trim(s);
    if (*s == '\0' || *s == '#')
        return;
    char *eq = strstr(s, " = ");
    cr_assert_not_null(eq, "%s:%d: not 'NAME = value': %s", doc, line, s);
    *eq = '\0';
    spec_add_stated(doc, line, spec_trim(s), spec_trim(eq + 3));
}

/* "| `name` words | value | yes/no |" states name (and name.scaled). */
static void spec_table_line(const char *doc, int line, char *s)
{
    char *cell[4] = {0};
    int n = 0;
    s = spec_trim(s);
    if (*s != '|')
        return;
    for (char *p = s + 1; n < 4 && *p;) {
        char *bar = strchr(p, '|');
        if (!bar)
            break;
        *bar = '\0';
        cell[n++] = spec_trim(p);
        p = bar + 1;
    }
    if (n < 2 || cell[0][0] != '`')
        return;
    char *close = strchr(cell[0] + 1, '`');
    char *end = NULL;
    if (!close || close == cell[0] + 1)
        return;
    (void)strtod(cell[1], &end);
    if (end == cell[1] || *end != '\0')
        return;
    *close = '\0';
    spec_add_stated(doc, line, cell[0] + 1, cell[1]);
    if (n >= 3 && (strcmp(cell[2], "yes") == 0 || strcmp(cell[2], "no") == 0)) {
        char scaled[SPEC_NAME_MAX];
        snprintf(scaled, sizeof scaled, "%s.scaled", cell[0] + 1);
        spec_add_stated(doc, line, scaled, strcmp(cell[2], "yes") == 0 ? "1" : "0");
    }
}

/* "off size field ..." inside a layout block. */
static void spec_layout_line(spec_layout *l, const char *doc, int line, char *s)
{
    char field[SPEC_NAME_MAX], size[16];
    long off;
    if (!isdigit((unsigned char)s[0]))
        return; /* the heading, or a continuation of the meaning */
    cr_assert_eq(sscanf(s, "%ld %15s %63s", &off, size, field), 3, "%s:%d: bad layout row", doc,
                 line);
    cr_assert_lt(l->n, SPEC_MAX_ROWS);
    spec_row *r = &l->row[l->n++];
    r->off = off;
    r->size = isdigit((unsigned char)size[0]) ? strtol(size, NULL, 10) : -1;
    snprintf(r->field, sizeof r->field, "%s", field);
}

static void spec_hex_line(spec_hex *h, const char *doc, int line, char *s)
{
    for (char *tok = strtok(s, " \t"); tok; tok = strtok(NULL, " \t")) {
        char *end = NULL;
        unsigned long v = strtoul(tok, &end, 16);
        cr_assert(strlen(tok) == 2 && *end == '\0', "%s:%d: '%s' is not a hex byte", doc, line,
                  tok);
        cr_assert_lt(h->n, (size_t)SPEC_HEX_MAX_BYTES);
        h->b[h->n++] = (uint8_t)v;
    }
}

enum { SPEC_NONE, SPEC_OTHER, SPEC_CONSTANTS, SPEC_LAYOUT, SPEC_HEX, SPEC_QUAT };

/* Opens a fenced block: what kind, and the object it fills. */
static int spec_fence_open(const char *info, const char *doc, int line)
{
    char kind[32] = "", name[SPEC_NAME_MAX] = "";
    (void)sscanf(info, "%31s %63s", kind, name);
    if (strcmp(kind, "constants") == 0)
        return SPEC_CONSTANTS;
    if (strcmp(kind, "quat-examples") == 0)
        return SPEC_QUAT;
    if (strcmp(kind, "layout") == 0 || strcmp(kind, "hex") == 0) {
        cr_assert(name[0], "%s:%d: a %s block needs a name", doc, line, kind);
        if (kind[0] == 'l') {
            cr_assert_lt(spec.n_layouts, SPEC_MAX_LAYOUTS);
            snprintf(spec.layout[spec.n_layouts++].name, SPEC_NAME_MAX, "%s", name);
            return SPEC_LAYOUT;
        }
        cr_assert_lt(spec.n_hex, SPEC_MAX_HEX);
        snprintf(spec.hex[spec.n_hex++].name, SPEC_NAME_MAX, "%s", name);
        return SPEC_HEX;
    }
    return SPEC_OTHER;
}

static void spec_parse(const char *doc, char *text)
{
    int block = SPEC_NONE, line = 0;
    for (char *s = text, *nl; s; s = nl ? nl + 1 : NULL) {
        nl = strchr(s, '\n');
        if (nl)
            *nl = '\0';
        line++;
        char *t = spec_trim(s);
        if (strncmp(t, "```", 3) == 0) {
            block = block == SPEC_NONE ? spec_fence_open(t + 3, doc, line) : SPEC_NONE;
            continue;
        }
        switch (block) {
        case SPEC_NONE: spec_table_line(doc, line, t); break;
        case SPEC_CONSTANTS: spec_constant_line(doc, line, t); break;
        case SPEC_LAYOUT:
            spec_layout_line(&spec.layout[spec.n_layouts - 1], doc, line, s);
            break;
        case SPEC_HEX: spec_hex_line(&spec.hex[spec.n_hex - 1], doc, line, t); break;
        case SPEC_QUAT:
            if (*t && spec.n_quat < 8)
                snprintf(spec.quat[spec.n_quat++], sizeof spec.quat[0], "%s", t);
            break;
        default: break;
        }
    }
    cr_assert_eq(block, SPEC_NONE, "%s: a fenced block is not closed", doc);
}

static void spec_load(void)
{
    memset(&spec, 0, sizeof spec);
    cr_assert_eq(sodium_init() >= 0, 1);
    for (size_t i = 0; i < sizeof spec_docs / sizeof spec_docs[0]; i++) {
        char *text = spec_slurp(spec_docs[i]);
        spec_parse(spec_docs[i], text);
        free(text);
    }
}

static const spec_stated *spec_find(const char *name)
{
    for (int i = 0; i < spec.n_stated; i++)
        if (strcmp(spec.stated[i].name, name) == 0)
            return &spec.stated[i];
    return NULL;
}

static double spec_num(const char *name)
{
    const spec_stated *st = spec_find(name);
    cr_assert_not_null(st, "the documents do not state %s", name);
    cr_assert(!st->is_string);
    return st->num;
}

static const spec_layout *spec_layout_named(const char *name)
{
    for (int i = 0; i < spec.n_layouts; i++)
        if (strcmp(spec.layout[i].name, name) == 0)
            return &spec.layout[i];
    cr_assert_fail("no layout block named %s", name);
    return NULL;
}

static const spec_row *spec_row_named(const spec_layout *l, const char *field)
{
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->row[i].field, field) == 0)
            return &l->row[i];
    cr_assert_fail("layout %s has no field %s", l->name, field);
    return NULL;
}

static const spec_hex *spec_hex_named(const char *name)
{
    for (int i = 0; i < spec.n_hex; i++)
        if (strcmp(spec.hex[i].name, name) == 0)
            return &spec.hex[i];
    cr_assert_fail("no hex block named %s", name);
    return NULL;
}

static void spec_assert_hex(const char *name, const uint8_t *got, size_t n)
{
    const spec_hex *h = spec_hex_named(name);
    cr_assert_eq(h->n, n, "%s: the document shows %zu bytes, the code makes %zu", name, h->n, n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(h->b[i], got[i], "%s: byte %zu: document %02x, code %02x", name, i, h->b[i],
                     got[i]);
}

/* ---- the compiled constants --------------------------------------------- */

/* A behavioural check of a spec name: 1 when the stated value holds. */
typedef int (*spec_holds_fn)(double v);

typedef struct spec_known {
    const char *name;
    double num;
    const char *str;
    spec_holds_fn holds;    /* non-NULL: checked by behaviour */
    int reference;          /* used by the reference encoder, checked there */
} spec_known;

static spec_known known[SPEC_MAX_KNOWN];
static int n_known;

static void known_add(spec_known k)
{
    cr_assert_lt(n_known, SPEC_MAX_KNOWN);
    known[n_known++] = k;
}

#define NUM(x) known_add((spec_known){#x, (double)(x), NULL, NULL, 0})
#define STR(x) known_add((spec_known){#x, 0, x, NULL, 0})
#define HOLDS(name, fn) known_add((spec_known){name, 0, NULL, fn, 0})
#define REF(name) known_add((spec_known){name, 0, NULL, NULL, 1})

static int welcome_accepts(uint32_t tick_hz, uint32_t history)
{
    kz_wire_welcome w = {KZ_WORLD_VERSION, tick_hz, 1, 5, 10, history, 100.0f, 8.0f}, out;
    uint8_t b[KZ_WELCOME_BYTES];
    kz_wire_welcome_write(&w, b);
    return kz_wire_welcome_read(b, sizeof b, &out) == KZ_OK;
}

static int holds_hz_min(double v)
{
    return welcome_accepts((uint32_t)v, 16) && !welcome_accepts((uint32_t)v - 1, 16);
}
static int holds_hz_max(double v)
{
    return welcome_accepts((uint32_t)v, 16) && !welcome_accepts((uint32_t)v + 1, 16);
}
static int holds_history_min(double v)
{
    return welcome_accepts(30, (uint32_t)v) && !welcome_accepts(30, (uint32_t)v - 1);
}
static int holds_history_max(double v)
{
    return welcome_accepts(30, (uint32_t)v) && !welcome_accepts(30, (uint32_t)v + 1);
}
static int holds_redundancy(double v)
{
    kz_client_config c;
    kz_client_config_default(&c);
    return c.input_redundancy == (uint32_t)v;
}
static int holds_pending_timeout(double v); /* below: needs a handshake */

static void spec_known_load(void)
{
    n_known = 0;
    /* protocol.h */
    NUM(KZ_PROTOCOL_VERSION); NUM(KZ_MTU); NUM(KZ_KEY_BYTES); NUM(KZ_AEAD_TAG_BYTES);
    NUM(KZ_SIGN_PUBLIC_KEY_BYTES); NUM(KZ_SIGN_SECRET_KEY_BYTES); NUM(KZ_SIGNATURE_BYTES);
    NUM(KZ_BOX_PUBLIC_KEY_BYTES); NUM(KZ_BOX_SECRET_KEY_BYTES); NUM(KZ_SEAL_OVERHEAD_BYTES);
    STR(KZ_TOKEN_MAGIC); NUM(KZ_TOKEN_NONCE_BYTES); NUM(KZ_TOKEN_MAX_ADDRESSES);
    NUM(KZ_TOKEN_NAME_MAX); NUM(KZ_TOKEN_MAX_ROLES); NUM(KZ_TOKEN_ROLE_MAX);
    NUM(KZ_TOKEN_MAX_ZONES); NUM(KZ_TOKEN_ZONE_MAX); NUM(KZ_TOKEN_METHOD_MAX);
    NUM(KZ_TOKEN_MAX_TTL_SECONDS); NUM(KZ_ADDRESS_BYTES); NUM(KZ_TOKEN_KEYS_BYTES);
    NUM(KZ_TOKEN_SEALED_KEYS_BYTES); NUM(KZ_TOKEN_HEADER_BYTES); NUM(KZ_TOKEN_MIN_BYTES);
    NUM(KZ_TOKEN_MAX_BYTES); NUM(KZ_VERIFY_NONE); NUM(KZ_VERIFY_BASIC); NUM(KZ_VERIFY_STRONG);
    NUM(KZ_VERIFY_MAX); NUM(KZ_ACTOR_HUMAN); NUM(KZ_ACTOR_AGENT); NUM(KZ_ACTOR_BOT);
    NUM(KZ_ACTOR_MAX); NUM(KZ_ADDR_IPV4); NUM(KZ_ADDR_IPV6); STR(KZ_KDF_CONTEXT);
    NUM(KZ_KDF_ID_DATA); NUM(KZ_KDF_ID_GATE); NUM(KZ_KDF_ID_REQUEST);
#ifdef KZ_KDF_ID_ENET_MAC
    NUM(KZ_KDF_ID_ENET_MAC);
#endif
    NUM(KZ_GATE_MARK0); NUM(KZ_GATE_MARK1); NUM(KZ_GATE_HEADER_BYTES); NUM(KZ_GATE_REQUEST);
    NUM(KZ_GATE_CHALLENGE); NUM(KZ_GATE_ACCEPT); NUM(KZ_GATE_DENY); NUM(KZ_COOKIE_MAC_BYTES);
    NUM(KZ_COOKIE_BYTES); NUM(KZ_COOKIE_PERIOD_SECONDS); NUM(KZ_REQUEST_PROOF_BYTES);
    NUM(KZ_GATE_REQUEST_FIXED_BYTES); NUM(KZ_GATE_REQUEST_BYTES); NUM(KZ_GATE_CHALLENGE_BYTES);
    NUM(KZ_GATE_ACCEPT_NONCE_BYTES); NUM(KZ_GATE_ACCEPT_PLAIN_BYTES); NUM(KZ_GATE_ACCEPT_BYTES);
    NUM(KZ_GATE_DENY_BYTES); NUM(KZ_DENY_SERVER_FULL); NUM(KZ_DENY_TOKEN_IN_USE);
    NUM(KZ_DENY_CLIENT_IN_USE); NUM(KZ_DENY_SHUTTING_DOWN); NUM(KZ_DENY_UNAVAILABLE); NUM(KZ_AEAD_BIT_CHACHA20);
    NUM(KZ_AEAD_BIT_AES256GCM); NUM(KZ_MAX_MESSAGE_BYTES); NUM(KZ_ENET_MAX_PACKET_BYTES);
    NUM(KZ_ENET_MAX_WAITING_BYTES);
    /* sim/bus.h: the bus of a world on many processes (SCALING.md) */
    STR(KZ_BUS_MAGIC); NUM(KZ_BUS_VERSION); NUM(KZ_BUS_HEADER_BYTES); NUM(KZ_BUS_MAX_EDGES);
    NUM(KZ_BUS_MESSAGE_MAX); NUM(KZ_BUS_TICK); NUM(KZ_BUS_HELLO); NUM(KZ_BUS_BATCH);
    NUM(KZ_BUS_BYE); NUM(KZ_BUS_DOWN); NUM(KZ_BUS_SYNC);
    /* protocol.h: resume (section 4a) */
    NUM(KZ_KDF_ID_RESUME); NUM(KZ_GATE_RESUME); NUM(KZ_GATE_RESUMED); NUM(KZ_TICKET_BYTES);
    NUM(KZ_RESUME_PROOF_BYTES); NUM(KZ_GATE_RESUME_FIXED_BYTES); NUM(KZ_GATE_RESUME_BYTES);
    NUM(KZ_GATE_RESUMED_BYTES); NUM(KZ_MSG_TICKET); NUM(KZ_TICKET_MSG_BYTES);
    NUM(KZ_DENY_NO_SESSION); NUM(KZ_DENY_REPLACING); NUM(KZ_RESUME_DEFAULT_GRACE_MS);
    NUM(KZ_RESUME_GRACE_MIN_MS); NUM(KZ_RESUME_GRACE_MAX_MS); NUM(KZ_DETACH_SILENCE_MS); NUM(KZ_RESUME_TIMEOUT_MARGIN_MS);
    NUM(KZ_KICK_REPLACED); NUM(KZ_GATE_RESUME_CHALLENGE_BYTES); NUM(KZ_GATE_RESUME_DENY_BYTES);
    /* token.h */
    NUM(KZ_TOKEN_MAX_BACKEND_KEYS); STR(KZ_CONNECT_TOKEN_FILE_MAGIC);
    NUM(KZ_CONNECT_TOKEN_FILE_MAX_BYTES); STR(KZ_TOKEN_METHOD_NONE);
    NUM(KZ_TOKEN_DEFAULT_CLOCK_SKEW_SECONDS); NUM(KZ_VERIFIER_MAX_ADDRESSES);
    /* net internals that shape the wire */
    NUM(KZ_AEAD_CHACHA20); NUM(KZ_AEAD_AES256GCM); NUM(KZ_SEAL_HEADER_BYTES);
    NUM(KZ_SEAL_OVERHEAD); NUM(KZ_REPLAY_WINDOW); NUM(KZ_GATE_DEFAULT_RATE);
    NUM(KZ_GATE_MAX_PORTS); NUM(KZ_ENET_RTO_CAP_MS); NUM(KZ_ENET_SESSION_TIMEOUT_MS);
    NUM(KZ_SESSION_TIMEOUT_MIN_S); NUM(KZ_SESSION_TIMEOUT_MAX_S);
    HOLDS("gate.pending_timeout_ms", holds_pending_timeout);
    /* transport.h */
    NUM(KZ_CHANNEL_SNAPSHOT); NUM(KZ_CHANNEL_INPUT); NUM(KZ_CHANNEL_EVENT);
    NUM(KZ_CHANNEL_VOICE); NUM(KZ_CHANNEL_COUNT);
    /* world messages */
    NUM(KZ_MSG_WELCOME); NUM(KZ_MSG_SNAPSHOT); NUM(KZ_MSG_INPUT); NUM(KZ_MSG_CHAT);
    NUM(KZ_MSG_EMOTE); NUM(KZ_MSG_VOICE); NUM(KZ_MSG_ACTION); NUM(KZ_MSG_NOTICE);
    NUM(KZ_MSG_BLOCK); NUM(KZ_MSG_ADMIN); NUM(KZ_MSG_PREFS); NUM(KZ_WORLD_VERSION);
    NUM(KZ_WELCOME_BYTES); NUM(KZ_INPUT_MAX_COMMANDS); NUM(KZ_INPUT_MAX_BYTES);
    NUM(KZ_SNAPSHOT_MAX_BYTES); NUM(KZ_RELAY_HEADER_BYTES); NUM(KZ_CHAT_MAX_BYTES);
    NUM(KZ_VOICE_MAX_FRAME_BYTES); NUM(KZ_NOTICE_MAX_BYTES); NUM(KZ_ACTION_GRAB);
    NUM(KZ_ACTION_RELEASE); NUM(KZ_ACTION_TELEPORT); NUM(KZ_ACTION_BYTES); NUM(KZ_PORTAL_MAX);
    NUM(KZ_BLOCK_ADD); NUM(KZ_BLOCK_REMOVE); NUM(KZ_BLOCK_BYTES); NUM(KZ_BLOCK_MAX);
    NUM(KZ_ADMIN_BYTES); NUM(KZ_NOTICE_KICK); NUM(KZ_NOTICE_ZONE_ENTER);
    NUM(KZ_NOTICE_ZONE_LEAVE); NUM(KZ_NOTICE_OBSERVED); NUM(KZ_NOTICE_DENIED);
    NUM(KZ_NOTICE_MUTED); NUM(KZ_NOTICE_WORLD_PAUSED); NUM(KZ_NOTICE_WORLD_RESUMED); NUM(KZ_ADMIN_KICK); NUM(KZ_ADMIN_MUTE); NUM(KZ_ADMIN_UNMUTE);
    NUM(KZ_ADMIN_OBSERVE_ON); NUM(KZ_ADMIN_OBSERVE_OFF); NUM(KZ_ADMIN_SUMMON);
    NUM(KZ_ADMIN_ZONE_LOCK); NUM(KZ_ADMIN_ZONE_UNLOCK); NUM(KZ_KICK_ADMIN);
    NUM(KZ_KICK_VIOLATION); NUM(KZ_KICK_SHUTDOWN); NUM(KZ_KICK_NO_PLACE); NUM(KZ__INPUT_QUEUE);
    HOLDS("welcome.tick_hz_min", holds_hz_min); HOLDS("welcome.tick_hz_max", holds_hz_max);
    HOLDS("welcome.history_min", holds_history_min);
    HOLDS("welcome.history_max", holds_history_max);
    HOLDS("client.input_redundancy", holds_redundancy);
    /* state and quantization */
    NUM(KZ_AVATAR_SPEAKING); NUM(KZ_AVATAR_VR); NUM(KZ_KIND_AVATAR); NUM(KZ_KIND_OBJECT);
    NUM(KZ_POSE_HEAD); NUM(KZ_POSE_LEFT_HAND); NUM(KZ_POSE_RIGHT_HAND); NUM(KZ_POSE_COUNT);
    NUM(KZ_AVATAR_REACH); NUM(KZ_SNAP_POS_UNITS); NUM(KZ_SNAP_VEL_UNITS);
    NUM(KZ_SNAP_REL_UNITS); NUM(KZ_SNAP_REL_MAX); NUM(KZ_SNAP_ROT_K); NUM(KZ_SNAP_ROT_REST);
    NUM(KZ_SNAP_MAX_SLOTS); NUM(KZ_SNAP_MAX_BOUND); NUM(KZ_SNAP_MAX_TICK_HZ);
    known_add((spec_known){"quat.rotation_code_bits", KZ_QUAT_BITS(KZ_SNAP_ROT_K), NULL, NULL, 0});
    /* SNAPSHOT-WIRE.md: the reference encoder's parameters */
    static const char *const refs[] = {
        "snap.k.dt", "snap.k.count", "snap.k.gap", "snap.k.pos", "snap.k.posy", "snap.k.vel",
        "snap.k.yaw", "snap.k.rel", "snap.k.rot", "snap.k.dt.scaled", "snap.k.count.scaled",
        "snap.k.gap.scaled", "snap.k.pos.scaled", "snap.k.posy.scaled", "snap.k.vel.scaled",
        "snap.k.yaw.scaled", "snap.k.rel.scaled", "snap.k.rot.scaled", "snap.k.older",
        "snap.k.older.scaled", "snap.k.rel2", "snap.k.rel2.scaled", "snap.k.rot2",
        "snap.k.rot2.scaled", "snap.dt_shift_max",
        "snap.ueg_max_n", "snap.turn_k", "snap.turn_max", "snap.rel_bits", "snap.len_bits",
        "snap.example2.bits",
    };
    for (size_t i = 0; i < sizeof refs / sizeof refs[0]; i++)
        REF(refs[i]);
}

static const spec_known *known_named(const char *name)
{
    for (int i = 0; i < n_known; i++)
        if (strcmp(known[i].name, name) == 0)
            return &known[i];
    return NULL;
}

/* ---- constants ------------------------------------------------------------ */

Test(spec, every_stated_constant_is_the_compiled_one)
{
    spec_load();
    spec_known_load();
    cr_assert_gt(spec.n_stated, 100, "the documents state too little to be read right");
    for (int i = 0; i < spec.n_stated; i++) {
        const spec_stated *st = &spec.stated[i];
        const spec_known *k = known_named(st->name);
        cr_assert_not_null(k, "%s:%d: %s is not a constant the test knows (add it to the list "
                              "or fix the name)", st->doc, st->line, st->name);
        if (k->reference)
            continue;
        if (k->str) {
            cr_assert(st->is_string, "%s:%d: %s is a string", st->doc, st->line, st->name);
            cr_assert_str_eq(st->text, k->str, "%s:%d: %s", st->doc, st->line, st->name);
        } else if (k->holds) {
            cr_assert(k->holds(st->num), "%s:%d: %s = %s does not hold", st->doc, st->line,
                      st->name, st->text);
        } else {
            cr_assert(!st->is_string, "%s:%d: %s is a number", st->doc, st->line, st->name);
            cr_assert(st->num == k->num, "%s:%d: %s: the document says %s, the code %.17g",
                      st->doc, st->line, st->name, st->text, k->num);
        }
    }
}

Test(spec, every_wire_constant_is_stated)
{
    spec_load();
    spec_known_load();
    for (int i = 0; i < n_known; i++)
        cr_assert_not_null(spec_find(known[i].name), "%s is not stated in the documents",
                           known[i].name);
}

/* ---- layouts ------------------------------------------------------------- */

/* What the code put in one field: where to find the expected bytes. */
typedef struct spec_field {
    const char *name;
    const uint8_t *bytes;
    size_t len;
} spec_field;

/* Every row of the named layout must be one of `f`, each once, in order
 * of offset without gaps, and msg[off .. off + size) must hold the
 * field's bytes. `total`, when non-zero, is where the last field ends. */
static void spec_check_layout(const char *name, const uint8_t *msg, size_t msg_len,
                              const spec_field *f, size_t n, size_t total)
{
    const spec_layout *l = spec_layout_named(name);
    cr_assert_eq((size_t)l->n, n, "layout %s: the document lists %d fields, the code has %zu",
                 name, l->n, n);
    size_t next = 0;
    for (int i = 0; i < l->n; i++) {
        const spec_row *r = &l->row[i];
        const spec_field *want = NULL;
        for (size_t j = 0; j < n; j++)
            if (strcmp(f[j].name, r->field) == 0)
                want = &f[j];
        cr_assert_not_null(want, "layout %s: unknown field %s", name, r->field);
        size_t size = r->size < 0 ? want->len : (size_t)r->size;
        cr_assert_eq((size_t)r->off, next, "layout %s: %s at %ld, expected %zu (no gap)", name,
                     r->field, r->off, next);
        cr_assert_eq(size, want->len, "layout %s: %s is %zu bytes, the code writes %zu", name,
                     r->field, size, want->len);
        cr_assert_leq(r->off + size, msg_len, "layout %s: %s past the end", name, r->field);
        cr_assert_arr_eq(msg + r->off, want->bytes, size, "layout %s: %s is not at %ld", name,
                         r->field, r->off);
        next = (size_t)r->off + size;
    }
    if (total)
        cr_assert_eq(next, total, "layout %s ends at %zu, the message at %zu", name, next, total);
}

static void le(uint8_t *out, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)(v >> (8 * i));
}

static const uint64_t spec_now = 1800000000ull;

typedef struct spec_world {
    kz_sign_keypair backend;
    kz_box_keypair server;
    kz_token_info info;
    kz_connect_token ct;
} spec_world;

static void spec_world_make(spec_world *w, uint16_t timeout)
{
    memset(w, 0, sizeof *w);
    cr_assert_eq(kz_sign_keypair_generate(&w->backend), KZ_OK);
    cr_assert_eq(kz_box_keypair_generate(&w->server), KZ_OK);
    kz_token_info *t = &w->info;
    t->protocol_id = 0x1122334455667788ull;
    t->create_time = spec_now - 5;
    t->expire_time = spec_now + 600;
    t->server_id = 0x0102030405060708ull;
    t->timeout_seconds = timeout;
    t->n_addresses = 1;
    cr_assert_eq(kz_address_parse("192.0.2.1:40123", &t->addresses[0]), KZ_OK);
    t->client_id = 0xa1a2a3a4a5a6a7a8ull;
    t->avatar_id = 0xb1b2b3b4b5b6b7b8ull;
    strcpy(t->name, "Ren");
    strcpy(t->claims.method, KZ_TOKEN_METHOD_NONE);
    size_t len = 0;
    cr_assert_eq(kz_token_mint(t, w->backend.secret_key, w->server.public_key, &w->ct.keys,
                               w->ct.token, sizeof w->ct.token, &len),
                 KZ_OK);
    w->ct.token_len = (uint16_t)len;
}

Test(spec, token_layout)
{
    spec_load();
    spec_world w;
    spec_world_make(&w, 15);
    kz_token_info got;
    cr_assert_eq(kz_token_parse(w.ct.token, w.ct.token_len, &got), KZ_OK);
    uint8_t version[2], flags[2] = {0, 0}, pid[8], create[8], expire[8], sid[8], timeout[2];
    uint8_t count = 1, addr[KZ_ADDRESS_BYTES];
    le(version, KZ_PROTOCOL_VERSION, 2);
    le(pid, w.info.protocol_id, 8);
    le(create, w.info.create_time, 8);
    le(expire, w.info.expire_time, 8);
    le(sid, w.info.server_id, 8);
    le(timeout, 15, 2);
    addr[0] = KZ_ADDR_IPV4;
    memcpy(addr + 1, w.info.addresses[0].ip, 16);
    le(addr + 17, 40123, 2);
    const spec_field f[] = {
        {"magic", (const uint8_t *)KZ_TOKEN_MAGIC, 4}, {"version", version, 2},
        {"flags", flags, 2}, {"protocol_id", pid, 8}, {"create", create, 8},
        {"expire", expire, 8}, {"nonce", got.nonce, KZ_TOKEN_NONCE_BYTES},
        {"server_id", sid, 8}, {"timeout", timeout, 2}, {"n_addresses", &count, 1},
        {"address", addr, KZ_ADDRESS_BYTES},
    };
    spec_check_layout("token", w.ct.token, w.ct.token_len, f, sizeof f / sizeof f[0], 0);
    /* After one address: client id, avatar id, then the name string. */
    size_t at = KZ_TOKEN_HEADER_BYTES + KZ_ADDRESS_BYTES;
    uint8_t ids[16];
    le(ids, w.info.client_id, 8);
    le(ids + 8, w.info.avatar_id, 8);
    cr_assert_arr_eq(w.ct.token + at, ids, 16);
    cr_assert_eq(w.ct.token[at + 16], 3);
    cr_assert_arr_eq(w.ct.token + at + 17, "Ren", 3);
    /* The tail: sealed keys then the signature over everything before. */
    size_t sig = w.ct.token_len - KZ_SIGNATURE_BYTES;
    cr_assert_eq(crypto_sign_verify_detached(w.ct.token + sig, w.ct.token, sig,
                                             w.backend.public_key),
                 0);
    uint8_t keys[KZ_TOKEN_KEYS_BYTES];
    cr_assert_eq(crypto_box_seal_open(keys, w.ct.token + sig - KZ_TOKEN_SEALED_KEYS_BYTES,
                                      KZ_TOKEN_SEALED_KEYS_BYTES, w.server.public_key,
                                      w.server.secret_key),
                 0);
    cr_assert_arr_eq(keys, w.ct.keys.client_to_server, 32, "client-to-server key first");
    cr_assert_arr_eq(keys + 32, w.ct.keys.server_to_client, 32);
}

Test(spec, token_file_layout)
{
    spec_load();
    spec_world w;
    spec_world_make(&w, 0);
    uint8_t file[KZ_CONNECT_TOKEN_FILE_MAX_BYTES], tl[2];
    size_t len = 0;
    cr_assert_eq(kz_connect_token_encode(&w.ct, file, sizeof file, &len), KZ_OK);
    le(tl, w.ct.token_len, 2);
    const spec_field f[] = {
        {"magic", (const uint8_t *)KZ_CONNECT_TOKEN_FILE_MAGIC, 4},
        {"token_len", tl, 2},
        {"token", w.ct.token, w.ct.token_len},
    };
    spec_check_layout("token-file", file, len, f, 3, 0);
    size_t t = w.ct.token_len;
    cr_assert_arr_eq(file + 6 + t, w.ct.keys.client_to_server, 32);
    cr_assert_arr_eq(file + 38 + t, w.ct.keys.server_to_client, 32);
    cr_assert_eq(len, 70 + t, "nothing follows the keys");
}

/* ---- the gate ------------------------------------------------------------- */

typedef struct spec_gate {
    spec_world w;
    kz__gate *g;
    kz__handshake hs;
    kz_address from;
    kz_time_ns now;
    uint8_t reply[KZ_GATE_REQUEST_BYTES];
    size_t reply_len;
} spec_gate;

#define SPEC_PORT 40123

static kz__gate_action spec_gate_send(spec_gate *s, const uint8_t *d, size_t n)
{
    s->reply_len = 0;
    return kz__gate_datagram(s->g, &s->from, d, n, s->now, spec_now, s->reply, sizeof s->reply,
                             &s->reply_len);
}

/* A gate with one session slot and a handshake for it. */
static void spec_gate_make(spec_gate *s, uint32_t max_sessions)
{
    memset(s, 0, sizeof *s);
    spec_world_make(&s->w, 15);
    kz__gate_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.verifier.protocol_id = s->w.info.protocol_id;
    cfg.verifier.server_id = s->w.info.server_id;
    memcpy(cfg.verifier.backend_pk[0], s->w.backend.public_key, KZ_SIGN_PUBLIC_KEY_BYTES);
    cfg.verifier.server_keys = s->w.server;
    cfg.max_sessions = max_sessions;
    cfg.n_ports = 1;
    cfg.ports[0] = SPEC_PORT;
    cfg.disable_aes = 1; /* the same cipher on every machine */
    s->g = kz__gate_create(&cfg);
    cr_assert_not_null(s->g);
    cr_assert_eq(kz__handshake_init(&s->hs, &s->w.ct), KZ_OK);
    cr_assert_eq(kz_address_parse("198.51.100.7:5555", &s->from), KZ_OK);
    s->now = 123 * KZ_NS_PER_S + 456;
}

/* REQUEST, CHALLENGE, REQUEST, ACCEPT. Leaves the ACCEPT in s->reply. */
static void spec_gate_accept(spec_gate *s)
{
    uint8_t req[KZ_GATE_REQUEST_BYTES];
    size_t n = kz__handshake_request(&s->hs, req);
    cr_assert_eq(spec_gate_send(s, req, n), KZ_GATE_REPLY);
    cr_assert_eq(kz__handshake_receive(&s->hs, s->reply, s->reply_len), KZ_OK);
    n = kz__handshake_request(&s->hs, req);
    cr_assert_eq(spec_gate_send(s, req, n), KZ_GATE_REPLY);
    cr_assert_eq(s->reply_len, (size_t)KZ_GATE_ACCEPT_BYTES);
}

static int holds_pending_timeout(double v)
{
    spec_gate s;
    spec_gate_make(&s, 2);
    spec_gate_accept(&s);
    kz_time_ns deadline = s.now + (kz_time_ns)v * KZ_NS_PER_MS;
    kz__gate_expire(s.g, deadline - 1);
    int kept = kz__gate_sessions(s.g) == 1;
    kz__gate_expire(s.g, deadline);
    int freed = kz__gate_sessions(s.g) == 0;
    kz__gate_destroy(s.g);
    return kept && freed;
}

static void spec_header(uint8_t out[4], uint8_t type)
{
    out[0] = KZ_GATE_MARK0;
    out[1] = KZ_GATE_MARK1;
    out[2] = type;
    out[3] = (uint8_t)KZ_PROTOCOL_VERSION;
}

/* The proof as section 4 words it, computed here. */
static void spec_proof(const kz_session_keys *k, const uint8_t cookie[24], const uint8_t *token,
                       size_t len, uint8_t out[16])
{
    uint8_t key[32], msg[24 + KZ_SIGNATURE_BYTES];
    crypto_kdf_derive_from_key(key, 32, KZ_KDF_ID_REQUEST, KZ_KDF_CONTEXT, k->client_to_server);
    memcpy(msg, cookie, 24);
    memcpy(msg + 24, token + len - KZ_SIGNATURE_BYTES, KZ_SIGNATURE_BYTES);
    crypto_generichash(out, 16, msg, sizeof msg, key, sizeof key);
}

Test(spec, request_and_challenge_layouts)
{
    spec_load();
    spec_gate s;
    spec_gate_make(&s, 2);
    uint8_t req[KZ_GATE_REQUEST_BYTES];
    size_t n = kz__handshake_request(&s.hs, req);
    cr_assert_eq(n, (size_t)KZ_GATE_REQUEST_BYTES);
    cr_assert_eq(spec_gate_send(&s, req, n), KZ_GATE_REPLY);
    /* CHALLENGE: header, time bucket, MAC. */
    uint8_t hdr[4], bucket[8];
    spec_header(hdr, KZ_GATE_CHALLENGE);
    le(bucket, s.now / (KZ_COOKIE_PERIOD_SECONDS * KZ_NS_PER_S), 8);
    const spec_field fc[] = {{"header", hdr, 4}, {"bucket", bucket, 8}, {"mac", s.reply + 12, 16}};
    spec_check_layout("CHALLENGE", s.reply, s.reply_len, fc, 3, s.reply_len);
    uint8_t challenge[KZ_GATE_CHALLENGE_BYTES];
    memcpy(challenge, s.reply, sizeof challenge);
    cr_assert_eq(kz__handshake_receive(&s.hs, challenge, sizeof challenge), KZ_OK);
    /* REQUEST with that cookie. */
    n = kz__handshake_request(&s.hs, req);
    uint8_t tl[2], proof[16], reserved = 0, ciphers = s.hs.aead_mask;
    spec_header(hdr, KZ_GATE_REQUEST);
    le(tl, s.w.ct.token_len, 2);
    const uint8_t *cookie = challenge + spec_row_named(spec_layout_named("CHALLENGE"), "bucket")->off;
    spec_proof(&s.w.ct.keys, cookie, s.w.ct.token, s.w.ct.token_len, proof);
    const spec_field fr[] = {
        {"header", hdr, 4},           {"ciphers", &ciphers, 1}, {"reserved", &reserved, 1},
        {"token_len", tl, 2},         {"cookie", cookie, KZ_COOKIE_BYTES},
        {"proof", proof, 16},         {"token", s.w.ct.token, s.w.ct.token_len},
    };
    spec_check_layout("REQUEST", req, n, fr, sizeof fr / sizeof fr[0], 0);
    for (size_t i = KZ_GATE_REQUEST_FIXED_BYTES + s.w.ct.token_len; i < n; i++)
        cr_assert_eq(req[i], 0, "zero padding to the fixed size");
    kz__gate_destroy(s.g);
}

Test(spec, accept_and_deny_layouts_open_as_specified)
{
    spec_load();
    spec_gate s;
    spec_gate_make(&s, 1);
    spec_gate_accept(&s);
    const uint8_t *acc = s.reply;
    const spec_layout *l = spec_layout_named("ACCEPT");
    const spec_row *nonce = spec_row_named(l, "nonce"), *sealed = spec_row_named(l, "sealed");
    uint8_t hdr[4];
    spec_header(hdr, KZ_GATE_ACCEPT);
    const spec_field fa[] = {{"header", hdr, 4},
                             {"nonce", acc + 4, KZ_GATE_ACCEPT_NONCE_BYTES},
                             {"sealed", acc + 28, KZ_GATE_ACCEPT_PLAIN_BYTES + KZ_AEAD_TAG_BYTES}};
    spec_check_layout("ACCEPT", acc, s.reply_len, fa, 3, s.reply_len);
    /* Open it as the document says: XChaCha20-Poly1305 under
     * KDF(server-to-client, KZ_KDF_ID_GATE), the header as AD. */
    uint8_t key[32], plain[KZ_GATE_ACCEPT_PLAIN_BYTES];
    unsigned long long plen = 0;
    crypto_kdf_derive_from_key(key, 32, KZ_KDF_ID_GATE, KZ_KDF_CONTEXT,
                               s.w.ct.keys.server_to_client);
    cr_assert_eq(crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &plen, NULL, acc + sealed->off,
                                                            (unsigned long long)sealed->size, acc,
                                                            4, acc + nonce->off, key),
                 0, "the ACCEPT opens with the key, nonce and AD the document names");
    cr_assert_eq(plen, sizeof plain);
    cr_assert_eq(kz__handshake_receive(&s.hs, acc, s.reply_len), KZ_OK);
    uint8_t sid[8], port[2], slot[4], timeout[2], cipher = s.hs.alg, reserved = 0;
    le(sid, s.hs.session_id, 8);
    le(port, SPEC_PORT, 2);
    le(slot, s.hs.slot, 4);
    le(timeout, 15, 2);
    cr_assert_eq(cipher, KZ_AEAD_CHACHA20);
    const spec_field fp[] = {{"session_id", sid, 8}, {"cipher", &cipher, 1},
                             {"reserved", &reserved, 1}, {"port", port, 2},
                             {"slot", slot, 4},     {"timeout", timeout, 2}};
    spec_check_layout("ACCEPT-plaintext", plain, sizeof plain, fp, 6, sizeof plain);

    /* DENY: a second client while the only slot is taken. */
    spec_world other;
    spec_world_make(&other, 0);
    other.info.client_id = 77;
    kz_token_info t2 = s.w.info;
    t2.client_id = 77;
    size_t len2 = 0;
    cr_assert_eq(kz_token_mint(&t2, s.w.backend.secret_key, s.w.server.public_key,
                               &other.ct.keys, other.ct.token, sizeof other.ct.token, &len2),
                 KZ_OK);
    other.ct.token_len = (uint16_t)len2;
    cr_assert_eq(kz__handshake_init(&s.hs, &other.ct), KZ_OK);
    cr_assert_eq(kz_address_parse("198.51.100.8:6666", &s.from), KZ_OK);
    uint8_t req[KZ_GATE_REQUEST_BYTES];
    size_t n = kz__handshake_request(&s.hs, req);
    cr_assert_eq(spec_gate_send(&s, req, n), KZ_GATE_REPLY);
    cr_assert_eq(kz__handshake_receive(&s.hs, s.reply, s.reply_len), KZ_OK);
    n = kz__handshake_request(&s.hs, req);
    cr_assert_eq(spec_gate_send(&s, req, n), KZ_GATE_REPLY);
    uint8_t reason = KZ_DENY_SERVER_FULL;
    spec_header(hdr, KZ_GATE_DENY);
    const spec_field fd[] = {{"header", hdr, 4}, {"reason", &reason, 1}};
    spec_check_layout("DENY", s.reply, s.reply_len, fd, 2, s.reply_len);
    kz__gate_destroy(s.g);
}

/* ---- resume (section 4a) ------------------------------------------------------ */

/* The RESUME's proof as section 4a words it, computed here: BLAKE2b-128
 * keyed with KDF(client-to-server, KZ_KDF_ID_RESUME) of the bytes before
 * the proof field, whose offset the layout states. */
static void spec_resume_proof(const uint8_t c2s[32], const uint8_t *d, uint8_t out[16])
{
    uint8_t key[32];
    size_t at = (size_t)spec_row_named(spec_layout_named("RESUME"), "proof")->off;
    crypto_kdf_derive_from_key(key, 32, KZ_KDF_ID_RESUME, KZ_KDF_CONTEXT, c2s);
    crypto_generichash(out, 16, d, at, key, sizeof key);
}

static void spec_ticket_fields(const kz__ticket *t, uint8_t slot[4], uint8_t path[4],
                               uint8_t sid[8])
{
    le(slot, t->slot, 4);
    le(path, t->path, 4);
    le(sid, t->session_id, 8);
}

Test(spec, ticket_and_ticket_message_layouts)
{
    spec_load();
    kz__ticket t = {.slot = 0x11223344u, .path = 0x55667788u,
                    .session_id = 0x99aabbccddeeff01ull};
    randombytes_buf(t.secret, sizeof t.secret);
    uint8_t packed[KZ_TICKET_BYTES], slot[4], path[4], sid[8];
    kz__ticket_pack(&t, packed);
    spec_ticket_fields(&t, slot, path, sid);
    const spec_field ft[] = {{"slot", slot, 4}, {"path", path, 4}, {"session_id", sid, 8},
                             {"secret", t.secret, 16}};
    spec_check_layout("ticket", packed, sizeof packed, ft, 4, KZ_TICKET_BYTES);

    uint8_t msg[KZ_TICKET_MSG_BYTES], grace[4];
    kz__ticket_msg_encode(packed, KZ_RESUME_DEFAULT_GRACE_MS, msg);
    le(grace, KZ_RESUME_DEFAULT_GRACE_MS, 4);
    const spec_field fm[] = {{"ticket", packed, KZ_TICKET_BYTES}, {"grace_ms", grace, 4}};
    spec_check_layout("TICKET", msg, sizeof msg, fm, 2, KZ_TICKET_MSG_BYTES);

    /* "KZ_RESUME_GRACE_MIN_MS..KZ_RESUME_GRACE_MAX_MS", and no other size. */
    uint8_t out[KZ_TICKET_BYTES];
    uint32_t g = 0;
    const uint32_t lo = (uint32_t)spec_num("KZ_RESUME_GRACE_MIN_MS");
    const uint32_t hi = (uint32_t)spec_num("KZ_RESUME_GRACE_MAX_MS");
    const uint32_t graces[4] = {lo, hi, lo - 1, hi + 1};
    for (int i = 0; i < 4; i++) {
        kz__ticket_msg_encode(packed, graces[i], msg);
        cr_assert_eq(kz__ticket_msg_decode(msg, sizeof msg, out, &g) == KZ_OK, i < 2,
                     "grace %u ms", graces[i]);
    }
    cr_assert_neq(kz__ticket_msg_decode(msg, sizeof msg - 1, out, &g), KZ_OK);
}

Test(spec, resume_layout_and_proof_as_specified)
{
    spec_load();
    kz_session_keys k;
    randombytes_buf(&k, sizeof k);
    kz__ticket t = {.slot = 7, .path = 1, .session_id = 0x0102030405060708ull};
    randombytes_buf(t.secret, sizeof t.secret);
    uint8_t ticket[KZ_TICKET_BYTES], cookie[KZ_COOKIE_BYTES], d[KZ_GATE_RESUME_BYTES];
    kz__ticket_pack(&t, ticket);
    randombytes_buf(cookie, sizeof cookie);
    const uint8_t zero_cookie[KZ_COOKIE_BYTES] = {0}, reserved[4] = {0};
    for (int with_cookie = 0; with_cookie < 2; with_cookie++) {
        const uint8_t *c = with_cookie ? cookie : zero_cookie;
        size_t n = kz__resume_build(&k, with_cookie ? cookie : NULL, ticket, d);
        cr_assert_eq(n, (size_t)spec_num("KZ_GATE_RESUME_BYTES"));
        uint8_t hdr[4], proof[16];
        spec_header(hdr, KZ_GATE_RESUME);
        spec_resume_proof(k.client_to_server, d, proof);
        const spec_field f[] = {{"header", hdr, 4},      {"reserved", reserved, 4},
                                {"cookie", c, KZ_COOKIE_BYTES}, {"ticket", ticket, KZ_TICKET_BYTES},
                                {"proof", proof, 16}};
        spec_check_layout("RESUME", d, n, f, 5, KZ_GATE_RESUME_FIXED_BYTES);
        for (size_t i = KZ_GATE_RESUME_FIXED_BYTES; i < n; i++)
            cr_assert_eq(d[i], 0, "zero padding to the fixed size (byte %zu)", i);
        kz__resume p;
        cr_assert_eq(kz__resume_parse(d, n, &p), KZ_OK);
        cr_assert_eq(kz__resume_proof_ok(&k, d), 1);
    }
    /* "every reply (CHALLENGE 28, DENY 5, RESUMED 76) is smaller" */
    const double resume = spec_num("KZ_GATE_RESUME_BYTES");
    cr_assert_lt(spec_num("KZ_GATE_CHALLENGE_BYTES"), resume);
    cr_assert_lt(spec_num("KZ_GATE_DENY_BYTES"), resume);
    cr_assert_lt(spec_num("KZ_GATE_RESUMED_BYTES"), resume);
}

Test(spec, resumed_layout_opens_as_specified)
{
    spec_load();
    kz_session_keys k;
    randombytes_buf(&k, sizeof k);
    uint8_t ticket[KZ_TICKET_BYTES], d[KZ_GATE_RESUMED_BYTES];
    randombytes_buf(ticket, sizeof ticket);
    size_t n = kz__resumed_seal(&k, ticket, d);
    cr_assert_eq(n, (size_t)spec_num("KZ_GATE_RESUMED_BYTES"));
    uint8_t hdr[4];
    spec_header(hdr, KZ_GATE_RESUMED);
    const spec_field f[] = {{"header", hdr, 4},
                            {"nonce", d + 4, KZ_GATE_ACCEPT_NONCE_BYTES},
                            {"sealed", d + 28, KZ_TICKET_BYTES + KZ_AEAD_TAG_BYTES}};
    spec_check_layout("RESUMED", d, n, f, 3, n);
    /* Open it as the document says: XChaCha20-Poly1305 under
     * KDF(server-to-client, KZ_KDF_ID_GATE), the header as AD. */
    const spec_layout *l = spec_layout_named("RESUMED");
    const spec_row *nonce = spec_row_named(l, "nonce"), *sealed = spec_row_named(l, "sealed");
    uint8_t key[32], plain[KZ_TICKET_BYTES];
    unsigned long long plen = 0;
    crypto_kdf_derive_from_key(key, 32, KZ_KDF_ID_GATE, KZ_KDF_CONTEXT, k.server_to_client);
    cr_assert_eq(crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &plen, NULL, d + sealed->off,
                                                            (unsigned long long)sealed->size, d,
                                                            4, d + nonce->off, key),
                 0, "the RESUMED opens with the key, nonce and AD the document names");
    cr_assert_eq(plen, sizeof plain);
    cr_assert_arr_eq(plain, ticket, sizeof plain, "the plaintext is the next ticket");
}

/* Section 4a's worked example: section 3's client-to-server key, the
 * ticket and cookie the document names. */
Test(spec, resume_worked_example)
{
    spec_load();
    kz_session_keys k;
    for (int i = 0; i < 32; i++) {
        k.client_to_server[i] = (uint8_t)i;
        k.server_to_client[i] = (uint8_t)(0x80 + i);
    }
    kz__ticket t = {.slot = 3, .path = 2, .session_id = 0x0123456789abcdefull};
    uint8_t cookie[KZ_COOKIE_BYTES], ticket[KZ_TICKET_BYTES], sub[32], d[KZ_GATE_RESUME_BYTES];
    for (int i = 0; i < 16; i++)
        t.secret[i] = (uint8_t)(0xf0 + i);
    for (size_t i = 0; i < KZ_COOKIE_BYTES; i++)
        cookie[i] = (uint8_t)(0xc0 + i);
    kz__ticket_pack(&t, ticket);
    spec_assert_hex("resume-ticket", ticket, sizeof ticket);
    crypto_kdf_derive_from_key(sub, 32, KZ_KDF_ID_RESUME, KZ_KDF_CONTEXT, k.client_to_server);
    spec_assert_hex("resume-subkey", sub, sizeof sub);
    cr_assert_eq(kz__resume_build(&k, cookie, ticket, d), sizeof d);
    spec_assert_hex("resume-example", d, sizeof d);

    /* The document's bytes: the proof by the document's recipe, and the
     * library's parser and check take them. */
    const spec_hex *h = spec_hex_named("resume-example");
    const spec_row *proof = spec_row_named(spec_layout_named("RESUME"), "proof");
    uint8_t want[16];
    spec_resume_proof(k.client_to_server, h->b, want);
    cr_assert_arr_eq(h->b + proof->off, want, 16, "the example's proof is the recipe's");
    kz__resume p;
    cr_assert_eq(kz__resume_parse(h->b, h->n, &p), KZ_OK);
    cr_assert_eq(kz__resume_proof_ok(&k, h->b), 1);
    cr_assert_arr_eq(p.cookie, cookie, sizeof cookie);
    kz__ticket back;
    kz__ticket_unpack(p.ticket, &back);
    cr_assert_eq(back.slot, t.slot);
    cr_assert_eq(back.path, t.path);
    cr_assert_eq(back.session_id, t.session_id);
    cr_assert_arr_eq(back.secret, t.secret, sizeof t.secret);
}

/* ---- the CONNECT the gate lets through ------------------------------------ */

/* An ENet CONNECT as section 6 lays it out: peer field (and a sent time
 * when asked), the checksum field when asked, then the command with the
 * connectID at +40 and the data field at +44. With the checksum field, it
 * carries the datagram's MAC (section 6a) under `mac`; the key comes from
 * the library (section 6a's derivation is the transport's to state). */
static size_t spec_connect(uint8_t *d, int sent_time, int checksum, const uint8_t connect_id[4],
                           const uint8_t data[4], const kz__enet_mac *mac)
{
    size_t at = 0;
    uint16_t peer = 0x0FFF | (sent_time ? 0x8000 : 0);
    d[at++] = (uint8_t)(peer >> 8);
    d[at++] = (uint8_t)peer;
    if (sent_time) {
        d[at++] = 0x12;
        d[at++] = 0x34;
    }
    if (checksum) {
        memset(d + at, 0, 4);
        at += 4;
    }
    memset(d + at, 0, 48);
    d[at] = 0x80 | 2; /* acknowledge flag, CONNECT */
    d[at + 1] = 0xFF;
    d[at + 3] = 1;
    d[at + 17] = 0; /* channel count 4, big-endian, at +16 */
    d[at + 19] = 4;
    memcpy(d + at + 40, connect_id, 4);
    memcpy(d + at + 44, data, 4);
    if (checksum) {
        /* SipHash-2-4 over the datagram with the field 0 (a CONNECT has no
         * peer yet); the field holds the first 4 bytes of the output. */
        uint8_t out[crypto_shorthash_BYTES];
        crypto_shorthash(out, d, at + 48, mac->key);
        memcpy(d + at - 4, out, 4);
    }
    return at + 48;
}

Test(spec, connect_tag_byte_order_and_checksum_field)
{
    spec_load();
    spec_gate s;
    spec_gate_make(&s, 2);
    spec_gate_accept(&s);
    cr_assert_eq(kz__handshake_receive(&s.hs, s.reply, s.reply_len), KZ_OK);
    /* The tag as the document words it: the first 4 bytes of BLAKE2b-128
     * keyed with KDF(c2s, KZ_KDF_ID_REQUEST) over "connect\0" || sid. */
    uint8_t key[32], msg[16], mac[16];
    crypto_kdf_derive_from_key(key, 32, KZ_KDF_ID_REQUEST, KZ_KDF_CONTEXT,
                               s.w.ct.keys.client_to_server);
    memcpy(msg, "connect\0", 8);
    le(msg + 8, s.hs.session_id, 8);
    crypto_generichash(mac, 16, msg, 16, key, 32);
    uint32_t tag = kz__connect_tag(&s.w.ct.keys, s.hs.session_id);
    cr_assert_eq(tag, (uint32_t)mac[0] | (uint32_t)mac[1] << 8 | (uint32_t)mac[2] << 16 |
                          (uint32_t)mac[3] << 24);
    const uint8_t wire[4] = {mac[3], mac[2], mac[1], mac[0]}; /* reversed on the wire */
    const uint8_t wrong[4] = {mac[0], mac[1], mac[2], mac[3]};
    const uint8_t cid[4] = {9, 8, 7, 6}, other_cid[4] = {1, 2, 3, 4};
    kz__enet_mac enet_key;
    kz__enet_mac_derive(&enet_key, s.w.ct.keys.client_to_server, s.hs.session_id);
    uint8_t d[64];
    if (memcmp(wire, wrong, 4) != 0) {
        size_t n = spec_connect(d, 0, 1, cid, wrong, &enet_key);
        cr_assert_eq(spec_gate_send(&s, d, n), KZ_GATE_DROP, "the tag in ENet's byte order only");
    }
    size_t n = spec_connect(d, 0, 0, cid, wire, &enet_key);
    memset(d + n, 0, 4); /* as long as a CONNECT with the field: refused for where it is */
    cr_assert_eq(spec_gate_send(&s, d, n + 4), KZ_GATE_DROP, "without the checksum field");
    n = spec_connect(d, 0, 1, cid, wire, &enet_key);
    cr_assert_eq(spec_gate_send(&s, d, n), KZ_GATE_PASS, "the CONNECT as section 6 lays it out");
    n = spec_connect(d, 1, 1, cid, wire, &enet_key);
    cr_assert_eq(spec_gate_send(&s, d, n), KZ_GATE_PASS, "with a sent time: 2 bytes later");
    n = spec_connect(d, 0, 1, other_cid, wire, &enet_key);
    cr_assert_eq(spec_gate_send(&s, d, n), KZ_GATE_DROP, "another connectID for the slot");
    kz__gate_destroy(s.g);
}

Test(spec, connect_tag_example)
{
    spec_load();
    kz_session_keys k;
    for (int i = 0; i < 32; i++) {
        k.client_to_server[i] = (uint8_t)i;
        k.server_to_client[i] = (uint8_t)(0x80 + i);
    }
    uint32_t tag = kz__connect_tag(&k, 0x0123456789abcdefull);
    const uint8_t wire[4] = {(uint8_t)(tag >> 24), (uint8_t)(tag >> 16), (uint8_t)(tag >> 8),
                             (uint8_t)tag};
    spec_assert_hex("connect-tag-wire", wire, 4);
}

/* ---- keys and sealed packets ------------------------------------------------ */

Test(spec, data_key_and_sealed_packet_examples)
{
    spec_load();
    uint8_t master[32], sub[32], msg[9];
    for (int i = 0; i < 32; i++)
        master[i] = (uint8_t)i;
    const uint64_t sid = 0x0123456789abcdefull;
    crypto_kdf_derive_from_key(sub, 32, KZ_KDF_ID_DATA, KZ_KDF_CONTEXT, master);
    spec_assert_hex("data-subkey", sub, 32);
    /* The data key as section 3 words it, and as the code makes it. */
    uint8_t key[32];
    le(msg, sid, 8);
    msg[8] = KZ_AEAD_CHACHA20;
    crypto_generichash(key, 32, msg, 9, sub, 32);
    spec_assert_hex("data-key", key, 32);
    kz__seal s;
    cr_assert_eq(kz__seal_init(&s, master, KZ_AEAD_CHACHA20, sid), KZ_OK);
    cr_assert_arr_eq(s.key, key, 32, "the library's data key is the document's");
    s.next_seq = 5;
    uint8_t pkt[64];
    size_t n = 0;
    cr_assert_eq(kz__seal_packet(&s, 3, (const uint8_t *)"hi", 2, pkt, sizeof pkt, &n), KZ_OK);
    spec_assert_hex("sealed-example", pkt, n);
    /* Open the document's example with its own recipe: nonce = sequence
     * then four zero bytes, AD = type || session id || version. */
    const spec_hex *h = spec_hex_named("sealed-example");
    const spec_layout *l = spec_layout_named("sealed");
    const spec_row *seq = spec_row_named(l, "sequence"), *ct = spec_row_named(l, "ciphert");
    uint8_t nonce[12] = {0}, ad[10], plain[8];
    memcpy(nonce, h->b + seq->off, 8);
    ad[0] = h->b[spec_row_named(l, "type")->off];
    le(ad + 1, sid, 8);
    ad[9] = (uint8_t)KZ_PROTOCOL_VERSION;
    size_t body = h->n - (size_t)ct->off - KZ_AEAD_TAG_BYTES;
    cr_assert_eq(crypto_aead_chacha20poly1305_ietf_decrypt_detached(
                     plain, NULL, h->b + ct->off, body, h->b + ct->off + body, ad, sizeof ad,
                     nonce, key),
                 0);
    cr_assert_arr_eq(plain, "hi", 2);
    cr_assert_eq(ad[0], 3, "the type is the clear first byte, not inside the ciphertext");
    uint8_t seq5[8];
    le(seq5, 5, 8);
    uint8_t type = 3;
    const spec_field f[] = {{"type", &type, 1}, {"sequence", seq5, 8}, {"ciphert", pkt + 9, 2}};
    spec_check_layout("sealed", pkt, n, f, 3, n - KZ_AEAD_TAG_BYTES);
    kz__seal_fini(&s);
}

/* Section 6: the session timeout rule, and the replay window's edge. */
Test(spec, session_timeout_and_replay_window)
{
    spec_load();
    cr_assert_eq(kz__session_timeout_ms(0), spec_num("KZ_ENET_SESSION_TIMEOUT_MS"));
    cr_assert_eq(kz__session_timeout_ms(1), spec_num("KZ_SESSION_TIMEOUT_MIN_S") * 1000);
    cr_assert_eq(kz__session_timeout_ms(65535), spec_num("KZ_SESSION_TIMEOUT_MAX_S") * 1000);
    cr_assert_eq(kz__session_timeout_ms(45), 45000);
    kz__replay r;
    kz__replay_init(&r);
    uint64_t top = 100000, w = (uint64_t)spec_num("KZ_REPLAY_WINDOW");
    kz__replay_update(&r, top);
    cr_assert_eq(kz__replay_check(&r, top - (w - 1)), KZ_OK, "%llu below the newest: kept",
                 (unsigned long long)(w - 1));
    cr_assert_eq(kz__replay_check(&r, top - w), KZ_EREPLAY, "%llu below: refused",
                 (unsigned long long)w);
}

/* ---- world messages --------------------------------------------------------- */

Test(spec, welcome_layout_and_example)
{
    spec_load();
    kz_wire_welcome w = {KZ_WORLD_VERSION, 30, 1234, (1u << 20) | 5, 100, 16, 4096.0f, 8.0f};
    uint8_t b[KZ_WELCOME_BYTES];
    kz_wire_welcome_write(&w, b);
    spec_assert_hex("welcome-example", b, sizeof b);
    uint8_t v[6][4], bound[4], speed[4];
    const uint32_t vals[6] = {w.version, w.tick_hz, w.tick, w.self, w.n_slots, w.history};
    for (int i = 0; i < 6; i++)
        le(v[i], vals[i], 4);
    memcpy(bound, &w.bound, 4); /* little-endian hosts: the f32's bytes */
    memcpy(speed, &w.max_speed, 4);
    const spec_field f[] = {{"version", v[0], 4}, {"tick_hz", v[1], 4}, {"tick", v[2], 4},
                            {"self", v[3], 4},    {"n_slots", v[4], 4}, {"history", v[5], 4},
                            {"bound", bound, 4},  {"max_speed", speed, 4}};
    spec_check_layout("WELCOME", b, sizeof b, f, 8, sizeof b);
}

Test(spec, input_examples)
{
    spec_load();
    kz_wire_input in;
    memset(&in, 0, sizeof in);
    in.count = 1;
    in.cmd[0].tick = 1;
    in.cmd[0].move[0] = 256;
    for (uint32_t p = 0; p < KZ_POSE_COUNT; p++)
        in.cmd[0].rot[p] = KZ_SNAP_ROT_REST;
    uint8_t b[KZ_INPUT_MAX_BYTES];
    int n = kz_wire_input_write(&in, b, sizeof b);
    cr_assert_gt(n, 0);
    spec_assert_hex("input-example", b, (size_t)n);
    in.ack = 7;
    in.count = 2;
    in.cmd[1] = in.cmd[0];
    in.cmd[0].tick = 2;
    n = kz_wire_input_write(&in, b, sizeof b);
    cr_assert_gt(n, 0);
    spec_assert_hex("input-example-2", b, (size_t)n);
    /* And the reader takes the document's bytes back. */
    kz_wire_input back;
    const spec_hex *h = spec_hex_named("input-example-2");
    cr_assert_eq(kz_wire_input_read(h->b, h->n, &back), KZ_OK);
    cr_assert_eq(back.ack, 7);
    cr_assert_eq(back.count, 2);
    cr_assert_eq(back.cmd[1].tick, 1);
    cr_assert_eq(back.cmd[1].move[0], 256);
}

/* ---- rotations ---------------------------------------------------------------- */

/* Section 8's rebuild, written from the document. */
static void spec_quat_rebuild(uint32_t code, double q[4])
{
    const double s = 1.0 / sqrt(2.0);
    unsigned m = code >> 30, shift = 20;
    double sum = 0;
    for (unsigned i = 0; i < 4; i++) {
        if (i == m)
            continue;
        double c = (double)((code >> shift) & 1023u);
        q[i] = (c - 511.0) * s / 511.0;
        sum += q[i] * q[i];
        shift -= 10;
    }
    q[m] = sqrt(sum < 1 ? 1 - sum : 0);
    double n = sqrt(q[m] * q[m] + sum);
    for (int i = 0; i < 4; i++)
        q[i] /= n;
}

Test(spec, quaternion_examples_and_rebuild)
{
    spec_load();
    cr_assert_geq(spec.n_quat, 3, "the quat-examples block");
    for (int i = 0; i < spec.n_quat; i++) {
        float q[4], d[4];
        unsigned code = 0;
        double want[4];
        cr_assert_eq(sscanf(spec.quat[i], "%f %f %f %f -> %x -> %lf %lf %lf %lf", &q[0], &q[1],
                            &q[2], &q[3], &code, &want[0], &want[1], &want[2], &want[3]),
                     9, "bad row: %s", spec.quat[i]);
        uint64_t got = 0;
        cr_assert_eq(kz_quat_encode(q, KZ_SNAP_ROT_K, &got), KZ_OK);
        cr_assert_eq(got, code, "%s: the code makes %08llx", spec.quat[i],
                     (unsigned long long)got);
        kz_quat_decode(code, KZ_SNAP_ROT_K, d);
        double r[4];
        spec_quat_rebuild(code, r);
        for (int j = 0; j < 4; j++) {
            cr_assert(fabs(d[j] - want[j]) < 1e-6, "%s: component %d decodes to %.7f", spec.quat[i],
                      j, d[j]);
            cr_assert(fabs(r[j] - want[j]) < 1e-6, "%s: the document's rebuild gives %.7f",
                      spec.quat[i], r[j]);
        }
    }
    /* The rebuild in words equals the library's decoder on any code. */
    uint32_t x = 12345;
    for (int i = 0; i < 20000; i++) {
        x = x * 1103515245u + 12345u;
        uint32_t code = x;
        for (unsigned j = 0; j < 3; j++)
            if (((code >> (10 * j)) & 1023u) == 1023u)
                code &= ~(1u << (10 * j)); /* 1023 is not a code */
        float d[4];
        double r[4];
        kz_quat_decode(code, KZ_SNAP_ROT_K, d);
        spec_quat_rebuild(code, r);
        for (int j = 0; j < 4; j++)
            cr_assert(fabs(d[j] - r[j]) < 1e-6, "code %08x component %d", code, j);
    }
}

/* ---- the snapshot body: a reference encoder from SNAPSHOT-WIRE.md -------- */

typedef struct ref_bits {
    uint8_t b[16384];
    size_t n; /* bits */
} ref_bits;

static void ref_put(ref_bits *w, uint64_t v, unsigned n)
{
    for (unsigned j = 0; j < n; j++, w->n++) {
        cr_assert_lt(w->n, sizeof w->b * 8);
        if ((v >> j) & 1u)
            w->b[w->n / 8] |= (uint8_t)(1u << (w->n % 8));
    }
}

static unsigned ref_bitlen(uint64_t v)
{
    unsigned n = 0;
    while (v >> n)
        n++;
    return n;
}

/* ueg(k): x = v + 2^k, n = floor(log2 x); n - k ones, a zero, low n bits. */
static void ref_ueg(ref_bits *w, uint64_t v, unsigned k)
{
    uint64_t x = v + ((uint64_t)1 << k);
    unsigned n = ref_bitlen(x) - 1;
    for (unsigned i = 0; i < n - k; i++)
        ref_put(w, 1, 1);
    ref_put(w, 0, 1);
    ref_put(w, x, n);
}

static uint64_t ref_zigzag(int64_t v)
{
    return v >= 0 ? (uint64_t)v * 2 : (uint64_t)(-(v + 1)) * 2 + 1;
}

static void ref_seg(ref_bits *w, int64_t v, unsigned k)
{
    ref_ueg(w, ref_zigzag(v), k);
}

static unsigned ref_seg_len(int64_t v, unsigned k)
{
    unsigned n = ref_bitlen(ref_zigzag(v) + ((uint64_t)1 << k)) - 1;
    return 2 * n - k + 1;
}

/* The orders and constants, from the documents. */
typedef struct ref_params {
    unsigned k_dt, k_count, k_gap, k_pos, k_posy, k_vel, k_yaw, k_rel, k_rot;
    unsigned shift_max, rel_bits, len_bits;
    int64_t turn_k, turn_max;
    unsigned k_older, k_rel2, k_rot2;
    int64_t dt, odt;   /* baseline distance, older view distance (0: none) */
} ref_params;

static unsigned ref_order(const char *name, unsigned s)
{
    char scaled[SPEC_NAME_MAX];
    snprintf(scaled, sizeof scaled, "%s.scaled", name);
    return (unsigned)spec_num(name) + (spec_num(scaled) != 0 ? s : 0);
}

static ref_params ref_params_for(uint32_t dt, uint32_t odt)
{
    unsigned s = 0;
    unsigned cap = (unsigned)spec_num("snap.dt_shift_max");
    while (dt >= (2u << s) && s < cap) /* s = min(floor(log2 dt), cap) */
        s++;
    ref_params p = {
        ref_order("snap.k.dt", s), ref_order("snap.k.count", s), ref_order("snap.k.gap", s),
        ref_order("snap.k.pos", s), ref_order("snap.k.posy", s), ref_order("snap.k.vel", s),
        ref_order("snap.k.yaw", s), ref_order("snap.k.rel", s), ref_order("snap.k.rot", s),
        cap, (unsigned)spec_num("snap.rel_bits"), (unsigned)spec_num("snap.len_bits"),
        (int64_t)spec_num("snap.turn_k"), (int64_t)spec_num("snap.turn_max"),
        ref_order("snap.k.older", s), ref_order("snap.k.rel2", s), ref_order("snap.k.rot2", s),
        dt, odt,
    };
    return p;
}

static int64_t ref_round_div(int64_t n, int64_t d)
{
    return n >= 0 ? (n + d / 2) / d : -((-n + d / 2) / d);
}

static int64_t ref_clamp(int64_t v, int64_t lim)
{
    return v > lim ? lim : v < -lim ? -lim : v;
}

static void ref_turn(const ref_params *p, int64_t t, int64_t x, int64_t z, int64_t lim,
                     int64_t out[2])
{
    out[0] = x;
    out[1] = z;
    if (t > p->turn_max || t < -p->turn_max)
        return;
    out[0] = ref_clamp(x + ref_round_div(t * z * p->turn_k, (int64_t)1 << 26), lim);
    out[1] = ref_clamp(z - ref_round_div(t * x * p->turn_k, (int64_t)1 << 26), lim);
}

static int ref_rest(const kz_snap_state *s)
{
    for (int k = 0; k < 3; k++)
        if (s->rel[k][0] || s->rel[k][1] || s->rel[k][2] || s->rot[k] != KZ_SNAP_ROT_REST)
            return 0;
    return 1;
}

static unsigned ref_comp(uint32_t code, unsigned j)
{
    return (code >> (20 - 10 * j)) & 1023u;
}

static void ref_badge(ref_bits *w, const ref_params *p, const kz_snap_badge *b)
{
    if (!b || (!b->verification_level && !b->actor_kind && !b->acting_for && !b->method[0] &&
               !b->name[0])) {
        ref_put(w, 0, 1);
        return;
    }
    ref_put(w, 1, 1);
    ref_put(w, b->verification_level, 2);
    ref_put(w, b->actor_kind, 2);
    ref_put(w, b->acting_for != 0, 1);
    if (b->acting_for)
        ref_put(w, b->acting_for, 64);
    size_t ml = strlen(b->method), nl = strlen(b->name);
    ref_put(w, ml, p->len_bits);
    for (size_t i = 0; i < ml; i++)
        ref_put(w, (uint8_t)b->method[i], 8);
    ref_put(w, nl, p->len_bits);
    for (size_t i = 0; i < nl; i++)
        ref_put(w, (uint8_t)b->name[i], 8);
}

static void ref_enter(ref_bits *w, const ref_params *p, const kz_snap_codec *c,
                      const kz_snap_state *s, const kz_snap_badge *b)
{
    ref_put(w, s->entity, 32);
    ref_put(w, s->kind == KZ_KIND_OBJECT, 1);
    for (int i = 0; i < 3; i++)
        ref_put(w, (uint64_t)((int64_t)s->pos[i] + c->pos_max), c->pos_bits);
    int moving = s->vel[0] || s->vel[1] || s->vel[2];
    ref_put(w, moving, 1);
    for (int i = 0; moving && i < 3; i++)
        ref_put(w, (uint16_t)s->vel[i], 16);
    ref_put(w, s->yaw, 16);
    ref_put(w, s->anim != 0, 1);
    if (s->anim)
        ref_put(w, s->anim, 16);
    ref_put(w, s->flags, 8);
    ref_put(w, s->holder != 0, 1);
    if (s->holder)
        ref_put(w, s->holder, 32);
    int poses = 1;
    if (!(s->flags & KZ_AVATAR_VR)) {
        poses = !ref_rest(s);
        ref_put(w, poses, 1);
    }
    for (int k = 0; poses && k < 3; k++) {
        int rel = s->rel[k][0] || s->rel[k][1] || s->rel[k][2];
        ref_put(w, rel, 1);
        for (int i = 0; rel && i < 3; i++)
            ref_put(w, (uint64_t)(s->rel[k][i] + KZ_SNAP_REL_MAX), p->rel_bits);
        ref_put(w, s->rot[k] != KZ_SNAP_ROT_REST, 1);
        if (s->rot[k] != KZ_SNAP_ROT_REST)
            ref_put(w, s->rot[k], 32);
    }
    ref_badge(w, p, b);
}

/* x, z, then y behind its own bit. */
static void ref_triple(ref_bits *w, const int64_t d[3], unsigned k_xz, unsigned k_y)
{
    ref_put(w, d[0] || d[1] || d[2], 1);
    if (!(d[0] || d[1] || d[2]))
        return;
    ref_seg(w, d[0], k_xz);
    ref_seg(w, d[2], k_xz);
    ref_put(w, d[1] != 0, 1);
    if (d[1])
        ref_seg(w, d[1], k_y);
}

/* Step 5's prediction of b's poses: first order with o NULL, else
 * second order from o over odt to b, carried on over dt. */
static int64_t ref_extrapolate(const ref_params *p, int64_t b, int64_t o, int64_t lo, int64_t hi)
{
    int64_t v = b + ref_round_div((b - o) * p->dt, p->odt);
    return v < lo ? lo : v > hi ? hi : v;
}

static void ref_predict(const ref_params *p, const kz_snap_state *b, const kz_snap_state *o,
                        int64_t t, int64_t rel[3][3], uint32_t rot[3])
{
    for (int k = 0; k < 3; k++) {
        rot[k] = b->rot[k];
        if (o == NULL) {
            int64_t xz[2];
            ref_turn(p, t, b->rel[k][0], b->rel[k][2], KZ_SNAP_REL_MAX, xz);
            rel[k][0] = xz[0];
            rel[k][1] = b->rel[k][1];
            rel[k][2] = xz[1];
            continue;
        }
        for (int i = 0; i < 3; i++)
            rel[k][i] = ref_extrapolate(p, b->rel[k][i], o->rel[k][i], -KZ_SNAP_REL_MAX,
                                        KZ_SNAP_REL_MAX);
        if ((b->rot[k] >> 30) != (o->rot[k] >> 30))
            continue;
        rot[k] = b->rot[k] & 0xc0000000u;
        for (unsigned j = 0; j < 3; j++)
            rot[k] |= (uint32_t)ref_extrapolate(p, ref_comp(b->rot[k], j), ref_comp(o->rot[k], j),
                                                0, 1022)
                      << (20 - 10 * j);
    }
}

/* Step 5: the poses, in the shorter form (the short one on a tie). */
static void ref_poses(ref_bits *w, const ref_params *p, const kz_snap_state *b,
                      const kz_snap_state *o, const kz_snap_state *s, int64_t t)
{
    int64_t d[3][3], pr[3][3];
    uint32_t prot[3];
    ref_predict(p, b, o, t, pr, prot);
    unsigned k_rel = o ? p->k_rel2 : p->k_rel, k_rot = o ? p->k_rot2 : p->k_rot;
    int changed = 0, same_index = 1;
    unsigned short_bits = 2, field_bits = 2;
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < 3; i++)
            d[k][i] = s->rel[k][i] - pr[k][i];
        unsigned rel = 0;
        for (int i = 0; i < 3; i++)
            rel += ref_seg_len(d[k][i], k_rel);
        int moved = d[k][0] || d[k][1] || d[k][2];
        changed |= moved || s->rot[k] != prot[k];
        unsigned deltas = 0;
        for (unsigned j = 0; j < 3; j++)
            deltas += ref_seg_len((int64_t)ref_comp(s->rot[k], j) - ref_comp(prot[k], j), k_rot);
        short_bits += rel + deltas;
        field_bits += 1 + (moved ? rel : 0);
        if (s->rot[k] == prot[k]) {
            field_bits += 1;
            continue;
        }
        int keeps = (s->rot[k] >> 30) == (prot[k] >> 30);
        same_index &= keeps;
        field_bits += keeps && deltas <= 32 ? 2 + deltas : 2 + 32;
    }
    if (!changed) {
        ref_put(w, 0, 1);
        return;
    }
    int short_form = same_index && short_bits <= field_bits;
    ref_put(w, 1, 1);
    ref_put(w, !short_form, 1);
    for (int k = 0; k < 3; k++) {
        int moved = d[k][0] || d[k][1] || d[k][2];
        if (!short_form)
            ref_put(w, moved, 1);
        for (int i = 0; i < 3 && (moved || short_form); i++)
            ref_seg(w, d[k][i], k_rel);
        int64_t dc[3];
        unsigned deltas = 0;
        for (unsigned j = 0; j < 3; j++) {
            dc[j] = (int64_t)ref_comp(s->rot[k], j) - ref_comp(prot[k], j);
            deltas += ref_seg_len(dc[j], k_rot);
        }
        if (short_form) {
            for (unsigned j = 0; j < 3; j++)
                ref_seg(w, dc[j], k_rot);
        } else if (s->rot[k] == prot[k]) {
            ref_put(w, 0, 1);
        } else if ((s->rot[k] >> 30) == (prot[k] >> 30) && deltas <= 32) {
            ref_put(w, 1, 1);
            ref_put(w, 0, 1);
            for (unsigned j = 0; j < 3; j++)
                ref_seg(w, dc[j], k_rot);
        } else {
            ref_put(w, 1, 1);
            ref_put(w, 1, 1);
            ref_put(w, s->rot[k], 32);
        }
    }
}

static void ref_update(ref_bits *w, const ref_params *p, const kz_snap_codec *c, uint32_t dt,
                       const kz_snap_state *b, const kz_snap_state *o, const kz_snap_state *s)
{
    int64_t d[3], xz[2];
    for (int i = 0; i < 3; i++) {
        int64_t pred = ref_clamp(b->pos[i] + ref_round_div(2 * (int64_t)b->vel[i] * dt,
                                                           (int64_t)c->tick_hz),
                                 c->pos_max);
        d[i] = s->pos[i] - pred;
    }
    ref_triple(w, d, p->k_pos, p->k_posy);
    int64_t t = (int16_t)(uint16_t)(s->yaw - b->yaw);
    ref_put(w, t != 0, 1);
    if (t)
        ref_seg(w, t, p->k_yaw);
    ref_turn(p, t, b->vel[0], b->vel[2], 32767, xz);
    d[0] = s->vel[0] - xz[0];
    d[1] = s->vel[1] - b->vel[1];
    d[2] = s->vel[2] - xz[1];
    ref_triple(w, d, p->k_vel, p->k_vel);
    int base_rest = !(b->flags & KZ_AVATAR_VR) && ref_rest(b);
    int x_needed = !(s->flags & KZ_AVATAR_VR) && base_rest && !ref_rest(s);
    int misc = s->anim != b->anim || s->flags != b->flags || s->holder != b->holder || x_needed;
    ref_put(w, misc, 1);
    if (misc) {
        ref_put(w, s->anim != b->anim, 1);
        if (s->anim != b->anim)
            ref_put(w, s->anim, 16);
        ref_put(w, s->flags != b->flags, 1);
        if (s->flags != b->flags)
            ref_put(w, s->flags, 8);
        ref_put(w, s->holder != b->holder, 1);
        if (s->holder != b->holder)
            ref_put(w, s->holder, 32);
        if (!(s->flags & KZ_AVATAR_VR) && base_rest)
            ref_put(w, x_needed, 1);
    }
    if (!(s->flags & KZ_AVATAR_VR) && base_rest && !x_needed)
        return;
    ref_poses(w, p, b, o, s, t);
}

static kz_snap_badge ref_badges[64];

static const kz_snap_badge *ref_badge_of(void *ctx, uint32_t entity)
{
    (void)ctx;
    const kz_snap_badge *b = &ref_badges[entity % 64];
    return entity % 5 == 0 ? NULL : b;
}

/* UPDATE records the reference coded to second order (the test checks
 * that the trials reach that path). */
static unsigned ref_second_order_records;

/* The body of SNAPSHOT-WIRE.md: tick, dt, the older view, count, then the
 * records. `older` is named only with a baseline and an entry in it. */
static size_t ref_body(ref_bits *w, const kz_snap_codec *c, const kz_snap_view *base,
                       const kz_snap_view *older, const kz_snap_view *want)
{
    uint32_t dt = base ? want->tick - base->tick : 0;
    if (dt == 0 || older == NULL || older->count == 0)
        older = NULL;
    uint32_t odt = older ? base->tick - older->tick : 0;
    ref_params p = ref_params_for(dt, odt);
    ref_bits rec;
    memset(&rec, 0, sizeof rec);
    uint32_t count = 0, bi = 0, wi = 0;
    int64_t prev = -1;
    uint32_t bn = base ? base->count : 0;
    while (bi < bn || wi < want->count) {
        uint32_t bs = bi < bn ? base->slot[bi] : UINT32_MAX;
        uint32_t ws = wi < want->count ? want->slot[wi] : UINT32_MAX;
        uint32_t slot = bs < ws ? bs : ws;
        const kz_snap_state *b = bs == slot ? &base->state[bi++] : NULL;
        const kz_snap_state *s = ws == slot ? &want->state[wi++] : NULL;
        if (b && s && memcmp(b, s, sizeof *b) == 0)
            continue; /* no record */
        ref_ueg(&rec, (uint64_t)((int64_t)slot - prev - 1), p.k_gap);
        prev = slot;
        count++;
        if (b && !s) {
            ref_put(&rec, 1, 1); /* LEAVE: 1, 0 */
            ref_put(&rec, 0, 1);
        } else if (!b) {
            ref_enter(&rec, &p, c, s, ref_badge_of(NULL, s->entity));
        } else if (b->entity != s->entity || b->kind != s->kind) {
            ref_put(&rec, 1, 1); /* ENTER over an occupied slot: 1, 1 */
            ref_put(&rec, 1, 1);
            ref_enter(&rec, &p, c, s, ref_badge_of(NULL, s->entity));
        } else {
            /* The older view's entry in the slot, if it is b's entity. */
            const kz_snap_state *o = NULL;
            for (uint32_t i = 0; older && i < older->count; i++)
                if (older->slot[i] == slot && older->state[i].entity == b->entity &&
                    older->state[i].kind == b->kind)
                    o = &older->state[i];
            ref_put(&rec, 0, 1); /* UPDATE */
            ref_update(&rec, &p, c, dt, b, o, s);
            ref_second_order_records += o != NULL;
        }
    }
    ref_put(w, want->tick, 32);
    ref_ueg(w, dt, p.k_dt);
    if (dt != 0) {
        ref_put(w, odt != 0, 1);
        if (odt != 0)
            ref_ueg(w, odt - 1, p.k_older);
    }
    ref_ueg(w, count, p.k_count);
    for (size_t i = 0; i < rec.n; i++)
        ref_put(w, (rec.b[i / 8] >> (i % 8)) & 1u, 1);
    return (w->n + 7) / 8;
}

/* A deterministic generator for the random views. */
static uint64_t ref_rng = 88172645463325252ull;

static uint64_t ref_next(void)
{
    ref_rng ^= ref_rng << 13;
    ref_rng ^= ref_rng >> 7;
    ref_rng ^= ref_rng << 17;
    return ref_rng;
}

static int64_t ref_range(int64_t lo, int64_t hi)
{
    return lo + (int64_t)(ref_next() % (uint64_t)(hi - lo + 1));
}

static uint32_t ref_rot(void)
{
    switch (ref_next() % 4) {
    case 0: return KZ_SNAP_ROT_REST;
    default:
        return (uint32_t)(ref_next() % 4) << 30 | (uint32_t)ref_range(0, 1022) << 20 |
               (uint32_t)ref_range(0, 1022) << 10 | (uint32_t)ref_range(0, 1022);
    }
}

/* A random valid state; near-limit values now and then, so the clamps of
 * the predictions are exercised. */
static void ref_state(const kz_snap_codec *c, kz_snap_state *s, uint32_t entity)
{
    memset(s, 0, sizeof *s);
    s->entity = entity;
    s->kind = ref_next() % 6 == 0 ? KZ_KIND_OBJECT : KZ_KIND_AVATAR;
    int edge = ref_next() % 8 == 0;
    for (int i = 0; i < 3; i++) {
        s->pos[i] = (int32_t)(edge ? (ref_next() % 2 ? c->pos_max : -c->pos_max) - ref_range(0, 3)
                                   : ref_range(-c->pos_max, c->pos_max));
        if (s->pos[i] < -c->pos_max)
            s->pos[i] = -c->pos_max;
        s->vel[i] = (int16_t)(ref_next() % 3 == 0 ? 0 : ref_range(edge ? -32767 : -2000,
                                                                  edge ? 32767 : 2000));
    }
    s->yaw = (uint16_t)ref_next();
    s->anim = ref_next() % 3 == 0 ? (uint16_t)ref_next() : 0;
    s->flags = (uint8_t)(ref_next() % 4);
    s->holder = ref_next() % 4 == 0 ? (uint32_t)ref_range(1, 1 << 24) : 0;
    int posed = (s->flags & KZ_AVATAR_VR) || ref_next() % 5 == 0;
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < 3; i++)
            s->rel[k][i] = (int16_t)(posed && ref_next() % 4 ? ref_range(-2048, 2048) : 0);
        s->rot[k] = posed ? ref_rot() : KZ_SNAP_ROT_REST;
    }
}

/* A small change of the kind a tick makes, or a large one. */
static void ref_change(const kz_snap_codec *c, kz_snap_state *s)
{
    uint64_t what = ref_next();
    for (int i = 0; i < 3; i++) {
        if (what & (1u << i))
            s->pos[i] = (int32_t)ref_clamp(s->pos[i] + ref_range(-40, 40), c->pos_max);
        if (what & (8u << i))
            s->vel[i] = (int16_t)ref_clamp(s->vel[i] + ref_range(-300, 300), 32767);
    }
    if (what & 64)
        s->yaw = (uint16_t)(s->yaw + ref_range(-5000, 5000));
    if (what & 128)
        s->yaw = (uint16_t)ref_next();
    if (what & 256)
        s->anim = (uint16_t)ref_next();
    if (what & 512)
        s->flags ^= (uint8_t)(1u << (ref_next() % 2));
    if (what & 1024)
        s->holder = ref_next() % 2 ? 0 : (uint32_t)ref_range(1, 1 << 24);
    for (int k = 0; k < 3; k++) {
        if (what & (2048u << k))
            for (int i = 0; i < 3; i++)
                s->rel[k][i] = (int16_t)ref_clamp(s->rel[k][i] + ref_range(-30, 30), 2048);
        if (what & (16384u << k)) {
            uint32_t r = s->rot[k];
            unsigned j = (unsigned)(ref_next() % 3);
            int64_t comp = (int64_t)ref_comp(r, j) + ref_range(-20, 20);
            comp = comp < 0 ? 0 : comp > 1022 ? 1022 : comp;
            r = (r & ~(1023u << (20 - 10 * j))) | (uint32_t)comp << (20 - 10 * j);
            s->rot[k] = ref_next() % 8 == 0 ? ref_rot() : r;
        }
    }
}

/* Poses that go on as they went from o to b (over odt ticks), for dt more
 * ticks, give or take a unit or two, within their ranges; a rotation keeps
 * b's dropped index. */
static void ref_steady(kz_snap_state *s, const kz_snap_state *b, const kz_snap_state *o,
                       uint32_t dt, uint32_t odt)
{
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < 3; i++) {
            int64_t v = b->rel[k][i] + (b->rel[k][i] - o->rel[k][i]) * (int64_t)dt / odt;
            s->rel[k][i] = (int16_t)ref_clamp(v + ref_range(-2, 2), 2048);
        }
        uint32_t code = b->rot[k] & 0xc0000000u;
        for (unsigned j = 0; j < 3; j++) {
            int64_t v = (int64_t)ref_comp(b->rot[k], j) +
                        ((int64_t)ref_comp(b->rot[k], j) - ref_comp(o->rot[k], j)) * dt / odt +
                        ref_range(-2, 2);
            code |= (uint32_t)(v < 0 ? 0 : v > 1022 ? 1022 : v) << (20 - 10 * j);
        }
        s->rot[k] = code;
    }
}

static void ref_fill_badges(void)
{
    for (int i = 0; i < 64; i++) {
        kz_snap_badge *b = &ref_badges[i];
        memset(b, 0, sizeof *b);
        b->verification_level = (uint8_t)(i % 3);
        b->actor_kind = (uint8_t)((i / 3) % 3);
        b->acting_for = b->actor_kind == KZ_ACTOR_AGENT ? 1000u + (uint64_t)i : 0;
        snprintf(b->method, sizeof b->method, "%s", i % 3 ? "oidc:idp" : "none");
        snprintf(b->name, sizeof b->name, "n%d \xe7\xb5\x86", i);
    }
}

#define REF_SLOTS 24u

typedef struct ref_view {
    uint16_t slot[REF_SLOTS];
    kz_snap_state state[REF_SLOTS];
    kz_snap_view v;
} ref_view;

static void ref_view_init(ref_view *r, uint32_t tick)
{
    memset(r, 0, sizeof *r);
    r->v.tick = tick;
    r->v.cap = REF_SLOTS;
    r->v.slot = r->slot;
    r->v.state = r->state;
}

static void ref_view_add(ref_view *r, uint16_t slot, const kz_snap_state *s)
{
    r->slot[r->v.count] = slot;
    r->state[r->v.count++] = *s;
}

/* Encodes want against base (and older, or NULL) with the library and
 * with the reference; the bytes must be the same. Returns the library's
 * `sent` view. */
static void ref_compare(const kz_snap_codec *c, const kz_snap_view *base,
                        const kz_snap_view *older, const kz_snap_view *want, ref_view *sent,
                        const char *what)
{
    static uint8_t buf[16384];
    memset(buf, 0, sizeof buf);
    kz_bitwriter w;
    kz_bitwriter_init(&w, buf, sizeof buf);
    uint8_t change[REF_SLOTS];
    ref_view_init(sent, want->tick);
    kz_snap_encode_args a = {.base = base, .older = older, .want = want,
                             .budget_bits = sizeof buf * 8, .badge = ref_badge_of};
    kz_snap_encode_stats st;
    cr_assert_eq(kz_snap_encode(c, &a, &w, &sent->v, change, &st), KZ_OK, "%s", what);
    cr_assert_eq(st.deferred, 0, "%s: everything fits", what);
    size_t n = kz_bitwriter_finish(&w);
    ref_bits rw;
    memset(&rw, 0, sizeof rw);
    size_t rn = ref_body(&rw, c, base, older, want);
    cr_assert_eq(rn, n, "%s: the reference writes %zu bytes, the library %zu", what, rn, n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(rw.b[i], buf[i], "%s: byte %zu differs (reference %02x, library %02x)", what,
                     i, rw.b[i], buf[i]);
}

Test(spec, snapshot_body_matches_a_reference_encoder_written_from_the_document, .timeout = 120)
{
    spec_load();
    ref_fill_badges();
    static const uint32_t dts[] = {1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 32, 40, 1000};
    static const uint32_t rates[] = {30, 60, 10, 128};
    static const float bounds[] = {4096.0f, 100.0f, 1000000.0f};
    char what[96];
    for (int trial = 0; trial < 400; trial++) {
        kz_snap_codec c;
        cr_assert_eq(kz_snap_codec_init(&c, rates[trial % 4], REF_SLOTS, bounds[trial % 3]),
                     KZ_OK);
        /* A full state first. */
        ref_view base, want, sent, got;
        uint32_t tick = 100 + (uint32_t)trial;
        ref_view_init(&want, tick);
        for (uint16_t slot = 0; slot < REF_SLOTS; slot++) {
            if (ref_next() % 3 == 0)
                continue;
            kz_snap_state s;
            ref_state(&c, &s, (uint32_t)ref_range(1, 1 << 30));
            ref_view_add(&want, slot, &s);
        }
        snprintf(what, sizeof what, "trial %d full state", trial);
        ref_compare(&c, NULL, NULL, &want.v, &sent, what);
        base = sent;
        base.v.slot = base.slot;
        base.v.state = base.state;
        /* Then a delta at some distance: changes, leaves, enters, replaces. */
        uint32_t dt = dts[trial % (sizeof dts / sizeof dts[0])];
        ref_view_init(&want, tick + dt);
        uint32_t j = 0;
        for (uint16_t slot = 0; slot < REF_SLOTS; slot++) {
            const kz_snap_state *b = j < base.v.count && base.slot[j] == slot ? &base.state[j++]
                                                                              : NULL;
            uint64_t r = ref_next() % 10;
            kz_snap_state s;
            if (b && r < 6) {
                s = *b;
                if (r < 5)
                    ref_change(&c, &s);
                ref_view_add(&want, slot, &s);
            } else if ((b && r < 8) || (!b && r < 2)) {
                ref_state(&c, &s, (uint32_t)ref_range(1, 1 << 30)); /* enter or replace */
                ref_view_add(&want, slot, &s);
            } /* else: leaves, or stays empty */
        }
        snprintf(what, sizeof what, "trial %d delta dt %u at %u Hz", trial, dt, c.tick_hz);
        ref_compare(&c, &base.v, NULL, &want.v, &got, what);
        /* Then a second-order delta: the first view is the older one, the
         * delta's view the baseline; poses mostly move on steadily (small
         * residuals, predictions running into the limits), some change
         * at random, entities come and go. */
        ref_view older = base, base2 = got, got2;
        older.v.slot = older.slot;
        older.v.state = older.state;
        base2.v.slot = base2.slot;
        base2.v.state = base2.state;
        uint32_t dt2 = dts[(trial / 3) % (sizeof dts / sizeof dts[0])];
        ref_view_init(&want, tick + dt + dt2);
        j = 0;
        for (uint16_t slot = 0; slot < REF_SLOTS; slot++) {
            const kz_snap_state *b = j < base2.v.count && base2.slot[j] == slot ? &base2.state[j++]
                                                                                : NULL;
            const kz_snap_state *o = NULL;
            for (uint32_t i = 0; b && i < older.v.count; i++)
                if (older.slot[i] == slot && older.state[i].entity == b->entity)
                    o = &older.state[i];
            uint64_t r = ref_next() % 10;
            kz_snap_state s;
            if (b && r < 7) {
                s = *b;
                if (o && r < 4)
                    ref_steady(&s, b, o, dt2, dt);
                else if (r < 6)
                    ref_change(&c, &s);
                ref_view_add(&want, slot, &s);
            } else if ((b && r < 8) || (!b && r < 2)) {
                ref_state(&c, &s, (uint32_t)ref_range(1, 1 << 30));
                ref_view_add(&want, slot, &s);
            }
        }
        snprintf(what, sizeof what, "trial %d second order dt %u odt %u at %u Hz", trial, dt2, dt,
                 c.tick_hz);
        ref_compare(&c, &base2.v, &older.v, &want.v, &got2, what);
    }
    cr_assert_gt(ref_second_order_records, 1000u, "second-order records: %u",
                 ref_second_order_records);
}

/* SNAPSHOT-WIRE.md's worked example of a second-order UPDATE: the three
 * views of its table, encoded by the library and by the reference, must
 * give the document's bytes, which decode back to the new view. */
static uint32_t ex_rot(uint32_t index, uint32_t a, uint32_t b, uint32_t c)
{
    return index << 30 | a << 20 | b << 10 | c;
}

static void ex_state(kz_snap_state *s, const int16_t rel[3][3], const uint32_t rot[3])
{
    memset(s, 0, sizeof *s);
    s->entity = 7;
    s->kind = KZ_KIND_AVATAR;
    s->pos[0] = 512;
    s->pos[2] = -1024;
    s->yaw = 16384;
    s->flags = KZ_AVATAR_VR;
    memcpy(s->rel, rel, sizeof s->rel);
    memcpy(s->rot, rot, sizeof s->rot);
}

Test(spec, snapshot_second_order_worked_example)
{
    spec_load();
    kz_snap_codec c;
    cr_assert_eq(kz_snap_codec_init(&c, 30, 150, 1000.0f), KZ_OK);
    static const int16_t rel_o[3][3] = {{0, 1600, 50}, {-300, 1000, 200}, {2040, 900, 0}};
    static const int16_t rel_b[3][3] = {{0, 1603, 52}, {-290, 1000, 205}, {2046, 900, 0}};
    static const int16_t rel_s[3][3] = {{1, 1606, 54}, {-280, 1001, 210}, {2048, 900, 0}};
    const uint32_t rot_o[3] = {ex_rot(3, 511, 600, 511), ex_rot(3, 400, 300, 200),
                               ex_rot(2, 500, 500, 500)};
    const uint32_t rot_b[3] = {ex_rot(3, 511, 604, 511), ex_rot(3, 400, 300, 200),
                               ex_rot(3, 500, 500, 500)};
    const uint32_t rot_s[3] = {ex_rot(3, 511, 608, 512), ex_rot(3, 400, 300, 200),
                               ex_rot(3, 501, 500, 500)};
    ref_view o, b, s, sent, out;
    ref_view_init(&o, 1000);
    ref_view_init(&b, 1001);
    ref_view_init(&s, 1002);
    kz_snap_state st;
    ex_state(&st, rel_o, rot_o);
    ref_view_add(&o, 0, &st);
    ex_state(&st, rel_b, rot_b);
    ref_view_add(&b, 0, &st);
    ex_state(&st, rel_s, rot_s);
    ref_view_add(&s, 0, &st);

    uint8_t buf[64];
    memset(buf, 0, sizeof buf);
    kz_bitwriter w;
    kz_bitwriter_init(&w, buf, sizeof buf);
    ref_view_init(&sent, 1002);
    kz_snap_encode_args a = {.base = &b.v, .older = &o.v, .want = &s.v, .budget_bits = SIZE_MAX};
    cr_assert_eq(kz_snap_encode(&c, &a, &w, &sent.v, NULL, NULL), KZ_OK);
    size_t bits = kz_bitwriter_bits(&w), n = kz_bitwriter_finish(&w);
    char hex[3 * sizeof buf + 1] = "";
    for (size_t i = 0; i < n; i++)
        snprintf(hex + 3 * i, 4, "%02x ", buf[i]);
    cr_assert_eq(bits, (size_t)spec_num("snap.example2.bits"), "the body is %zu bits: %s", bits,
                 hex);
    spec_assert_hex("snapshot-second-order", buf, n);
    ref_bits rw;
    memset(&rw, 0, sizeof rw);
    cr_assert_eq(ref_body(&rw, &c, &b.v, &o.v, &s.v), n);
    spec_assert_hex("snapshot-second-order", rw.b, n);

    kz_bitreader r;
    kz_bitreader_init(&r, buf, n);
    uint32_t older_tick;
    cr_assert_eq(kz_snap_peek_older(&c, &r, &older_tick), KZ_OK);
    cr_assert_eq(older_tick, 1000u);
    ref_view_init(&out, 0);
    kz_snap_view big = out.v;
    kz_snap_state states[150];
    uint16_t slots[150];
    big.cap = 150;
    big.slot = slots;
    big.state = states;
    cr_assert_eq(kz_snap_decode_older(&c, &r, &b.v, &o.v, &big, NULL, NULL), KZ_OK);
    cr_assert_eq(big.count, 1u);
    cr_assert_eq(slots[0], 0);
    cr_assert(memcmp(&states[0], &s.state[0], sizeof states[0]) == 0,
              "the example decodes to the new view");
}

/* Section 6a: the ENet MAC key and tag as the document words them (with
 * libsodium directly), and as the library computes them. */
Test(spec, enet_mac_key_and_tag_examples)
{
    spec_load();
    uint8_t master[32], sub[32], key[16], msg[8];
    for (int i = 0; i < 32; i++)
        master[i] = (uint8_t)i;
    const uint64_t sid = 0x0123456789abcdefull;
    crypto_kdf_derive_from_key(sub, 32, KZ_KDF_ID_ENET_MAC, KZ_KDF_CONTEXT, master);
    spec_assert_hex("enet-mac-subkey", sub, 32);
    le(msg, sid, 8);
    crypto_generichash(key, 16, msg, 8, sub, 32);
    spec_assert_hex("enet-mac-key", key, 16);
    kz__enet_mac lib;
    kz__enet_mac_derive(&lib, master, sid);
    cr_assert_arr_eq(lib.key, key, 16, "the library's MAC key is the document's");

    const spec_hex *in = spec_hex_named("enet-mac-input");
    uint8_t d[64], out[crypto_shorthash_BYTES];
    cr_assert_leq(in->n, sizeof d);
    memcpy(d, in->b, in->n);
    crypto_shorthash(out, d, in->n, key);
    memcpy(d + 4, out, 4);
    spec_assert_hex("enet-mac-wire", d, in->n);
    /* The library's receiver accepts the document's datagram, with the
     * connectID the input carried in the field. */
    kz__enet_header h;
    cr_assert(kz__enet_header_parse(d, in->n, &h));
    cr_assert_eq(h.checksum_at, 4u);
    uint32_t connect_id, tag;
    memcpy(&connect_id, in->b + 4, 4);
    cr_assert(kz__enet_mac_check(&lib, d, in->n, &h, connect_id, &tag));
    ENetBuffer b = {.data = (void *)in->b, .dataLength = in->n};
    uint32_t sent = kz__enet_mac_buffers(&lib, &b, 1);
    cr_assert_arr_eq(&sent, out, 4, "the sender's tag is the document's");
}

/* ---- SCALING.md: the bus ---------------------------------------------------- */

Test(spec, bus_header_tick_and_record_layouts)
{
    spec_load();
    kz_bus_header h = {.type = KZ_BUS_SYNC, .sender = 0, .length = 77,
                       .world = kz_bus_world_hash("plaza"), .instance = 0x1122334455667788ull,
                       .epoch = 1800000000123ull, .seq = 42};
    uint8_t msg[KZ_BUS_HEADER_BYTES];
    kz_bus_header_write(&h, msg);
    uint8_t ver = KZ_BUS_VERSION, type = KZ_BUS_SYNC, sender[2] = {0, 0}, len[4], res[4] = {0};
    uint8_t world[8], inst[8], epoch[8], seq[8];
    le(len, 77, 4);
    le(world, h.world, 8);
    le(inst, h.instance, 8);
    le(epoch, h.epoch, 8);
    le(seq, 42, 8);
    /* The world hash is BLAKE2b-256 of the name, first 8 bytes. */
    uint8_t full[32];
    crypto_generichash(full, sizeof full, (const uint8_t *)"plaza", 5, NULL, 0);
    cr_assert_arr_eq(world, full, 8);
    const spec_field hf[] = {
        {"magic", (const uint8_t *)KZ_BUS_MAGIC, 4}, {"version", &ver, 1}, {"type", &type, 1},
        {"sender", sender, 2}, {"length", len, 4}, {"reserved", res, 4}, {"world", world, 8},
        {"instance", inst, 8}, {"epoch", epoch, 8}, {"seq", seq, 8},
    };
    spec_check_layout("bus-header", msg, sizeof msg, hf, sizeof hf / sizeof hf[0],
                      KZ_BUS_HEADER_BYTES);

    kz_bus_tick_head th = {.tick = 900, .part = 2, .flags = KZ_BUS_TICK_LAST | KZ_BUS_TICK_FULL,
                           .target = 3, .first = 128, .end = 4160, .count = 17};
    uint8_t tb[KZ_BUS_TICK_HEAD_BYTES];
    kz_bus_tick_head_write(&th, tb);
    uint8_t tick[4], part[2], flags = 3, target = 3, first[4], end[4], count[4];
    le(tick, 900, 4);
    le(part, 2, 2);
    le(first, 128, 4);
    le(end, 4160, 4);
    le(count, 17, 4);
    const spec_field tf[] = {
        {"tick", tick, 4}, {"part", part, 2}, {"flags", &flags, 1}, {"target", &target, 1},
        {"first", first, 4}, {"end", end, 4}, {"count", count, 4},
    };
    spec_check_layout("bus-tick", tb, sizeof tb, tf, sizeof tf / sizeof tf[0],
                      KZ_BUS_TICK_HEAD_BYTES);

    uint8_t body[3] = {7, 8, 9}, rb[KZ_BUS_REC_BYTES + 3], *p = rb;
    kz_bus_rec r = {.kind = KZ_BUS_D_SEND, .sub = 2, .len = 3, .slot = 5, .serial = 6, .body = body};
    cr_assert(kz_bus_rec_write(&r, 0, &p, rb + sizeof rb));
    uint8_t kind = KZ_BUS_D_SEND, sub = 2, rlen[2], slot[4], serial[4];
    le(rlen, 3, 2);
    le(slot, 5, 4);
    le(serial, 6, 4);
    const spec_field rf[] = {
        {"kind", &kind, 1}, {"sub", &sub, 1}, {"len", rlen, 2}, {"slot", slot, 4},
        {"serial", serial, 4}, {"body", body, 3},
    };
    spec_check_layout("bus-record", rb, sizeof rb, rf, sizeof rf / sizeof rf[0], sizeof rb);
}
