/*
 * Bit packing: known-answer bytes for the wire format, table-driven edge
 * cases (widths 1 and 64, exact fills, empty buffers, varint and zig-zag
 * boundaries, malformed varints, byte runs at odd positions), a seeded
 * round-trip property test over more than a million mixed fields checked
 * against a naive bit-at-a-time reference writer, and truncation of an
 * encoding at every length.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <kizuna/bitpack.h>

/* ---- helpers ----------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dull;
}

static uint64_t low_bits(uint64_t v, unsigned bits)
{
    return bits == 64 ? v : v & (((uint64_t)1 << bits) - 1);
}

/* Naive reference of the documented wire format: one bit at a time into a
 * zeroed buffer, bit i of the stream = bit (i % 8) of byte (i / 8). */
typedef struct {
    uint8_t *buf;
    size_t bits;
} ref_writer;

static void ref_put(ref_writer *r, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++, r->bits++) {
        if ((v >> i) & 1)
            r->buf[r->bits / 8] |= (uint8_t)(1u << (r->bits % 8));
    }
}

static void ref_varint(ref_writer *r, uint64_t v)
{
    do {
        uint64_t byte = v & 0x7f;
        v >>= 7;
        ref_put(r, byte | (v ? 0x80 : 0), 8);
    } while (v);
}

static void ref_align(ref_writer *r)
{
    r->bits = (r->bits + 7) / 8 * 8;
}

/* ---- known answers ----------------------------------------------------- */

Test(bitpack, known_answer_bytes_prove_the_bit_order)
{
    uint8_t buf[32];
    memset(buf, 0xee, sizeof buf);
    kz_bitwriter w;
    kz_bitwriter_init(&w, buf, sizeof buf);
    cr_assert_eq(kz_bitwriter_write(&w, 0x5, 3), KZ_OK);
    cr_assert_eq(kz_bitwriter_write(&w, 0x1, 1), KZ_OK);
    cr_assert_eq(kz_bitwriter_write(&w, 0xA, 4), KZ_OK);    /* AD */
    cr_assert_eq(kz_bitwriter_write(&w, 0x1234, 16), KZ_OK); /* 34 12 */
    cr_assert_eq(kz_bitwriter_write(&w, 1, 1), KZ_OK);
    cr_assert_eq(kz_bitwriter_align(&w), KZ_OK);             /* 01 */
    cr_assert_eq(kz_bitwriter_write_varint(&w, 300), KZ_OK); /* AC 02 */
    cr_assert_eq(kz_bitwriter_write(&w, 0x3, 2), KZ_OK);
    cr_assert_eq(kz_bitwriter_write_varint(&w, 1), KZ_OK);   /* unaligned */
    cr_assert_eq(kz_bitwriter_write(&w, 0x3f, 6), KZ_OK);    /* 07 FC */
    cr_assert_eq(kz_bitwriter_write_bytes(&w, "\xde\xad", 2), KZ_OK);
    cr_assert_eq(kz_bitwriter_write_svarint(&w, -2), KZ_OK); /* 03 */
    cr_assert_eq(kz_bitwriter_write(&w, 1, 1), KZ_OK);       /* 01 */
    static const uint8_t want[] = {0xad, 0x34, 0x12, 0x01, 0xac, 0x02,
                                   0x07, 0xfc, 0xde, 0xad, 0x03, 0x01};
    cr_assert_eq(kz_bitwriter_bits(&w), 89);
    cr_assert_eq(kz_bitwriter_finish(&w), sizeof want);
    cr_assert_arr_eq(buf, want, sizeof want);
    cr_assert_eq(buf[sizeof want], 0xee, "finish must not write past the stream");

    kz_bitreader r;
    uint64_t v;
    int64_t s;
    const uint8_t *p;
    kz_bitreader_init(&r, want, sizeof want);
    cr_assert(kz_bitreader_read(&r, &v, 3) == KZ_OK && v == 5);
    cr_assert(kz_bitreader_read(&r, &v, 1) == KZ_OK && v == 1);
    cr_assert(kz_bitreader_read(&r, &v, 4) == KZ_OK && v == 0xa);
    cr_assert(kz_bitreader_read(&r, &v, 16) == KZ_OK && v == 0x1234);
    cr_assert(kz_bitreader_read(&r, &v, 1) == KZ_OK && v == 1);
    cr_assert_eq(kz_bitreader_align(&r), KZ_OK);
    cr_assert(kz_bitreader_read_varint(&r, &v) == KZ_OK && v == 300);
    cr_assert(kz_bitreader_read(&r, &v, 2) == KZ_OK && v == 3);
    cr_assert(kz_bitreader_read_varint(&r, &v) == KZ_OK && v == 1);
    cr_assert(kz_bitreader_read(&r, &v, 6) == KZ_OK && v == 0x3f);
    cr_assert(kz_bitreader_ref_bytes(&r, &p, 2) == KZ_OK && p == want + 8);
    cr_assert(kz_bitreader_read_svarint(&r, &s) == KZ_OK && s == -2);
    cr_assert(kz_bitreader_read(&r, &v, 1) == KZ_OK && v == 1);
    cr_assert_eq(kz_bitreader_bits_left(&r), 7);
}

