/*
 * Bit packing: a writer and a reader of n-bit fields, LEB128 varints,
 * zig-zag signed varints and byte runs over a caller's byte buffer. Every
 * snapshot and delta Kizuna sends is built with these, so they are tuned for
 * many small fields (1..32 bits) per packet of at most a few kilobytes.
 *
 * Wire format (this is the bit order on the network):
 *   Fields are packed LSB-first, little-endian. Bit i of the stream (counted
 *   from 0 at the start of the buffer) is bit (i % 8) of byte (i / 8), where
 *   bit 0 is the least significant bit of a byte. An n-bit field holding v
 *   occupies stream bits [p, p + n) with bit j of v at stream bit p + j.
 *   So writing 0x5 in 3 bits then 0x1 in 1 bit gives the byte 0x0d, and a
 *   16-bit field written at a byte boundary reads as a little-endian uint16.
 *   The last byte is zero-padded. Alignment pads with zero bits up to the
 *   next multiple of 8; a byte run is aligned first, then copied verbatim.
 *   A varint is LEB128: 7 bits per byte, least significant group first, the
 *   top bit of each byte set when another byte follows; at most 10 bytes.
 *   Each varint byte is an 8-bit field, so a varint need not be aligned.
 *   A signed varint is the zig-zag mapping (0,-1,1,-2,... -> 0,1,2,3,...)
 *   of the value, written as a varint.
 *
 * Ownership and threading: kz_bitwriter and kz_bitreader are small value
 * types on caller storage; they point into a buffer the caller owns and
 * must keep alive while they are used. Neither allocates. One thread at a
 * time may use a given writer or reader.
 *
 * Errors: a write that does not fit writes nothing and returns
 * KZ_EOVERFLOW; a read past the end reads nothing, leaves its output
 * untouched and returns KZ_EOVERFLOW; a malformed varint returns
 * KZ_EPROTO. The first error is sticky: every later call on that writer or
 * reader fails with the same code, so a sequence of calls can be checked
 * once at the end (kz_bitwriter_error / kz_bitreader_error) or at each step.
 * A failed call leaves the position where it was. A field width outside
 * 1..64 is caller misuse and trips KZ_ASSERT.
 *
 * Both types are plain values: copying one makes a checkpoint, and
 * assigning the copy back rolls back everything done after it (including a
 * sticky error). A packet builder uses that to drop a record that did not
 * fit completely, then finish the packet with what did.
 *
 * kz_bitwriter_write and kz_bitreader_read are static inline because they
 * run once per field in every snapshot: inlined, a constant width folds
 * away the mask and the call. Their uncommon paths (errors, the last few
 * bytes of a reader's buffer) are out of line.
 */
#ifndef KZ_BITPACK_H
#define KZ_BITPACK_H

#include <string.h>

#include <kizuna/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Longest LEB128 encoding of a uint64_t. */
#define KZ_VARINT_MAX_BYTES 10

/*
 * Writer. `acc` holds the bits of the current 64-bit word of the stream
 * (stream bits [bits & ~63, bits)), not yet stored; bits above them are
 * zero. A complete word is stored as 8 little-endian bytes at once, so the
 * buffer's last partial word only appears after kz_bitwriter_finish.
 */
typedef struct kz_bitwriter {
    uint8_t *buf;
    size_t cap;    /* capacity in bytes */
    size_t limit;  /* capacity in bits */
    size_t bits;   /* bits written */
    uint64_t acc;
    int err;       /* sticky: 0 or the first failure */
} kz_bitwriter;

/* Reader: a bit position into a read-only buffer; nothing is cached. */
typedef struct kz_bitreader {
    const uint8_t *buf;
    size_t len;    /* bytes */
    size_t limit;  /* bits */
    size_t pos;    /* bits consumed */
    int err;       /* sticky: 0 or the first failure */
} kz_bitreader;

/* ---- zig-zag and varint sizes ------------------------------------------ */

/* Maps a signed value to an unsigned one with small magnitudes staying
 * small: 0, -1, 1, -2, 2 ... -> 0, 1, 2, 3, 4 ... */
static inline uint64_t kz_zigzag_encode(int64_t v)
{
    uint64_t u = (uint64_t)v;
    return (u << 1) ^ (0 - (u >> 63));
}

