/*
 * Key files: text format, strict parser, server id, and the careful file
 * I/O that secrets need (exclusive creation with the final mode, atomic
 * replacement, fsync of file and directory, wiping of every buffer that
 * held a secret). The format is specified in keys.h and docs/OPERATIONS.md.
 *
 * The workload is tiny (four files of a few hundred bytes, once per
 * command), so everything favours clear failures over speed: each refusal
 * names the file and the reason. Loading also checks who owns the files
 * and who else could change or read them (rules in keys.h).
 */
#define _GNU_SOURCE /* O_PATH: a keys directory this user may search but not list */
#include <errno.h>
#include <fcntl.h>
#include <linux/posix_acl.h>
#include <linux/posix_acl_xattr.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "defaults.h"
#include "keys.h"

#define KZS__CHECK_BYTES 4u
#define KZS__CHECK_PREFIX "check "
#define KZS__SERVER_ID_PREFIX "kizuna-server-id"

typedef struct kzs__key_desc {
    const char *file;
    const char *header;
    size_t bytes;
    int secret;
} kzs__key_desc;

static const kzs__key_desc kzs__keys[KZS_KEY_KIND_COUNT] = {
    {"backend.key", "kizuna backend-secret-key v1", KZ_SIGN_SECRET_KEY_BYTES, 1},
    {"backend.pub", "kizuna backend-public-key v1", KZ_SIGN_PUBLIC_KEY_BYTES, 0},
    {"server.key", "kizuna server-secret-key v1", KZ_BOX_SECRET_KEY_BYTES, 1},
    {"server.pub", "kizuna server-public-key v1", KZ_BOX_PUBLIC_KEY_BYTES, 0},
    {"audit.key", "kizuna audit-secret-key v1", KZ_SIGN_SECRET_KEY_BYTES, 1},
    {"audit.pub", "kizuna audit-public-key v1", KZ_SIGN_PUBLIC_KEY_BYTES, 0},
};

const char *kzs_key_file_name(kzs_key_kind kind) { return kzs__keys[kind].file; }
const char *kzs_key_header(kzs_key_kind kind) { return kzs__keys[kind].header; }
size_t kzs_key_bytes(kzs_key_kind kind) { return kzs__keys[kind].bytes; }
int kzs_key_is_secret(kzs_key_kind kind) { return kzs__keys[kind].secret; }

/* Prints "kizuna-server: <path>: <reason>" and returns -1. */
static kzs_report_fn kzs__report;
static void *kzs__report_ctx;

void kzs_keys_set_report(kzs_report_fn fn, void *ctx)
{
    kzs__report = fn;
    kzs__report_ctx = ctx;
}

/* Every message of this file: "<path>: <text>", to the report hook or to
 * stderr with the program prefix. */
static void kzs__say(const char *path, const char *fmt, va_list ap)
{
    char text[KZS_PATH_MAX + 256];
    int n = snprintf(text, sizeof text, "%s: ", path);
    if (n > 0 && (size_t)n < sizeof text)
        vsnprintf(text + n, sizeof text - (size_t)n, fmt, ap);
    if (kzs__report)
        kzs__report(kzs__report_ctx, text);
    else
        fprintf(stderr, "%s: %s\n", KZS_PROGRAM, text);
}

static int kzs__fail(const char *path, const char *fmt, ...) KZ_PRINTF(2, 3);
static int kzs__fail(const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kzs__say(path, fmt, ap);
    va_end(ap);
    return -1;
}

static void kzs__warn(const char *path, const char *fmt, ...) KZ_PRINTF(2, 3);
static void kzs__warn(const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kzs__say(path, fmt, ap);
    va_end(ap);
}

/* ---- text format ------------------------------------------------------- */

