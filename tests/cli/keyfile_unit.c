/*
 * Unit tests of kizuna-server's key files (server/keys.c): known-answer
 * vectors for the check value and the server id (computed independently
 * with Python's hashlib.blake2b), round trips for every kind, and the
 * strict parser's refusals: every single changed character, every
 * truncation, case, line endings, headers of another kind. Then the file
 * functions: exclusive creation, atomic replacement, exact modes under any
 * umask, key-pair consistency checks. Last, who may change or read a key
 * file: each way another user could replace a trusted key or read a secret
 * (writable file or directory, foreign owner, readable secret, symbolic
 * link, POSIX ACL entries, a FIFO under a key's name) is refused, the warn
 * setting loads each with a warning, and systemd's credentials layout
 * loads as the unprivileged user it is handed to. These tests expect to
 * run as root (ctest does here); as anyone else the ones that need chown
 * or another euid are skipped.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <linux/posix_acl.h>
#include <linux/posix_acl_xattr.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "keys.h"

static void init(void) { cr_assert(sodium_init() >= 0); }

TestSuite(keyfile, .init = init);

static void fill_counting(uint8_t *key, size_t n)
{
    for (size_t i = 0; i < n; i++)
        key[i] = (uint8_t)i;
}

/* ---- text format ------------------------------------------------------- */

Test(keyfile, known_answer_public)
{
    uint8_t key[32];
    char text[KZS_KEY_FILE_MAX_BYTES];
    fill_counting(key, sizeof key);
    size_t len = kzs_key_encode(KZS_KEY_SERVER_PUBLIC, key, text);
    const char *want = "kizuna server-public-key v1\n"
                       "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"
                       "check b813e727\n";
    cr_assert_eq(len, strlen(want));
    cr_assert_str_eq(text, want);
}

Test(keyfile, known_answer_backend_secret)
{
    uint8_t key[64];
    char text[KZS_KEY_FILE_MAX_BYTES];
    fill_counting(key, sizeof key);
    kzs_key_encode(KZS_KEY_BACKEND_SECRET, key, text);
    cr_assert(strncmp(text, "kizuna backend-secret-key v1\n0001", 33) == 0);
    cr_assert(strstr(text, "3c3d3e3f\ncheck 2349f903\n") != NULL);
}

Test(keyfile, server_id_known_answer)
{
    uint8_t pk[32];
    fill_counting(pk, sizeof pk);
    cr_assert_eq(kzs_server_id(pk), UINT64_C(0xe44365e20e25c982));
    pk[31] ^= 1;
    cr_assert_neq(kzs_server_id(pk), UINT64_C(0xe44365e20e25c982));
}

Test(keyfile, round_trip_every_kind)
{
    for (int k = 0; k < KZS_KEY_KIND_COUNT; k++) {
        uint8_t key[KZS_KEY_MAX_BYTES], back[KZS_KEY_MAX_BYTES];
        char text[KZS_KEY_FILE_MAX_BYTES];
        const char *why = "unset";
        randombytes_buf(key, sizeof key);
        size_t len = kzs_key_encode((kzs_key_kind)k, key, text);
        cr_assert_eq(kzs_key_decode((kzs_key_kind)k, text, len, back, &why), 0);
        cr_assert_null(why);
        cr_assert_eq(memcmp(key, back, kzs_key_bytes((kzs_key_kind)k)), 0);
    }
}

static int all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return 0;
    return 1;
}

/* Decoding must fail, give a reason, and leave the key zeroed. */
static void expect_refused(kzs_key_kind kind, const char *text, size_t len)
{
    uint8_t key[KZS_KEY_MAX_BYTES];
    const char *why = NULL;
    memset(key, 0xAA, sizeof key);
    cr_assert_eq(kzs_key_decode(kind, text, len, key, &why), KZ_EPROTO, "accepted: %.*s",
                 (int)len, text);
    cr_assert_not_null(why);
    cr_assert(all_zero(key, kzs_key_bytes(kind)));
}

Test(keyfile, every_changed_character_is_refused)
{
    uint8_t key[64];
    char text[KZS_KEY_FILE_MAX_BYTES];
    randombytes_buf(key, sizeof key);
    size_t len = kzs_key_encode(KZS_KEY_BACKEND_SECRET, key, text);
    for (size_t i = 0; i < len; i++) {
        char saved = text[i];
        /* A different hex digit keeps the line well-formed: only the check
         * value can catch it. */
        text[i] = saved == '0' ? '1' : '0';
        expect_refused(KZS_KEY_BACKEND_SECRET, text, len);
        text[i] = saved;
    }
}

Test(keyfile, every_truncation_is_refused)
{
    uint8_t key[32];
    char text[KZS_KEY_FILE_MAX_BYTES];
    randombytes_buf(key, sizeof key);
    size_t len = kzs_key_encode(KZS_KEY_SERVER_SECRET, key, text);
    for (size_t n = 0; n < len; n++)
        expect_refused(KZS_KEY_SERVER_SECRET, text, n);
}