Test(bitpack, known_answer_64_bit_field_across_words)
{
    uint8_t buf[9];
    kz_bitwriter w;
    kz_bitwriter_init(&w, buf, sizeof buf);
    cr_assert_eq(kz_bitwriter_write(&w, 1, 1), KZ_OK);
    cr_assert_eq(kz_bitwriter_write(&w, 0x8000000000000001ull, 64), KZ_OK);
    cr_assert_eq(kz_bitwriter_finish(&w), 9);
    static const uint8_t want[9] = {0x03, 0, 0, 0, 0, 0, 0, 0, 0x01};
    cr_assert_arr_eq(buf, want, 9);
    kz_bitreader r;
    uint64_t v = 0;
    kz_bitreader_init(&r, buf, sizeof buf);
    cr_assert(kz_bitreader_read(&r, &v, 1) == KZ_OK && v == 1);
    cr_assert(kz_bitreader_read(&r, &v, 64) == KZ_OK && v == 0x8000000000000001ull);
}

Test(bitpack, writer_ignores_bits_above_the_width)
{
    uint8_t buf[2];
    kz_bitwriter w;
    kz_bitwriter_init(&w, buf, sizeof buf);
    cr_assert_eq(kz_bitwriter_write(&w, 0xfffffffffffffff0ull, 4), KZ_OK);
    cr_assert_eq(kz_bitwriter_write(&w, 0xffull, 4), KZ_OK);
    cr_assert_eq(kz_bitwriter_finish(&w), 1);
    cr_assert_eq(buf[0], 0xf0);
}

/* ---- exact fills and overflow ------------------------------------------ */

static const struct {
    size_t cap;
    unsigned width;
} fill_cases[] = {
    {0, 1}, {0, 64}, {1, 1}, {1, 8}, {1, 3}, {1, 9}, {3, 5}, {5, 33}, {7, 64},
    {8, 64}, {9, 64}, {16, 64}, {10, 40}, {17, 17}, {64, 7}, {100, 63}, {4, 32},
};

Test(bitpack, exact_fill_then_one_bit_too_many)
{
    for (size_t c = 0; c < sizeof fill_cases / sizeof fill_cases[0]; c++) {
        size_t cap = fill_cases[c].cap;
        unsigned width = fill_cases[c].width;
        size_t fit = cap * 8 / width;
        uint8_t *buf = malloc(cap + 1);
        memset(buf, 0xee, cap + 1);
        kz_bitwriter w;
        kz_bitwriter_init(&w, cap ? buf : NULL, cap);
        for (size_t i = 0; i < fit; i++)
            cr_assert_eq(kz_bitwriter_write(&w, 0x9e3779b97f4a7c15ull * (i + 1), width), KZ_OK,
                         "case %zu field %zu", c, i);
        size_t left = cap * 8 - fit * width;
        cr_assert_eq(kz_bitwriter_bits_left(&w), left);
        /* Fill the remainder exactly when there is one, then one bit more. */
        if (left)
            cr_assert_eq(kz_bitwriter_write(&w, 0, (unsigned)left), KZ_OK);
        size_t bits = kz_bitwriter_bits(&w);
        cr_assert_eq(kz_bitwriter_write(&w, 1, 1), KZ_EOVERFLOW, "case %zu", c);
        cr_assert_eq(kz_bitwriter_bits(&w), bits, "a failed write writes nothing");
        cr_assert_eq(kz_bitwriter_error(&w), KZ_EOVERFLOW);
        cr_assert_eq(kz_bitwriter_align(&w), KZ_EOVERFLOW, "errors are sticky");
        cr_assert_eq(kz_bitwriter_finish(&w), cap);
        cr_assert_eq(buf[cap], 0xee, "case %zu wrote past the buffer", c);

        kz_bitreader r;
        kz_bitreader_init(&r, cap ? buf : NULL, cap);
        for (size_t i = 0; i < fit; i++) {
            uint64_t v;
            cr_assert_eq(kz_bitreader_read(&r, &v, width), KZ_OK);
            cr_assert_eq(v, low_bits(0x9e3779b97f4a7c15ull * (i + 1), width),
                         "case %zu field %zu", c, i);
        }
        uint64_t v = 777;
        if (left) {
            cr_assert_eq(kz_bitreader_read(&r, &v, (unsigned)left + 1), KZ_EOVERFLOW);
        } else {
            cr_assert_eq(kz_bitreader_read(&r, &v, 1), KZ_EOVERFLOW);
        }
        cr_assert_eq(v, 777, "a failed read leaves the output untouched");
        cr_assert_eq(kz_bitreader_bits_left(&r), left, "a failed read consumes nothing");
        cr_assert_eq(kz_bitreader_read(&r, &v, 1), KZ_EOVERFLOW, "errors are sticky");
        free(buf);
    }
}

