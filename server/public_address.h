/*
 * The addresses kizuna-server serves, as connect tokens name them: the
 * list a token must share an entry with (kz_token_verifier.addresses).
 *
 * Where they come from, first that applies:
 *   1. the public_address setting, "HOST:PORT[,HOST:PORT...]", for a
 *      server behind a NAT, a load balancer or a relay, or one that wants
 *      exactly these (IPv4 literal, [IPv6] in brackets, or localhost);
 *   2. bind:port when bind is an address (not 0.0.0.0);
 *   3. with bind 0.0.0.0: every IPv4 address of the host's interfaces
 *      when the server starts, at the port.
 * With port 0 (the system picks the ports) the derived entries carry port
 * 0, which the verifier reads as "this IP, any port". A token that names
 * none of the addresses is refused (drop_token_wrong_server); nothing is
 * accepted silently.
 *
 * Single-threaded program code.
 */
#ifndef KZS_PUBLIC_ADDRESS_H
#define KZS_PUBLIC_ADDRESS_H

#include <stddef.h>

#include <kizuna/token.h>

#include "config.h"

/* Parses a public_address value into out[0..*n) (n may be NULL to only
 * check it). Returns NULL, or a static sentence saying what is wrong. */
const char *kzs_public_address_parse(const char *text, kz_address *out, uint32_t *n);

/* Fills v->addresses and v->n_addresses from `c` by the rules above.
 * Returns 0, or -1 with a sentence in why[0..why_len). */
int kzs_public_addresses(const kzs_config *c, kz_token_verifier *v, char *why, size_t why_len);

/* Writes the list as "a:p b:p ..." into out[0..cap); returns out. */
char *kzs_public_addresses_format(const kz_token_verifier *v, char *out, size_t cap);

#endif /* KZS_PUBLIC_ADDRESS_H */
