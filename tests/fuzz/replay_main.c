/*
 * Driver for fuzz harnesses in builds without libFuzzer: feeds every file
 * of the directories or files named on the command line, 500 seeded
 * mutations of each (bit flips, byte overwrites, truncations), then 20,000
 * pseudorandom inputs (fixed seed, lengths 0..512, some all-zero and
 * all-0xff), to LLVMFuzzerTestOneInput. A crash or sanitizer report fails
 * the test; the harness's own invariant checks abort on a violation.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Runs mutations of a corpus input: the interesting inputs are near valid
 * ones, which random bytes almost never reach. */
static void replay_mutations(const uint8_t *orig, size_t n)
{
    uint64_t seed = 0x2545f4914f6cdd1dull ^ n;
    for (int i = 0; i < 500 && n > 0; i++) {
        uint8_t *m = malloc(n);
        memcpy(m, orig, n);
        size_t len = n;
        switch (xorshift(&seed) % 3) {
        case 0: /* flip 1-3 bits */
            for (uint64_t k = 1 + xorshift(&seed) % 3; k > 0; k--)
                m[xorshift(&seed) % n] ^= (uint8_t)(1u << (xorshift(&seed) % 8));
            break;
        case 1: /* overwrite one byte */
            m[xorshift(&seed) % n] = (uint8_t)xorshift(&seed);
            break;
        default: /* truncate */
            len = xorshift(&seed) % n;
            break;
        }
        LLVMFuzzerTestOneInput(m, len);
        free(m);
    }
}

static size_t replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    static uint8_t buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    /* Copy to an exact-size heap block so ASan sees reads past the end. */
    uint8_t *exact = malloc(n ? n : 1);
    memcpy(exact, buf, n);
    LLVMFuzzerTestOneInput(exact, n);
    replay_mutations(exact, n);
    free(exact);
    return 1;
}

static size_t replay_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return 0;
    if (!S_ISDIR(st.st_mode))
        return replay_file(path);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    size_t count = 0;
    struct dirent *e;
    char full[4096];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(full, sizeof full, "%s/%s", path, e->d_name);
        count += replay_file(full);
    }
    closedir(d);
    return count;
}

int main(int argc, char **argv)
{
    size_t files = 0;
    for (int i = 1; i < argc; i++)
        files += replay_path(argv[i]);
    uint64_t seed = 0x9e3779b97f4a7c15u;
    size_t randoms = 20000;
    for (size_t i = 0; i < randoms; i++) {
        size_t n = xorshift(&seed) % 513;
        uint8_t *buf = malloc(n ? n : 1);
        int mode = (int)(i % 16);
        for (size_t j = 0; j < n; j++)
            buf[j] = mode == 0 ? 0 : mode == 1 ? 0xff : (uint8_t)xorshift(&seed);
        LLVMFuzzerTestOneInput(buf, n);
        free(buf);
    }
    printf("replayed %zu corpus files and %zu random inputs\n", files, randoms);
    return 0;
}
