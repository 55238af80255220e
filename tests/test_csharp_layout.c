/*
 * The C# binding (examples/csharp/Kizuna.cs) against the C headers.
 *
 * A P/Invoke mirror that drifts from its C struct corrupts memory without
 * any error, so the binding states its layout explicitly: every mirrored
 * struct is LayoutKind.Explicit with Size = sizeof and one FieldOffset per
 * member, named as in C. This suite reads Kizuna.cs with a line-based scan
 * (trusted project source, written one declaration a line) and checks:
 *   - each struct's Size, and each field's offset, C# type and byte size,
 *     against sizeof/offsetof and the member's type here; every struct and
 *     field on either side must be present on the other;
 *   - each KZ_* constant it mirrors against the header's value, both ways;
 *   - each DllImport: Cdecl, names a KZ_API function of the public headers,
 *     with the same parameter count and the same type class per parameter
 *     and return value; and every KZ_API function of client.h is bound.
 * Layouts are those of a 64-bit process, the binding's stated contract.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <ctype.h>
#include <dirent.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kizuna/client.h>
#include <kizuna/log.h>
#include <kizuna/server.h>

#ifndef KZ_SOURCE_DIR
#  error "KZ_SOURCE_DIR must name the source tree (tests/CMakeLists.txt)"
#endif

#define BINDING_PATH KZ_SOURCE_DIR "/examples/csharp/Kizuna.cs"

_Static_assert(sizeof(void *) == 8, "the binding's layouts are those of a 64-bit process");
/* kz_avatar_state.pose is bound as floats; kz_pose must be nothing else. */
_Static_assert(sizeof(kz_pose) == 7 * sizeof(float), "kz_pose is 7 floats");

/* ---- what C says ------------------------------------------------------- */

/* The C# type a C member's (element) type is bound as. Pointers of every
 * kind are IntPtr; an unlisted type yields "?" and fails the comparison. */
#define CS_TYPE(x)                                                             \
    _Generic((x),                                                              \
        uint8_t: "byte", char: "byte", int8_t: "sbyte",                        \
        uint16_t: "ushort", int16_t: "short",                                  \
        uint32_t: "uint", int32_t: "int",                                      \
        uint64_t: "ulong", int64_t: "long",                                    \
        float: "float", double: "double",                                      \
        void *: "IntPtr", const uint8_t *: "IntPtr", kz_log_fn: "IntPtr",      \
        void *(*)(void *, size_t, size_t): "IntPtr",                           \
        void (*)(void *, void *, size_t): "IntPtr",                            \
        kz_address: "kz_address", kz_log: "kz_log",                            \
        kz_allocator: "kz_allocator",                                          \
        kz_netclient_config: "kz_netclient_config",                            \
        kz_session_keys: "kz_session_keys", kz_badge: "kz_badge",              \
        kz_avatar_state: "kz_avatar_state",                                    \
        default: "?")

typedef struct c_member {
    const char *strct;
    const char *field;    /* NULL: the struct's own row */
    size_t offset;
    size_t size;          /* bytes, a whole array for arrays */
    size_t count;         /* elements; 1 for scalars and nested structs */
    const char *cs_type;  /* C# type of the member or of its elements */
    int array;            /* bound as a `fixed` buffer */
} c_member;

#define M(T, f) ((T *)0)->f
#define STRUCT(T) {#T, NULL, 0, sizeof(T), 1, #T, 0}
#define FIELD(T, f) {#T, #f, offsetof(T, f), sizeof M(T, f), 1, CS_TYPE(M(T, f)), 0}
#define ARRAY(T, f)                                                            \
    {#T, #f, offsetof(T, f), sizeof M(T, f), sizeof M(T, f) / sizeof M(T, f)[0], \
     CS_TYPE(M(T, f)[0]), 1}
/* An array of structs bound as a buffer of their scalar elements of C type
 * E (C# has no fixed buffers of structs). */
#define FLAT(T, f, E)                                                          \
    {#T, #f, offsetof(T, f), sizeof M(T, f), sizeof M(T, f) / (sizeof(E)),     \
     CS_TYPE((E)0), 1}

