/*
 * Kizuna client binding for .NET engines (Unity's Mono and IL2CPP, .NET 6+,
 * Godot's C#): P/Invoke declarations of the client API of libkizuna
 * (sim/include/kizuna/client.h and what a client needs from the other
 * headers), mirrors of the structs it passes, and KizunaClient, a thin
 * wrapper an engine calls once per frame.
 *
 * Layout contract. Every mirrored struct is declared with
 * LayoutKind.Explicit, its C sizeof as Size and each field's C offsetof as
 * FieldOffset, for 64-bit processes (LP64 and Windows' LLP64 give the same
 * layouts here: every member is a fixed-width integer, a float, a char
 * array or a pointer). Field names are the C member names. Fixed-size C
 * arrays are `fixed` buffers, so every struct is blittable: P/Invoke passes
 * a pointer to it without copying. tests/test_csharp_layout.c reads this
 * file and checks each Size, FieldOffset, field type and constant against
 * the C headers, each extern's parameters and return against its KZ_API
 * prototype, and that every function of client.h is declared here; keep
 * one field, constant or attribute a line, as written, so that its
 * line-based scan can read them. 32-bit processes are refused at run time
 * (KizunaClient's constructor).
 *
 * Threads: the library starts no thread on the client side. Every call on
 * one client must come from one thread; the log hook runs on that thread,
 * inside the call that logs. KizunaClient enforces the single thread.
 *
 * Build with unsafe code allowed (`fixed` buffers): in Unity, an assembly
 * definition with "allowUnsafeCode": true or Player Settings > Allow
 * 'unsafe' Code; with mcs or csc, -unsafe.
 */
using System;
using System.Diagnostics;
using System.IO;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;

#if !UNITY_5_3_OR_NEWER
namespace AOT
{
    /* IL2CPP compiles a method that native code calls back only when it
     * carries this attribute. Unity ships it in UnityEngine; elsewhere this
     * stand-in keeps the source identical. */
    [AttributeUsage(AttributeTargets.Method)]
    internal sealed class MonoPInvokeCallbackAttribute : Attribute
    {
        public MonoPInvokeCallbackAttribute(Type type) { }
    }
}
#endif

namespace Kizuna
{
    /* ---- structs ------------------------------------------------------- */

    /* kizuna/token.h: an IPv4 or IPv6 endpoint. family is KZ_ADDR_IPV4
     * (first 4 bytes of ip) or KZ_ADDR_IPV6; ip in network order; port in
     * host order. Byte 17 is padding. */
    [StructLayout(LayoutKind.Explicit, Size = 20)]
    public unsafe struct kz_address
    {
        [FieldOffset(0)] public byte family;
        [FieldOffset(1)] public fixed byte ip[16];
        [FieldOffset(18)] public ushort port;
    }

    /* kizuna/log.h: the log hook. sink is a function pointer to a
     * Native.kz_log_fn (Marshal.GetFunctionPointerForDelegate), or zero for
     * warnings on stderr. KizunaClient fills it; see its constructor. */
    [StructLayout(LayoutKind.Explicit, Size = 24)]
    public struct kz_log
    {
        [FieldOffset(0)] public IntPtr sink;
        [FieldOffset(8)] public IntPtr ctx;
        [FieldOffset(16)] public int level;
    }

    /* kizuna/alloc.h: allocator hooks; all zero means the C library's.
     * alloc and free are function pointers shaped as
     * Native.kz_allocator_alloc_fn and Native.kz_allocator_free_fn. */
    [StructLayout(LayoutKind.Explicit, Size = 24)]
    public struct kz_allocator
    {
        [FieldOffset(0)] public IntPtr ctx;
        [FieldOffset(8)] public IntPtr alloc;
        [FieldOffset(16)] public IntPtr free;
    }

    /* kizuna/transport.h: the client's transport settings. Zero fields mean
     * the default: server = the token's first IPv4 address, 5000 ms connect
     * timeout, 250 ms handshake and resume resend, resume after 1500 ms
     * without a datagram from the server (KZ_NETCLIENT_DEFAULT_SILENCE_MS).
     * Bytes 36..39 are padding. */
    [StructLayout(LayoutKind.Explicit, Size = 88)]
    public struct kz_netclient_config
    {
        [FieldOffset(0)] public kz_address server;
        [FieldOffset(20)] public uint connect_timeout_ms;
        [FieldOffset(24)] public uint resend_ms;
        [FieldOffset(28)] public uint disable_aes;
        [FieldOffset(32)] public uint resume_silence_ms;
        [FieldOffset(40)] public kz_log log;
        [FieldOffset(64)] public kz_allocator alloc;
    }

    /* kizuna/client.h: client settings. Zero fields mean the default
     * (interp_delay_ms 100, input_redundancy 4, event_capacity 64). */
    [StructLayout(LayoutKind.Explicit, Size = 104)]
    public struct kz_client_config
    {
        [FieldOffset(0)] public kz_netclient_config net;
        [FieldOffset(88)] public uint interp_delay_ms;
        [FieldOffset(92)] public uint input_redundancy;
        [FieldOffset(96)] public uint event_capacity;
        [FieldOffset(100)] public uint header_only;  /* 1: load-test client, see client.h */
    }

