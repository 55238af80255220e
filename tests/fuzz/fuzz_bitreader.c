/*
 * Fuzz harness for the bit reader. The input is a little program followed
 * by the bytes it reads:
 *
 *   byte 0          number of ops P (taken mod 33, capped by the input)
 *   bytes 1 .. P    ops: low 3 bits the kind, high 5 bits a parameter p
 *                     0 field of p+1 bits (1..32)   4 align
 *                     1 field of p+33 bits (33..64) 5 read_bytes, p bytes
 *                     2 varint                      6 ref_bytes, p bytes
 *                     3 signed varint               7 field of (p&7)+1 bits
 *   the rest        the buffer read
 *
 * The ops run until the first failure. Invariants checked (abort() on a
 * violation): position plus bits left is always the buffer size; each op
 * moves the position exactly as documented; a failure is EOVERFLOW (or
 * EPROTO for a varint), consumes nothing, leaves outputs untouched and is
 * sticky. Then every value read is written back with the same ops to a
 * writer the size of the buffer (which must never overflow: a rewrite is
 * never longer than what was read), read again and compared, and written a
 * third time, which must give identical bytes (the writer is canonical).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kizuna/bitpack.h>

#define MAX_OPS 32
#define MAX_RUN 31
#define SENTINEL 0xa5a5a5a5a5a5a5a5ull

typedef struct {
    uint8_t kind, param;
    uint64_t value;          /* field or varint value (svarint as uint64) */
    uint8_t run[MAX_RUN];
} result;

static void fail(const char *what, size_t op)
{
    fprintf(stderr, "fuzz_bitreader: invariant violated at op %zu: %s\n", op, what);
    abort();
}

static unsigned field_width(uint8_t kind, uint8_t param)
{
    return kind == 0 ? param + 1u : kind == 1 ? param + 33u : (param & 7u) + 1;
}

/* Whether a successful op `o` moved the position from `before` to
 * `after` as documented. */
static int moved_right(const result *o, size_t before, size_t after)
{
    size_t aligned = (before + 7) & ~(size_t)7;
    switch (o->kind) {
    case 2:
    case 3:
        /* 1..10 whole bytes, depending on the encoding's form. */
        return after > before && after - before <= 80 && (after - before) % 8 == 0;
    case 4:
        return after == aligned;
    case 5:
    case 6:
        return after == aligned + 8u * o->param;
    default:
        return after == before + field_width(o->kind, o->param);
    }
}

/* Runs op `o` on `r`. With `check` unset, stores what was read in `o`;
 * with it set, compares against what `o` holds. Returns the call's
 * result; a failed call must have left its output untouched. */
static int read_op(kz_bitreader *r, result *o, int check, size_t index)
{
    uint64_t v = SENTINEL;
    int64_t s = (int64_t)SENTINEL;
    uint8_t run[MAX_RUN];
    const uint8_t *p = NULL;
    int rc;
    memset(run, 0xa5, sizeof run);
    switch (o->kind) {
    case 2:
        rc = kz_bitreader_read_varint(r, &v);
        break;
    case 3:
        rc = kz_bitreader_read_svarint(r, &s);
        v = (uint64_t)s;
        break;
    case 4:
        rc = kz_bitreader_align(r);
        break;
    case 5:
        rc = kz_bitreader_read_bytes(r, run, o->param);
        break;
    case 6:
        rc = kz_bitreader_ref_bytes(r, &p, o->param);
        if (rc == KZ_OK && o->param > 0) {
            if (p < r->buf || p + o->param > r->buf + r->len)
                fail("ref_bytes points outside the buffer", index);
            memcpy(run, p, o->param);
        } else if (rc != KZ_OK && p != NULL) {
            fail("failed ref_bytes touched the pointer", index);
        }
        break;
    default:
        rc = kz_bitreader_read(r, &v, field_width(o->kind, o->param));
        break;
    }
    if (rc != KZ_OK) {
        if (v != SENTINEL)
            fail("failed read touched its output", index);
        for (size_t i = 0; i < MAX_RUN; i++) {
            if (run[i] != 0xa5)
                fail("failed read_bytes touched its output", index);
        }
        return rc;
    }
    if (!check) {
        o->value = v;
        memcpy(o->run, run, sizeof run);
    } else if (o->value != v || memcmp(o->run, run, o->param) != 0) {
        fail("value changed after a write/read round trip", index);
    }
    return rc;
}