/* Every struct the binding mirrors, with every member. */
static const c_member c_members[] = {
    STRUCT(kz_address),
    FIELD(kz_address, family), ARRAY(kz_address, ip), FIELD(kz_address, port),

    STRUCT(kz_log),
    FIELD(kz_log, sink), FIELD(kz_log, ctx), FIELD(kz_log, level),

    STRUCT(kz_allocator),
    FIELD(kz_allocator, ctx), FIELD(kz_allocator, alloc), FIELD(kz_allocator, free),

    STRUCT(kz_netclient_config),
    FIELD(kz_netclient_config, server), FIELD(kz_netclient_config, connect_timeout_ms),
    FIELD(kz_netclient_config, resend_ms), FIELD(kz_netclient_config, disable_aes),
    FIELD(kz_netclient_config, resume_silence_ms),
    FIELD(kz_netclient_config, log), FIELD(kz_netclient_config, alloc),

    STRUCT(kz_client_config),
    FIELD(kz_client_config, net), FIELD(kz_client_config, interp_delay_ms),
    FIELD(kz_client_config, input_redundancy), FIELD(kz_client_config, event_capacity),
    FIELD(kz_client_config, header_only),

    STRUCT(kz_session_keys),
    ARRAY(kz_session_keys, client_to_server), ARRAY(kz_session_keys, server_to_client),

    STRUCT(kz_connect_token),
    FIELD(kz_connect_token, token_len), ARRAY(kz_connect_token, token),
    FIELD(kz_connect_token, keys),

    STRUCT(kz_pose),
    ARRAY(kz_pose, pos), ARRAY(kz_pose, rot),

    STRUCT(kz_avatar_state),
    ARRAY(kz_avatar_state, pos), ARRAY(kz_avatar_state, vel), FIELD(kz_avatar_state, yaw),
    FLAT(kz_avatar_state, pose, float), FIELD(kz_avatar_state, anim),
    FIELD(kz_avatar_state, flags), FIELD(kz_avatar_state, kind),
    FIELD(kz_avatar_state, holder),

    STRUCT(kz_badge),
    FIELD(kz_badge, verification_level), FIELD(kz_badge, actor_kind),
    ARRAY(kz_badge, reserved), FIELD(kz_badge, acting_for), ARRAY(kz_badge, method),
    ARRAY(kz_badge, name), ARRAY(kz_badge, reserved2),

    STRUCT(kz_client_event),
    FIELD(kz_client_event, type), FIELD(kz_client_event, entity), FIELD(kz_client_event, code),
    FIELD(kz_client_event, len), FIELD(kz_client_event, data), FIELD(kz_client_event, badge),

    STRUCT(kz_client_entity),
    FIELD(kz_client_entity, id), FIELD(kz_client_entity, reserved),
    FIELD(kz_client_entity, state),

    STRUCT(kz_net_traffic),
    FIELD(kz_net_traffic, bytes_in), FIELD(kz_net_traffic, bytes_out),
    FIELD(kz_net_traffic, packets_in), FIELD(kz_net_traffic, packets_out),
};
#define N_C_MEMBERS (sizeof c_members / sizeof c_members[0])

typedef struct c_const {
    const char *name;
    double value;  /* exact: every value here is an integer below 2^53 or 2.0 */
} c_const;

#define K(name) {#name, (double)(name)}

/* Every constant the binding mirrors. */
static const c_const c_consts[] = {
    K(KZ_VERSION_MAJOR), K(KZ_VERSION_MINOR), K(KZ_VERSION_PATCH), K(KZ_VERSION_NUMBER),
    K(KZ_OK), K(KZ_EINVAL), K(KZ_ENOMEM), K(KZ_EFULL), K(KZ_EEMPTY), K(KZ_EOVERFLOW),
    K(KZ_ERANGE), K(KZ_ENOTFINITE), K(KZ_EPROTO), K(KZ_EAUTH), K(KZ_EEXPIRED),
    K(KZ_EREPLAY), K(KZ_EDENIED), K(KZ_EIO), K(KZ_EAGAIN), K(KZ_ESTATE),
    K(KZ_LOG_OFF), K(KZ_LOG_ERROR), K(KZ_LOG_WARN), K(KZ_LOG_INFO), K(KZ_LOG_DEBUG),
    K(KZ_LOG_TRACE), K(KZ_LOG_LINE_MAX),
    K(KZ_NS_PER_MS), K(KZ_NS_PER_S),
    K(KZ_KEY_BYTES), K(KZ_TOKEN_MAX_BYTES), K(KZ_TOKEN_NAME_MAX), K(KZ_TOKEN_METHOD_MAX),
    K(KZ_CONNECT_TOKEN_FILE_MAX_BYTES), K(KZ_MAX_MESSAGE_BYTES),
    K(KZ_ADDR_IPV4), K(KZ_ADDR_IPV6),
    K(KZ_VERIFY_NONE), K(KZ_VERIFY_BASIC), K(KZ_VERIFY_STRONG),
    K(KZ_ACTOR_HUMAN), K(KZ_ACTOR_AGENT), K(KZ_ACTOR_BOT),
    K(KZ_DENY_SERVER_FULL), K(KZ_DENY_TOKEN_IN_USE), K(KZ_DENY_CLIENT_IN_USE), K(KZ_DENY_SHUTTING_DOWN), K(KZ_DENY_UNAVAILABLE),
    K(KZ_DENY_NO_SESSION), K(KZ_DENY_REPLACING),
    K(KZ_AVATAR_REACH), K(KZ_AVATAR_SPEAKING), K(KZ_AVATAR_VR),
    K(KZ_KIND_AVATAR), K(KZ_KIND_OBJECT),
    K(KZ_POSE_HEAD), K(KZ_POSE_LEFT_HAND), K(KZ_POSE_RIGHT_HAND), K(KZ_POSE_COUNT),
    K(KZ_CLIENT_IDLE), K(KZ_CLIENT_CONNECTING), K(KZ_CLIENT_CONNECTED),
    K(KZ_CLIENT_DISCONNECTED), K(KZ_CLIENT_FAILED), K(KZ_CLIENT_RECONNECTING),
    K(KZ_EV_CONNECTED), K(KZ_EV_ENTER), K(KZ_EV_LEAVE), K(KZ_EV_CHAT), K(KZ_EV_EMOTE),
    K(KZ_EV_VOICE), K(KZ_EV_CORRECTION), K(KZ_EV_NOTICE), K(KZ_EV_DISCONNECTED),
    K(KZ_EV_RECONNECTING), K(KZ_EV_RESUMED),
    K(KZ_LOST_RESUME_REFUSED), K(KZ_LOST_RESUME_TIMEOUT), K(KZ_NETCLIENT_DEFAULT_SILENCE_MS),
    K(KZ_CLIENT_C_SNAPSHOTS), K(KZ_CLIENT_C_SNAPSHOT_BYTES), K(KZ_CLIENT_C_SNAPSHOTS_LATE),
    K(KZ_CLIENT_C_SNAPSHOTS_NO_BASE), K(KZ_CLIENT_C_DROP_MALFORMED),
    K(KZ_CLIENT_C_CORRECTIONS), K(KZ_CLIENT_C_INPUTS_SENT), K(KZ_CLIENT_C_EVENTS_DROPPED),
    K(KZ_CLIENT_C_SNAPSHOTS_EARLY), K(KZ_CLIENT_C_INPUTS_DETACHED),
    K(KZ_CLIENT_C_COUNT),
    K(KZ_ADMIN_KICK), K(KZ_ADMIN_MUTE), K(KZ_ADMIN_UNMUTE), K(KZ_ADMIN_OBSERVE_ON),
    K(KZ_ADMIN_OBSERVE_OFF), K(KZ_ADMIN_SUMMON), K(KZ_ADMIN_ZONE_LOCK),
    K(KZ_ADMIN_ZONE_UNLOCK),
    K(KZ_KICK_ADMIN), K(KZ_KICK_VIOLATION), K(KZ_KICK_SHUTDOWN), K(KZ_KICK_NO_PLACE),
    K(KZ_KICK_REPLACED),
    K(KZ_NOTICE_KICK), K(KZ_NOTICE_ZONE_ENTER), K(KZ_NOTICE_ZONE_LEAVE),
    K(KZ_NOTICE_OBSERVED), K(KZ_NOTICE_DENIED), K(KZ_NOTICE_MUTED), K(KZ_NOTICE_WORLD_PAUSED), K(KZ_NOTICE_WORLD_RESUMED),
    K(KZ_CHAT_MAX_BYTES), K(KZ_VOICE_MAX_FRAME_BYTES), K(KZ_NOTICE_MAX_BYTES),
};
#define N_C_CONSTS (sizeof c_consts / sizeof c_consts[0])

