/*
 * A Unity component that joins a Kizuna world: the per-frame loop of
 * KizunaClient (update, input, events, own avatar, remote avatars) in the
 * smallest form an integrator copies from.
 *
 * Attach it to an empty GameObject, set Token Path to a client token file
 * (from the game's backend; `kizuna-server token mint` makes one for
 * testing), assign the local player's Transform and a prefab for remote
 * avatars. Desktop walking only: the arrow keys or WASD through the old
 * Input Manager axes; head and hand poses stay at rest.
 *
 * Axes: positions are used as Kizuna gives them (y up). Kizuna's yaw is in
 * radians, counter-clockwise seen from above; Unity's rotation about y is
 * clockwise seen from above, hence the minus signs. Every client of one
 * world must use the same mapping.
 *
 * Phones change networks: when Unity reports that the device is reachable
 * over another kind of network than before (Wi-Fi to mobile data, or
 * back), the component tells the client, which moves to the new network
 * and resumes the session (the avatar stays; others see nothing). A
 * network that goes away and comes back as the same kind is not a move:
 * the socket stays, and if its address did change after all (a new Wi-Fi
 * network, which Unity does not tell apart), the client sees the silence
 * and resumes by itself. While it reconnects the game keeps running:
 * input is still taken, others hold where they were last seen.
 *
 * Everything runs on Unity's main thread: KizunaClient refuses calls from
 * any other.
 */
using System.Collections.Generic;
using Kizuna;
using UnityEngine;

public sealed class KizunaBehaviour : MonoBehaviour
{
    [SerializeField] private string tokenPath = "player.kzc";
    [SerializeField] private Transform localAvatar;
    [SerializeField] private GameObject remotePrefab;
    [SerializeField] private float walkSpeed = 1.4f;  /* m/s; the server clamps to its max */

    private KizunaClient client;
    private kz_avatar_state intent;
    private readonly kz_client_entity[] view = new kz_client_entity[256];
    private readonly Dictionary<uint, GameObject> shown = new Dictionary<uint, GameObject>();
    private readonly Dictionary<uint, string> names = new Dictionary<uint, string>();
    private readonly List<uint> gone = new List<uint>();
    private readonly HashSet<uint> inView = new HashSet<uint>();
    /* The kind of network the session last used (never NotReachable). */
    private NetworkReachability network;

    private void Start()
    {
        client = new KizunaClient(KizunaClient.DefaultConfig(), OnLog, Native.KZ_LOG_INFO);
        Native.kz_avatar_state_rest(out intent);
        int rc = client.ConnectFile(tokenPath, KizunaClient.NowNs());
        if (rc != Native.KZ_OK)
            Debug.LogError("Kizuna: cannot connect: " + Native.ErrorName(rc));
        network = Application.internetReachability;
    }

    /* Runs inside a KizunaClient call, on the main thread. */
    private static void OnLog(int level, string module, string message)
    {
        string line = "Kizuna " + module + ": " + message;
        if (level <= Native.KZ_LOG_ERROR)
            Debug.LogError(line);
        else if (level == Native.KZ_LOG_WARN)
            Debug.LogWarning(line);
        else
            Debug.Log(line);
    }

    private void Update()
    {
        if (client == null)
            return;
        FollowNetwork();
        uint state = client.Update(KizunaClient.NowNs());
        DrainEvents();
        if (state != Native.KZ_CLIENT_CONNECTED && state != Native.KZ_CLIENT_RECONNECTING)
            return;
        SendIntent();
        PlaceSelf();
        PlaceOthers();
    }

    /* Another kind of network: move the client's socket there and resume
     * at once, rather than waiting for the old path's silence. No network
     * at all is nothing to move to (the client resumes on silence once one
     * is back), and coming back to the same kind keeps the socket.
     * KZ_ESTATE means there is nothing to move (not in the world, or a
     * server without resume). */
    private void FollowNetwork()
    {
        NetworkReachability now = Application.internetReachability;
        if (now == NetworkReachability.NotReachable || now == network)
            return;
        network = now;
        int rc = client.Rebind(null);
        if (rc != Native.KZ_OK && rc != Native.KZ_ESTATE)
            Debug.LogWarning("Kizuna: cannot move to the new network: " + Native.ErrorName(rc));
    }

    private void DrainEvents()
    {
        kz_client_event ev;
        while (client.PollEvent(out ev)) {
            /* ev.data is valid until the next client call: Text() copies. */
            switch (ev.type) {
            case Native.KZ_EV_ENTER:
                names[ev.entity] = ev.badge.NameString();
                break;
            case Native.KZ_EV_LEAVE:
                names.Remove(ev.entity);
                break;
            case Native.KZ_EV_CHAT:
                Debug.Log(NameOf(ev.entity) + ": " + ev.Text());
                break;
            case Native.KZ_EV_NOTICE:
                Debug.Log("Kizuna notice " + ev.code + ": " + ev.Text());
                break;
            case Native.KZ_EV_RECONNECTING:
                Debug.Log("Kizuna: connection interrupted, reconnecting");
                break;
            case Native.KZ_EV_RESUMED:
                Debug.Log("Kizuna: reconnected after " + ev.code + " ms");
                break;
            case Native.KZ_EV_DISCONNECTED:
                Debug.LogWarning("Kizuna: session ended, state " + client.State + ", reason " +
                                 ev.code + " " + ev.Text());
                break;
            }
        }
    }

    private string NameOf(uint entity)
    {
        string n;
        return names.TryGetValue(entity, out n) ? n : "#" + entity;
    }

    /* The wanted velocity in world axes and the facing; the server moves
     * the avatar, the client predicts it at once. */
    private void SendIntent()
    {
        float x = Input.GetAxis("Horizontal"), z = Input.GetAxis("Vertical");
        intent.SetVel(x * walkSpeed, 0f, z * walkSpeed);
        if (x != 0f || z != 0f)
            intent.yaw = -Mathf.Atan2(x, z);
        client.SendInput(ref intent);
    }

    private void PlaceSelf()
    {
        kz_avatar_state me;
        if (localAvatar == null || !client.TryGetSelf(out me))
            return;
        float x, y, z;
        me.GetPos(out x, out y, out z);
        localAvatar.position = new Vector3(x, y, z);
        localAvatar.rotation = Quaternion.Euler(0f, -me.yaw * Mathf.Rad2Deg, 0f);
    }

    /* Remote avatars at render time, interpolated by the client. */
    private void PlaceOthers()
    {
        uint total;
        int n = client.View(view, out total);
        inView.Clear();
        for (int i = 0; i < n; i++) {
            uint id = view[i].id;
            inView.Add(id);
            GameObject go;
            if (!shown.TryGetValue(id, out go)) {
                go = Instantiate(remotePrefab);
                go.name = NameOf(id);
                shown.Add(id, go);
            }
            float x, y, z;
            view[i].state.GetPos(out x, out y, out z);
            go.transform.position = new Vector3(x, y, z);
            go.transform.rotation = Quaternion.Euler(0f, -view[i].state.yaw * Mathf.Rad2Deg, 0f);
        }
        gone.Clear();
        foreach (KeyValuePair<uint, GameObject> kv in shown)
            if (!inView.Contains(kv.Key))
                gone.Add(kv.Key);
        foreach (uint id in gone) {
            Destroy(shown[id]);
            shown.Remove(id);
        }
    }

    private void OnDestroy()
    {
        if (client != null)
            client.Dispose();
        client = null;
    }
}