Test(bitpack, zero_length_buffer)
{
    kz_bitwriter w;
    kz_bitwriter_init(&w, NULL, 0);
    cr_assert_eq(kz_bitwriter_align(&w), KZ_OK);
    cr_assert_eq(kz_bitwriter_write_bytes(&w, NULL, 0), KZ_OK);
    cr_assert_eq(kz_bitwriter_write_varint(&w, 0), KZ_EOVERFLOW);
    cr_assert_eq(kz_bitwriter_finish(&w), 0);

    kz_bitreader r;
    uint64_t v = 5;
    const uint8_t *p = (const uint8_t *)"x";
    kz_bitreader_init(&r, NULL, 0);
    cr_assert_eq(kz_bitreader_bits_left(&r), 0);
    cr_assert_eq(kz_bitreader_align(&r), KZ_OK);
    cr_assert_eq(kz_bitreader_ref_bytes(&r, &p, 0), KZ_OK);
    cr_assert_eq(kz_bitreader_read_varint(&r, &v), KZ_EOVERFLOW);
    cr_assert_eq(v, 5);
    cr_assert_eq(kz_bitreader_read(&r, &v, 64), KZ_EOVERFLOW);
}

Test(bitpack, width_zero_is_caller_misuse, .signal = SIGABRT)
{
    uint8_t buf[8];
    kz_bitwriter w;
    kz_bitwriter_init(&w, buf, sizeof buf);
    int rc = kz_bitwriter_write(&w, 0, 0);
    cr_assert_fail("returned %d instead of asserting", rc);
}

Test(bitpack, width_65_is_caller_misuse, .signal = SIGABRT)
{
    uint8_t buf[16] = {0};
    kz_bitreader r;
    uint64_t v;
    kz_bitreader_init(&r, buf, sizeof buf);
    int rc = kz_bitreader_read(&r, &v, 65);
    cr_assert_fail("returned %d instead of asserting", rc);
}

/* ---- varint and zig-zag ------------------------------------------------ */

static const struct {
    uint64_t v;
    unsigned size;
    uint8_t bytes[10];
} varint_cases[] = {
    {0, 1, {0x00}},
    {1, 1, {0x01}},
    {127, 1, {0x7f}},
    {128, 2, {0x80, 0x01}},
    {300, 2, {0xac, 0x02}},
    {16383, 2, {0xff, 0x7f}},
    {16384, 3, {0x80, 0x80, 0x01}},
    {(1ull << 56) - 1, 8, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}},
    {1ull << 56, 9, {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}},
    {(1ull << 63) - 1, 9, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}},
    {1ull << 63, 10, {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}},
    {UINT64_MAX, 10, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
};