Test(keyfile, format_variations_are_refused)
{
    uint8_t key[32];
    char text[KZS_KEY_FILE_MAX_BYTES], v[KZS_KEY_FILE_MAX_BYTES + 8];
    fill_counting(key, sizeof key);
    size_t len = kzs_key_encode(KZS_KEY_SERVER_PUBLIC, key, text);
    /* Another kind's header, same size of key. */
    expect_refused(KZS_KEY_BACKEND_PUBLIC, text, len);
    expect_refused(KZS_KEY_SERVER_SECRET, text, len);
    /* Trailing data, CRLF, uppercase hex. */
    snprintf(v, sizeof v, "%s\n", text);
    expect_refused(KZS_KEY_SERVER_PUBLIC, v, strlen(v));
    snprintf(v, sizeof v, "%s", text);
    v[strlen("kizuna server-public-key v1")] = '\r';
    expect_refused(KZS_KEY_SERVER_PUBLIC, v, len);
    snprintf(v, sizeof v, "%s", text);
    cr_assert_eq(text[28 + 21], 'a'); /* byte 10 of the key line, "0a" */
    v[28 + 21] = 'A';
    expect_refused(KZS_KEY_SERVER_PUBLIC, v, len);
}

Test(keyfile, wrong_key_length_is_refused)
{
    uint8_t key[64];
    char text[KZS_KEY_FILE_MAX_BYTES];
    fill_counting(key, sizeof key);
    /* A 64-byte key's text under a 32-byte kind's name: header differs, so
     * splice the right header onto the long key line. */
    kzs_key_encode(KZS_KEY_BACKEND_SECRET, key, text);
    char spliced[KZS_KEY_FILE_MAX_BYTES * 2];
    snprintf(spliced, sizeof spliced, "kizuna backend-public-key v1\n%s",
             strchr(text, '\n') + 1);
    expect_refused(KZS_KEY_BACKEND_PUBLIC, spliced, strlen(spliced));
}

/* ---- files ------------------------------------------------------------- */

static char tmpdir[64];

static void make_tmpdir(void)
{
    init();
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kzs-keyfile-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(keyfiles, .init = make_tmpdir, .fini = remove_tmpdir);

static unsigned mode_of(const char *path)
{
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "%s missing", path);
    return (unsigned)(st.st_mode & 07777);
}

Test(keyfiles, exclusive_then_replace_with_exact_modes)
{
    char path[KZS_PATH_MAX];
    uint8_t buf[16];
    size_t len = 0;
    cr_assert_eq(kzs_path_join(tmpdir, "f", path), 0);
    umask(077);
    cr_assert_eq(kzs_file_write(path, "one", 3, 0644, 0), 0);
    cr_assert_eq(mode_of(path), 0644u);
    cr_assert_eq(kzs_file_write(path, "two", 3, 0644, 0), -1); /* exists */
    umask(0);
    cr_assert_eq(kzs_file_write(path, "three", 5, 0600, 1), 0);
    cr_assert_eq(mode_of(path), 0600u);
    cr_assert_eq(kzs_file_read(path, buf, sizeof buf, &len, NULL), 0);
    cr_assert_eq(len, 5u);
    cr_assert_eq(memcmp(buf, "three", 5), 0);
    umask(022);
}

Test(keyfiles, read_refuses_files_larger_than_cap)
{
    char path[KZS_PATH_MAX];
    uint8_t buf[8];
    size_t len = 0;
    cr_assert_eq(kzs_path_join(tmpdir, "big", path), 0);
    cr_assert_eq(kzs_file_write(path, "12345", 5, 0600, 0), 0);
    cr_assert_eq(kzs_file_read(path, buf, 4, &len, NULL), -1);
    cr_assert_eq(kzs_file_read(path, buf, 5, &len, NULL), 0);
    cr_assert_eq(len, 5u);
}

Test(keyfiles, generate_load_and_refuse_overwrite)
{
    char dir[KZS_PATH_MAX], path[KZS_PATH_MAX];
    uint8_t sk[64];
    kz_box_keypair kp;
    uint64_t id = 0;
    cr_assert_eq(kzs_path_join(tmpdir, "keys", dir), 0);
    cr_assert_eq(kzs_keys_generate(dir, 0, &id), 0);
    cr_assert_eq(mode_of(dir), 0700u);
    cr_assert_eq(kzs_keys_load_backend_secret(dir, sk), 0);
    cr_assert_eq(kzs_keys_load_server(dir, &kp), 0);
    cr_assert_eq(kzs_server_id(kp.public_key), id);
    cr_assert_eq(kzs_keys_generate(dir, 0, NULL), -1);
    cr_assert_eq(kzs_path_join(dir, "server.key", path), 0);
    cr_assert_eq(mode_of(path), 0600u);
}

