/*
 * Unit tests of kizuna-server's key files (server/keys.c): known-answer
 * vectors for the check value and the server id (computed independently
 * with Python's hashlib.blake2b), round trips for every kind, and the
 * strict parser's refusals: every single changed character, every
 * truncation, case, line endings, headers of another kind. Then the file
 * functions: exclusive creation, atomic replacement, exact modes under any
 * umask, key-pair consistency checks.
 */
#include <criterion/criterion.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