/* Functions outside client.h a client needs, which the binding must bind. */
static const char *const required_functions[] = {
    "kz_version", "kz_version_number", "kz_strerror", "kz_connect_token_decode",
    "kz_avatar_state_rest",
};

/* ---- what the binding says --------------------------------------------- */

#define NAME_MAX_LEN 64
#define MAX_PARAMS 12
#define MAX_ITEMS 256
#define MAX_ERRORS 32

typedef struct cs_struct {
    char name[NAME_MAX_LEN];
    long size;
    int line;
} cs_struct;

typedef struct cs_field {
    int strct;  /* index into structs */
    char name[NAME_MAX_LEN];
    char type[NAME_MAX_LEN];
    long offset;
    long count;
    int fixed;
    int line;
} cs_field;

typedef struct cs_const {
    char name[NAME_MAX_LEN];
    double value;
    int line;
} cs_const;

/* A function's signature reduced to type classes: a C# type name for
 * values passed by value ("uint", "ulong", "UIntPtr", ...), "*" for
 * anything passed as an address. */
typedef struct signature {
    char name[NAME_MAX_LEN];
    char ret[NAME_MAX_LEN];
    char params[MAX_PARAMS][NAME_MAX_LEN];
    int n_params;
    int line;
    char where[NAME_MAX_LEN];  /* header file (C side) */
} signature;

typedef struct binding {
    cs_struct structs[MAX_ITEMS];
    int n_structs;
    cs_field fields[MAX_ITEMS];
    int n_fields;
    cs_const consts[MAX_ITEMS];
    int n_consts;
    signature funcs[MAX_ITEMS];
    int n_funcs;
    char errors[MAX_ERRORS][160];
    int n_errors;
} binding;

static binding cs;

static void cs_error(int line, const char *what)
{
    if (cs.n_errors < MAX_ERRORS)
        snprintf(cs.errors[cs.n_errors], sizeof cs.errors[0], "Kizuna.cs:%d: %s", line, what);
    cs.n_errors++;
}

static const char *skip_space(const char *p)
{
    while (*p && isspace((unsigned char)*p))
        p++;
    return p;
}

/* Copies the identifier (letters, digits, _) at p; returns the end. */
static const char *read_ident(const char *p, char *out)
{
    size_t n = 0;
    while ((isalnum((unsigned char)*p) || *p == '_') && n + 1 < NAME_MAX_LEN)
        out[n++] = *p++;
    out[n] = '\0';
    return p;
}

/* The integer after `key` in line (e.g. "Size =", "FieldOffset("), or -1. */
static long number_after(const char *line, const char *key)
{
    const char *p = strstr(line, key);
    if (!p)
        return -1;
    p = skip_space(p + strlen(key));
    return isdigit((unsigned char)*p) ? strtol(p, NULL, 10) : -1;
}

/* `[StructLayout(...)]` then `... struct NAME`. */
static void scan_struct(const char *line, int no, long *pending_size, int *current)
{
    const char *s = strstr(line, "struct ");
    char name[NAME_MAX_LEN];
    read_ident(skip_space(s + 7), name);
    if (*pending_size < 0) {
        if (strncmp(name, "kz_", 3) == 0)
            cs_error(no, "mirrored struct without [StructLayout(LayoutKind.Explicit, Size = N)]");
        *current = -1;
        return;
    }
    cs_struct *st = &cs.structs[cs.n_structs];
    snprintf(st->name, sizeof st->name, "%s", name);
    st->size = *pending_size;
    st->line = no;
    *current = cs.n_structs++;
    *pending_size = -1;
}

