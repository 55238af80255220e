/*
 * Avatar and object state as the application sees it: plain floats in
 * meters, radians and unit quaternions. Both the server (kz_server) and
 * the client library (kz_client) speak these types; the wire carries a
 * quantized form of them (docs/PROTOCOL.md, "Snapshots").
 *
 * Conventions. y is up; the ground plane is (x, z). Yaw is the rotation
 * about +y in radians, counter-clockwise seen from above, any value (it is
 * wrapped). Quaternions are (x, y, z, w) and must be unit length within
 * 1e-3. The head and hand poses are offsets from the root position in
 * world axes (not rotated by yaw), at most KZ_AVATAR_REACH meters on every
 * axis; desktop avatars leave them at rest (zero offset, identity).
 *
 * Plain value types; no ownership, no threads.
 */
#ifndef KZ_AVATAR_H
#define KZ_AVATAR_H

#include <kizuna/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Largest head or hand offset from the root, per axis, in meters. */
#define KZ_AVATAR_REACH 2.0f

/* Avatar flag bits (kz_avatar_state.flags). */
#define KZ_AVATAR_SPEAKING 0x01u  /* set by the server while voice flows */
#define KZ_AVATAR_VR 0x02u        /* head and hands are tracked */

/* Entity kinds on the wire. */
#define KZ_KIND_AVATAR 1u
#define KZ_KIND_OBJECT 2u

typedef struct kz_pose {
    float pos[3];   /* meters, offset from the root in world axes */
    float rot[4];   /* unit quaternion x, y, z, w */
} kz_pose;

/* Indices into kz_avatar_state.pose. */
#define KZ_POSE_HEAD 0u
#define KZ_POSE_LEFT_HAND 1u
#define KZ_POSE_RIGHT_HAND 2u
#define KZ_POSE_COUNT 3u

typedef struct kz_avatar_state {
    float pos[3];                  /* root, meters */
    float vel[3];                  /* meters per second */
    float yaw;                     /* radians */
    kz_pose pose[KZ_POSE_COUNT];   /* head, left hand, right hand */
    uint16_t anim;                 /* emote / animation id; 0 = none */
    uint8_t flags;                 /* KZ_AVATAR_* */
    uint8_t kind;                  /* KZ_KIND_* */
    uint32_t holder;               /* objects: entity id of the avatar holding it, 0 = none */
} kz_avatar_state;
/* A shared object uses the same record: pos is its position, pose[0].rot
 * its rotation, holder who holds it; the other fields stay at rest. */

/* A rest pose: zero offsets, identity rotations. */
KZ_API void kz_avatar_state_rest(kz_avatar_state *s);

#ifdef __cplusplus
}
#endif

#endif /* KZ_AVATAR_H */