Test(bitpack, varint_boundaries_known_bytes_and_round_trip)
{
    for (size_t c = 0; c < sizeof varint_cases / sizeof varint_cases[0]; c++) {
        uint64_t v = varint_cases[c].v;
        unsigned n = varint_cases[c].size;
        cr_assert_eq(kz_varint_size(v), n, "size of case %zu", c);
        /* At offset 0 the bytes are the known encoding; at offset 3 the
         * same value must survive unaligned. */
        for (unsigned off = 0; off <= 3; off += 3) {
            uint8_t buf[16] = {0};
            kz_bitwriter w;
            kz_bitwriter_init(&w, buf, sizeof buf);
            if (off)
                cr_assert_eq(kz_bitwriter_write(&w, 5, off), KZ_OK);
            cr_assert_eq(kz_bitwriter_write_varint(&w, v), KZ_OK);
            cr_assert_eq(kz_bitwriter_bits(&w), off + 8 * n);
            size_t len = kz_bitwriter_finish(&w);
            if (!off)
                cr_assert_arr_eq(buf, varint_cases[c].bytes, n, "bytes of case %zu", c);
            kz_bitreader r;
            uint64_t got = 0, pad;
            kz_bitreader_init(&r, buf, len);
            if (off)
                cr_assert_eq(kz_bitreader_read(&r, &pad, off), KZ_OK);
            cr_assert_eq(kz_bitreader_read_varint(&r, &got), KZ_OK);
            cr_assert_eq(got, v, "case %zu offset %u", c, off);
            cr_assert_eq(kz_bitreader_bits_read(&r), off + 8 * n);
        }
    }
}

Test(bitpack, varint_that_does_not_fit_writes_nothing)
{
    uint8_t buf[3] = {0};
    kz_bitwriter w;
    kz_bitwriter_init(&w, buf, sizeof buf);
    cr_assert_eq(kz_bitwriter_write(&w, 1, 1), KZ_OK);
    /* 3 bytes need 24 bits; only 23 are left. */
    cr_assert_eq(kz_bitwriter_write_varint(&w, 16384), KZ_EOVERFLOW);
    cr_assert_eq(kz_bitwriter_bits(&w), 1);
    cr_assert_eq(kz_bitwriter_finish(&w), 1);
    cr_assert_eq(buf[0], 0x01);
    cr_assert_eq(buf[1], 0x00);
}

static const struct {
    int64_t s;
    uint64_t u;
} zigzag_cases[] = {
    {0, 0}, {-1, 1}, {1, 2}, {-2, 3}, {2, 4}, {-64, 127}, {64, 128},
    {INT64_MAX, UINT64_MAX - 1}, {INT64_MIN, UINT64_MAX}, {INT64_MIN + 1, UINT64_MAX - 2},
};

Test(bitpack, zigzag_table_and_signed_varint_round_trip)
{
    for (size_t c = 0; c < sizeof zigzag_cases / sizeof zigzag_cases[0]; c++) {
        int64_t s = zigzag_cases[c].s;
        cr_assert_eq(kz_zigzag_encode(s), zigzag_cases[c].u, "encode case %zu", c);
        cr_assert_eq(kz_zigzag_decode(zigzag_cases[c].u), s, "decode case %zu", c);
        uint8_t buf[16];
        kz_bitwriter w;
        kz_bitwriter_init(&w, buf, sizeof buf);
        cr_assert_eq(kz_bitwriter_write(&w, 0, 7), KZ_OK);
        cr_assert_eq(kz_bitwriter_write_svarint(&w, s), KZ_OK);
        size_t len = kz_bitwriter_finish(&w);
        kz_bitreader r;
        uint64_t pad;
        int64_t got = 0;
        kz_bitreader_init(&r, buf, len);
        cr_assert_eq(kz_bitreader_read(&r, &pad, 7), KZ_OK);
        cr_assert_eq(kz_bitreader_read_svarint(&r, &got), KZ_OK);
        cr_assert_eq(got, s, "svarint case %zu", c);
    }
}