Test(keyfiles, mixed_server_pair_is_refused)
{
    char a[KZS_PATH_MAX], b[KZS_PATH_MAX], from[KZS_PATH_MAX], to[KZS_PATH_MAX];
    kz_box_keypair kp;
    cr_assert_eq(kzs_path_join(tmpdir, "a", a), 0);
    cr_assert_eq(kzs_path_join(tmpdir, "b", b), 0);
    cr_assert_eq(kzs_keys_generate(a, 0, NULL), 0);
    cr_assert_eq(kzs_keys_generate(b, 0, NULL), 0);
    cr_assert_eq(kzs_path_join(b, "server.pub", from), 0);
    cr_assert_eq(kzs_path_join(a, "server.pub", to), 0);
    cr_assert_eq(rename(from, to), 0);
    memset(&kp, 0xAA, sizeof kp);
    cr_assert_eq(kzs_keys_load_server(a, &kp), -1);
    cr_assert(all_zero((const uint8_t *)&kp, sizeof kp));
}

Test(keyfiles, backend_key_with_foreign_public_half_is_refused)
{
    char dir[KZS_PATH_MAX], path[KZS_PATH_MAX], text[KZS_KEY_FILE_MAX_BYTES];
    uint8_t sk[64];
    cr_assert_eq(kzs_path_join(tmpdir, "k", dir), 0);
    cr_assert_eq(kzs_keys_generate(dir, 0, NULL), 0);
    cr_assert_eq(kzs_keys_load_backend_secret(dir, sk), 0);
    /* Same seed, another public half, a correct check line: only the
     * seed/public-key consistency check can refuse it. */
    sk[40] ^= 0x01;
    size_t len = kzs_key_encode(KZS_KEY_BACKEND_SECRET, sk, text);
    cr_assert_eq(kzs_path_join(dir, "backend.key", path), 0);
    cr_assert_eq(kzs_file_write(path, text, len, 0600, 1), 0);
    memset(sk, 0xAA, sizeof sk);
    cr_assert_eq(kzs_keys_load_backend_secret(dir, sk), -1);
    cr_assert(all_zero(sk, sizeof sk));
}

/* ---- who may change or read a key file ---------------------------------- */

/* The user the unprivileged cases run as, and one nobody should trust. */
#define NOBODY_UID 65534u
#define NOBODY_GID 65534u
#define STRANGER_ID 12345u

#define MAX_REPORTS 16
static char reports[MAX_REPORTS][KZS_PATH_MAX + 320];
static int n_reports;

static void capture(void *ctx, const char *line)
{
    (void)ctx;
    cr_assert_lt(n_reports, MAX_REPORTS, "too many messages: %s", line);
    snprintf(reports[n_reports++], sizeof reports[0], "%s", line);
}

static void perms_setup(void)
{
    make_tmpdir();
    n_reports = 0;
    kzs_keys_set_report(capture, NULL);
    kzs_keys_set_perms(KZS_KEY_PERMS_REFUSE);
}

static void perms_teardown(void)
{
    kzs_keys_set_report(NULL, NULL);
    kzs_keys_set_perms(KZS_KEY_PERMS_REFUSE);
    remove_tmpdir();
}

TestSuite(keyperms, .init = perms_setup, .fini = perms_teardown);

static void need_root(void)
{
    if (geteuid() != 0)
        cr_skip_test("needs root (chown, another euid)");
}

/* A full keys directory (both pairs and the audit pair) at TMP/name. */
static void make_keys(const char *name, char dir[KZS_PATH_MAX])
{
    cr_assert_eq(kzs_path_join(tmpdir, name, dir), 0);
    cr_assert_eq(kzs_keys_generate(dir, 0, NULL), 0);
    cr_assert_eq(kzs_keys_generate_audit(dir, 0), 0);
}

/* DIR/name in one of a few rotating buffers: enough for the paths of one
 * call; a path kept longer is copied. */
static const char *file_in(const char *dir, const char *name)
{
    static char paths[4][KZS_PATH_MAX];
    static unsigned next;
    char *path = paths[next++ % 4];
    cr_assert_eq(kzs_path_join(dir, name, path), 0);
    return path;
}

static void chmod_ok(const char *path, mode_t mode)
{
    cr_assert_eq(chmod(path, mode), 0, "chmod %s: %s", path, strerror(errno));
}

/* Loads backend.pub of `dir`, the trust anchor of connect tokens. */
static int load_backend_pub(const char *dir, uint8_t pk[KZ_SIGN_PUBLIC_KEY_BYTES])
{
    memset(pk, 0xAA, KZ_SIGN_PUBLIC_KEY_BYTES);
    return kzs_key_load(dir, KZS_KEY_BACKEND_PUBLIC, pk);
}

/* The last load was refused: -1, the key zeroed, and exactly one message
 * naming `path` and containing `problem`. */
static void expect_refused_load(int rc, const uint8_t *key, size_t n, const char *path,
                                const char *problem)
{
    char want[KZS_PATH_MAX + 16];
    snprintf(want, sizeof want, "%s: refused: ", path);
    cr_assert_eq(rc, -1, "loaded despite: %s", problem);
    cr_assert(all_zero(key, n), "a refused load left key bytes behind");
    cr_assert_eq(n_reports, 1, "want one message, got %d (first: %s)", n_reports,
                 n_reports ? reports[0] : "none");
    cr_assert(strncmp(reports[0], want, strlen(want)) == 0, "message '%s' does not start '%s'",
              reports[0], want);
    cr_assert_not_null(strstr(reports[0], problem), "message '%s' lacks '%s'", reports[0],
                       problem);
    n_reports = 0;
}

