/*
 * Little-endian byte codec for wire formats. Writers append to a bounded
 * buffer and turn sticky on overflow; readers take (const uint8_t **p,
 * const uint8_t *end), check the length before touching memory, and return
 * 0 when the bytes run out, leaving the output untouched.
 */
#ifndef KZ_NET_BYTES_H
#define KZ_NET_BYTES_H

#include <stdint.h>
#include <string.h>

typedef struct kz__wbuf {
    uint8_t *p;
    uint8_t *end;
    int overflow;
} kz__wbuf;

static inline kz__wbuf kz__wbuf_make(uint8_t *buf, size_t cap)
{
    kz__wbuf w = {buf, buf + cap, 0};
    return w;
}

static inline void kz__put_bytes(kz__wbuf *w, const void *src, size_t n)
{
    if (w->overflow || (size_t)(w->end - w->p) < n) {
        w->overflow = 1;
        return;
    }
    if (n)
        memcpy(w->p, src, n);
    w->p += n;
}

static inline void kz__put_u8(kz__wbuf *w, uint8_t v)
{
    kz__put_bytes(w, &v, 1);
}

static inline void kz__put_u16(kz__wbuf *w, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    kz__put_bytes(w, b, 2);
}

static inline void kz__put_u64(kz__wbuf *w, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    kz__put_bytes(w, b, 8);
}

static inline int kz__get_bytes(const uint8_t **p, const uint8_t *end, void *dst, size_t n)
{
    if ((size_t)(end - *p) < n)
        return 0;
    if (n)
        memcpy(dst, *p, n);
    *p += n;
    return 1;
}

static inline int kz__get_u8(const uint8_t **p, const uint8_t *end, uint8_t *v)
{
    return kz__get_bytes(p, end, v, 1);
}

static inline int kz__get_u16(const uint8_t **p, const uint8_t *end, uint16_t *v)
{
    uint8_t b[2];
    if (!kz__get_bytes(p, end, b, 2))
        return 0;
    *v = (uint16_t)(b[0] | b[1] << 8);
    return 1;
}

static inline int kz__get_u64(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint8_t b[8];
    if (!kz__get_bytes(p, end, b, 8))
        return 0;
    uint64_t x = 0;
    for (int i = 7; i >= 0; i--)
        x = x << 8 | b[i];
    *v = x;
    return 1;
}

static inline uint64_t kz__load_u64(const uint8_t *b)
{
    uint64_t x = 0;
    for (int i = 7; i >= 0; i--)
        x = x << 8 | b[i];
    return x;
}

static inline void kz__store_u64(uint8_t *b, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
}

#endif /* KZ_NET_BYTES_H */