static const struct {
    const char *name;
    uint8_t bytes[12];
    size_t len;
    int rc;
    uint64_t v;
} bad_varints[] = {
    {"eleven bytes", {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, 11,
     KZ_EPROTO, 0},
    {"10th byte 2", {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, 10, KZ_EPROTO, 0},
    {"10th byte 0x81", {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x81, 0x00}, 11,
     KZ_EPROTO, 0},
    {"10th byte 0x7f", {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7f}, 10, KZ_EPROTO,
     0},
    {"ends inside", {0x80}, 1, KZ_EOVERFLOW, 0},
    {"ends after 9", {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9, KZ_EOVERFLOW, 0},
    /* Accepted: 10th byte 1, and redundant zero groups. */
    {"10th byte 1", {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, 10, KZ_OK,
     1ull << 63},
    {"redundant zero group", {0x80, 0x00}, 2, KZ_OK, 0},
    {"ten bytes for 1", {0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, 10, KZ_OK, 1},
};

Test(bitpack, malformed_varints_are_rejected)
{
    for (size_t c = 0; c < sizeof bad_varints / sizeof bad_varints[0]; c++) {
        kz_bitreader r;
        uint64_t v = 0xabcdef;
        kz_bitreader_init(&r, bad_varints[c].bytes, bad_varints[c].len);
        int rc = kz_bitreader_read_varint(&r, &v);
        cr_assert_eq(rc, bad_varints[c].rc, "%s: rc %d", bad_varints[c].name, rc);
        if (rc == KZ_OK) {
            cr_assert_eq(v, bad_varints[c].v, "%s", bad_varints[c].name);
            continue;
        }
        cr_assert_eq(v, 0xabcdef, "%s: output touched", bad_varints[c].name);
        cr_assert_eq(kz_bitreader_bits_read(&r), 0, "%s: consumed", bad_varints[c].name);
        cr_assert_eq(kz_bitreader_error(&r), rc);
        cr_assert_eq(kz_bitreader_read(&r, &v, 1), rc, "%s: not sticky", bad_varints[c].name);
    }
}

/* ---- byte runs --------------------------------------------------------- */

Test(bitpack, byte_run_after_odd_bits)
{
    uint8_t buf[8];
    kz_bitwriter w;
    kz_bitwriter_init(&w, buf, sizeof buf);
    cr_assert_eq(kz_bitwriter_write(&w, 0x7, 3), KZ_OK);
    cr_assert_eq(kz_bitwriter_write_bytes(&w, "abc", 3), KZ_OK);
    cr_assert_eq(kz_bitwriter_bits(&w), 32);
    cr_assert_eq(kz_bitwriter_write(&w, 0x15, 5), KZ_OK);
    cr_assert_eq(kz_bitwriter_write_bytes(&w, "Z", 1), KZ_OK);
    cr_assert_eq(kz_bitwriter_write(&w, 0x2, 2), KZ_OK);
    cr_assert_eq(kz_bitwriter_finish(&w), 7);
    static const uint8_t want[7] = {0x07, 'a', 'b', 'c', 0x15, 'Z', 0x02};
    cr_assert_arr_eq(buf, want, 7);

    kz_bitreader r;
    uint64_t v;
    uint8_t out[3];
    const uint8_t *p = NULL;
    kz_bitreader_init(&r, buf, 7);
    cr_assert(kz_bitreader_read(&r, &v, 3) == KZ_OK && v == 7);
    cr_assert_eq(kz_bitreader_read_bytes(&r, out, 3), KZ_OK);
    cr_assert_arr_eq(out, "abc", 3);
    cr_assert(kz_bitreader_read(&r, &v, 5) == KZ_OK && v == 0x15);
    cr_assert_eq(kz_bitreader_ref_bytes(&r, &p, 1), KZ_OK);
    cr_assert_eq(p, buf + 5);
    cr_assert(kz_bitreader_read(&r, &v, 2) == KZ_OK && v == 2);
    /* 6 bits are left but a byte run needs alignment first: none fit. */
    cr_assert_eq(kz_bitreader_ref_bytes(&r, &p, 1), KZ_EOVERFLOW);
    cr_assert_eq(p, buf + 5, "a failed ref leaves the pointer");
    cr_assert_eq(kz_bitreader_bits_left(&r), 6, "a failed run does not align");
}

Test(bitpack, byte_run_that_does_not_fit_writes_no_padding)
{
    uint8_t buf[4] = {0};
    kz_bitwriter w;
    kz_bitwriter_init(&w, buf, sizeof buf);
    cr_assert_eq(kz_bitwriter_write(&w, 1, 1), KZ_OK);
    cr_assert_eq(kz_bitwriter_write_bytes(&w, "wxyz", 4), KZ_EOVERFLOW);
    cr_assert_eq(kz_bitwriter_bits(&w), 1);
    cr_assert_eq(kz_bitwriter_write_bytes(&w, "w", 1), KZ_EOVERFLOW, "sticky");
}

Test(bitpack, byte_runs_straddling_words_keep_later_fields)
{
    /* A run that ends inside a 64-bit word, followed by fields that
     * complete that word: the writer must carry the run's tail bytes. */
    for (unsigned lead = 1; lead <= 70; lead += 3) {
        for (size_t n = 0; n <= 19; n++) {
            uint8_t buf[64], src[19], ref[64] = {0};
            for (size_t i = 0; i < n; i++)
                src[i] = (uint8_t)(0xa0 + i);
            kz_bitwriter w;
            ref_writer rw = {ref, 0};
            kz_bitwriter_init(&w, buf, sizeof buf);
            cr_assert_eq(kz_bitwriter_write(&w, 0x123456789abcdefull, lead > 64 ? 64 : lead),
                         KZ_OK);
            ref_put(&rw, 0x123456789abcdefull, lead > 64 ? 64 : lead);
            cr_assert_eq(kz_bitwriter_write_bytes(&w, src, n), KZ_OK);
            ref_align(&rw);
            for (size_t i = 0; i < n; i++)
                ref_put(&rw, src[i], 8);
            for (unsigned i = 0; i < 6; i++) {
                cr_assert_eq(kz_bitwriter_write(&w, 0x5a5a5a5a5a5a5ull + i, 29), KZ_OK);
                ref_put(&rw, 0x5a5a5a5a5a5a5ull + i, 29);
            }
            size_t len = kz_bitwriter_finish(&w);
            cr_assert_eq(len, (rw.bits + 7) / 8);
            cr_assert_arr_eq(buf, ref, len, "lead %u run %zu", lead, n);
        }
    }
}

Test(bitpack, copying_a_writer_is_a_checkpoint)
{
    uint8_t a[32], b[32];
    kz_bitwriter w, direct, saved;
    kz_bitwriter_init(&w, a, sizeof a);
    kz_bitwriter_init(&direct, b, sizeof b);
    cr_assert_eq(kz_bitwriter_write(&w, 0x2b, 7), KZ_OK);
    cr_assert_eq(kz_bitwriter_write(&direct, 0x2b, 7), KZ_OK);
    saved = w;
    /* A record that does not fit: some fields, a run, then overflow. */
    cr_assert_eq(kz_bitwriter_write(&w, UINT64_MAX, 64), KZ_OK);
    cr_assert_eq(kz_bitwriter_write_bytes(&w, "0123456789", 10), KZ_OK);
    cr_assert_eq(kz_bitwriter_write_bytes(&w, "0123456789abcdef", 16), KZ_EOVERFLOW);
    w = saved;
    cr_assert_eq(kz_bitwriter_error(&w), KZ_OK);
    cr_assert_eq(kz_bitwriter_write_varint(&w, 99999), KZ_OK);
    cr_assert_eq(kz_bitwriter_write_varint(&direct, 99999), KZ_OK);
    size_t n = kz_bitwriter_finish(&w);
    cr_assert_eq(n, kz_bitwriter_finish(&direct));
    cr_assert_arr_eq(a, b, n);
}

/* ---- random op sequences ----------------------------------------------- */

enum { OP_FIELD, OP_VARINT, OP_SVARINT, OP_ALIGN, OP_BYTES, OP_REF };

typedef struct {
    int kind;
    unsigned width; /* field width, or run length */
    uint64_t value; /* field value (unmasked), varint value */
} op;

static uint8_t run_byte(const op *o, size_t i)
{
    return (uint8_t)((o->value >> (8 * (i % 8))) ^ (i * 37));
}

/* Draws one operation: mostly fields, widths weighted toward 1..32, some
 * full 64-bit fields, varints of every size, alignment and short runs. */
static op next_op(uint64_t *rng)
{
    uint64_t r = rng_next(rng);
    op o = {OP_FIELD, 0, rng_next(rng)};
    unsigned pick = (unsigned)(r % 100);
    if (pick < 55)
        o.width = 1 + (unsigned)((r >> 8) % 32);
    else if (pick < 75)
        o.width = 1 + (unsigned)((r >> 8) % 64);
    else if (pick < 78)
        o.width = ((r >> 8) & 1) ? 64 : 1;
    else if (pick < 86) {
        o.kind = OP_VARINT;
        o.value >>= (r >> 8) % 64;
    } else if (pick < 92) {
        o.kind = OP_SVARINT;
        o.value >>= (r >> 8) % 64;
        if ((r >> 16) & 1)
            o.value = (uint64_t)(-(int64_t)(o.value >> 1));
        if (((r >> 17) & 63) == 0)
            o.value = (uint64_t)INT64_MIN;
    } else if (pick < 95) {
        o.kind = OP_ALIGN;
    } else {
        o.kind = ((r >> 8) & 1) ? OP_BYTES : OP_REF;
        o.width = (unsigned)((r >> 9) % 10);
    }
    return o;
}

static int write_op(kz_bitwriter *w, const op *o)
{
    uint8_t run[16];
    switch (o->kind) {
    case OP_FIELD:
        return kz_bitwriter_write(w, o->value, o->width);
    case OP_VARINT:
        return kz_bitwriter_write_varint(w, o->value);
    case OP_SVARINT:
        return kz_bitwriter_write_svarint(w, (int64_t)o->value);
    case OP_ALIGN:
        return kz_bitwriter_align(w);
    default:
        for (size_t i = 0; i < o->width; i++)
            run[i] = run_byte(o, i);
        return kz_bitwriter_write_bytes(w, run, o->width);
    }
}

static void ref_op(ref_writer *r, const op *o)
{
    switch (o->kind) {
    case OP_FIELD:
        ref_put(r, o->value, o->width);
        break;
    case OP_VARINT:
        ref_varint(r, o->value);
        break;
    case OP_SVARINT: {
        /* Zig-zag from its definition, independently of the header. */
        int64_t s = (int64_t)o->value;
        ref_varint(r, s >= 0 ? 2 * (uint64_t)s : 2 * (uint64_t)(-(s + 1)) + 1);
        break;
    }
    case OP_ALIGN:
        ref_align(r);
        break;
    default:
        ref_align(r);
        for (size_t i = 0; i < o->width; i++)
            ref_put(r, run_byte(o, i), 8);
    }
}

/* Reads `o` back. Returns the call's result; on success checks the value,
 * on failure checks that the output was left untouched. */
static int read_op(kz_bitreader *r, const op *o, size_t index)
{
    uint64_t v = 0x5e5e5e5e5e5e5e5eull;
    int64_t s = 0x5e5e5e5e;
    uint8_t run[16];
    const uint8_t *p = NULL;
    int rc;
    memset(run, 0x5e, sizeof run);
    switch (o->kind) {
    case OP_FIELD:
        rc = kz_bitreader_read(r, &v, o->width);
        if (rc == KZ_OK)
            cr_assert_eq(v, low_bits(o->value, o->width), "op %zu: field of %u bits", index,
                         o->width);
        else
            cr_assert_eq(v, 0x5e5e5e5e5e5e5e5eull, "op %zu: output touched", index);
        return rc;
    case OP_VARINT:
        rc = kz_bitreader_read_varint(r, &v);
        if (rc == KZ_OK)
            cr_assert_eq(v, o->value, "op %zu: varint", index);
        else
            cr_assert_eq(v, 0x5e5e5e5e5e5e5e5eull, "op %zu: output touched", index);
        return rc;
    case OP_SVARINT:
        rc = kz_bitreader_read_svarint(r, &s);
        if (rc == KZ_OK)
            cr_assert_eq(s, (int64_t)o->value, "op %zu: svarint", index);
        else
            cr_assert_eq(s, 0x5e5e5e5e, "op %zu: output touched", index);
        return rc;
    case OP_ALIGN:
        return kz_bitreader_align(r);
    case OP_BYTES:
        rc = kz_bitreader_read_bytes(r, run, o->width);
        for (size_t i = 0; i < o->width; i++)
            cr_assert_eq(run[i], rc == KZ_OK ? run_byte(o, i) : 0x5e, "op %zu byte %zu", index,
                         i);
        return rc;
    default:
        rc = kz_bitreader_ref_bytes(r, &p, o->width);
        if (rc != KZ_OK) {
            cr_assert_null(p, "op %zu: pointer touched", index);
            return rc;
        }
        cr_assert(p >= r->buf && p + o->width <= r->buf + r->len, "op %zu: ref outside", index);
        for (size_t i = 0; i < o->width; i++)
            cr_assert_eq(p[i], run_byte(o, i), "op %zu ref byte %zu", index, i);
        return rc;
    }
}

#define PACKET_OPS 100000
#define PACKETS 14

Test(bitpack, round_trip_a_million_random_fields_against_reference)
{
    /* Each op is at most 10 varint bytes or 9 run bytes plus padding. */
    size_t cap = (size_t)PACKET_OPS * 20;
    uint8_t *buf = malloc(cap), *ref = malloc(cap);
    size_t fields = 0, ops_total = 0;
    for (unsigned pkt = 0; pkt < PACKETS; pkt++) {
        uint64_t seed = 0x243f6a8885a308d3ull + pkt, rng = seed;
        kz_bitwriter w;
        ref_writer rw = {ref, 0};
        memset(ref, 0, cap);
        kz_bitwriter_init(&w, buf, cap);
        for (size_t i = 0; i < PACKET_OPS; i++) {
            op o = next_op(&rng);
            cr_assert_eq(write_op(&w, &o), KZ_OK, "packet %u op %zu", pkt, i);
            ref_op(&rw, &o);
        }
        cr_assert_eq(kz_bitwriter_bits(&w), rw.bits);
        size_t len = kz_bitwriter_finish(&w);
        cr_assert_eq(len, (rw.bits + 7) / 8);
        cr_assert_eq(memcmp(buf, ref, len), 0, "packet %u differs from the reference", pkt);

        kz_bitreader r;
        kz_bitreader_init(&r, buf, len);
        rng = seed;
        for (size_t i = 0; i < PACKET_OPS; i++) {
            op o = next_op(&rng);
            cr_assert_eq(read_op(&r, &o, i), KZ_OK, "packet %u op %zu", pkt, i);
            fields += o.kind == OP_FIELD;
        }
        cr_assert_eq(kz_bitreader_bits_read(&r), rw.bits);
        cr_assert_lt(kz_bitreader_bits_left(&r), 8);
        ops_total += PACKET_OPS;
    }
    cr_assert_geq(fields, 1000000, "only %zu fields", fields);
    cr_log_info("round trip: %zu ops, %zu n-bit fields", ops_total, fields);
    free(buf);
    free(ref);
}

Test(bitpack, every_truncation_fails_cleanly)
{
    enum { OPS = 300 };
    uint8_t full[OPS * 20];
    for (uint64_t seed = 1; seed <= 3; seed++) {
        uint64_t rng = seed * 0x9e3779b97f4a7c15ull;
        kz_bitwriter w;
        kz_bitwriter_init(&w, full, sizeof full);
        for (size_t i = 0; i < OPS; i++) {
            op o = next_op(&rng);
            cr_assert_eq(write_op(&w, &o), KZ_OK);
        }
        size_t len = kz_bitwriter_finish(&w);
        for (size_t cut = 0; cut < len; cut++) {
            /* Reader over an exact-size copy, so a sanitizer sees any load
             * past the end. */
            uint8_t *part = malloc(cut ? cut : 1);
            memcpy(part, full, cut);
            kz_bitreader r;
            kz_bitreader_init(&r, cut ? part : NULL, cut);
            rng = seed * 0x9e3779b97f4a7c15ull;
            size_t failed_at = OPS;
            for (size_t i = 0; i < OPS; i++) {
                op o = next_op(&rng);
                int rc = read_op(&r, &o, i);
                if (failed_at == OPS && rc != KZ_OK) {
                    cr_assert_eq(rc, KZ_EOVERFLOW, "cut %zu op %zu rc %d", cut, i, rc);
                    failed_at = i;
                }
                if (failed_at < OPS)
                    cr_assert_eq(rc, KZ_EOVERFLOW, "cut %zu op %zu after failure", cut, i);
            }
            cr_assert_lt(failed_at, OPS, "seed %llu cut %zu: no failure", (unsigned long long)seed,
                         cut);
            free(part);

            /* The writer with the same capacity fails too, and what it
             * wrote before failing is a prefix of the full encoding. */
            uint8_t *out = malloc(cut ? cut : 1);
            kz_bitwriter_init(&w, cut ? out : NULL, cut);
            rng = seed * 0x9e3779b97f4a7c15ull;
            size_t wfail = OPS;
            for (size_t i = 0; i < OPS; i++) {
                op o = next_op(&rng);
                int rc = write_op(&w, &o);
                if (wfail == OPS && rc != KZ_OK)
                    wfail = i;
                if (wfail < OPS)
                    cr_assert_eq(rc, KZ_EOVERFLOW);
            }
            cr_assert_lt(wfail, OPS, "cut %zu: writer never failed", cut);
            size_t bits = kz_bitwriter_bits(&w), n = kz_bitwriter_finish(&w);
            cr_assert_leq(n, cut);
            if (bits >= 8)
                cr_assert_eq(memcmp(out, full, bits / 8), 0, "cut %zu: prefix differs", cut);
            if (bits % 8)
                cr_assert_eq(out[bits / 8], full[bits / 8] & ((1u << (bits % 8)) - 1),
                             "cut %zu: last byte", cut);
            free(out);
        }
    }
}
