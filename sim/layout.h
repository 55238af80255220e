/*
 * One allocation, many arrays: the tables of the world, the session
 * views, the frames and the replicators' scratch are each laid out in a
 * single block, every array on an aligned boundary. A layout function is
 * run twice, first with a NULL base to measure the block, then with the
 * block to place the arrays. Internal.
 */
#ifndef KZ_SIM_LAYOUT_H
#define KZ_SIM_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

/* Reserves `bytes` at the next `align` boundary (a power of two) after
 * *off and returns where they are in `base` (NULL while measuring). */
static inline void *kz__layout_take(size_t *off, uint8_t *base, size_t bytes, size_t align)
{
    *off = (*off + (align - 1u)) & ~(align - 1u);
    void *at = base ? base + *off : NULL;
    *off += bytes;
    return at;
}

/* Places `count` elements of *ptr's type and points `ptr` at them. */
#define KZ__LAYOUT(off, base, ptr, count, align) \
    (*(void **)&(ptr) = kz__layout_take(&(off), (base), (size_t)(count) * sizeof *(ptr), (align)))

#endif /* KZ_SIM_LAYOUT_H */
