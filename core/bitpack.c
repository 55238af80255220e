/*
 * Bit packing: the out-of-line parts of the writer and reader (errors, the
 * reader's last bytes, varints, alignment and byte runs). The per-field hot
 * paths are inline in bitpack.h. The wire format is described there.
 *
 * The writer buffers one 64-bit word and stores it whole; anything that
 * writes the buffer directly (byte runs, finish) first stores the whole
 * bytes of that word and, for a run, reloads the word's head afterwards so
 * the invariant "acc holds stream bits [bits & ~63, bits)" keeps holding.
 */
#include <kizuna/bitpack.h>

#include "assert.h"

/* ---- writer ------------------------------------------------------------ */

void kz_bitwriter_init(kz_bitwriter *w, void *buf, size_t cap)
{
    KZ_ASSERT(w != NULL);
    KZ_ASSERT(buf != NULL || cap == 0);
    /* The capacity in bits must fit a size_t. */
    KZ_ASSERT(cap <= SIZE_MAX / 8);
    w->buf = buf;
    w->cap = cap;
    w->limit = cap * 8;
    w->bits = 0;
    w->acc = 0;
    w->err = KZ_OK;
}

int kz__bitwriter_write_fail(kz_bitwriter *w, unsigned bits)
{
    KZ_ASSERT(bits >= 1 && bits <= 64);
    if (w->err == KZ_OK)
        w->err = KZ_EOVERFLOW;
    return w->err;
}

/* Fails `w` with `code` unless it has already failed; returns the sticky
 * code. */
static int kz__bitwriter_fail(kz_bitwriter *w, int code)
{
    if (w->err == KZ_OK)
        w->err = code;
    return w->err;
}

/* Stores the complete bytes of the pending word at its place in the
 * buffer, leaving `acc` as it is. */
static void kz__bitwriter_spill(kz_bitwriter *w, size_t nbytes)
{
    /* An empty writer's buffer may be NULL, and NULL + 0 is undefined. */
    if (nbytes == 0)
        return;
    uint8_t *dst = w->buf + (w->bits >> 6 << 3);
    for (size_t i = 0; i < nbytes; i++)
        dst[i] = (uint8_t)(w->acc >> (8 * i));
}

int kz_bitwriter_write_varint(kz_bitwriter *w, uint64_t v)
{
    unsigned n = kz_varint_size(v);
    if (w->err != KZ_OK)
        return w->err;
    if ((size_t)n * 8 > w->limit - w->bits)
        return kz__bitwriter_fail(w, KZ_EOVERFLOW);
    /* Bytes 0..7 go out as one field, bytes 8..9 as a second; the room
     * check above makes both succeed. */
    uint64_t lo = 0, hi = 0;
    for (unsigned i = 0; i < n; i++) {
        uint64_t byte = ((v >> (7 * i)) & 0x7f) | (i + 1 < n ? 0x80 : 0);
        if (i < 8)
            lo |= byte << (8 * i);
        else
            hi |= byte << (8 * (i - 8));
    }
    int rc = kz_bitwriter_write(w, lo, (n < 8 ? n : 8) * 8);
    if (rc == KZ_OK && n > 8)
        rc = kz_bitwriter_write(w, hi, (n - 8) * 8);
    return rc;
}

int kz_bitwriter_write_svarint(kz_bitwriter *w, int64_t v)
{
    return kz_bitwriter_write_varint(w, kz_zigzag_encode(v));
}

int kz_bitwriter_align(kz_bitwriter *w)
{
    unsigned pad = (unsigned)(-w->bits & 7);
    if (w->err != KZ_OK)
        return w->err;
    /* Cannot fail: bits <= limit and limit is a multiple of 8. */
    return pad ? kz_bitwriter_write(w, 0, pad) : KZ_OK;
}

int kz_bitwriter_write_bytes(kz_bitwriter *w, const void *src, size_t n)
{
    KZ_ASSERT(src != NULL || n == 0);
    if (w->err != KZ_OK)
        return w->err;
    size_t aligned = (w->bits + 7) & ~(size_t)7;
    if (n > (w->limit - aligned) / 8)
        return kz__bitwriter_fail(w, KZ_EOVERFLOW);
    (void)kz_bitwriter_align(w);
    if (n == 0)
        return KZ_OK;
    kz__bitwriter_spill(w, (w->bits & 63) >> 3);
    memcpy(w->buf + (w->bits >> 3), src, n);
    w->bits += n * 8;
    /* Reload the head of the new current word; those bytes were just
     * stored (by the spill or the copy). */
    const uint8_t *word = w->buf + (w->bits >> 6 << 3);
    size_t have = (w->bits & 63) >> 3;
    w->acc = 0;
    for (size_t i = 0; i < have; i++)
        w->acc |= (uint64_t)word[i] << (8 * i);
    return KZ_OK;
}