/* `[FieldOffset(N)] public [fixed] TYPE NAME[[COUNT]];` */
static void scan_field(const char *line, int no, int current)
{
    if (current < 0) {
        cs_error(no, "FieldOffset outside a mirrored struct");
        return;
    }
    cs_field *f = &cs.fields[cs.n_fields];
    f->strct = current;
    f->offset = number_after(line, "FieldOffset(");
    f->line = no;
    const char *p = skip_space(strchr(line, ']') + 1);
    if (strncmp(p, "public ", 7) != 0) {
        cs_error(no, "field is not public");
        return;
    }
    p = skip_space(p + 7);
    f->fixed = strncmp(p, "fixed ", 6) == 0;
    if (f->fixed)
        p = skip_space(p + 6);
    p = skip_space(read_ident(p, f->type));
    p = read_ident(p, f->name);
    f->count = f->fixed ? number_after(p, "[") : 1;
    if (!f->type[0] || !f->name[0] || f->offset < 0 || f->count < 1)
        cs_error(no, "unreadable field declaration");
    else
        cs.n_fields++;
}

/* `public const TYPE KZ_NAME = VALUE;` (decimal, hex or a float literal). */
static void scan_const(const char *line, int no)
{
    char type[NAME_MAX_LEN];
    cs_const *k = &cs.consts[cs.n_consts];
    const char *p = skip_space(strstr(line, "const ") + 6);
    p = skip_space(read_ident(p, type));
    p = skip_space(read_ident(p, k->name));
    if (strncmp(k->name, "KZ_", 3) != 0)
        return;
    if (*p != '=') {
        cs_error(no, "unreadable constant");
        return;
    }
    p = skip_space(p + 1);
    char *end;
    if (strcmp(type, "float") == 0 || strcmp(type, "double") == 0)
        k->value = strtod(p, &end);
    else if (*p == '-')
        k->value = (double)strtoll(p, &end, 0);
    else
        k->value = (double)strtoull(p, &end, 0);
    if (end == p || !strchr(end, ';'))
        cs_error(no, "unreadable constant value");
    k->line = no;
    cs.n_consts++;
}

/* ---- signatures (both languages) --------------------------------------- */

/* C scalar types by the C# type that carries them by value. */
static const char *const c_to_cs[][2] = {
    {"uint8_t", "byte"},   {"int8_t", "sbyte"},    {"uint16_t", "ushort"},
    {"int16_t", "short"},  {"uint32_t", "uint"},   {"int32_t", "int"},
    {"int", "int"},        {"uint64_t", "ulong"},  {"int64_t", "long"},
    {"kz_time_ns", "ulong"}, {"size_t", "UIntPtr"}, {"float", "float"},
    {"double", "double"},  {"void", "void"},
};

/* C# types that carry an address. */
static const char *const cs_address_types[] = {"IntPtr", "KizunaClientHandle", "string"};

/* Removes leading `const`s and trailing spaces from a C type in place. */
static char *c_bare_type(char *t)
{
    t = (char *)skip_space(t);
    while (strncmp(t, "const ", 6) == 0)
        t = (char *)skip_space(t + 6);
    size_t n = strlen(t);
    while (n && isspace((unsigned char)t[n - 1]))
        t[--n] = '\0';
    return t;
}

/* The class of a C type (a declaration without its name). */
static void c_class(char *type, char *out)
{
    if (strchr(type, '*') || strchr(type, '[')) {
        strcpy(out, "*");
        return;
    }
    type = c_bare_type(type);
    for (size_t i = 0; i < sizeof c_to_cs / sizeof c_to_cs[0]; i++)
        if (strcmp(type, c_to_cs[i][0]) == 0) {
            snprintf(out, NAME_MAX_LEN, "%s", c_to_cs[i][1]);
            return;
        }
    snprintf(out, NAME_MAX_LEN, "%s", type);  /* unmapped: matches nothing */
}

/* The class of one C parameter declaration ("const kz_client *c"). */
static void c_param_class(const char *decl, char *out)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", decl);
    if (strchr(buf, '*') || strchr(buf, '[')) {
        strcpy(out, "*");
        return;
    }
    /* Drop the parameter's name when there is one (two or more words). */
    char *bare = c_bare_type(buf);
    char *last = strrchr(bare, ' ');
    if (last)
        *last = '\0';
    c_class(bare, out);
}

/* The class of one C# parameter ("[In, Out] kz_client_entity[] entities"). */
static void cs_param_class(const char *decl, char *out)
{
    const char *p = skip_space(decl);
    while (*p == '[') {  /* attributes */
        int depth = 0;
        do {
            depth += (*p == '[') - (*p == ']');
            p++;
        } while (*p && depth > 0);
        p = skip_space(p);
    }
    char type[NAME_MAX_LEN];
    const char *end = read_ident(p, type);
    if (!strcmp(type, "ref") || !strcmp(type, "out") || !strcmp(type, "in") || *end == '[' ||
        *end == '*') {
        strcpy(out, "*");
        return;
    }
    for (size_t i = 0; i < sizeof cs_address_types / sizeof cs_address_types[0]; i++)
        if (strcmp(type, cs_address_types[i]) == 0) {
            strcpy(out, "*");
            return;
        }
    snprintf(out, NAME_MAX_LEN, "%s", type);
}

/* Splits the parameter list in text[open+1 .. matching ')') at top-level
 * commas and classifies each; "void" or nothing is zero parameters.
 * Returns a pointer past the ')', or NULL if it is unbalanced. */
