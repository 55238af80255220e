/*
 * The server's token addresses (public_address.h): parsed from the
 * setting, derived from the bind address, or read from the interfaces.
 */
#include "public_address.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* One "HOST:PORT" item of the list, spaces around it already cut. */
static const char *kzs_public_item(const char *item, kz_address *out)
{
    kz_address a;
    if (kz_address_parse(item, &a) != KZ_OK)
        return "each address is HOST:PORT with an IPv4 literal, [IPv6] or localhost, "
               "and a port 1..65535";
    *out = a;
    return NULL;
}

const char *kzs_public_address_parse(const char *text, kz_address *out, uint32_t *n)
{
    kz_address scratch[KZ_VERIFIER_MAX_ADDRESSES];
    char item[KZS_ADDR_TEXT_MAX];
    uint32_t count = 0;
    for (const char *p = text; *p != '\0';) {
        size_t len = strcspn(p, ",");
        const char *start = p, *end = p + len;
        while (start < end && *start == ' ')
            start++;
        while (end > start && end[-1] == ' ')
            end--;
        if (end == start)
            return "an empty entry in the list";
        if ((size_t)(end - start) >= sizeof item)
            return "an address is too long";
        if (count == KZ_VERIFIER_MAX_ADDRESSES)
            return "more than 16 addresses";
        memcpy(item, start, (size_t)(end - start));
        item[end - start] = '\0';
        const char *why = kzs_public_item(item, out ? &out[count] : &scratch[count]);
        if (why)
            return why;
        count++;
        p += len + (p[len] == ',');
        if (p[-1] == ',' && *p == '\0')
            return "an empty entry in the list";
    }
    if (n)
        *n = count;
    return NULL;
}

static kz_address kzs_ipv4(const struct in_addr *ip, uint32_t port)
{
    kz_address a;
    memset(&a, 0, sizeof a);
    a.family = KZ_ADDR_IPV4;
    memcpy(a.ip, &ip->s_addr, 4);
    a.port = (uint16_t)port;
    return a;
}

/* Every IPv4 address of the host's interfaces, at `port`. */
static int kzs_interface_addresses(kz_token_verifier *v, uint32_t port, char *why,
                                   size_t why_len)
{
    struct ifaddrs *list = NULL;
    if (getifaddrs(&list) != 0) {
        snprintf(why, why_len, "bind is 0.0.0.0 and the interfaces cannot be listed: "
                               "set public_address");
        return -1;
    }
    int rc = 0;
    v->n_addresses = 0;
    for (const struct ifaddrs *i = list; i && rc == 0; i = i->ifa_next) {
        if (i->ifa_addr == NULL || i->ifa_addr->sa_family != AF_INET)
            continue;
        if (v->n_addresses == KZ_VERIFIER_MAX_ADDRESSES) {
            snprintf(why, why_len, "bind is 0.0.0.0 and the host has more than %u IPv4 "
                                   "addresses: set public_address",
                     KZ_VERIFIER_MAX_ADDRESSES);
            rc = -1;
            break;
        }
        const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)i->ifa_addr;
        v->addresses[v->n_addresses++] = kzs_ipv4(&sin->sin_addr, port);
    }
    freeifaddrs(list);
    if (rc == 0 && v->n_addresses == 0) {
        snprintf(why, why_len, "bind is 0.0.0.0 and the host has no IPv4 address: "
                               "set public_address");
        rc = -1;
    }
    return rc;
}

int kzs_public_addresses(const kzs_config *c, kz_token_verifier *v, char *why, size_t why_len)
{
    struct in_addr ip;
    v->n_addresses = 0;
    if (c->public_address[0] != '\0') {
        const char *bad = kzs_public_address_parse(c->public_address, v->addresses,
                                                   &v->n_addresses);
        if (bad)
            snprintf(why, why_len, "public_address: %s", bad);
        return bad ? -1 : 0;
    }
    if (inet_pton(AF_INET, c->bind, &ip) != 1) {
        snprintf(why, why_len, "bind: not an IPv4 address");
        return -1;
    }
    if (ip.s_addr != htonl(INADDR_ANY)) {
        v->addresses[0] = kzs_ipv4(&ip, c->port);
        v->n_addresses = 1;
        return 0;
    }
    return kzs_interface_addresses(v, c->port, why, why_len);
}

char *kzs_public_addresses_format(const kz_token_verifier *v, char *out, size_t cap)
{
    size_t len = 0;
    char one[64];
    out[0] = '\0';
    for (uint32_t i = 0; i < v->n_addresses && len < cap; i++) {
        kz_address a = v->addresses[i];
        kz_address_format(&a, one, sizeof one);
        if (a.port == 0) /* kz_address_format prints the port: make "any" explicit */
            snprintf(strrchr(one, ':') + 1, 4, "*");
        len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? " " : "", one);
    }
    return out;
}