static int write_op(kz_bitwriter *w, const result *o)
{
    switch (o->kind) {
    case 2:
        return kz_bitwriter_write_varint(w, o->value);
    case 3:
        return kz_bitwriter_write_svarint(w, (int64_t)o->value);
    case 4:
        return kz_bitwriter_align(w);
    case 5:
    case 6:
        return kz_bitwriter_write_bytes(w, o->run, o->param);
    default:
        return kz_bitwriter_write(w, o->value, field_width(o->kind, o->param));
    }
}

/* First pass over the fuzzed buffer; returns how many ops succeeded. */
static size_t first_pass(result *ops, size_t nops, const uint8_t *buf, size_t len)
{
    kz_bitreader r;
    kz_bitreader_init(&r, buf, len);
    for (size_t i = 0; i < nops; i++) {
        size_t before = kz_bitreader_bits_read(&r);
        int rc = read_op(&r, &ops[i], 0, i);
        size_t after = kz_bitreader_bits_read(&r);
        if (after + kz_bitreader_bits_left(&r) != len * 8)
            fail("position and bits left disagree", i);
        if (rc == KZ_OK) {
            if (!moved_right(&ops[i], before, after))
                fail("position moved by the wrong amount", i);
            continue;
        }
        if (rc != KZ_EOVERFLOW && !(rc == KZ_EPROTO && (ops[i].kind == 2 || ops[i].kind == 3)))
            fail("unexpected error code", i);
        if (after != before)
            fail("a failed read consumed bits", i);
        if (kz_bitreader_error(&r) != rc)
            fail("error is not recorded", i);
        uint64_t v = SENTINEL;
        if (kz_bitreader_read(&r, &v, 1) != rc || v != SENTINEL ||
            kz_bitreader_align(&r) != rc)
            fail("error is not sticky", i);
        return i;
    }
    return nops;
}

/* Writes the first `n` ops' values into buf[0 .. cap); returns the length. */
static size_t rewrite(const result *ops, size_t n, uint8_t *buf, size_t cap)
{
    kz_bitwriter w;
    kz_bitwriter_init(&w, cap ? buf : NULL, cap);
    for (size_t i = 0; i < n; i++) {
        if (write_op(&w, &ops[i]) != KZ_OK)
            fail("rewriting what was read overflowed", i);
    }
    return kz_bitwriter_finish(&w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t nops = data[0] % (MAX_OPS + 1);
    if (nops > size - 1)
        nops = size - 1;
    const uint8_t *payload = data + 1 + nops;
    size_t len = size - 1 - nops;

    result ops[MAX_OPS];
    memset(ops, 0, sizeof ops);
    for (size_t i = 0; i < nops; i++) {
        ops[i].kind = data[1 + i] & 7;
        ops[i].param = data[1 + i] >> 3;
    }
    size_t ok = first_pass(ops, nops, len ? payload : NULL, len);

    uint8_t *again = malloc(len ? len : 1), *third = malloc(len ? len : 1);
    size_t n2 = rewrite(ops, ok, again, len);
    kz_bitreader r;
    kz_bitreader_init(&r, n2 ? again : NULL, n2);
    result copy[MAX_OPS];
    memcpy(copy, ops, sizeof copy);
    for (size_t i = 0; i < ok; i++) {
        if (read_op(&r, &copy[i], 1, i) != KZ_OK)
            fail("re-reading the rewrite failed", i);
    }
    if (kz_bitreader_bits_left(&r) >= 8)
        fail("the rewrite has bytes nothing reads", ok);
    size_t n3 = rewrite(copy, ok, third, len);
    if (n3 != n2 || (n2 && memcmp(again, third, n2) != 0))
        fail("writing the same values twice gave different bytes", ok);
    free(again);
    free(third);
    return 0;
}