static const char *split_params(const char *open, signature *sig, int c_side)
{
    char decl[256];
    size_t n = 0;
    int depth = 0;
    sig->n_params = 0;
    for (const char *p = open + 1; *p; p++) {
        int top = depth == 0;
        if (*p == '(' || *p == '[')
            depth++;
        if ((*p == ')' && top) || (*p == ',' && top)) {
            decl[n] = '\0';
            const char *d = skip_space(decl);
            int empty = !*d || (c_side && strcmp(c_bare_type(decl), "void") == 0);
            if (!(empty && *p == ')' && sig->n_params == 0) && sig->n_params < MAX_PARAMS) {
                if (c_side)
                    c_param_class(decl, sig->params[sig->n_params]);
                else
                    cs_param_class(decl, sig->params[sig->n_params]);
                sig->n_params++;
            }
            n = 0;
            if (*p == ')')
                return p + 1;
            continue;
        }
        if (*p == ')' || *p == ']')
            depth--;
        if (n + 1 < sizeof decl)
            decl[n++] = *p;
    }
    return NULL;
}

/* The identifier that ends right before `open`; its start is returned in
 * *start. */
static void ident_before(const char *text, const char *open, char *out, const char **start)
{
    const char *e = open;
    while (e > text && isspace((unsigned char)e[-1]))
        e--;
    const char *b = e;
    while (b > text && (isalnum((unsigned char)b[-1]) || b[-1] == '_'))
        b--;
    size_t n = (size_t)(e - b) < NAME_MAX_LEN - 1 ? (size_t)(e - b) : NAME_MAX_LEN - 1;
    memcpy(out, b, n);
    out[n] = '\0';
    *start = b;
}

/* `public static extern RET NAME(PARAMS);` (text joined up to the ';'). */
static void scan_extern(const char *text, int no)
{
    signature *sig = &cs.funcs[cs.n_funcs];
    const char *open = strchr(text, '(');
    const char *name_start;
    if (!open) {
        cs_error(no, "unreadable extern");
        return;
    }
    ident_before(text, open, sig->name, &name_start);
    char ret[NAME_MAX_LEN];
    const char *r = skip_space(strstr(text, "extern ") + 7);
    read_ident(r, ret);
    if (r >= name_start || !split_params(open, sig, 0)) {
        cs_error(no, "unreadable extern");
        return;
    }
    /* The marshaller frees a returned string; Kizuna's are static. */
    if (strcmp(ret, "string") == 0)
        cs_error(no, "a returned C string must be declared IntPtr");
    cs_param_class(ret, sig->ret);
    sig->line = no;
    cs.n_funcs++;
}

/* ---- reading Kizuna.cs -------------------------------------------------- */

typedef struct scan_state {
    long pending_size;   /* Size of a StructLayout not yet attached, or -1 */
    int current;         /* struct receiving FieldOffsets, or -1 */
    int pending_import;  /* a DllImport waits for its extern */
    int pending_fnptr;   /* an UnmanagedFunctionPointer waits for its delegate */
    int in_comment;      /* inside a block comment */
    char ext[1024];      /* extern declaration being joined */
    int ext_line;
} scan_state;

/* Blanks out comments in `line`, carrying block comments across lines.
 * String literals in the binding contain no comment markers. */
static void strip_comments(char *line, scan_state *st)
{
    for (char *p = line; *p; p++) {
        if (st->in_comment) {
            if (p[0] == '*' && p[1] == '/') {
                st->in_comment = 0;
                *p++ = ' ';
            }
            *p = ' ';
        } else if (p[0] == '/' && p[1] == '*') {
            st->in_comment = 1;
            *p++ = ' ';
            *p = ' ';
        } else if (p[0] == '/' && p[1] == '/') {
            *p = '\0';
            return;
        }
    }
}

static void scan_attribute_lines(const char *line, int no, scan_state *st)
{
    if (strstr(line, "[StructLayout(")) {
        st->pending_size = number_after(line, "Size =");
        if (!strstr(line, "LayoutKind.Explicit") || st->pending_size <= 0)
            cs_error(no, "StructLayout must be LayoutKind.Explicit with Size = N");
    }
    if (strstr(line, "[DllImport(")) {
        if (!strstr(line, "CallingConvention.Cdecl"))
            cs_error(no, "DllImport without CallingConvention.Cdecl");
        if (strstr(line, "EntryPoint"))
            cs_error(no, "EntryPoint is not used: the C# name is the C name");
        st->pending_import = 1;
    }
    if (strstr(line, "[UnmanagedFunctionPointer(")) {
        if (!strstr(line, "CallingConvention.Cdecl"))
            cs_error(no, "UnmanagedFunctionPointer without CallingConvention.Cdecl");
        st->pending_fnptr = 1;
    }
}

/* A delegate named kz_* is a C callback type: it must follow an
 * [UnmanagedFunctionPointer(CallingConvention.Cdecl)]. */
static void scan_delegate(const char *line, int no, scan_state *st)
{
    const char *open = strchr(line, '(');
    const char *start;
    char name[NAME_MAX_LEN];
    if (!open)
        return;
    ident_before(line, open, name, &start);
    if (strncmp(name, "kz_", 3) == 0 && !st->pending_fnptr)
        cs_error(no, "callback delegate without [UnmanagedFunctionPointer(Cdecl)]");
    st->pending_fnptr = 0;
}

static void scan_line(char *line, int no, scan_state *st)
{
    strip_comments(line, st);
    const char *t = skip_space(line);
    if (!*t)
        return;
    if (st->ext[0]) {  /* continuing an extern */
        strncat(st->ext, t, sizeof st->ext - strlen(st->ext) - 1);
    } else if (strstr(t, "static extern ")) {
        if (!st->pending_import)
            cs_error(no, "extern without [DllImport]");
        st->pending_import = 0;
        snprintf(st->ext, sizeof st->ext, "%s", t);
        st->ext_line = no;
    } else {
        scan_attribute_lines(t, no, st);
        if (strstr(t, " struct ") || strncmp(t, "struct ", 7) == 0)
            scan_struct(t, no, &st->pending_size, &st->current);
        else if (strstr(t, " class "))
            st->current = -1;
        if (strstr(t, "[FieldOffset("))
            scan_field(t, no, st->current);
        if (strstr(t, "public const "))
            scan_const(t, no);
        if (strstr(t, " delegate "))
            scan_delegate(t, no, st);
    }
    if (st->ext[0] && strchr(st->ext, ';')) {
        scan_extern(st->ext, st->ext_line);
        st->ext[0] = '\0';
    }
}