/* Inverse of kz_zigzag_encode; every uint64_t maps to an int64_t. */
static inline int64_t kz_zigzag_decode(uint64_t u)
{
    uint64_t r = (u >> 1) ^ (0 - (u & 1));
    /* Converted without relying on implementation-defined signed
     * conversion; compilers reduce this to a move. */
    return r <= (uint64_t)INT64_MAX ? (int64_t)r : -(int64_t)(~r) - 1;
}

/* Bytes of the LEB128 encoding of `v`: 1..10. */
static inline unsigned kz_varint_size(uint64_t v)
{
    unsigned n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* ---- internals used by the inline functions ---------------------------- */

static inline void kz__bp_store_le64(uint8_t *p, uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(p, &v, 8);
#else
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
#endif
}

static inline uint64_t kz__bp_load_le64(const uint8_t *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
#else
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
#endif
}

/* Out-of-line paths: width check (asserts), sticky error, overflow. */
KZ_API int kz__bitwriter_write_fail(kz_bitwriter *w, unsigned bits);
KZ_API int kz__bitreader_read_fail(kz_bitreader *r, unsigned bits);
/* Reads `bits` at stream bit `pos` when fewer than 8 bytes remain from
 * byte pos / 8; the caller has checked the range. */
KZ_API uint64_t kz__bitreader_gather(const kz_bitreader *r, size_t pos, unsigned bits);

/* ---- writer ------------------------------------------------------------ */

/*
 * Prepares `w` to write into buf[0 .. cap). `buf` may be NULL when cap is 0.
 * The bytes of `buf` are final only after kz_bitwriter_finish.
 */
KZ_API void kz_bitwriter_init(kz_bitwriter *w, void *buf, size_t cap);

/*
 * Appends the low `bits` bits of `value` (1..64, asserted); higher bits of
 * `value` are ignored. Returns 0, or KZ_EOVERFLOW if the field does not fit
 * (nothing written), or the sticky error of an earlier failure.
 */
static inline KZ_MUST_CHECK int kz_bitwriter_write(kz_bitwriter *w, uint64_t value,
                                                   unsigned bits)
{
    if (bits - 1u > 63u || w->err != 0 || bits > w->limit - w->bits)
        return kz__bitwriter_write_fail(w, bits);
    unsigned used = (unsigned)(w->bits & 63);
    unsigned room = 64 - used;
    value &= ~(uint64_t)0 >> (64 - bits);
    w->acc |= value << used;
    if (bits >= room) {
        /* The word is complete: store it, keep the field's spill-over.
         * Two shifts because room may be 64. */
        kz__bp_store_le64(w->buf + (w->bits >> 6 << 3), w->acc);
        w->acc = value >> (room - 1) >> 1;
    }
    w->bits += bits;
    return KZ_OK;
}

/* Appends `v` as a LEB128 varint (kz_varint_size(v) bytes, not aligned).
 * All or nothing: returns 0, KZ_EOVERFLOW or the sticky error. */
KZ_API KZ_MUST_CHECK int kz_bitwriter_write_varint(kz_bitwriter *w, uint64_t v);

/* Appends kz_zigzag_encode(v) as a varint. */
KZ_API KZ_MUST_CHECK int kz_bitwriter_write_svarint(kz_bitwriter *w, int64_t v);

/* Pads with zero bits to the next byte boundary. Cannot overflow (the
 * capacity is whole bytes); returns 0 or the sticky error. */
KZ_API int kz_bitwriter_align(kz_bitwriter *w);

/*
 * Aligns, then copies `n` bytes from `src` (which must not overlap the
 * buffer; may be NULL when n is 0). All or nothing: if the padding plus
 * the run does not fit, nothing is written (not even the padding) and
 * KZ_EOVERFLOW is returned.
 */
KZ_API KZ_MUST_CHECK int kz_bitwriter_write_bytes(kz_bitwriter *w, const void *src, size_t n);

/*
 * Stores the pending bits, zero-padding the last byte, and returns the
 * number of bytes of the stream (bits rounded up to bytes). After a
 * failure this is the length of everything written before it: check
 * kz_bitwriter_error before sending. Writing may continue after finish.
 */
KZ_API KZ_MUST_CHECK size_t kz_bitwriter_finish(kz_bitwriter *w);

/* Bits written so far, and the same rounded up to bytes. */
static inline size_t kz_bitwriter_bits(const kz_bitwriter *w)
{
    return w->bits;
}

static inline size_t kz_bitwriter_bytes(const kz_bitwriter *w)
{
    return (w->bits + 7) >> 3;
}

/* Bits that still fit. */
static inline size_t kz_bitwriter_bits_left(const kz_bitwriter *w)
{
    return w->limit - w->bits;
}

/* 0, or the sticky error. */
static inline int kz_bitwriter_error(const kz_bitwriter *w)
{
    return w->err;
}

/* ---- reader ------------------------------------------------------------ */

/* Prepares `r` to read buf[0 .. len). `buf` may be NULL when len is 0. */
KZ_API void kz_bitreader_init(kz_bitreader *r, const void *buf, size_t len);

/*
 * Reads a `bits`-bit field (1..64, asserted) into *out. Returns 0, or
 * KZ_EOVERFLOW when fewer than `bits` bits remain (nothing consumed, *out
 * untouched), or the sticky error. Never loads a byte outside the buffer.
 */
static inline KZ_MUST_CHECK int kz_bitreader_read(kz_bitreader *r, uint64_t *out, unsigned bits)
{
    if (bits - 1u > 63u || r->err != 0 || bits > r->limit - r->pos)
        return kz__bitreader_read_fail(r, bits);
    size_t byte = r->pos >> 3;
    unsigned shift = (unsigned)(r->pos & 7);
    uint64_t v;
    if (r->len - byte >= 8) {
        v = kz__bp_load_le64(r->buf + byte) >> shift;
        /* A field that spills past these 8 bytes ends inside the buffer
         * (checked above), so byte + 8 exists. */
        if (bits + shift > 64)
            v |= (uint64_t)r->buf[byte + 8] << (64 - shift);
    } else {
        v = kz__bitreader_gather(r, r->pos, bits);
    }
    r->pos += bits;
    *out = v & (~(uint64_t)0 >> (64 - bits));
    return KZ_OK;
}

/*
 * Reads a LEB128 varint. KZ_EPROTO if the 10th byte is above 1 (the value
 * would exceed 64 bits, or the encoding would be longer than 10 bytes).
 * Redundant zero groups (0x80 0x00 for 0) are accepted: decoders compare
 * values, never encodings. KZ_EOVERFLOW if the buffer ends inside it.
 * On failure nothing is consumed and *out is untouched.
 */
KZ_API KZ_MUST_CHECK int kz_bitreader_read_varint(kz_bitreader *r, uint64_t *out);

/* Reads a zig-zag signed varint; as kz_bitreader_read_varint. */
KZ_API KZ_MUST_CHECK int kz_bitreader_read_svarint(kz_bitreader *r, int64_t *out);

/*
 * Skips to the next byte boundary. The skipped padding bits are NOT
 * required to be zero: a writer always zeroes them, and a format that
 * needs canonical bytes can read them as a field and check. Cannot
 * overflow; returns 0 or the sticky error.
 */
KZ_API int kz_bitreader_align(kz_bitreader *r);

/* Aligns, then copies the next `n` bytes to `dst`. All or nothing:
 * KZ_EOVERFLOW (position and dst untouched) if they are not all there. */
KZ_API KZ_MUST_CHECK int kz_bitreader_read_bytes(kz_bitreader *r, void *dst, size_t n);

/* Aligns, then points *p at the next `n` bytes inside the buffer and
 * consumes them (no copy; valid while the buffer is). As read_bytes on
 * failure, *p untouched. */
KZ_API KZ_MUST_CHECK int kz_bitreader_ref_bytes(kz_bitreader *r, const uint8_t **p, size_t n);

/* Bits consumed so far, and bits left. */
static inline size_t kz_bitreader_bits_read(const kz_bitreader *r)
{
    return r->pos;
}

static inline size_t kz_bitreader_bits_left(const kz_bitreader *r)
{
    return r->limit - r->pos;
}

/* 0, or the sticky error. */
static inline int kz_bitreader_error(const kz_bitreader *r)
{
    return r->err;
}

#ifdef __cplusplus
}
#endif

#endif /* KZ_BITPACK_H */