/* The last load went through under the warn setting: 0, the right key,
 * and a warning naming `path` and `problem` among the messages. */
static void expect_warned_load(int rc, const uint8_t *key, const uint8_t *want_key, size_t n,
                               const char *path, const char *problem)
{
    char want[KZS_PATH_MAX + 16];
    snprintf(want, sizeof want, "%s: warning: ", path);
    cr_assert_eq(rc, 0, "refused under warn: %s (%s)", problem, n_reports ? reports[0] : "");
    cr_assert_eq(memcmp(key, want_key, n), 0, "the key loaded under warn is not the file's");
    int found = 0;
    for (int i = 0; i < n_reports; i++)
        found |= strncmp(reports[i], want, strlen(want)) == 0 && strstr(reports[i], problem);
    cr_assert(found, "no warning '%s...%s' (%d messages, first: %s)", want, problem, n_reports,
              n_reports ? reports[0] : "none");
    n_reports = 0;
}

Test(keyperms, safe_keys_load_without_a_word)
{
    char dir[KZS_PATH_MAX];
    uint8_t pk[KZ_SIGN_PUBLIC_KEY_BYTES], sk[KZ_SIGN_SECRET_KEY_BYTES];
    kz_box_keypair kp;
    make_keys("keys", dir);
    cr_assert_eq(load_backend_pub(dir, pk), 0);
    cr_assert_eq(kzs_keys_load_server(dir, &kp), 0);
    cr_assert_eq(kzs_keys_load_audit_secret(dir, sk), 0);
    cr_assert_eq(kzs_keys_load_backend_secret(dir, sk), 0);
    cr_assert_eq(n_reports, 0, "a safe layout drew: %s", reports[0]);
}

/* The attack: backend.pub writable by others is overwritten with a rogue
 * backend's key; the server must not trust what it now holds. */
Test(keyperms, backend_pub_writable_by_others_is_refused)
{
    char dir[KZS_PATH_MAX], rogue[KZS_PATH_MAX], text[KZS_KEY_FILE_MAX_BYTES];
    uint8_t pk[KZ_SIGN_PUBLIC_KEY_BYTES], rogue_pk[KZ_SIGN_PUBLIC_KEY_BYTES];
    make_keys("keys", dir);
    make_keys("rogue", rogue);
    char path[KZS_PATH_MAX];
    cr_assert_eq(kzs_path_join(dir, "backend.pub", path), 0);
    cr_assert_eq(load_backend_pub(rogue, rogue_pk), 0);
    chmod_ok(path, 0666);
    /* Written in place, as another user could: the mode stays 0666. */
    size_t len = kzs_key_encode(KZS_KEY_BACKEND_PUBLIC, rogue_pk, text);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(text, 1, len, f), len);
    cr_assert_eq(fclose(f), 0);
    expect_refused_load(load_backend_pub(dir, pk), pk, sizeof pk, path,
                        "key file writable by everyone (mode 0666)");
    chmod_ok(path, 0664);
    expect_refused_load(load_backend_pub(dir, pk), pk, sizeof pk, path,
                        "key file writable by its group (mode 0664)");
    chmod_ok(path, 0646);
    expect_refused_load(load_backend_pub(dir, pk), pk, sizeof pk, path,
                        "writable by everyone (mode 0646)");
    /* The same rule for a trusted key named by path. */
    expect_refused_load(kzs_key_load_file(path, KZS_KEY_BACKEND_PUBLIC, pk), pk, sizeof pk,
                        path, "writable by everyone");
    chmod_ok(path, 0644);
    cr_assert_eq(load_backend_pub(dir, pk), 0);
}

/* Whoever may write the directory may rename a file of their own over
 * backend.pub: the directory is checked before any file in it, for every
 * loader. A sticky bit does not make it safe. */
Test(keyperms, writable_keys_directory_is_refused)
{
    static const struct {
        mode_t mode;
        const char *problem;
    } rows[] = {
        {0770, "directory writable by its group (mode 0770)"},
        {0730, "directory writable by its group (mode 0730)"},
        {0702, "directory writable by everyone (mode 0702)"},
        {01777, "directory writable by everyone (mode 1777)"},
    };
    char dir[KZS_PATH_MAX];
    uint8_t pk[KZ_SIGN_PUBLIC_KEY_BYTES], sk[KZ_SIGN_SECRET_KEY_BYTES];
    kz_box_keypair kp;
    make_keys("keys", dir);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        chmod_ok(dir, rows[i].mode);
        expect_refused_load(load_backend_pub(dir, pk), pk, sizeof pk, dir, rows[i].problem);
        memset(&kp, 0xAA, sizeof kp);
        expect_refused_load(kzs_keys_load_server(dir, &kp), (const uint8_t *)&kp, sizeof kp, dir,
                            rows[i].problem);
        memset(sk, 0xAA, sizeof sk);
        expect_refused_load(kzs_keys_load_audit_secret(dir, sk), sk, sizeof sk, dir,
                            rows[i].problem);
        memset(sk, 0xAA, sizeof sk);
        expect_refused_load(kzs_keys_load_backend_secret(dir, sk), sk, sizeof sk, dir,
                            rows[i].problem);
        expect_refused_load(kzs_key_load_file(file_in(dir, "backend.pub"),
                                              KZS_KEY_BACKEND_PUBLIC, pk),
                            pk, sizeof pk, dir, rows[i].problem);
    }
    chmod_ok(dir, 0755); /* others may read and search it: harmless */
    cr_assert_eq(load_backend_pub(dir, pk), 0);
}