size_t kz_bitwriter_finish(kz_bitwriter *w)
{
    kz__bitwriter_spill(w, ((w->bits & 63) + 7) >> 3);
    return kz_bitwriter_bytes(w);
}

/* ---- reader ------------------------------------------------------------ */

void kz_bitreader_init(kz_bitreader *r, const void *buf, size_t len)
{
    KZ_ASSERT(r != NULL);
    KZ_ASSERT(buf != NULL || len == 0);
    KZ_ASSERT(len <= SIZE_MAX / 8);
    r->buf = buf;
    r->len = len;
    r->limit = len * 8;
    r->pos = 0;
    r->err = KZ_OK;
}

int kz__bitreader_read_fail(kz_bitreader *r, unsigned bits)
{
    KZ_ASSERT(bits >= 1 && bits <= 64);
    if (r->err == KZ_OK)
        r->err = KZ_EOVERFLOW;
    return r->err;
}

static int kz__bitreader_fail(kz_bitreader *r, int code)
{
    if (r->err == KZ_OK)
        r->err = code;
    return r->err;
}

uint64_t kz__bitreader_gather(const kz_bitreader *r, size_t pos, unsigned bits)
{
    /* Fewer than 8 bytes remain from pos / 8, so the field fits in the
     * bytes loaded here and no shift reaches 64. */
    size_t byte = pos >> 3;
    size_t end = (pos + bits + 7) >> 3;
    uint64_t v = 0;
    for (size_t i = byte; i < end; i++)
        v |= (uint64_t)r->buf[i] << (8 * (i - byte));
    return v >> (pos & 7);
}

int kz_bitreader_read_varint(kz_bitreader *r, uint64_t *out)
{
    size_t start = r->pos;
    uint64_t v = 0, byte = 0;
    for (unsigned i = 0; i < KZ_VARINT_MAX_BYTES; i++) {
        int rc = kz_bitreader_read(r, &byte, 8);
        if (rc != KZ_OK) {
            r->pos = start;
            return rc;
        }
        /* The 10th byte carries bit 63 only: anything above 1 is a value
         * wider than 64 bits or an 11th byte. */
        if (i == KZ_VARINT_MAX_BYTES - 1 && byte > 1) {
            r->pos = start;
            return kz__bitreader_fail(r, KZ_EPROTO);
        }
        v |= (byte & 0x7f) << (7 * i);
        if ((byte & 0x80) == 0)
            break;
    }
    *out = v;
    return KZ_OK;
}

int kz_bitreader_read_svarint(kz_bitreader *r, int64_t *out)
{
    uint64_t u;
    int rc = kz_bitreader_read_varint(r, &u);
    if (rc == KZ_OK)
        *out = kz_zigzag_decode(u);
    return rc;
}

int kz_bitreader_align(kz_bitreader *r)
{
    if (r->err != KZ_OK)
        return r->err;
    /* Cannot pass the end: limit is a multiple of 8. */
    r->pos = (r->pos + 7) & ~(size_t)7;
    return KZ_OK;
}

/* Checks that `n` whole bytes follow the next byte boundary; returns their
 * offset in the buffer, or fails the reader. */
static int kz__bitreader_run(kz_bitreader *r, size_t n, size_t *offset)
{
    if (r->err != KZ_OK)
        return r->err;
    size_t aligned = (r->pos + 7) & ~(size_t)7;
    if (n > (r->limit - aligned) / 8)
        return kz__bitreader_fail(r, KZ_EOVERFLOW);
    *offset = aligned >> 3;
    r->pos = aligned + n * 8;
    return KZ_OK;
}

int kz_bitreader_read_bytes(kz_bitreader *r, void *dst, size_t n)
{
    KZ_ASSERT(dst != NULL || n == 0);
    size_t off;
    int rc = kz__bitreader_run(r, n, &off);
    if (rc == KZ_OK && n > 0)
        memcpy(dst, r->buf + off, n);
    return rc;
}

int kz_bitreader_ref_bytes(kz_bitreader *r, const uint8_t **p, size_t n)
{
    KZ_ASSERT(p != NULL);
    size_t off;
    int rc = kz__bitreader_run(r, n, &off);
    /* An empty buffer may be NULL, and NULL + 0 is still undefined. */
    if (rc == KZ_OK)
        *p = r->len ? r->buf + off : r->buf;
    return rc;
}