/* The check value: BLAKE2b-256(header || key), first 4 bytes. */
static void kzs__checksum(kzs_key_kind kind, const uint8_t *key, uint8_t out[KZS__CHECK_BYTES])
{
    crypto_generichash_state st;
    uint8_t h[crypto_generichash_BYTES];
    const char *header = kzs__keys[kind].header;
    crypto_generichash_init(&st, NULL, 0, sizeof h);
    crypto_generichash_update(&st, (const uint8_t *)header, strlen(header));
    crypto_generichash_update(&st, key, kzs__keys[kind].bytes);
    crypto_generichash_final(&st, h, sizeof h);
    memcpy(out, h, KZS__CHECK_BYTES);
    sodium_memzero(&st, sizeof st);
}

size_t kzs_key_encode(kzs_key_kind kind, const uint8_t *key, char out[KZS_KEY_FILE_MAX_BYTES])
{
    uint8_t check[KZS__CHECK_BYTES];
    char check_hex[2 * KZS__CHECK_BYTES + 1];
    size_t n = kzs__keys[kind].bytes;
    size_t len = (size_t)snprintf(out, KZS_KEY_FILE_MAX_BYTES, "%s\n", kzs__keys[kind].header);
    sodium_bin2hex(out + len, KZS_KEY_FILE_MAX_BYTES - len, key, n);
    len += 2 * n;
    kzs__checksum(kind, key, check);
    sodium_bin2hex(check_hex, sizeof check_hex, check, sizeof check);
    len += (size_t)snprintf(out + len, KZS_KEY_FILE_MAX_BYTES - len, "\n%s%s\n",
                            KZS__CHECK_PREFIX, check_hex);
    return len;
}

/* Splits off the next "\n"-terminated line; 0 when no newline remains. */
static int kzs__next_line(const char **p, const char *end, const char **line, size_t *n)
{
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    if (nl == NULL)
        return 0;
    *line = *p;
    *n = (size_t)(nl - *p);
    *p = nl + 1;
    return 1;
}