Test(keyperms, files_owned_by_another_user_are_refused)
{
    need_root();
    char dir[KZS_PATH_MAX], want[128];
    uint8_t pk[KZ_SIGN_PUBLIC_KEY_BYTES];
    kz_box_keypair kp;
    make_keys("keys", dir);
    snprintf(want, sizeof want, "owned by uid %u, neither this program's user (uid 0) nor root",
             NOBODY_UID);
    const char *pub = file_in(dir, "backend.pub");
    cr_assert_eq(chown(pub, NOBODY_UID, NOBODY_GID), 0);
    expect_refused_load(load_backend_pub(dir, pk), pk, sizeof pk, pub, want);
    cr_assert_eq(chown(pub, 0, 0), 0);
    const char *key = file_in(dir, "server.key");
    cr_assert_eq(chown(key, NOBODY_UID, 0), 0);
    memset(&kp, 0xAA, sizeof kp);
    expect_refused_load(kzs_keys_load_server(dir, &kp), (const uint8_t *)&kp, sizeof kp, key, want);
    cr_assert_eq(chown(key, 0, 0), 0);
    /* The directory too: its owner could replace any file in it. */
    cr_assert_eq(chown(dir, NOBODY_UID, NOBODY_GID), 0);
    expect_refused_load(load_backend_pub(dir, pk), pk, sizeof pk, dir, want);
    /* A group that is not root's is no problem while it cannot write. */
    cr_assert_eq(chown(dir, 0, NOBODY_GID), 0);
    cr_assert_eq(load_backend_pub(dir, pk), 0);
}

Test(keyperms, secrets_readable_by_others_are_refused)
{
    static const struct {
        const char *file;
        mode_t mode;
        const char *problem;
    } rows[] = {
        {"server.key", 0640, "secret key readable by its group (mode 0640)"},
        {"server.key", 0604, "secret key readable by everyone (mode 0604)"},
        {"audit.key", 0644, "secret key readable by everyone (mode 0644)"},
        {"backend.key", 0440, "secret key readable by its group (mode 0440)"},
    };
    char dir[KZS_PATH_MAX];
    uint8_t sk[KZ_SIGN_SECRET_KEY_BYTES];
    kz_box_keypair kp;
    make_keys("keys", dir);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const char *path = file_in(dir, rows[i].file);
        chmod_ok(path, rows[i].mode);
        memset(sk, 0xAA, sizeof sk);
        memset(&kp, 0xAA, sizeof kp);
        if (strcmp(rows[i].file, "server.key") == 0)
            expect_refused_load(kzs_keys_load_server(dir, &kp), (const uint8_t *)&kp, sizeof kp,
                                path, rows[i].problem);
        else if (strcmp(rows[i].file, "audit.key") == 0)
            expect_refused_load(kzs_keys_load_audit_secret(dir, sk), sk, sizeof sk, path,
                                rows[i].problem);
        else
            expect_refused_load(kzs_keys_load_backend_secret(dir, sk), sk, sizeof sk, path,
                                rows[i].problem);
        chmod_ok(path, 0600);
    }
    /* 0400 (read-only for its owner) is as good as 0600; public files may
     * be read by all. */
    chmod_ok(file_in(dir, "server.key"), 0400);
    chmod_ok(file_in(dir, "server.pub"), 0444);
    cr_assert_eq(kzs_keys_load_server(dir, &kp), 0);
    cr_assert_eq(n_reports, 0);
}

/* A link could lead past every check (into a directory others write, to a
 * file others own): key files are opened without following one. A link to
 * the keys directory itself is followed, and the directory it leads to is
 * what is checked. */
Test(keyperms, symbolic_links)
{
    char dir[KZS_PATH_MAX], rogue[KZS_PATH_MAX], via[KZS_PATH_MAX];
    uint8_t pk[KZ_SIGN_PUBLIC_KEY_BYTES], want[KZ_SIGN_PUBLIC_KEY_BYTES];
    make_keys("keys", dir);
    make_keys("rogue", rogue);
    cr_assert_eq(load_backend_pub(dir, want), 0);
    char path[KZS_PATH_MAX];
    snprintf(path, sizeof path, "%s", file_in(dir, "backend.pub"));
    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(symlink(file_in(rogue, "backend.pub"), path), 0);
    expect_refused_load(load_backend_pub(dir, pk), pk, sizeof pk, path, "a symbolic link");
    expect_refused_load(kzs_key_load_file(path, KZS_KEY_BACKEND_PUBLIC, pk), pk, sizeof pk, path,
                        "a symbolic link");
    /* Dangling, and a link to a file beside it: refused all the same. */
    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(symlink("nowhere.pub", path), 0);
    expect_refused_load(load_backend_pub(dir, pk), pk, sizeof pk, path, "a symbolic link");
    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(rename(file_in(rogue, "backend.pub"), file_in(dir, "copy.pub")), 0);
    cr_assert_eq(symlink("copy.pub", path), 0);
    expect_refused_load(load_backend_pub(dir, pk), pk, sizeof pk, path, "a symbolic link");
    /* The directory through a link: followed, and its target checked. */
    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(rename(file_in(dir, "copy.pub"), path), 0);
    cr_assert_eq(load_backend_pub(dir, want), 0);
    cr_assert_eq(kzs_path_join(tmpdir, "via", via), 0);
    cr_assert_eq(symlink(dir, via), 0);
    cr_assert_eq(load_backend_pub(via, pk), 0);
    cr_assert_eq(memcmp(pk, want, sizeof pk), 0);
    chmod_ok(dir, 0777);
    expect_refused_load(load_backend_pub(via, pk), pk, sizeof pk, via,
                        "directory writable by everyone (mode 0777)");
}