static void load_binding(void)
{
    FILE *f = fopen(BINDING_PATH, "r");
    cr_assert_not_null(f, "cannot open %s", BINDING_PATH);
    memset(&cs, 0, sizeof cs);
    scan_state st = {.pending_size = -1, .current = -1};
    char line[1024];
    int no = 0;
    while (fgets(line, sizeof line, f)) {
        no++;
        if (cs.n_structs >= MAX_ITEMS || cs.n_fields >= MAX_ITEMS ||
            cs.n_consts >= MAX_ITEMS || cs.n_funcs >= MAX_ITEMS)
            cr_assert_fail("Kizuna.cs has more declarations than this test holds");
        scan_line(line, no, &st);
    }
    fclose(f);
    if (st.ext[0])
        cs_error(st.ext_line, "extern without ';'");
    for (int i = 0; i < cs.n_errors && i < MAX_ERRORS; i++)
        cr_log_error("%s", cs.errors[i]);
    cr_assert_eq(cs.n_errors, 0, "%d problem(s) reading %s", cs.n_errors, BINDING_PATH);
}

/* ---- reading the headers ------------------------------------------------ */

static signature c_funcs[1024];
static int n_c_funcs;

/* Reads a whole file with comments blanked out. Caller frees. */
static char *read_without_comments(const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)size + 1);
    cr_assert_not_null(s);
    cr_assert_eq(fread(s, 1, (size_t)size, f), (size_t)size);
    s[size] = '\0';
    fclose(f);
    for (char *p = s; (p = strstr(p, "/*")) != NULL;) {
        char *e = strstr(p + 2, "*/");
        e = e ? e + 2 : s + size;
        for (; p < e; p++)
            if (*p != '\n')
                *p = ' ';
    }
    return s;
}

/* True when `p` lies on a preprocessor line (#define KZ_API ...). */
static int on_directive(const char *text, const char *p)
{
    while (p > text && p[-1] != '\n')
        p--;
    return *skip_space(p) == '#';
}

static void scan_header(const char *dir, const char *file)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    char *text = read_without_comments(path);
    for (const char *p = text; (p = strstr(p, "KZ_API")) != NULL; p += 6) {
        if (on_directive(text, p) || isalnum((unsigned char)p[6]) || p[6] == '_')
            continue;
        char decl[1024];
        const char *semi = strchr(p, ';');
        cr_assert_not_null(semi, "%s: KZ_API declaration without ';'", file);
        size_t n = (size_t)(semi - p) < sizeof decl - 1 ? (size_t)(semi - p) : sizeof decl - 1;
        memcpy(decl, p + 6, n - 6);
        decl[n - 6] = '\0';
        for (char *q = decl; *q; q++)
            if (*q == '\n' || *q == '\t')
                *q = ' ';
        signature *sig = &c_funcs[n_c_funcs];
        const char *open = strchr(decl, '(');
        const char *name_start;
        cr_assert_not_null(open, "%s: unreadable KZ_API declaration", file);
        ident_before(decl, open, sig->name, &name_start);
        cr_assert_not_null(split_params(open, sig, 1), "%s: %s: unbalanced", file, sig->name);
        char ret[256];
        snprintf(ret, sizeof ret, "%.*s", (int)(name_start - decl), decl);
        char *m = strstr(ret, "KZ_MUST_CHECK");
        if (m)
            memset(m, ' ', 13);
        c_class(ret, sig->ret);
        snprintf(sig->where, sizeof sig->where, "%s", file);
        cr_assert_lt(++n_c_funcs, (int)(sizeof c_funcs / sizeof c_funcs[0]));
    }
    free(text);
}

static void load_headers(void)
{
    static const char *const dirs[] = {"core", "net", "sim"};
    n_c_funcs = 0;
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/%s/include/kizuna", KZ_SOURCE_DIR, dirs[i]);
        DIR *d = opendir(dir);
        cr_assert_not_null(d, "cannot open %s", dir);
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            size_t n = strlen(e->d_name);
            if (n > 2 && strcmp(e->d_name + n - 2, ".h") == 0)
                scan_header(dir, e->d_name);
        }
        closedir(d);
    }
}

/* ---- lookups ------------------------------------------------------------ */

static const cs_struct *cs_find_struct(const char *name)
{
    for (int i = 0; i < cs.n_structs; i++)
        if (strcmp(cs.structs[i].name, name) == 0)
            return &cs.structs[i];
    return NULL;
}

static const cs_field *cs_find_field(const char *strct, const char *name)
{
    for (int i = 0; i < cs.n_fields; i++)
        if (strcmp(cs.structs[cs.fields[i].strct].name, strct) == 0 &&
            strcmp(cs.fields[i].name, name) == 0)
            return &cs.fields[i];
    return NULL;
}

static const c_member *c_find_member(const char *strct, const char *field)
{
    for (size_t i = 0; i < N_C_MEMBERS; i++)
        if (strcmp(c_members[i].strct, strct) == 0 &&
            (field ? c_members[i].field && strcmp(c_members[i].field, field) == 0
                   : !c_members[i].field))
            return &c_members[i];
    return NULL;
}

