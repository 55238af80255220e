/*
 * The C# binding end to end: examples/csharp/Kizuna.cs compiled into this
 * program and run under Mono against the build's libkizuna, in a world
 * that tests/csharp/csharp_smoke.sh starts (kz-minimal-server, plus a
 * third player in C, kz-minimal-client).
 *
 *   mono smoke.exe LIBRARY VERSION CHAT_FILE TOKEN_A NAME_A TOKEN_B NAME_B PEER_NAME
 *
 * LIBRARY is the resolved path of the libkizuna this process must load;
 * VERSION is the version in that file's name ("-" when it has none);
 * CHAT_FILE holds the UTF-8 line player A says; TOKEN_A and TOKEN_B are
 * client token files whose badges carry NAME_A and NAME_B; PEER_NAME is
 * the badge name of the C player, which A must see.
 *
 * Two clients run on the main thread (one thread may drive several):
 * A connects, chats and walks; B stands and watches A. First come the
 * checks that need no server (version, struct mirrors as the C side writes
 * them, the log hook, bad token files). Each check prints one line,
 * "ok   ..." or "FAIL ...: detail"; the exit status is the number of failed
 * checks (0 when all passed), 1 more for an unexpected exception. A run
 * takes about 4 s on loopback; the limits are 10 s to get both players in
 * and showing each other, 2 s of walking, 0.7 s standing and 5 s for the
 * leave.
 */
using System;
using System.Collections.Generic;
using System.IO;
using System.Runtime.CompilerServices;
using System.Text;
using System.Threading;
using Kizuna;

/* One client and what its events said; the main loop pumps it. */
sealed class Player
{
    public readonly string Label;
    public readonly KizunaClient Client;
    public readonly List<string> Log = new List<string>();  /* every line */
    public int Problems;      /* lines at KZ_LOG_WARN or more severe */
    public uint State;
    public uint ConnectedAs;  /* KZ_EV_CONNECTED's entity; 0 before it */
    public int Disconnects;   /* KZ_EV_DISCONNECTED events */
    public readonly Dictionary<uint, kz_badge> Entered = new Dictionary<uint, kz_badge>();
    public readonly List<uint> Left = new List<uint>();
    public readonly List<KeyValuePair<uint, string>> Chats = new List<KeyValuePair<uint, string>>();

    public Player(string label)
    {
        Label = label;
        Client = new KizunaClient(KizunaClient.DefaultConfig(),
                                  (level, module, msg) => {
                                      Log.Add(Native.Utf8(Native.kz_log_level_name(level)) + " " + module + ": " + msg);
                                      if (level <= Native.KZ_LOG_WARN)
                                          Problems++;
                                  },
                                  Native.KZ_LOG_INFO);
    }

    /* One frame: Update, then every queued event (copied out at once:
     * event data lives only until the next call on the client). */
    public void Pump(ulong now)
    {
        State = Client.Update(now);
        kz_client_event ev;
        while (Client.PollEvent(out ev)) {
            switch (ev.type) {
            case Native.KZ_EV_CONNECTED: ConnectedAs = ev.entity; break;
            case Native.KZ_EV_ENTER: Entered[ev.entity] = ev.badge; break;
            case Native.KZ_EV_LEAVE: Left.Add(ev.entity); break;
            case Native.KZ_EV_CHAT: Chats.Add(new KeyValuePair<uint, string>(ev.entity, ev.Text())); break;
            case Native.KZ_EV_DISCONNECTED: Disconnects++; break;
            }
        }
    }

    /* The entity that entered with badge name `name`, or 0. */
    public uint EnteredAs(string name)
    {
        foreach (KeyValuePair<uint, kz_badge> kv in Entered)
            if (kv.Value.NameString() == name)
                return kv.Key;
        return 0;
    }

    /* Whether View lists entity `id` now; never for id 0 (none). */
    public bool Shows(uint id)
    {
        kz_client_entity unused;
        return id != 0 && InView(id, out unused);
    }

    /* A shown entity that is an object and entered without a badge, or 0. */
    public uint ObjectShown()
    {
        foreach (KeyValuePair<uint, kz_badge> kv in Entered) {
            kz_client_entity e;
            if (InView(kv.Key, out e) && e.state.kind == Native.KZ_KIND_OBJECT && kv.Value.NameString() == "")
                return kv.Key;
        }
        return 0;
    }