/* A FIFO planted under a key's name is refused at once, not waited on. */
Test(keyperms, fifo_is_refused_without_blocking)
{
    char dir[KZS_PATH_MAX];
    uint8_t pk[KZ_SIGN_PUBLIC_KEY_BYTES];
    make_keys("keys", dir);
    const char *path = file_in(dir, "backend.pub");
    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(mkfifo(path, 0644), 0);
    cr_assert_eq(load_backend_pub(dir, pk), -1);
    cr_assert(all_zero(pk, sizeof pk));
    cr_assert_eq(n_reports, 1);
    cr_assert_not_null(strstr(reports[0], "backend.pub: not a regular file"), "%s", reports[0]);
}

Test(keyperms, key_named_by_path_checks_its_own_directory)
{
    char dir[KZS_PATH_MAX], shared[KZS_PATH_MAX / 2], path[KZS_PATH_MAX];
    uint8_t pk[KZ_SIGN_PUBLIC_KEY_BYTES], want[KZ_SIGN_PUBLIC_KEY_BYTES];
    make_keys("keys", dir);
    cr_assert_eq(load_backend_pub(dir, want), 0);
    snprintf(shared, sizeof shared, "%s/shared", tmpdir);
    cr_assert_eq(mkdir(shared, 0700), 0);
    snprintf(path, sizeof path, "%s", file_in(shared, "old-backend.pub"));
    cr_assert_eq(rename(file_in(dir, "backend.pub"), path), 0);
    cr_assert_eq(kzs_key_load_file(path, KZS_KEY_BACKEND_PUBLIC, pk), 0);
    cr_assert_eq(memcmp(pk, want, sizeof pk), 0);
    chmod_ok(shared, 0777);
    expect_refused_load(kzs_key_load_file(path, KZS_KEY_BACKEND_PUBLIC, pk), pk, sizeof pk, shared,
                        "directory writable by everyone");
    /* A bare name is read from the current directory, which is checked. */
    char cwd[KZS_PATH_MAX];
    cr_assert_not_null(getcwd(cwd, sizeof cwd));
    cr_assert_eq(chdir(shared), 0);
    int rc = kzs_key_load_file("old-backend.pub", KZS_KEY_BACKEND_PUBLIC, pk);
    cr_assert_eq(chdir(cwd), 0);
    expect_refused_load(rc, pk, sizeof pk, ".", "directory writable by everyone");
    /* A path that names a directory is no key file. */
    snprintf(path, sizeof path, "%s/", shared);
    cr_assert_eq(kzs_key_load_file(path, KZS_KEY_BACKEND_PUBLIC, pk), -1);
    cr_assert(all_zero(pk, sizeof pk));
    cr_assert_eq(n_reports, 1);
    cr_assert_not_null(strstr(reports[0], "/: not the name of a key file"), "%s", reports[0]);
}

/* ---- POSIX ACLs ---- */

typedef struct acl_row {
    uint16_t tag, perm;
    uint32_t id;
} acl_row;

#define ACL_ANY ((uint32_t)ACL_UNDEFINED_ID)

