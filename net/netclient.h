/*
 * The client transport's constructor with its error code (internal): the
 * world's client (sim/client.c) reports why a connect could not start —
 * KZ_ENOMEM, KZ_EPROTO (token file), KZ_EINVAL (no IPv4 address), KZ_EIO
 * (no socket) — where the public kz_netclient_create can only return NULL.
 */
#ifndef KZ_NET_NETCLIENT_H
#define KZ_NET_NETCLIENT_H

#include <kizuna/transport.h>

/* 0 and *out, or a KZ_E code (logged) and *out = NULL. */
int kz__netclient_open(const kz_netclient_config *cfg, const kz_connect_token *token,
                       kz_netclient **out);

#endif /* KZ_NET_NETCLIENT_H */