    /* Entity `id` as the client shows it now; false when not in view. */
    public bool InView(uint id, out kz_client_entity found)
    {
        kz_client_entity[] view = new kz_client_entity[64];
        uint total;
        int n = Client.View(view, out total);
        for (int i = 0; i < n; i++) {
            if (view[i].id == id) {
                found = view[i];
                return true;
            }
        }
        found = new kz_client_entity();
        return false;
    }
}

static class Smoke
{
    const float WalkSpeed = 1.5f;  /* m/s along +z; the server allows 8 */
    const float WalkYaw = 0.5f;    /* radians */
    const double WalkSeconds = 2.0, StandSeconds = 0.7;

    static int failures;

    static void Check(bool ok, string what, string detail)
    {
        Console.WriteLine(ok ? "ok   " + what : "FAIL " + what + ": " + detail);
        if (!ok)
            failures++;
    }

    /* Non-ASCII as \uXXXX, so a line reads the same in any locale. */
    static string Show(string s)
    {
        if (s == null)
            return "(null)";
        StringBuilder b = new StringBuilder("\"");
        foreach (char ch in s)
            b.Append(ch >= 32 && ch < 127 ? ch.ToString() : string.Format("\\u{0:x4}", (int)ch));
        return b.Append('"').ToString();
    }

    static string Pos(kz_avatar_state s)
    {
        float x, y, z;
        s.GetPos(out x, out y, out z);
        return string.Format("({0:F2}, {1:F2}, {2:F2})", x, y, z);
    }

    /* Pumps every player each 5 ms (a 200 Hz frame) until `done` holds or
     * `seconds` pass; `frame` runs before each pump (inputs). */
    static bool PumpUntil(Func<bool> done, double seconds, Action frame, params Player[] players)
    {
        ulong end = KizunaClient.NowNs() + (ulong)(seconds * Native.KZ_NS_PER_S);
        for (;;) {
            ulong now = KizunaClient.NowNs();
            if (frame != null)
                frame();
            foreach (Player p in players)
                p.Pump(now);
            if (done != null && done())
                return true;
            if (now >= end)
                return false;
            Thread.Sleep(5);
        }
    }

    static int Main(string[] args)
    {
        if (args.Length != 8) {
            Console.Error.WriteLine("usage: mono smoke.exe LIBRARY VERSION CHAT_FILE TOKEN_A NAME_A TOKEN_B NAME_B PEER_NAME");
            return 2;
        }
        try {
            Run(args);
        } catch (Exception e) {
            Console.WriteLine("FAIL unexpected exception: " + e);
            failures++;
        }
        Console.WriteLine(failures == 0 ? "csharp smoke: all checks passed"
                                        : "csharp smoke: " + failures + " check(s) FAILED");
        return Math.Min(failures, 100);
    }