static void put_le(uint8_t *p, uint32_t v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Sets the access ACL of `path` (entries in the kernel's order). Skips the
 * test when the file system has no ACLs. */
static void set_acl(const char *path, const acl_row *rows, size_t n)
{
    uint8_t buf[sizeof(struct posix_acl_xattr_header) + 16 * sizeof(struct posix_acl_xattr_entry)];
    size_t len = sizeof(struct posix_acl_xattr_header);
    cr_assert_leq(n, 16u);
    put_le(buf, POSIX_ACL_XATTR_VERSION, 4);
    for (size_t i = 0; i < n; i++, len += sizeof(struct posix_acl_xattr_entry)) {
        put_le(buf + len + offsetof(struct posix_acl_xattr_entry, e_tag), rows[i].tag, 2);
        put_le(buf + len + offsetof(struct posix_acl_xattr_entry, e_perm), rows[i].perm, 2);
        put_le(buf + len + offsetof(struct posix_acl_xattr_entry, e_id), rows[i].id, 4);
    }
    int rc = setxattr(path, "system.posix_acl_access", buf, len, 0);
    if (rc != 0 && errno == ENOTSUP)
        cr_skip_test("no POSIX ACLs on this file system");
    cr_assert_eq(rc, 0, "setxattr %s: %s", path, strerror(errno));
}

/* An owner-only file plus one extra entry; the mode's group bits become
 * the mask, the union of what the group class gets. */
static void acl_plus_one(const char *path, unsigned owner, acl_row extra, unsigned group)
{
    unsigned mask = extra.perm | group;
    acl_row rows[5];
    size_t n = 0;
    rows[n++] = (acl_row){ACL_USER_OBJ, (uint16_t)owner, ACL_ANY};
    if (extra.tag == ACL_USER)
        rows[n++] = extra;
    rows[n++] = (acl_row){ACL_GROUP_OBJ, (uint16_t)group, ACL_ANY};
    if (extra.tag == ACL_GROUP)
        rows[n++] = extra;
    rows[n++] = (acl_row){ACL_MASK, (uint16_t)mask, ACL_ANY};
    rows[n++] = (acl_row){ACL_OTHER, 0, ACL_ANY};
    set_acl(path, rows, n);
}

/* Group bits under an ACL are its mask: each entry is judged on its own,
 * so a grant to this process's user passes and any other is refused. */
Test(keyperms, acl_entries_are_judged_one_by_one)
{
    char dir[KZS_PATH_MAX];
    uint8_t pk[KZ_SIGN_PUBLIC_KEY_BYTES];
    kz_box_keypair kp;
    make_keys("keys", dir);
    const char *key = file_in(dir, "server.key");
    acl_plus_one(key, ACL_READ | ACL_WRITE, (acl_row){ACL_USER, ACL_READ, geteuid()}, 0);
    cr_assert_eq(kzs_keys_load_server(dir, &kp), 0, "%s", n_reports ? reports[0] : "");
    acl_plus_one(key, ACL_READ | ACL_WRITE, (acl_row){ACL_USER, ACL_READ, STRANGER_ID}, 0);
    expect_refused_load(kzs_keys_load_server(dir, &kp), (const uint8_t *)&kp, sizeof kp, key,
                        "secret key readable by another user named in its ACL (mode 0640)");
    acl_plus_one(key, ACL_READ | ACL_WRITE, (acl_row){ACL_GROUP, ACL_READ, STRANGER_ID}, 0);
    expect_refused_load(kzs_keys_load_server(dir, &kp), (const uint8_t *)&kp, sizeof kp, key,
                        "secret key readable by a group named in its ACL");
    acl_plus_one(key, ACL_READ, (acl_row){ACL_USER, ACL_READ, geteuid()}, ACL_READ);
    expect_refused_load(kzs_keys_load_server(dir, &kp), (const uint8_t *)&kp, sizeof kp, key,
                        "secret key readable by its group");
    chmod_ok(key, 0600); /* sets the mask to ---: the extra entries grant nothing */
    cr_assert_eq(kzs_keys_load_server(dir, &kp), 0);

    const char *pub = file_in(dir, "backend.pub");
    acl_plus_one(pub, ACL_READ | ACL_WRITE, (acl_row){ACL_USER, ACL_READ | ACL_WRITE, STRANGER_ID},
                 ACL_READ);
    expect_refused_load(load_backend_pub(dir, pk), pk, sizeof pk, pub,
                        "key file writable by another user named in its ACL");
    acl_plus_one(dir, 07, (acl_row){ACL_GROUP, 07, STRANGER_ID}, 05);
    chmod_ok(pub, 0644);
    expect_refused_load(load_backend_pub(dir, pk), pk, sizeof pk, dir,
                        "directory writable by a group named in its ACL");
}

/* ---- systemd's credentials ---- */

/* Runs the loaders as NOBODY (effective ids only, restored after): every
 * key of `dir` loads without a message. */
static void expect_loads_as_nobody(const char *dir)
{
    uint8_t pk[KZ_SIGN_PUBLIC_KEY_BYTES], sk[KZ_SIGN_SECRET_KEY_BYTES];
    kz_box_keypair kp;
    cr_assert_eq(setegid(NOBODY_GID), 0);
    cr_assert_eq(seteuid(NOBODY_UID), 0);
    int rc_pub = load_backend_pub(dir, pk);
    int rc_server = kzs_keys_load_server(dir, &kp);
    int rc_audit = kzs_keys_load_audit_secret(dir, sk);
    cr_assert_eq(seteuid(0), 0);
    cr_assert_eq(setegid(0), 0);
    cr_assert_eq(rc_pub, 0, "backend.pub: %s", n_reports ? reports[0] : "");
    cr_assert_eq(rc_server, 0, "server pair: %s", n_reports ? reports[0] : "");
    cr_assert_eq(rc_audit, 0, "audit.key: %s", n_reports ? reports[0] : "");
    cr_assert_eq(n_reports, 0, "%s", reports[0]);
}

/* The credentials directory systemd builds for LoadCredential= under a
 * service user (exec-credential.c): each file written 0400 by root, then
 * an ACL entry granting the user read (so the mode reads 0440); the
 * directory made read-only (0500) with an ACL entry granting the user
 * read and search. Where ACLs are not supported, files and directory are
 * chowned to the user instead. Both must load as that user. */
static const char *const cred_files[] = {"server.key", "server.pub", "backend.pub", "audit.key"};

static void make_credentials(char creds[KZS_PATH_MAX], int acl)
{
    char keys[KZS_PATH_MAX];
    make_keys("keys", keys);
    chmod_ok(tmpdir, 0711); /* the service user must reach it */
    cr_assert_eq(kzs_path_join(tmpdir, "credentials", creds), 0);
    cr_assert_eq(mkdir(creds, 0700), 0);
    for (size_t i = 0; i < sizeof cred_files / sizeof cred_files[0]; i++) {
        char to[KZS_PATH_MAX];
        snprintf(to, sizeof to, "%s", file_in(creds, cred_files[i]));
        cr_assert_eq(rename(file_in(keys, cred_files[i]), to), 0);
        chmod_ok(to, 0400);
        if (acl)
            acl_plus_one(to, ACL_READ, (acl_row){ACL_USER, ACL_READ, NOBODY_UID}, 0);
        else
            cr_assert_eq(chown(to, NOBODY_UID, NOBODY_GID), 0);
    }
    chmod_ok(creds, 0500);
    if (acl)
        acl_plus_one(creds, ACL_READ | ACL_EXECUTE,
                     (acl_row){ACL_USER, ACL_READ | ACL_EXECUTE, NOBODY_UID}, 0);
    else
        cr_assert_eq(chown(creds, NOBODY_UID, NOBODY_GID), 0);
}

Test(keyperms, systemd_credentials_with_acls_load)
{
    need_root();
    char creds[KZS_PATH_MAX];
    make_credentials(creds, 1);
    struct stat st;
    cr_assert_eq(stat(file_in(creds, "server.key"), &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0440u, "the layout under test shows 0440");
    cr_assert_eq(stat(creds, &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0550u);
    expect_loads_as_nobody(creds);
}

Test(keyperms, systemd_credentials_owned_by_the_service_user_load)
{
    need_root();
    char creds[KZS_PATH_MAX];
    make_credentials(creds, 0);
    expect_loads_as_nobody(creds);
}

/* ---- the warn setting ---- */

/* Each dangerous case above, under warn: the key loads, is the file's, and
 * the problem is still reported. */
Test(keyperms, warn_loads_each_case_and_says_why)
{
    char dir[KZS_PATH_MAX], pub[KZS_PATH_MAX], key[KZS_PATH_MAX], real[KZS_PATH_MAX];
    uint8_t pk[KZ_SIGN_PUBLIC_KEY_BYTES], want_pk[KZ_SIGN_PUBLIC_KEY_BYTES];
    kz_box_keypair kp, want_kp;
    make_keys("keys", dir);
    cr_assert_eq(load_backend_pub(dir, want_pk), 0);
    cr_assert_eq(kzs_keys_load_server(dir, &want_kp), 0);
    kzs_keys_set_perms(KZS_KEY_PERMS_WARN);
    cr_assert_eq(kzs_path_join(dir, "backend.pub", pub), 0);
    cr_assert_eq(kzs_path_join(dir, "server.key", key), 0);
    cr_assert_eq(kzs_path_join(dir, "real.pub", real), 0);

    chmod_ok(pub, 0666);
    expect_warned_load(load_backend_pub(dir, pk), pk, want_pk, sizeof pk, pub,
                       "key file writable by everyone (mode 0666)");
    chmod_ok(pub, 0644);

    chmod_ok(dir, 0770);
    expect_warned_load(load_backend_pub(dir, pk), pk, want_pk, sizeof pk, dir,
                       "directory writable by its group (mode 0770)");
    chmod_ok(dir, 0700);

    chmod_ok(key, 0644);
    expect_warned_load(kzs_keys_load_server(dir, &kp), (const uint8_t *)&kp,
                       (const uint8_t *)&want_kp, sizeof kp, key,
                       "secret key readable by everyone (mode 0644)");
    chmod_ok(key, 0600);

    cr_assert_eq(rename(pub, real), 0);
    cr_assert_eq(symlink("real.pub", pub), 0);
    expect_warned_load(load_backend_pub(dir, pk), pk, want_pk, sizeof pk, pub, "a symbolic link");
    cr_assert_eq(unlink(pub), 0);
    cr_assert_eq(rename(real, pub), 0);

    if (geteuid() == 0) {
        cr_assert_eq(chown(pub, NOBODY_UID, NOBODY_GID), 0);
        expect_warned_load(load_backend_pub(dir, pk), pk, want_pk, sizeof pk, pub,
                           "owned by uid 65534");
    }
    /* What warn does not change: a damaged file is still refused. */
    chmod_ok(pub, 0666);
    FILE *f = fopen(pub, "a");
    cr_assert_not_null(f);
    fputs("x", f);
    cr_assert_eq(fclose(f), 0);
    cr_assert_eq(load_backend_pub(dir, pk), -1);
    cr_assert(all_zero(pk, sizeof pk));
}