static const signature *c_find_func(const char *name)
{
    for (int i = 0; i < n_c_funcs; i++)
        if (strcmp(c_funcs[i].name, name) == 0)
            return &c_funcs[i];
    return NULL;
}

static const signature *cs_find_func(const char *name)
{
    for (int i = 0; i < cs.n_funcs; i++)
        if (strcmp(cs.funcs[i].name, name) == 0)
            return &cs.funcs[i];
    return NULL;
}

/* Bytes of one C# value of `type` in a 64-bit process; -1 if unknown. */
static long cs_type_size(const char *type)
{
    static const struct { const char *name; long size; } prim[] = {
        {"byte", 1},  {"sbyte", 1}, {"ushort", 2}, {"short", 2},  {"uint", 4},
        {"int", 4},   {"float", 4}, {"ulong", 8},  {"long", 8},   {"double", 8},
        {"IntPtr", 8}, {"UIntPtr", 8},
    };
    for (size_t i = 0; i < sizeof prim / sizeof prim[0]; i++)
        if (strcmp(type, prim[i].name) == 0)
            return prim[i].size;
    const cs_struct *s = cs_find_struct(type);
    return s ? s->size : -1;
}

/* ---- tests -------------------------------------------------------------- */

/* Compares one C# field with its C member. Returns 0 when they agree,
 * else 1 with the difference in why[0..cap). */
static int field_mismatch(const cs_field *f, const char *strct, char *why, size_t cap)
{
    const c_member *m = c_find_member(strct, f->name);
    long bytes = cs_type_size(f->type) * f->count;
    if (!m)
        snprintf(why, cap, "%s.%s (Kizuna.cs:%d) has no row in this test's C table", strct,
                 f->name, f->line);
    else if (f->offset != (long)m->offset)
        snprintf(why, cap, "%s.%s: C# FieldOffset %ld, C offsetof %zu", strct, f->name,
                 f->offset, m->offset);
    else if (strcmp(f->type, m->cs_type) != 0)
        snprintf(why, cap, "%s.%s: C# type %s, the C type binds as %s", strct, f->name, f->type,
                 m->cs_type);
    else if (f->fixed != m->array || f->count != (long)m->count)
        snprintf(why, cap, "%s.%s: C# %s with %ld element(s), C %s with %zu", strct, f->name,
                 f->fixed ? "fixed buffer" : "scalar", f->count,
                 m->array ? "array" : "scalar", m->count);
    else if (bytes != (long)m->size)
        snprintf(why, cap, "%s.%s: C# field is %ld bytes, C member %zu", strct, f->name, bytes,
                 m->size);
    else
        return 0;
    return 1;
}

Test(csharp_layout, every_struct_size_and_field_matches_c)
{
    load_binding();
    int fields = 0;
    for (int i = 0; i < cs.n_structs; i++) {
        const c_member *row = c_find_member(cs.structs[i].name, NULL);
        cr_expect_not_null(row, "struct %s (Kizuna.cs:%d) has no row in this test's C table",
                           cs.structs[i].name, cs.structs[i].line);
        if (row)
            cr_expect_eq(cs.structs[i].size, (long)row->size, "%s: C# Size %ld, C sizeof %zu",
                         cs.structs[i].name, cs.structs[i].size, row->size);
    }
    for (int i = 0; i < cs.n_fields; i++) {
        char why[256];
        int bad = field_mismatch(&cs.fields[i], cs.structs[cs.fields[i].strct].name, why,
                                 sizeof why);
        cr_expect(!bad, "%s", why);
        fields += !bad;
    }
    /* Non-trivial: the 13 client-facing structs have 54 members. */
    cr_expect_geq(cs.n_structs, 13, "only %d structs read from Kizuna.cs", cs.n_structs);
    cr_expect_geq(fields, 54, "only %d fields matched", fields);
    cr_log_info("%d structs, %d fields checked", cs.n_structs, fields);
}

Test(csharp_layout, every_c_row_is_mirrored)
{
    load_binding();
    for (size_t i = 0; i < N_C_MEMBERS; i++) {
        const c_member *m = &c_members[i];
        if (!m->field)
            cr_expect_not_null(cs_find_struct(m->strct), "C struct %s is not mirrored in Kizuna.cs",
                               m->strct);
        else
            cr_expect_not_null(cs_find_field(m->strct, m->field),
                               "C member %s.%s is not mirrored in Kizuna.cs", m->strct, m->field);
    }
}

/* The fields of each C# struct tile it: in offset order, none overlaps
 * the next and the last ends within Size (the declared order is C's). */
Test(csharp_layout, fields_do_not_overlap)
{
    load_binding();
    for (int i = 0; i < cs.n_fields; i++) {
        const cs_field *f = &cs.fields[i];
        long end = f->offset + cs_type_size(f->type) * f->count;
        const cs_struct *s = &cs.structs[f->strct];
        cr_expect_leq(end, s->size, "%s.%s ends at %ld, past Size %ld", s->name, f->name, end,
                      s->size);
        if (i + 1 < cs.n_fields && cs.fields[i + 1].strct == f->strct)
            cr_expect_leq(end, cs.fields[i + 1].offset, "%s.%s overlaps %s", s->name, f->name,
                          cs.fields[i + 1].name);
    }
}

