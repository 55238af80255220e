/*
 * Avatar state helpers (kizuna/avatar.h). The rest pose is what a desktop
 * avatar and a fresh object carry: every field zero except the identity
 * rotations, and the kind set to avatar so the state quantizes as is.
 */
#include <string.h>

#include <kizuna/avatar.h>

#include "core/assert.h"

void kz_avatar_state_rest(kz_avatar_state *s)
{
    KZ_ASSERT(s != NULL);
    memset(s, 0, sizeof *s);
    s->kind = KZ_KIND_AVATAR;
    for (uint32_t p = 0; p < KZ_POSE_COUNT; p++)
        s->pose[p].rot[3] = 1.0f;
}
