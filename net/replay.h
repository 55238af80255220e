/*
 * Replay window for 64-bit packet sequence numbers (internal to net/).
 *
 * A bitmap of KZ__REPLAY_BITS bits, kept as a ring of 64-bit words indexed
 * by sequence / 64, remembers which of the newest sequences have been seen.
 * When the newest sequence advances, the words it passes are cleared whole,
 * so an update costs O(words passed), at most the ring size. Any sequence up
 * to KZ_REPLAY_WINDOW behind the newest is accepted exactly once; older ones
 * are refused. The scheme is the one of RFC 6479 and WireGuard's counter,
 * written for Kizuna.
 *
 * Use: kz__replay_check before decrypting (cheap refusal of replays),
 * kz__replay_update only after the packet authenticated, so forged packets
 * can never move the window.
 */
#ifndef KZ_NET_REPLAY_H
#define KZ_NET_REPLAY_H

#include <stdint.h>

#include <kizuna/common.h>

#define KZ__REPLAY_WORDS 32u
#define KZ__REPLAY_BITS (KZ__REPLAY_WORDS * 64u)
/* The guaranteed window: one word of the ring is the partly filled word of
 * the newest sequence. */
#define KZ_REPLAY_WINDOW (KZ__REPLAY_BITS - 64u)

typedef struct kz__replay {
    uint64_t newest;     /* highest sequence accepted; valid when any != 0 */
    uint32_t any;        /* 0 until the first update */
    uint32_t pad_;
    uint64_t words[KZ__REPLAY_WORDS];
} kz__replay;

void kz__replay_init(kz__replay *r);
/* KZ_OK if `seq` is new and within the window, else KZ_EREPLAY. */
int kz__replay_check(const kz__replay *r, uint64_t seq);
/* Marks `seq` seen; call only after kz__replay_check passed and the packet
 * authenticated. */
void kz__replay_update(kz__replay *r, uint64_t seq);

#endif /* KZ_NET_REPLAY_H */
