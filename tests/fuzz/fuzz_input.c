/*
 * Fuzz target for the world message decoders a peer can reach: INPUT
 * (client -> server), and with the same bytes the WELCOME record and the
 * snapshot header (server -> client). Invariants: every accepted message
 * is canonical, so re-encoding what was decoded gives back exactly the
 * input bytes (the input, the 32-byte welcome, the header's bits); a
 * decoded command carries only codes the integrator and the snapshot
 * codec accept; nothing crashes. The codec is filled by hand (30 Hz,
 * 22-bit positions) so the target does not depend on kz_snap_codec_init.
 */
#include <stdlib.h>
#include <string.h>

#include "sim/wire.h"

static const kz_snap_codec codec = {
    .tick_hz = 30, .n_slots = 100, .slot_bits = 7, .pos_bits = 22,
    .pos_max = (1 << 21) - 1, .bound = 4095.0f,
};

static void check_input(const uint8_t *data, size_t size)
{
    kz_wire_input in;
    if (kz_wire_input_read(data, size, &in) != KZ_OK)
        return;
    if (in.count == 0 || in.count > KZ_INPUT_MAX_COMMANDS || in.cmd[in.count - 1].tick == 0)
        abort();
    for (uint32_t i = 0; i < in.count; i++) {
        const kz_wire_command *c = &in.cmd[i];
        if (c->flags & ~KZ_AVATAR_VR)
            abort();
        for (unsigned p = 0; p < KZ_POSE_COUNT; p++)
            for (int k = 0; k < 3; k++)
                if (c->rel[p][k] < -KZ_SNAP_REL_MAX || c->rel[p][k] > KZ_SNAP_REL_MAX)
                    abort();
    }
    uint8_t again[KZ_INPUT_MAX_BYTES];
    int n = kz_wire_input_write(&in, again, sizeof again);
    if (n < 0 || (size_t)n != size || memcmp(again, data, size) != 0)
        abort();
    /* The integrator takes any decoded command. */
    kz_snap_state st;
    memset(&st, 0, sizeof st);
    st.entity = 1;
    st.kind = KZ_KIND_AVATAR;
    for (uint32_t i = in.count; i-- > 0;)
        kz_wire_integrate(&codec, &st, &in.cmd[i]);
    for (int k = 0; k < 3; k++)
        if (st.pos[k] > codec.pos_max || st.pos[k] < -codec.pos_max)
            abort();
}

static void check_welcome(const uint8_t *data, size_t size)
{
    kz_wire_welcome w;
    if (kz_wire_welcome_read(data, size, &w) != KZ_OK)
        return;
    uint8_t again[KZ_WELCOME_BYTES];
    kz_wire_welcome_write(&w, again);
    if (size != KZ_WELCOME_BYTES || memcmp(again, data, size) != 0)
        abort();
}

static int bit_at(const uint8_t *p, size_t i)
{
    return (p[i / 8] >> (i % 8)) & 1;
}

static void check_snap_head(const uint8_t *data, size_t size)
{
    kz_bitreader r;
    kz_wire_snap_head h;
    kz_bitreader_init(&r, data, size);
    if (kz_wire_snap_head_read(&codec, &r, &h) != KZ_OK)
        return;
    if (h.self.entity == 0)
        abort();
    for (int k = 0; k < 3; k++)
        if (h.self.pos[k] > codec.pos_max || h.self.pos[k] < -codec.pos_max)
            abort();
    uint8_t again[64];
    kz_bitwriter w;
    kz_bitwriter_init(&w, again, sizeof again);
    if (kz_wire_snap_head_write(&codec, &h, &w) != KZ_OK)
        abort();
    size_t len = kz_bitwriter_finish(&w);
    size_t bits = kz_bitreader_bits_read(&r);
    if (kz_bitwriter_bits(&w) != bits || len != (bits + 7) / 8)
        abort();
    for (size_t i = 0; i < bits; i++)
        if (bit_at(again, i) != bit_at(data, i))
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_input(data, size);
    check_welcome(data, size);
    check_snap_head(data, size);
    return 0;
}