    /* kizuna/token.h: the per-direction session keys. Secret: zero any copy
     * when done with it. */
    [StructLayout(LayoutKind.Explicit, Size = 64)]
    public unsafe struct kz_session_keys
    {
        [FieldOffset(0)] public fixed byte client_to_server[32];
        [FieldOffset(32)] public fixed byte server_to_client[32];
    }

    /* kizuna/token.h: what a client holds to connect, as decoded from the
     * token file the backend hands out (Native.kz_connect_token_decode).
     * Holds the session keys: zero it when done (KizunaClient does). */
    [StructLayout(LayoutKind.Explicit, Size = 1000)]
    public unsafe struct kz_connect_token
    {
        [FieldOffset(0)] public ushort token_len;
        [FieldOffset(2)] public fixed byte token[933];
        [FieldOffset(935)] public kz_session_keys keys;
    }

    /* kizuna/avatar.h: a head or hand pose, offset from the root in world
     * axes (meters) and a unit quaternion x, y, z, w. */
    [StructLayout(LayoutKind.Explicit, Size = 28)]
    public unsafe struct kz_pose
    {
        [FieldOffset(0)] public fixed float pos[3];
        [FieldOffset(12)] public fixed float rot[4];

        public void Set(float px, float py, float pz, float qx, float qy, float qz, float qw)
        {
            fixed (float* p = pos) { p[0] = px; p[1] = py; p[2] = pz; }
            fixed (float* q = rot) { q[0] = qx; q[1] = qy; q[2] = qz; q[3] = qw; }
        }

        public void Get(out float px, out float py, out float pz,
                        out float qx, out float qy, out float qz, out float qw)
        {
            fixed (float* p = pos) { px = p[0]; py = p[1]; pz = p[2]; }
            fixed (float* q = rot) { qx = q[0]; qy = q[1]; qz = q[2]; qw = q[3]; }
        }
    }

    /* kizuna/avatar.h: an avatar's or object's state. y is up; yaw is about
     * +y, counter-clockwise seen from above, radians. pose is C's
     * kz_pose pose[KZ_POSE_COUNT], seen as 3 x 7 floats because C# has no
     * fixed buffers of structs: use GetPose/SetPose. */
    [StructLayout(LayoutKind.Explicit, Size = 120)]
    public unsafe struct kz_avatar_state
    {
        [FieldOffset(0)] public fixed float pos[3];
        [FieldOffset(12)] public fixed float vel[3];
        [FieldOffset(24)] public float yaw;
        [FieldOffset(28)] public fixed float pose[21];
        [FieldOffset(112)] public ushort anim;
        [FieldOffset(114)] public byte flags;
        [FieldOffset(115)] public byte kind;
        [FieldOffset(116)] public uint holder;

        /* Pose `index` (KZ_POSE_HEAD, _LEFT_HAND, _RIGHT_HAND). */
        public kz_pose GetPose(uint index)
        {
            if (index >= Native.KZ_POSE_COUNT)
                throw new ArgumentOutOfRangeException("index");
            fixed (float* p = pose)
                return ((kz_pose*)p)[index];
        }

        public void SetPose(uint index, kz_pose value)
        {
            if (index >= Native.KZ_POSE_COUNT)
                throw new ArgumentOutOfRangeException("index");
            fixed (float* p = pose)
                ((kz_pose*)p)[index] = value;
        }

        /* pos and vel by components. Indexing pos[i] directly needs a
         * fixed variable (a local) before C# 7.3; these work anywhere,
         * e.g. on view[i].state. */
        public void GetPos(out float x, out float y, out float z)
        {
            fixed (float* p = pos) { x = p[0]; y = p[1]; z = p[2]; }
        }

        public void SetPos(float x, float y, float z)
        {
            fixed (float* p = pos) { p[0] = x; p[1] = y; p[2] = z; }
        }

        public void GetVel(out float x, out float y, out float z)
        {
            fixed (float* p = vel) { x = p[0]; y = p[1]; z = p[2]; }
        }

        public void SetVel(float x, float y, float z)
        {
            fixed (float* p = vel) { p[0] = x; p[1] = y; p[2] = z; }
        }
    }

    /* kizuna/client.h: who owns an avatar, as the backend verified it (from
     * the signed token only). method and name are NUL-terminated UTF-8:
     * read them with MethodString / NameString. */
    [StructLayout(LayoutKind.Explicit, Size = 104)]
    public unsafe struct kz_badge
    {
        [FieldOffset(0)] public byte verification_level;
        [FieldOffset(1)] public byte actor_kind;
        [FieldOffset(2)] public fixed byte reserved[6];
        [FieldOffset(8)] public ulong acting_for;
        [FieldOffset(16)] public fixed byte method[49];
        [FieldOffset(65)] public fixed byte name[33];
        [FieldOffset(98)] public fixed byte reserved2[6];

