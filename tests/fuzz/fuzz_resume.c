/*
 * Fuzz target for the resume codec (net/resume.h): every input is offered
 * as a RESUME (parse, then the proof), as a RESUMED and as a TICKET
 * message, as the gate and the client would receive them from anyone.
 *
 * Invariants:
 * - a RESUME that parses is exactly KZ_GATE_RESUME_BYTES long with its
 *   reserved and padding bytes zero, and its fields point into it at the
 *   offsets of docs/PROTOCOL.md;
 * - no input carries a proof, or opens as a RESUMED, under keys drawn at
 *   random when the process starts (the fuzzer cannot forge a MAC or a
 *   seal), and a refused RESUMED leaves the output ticket untouched;
 * - under section 3's example keys (which the seed corpus was made with,
 *   so the fuzzer starts from valid datagrams), a RESUME whose proof holds
 *   is byte for byte what kz__resume_build writes for its cookie and
 *   ticket, and a RESUMED that opens has the RESUMED's size and header;
 * - a TICKET message that decodes is exactly KZ_TICKET_MSG_BYTES long,
 *   with a grace in range, and encodes back to the same bytes;
 * - any 32 bytes unpack to a ticket that packs back to them.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "net/resume.h"

#define FUZZ_RESUME_RESERVED_AT 4u
#define FUZZ_RESUME_COOKIE_AT 8u
#define FUZZ_RESUME_TICKET_AT 32u
#define FUZZ_RESUME_PROOF_AT 64u
#define FUZZ_FILL 0xA5u

static kz_session_keys example_keys; /* section 3's: 00 01 .. 1f and 80 81 .. 9f */
static kz_session_keys random_keys;  /* fresh per process */
static int ready;

static void setup(void)
{
    if (sodium_init() < 0)
        abort();
    for (unsigned i = 0; i < KZ_KEY_BYTES; i++) {
        example_keys.client_to_server[i] = (uint8_t)i;
        example_keys.server_to_client[i] = (uint8_t)(0x80 + i);
    }
    randombytes_buf(&random_keys, sizeof random_keys);
    ready = 1;
}

static int all_zero(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0)
            return 0;
    return 1;
}

static int all_fill(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] != FUZZ_FILL)
            return 0;
    return 1;
}

static void fuzz_resume(const uint8_t *data, size_t size)
{
    kz__resume r;
    memset(&r, 0, sizeof r);
    if (kz__resume_parse(data, size, &r) != KZ_OK)
        return;
    if (size != KZ_GATE_RESUME_BYTES ||
        !all_zero(data + FUZZ_RESUME_RESERVED_AT, FUZZ_RESUME_COOKIE_AT - FUZZ_RESUME_RESERVED_AT) ||
        !all_zero(data + KZ_GATE_RESUME_FIXED_BYTES, size - KZ_GATE_RESUME_FIXED_BYTES))
        abort();
    if (r.cookie != data + FUZZ_RESUME_COOKIE_AT || r.ticket != data + FUZZ_RESUME_TICKET_AT ||
        r.proof != data + FUZZ_RESUME_PROOF_AT)
        abort();
    if (kz__resume_proof_ok(&random_keys, data))
        abort();
    if (kz__resume_proof_ok(&example_keys, data)) {
        uint8_t again[KZ_GATE_RESUME_BYTES];
        kz__resume_build(&example_keys, r.cookie, r.ticket, again);
        if (memcmp(again, data, sizeof again) != 0)
            abort();
    }
}

static void fuzz_resumed(const uint8_t *data, size_t size)
{
    uint8_t ticket[KZ_TICKET_BYTES];
    memset(ticket, FUZZ_FILL, sizeof ticket);
    if (kz__resumed_open(&random_keys, data, size, ticket) == KZ_OK)
        abort();
    if (!all_fill(ticket, sizeof ticket))
        abort(); /* a refused RESUMED must not touch the ticket */
    if (kz__resumed_open(&example_keys, data, size, ticket) != KZ_OK)
        return;
    if (size != KZ_GATE_RESUMED_BYTES || data[0] != KZ_GATE_MARK0 || data[1] != KZ_GATE_MARK1 ||
        data[2] != KZ_GATE_RESUMED || data[3] != KZ_PROTOCOL_VERSION)
        abort();
}

static void fuzz_ticket_msg(const uint8_t *data, size_t size)
{
    uint8_t ticket[KZ_TICKET_BYTES];
    uint32_t grace = 0;
    if (kz__ticket_msg_decode(data, size, ticket, &grace) != KZ_OK)
        return;
    if (size != KZ_TICKET_MSG_BYTES || grace < KZ_RESUME_GRACE_MIN_MS ||
        grace > KZ_RESUME_GRACE_MAX_MS)
        abort();
    uint8_t again[KZ_TICKET_MSG_BYTES];
    kz__ticket_msg_encode(ticket, grace, again);
    if (memcmp(again, data, sizeof again) != 0)
        abort();
}

static void fuzz_ticket(const uint8_t *data, size_t size)
{
    if (size < KZ_TICKET_BYTES)
        return;
    kz__ticket t;
    uint8_t again[KZ_TICKET_BYTES];
    kz__ticket_unpack(data, &t);
    kz__ticket_pack(&t, again);
    if (memcmp(again, data, sizeof again) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ready)
        setup();
    fuzz_resume(data, size);
    fuzz_resumed(data, size);
    fuzz_ticket_msg(data, size);
    fuzz_ticket(data, size);
    return 0;
}