    static void Run(string[] args)
    {
        string library = args[0], version = args[1], chat = File.ReadAllText(args[2], Encoding.UTF8).TrimEnd('\n');
        string tokenA = args[3], nameA = args[4], tokenB = args[5], nameB = args[6], peerName = args[7];

        CheckLibrary(library, version);
        CheckMirrors();
        CheckLogHook();
        CheckBadTokens(tokenA);

        Player a = new Player("A"), b = new Player("B");
        int rcA = a.Client.ConnectFile(tokenA, KizunaClient.NowNs());
        int rcB = b.Client.ConnectFile(tokenB, KizunaClient.NowNs());
        Check(rcA == Native.KZ_OK && rcB == Native.KZ_OK, "ConnectFile with the token files returns 0",
              "A " + rcA + ", B " + rcB);
        Check(a.Client.State == Native.KZ_CLIENT_CONNECTING, "state CONNECTING after ConnectFile",
              "state " + a.Client.State);

        /* In: both connected, A's first snapshot, and each showing the
         * others (an entity is in View once render time, 100 ms behind the
         * server, reaches its entry). */
        kz_avatar_state unused;
        bool inWorld = PumpUntil(() => a.ConnectedAs != 0 && b.ConnectedAs != 0 &&
                                       a.Shows(a.EnteredAs(nameB)) && a.Shows(a.EnteredAs(peerName)) &&
                                       b.Shows(b.EnteredAs(nameA)) && a.ObjectShown() != 0 &&
                                       a.Client.TryGetSelf(out unused),
                                 10.0, null, a, b);
        uint idA = a.Client.SelfId, idB = b.Client.SelfId;
        Check(inWorld && a.State == Native.KZ_CLIENT_CONNECTED && b.State == Native.KZ_CLIENT_CONNECTED,
              "both clients CONNECTED and seeing each other within 10 s",
              "states " + a.State + "/" + b.State + ", A entered " + a.Entered.Count +
              ", B entered " + b.Entered.Count + ", logs: " + string.Join(" | ", a.Log) + " " +
              string.Join(" | ", b.Log));
        Check(a.ConnectedAs != 0 && a.ConnectedAs == idA && b.ConnectedAs == idB && idA != idB,
              "KZ_EV_CONNECTED names the own avatar (A #" + idA + ", B #" + idB + ")",
              "events said A #" + a.ConnectedAs + ", B #" + b.ConnectedAs);
        CheckBadge(a, nameB, idB, "A sees B");
        CheckBadge(b, nameA, idA, "B sees A");
        CheckBadge(a, peerName, a.EnteredAs(peerName), "A sees the C client");
        CheckObject(a);
        CheckThreadGuard(a);

        /* Walk: A says the chat line, then walks along +z facing WalkYaw. */
        kz_avatar_state start, walk, stand;
        bool haveStart = a.Client.TryGetSelf(out start);
        uint tick0 = a.Client.ServerTick;
        Native.kz_avatar_state_rest(out walk);
        walk.SetVel(0f, 0f, WalkSpeed);
        walk.yaw = WalkYaw;
        stand = walk;
        stand.SetVel(0f, 0f, 0f);
        int chatRc = a.Client.Chat(chat);
        int inputRc = 0;
        ulong t0 = KizunaClient.NowNs();
        PumpUntil(null, WalkSeconds, () => inputRc |= a.Client.SendInput(ref walk), a, b);
        ulong t1 = KizunaClient.NowNs();
        PumpUntil(null, StandSeconds, () => inputRc |= a.Client.SendInput(ref stand), a, b);
        Check(chatRc == Native.KZ_OK && inputRc == Native.KZ_OK, "Chat and SendInput return 0",
              "Chat " + chatRc + ", SendInput " + inputRc);
        CheckWalk(a, b, haveStart, start, (t1 - t0) / (double)Native.KZ_NS_PER_S);
        CheckChat(a, b, chat, idA);

        ulong snapshots = a.Client.Counter(Native.KZ_CLIENT_C_SNAPSHOTS);
        kz_net_traffic traffic = a.Client.Traffic();
        uint ticks = a.Client.ServerTick - tick0;
        /* 2.7 s at the default 30 Hz is about 80 ticks and snapshots. */
        Check(snapshots >= 30 && ticks >= 30 && traffic.packets_in >= 30 && traffic.bytes_out > 0,
              "A receives snapshots (" + snapshots + " counted as \"" +
              a.Client.CounterName(Native.KZ_CLIENT_C_SNAPSHOTS) + "\", server tick +" + ticks + ")",
              "snapshots " + snapshots + ", ticks " + ticks + ", packets in " + traffic.packets_in +
              ", bytes out " + traffic.bytes_out);
        Check(a.Disconnects == 0 && b.Disconnects == 0 && a.State == Native.KZ_CLIENT_CONNECTED &&
              b.State == Native.KZ_CLIENT_CONNECTED, "no session ended while playing",
              "A state " + a.State + " (" + a.Disconnects + " disconnects), B state " + b.State);

        CheckDispose(a, b, idA);
        b.Client.Dispose();
        Check(a.Problems == 0 && b.Problems == 0, "no warning or error logged during the session",
              string.Join(" | ", a.Log) + " " + string.Join(" | ", b.Log));

        CheckFinalizer();
    }