Test(csharp_layout, every_constant_matches_c)
{
    load_binding();
    int checked = 0;
    for (int i = 0; i < cs.n_consts; i++) {
        const cs_const *k = &cs.consts[i];
        const c_const *c = NULL;
        for (size_t j = 0; j < N_C_CONSTS && !c; j++)
            if (strcmp(c_consts[j].name, k->name) == 0)
                c = &c_consts[j];
        cr_expect_not_null(c, "%s (Kizuna.cs:%d) has no row in this test's C table", k->name,
                           k->line);
        if (!c)
            continue;
        cr_expect(k->value == c->value, "%s: C# %.17g, C %.17g", k->name, k->value, c->value);
        checked++;
    }
    for (size_t j = 0; j < N_C_CONSTS; j++) {
        int found = 0;
        for (int i = 0; i < cs.n_consts; i++)
            found |= strcmp(cs.consts[i].name, c_consts[j].name) == 0;
        cr_expect(found, "%s is not mirrored in Kizuna.cs", c_consts[j].name);
    }
    cr_expect_geq(checked, (int)N_C_CONSTS, "only %d constants checked", checked);
    cr_expect_geq(checked, 90, "only %d constants checked", checked);
    cr_log_info("%d constants checked", checked);
}

static void check_signature(const signature *b, const signature *c)
{
    cr_expect_str_eq(b->ret, c->ret, "%s (Kizuna.cs:%d): returns %s, C (%s) %s", b->name,
                     b->line, b->ret, c->where, c->ret);
    cr_expect_eq(b->n_params, c->n_params, "%s (Kizuna.cs:%d): %d parameters, C (%s) %d",
                 b->name, b->line, b->n_params, c->where, c->n_params);
    for (int i = 0; i < b->n_params && i < c->n_params; i++)
        cr_expect_str_eq(b->params[i], c->params[i],
                         "%s (Kizuna.cs:%d): parameter %d passes %s, C (%s) %s", b->name, b->line,
                         i + 1, b->params[i], c->where, c->params[i]);
}

Test(csharp_layout, every_extern_matches_a_c_function)
{
    load_binding();
    load_headers();
    cr_assert_geq(n_c_funcs, 100, "only %d KZ_API functions read from the headers", n_c_funcs);
    for (int i = 0; i < cs.n_funcs; i++) {
        const signature *c = c_find_func(cs.funcs[i].name);
        cr_expect_not_null(c, "%s (Kizuna.cs:%d) is no KZ_API function of the public headers",
                           cs.funcs[i].name, cs.funcs[i].line);
        if (c)
            check_signature(&cs.funcs[i], c);
    }
    cr_log_info("%d externs checked against %d KZ_API functions", cs.n_funcs, n_c_funcs);
}

Test(csharp_layout, every_client_function_is_bound)
{
    load_binding();
    load_headers();
    int client = 0;
    for (int i = 0; i < n_c_funcs; i++) {
        if (strcmp(c_funcs[i].where, "client.h") != 0)
            continue;
        client++;
        cr_expect_not_null(cs_find_func(c_funcs[i].name), "client.h's %s is not bound",
                           c_funcs[i].name);
    }
    cr_expect_geq(client, 27, "only %d functions read from client.h", client);
    for (size_t i = 0; i < sizeof required_functions / sizeof required_functions[0]; i++)
        cr_expect_not_null(cs_find_func(required_functions[i]), "%s is not bound",
                           required_functions[i]);
}

/* The checker itself: a binding with a wrong offset, type, count or size,
 * or a field C does not have, is refused; the signature classes are what
 * the comparison relies on. A checker that passed by reading nothing or by
 * comparing nothing would fail here. */
Test(csharp_layout, the_checker_refuses_a_wrong_field)
{
    load_binding();
    const cs_field *name = cs_find_field("kz_badge", "name");
    const cs_field *yaw = cs_find_field("kz_avatar_state", "yaw");
    cr_assert_not_null(name);
    cr_assert_not_null(yaw);
    char why[256];
    cs_field bad = *name;
    cr_expect_eq(field_mismatch(&bad, "kz_badge", why, sizeof why), 0, "%s", why);
    bad.offset++;
    cr_expect_eq(field_mismatch(&bad, "kz_badge", why, sizeof why), 1);
    cr_expect(strstr(why, "kz_badge.name") != NULL, "message names the field: %s", why);
    bad = *name;
    snprintf(bad.type, sizeof bad.type, "sbyte");
    cr_expect_eq(field_mismatch(&bad, "kz_badge", why, sizeof why), 1);
    bad = *name;
    bad.count--;
    cr_expect_eq(field_mismatch(&bad, "kz_badge", why, sizeof why), 1);
    bad = *yaw;
    snprintf(bad.type, sizeof bad.type, "uint");  /* same size, wrong type */
    cr_expect_eq(field_mismatch(&bad, "kz_avatar_state", why, sizeof why), 1);
    bad = *yaw;
    snprintf(bad.name, sizeof bad.name, "pitch");
    cr_expect_eq(field_mismatch(&bad, "kz_avatar_state", why, sizeof why), 1);

    char cls[NAME_MAX_LEN];
    cs_param_class("[In, Out] kz_client_entity[] entities", cls);
    cr_expect_str_eq(cls, "*");
    cs_param_class("out kz_badge badge", cls);
    cr_expect_str_eq(cls, "*");
    cs_param_class("ushort emote", cls);
    cr_expect_str_eq(cls, "ushort");
    c_param_class("uint16_t emote", cls);
    cr_expect_str_eq(cls, "ushort");
    c_param_class("kz_time_ns now", cls);
    cr_expect_str_eq(cls, "ulong");
    c_param_class("const kz_client *c", cls);
    cr_expect_str_eq(cls, "*");
    c_param_class("const uint8_t backend_sk[KZ_SIGN_SECRET_KEY_BYTES]", cls);
    cr_expect_str_eq(cls, "*");
}