static int kzs__nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decodes exactly 2 * n lowercase hex characters into out[n]. */
static int kzs__hex_decode(const char *hex, size_t n, uint8_t *out)
{
    for (size_t i = 0; i < n; i++) {
        int hi = kzs__nibble(hex[2 * i]), lo = kzs__nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return 0;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 1;
}

/* Checks the third line: "check " and 8 hex digits matching the key. */
static const char *kzs__check_line(kzs_key_kind kind, const char *line, size_t n,
                                   const uint8_t *key)
{
    const size_t prefix = sizeof KZS__CHECK_PREFIX - 1;
    uint8_t want[KZS__CHECK_BYTES], got[KZS__CHECK_BYTES];
    if (n != prefix + 2 * KZS__CHECK_BYTES || memcmp(line, KZS__CHECK_PREFIX, prefix) != 0 ||
        !kzs__hex_decode(line + prefix, KZS__CHECK_BYTES, got))
        return "third line is not 'check' followed by 8 lowercase hex digits";
    kzs__checksum(kind, key, want);
    if (sodium_memcmp(want, got, KZS__CHECK_BYTES) != 0)
        return "check value does not match the key (the file was altered or damaged)";
    return NULL;
}

/* The body of kzs_key_decode: returns NULL or the first problem. */
static const char *kzs__decode(kzs_key_kind kind, const char *text, size_t len, uint8_t *key)
{
    const char *p = text, *end = text + len, *line;
    const char *header = kzs__keys[kind].header;
    size_t n, bytes = kzs__keys[kind].bytes;
    if (!kzs__next_line(&p, end, &line, &n))
        return "no complete first line (empty or truncated file)";
    if (n != strlen(header) || memcmp(line, header, n) != 0)
        return "first line is not this kind of key file's header (wrong file?)";
    if (!kzs__next_line(&p, end, &line, &n))
        return "no complete key line (truncated file)";
    if (n != 2 * bytes)
        return "key line has the wrong length for this kind of key";
    if (!kzs__hex_decode(line, bytes, key))
        return "key line has a character other than 0-9 and a-f";
    if (!kzs__next_line(&p, end, &line, &n))
        return "no complete check line (truncated file)";
    const char *why = kzs__check_line(kind, line, n, key);
    if (why == NULL && p != end)
        why = "unexpected data after the check line";
    return why;
}

int kzs_key_decode(kzs_key_kind kind, const char *text, size_t len, uint8_t *key,
                   const char **why)
{
    const char *w = kzs__decode(kind, text, len, key);
    if (w != NULL)
        sodium_memzero(key, kzs__keys[kind].bytes);
    if (why)
        *why = w;
    return w ? KZ_EPROTO : KZ_OK;
}

uint64_t kzs_server_id(const uint8_t server_pk[KZ_BOX_PUBLIC_KEY_BYTES])
{
    const size_t prefix = sizeof KZS__SERVER_ID_PREFIX - 1;
    uint8_t in[sizeof KZS__SERVER_ID_PREFIX - 1 + KZ_BOX_PUBLIC_KEY_BYTES];
    uint8_t h[crypto_generichash_BYTES];
    uint64_t id = 0;
    memcpy(in, KZS__SERVER_ID_PREFIX, prefix);
    memcpy(in + prefix, server_pk, KZ_BOX_PUBLIC_KEY_BYTES);
    crypto_generichash(h, sizeof h, in, sizeof in, NULL, 0);
    for (int i = 7; i >= 0; i--)
        id = id << 8 | h[i];
    return id;
}

/* ---- files ------------------------------------------------------------- */

int kzs_path_join(const char *dir, const char *name, char out[KZS_PATH_MAX])
{
    int n = snprintf(out, KZS_PATH_MAX, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= KZS_PATH_MAX)
        return kzs__fail(dir, "path too long");
    return 0;
}

/* Reads until EOF or cap + 1 bytes; returns bytes read or -1 (errno). */
static ssize_t kzs__read_all(int fd, uint8_t *buf, size_t cap)
{
    size_t got = 0;
    while (got <= cap) {
        uint8_t extra;
        uint8_t *dst = got < cap ? buf + got : &extra;
        ssize_t r = read(fd, dst, got < cap ? cap - got : 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r < 0 ? -1 : (ssize_t)got;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* Reads the whole of an opened file of at most `cap` bytes. 0 or -1
 * (printed); fd stays open. */
static int kzs__read_fd(const char *path, int fd, uint8_t *buf, size_t cap, size_t *len)
{
    ssize_t got = kzs__read_all(fd, buf, cap);
    if (got < 0)
        return kzs__fail(path, "cannot read: %s", strerror(errno));
    if ((size_t)got > cap)
        return kzs__fail(path, "larger than %zu bytes, the most this file may hold", cap);
    *len = (size_t)got;
    return 0;
}

/* Opening flags of every file read here. O_NONBLOCK: a FIFO planted under
 * the expected name is refused by the regular-file check instead of
 * blocking open() until a writer comes; regular files ignore it. */
#define KZS__READ_FLAGS (O_RDONLY | O_CLOEXEC | O_NONBLOCK)

int kzs_file_read(const char *path, uint8_t *buf, size_t cap, size_t *len, mode_t *mode)
{
    struct stat st;
    int fd = open(path, KZS__READ_FLAGS);
    if (fd < 0)
        return kzs__fail(path, "cannot open: %s", strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return kzs__fail(path, "not a regular file");
    }
    int rc = kzs__read_fd(path, fd, buf, cap, len);
    close(fd);
    if (rc == 0 && mode)
        *mode = st.st_mode & 07777;
    return rc;
}

/* Writes all of data, retrying short writes; 0 or -1 (errno). */
static int kzs__write_all(int fd, const uint8_t *data, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, data, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        data += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Sets the exact mode (umask may have removed bits), writes, syncs,
 * closes. Returns 0 or an errno value; fd is closed either way. */
static int kzs__fill_fd(int fd, const void *data, size_t len, mode_t mode)
{
    int err = 0;
    if (fchmod(fd, mode) != 0 || kzs__write_all(fd, data, len) != 0 || fsync(fd) != 0)
        err = errno;
    if (close(fd) != 0 && err == 0)
        err = errno;
    return err;
}

/* Syncs the directory holding `path`, so a rename or creation survives a
 * crash. Failure is reported but not fatal: the data itself is synced. */
static void kzs__sync_parent(const char *path)
{
    char dir[KZS_PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash == path ? 1 : slash - path), path);
    int fd = open(dir, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0)
        kzs__warn(dir, "warning: cannot sync directory: %s", strerror(errno));
    if (fd >= 0)
        close(fd);
}

static int kzs__write_exclusive(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return kzs__fail(path, "cannot create: %s", strerror(errno));
    int err = kzs__fill_fd(fd, data, len, mode);
    if (err != 0) {
        unlink(path);
        return kzs__fail(path, "cannot write: %s", strerror(err));
    }
    return 0;
}

/* Temporary name in the same directory: "<dir>/.<name>.XXXXXX". */
static int kzs__temp_name(const char *path, char out[KZS_PATH_MAX])
{
    const char *slash = strrchr(path, '/');
    int dir_len = slash ? (int)(slash - path + 1) : 0;
    int n = snprintf(out, KZS_PATH_MAX, "%.*s.%s.XXXXXX", dir_len, path, path + dir_len);
    if (n < 0 || (size_t)n >= KZS_PATH_MAX)
        return kzs__fail(path, "path too long");
    return 0;
}

static int kzs__write_replace(const char *path, const void *data, size_t len, mode_t mode)
{
    char tmp[KZS_PATH_MAX];
    if (kzs__temp_name(path, tmp) != 0)
        return -1;
    int fd = mkstemp(tmp); /* created 0600: a secret is never exposed */
    if (fd < 0)
        return kzs__fail(tmp, "cannot create: %s", strerror(errno));
    int err = kzs__fill_fd(fd, data, len, mode);
    if (err == 0 && rename(tmp, path) != 0)
        err = errno;
    if (err != 0) {
        unlink(tmp);
        return kzs__fail(path, "cannot write: %s", strerror(err));
    }
    return 0;
}

int kzs_file_write(const char *path, const void *data, size_t len, mode_t mode, int replace)
{
    int rc = replace ? kzs__write_replace(path, data, len, mode)
                     : kzs__write_exclusive(path, data, len, mode);
    if (rc == 0)
        kzs__sync_parent(path);
    return rc;
}

/* ---- who may change or read a key file ---------------------------------- */

/*
 * The rules of keys.h. A key is only as trustworthy as the files and the
 * directory it comes from: whoever can write backend.pub, or rename files
 * in its directory, decides which tokens the server accepts, and whoever
 * can read server.key can open every session. So the directory and then
 * the file are opened, and each descriptor is checked with fstat before a
 * byte is read: owned by this process's effective user or by root, and
 * writable by nobody else; a secret also readable by nobody else.
 *
 * Mode bits alone over-state what a POSIX ACL allows: with an ACL, the
 * group bits show the ACL's mask, the most any named user or group gets.
 * systemd hands credentials over exactly so (0400 root-owned file, one ACL
 * entry granting the service's user read, shown as 0440). So when the group
 * bits grant a permission, the ACL, if there is one, is read from the same
 * descriptor and decides which entries really hold it.
 */

static kzs_key_perms kzs__perms = KZS_KEY_PERMS_REFUSE;

void kzs_keys_set_perms(kzs_key_perms perms) { kzs__perms = perms; }

/* The access ACL's extended attribute and its kernel layout: a 4-byte
 * version, then 8-byte entries, every field little-endian. An ACL with more
 * entries than we read is judged by its mode bits alone, which grant at
 * least as much as any of its entries: the judgement errs towards refusing. */
#define KZS__ACL_XATTR "system.posix_acl_access"
#define KZS__ACL_MAX_ENTRIES 32u
#define KZS__ACL_HEADER_BYTES sizeof(struct posix_acl_xattr_header)
#define KZS__ACL_ENTRY_BYTES sizeof(struct posix_acl_xattr_entry)
_Static_assert(sizeof(struct posix_acl_xattr_header) == 4, "ACL header is 4 bytes");
_Static_assert(sizeof(struct posix_acl_xattr_entry) == 8, "ACL entry is 8 bytes");

static uint32_t kzs__le(const uint8_t *p, size_t n)
{
    uint32_t v = 0;
    for (size_t i = n; i-- > 0;)
        v = v << 8 | p[i];
    return v;
}

/* Field `f` of the kernel's `struct type`, read from its little-endian
 * bytes at `p` through the struct's own offsets and sizes. */
#define kzs__acl_field(p, type, f) \
    kzs__le((p) + offsetof(struct type, f), sizeof(((struct type *)0)->f))

/* Phrases naming who else holds a permission. */
#define KZS__WHO_EVERYONE "everyone"
#define KZS__WHO_GROUP "its group"
#define KZS__WHO_ACL_UNREAD "its group or its ACL (which cannot be read to tell)"

/*
 * Who, other than the owner and this process's user, the POSIX ACL of the
 * open file `fd` grants `perm` (ACL_READ or ACL_WRITE): NULL for nobody,
 * else a phrase. Called only when the mode's group bits grant `perm`, so
 * without an ACL the owning group holds it, and with one the mask passes it
 * and each group-class entry's own bits decide.
 */
static const char *kzs__acl_who(int fd, unsigned perm)
{
    uint8_t acl[KZS__ACL_HEADER_BYTES + KZS__ACL_MAX_ENTRIES * KZS__ACL_ENTRY_BYTES];
    ssize_t n = fgetxattr(fd, KZS__ACL_XATTR, acl, sizeof acl);
    if (n < 0)
        return errno == ENODATA || errno == ENOTSUP ? KZS__WHO_GROUP : KZS__WHO_ACL_UNREAD;
    if ((size_t)n < KZS__ACL_HEADER_BYTES ||
        kzs__acl_field(acl, posix_acl_xattr_header, a_version) != POSIX_ACL_XATTR_VERSION ||
        ((size_t)n - KZS__ACL_HEADER_BYTES) % KZS__ACL_ENTRY_BYTES != 0)
        return KZS__WHO_ACL_UNREAD;
    for (size_t off = KZS__ACL_HEADER_BYTES; off < (size_t)n; off += KZS__ACL_ENTRY_BYTES) {
        const uint8_t *e = acl + off;
        uint32_t tag = kzs__acl_field(e, posix_acl_xattr_entry, e_tag);
        uint32_t id = kzs__acl_field(e, posix_acl_xattr_entry, e_id);
        if ((kzs__acl_field(e, posix_acl_xattr_entry, e_perm) & perm) == 0)
            continue;
        if (tag == ACL_GROUP_OBJ)
            return KZS__WHO_GROUP;
        if (tag == ACL_GROUP)
            return "a group named in its ACL";
        if (tag == ACL_USER && id != (uint32_t)geteuid())
            return "another user named in its ACL";
    }
    return NULL;
}

/* Who, other than the owner and this process's user, may do `perm`
 * (ACL_READ or ACL_WRITE) to the open file `fd`: NULL or a phrase. */
static const char *kzs__who_else(int fd, const struct stat *st, unsigned perm)
{
    mode_t other = perm == ACL_WRITE ? S_IWOTH : S_IROTH;
    mode_t group = perm == ACL_WRITE ? S_IWGRP : S_IRGRP;
    if (st->st_mode & other)
        return KZS__WHO_EVERYONE;
    return (st->st_mode & group) ? kzs__acl_who(fd, perm) : NULL;
}

/* One broken rule on `path`: refused (-1), or, when the operator chose to
 * allow it, a warning (0). One line either way. */
static int kzs__unsafe(const char *path, const char *fmt, ...) KZ_PRINTF(2, 3);
static int kzs__unsafe(const char *path, const char *fmt, ...)
{
    char what[KZS_PATH_MAX / 16];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (kzs__perms == KZS_KEY_PERMS_REFUSE)
        return kzs__fail(path, "refused: %s", what);
    kzs__warn(path, "warning: %s (loaded anyway: insecure_key_permissions = warn)", what);
    return 0;
}

/* The rules a key file and its directory share (`noun` names which it is):
 * the owner, then who else may write. 0 or -1 (printed). */
static int kzs__check_shared(const char *path, int fd, const struct stat *st, const char *noun)
{
    unsigned mode = (unsigned)(st->st_mode & 07777);
    const char *who;
    if (st->st_uid != geteuid() && st->st_uid != 0 &&
        kzs__unsafe(path, "%s owned by uid %u, neither this program's user (uid %u) nor root; chown it",
                    noun, (unsigned)st->st_uid, (unsigned)geteuid()) != 0)
        return -1;
    if ((who = kzs__who_else(fd, st, ACL_WRITE)) != NULL &&
        kzs__unsafe(path, "%s writable by %s (mode %04o); only its owner may write to it", noun,
                    who, mode) != 0)
        return -1;
    return 0;
}

/* Opens directory `dir`, where the key file `path` is read from, and
 * checks it; returns its descriptor or -1 (printed; a directory that cannot
 * be opened is reported as the file that cannot be). A symbolic link to a
 * directory is followed: the directory reached is the one checked and then
 * read from. */
static int kzs__open_dir(const char *dir, const char *path)
{
    struct stat st;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 && errno == EACCES) /* searchable but not listable */
        dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return kzs__fail(path, "cannot open: %s", strerror(errno));
    if (fstat(dfd, &st) != 0) {
        kzs__fail(dir, "cannot check directory: %s", strerror(errno));
        close(dfd);
        return -1;
    }
    if (kzs__check_shared(dir, dfd, &st, "directory") != 0) {
        close(dfd);
        return -1;
    }
    return dfd;
}

/* Opens `name` in the checked directory `dfd` without following a symbolic
 * link (a link could lead anywhere, past every check); with warn, a link is
 * reported and followed. Returns the descriptor or -1 (printed). */
static int kzs__open_in(int dfd, const char *path, const char *name)
{
    int fd = openat(dfd, name, KZS__READ_FLAGS | O_NOFOLLOW);
    if (fd < 0 && errno == ELOOP) {
        if (kzs__unsafe(path, "a symbolic link; a key file must be a regular file in the "
                              "directory it is read from (copy it there)") != 0)
            return -1;
        fd = openat(dfd, name, KZS__READ_FLAGS);
    }
    if (fd < 0)
        return kzs__fail(path, "cannot open: %s", strerror(errno));
    return fd;
}

/* Checks the open key file `fd`. 0 or -1 (printed). */
static int kzs__check_file(const char *path, int fd, int secret)
{
    struct stat st;
    const char *who;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return kzs__fail(path, "not a regular file");
    if (kzs__check_shared(path, fd, &st, "key file") != 0)
        return -1;
    if (secret && (who = kzs__who_else(fd, &st, ACL_READ)) != NULL &&
        kzs__unsafe(path, "secret key readable by %s (mode %04o); chmod 600 it", who,
                    (unsigned)(st.st_mode & 07777)) != 0)
        return -1;
    return 0;
}

/* Splits `path` into the directory it names (".", when it names none) and
 * its last component. 0 or -1 (printed). */
static int kzs__split(const char *path, char dir[KZS_PATH_MAX], const char **name)
{
    const char *slash = strrchr(path, '/');
    size_t dir_len = slash == NULL ? 0 : slash == path ? 1 : (size_t)(slash - path);
    *name = slash ? slash + 1 : path;
    if (**name == '\0')
        return kzs__fail(path, "not the name of a key file");
    if (dir_len >= KZS_PATH_MAX)
        return kzs__fail(path, "path too long");
    if (slash == NULL)
        snprintf(dir, KZS_PATH_MAX, ".");
    else
        snprintf(dir, KZS_PATH_MAX, "%.*s", (int)dir_len, path);
    return 0;
}

/* Opens the key file at `path` after checking its directory, then checks
 * the file itself. Returns the descriptor to read, or -1 (printed). */
static int kzs__open_key(const char *path, int secret)
{
    char dir[KZS_PATH_MAX];
    const char *name;
    if (kzs__split(path, dir, &name) != 0)
        return -1;
    int dfd = kzs__open_dir(dir, path);
    if (dfd < 0)
        return -1;
    int fd = kzs__open_in(dfd, path, name);
    close(dfd);
    if (fd >= 0 && kzs__check_file(path, fd, secret) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- loading keys ------------------------------------------------------ */

int kzs_key_load(const char *dir, kzs_key_kind kind, uint8_t *key)
{
    char path[KZS_PATH_MAX];
    if (kzs_path_join(dir, kzs__keys[kind].file, path) != 0) {
        sodium_memzero(key, kzs__keys[kind].bytes);
        return -1;
    }
    return kzs_key_load_file(path, kind, key);
}

int kzs_key_load_file(const char *path, kzs_key_kind kind, uint8_t *key)
{
    char text[KZS_KEY_FILE_MAX_BYTES];
    size_t len = 0;
    const char *why = NULL;
    int rc = -1;
    int fd = kzs__open_key(path, kzs__keys[kind].secret);
    if (fd >= 0) {
        rc = kzs__read_fd(path, fd, (uint8_t *)text, sizeof text, &len);
        close(fd);
    }
    if (rc == 0 && kzs_key_decode(kind, text, len, key, &why) != KZ_OK)
        rc = kzs__fail(path, "%s", why);
    sodium_memzero(text, sizeof text);
    if (rc != 0)
        sodium_memzero(key, kzs__keys[kind].bytes);
    return rc;
}

/* Loads an Ed25519 secret key file and checks its halves agree. */
static int kzs__load_sign_secret(const char *dir, kzs_key_kind kind,
                                 uint8_t sk[KZ_SIGN_SECRET_KEY_BYTES])
{
    kz_sign_keypair again;
    if (kzs_key_load(dir, kind, sk) != 0)
        return -1;
    /* An Ed25519 secret key is seed || public key: derive the public key
     * from the seed again and compare. */
    crypto_sign_seed_keypair(again.public_key, again.secret_key, sk);
    int ok = sodium_memcmp(again.secret_key, sk, KZ_SIGN_SECRET_KEY_BYTES) == 0;
    sodium_memzero(&again, sizeof again);
    if (ok)
        return 0;
    sodium_memzero(sk, KZ_SIGN_SECRET_KEY_BYTES);
    char path[KZS_PATH_MAX];
    if (kzs_path_join(dir, kzs__keys[kind].file, path) != 0)
        return -1;
    return kzs__fail(path, "its public half does not match its seed (mixed or edited file)");
}

int kzs_keys_load_backend_secret(const char *dir, uint8_t sk[KZ_SIGN_SECRET_KEY_BYTES])
{
    return kzs__load_sign_secret(dir, KZS_KEY_BACKEND_SECRET, sk);
}

int kzs_keys_load_audit_secret(const char *dir, uint8_t sk[KZ_SIGN_SECRET_KEY_BYTES])
{
    return kzs__load_sign_secret(dir, KZS_KEY_AUDIT_SECRET, sk);
}

int kzs_keys_load_server(const char *dir, kz_box_keypair *kp)
{
    uint8_t derived[KZ_BOX_PUBLIC_KEY_BYTES];
    if (kzs_key_load(dir, KZS_KEY_SERVER_SECRET, kp->secret_key) != 0 ||
        kzs_key_load(dir, KZS_KEY_SERVER_PUBLIC, kp->public_key) != 0) {
        sodium_memzero(kp, sizeof *kp);
        return -1;
    }
    crypto_scalarmult_base(derived, kp->secret_key);
    if (sodium_memcmp(derived, kp->public_key, sizeof derived) == 0)
        return 0;
    sodium_memzero(kp, sizeof *kp);
    return kzs__fail(dir, "server.key and server.pub are not one key pair");
}

/* ---- generating keys --------------------------------------------------- */

/* Creates dir with mode 0700 unless it is already a directory. */
static int kzs__ensure_dir(const char *dir)
{
    struct stat st;
    if (mkdir(dir, 0700) == 0)
        return 0;
    if (errno != EEXIST)
        return kzs__fail(dir, "cannot create directory: %s", strerror(errno));
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return kzs__fail(dir, "exists and is not a directory");
    return 0;
}

/* Refuses (before anything is written) when any key file of kinds
 * first..last exists. */
static int kzs__refuse_existing(const char *dir, int first, int last)
{
    char path[KZS_PATH_MAX];
    struct stat st;
    for (int k = first; k <= last; k++) {
        if (kzs_path_join(dir, kzs__keys[k].file, path) != 0)
            return -1;
        if (lstat(path, &st) == 0)
            return kzs__fail(path, "already exists; pass --force to replace the key files");
        if (errno != ENOENT)
            return kzs__fail(path, "cannot check: %s", strerror(errno));
    }
    return 0;
}

/* Encodes and writes one key file; wipes the text afterwards. */
static int kzs__save(const char *dir, kzs_key_kind kind, const uint8_t *key, int force)
{
    char path[KZS_PATH_MAX];
    char text[KZS_KEY_FILE_MAX_BYTES];
    if (kzs_path_join(dir, kzs__keys[kind].file, path) != 0)
        return -1;
    size_t len = kzs_key_encode(kind, key, text);
    mode_t mode = kzs__keys[kind].secret ? 0600 : 0644;
    int rc = kzs_file_write(path, text, len, mode, force);
    sodium_memzero(text, sizeof text);
    return rc;
}

int kzs_keys_generate(const char *dir, int force, uint64_t *server_id)
{
    kz_sign_keypair backend;
    kz_box_keypair server;
    int rc = -1;
    if (kzs__ensure_dir(dir) != 0 ||
        (!force && kzs__refuse_existing(dir, KZS_KEY_BACKEND_SECRET, KZS_KEY_SERVER_PUBLIC) != 0))
        return -1;
    if (kz_sign_keypair_generate(&backend) != KZ_OK || kz_box_keypair_generate(&server) != KZ_OK) {
        kzs__fail(dir, "cannot generate keys: %s", kz_strerror(KZ_EIO));
        goto out;
    }
    if (kzs__save(dir, KZS_KEY_BACKEND_SECRET, backend.secret_key, force) != 0 ||
        kzs__save(dir, KZS_KEY_BACKEND_PUBLIC, backend.public_key, force) != 0 ||
        kzs__save(dir, KZS_KEY_SERVER_SECRET, server.secret_key, force) != 0 ||
        kzs__save(dir, KZS_KEY_SERVER_PUBLIC, server.public_key, force) != 0)
        goto out;
    if (server_id)
        *server_id = kzs_server_id(server.public_key);
    rc = 0;
out:
    sodium_memzero(&backend, sizeof backend);
    sodium_memzero(&server, sizeof server);
    return rc;
}

int kzs_keys_generate_audit(const char *dir, int force)
{
    kz_sign_keypair audit;
    int rc = -1;
    if (kzs__ensure_dir(dir) != 0 ||
        (!force && kzs__refuse_existing(dir, KZS_KEY_AUDIT_SECRET, KZS_KEY_AUDIT_PUBLIC) != 0))
        return -1;
    if (kz_sign_keypair_generate(&audit) != KZ_OK) {
        kzs__fail(dir, "cannot generate keys: %s", kz_strerror(KZ_EIO));
        goto out;
    }
    if (kzs__save(dir, KZS_KEY_AUDIT_SECRET, audit.secret_key, force) == 0 &&
        kzs__save(dir, KZS_KEY_AUDIT_PUBLIC, audit.public_key, force) == 0)
        rc = 0;
out:
    sodium_memzero(&audit, sizeof audit);
    return rc;
}