    /* A client nobody disposed is reclaimed by its handle's finalizer,
     * which destroys it and frees the GCHandle that kept its log hook
     * alive: the hook's delegate then becomes collectable. (The two
     * disposed clients' handles are already closed: the collections here
     * must not release them again.) */
    static void CheckFinalizer()
    {
        /* Mono scans stacks conservatively: the client is made on a thread
         * that then ends, and IsAlive (which loads the target) is read
         * only after the collections, so no stale copy of the hook's
         * address stays on a live stack. The first collection runs the
         * finalizer, the second collects the hook. */
        WeakReference hook = null;
        Thread t = new Thread(() => hook = Abandon());
        t.Start();
        t.Join();
        for (int i = 0; i < 3; i++) {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        Check(!hook.IsAlive, "an abandoned client is destroyed by the finalizer (its log hook is released)",
              "the log hook is still reachable after 3 collections");
    }

    /* Creates a client and drops it; a weak reference to its log hook.
     * Not inlined, so no reference stays in the caller's frame. */
    [MethodImpl(MethodImplOptions.NoInlining)]
    static WeakReference Abandon()
    {
        int lines = 0;
        KizunaLogHandler hook = (level, module, msg) => lines++;  /* a new closure per call */
        new KizunaClient(KizunaClient.DefaultConfig(), hook, Native.KZ_LOG_INFO);
        return new WeakReference(hook);
    }

    /* The process loaded exactly LIBRARY, and its version is the binding's. */
    static void CheckLibrary(string library, string version)
    {
        uint number = Native.kz_version_number();  /* loads the library */
        string text = Native.Version();
        var loaded = new List<string>();
        foreach (string line in File.ReadAllLines("/proc/self/maps")) {
            int slash = line.IndexOf('/');
            string path = slash < 0 ? "" : line.Substring(slash);
            if (Path.GetFileName(path).StartsWith("libkizuna.") && !loaded.Contains(path))
                loaded.Add(path);
        }
        Check(loaded.Count == 1 && loaded[0] == library, "loaded " + library,
              "mapped: " + string.Join(", ", loaded));
        string binding = Native.KZ_VERSION_MAJOR + "." + Native.KZ_VERSION_MINOR + "." + Native.KZ_VERSION_PATCH;
        Check(number == Native.KZ_VERSION_NUMBER && text == binding && (version == "-" || version == text),
              "library version " + text + " (" + number + ") matches the binding" +
              (version == "-" ? "" : " and the file name"),
              "binding " + binding + " (" + Native.KZ_VERSION_NUMBER + "), file name " + version);
    }

    /* Structs as the C side fills them, read through the mirrors. */
    static unsafe void CheckMirrors()
    {
        /* kz_client_config_default keeps net (bytes 0..87) and rewrites the
         * rest: with every byte 0xAB first, C's writes show exactly where
         * C's fields are. */
        kz_client_config cfg = new kz_client_config();
        byte* raw = (byte*)&cfg;
        int size = sizeof(kz_client_config);
        for (int i = 0; i < size; i++)
            raw[i] = 0xAB;
        Native.kz_client_config_default(ref cfg);
        bool netKept = true;
        for (int i = 0; i < 88; i++)
            netKept &= raw[i] == 0xAB;
        bool tailZero = raw[100] == 0 && raw[101] == 0 && raw[102] == 0 && raw[103] == 0;
        Check(size == 104 && netKept && tailZero && cfg.interp_delay_ms == 100 &&
              cfg.input_redundancy == 4 && cfg.event_capacity == 64,
              "kz_client_config_default: defaults 100/4/64 at offsets 88/92/96, net kept",
              "size " + size + ", net kept " + netKept + ", tail zero " + tailZero + ", read " +
              cfg.interp_delay_ms + "/" + cfg.input_redundancy + "/" + cfg.event_capacity);
        kz_client_config d = KizunaClient.DefaultConfig();
        Check(d.net.connect_timeout_ms == 0 && d.net.resume_silence_ms == 0 &&
              d.net.log.sink == IntPtr.Zero && d.net.log.level == 0 &&
              d.interp_delay_ms == 100 && d.input_redundancy == 4 && d.event_capacity == 64,
              "KizunaClient.DefaultConfig: zero net settings, client defaults",
              "timeout " + d.net.connect_timeout_ms + ", interp " + d.interp_delay_ms);

        /* kz_pose pose[3] seen as 21 floats: identity quaternions at 3..6
         * of each 7, offsets zero. */
        kz_avatar_state rest;
        Native.kz_avatar_state_rest(out rest);
        float vx, vy, vz;
        rest.GetVel(out vx, out vy, out vz);
        bool restOk = rest.kind == Native.KZ_KIND_AVATAR && rest.anim == 0 && rest.flags == 0 &&
                      rest.holder == 0 && rest.yaw == 0f && vx == 0f && vy == 0f && vz == 0f;
        for (uint k = 0; k < Native.KZ_POSE_COUNT; k++) {
            float px, py, pz, qx, qy, qz, qw;
            rest.GetPose(k).Get(out px, out py, out pz, out qx, out qy, out qz, out qw);
            restOk &= px == 0f && py == 0f && pz == 0f && qx == 0f && qy == 0f && qz == 0f && qw == 1f;
        }
        Check(restOk, "kz_avatar_state_rest: kind avatar, identity poses through GetPose",
              "kind " + rest.kind + ", anim " + rest.anim + ", flags " + rest.flags + ", yaw " + rest.yaw);

        kz_address addr;
        int rc = Native.kz_address_parse("127.0.0.1:4000", out addr);
        Check(rc == 0 && addr.family == Native.KZ_ADDR_IPV4 && addr.ip[0] == 127 && addr.ip[1] == 0 &&
              addr.ip[3] == 1 && addr.port == 4000, "kz_address_parse: family, ip and port",
              "rc " + rc + ", family " + addr.family + ", port " + addr.port);
    }

    /* The log hook: lines reach the delegate with level and module, the
     * level filters, and a throwing handler never unwinds into C. An
     * interp_delay_ms over 5000 makes kz_client_create log and fail. */
    static void CheckLogHook()
    {
        kz_client_config bad = KizunaClient.DefaultConfig();
        bad.interp_delay_ms = 6000;
        var lines = new List<string>();
        KizunaLogHandler collect = (level, module, msg) => lines.Add(level + " " + module + " " + msg);
        int code = TryCreate(bad, collect, Native.KZ_LOG_INFO);
        Check(code == Native.KZ_EINVAL && lines.Count == 1 &&
              lines[0] == Native.KZ_LOG_ERROR + " client invalid client configuration",
              "log hook: one ERROR line from module client, then KizunaException(KZ_EINVAL)",
              "code " + code + ", lines: " + string.Join(" | ", lines));

        lines.Clear();
        code = TryCreate(bad, collect, Native.KZ_LOG_OFF);
        Check(code == Native.KZ_EINVAL && lines.Count == 0, "log hook: level KZ_LOG_OFF passes nothing",
              "code " + code + ", lines: " + string.Join(" | ", lines));

        bool called = false;
        code = TryCreate(bad, (level, module, msg) => { called = true; throw new InvalidDataException("from the hook"); },
                         Native.KZ_LOG_INFO);
        Check(called && code == Native.KZ_EINVAL,
              "log hook: a handler's exception stays in the trampoline",
              "called " + called + ", code " + code);
    }

    /* Constructs a client expected to fail; the KizunaException's code,
     * or 1 when construction succeeded. */
    static int TryCreate(kz_client_config cfg, KizunaLogHandler log, int level)
    {
        try {
            new KizunaClient(cfg, log, level).Dispose();
            return 1;
        } catch (KizunaException e) {
            return e.Code;
        }
    }

    /* Bad token files throw, name the decoder, and leave the client idle and
     * usable; Traffic() is zero while there is no transport. */
    static void CheckBadTokens(string goodToken)
    {
        string dir = Path.GetDirectoryName(Path.GetFullPath(goodToken));
        byte[] good = File.ReadAllBytes(goodToken);
        byte[] truncated = new byte[good.Length - 1];
        Array.Copy(good, truncated, truncated.Length);
        byte[] flipped = (byte[])good.Clone();
        flipped[0] ^= 0xFF;  /* the file's magic */
        var files = new Dictionary<string, byte[]> {
            { "garbage.kzc", Encoding.ASCII.GetBytes("not a token file\n") },
            { "empty.kzc", new byte[0] },
            { "truncated.kzc", truncated },
            { "bad-magic.kzc", flipped },
        };
        using (var c = new KizunaClient()) {
            Check(c.Traffic().bytes_out == 0 && c.Traffic().packets_in == 0 && c.State == Native.KZ_CLIENT_IDLE,
                  "a new client is IDLE and Traffic() is zero before Connect", "state " + c.State);
            int anyRc = c.Rebind(null), badRc = c.Rebind("no.such.address");
            Check(anyRc == Native.KZ_ESTATE && badRc == Native.KZ_EINVAL && c.State == Native.KZ_CLIENT_IDLE,
                  "Rebind: KZ_ESTATE while IDLE, KZ_EINVAL for a name that is not a dotted IPv4 address",
                  "rc " + anyRc + " and " + badRc + ", state " + c.State);
            foreach (KeyValuePair<string, byte[]> f in files) {
                string path = Path.Combine(dir, f.Key);
                File.WriteAllBytes(path, f.Value);
                string got;
                try {
                    got = "no exception, rc " + c.ConnectFile(path, KizunaClient.NowNs());
                } catch (KizunaException e) {
                    got = e.Code == Native.KZ_EPROTO && e.Message.StartsWith("kz_connect_token_decode: ") ? null
                          : "code " + e.Code + ", message " + Show(e.Message);
                    if (got == null)
                        Console.WriteLine("     (" + f.Key + ": " + e.Message + ")");
                }
                Check(got == null, "bad token file " + f.Key + ": KizunaException(KZ_EPROTO) from the decoder", got);
            }
            string missing = Path.Combine(dir, "missing.kzc");
            bool notFound = false;
            try {
                c.ConnectFile(missing, KizunaClient.NowNs());
            } catch (FileNotFoundException) {
                notFound = true;
            }
            Check(notFound, "missing token file: FileNotFoundException", "no exception");
            Check(c.State == Native.KZ_CLIENT_IDLE && c.Traffic().bytes_out == 0,
                  "after bad token files the client is still IDLE with no transport", "state " + c.State);
        }
    }

    static void CheckBadge(Player p, string name, uint id, string what)
    {
        kz_badge ev = new kz_badge(), now = new kz_badge();
        bool entered = id != 0 && p.Entered.TryGetValue(id, out ev);
        bool held = id != 0 && p.Client.TryGetBadge(id, out now);
        kz_client_entity e;
        bool inView = p.InView(id, out e);
        string method = entered ? ev.MethodString() : "";
        /* kz-minimal-server mints unverified human players, method "none". */
        Check(entered && held && inView && ev.NameString() == name && now.NameString() == name &&
              method == "none" && ev.verification_level == Native.KZ_VERIFY_NONE &&
              ev.actor_kind == Native.KZ_ACTOR_HUMAN && ev.acting_for == 0 &&
              e.state.kind == Native.KZ_KIND_AVATAR,
              what + " (#" + id + ", badge " + Show(name) + ", method " + Show(method) + ", in view)",
              "entered " + entered + ", badge held " + held + ", in view " + inView + ", name " +
              (entered ? Show(ev.NameString()) : "-") + ", level " + (entered ? ev.verification_level : 0) +
              ", kind " + e.state.kind);
    }

    /* kz-minimal-server's shared object: in view, an object, no badge. */
    static void CheckObject(Player p)
    {
        uint obj = p.ObjectShown();
        Check(obj != 0, "A sees the shared object (#" + obj + ", kind object, no badge)",
              p.Entered.Count + " entered, none an object");
    }

    /* Calls from another thread throw; the client goes on working. */
    static void CheckThreadGuard(Player p)
    {
        string got = "";
        Thread t = new Thread(() => {
            try {
                got += "State returned " + p.Client.State + "; ";
            } catch (InvalidOperationException) {
                got += "state-refused ";
            }
            try {
                p.Client.Dispose();
                got += "Dispose returned; ";
            } catch (InvalidOperationException) {
                got += "dispose-refused";
            }
        });
        t.Start();
        t.Join();
        string state;
        try {
            state = p.Client.State == Native.KZ_CLIENT_CONNECTED ? "connected" : "state " + p.Client.State;
        } catch (Exception e) {
            state = e.GetType().Name;
        }
        Check(got == "state-refused dispose-refused" && state == "connected",
              "another thread: State and Dispose throw InvalidOperationException, client still CONNECTED",
              got + ", then on the owner thread: " + state);
    }

    /* A moved as asked, by its own prediction and as B sees it. */
    static void CheckWalk(Player a, Player b, bool haveStart, kz_avatar_state start, double walked)
    {
        kz_avatar_state me;
        bool haveSelf = a.Client.TryGetSelf(out me);
        float sx, sy, sz, x, y, z;
        start.GetPos(out sx, out sy, out sz);
        me.GetPos(out x, out y, out z);
        double want = WalkSpeed * walked;
        /* 25 % covers the input ticks around the start and the stop and the
         * server's integer steps; a unit or axis mix-up is far outside. */
        Check(haveStart && haveSelf && Math.Abs(z - sz - want) <= 0.25 * want && Math.Abs(x - sx) < 0.1 &&
              Math.Abs(y - sy) < 0.1 && Math.Abs(me.yaw - WalkYaw) < 0.05,
              string.Format("A walked {0:F2} m along +z in {1:F2} s at {2} m/s, facing {3:F2} rad",
                            z - sz, walked, WalkSpeed, me.yaw),
              "from " + Pos(start) + " to " + Pos(me) + " yaw " + me.yaw + ", wanted +" + want.ToString("F2"));

        kz_client_entity seen;
        bool inView = b.InView(a.Client.SelfId, out seen);
        float bx, by, bz;
        seen.state.GetPos(out bx, out by, out bz);
        double gap = Math.Sqrt((bx - x) * (bx - x) + (by - y) * (by - y) + (bz - z) * (bz - z));
        /* A has stood for StandSeconds, well past B's 100 ms render delay.
         * A sent rest poses: seen at rest, they also show that yaw and the
         * poses next to it were not swapped on the way. */
        string poses = RestPoses(seen.state);
        Check(inView && gap < 0.25 && Math.Abs(seen.state.yaw - WalkYaw) < 0.05 && poses == null,
              string.Format("B sees A where A is (gap {0:F3} m), facing {1:F2} rad, poses at rest", gap, seen.state.yaw),
              "in view " + inView + ", B sees " + Pos(seen.state) + " yaw " + seen.state.yaw +
              ", A is at " + Pos(me) + ", poses: " + (poses ?? "at rest"));
    }

    /* null when every pose is at the root with an identity rotation (to
     * the wire's quantization), else the first that is not. */
    static string RestPoses(kz_avatar_state s)
    {
        for (uint k = 0; k < Native.KZ_POSE_COUNT; k++) {
            float px, py, pz, qx, qy, qz, qw;
            s.GetPose(k).Get(out px, out py, out pz, out qx, out qy, out qz, out qw);
            float off = Math.Abs(px) + Math.Abs(py) + Math.Abs(pz) + Math.Abs(qx) + Math.Abs(qy) +
                        Math.Abs(qz) + Math.Abs(qw - 1f);
            if (off > 0.02f)
                return string.Format("pose {0}: ({1}, {2}, {3}) rot ({4}, {5}, {6}, {7})", k, px, py, pz, qx, qy, qz, qw);
        }
        return null;
    }

    /* The line A said comes back to A (the server echoes chat) and reaches
     * B, byte for byte, from A's avatar. */
    static void CheckChat(Player a, Player b, string chat, uint idA)
    {
        bool multibyte = Encoding.UTF8.GetByteCount(chat) > chat.Length;
        Check(multibyte, "the chat line has multi-byte UTF-8 (" + Encoding.UTF8.GetByteCount(chat) +
              " bytes, " + chat.Length + " UTF-16 units)", "ASCII only: " + Show(chat));
        foreach (Player p in new Player[] { a, b }) {
            bool got = false;
            var heard = new List<string>();
            foreach (KeyValuePair<uint, string> kv in p.Chats) {
                got |= kv.Key == idA && kv.Value == chat;
                heard.Add("#" + kv.Key + " " + Show(kv.Value));
            }
            Check(got && p.Chats.Count == 1, p.Label + " hears A's chat line exactly " + Show(chat),
                  "heard " + (heard.Count == 0 ? "nothing" : string.Join(", ", heard)));
        }
    }

    /* Dispose ends A's session at once: the server drops the avatar and B
     * sees it leave; a disposed client refuses calls; Dispose twice is
     * harmless. */
    static void CheckDispose(Player a, Player b, uint idA)
    {
        a.Client.Dispose();
        string after = "no exception";
        try {
            after = "State returned " + a.Client.State;
        } catch (ObjectDisposedException) {
            after = null;
        }
        Check(after == null, "a disposed client throws ObjectDisposedException", after);
        string again = null;
        try {
            a.Client.Dispose();
        } catch (Exception e) {
            again = e.GetType().Name;
        }
        Check(again == null, "Dispose twice is harmless", again);

        ulong t0 = KizunaClient.NowNs();
        kz_client_entity unused;
        bool left = PumpUntil(() => b.Left.Contains(idA) && !b.InView(idA, out unused), 5.0, null, b);
        double took = (KizunaClient.NowNs() - t0) / (double)Native.KZ_NS_PER_S;
        /* A silent drop would take the session timeout (seconds); the
         * disconnect Dispose sends is seen within a few ticks. */
        Check(left && took < 2.0, string.Format("B sees A leave {0:F2} s after A's Dispose", took),
              "left " + left + " after " + took.ToString("F2") + " s, B state " + b.State);
    }
}
