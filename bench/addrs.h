/*
 * kizuna-bench: the server addresses of --connect and the order each bot's
 * token lists them in. A token names up to KZ_TOKEN_MAX_ADDRESSES
 * addresses and a client tries them in order, moving to the next when one
 * does not answer; rotating the list by the bot's index spreads the bots
 * evenly over the servers while each can still fail over to every other.
 * Pure functions, no allocation, callable from any thread.
 */
#ifndef KZB_ADDRS_H
#define KZB_ADDRS_H

#include <stddef.h>
#include <stdint.h>

#include <kizuna/token.h>

/* Longest "a.b.c.d:port" text one entry of the list may be. */
#define KZB_ADDR_TEXT_MAX 64u

/*
 * Parses "IPV4:PORT[,IPV4:PORT...]" into out[0..*n). At most `cap`
 * entries (KZ_TOKEN_MAX_ADDRESSES for a token), none empty, none with port
 * 0, none listed twice. Returns 0, or -1 with one line saying why in
 * err[0..err_cap) (out and *n are then unspecified).
 */
int kzb_addrs_parse(const char *text, kz_address *out, uint32_t cap, uint32_t *n, char *err,
                    size_t err_cap);

/* The token order of the bot numbered `bot` (0-based) of a run against
 * in[0..n): out[k] = in[(bot + k) % n] for k < n, so bot i starts on
 * address i mod n and falls back to the following ones in order. n >= 1. */
void kzb_addrs_rotate(const kz_address *in, uint32_t n, uint32_t bot, kz_address *out);

#endif /* KZB_ADDRS_H */
