/*
 * The whole public API in one include: an integrator writes
 * `#include <kizuna/kizuna.h>` and links kizuna::kizuna (CMake) or
 * `pkg-config --libs kizuna`. This header declares nothing itself; each
 * header below has its own C++ linkage block, states who owns what and
 * which thread may call it, and can be included on its own.
 *
 * Core (no networking, no world):
 *   common.h     error codes and kz_strerror, version, export macros,
 *                the assert hook
 *   alloc.h      allocator hooks (kz_allocator) and the counting allocator
 *   clock.h      monotonic clock (kz_clock) and the fixed-step kz_ticker
 *   log.h        leveled logging to an injectable sink (kz_log)
 *   counters.h   per-thread counter blocks merged by readers
 *   hist.h       log-linear latency histogram (percentiles)
 *   ring.h       lock-free single-producer/single-consumer ring
 *   mpsc.h       lock-free multi-producer/single-consumer ring
 *   bitpack.h    bit writer and reader, varints (the wire's encoding)
 *   quant.h      quantization of scalars, positions and rotations
 *   utf8.h       strict UTF-8 validation for names and chat
 *
 * Network:
 *   protocol.h   wire constants and limits (sizes, verification levels,
 *                actor kinds, gate deny reasons)
 *   token.h      key pairs, minting and verifying connect tokens, the
 *                client token file, address parsing
 *   transport.h  the secure transport under the world: kz_netserver and
 *                kz_netclient
 *   impair.h     in-process network impairment (loss, delay, jitter, ...)
 *   proxy.h      an impairing UDP relay on loopback, for tests
 *
 * World:
 *   avatar.h     kz_avatar_state and kz_pose, the state the world shares
 *   entity.h     generational entity handles
 *   grid.h       spatial hash grid (interest management's first stage)
 *   audit.h      the signed, hash-chained audit log
 *   server.h     kz_server, the authoritative world
 *   client.h     kz_client, what an engine embeds to join a world
 */
#ifndef KZ_KIZUNA_H
#define KZ_KIZUNA_H

#include <kizuna/common.h>
#include <kizuna/alloc.h>
#include <kizuna/clock.h>
#include <kizuna/log.h>
#include <kizuna/counters.h>
#include <kizuna/hist.h>
#include <kizuna/ring.h>
#include <kizuna/mpsc.h>
#include <kizuna/bitpack.h>
#include <kizuna/quant.h>
#include <kizuna/utf8.h>

#include <kizuna/protocol.h>
#include <kizuna/token.h>
#include <kizuna/transport.h>
#include <kizuna/impair.h>
#include <kizuna/proxy.h>

#include <kizuna/avatar.h>
#include <kizuna/entity.h>
#include <kizuna/grid.h>
#include <kizuna/audit.h>
#include <kizuna/server.h>
#include <kizuna/client.h>

#endif /* KZ_KIZUNA_H */