        public string NameString()
        {
            fixed (byte* p = name)
                return Native.Utf8(p, 33);
        }

        public string MethodString()
        {
            fixed (byte* p = method)
                return Native.Utf8(p, 49);
        }
    }

    /* kizuna/client.h: one event. data[0..len) belongs to the client and is
     * valid only until the next call on it: copy it out with Bytes() or
     * Text() before calling the client again. badge is filled for
     * KZ_EV_ENTER only. */
    [StructLayout(LayoutKind.Explicit, Size = 128)]
    public struct kz_client_event
    {
        [FieldOffset(0)] public uint type;
        [FieldOffset(4)] public uint entity;
        [FieldOffset(8)] public uint code;
        [FieldOffset(12)] public uint len;
        [FieldOffset(16)] public IntPtr data;
        [FieldOffset(24)] public kz_badge badge;

        public byte[] Bytes()
        {
            byte[] b = new byte[len];
            if (len > 0)
                Marshal.Copy(data, b, 0, (int)len);
            return b;
        }

        /* data as UTF-8 text (chat, notices, the disconnect text). */
        public string Text()
        {
            return len == 0 ? string.Empty : Encoding.UTF8.GetString(Bytes());
        }
    }

    /* kizuna/client.h: one entity as the client shows it. */
    [StructLayout(LayoutKind.Explicit, Size = 128)]
    public struct kz_client_entity
    {
        [FieldOffset(0)] public uint id;
        [FieldOffset(4)] public uint reserved;
        [FieldOffset(8)] public kz_avatar_state state;
    }

    /* kizuna/transport.h: UDP payload bytes and datagrams since creation. */
    [StructLayout(LayoutKind.Explicit, Size = 32)]
    public struct kz_net_traffic
    {
        [FieldOffset(0)] public ulong bytes_in;
        [FieldOffset(8)] public ulong bytes_out;
        [FieldOffset(16)] public ulong packets_in;
        [FieldOffset(24)] public ulong packets_out;
    }

    /* ---- the native library -------------------------------------------- */

    /* Owns a kz_client*. The marshaller creates it from kz_client_create's
     * result, so a client is never leaked between the call and the
     * wrapper; ReleaseHandle destroys it once, then frees the log hook's
     * context (the client may log while it is destroyed). */
    public sealed class KizunaClientHandle : SafeHandle
    {
        internal GCHandle logTarget;

        public KizunaClientHandle() : base(IntPtr.Zero, true) { }

        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }

        protected override bool ReleaseHandle()
        {
            Native.kz_client_destroy(handle);
            if (logTarget.IsAllocated)
                logTarget.Free();
            return true;
        }
    }

    public static class Native
    {
#if UNITY_IOS && !UNITY_EDITOR
        /* iOS links native plugins statically into the player. */
        public const string Lib = "__Internal";
#else
        /* libkizuna.so, kizuna.dll or libkizuna.dylib. */
        public const string Lib = "kizuna";
#endif

        /* ---- constants (values from the C headers; checked by the test) */

        /* kizuna/common.h: the header version this binding mirrors. */
        public const int KZ_VERSION_MAJOR = 0;
        public const int KZ_VERSION_MINOR = 2;
        public const int KZ_VERSION_PATCH = 0;
        public const int KZ_VERSION_NUMBER = 200;

        /* kizuna/common.h: result codes. */
        public const int KZ_OK = 0;
        public const int KZ_EINVAL = -1;
        public const int KZ_ENOMEM = -2;
        public const int KZ_EFULL = -3;
        public const int KZ_EEMPTY = -4;
        public const int KZ_EOVERFLOW = -5;
        public const int KZ_ERANGE = -6;
        public const int KZ_ENOTFINITE = -7;
        public const int KZ_EPROTO = -8;
        public const int KZ_EAUTH = -9;
        public const int KZ_EEXPIRED = -10;
        public const int KZ_EREPLAY = -11;
        public const int KZ_EDENIED = -12;
        public const int KZ_EIO = -13;
        public const int KZ_EAGAIN = -14;
        public const int KZ_ESTATE = -15;

        /* kizuna/log.h: levels; a kz_log passes lines at or above its level. */
        public const int KZ_LOG_OFF = 0;
        public const int KZ_LOG_ERROR = 1;
        public const int KZ_LOG_WARN = 2;
        public const int KZ_LOG_INFO = 3;
        public const int KZ_LOG_DEBUG = 4;
        public const int KZ_LOG_TRACE = 5;
        public const int KZ_LOG_LINE_MAX = 512;

        /* kizuna/clock.h */
        public const ulong KZ_NS_PER_MS = 1000000;
        public const ulong KZ_NS_PER_S = 1000000000;

        /* kizuna/protocol.h and kizuna/token.h */
        public const uint KZ_KEY_BYTES = 32;
        public const uint KZ_TOKEN_MAX_BYTES = 933;
        public const uint KZ_TOKEN_NAME_MAX = 32;
        public const uint KZ_TOKEN_METHOD_MAX = 48;
        public const uint KZ_CONNECT_TOKEN_FILE_MAX_BYTES = 1003;
        public const uint KZ_MAX_MESSAGE_BYTES = 4096;
        public const uint KZ_ADDR_IPV4 = 4;
        public const uint KZ_ADDR_IPV6 = 6;
        public const uint KZ_VERIFY_NONE = 0;
        public const uint KZ_VERIFY_BASIC = 1;
        public const uint KZ_VERIFY_STRONG = 2;
        public const uint KZ_ACTOR_HUMAN = 0;
        public const uint KZ_ACTOR_AGENT = 1;
        public const uint KZ_ACTOR_BOT = 2;
        /* kz_client_reason after KZ_CLIENT_FAILED: the gate's refusal. */
        public const uint KZ_DENY_SERVER_FULL = 1;
        public const uint KZ_DENY_TOKEN_IN_USE = 2;
        public const uint KZ_DENY_CLIENT_IN_USE = 3;
        public const uint KZ_DENY_SHUTTING_DOWN = 4;
        public const uint KZ_DENY_UNAVAILABLE = 5;
        /* A resume refused: the server holds no session for the ticket
         * (seen as KZ_LOST_RESUME_REFUSED on the client). */
        public const uint KZ_DENY_NO_SESSION = 6;
        /* The token's old session is being replaced: the client asks again
         * by itself (a restarted app's connect). */
        public const uint KZ_DENY_REPLACING = 7;

        /* kizuna/avatar.h */
        public const float KZ_AVATAR_REACH = 2.0f;
        public const uint KZ_AVATAR_SPEAKING = 0x01;
        public const uint KZ_AVATAR_VR = 0x02;
        public const uint KZ_KIND_AVATAR = 1;
        public const uint KZ_KIND_OBJECT = 2;
        public const uint KZ_POSE_HEAD = 0;
        public const uint KZ_POSE_LEFT_HAND = 1;
        public const uint KZ_POSE_RIGHT_HAND = 2;
        public const uint KZ_POSE_COUNT = 3;

        /* kizuna/client.h: client states (kz_client_update's result). */
        public const uint KZ_CLIENT_IDLE = 0;
        public const uint KZ_CLIENT_CONNECTING = 1;
        public const uint KZ_CLIENT_CONNECTED = 2;
        public const uint KZ_CLIENT_DISCONNECTED = 3;
        public const uint KZ_CLIENT_FAILED = 4;
        public const uint KZ_CLIENT_RECONNECTING = 5;

        /* kizuna/client.h: event types (kz_client_event.type). */
        public const uint KZ_EV_CONNECTED = 1;
        public const uint KZ_EV_ENTER = 2;
        public const uint KZ_EV_LEAVE = 3;
        public const uint KZ_EV_CHAT = 4;
        public const uint KZ_EV_EMOTE = 5;
        public const uint KZ_EV_VOICE = 6;
        public const uint KZ_EV_CORRECTION = 7;
        public const uint KZ_EV_NOTICE = 8;
        public const uint KZ_EV_DISCONNECTED = 9;
        public const uint KZ_EV_RECONNECTING = 10;
        public const uint KZ_EV_RESUMED = 11;

        /* kizuna/transport.h: kz_client_reason after KZ_CLIENT_DISCONNECTED
         * when a resume failed (the client's own codes, 16 and up), and
         * the default of kz_netclient_config.resume_silence_ms. */
        public const uint KZ_LOST_RESUME_REFUSED = 16;
        public const uint KZ_LOST_RESUME_TIMEOUT = 17;
        public const uint KZ_NETCLIENT_DEFAULT_SILENCE_MS = 1500;

        /* kizuna/client.h: client counter ids (kz_counters_get on
         * kz_client_counters). */
        public const uint KZ_CLIENT_C_SNAPSHOTS = 0;
        public const uint KZ_CLIENT_C_SNAPSHOT_BYTES = 1;
        public const uint KZ_CLIENT_C_SNAPSHOTS_LATE = 2;
        public const uint KZ_CLIENT_C_SNAPSHOTS_NO_BASE = 3;
        public const uint KZ_CLIENT_C_DROP_MALFORMED = 4;
        public const uint KZ_CLIENT_C_CORRECTIONS = 5;
        public const uint KZ_CLIENT_C_INPUTS_SENT = 6;
        public const uint KZ_CLIENT_C_EVENTS_DROPPED = 7;
        public const uint KZ_CLIENT_C_SNAPSHOTS_EARLY = 8;
        public const uint KZ_CLIENT_C_INPUTS_DETACHED = 9;
        public const uint KZ_CLIENT_C_COUNT = 10;

        /* kizuna/server.h: role-gated actions (kz_client_admin) and kick
         * reasons (kz_client_reason after KZ_CLIENT_DISCONNECTED). */
        public const uint KZ_ADMIN_KICK = 1;
        public const uint KZ_ADMIN_MUTE = 2;
        public const uint KZ_ADMIN_UNMUTE = 3;
        public const uint KZ_ADMIN_OBSERVE_ON = 4;
        public const uint KZ_ADMIN_OBSERVE_OFF = 5;
        public const uint KZ_ADMIN_SUMMON = 6;
        public const uint KZ_ADMIN_ZONE_LOCK = 7;
        public const uint KZ_ADMIN_ZONE_UNLOCK = 8;
        public const uint KZ_KICK_ADMIN = 1;
        public const uint KZ_KICK_VIOLATION = 2;
        public const uint KZ_KICK_SHUTDOWN = 3;
        public const uint KZ_KICK_NO_PLACE = 4;
        /* A newer connect of the same client (a restarted app with its
         * token file) replaced this session. */
        public const uint KZ_KICK_REPLACED = 5;

        /* Notice codes (KZ_EV_NOTICE's code) and message limits, from
         * kizuna/client.h; the values are part of the wire protocol
         * (PROTOCOL.md). */
        public const uint KZ_NOTICE_KICK = 1;
        public const uint KZ_NOTICE_ZONE_ENTER = 2;
        public const uint KZ_NOTICE_ZONE_LEAVE = 3;
        public const uint KZ_NOTICE_OBSERVED = 4;
        public const uint KZ_NOTICE_DENIED = 5;
        public const uint KZ_NOTICE_MUTED = 6;
        public const uint KZ_NOTICE_WORLD_PAUSED = 7;
        public const uint KZ_NOTICE_WORLD_RESUMED = 8;
        public const uint KZ_CHAT_MAX_BYTES = 256;
        public const uint KZ_VOICE_MAX_FRAME_BYTES = 320;
        public const uint KZ_NOTICE_MAX_BYTES = 160;

        /* ---- callbacks --------------------------------------------------
         * Native code calls these on the thread that called into the
         * client. Keep the delegate alive as long as the client may call
         * it, never let an exception leave it, and under IL2CPP make the
         * target a static method marked [AOT.MonoPInvokeCallback]. */

        /* One log line; module and msg are NUL-terminated UTF-8, valid only
         * during the call. */
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        public delegate void kz_log_fn(IntPtr ctx, int level, IntPtr module, IntPtr msg);

        /* kz_allocator.alloc: `size` bytes aligned to `align` (a power of two
         * up to 4096), or zero. */
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        public delegate IntPtr kz_allocator_alloc_fn(IntPtr ctx, UIntPtr size, UIntPtr align);

        /* kz_allocator.free: a block from alloc and the size asked for. */
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        public delegate void kz_allocator_free_fn(IntPtr ctx, IntPtr ptr, UIntPtr size);

        /* ---- kizuna/common.h, log.h -------------------------------------
         * Returned strings are static C strings: declared IntPtr so the
         * marshaller never frees them; read with Utf8(). */

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern IntPtr kz_version();

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern uint kz_version_number();

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern IntPtr kz_strerror(int code);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern IntPtr kz_log_level_name(int level);

        /* ---- kizuna/token.h --------------------------------------------- */

        /* Decodes a client token file (bytes as the backend handed them).
         * 0 or KZ_EPROTO. */
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kz_connect_token_decode(byte[] buf, UIntPtr len, out kz_connect_token ct);

        /* The same into unmanaged memory of sizeof(kz_connect_token) bytes,
         * for callers that wipe the keys themselves (KizunaClient does). */
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kz_connect_token_decode(byte[] buf, UIntPtr len, IntPtr ct);

        /* "1.2.3.4:5000", "[::1]:5000" or "localhost:5000". 0 or KZ_EINVAL. */
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kz_address_parse([MarshalAs(UnmanagedType.LPStr)] string text, out kz_address address);

        /* ---- kizuna/avatar.h -------------------------------------------- */

        /* A rest pose: zero offsets, identity rotations. Start every intent
         * from it. */
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern void kz_avatar_state_rest(out kz_avatar_state s);

        /* ---- kizuna/counters.h, transport.h ----------------------------- */

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern ulong kz_counters_get(IntPtr counters, uint id);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern IntPtr kz_counters_name(IntPtr counters, uint id);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern void kz_netclient_traffic(IntPtr netclient, out kz_net_traffic traffic);

        /* ---- kizuna/client.h ---------------------------------------------
         * Contracts are those of client.h. Pointers the client returns are
         * valid until the next call on the same client. */

        /* Fills the defaults; keeps cfg.net as it is. */
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern void kz_client_config_default(ref kz_client_config cfg);

        /* An invalid handle on bad configuration or no memory (logged). */
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern KizunaClientHandle kz_client_create(ref kz_client_config cfg);

        /* KizunaClientHandle's release: Dispose the handle instead. */
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void kz_client_destroy(IntPtr c);

        /* The token is copied. 0, KZ_ESTATE or KZ_EINVAL (no IPv4 address). */
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kz_client_connect(KizunaClientHandle c, ref kz_connect_token token, ulong now);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kz_client_connect(KizunaClientHandle c, IntPtr token, ulong now);

        /* Call every frame; returns KZ_CLIENT_*. */
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern uint kz_client_update(KizunaClientHandle c, ulong now);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern uint kz_client_state(KizunaClientHandle c);

        /* vel, yaw, anim, flags & KZ_AVATAR_VR and the poses are used; pos,
         * kind and holder are ignored. 0 or KZ_ESTATE. */
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kz_client_send_input(KizunaClientHandle c, ref kz_avatar_state intent);

        /* 0 or KZ_EEMPTY. */
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kz_client_poll_event(KizunaClientHandle c, out kz_client_event ev);

        /* text: UTF-8, len bytes (at most KZ_CHAT_MAX_BYTES). */
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kz_client_chat(KizunaClientHandle c, byte[] text, uint len);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kz_client_emote(KizunaClientHandle c, ushort emote);

        /* frame: len bytes (at most KZ_VOICE_MAX_FRAME_BYTES). */
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kz_client_voice(KizunaClientHandle c, byte[] frame, uint len);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kz_client_grab(KizunaClientHandle c, uint obj);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kz_client_release(KizunaClientHandle c, uint obj);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kz_client_block(KizunaClientHandle c, uint entity, uint on);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kz_client_admin(KizunaClientHandle c, uint action, uint target);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kz_client_personal_space(KizunaClientHandle c, uint on);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kz_client_teleport(KizunaClientHandle c, uint portal);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern uint kz_client_self_id(KizunaClientHandle c);

        /* 0, or KZ_ESTATE before the welcome. */
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kz_client_self(KizunaClientHandle c, out kz_avatar_state state);

        /* Writes up to cap entries (cap <= entities.Length is the caller's
         * contract); returns how many there are. */
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern uint kz_client_view(KizunaClientHandle c, [In, Out] kz_client_entity[] entities, uint cap);

        /* 0, KZ_EINVAL (not in view) or KZ_ERANGE (tick older than held). */
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kz_client_entity_at(KizunaClientHandle c, uint id, double tick, out kz_avatar_state state);

        /* 0 or KZ_EINVAL. */
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kz_client_badge(KizunaClientHandle c, uint id, out kz_badge badge);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern double kz_client_render_tick(KizunaClientHandle c);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern uint kz_client_server_tick(KizunaClientHandle c);

        /* The newest applied input's latency in ns (send to the first
         * snapshot after the server applied it). 0 or KZ_EEMPTY. */
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kz_client_input_latency(KizunaClientHandle c, out uint tick, out ulong latencyNs);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern uint kz_client_reason(KizunaClientHandle c);

        /* After the OS reported a network change: moves to localIp ("a.b.c.d",
         * null = any address) and resumes. 0, KZ_EINVAL, KZ_ESTATE, KZ_EIO. */
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern int kz_client_rebind(KizunaClientHandle c, [MarshalAs(UnmanagedType.LPStr)] string localIp);

        /* A const kz_counters*, for kz_counters_get / kz_counters_name. */
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern IntPtr kz_client_counters(KizunaClientHandle c);

        /* A const kz_netclient*, for kz_netclient_traffic. */
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern IntPtr kz_client_net(KizunaClientHandle c);

        /* ---- helpers ----------------------------------------------------- */

        /* A NUL-terminated UTF-8 string of at most `cap` bytes; "" for null. */
        public static unsafe string Utf8(byte* p, int cap)
        {
            if (p == null)
                return string.Empty;
            int n = 0;
            while (n < cap && p[n] != 0)
                n++;
            return n == 0 ? string.Empty : Encoding.UTF8.GetString(p, n);
        }

        /* A NUL-terminated UTF-8 string returned by the library. */
        public static unsafe string Utf8(IntPtr p)
        {
            return Utf8((byte*)p, int.MaxValue);
        }

        /* kz_strerror as a string ("invalid argument", ...). */
        public static string ErrorName(int code)
        {
            return Utf8(kz_strerror(code));
        }

        public static string Version()
        {
            return Utf8(kz_version());
        }
    }

    /* A failed construction or connection, with the library's code. */
    public sealed class KizunaException : Exception
    {
        public readonly int Code;

        public KizunaException(string what, int code)
            : base(what + ": " + Native.ErrorName(code) + " (" + code + ")")
        {
            Code = code;
        }
    }

    /* One log line: level (Native.KZ_LOG_*), the emitting module, the text. */
    public delegate void KizunaLogHandler(int level, string module, string message);

    /*
     * A client. Create it, Connect with a token file, then call Update once
     * per frame and drain PollEvent; read SelfState and View to place
     * avatars; set the local player's intent with SendInput when it
     * changes. Every method must be called on the thread that created the
     * client (InvalidOperationException otherwise). Dispose on that thread
     * too; the finalizer only reclaims a client nobody can reach.
     *
     * Methods return the library's codes (0 or a negative Native.KZ_E*)
     * where the C call does; construction and token decoding throw
     * KizunaException.
     */
    public sealed class KizunaClient : IDisposable
    {
        /* One delegate for every client, so the function pointer stays valid
         * for the process's life. */
        private static readonly Native.kz_log_fn LogHook = LogTrampoline;

        private readonly KizunaClientHandle handle;
        private readonly int owner;

        /* The defaults of kz_client_config_default. */
        public static kz_client_config DefaultConfig()
        {
            kz_client_config cfg = new kz_client_config();
            Native.kz_client_config_default(ref cfg);
            return cfg;
        }

        public KizunaClient() : this(DefaultConfig(), null, Native.KZ_LOG_WARN) { }

        /* `log` (may be null: then config.net.log is used as given; zero
         * means warnings on stderr) receives lines at or above `logLevel`. */
        public KizunaClient(kz_client_config config, KizunaLogHandler log, int logLevel)
        {
            if (IntPtr.Size != 8)
                throw new PlatformNotSupportedException("the Kizuna binding is for 64-bit processes");
            uint lib = Native.kz_version_number();
            /* 0.x: a minor release may change layouts; 1.0 on: the major. */
            uint unit = Native.KZ_VERSION_MAJOR == 0 ? 100u : 10000u;
            if (lib / unit != (uint)Native.KZ_VERSION_NUMBER / unit)
                throw new InvalidOperationException("libkizuna " + Native.Version() +
                                                    " does not match the binding's " +
                                                    Native.KZ_VERSION_MAJOR + "." + Native.KZ_VERSION_MINOR);
            GCHandle target = new GCHandle();
            if (log != null) {
                target = GCHandle.Alloc(log);
                config.net.log.sink = Marshal.GetFunctionPointerForDelegate(LogHook);
                config.net.log.ctx = GCHandle.ToIntPtr(target);
                config.net.log.level = logLevel;
            }
            handle = Native.kz_client_create(ref config);
            if (handle.IsInvalid) {
                if (target.IsAllocated)
                    target.Free();
                throw new KizunaException("kz_client_create", Native.KZ_EINVAL);
            }
            handle.logTarget = target;
            owner = Thread.CurrentThread.ManagedThreadId;
        }

        [AOT.MonoPInvokeCallback(typeof(Native.kz_log_fn))]
        private static void LogTrampoline(IntPtr ctx, int level, IntPtr module, IntPtr msg)
        {
            /* An exception must not unwind into C frames. */
            try {
                KizunaLogHandler h = (KizunaLogHandler)GCHandle.FromIntPtr(ctx).Target;
                if (h != null)
                    h(level, Native.Utf8(module), Native.Utf8(msg));
            } catch (Exception) {
            }
        }

        private KizunaClientHandle H
        {
            get
            {
                if (Thread.CurrentThread.ManagedThreadId != owner)
                    throw new InvalidOperationException("a Kizuna client is used from one thread only");
                if (handle.IsClosed)
                    throw new ObjectDisposedException("KizunaClient");
                return handle;
            }
        }

        /* Monotonic nanoseconds for Update's `now` (any origin). */
        public static ulong NowNs()
        {
            long t = Stopwatch.GetTimestamp();
            long f = Stopwatch.Frequency;
            return (ulong)(t / f) * Native.KZ_NS_PER_S + (ulong)(t % f) * Native.KZ_NS_PER_S / (ulong)f;
        }

        /* Starts connecting with a token file's bytes. The decoded keys are
         * kept in unmanaged memory and wiped before it is freed; the caller
         * should clear `tokenFile` itself (ConnectFile does). Throws on a
         * malformed file; otherwise returns kz_client_connect's result. */
        public int Connect(byte[] tokenFile, ulong now)
        {
            KizunaClientHandle h = H;
            int size = Marshal.SizeOf(typeof(kz_connect_token));
            IntPtr ct = Marshal.AllocHGlobal(size);
            try {
                int rc = Native.kz_connect_token_decode(tokenFile, (UIntPtr)(uint)tokenFile.Length, ct);
                if (rc != Native.KZ_OK)
                    throw new KizunaException("kz_connect_token_decode", rc);
                return Native.kz_client_connect(h, ct, now);
            } finally {
                Wipe(ct, size);
                Marshal.FreeHGlobal(ct);
            }
        }

        /* Connect with the token file at `path`, wiping the bytes read. */
        public int ConnectFile(string path, ulong now)
        {
            byte[] file = File.ReadAllBytes(path);
            try {
                return Connect(file, now);
            } finally {
                Array.Clear(file, 0, file.Length);
            }
        }

        private static unsafe void Wipe(IntPtr p, int n)
        {
            byte* b = (byte*)p;
            for (int i = 0; i < n; i++)
                b[i] = 0;
            Thread.MemoryBarrier();
        }

        /* Runs the transport, decoding and input ticks due at `now`; call
         * every frame. Returns Native.KZ_CLIENT_*. */
        public uint Update(ulong now) { return Native.kz_client_update(H, now); }

        public uint State { get { return Native.kz_client_state(H); } }

        /* Why the session ended: with KZ_CLIENT_DISCONNECTED a KZ_KICK_* or
         * a KZ_LOST_* (a resume failed), with KZ_CLIENT_FAILED a KZ_DENY_*;
         * 0 for a timeout or while it runs. Kick and deny codes overlap:
         * read them with the state. */
        public uint Reason { get { return Native.kz_client_reason(H); } }

        /* Call when the OS reports a network change (e.g. Unity's
         * Application.internetReachability changed): the client moves its
         * socket to `localIp` ("a.b.c.d"; null = any address) and resumes
         * the session from there (KZ_EV_RECONNECTING, then KZ_EV_RESUMED
         * or KZ_EV_DISCONNECTED). Returns 0, KZ_EINVAL (not a dotted IPv4
         * address), KZ_ESTATE (not in the world, or the server does not
         * offer resume) or KZ_EIO (no socket there). */
        public int Rebind(string localIp) { return Native.kz_client_rebind(H, localIp); }

        public int SendInput(ref kz_avatar_state intent) { return Native.kz_client_send_input(H, ref intent); }

        /* The next event, or false when none is queued. Copy ev.Text() or
         * ev.Bytes() out before the next call on this client. */
        public bool PollEvent(out kz_client_event ev)
        {
            return Native.kz_client_poll_event(H, out ev) == Native.KZ_OK;
        }

        public int Chat(string text)
        {
            byte[] b = Encoding.UTF8.GetBytes(text);
            return Native.kz_client_chat(H, b, (uint)b.Length);
        }

        public int Emote(ushort emote) { return Native.kz_client_emote(H, emote); }

        public int Voice(byte[] frame, int length)
        {
            if (length < 0 || length > frame.Length)
                throw new ArgumentOutOfRangeException("length");
            return Native.kz_client_voice(H, frame, (uint)length);
        }

        public int Grab(uint obj) { return Native.kz_client_grab(H, obj); }
        public int Release(uint obj) { return Native.kz_client_release(H, obj); }
        public int Block(uint entity, bool on) { return Native.kz_client_block(H, entity, on ? 1u : 0u); }
        public int Admin(uint action, uint target) { return Native.kz_client_admin(H, action, target); }
        public int PersonalSpace(bool on) { return Native.kz_client_personal_space(H, on ? 1u : 0u); }
        public int Teleport(uint portal) { return Native.kz_client_teleport(H, portal); }

        /* The own avatar's entity id, 0 before the welcome. */
        public uint SelfId { get { return Native.kz_client_self_id(H); } }

        /* The predicted own state; false until the first snapshot. Between
         * the welcome and the first snapshot kz_client_self succeeds with
         * a zeroed state (the origin, zero rotations); ServerTick is 0
         * until a snapshot arrives, so that window is refused here. */
        public bool TryGetSelf(out kz_avatar_state state)
        {
            KizunaClientHandle h = H;
            if (Native.kz_client_server_tick(h) == 0) {
                state = new kz_avatar_state();
                return false;
            }
            return Native.kz_client_self(h, out state) == Native.KZ_OK;
        }

        /* Fills `buffer` with the entities in view (interpolated) and returns
         * how many it wrote; `total` is how many there are (more than
         * written when the buffer is too small). */
        public int View(kz_client_entity[] buffer, out uint total)
        {
            total = Native.kz_client_view(H, buffer, (uint)buffer.Length);
            return (int)Math.Min(total, (uint)buffer.Length);
        }

        public int EntityAt(uint id, double tick, out kz_avatar_state state)
        {
            return Native.kz_client_entity_at(H, id, tick, out state);
        }

        public bool TryGetBadge(uint id, out kz_badge badge)
        {
            return Native.kz_client_badge(H, id, out badge) == Native.KZ_OK;
        }

        public double RenderTick { get { return Native.kz_client_render_tick(H); } }
        public uint ServerTick { get { return Native.kz_client_server_tick(H); } }

        /* The newest applied input's tick and latency (ns); false before the first. */
        public bool TryGetInputLatency(out uint tick, out ulong latencyNs)
        {
            return Native.kz_client_input_latency(H, out tick, out latencyNs) == Native.KZ_OK;
        }

        /* Client counter `id` (Native.KZ_CLIENT_C_*) and its name. */
        public ulong Counter(uint id) { return Native.kz_counters_get(Native.kz_client_counters(H), id); }
        public string CounterName(uint id) { return Native.Utf8(Native.kz_counters_name(Native.kz_client_counters(H), id)); }

        public kz_net_traffic Traffic()
        {
            kz_net_traffic t = new kz_net_traffic();
            IntPtr net = Native.kz_client_net(H);
            if (net != IntPtr.Zero)  /* no transport before Connect */
                Native.kz_netclient_traffic(net, out t);
            return t;
        }

        public void Dispose()
        {
            if (handle.IsClosed)
                return;
            if (Thread.CurrentThread.ManagedThreadId != owner)
                throw new InvalidOperationException("a Kizuna client is disposed on its own thread");
            handle.Dispose();
        }
    }
}
