/*
 * A compile-only stand-in for the part of UnityEngine.dll that
 * examples/csharp/KizunaBehaviour.cs uses, so that csharp_smoke.sh can
 * check the component still compiles without Unity installed. Names,
 * namespaces, member kinds (property or field) and signatures follow
 * Unity's scripting API; nothing here is ever run, so the bodies are
 * placeholders. A member the component starts using must be added here
 * with Unity's exact signature, or the check fails to compile.
 *
 * It also declares AOT.MonoPInvokeCallbackAttribute, which Unity ships in
 * UnityEngine.dll: Kizuna.cs compiled with UNITY_5_3_OR_NEWER relies on it.
 */
namespace UnityEngine
{
    public class Object
    {
        public string name { get; set; }

        public static T Instantiate<T>(T original) where T : Object { return original; }

        public static void Destroy(Object obj) { }
    }

    public class Component : Object
    {
        public Transform transform { get { return null; } }
        public GameObject gameObject { get { return null; } }
    }

    public class Behaviour : Component
    {
        public bool enabled { get; set; }
    }

    public class MonoBehaviour : Behaviour
    {
    }

    public class Transform : Component
    {
        public Vector3 position { get; set; }
        public Quaternion rotation { get; set; }
    }

    public sealed class GameObject : Object
    {
        public Transform transform { get { return null; } }
    }

    public struct Vector3
    {
        public float x, y, z;

        public Vector3(float x, float y, float z)
        {
            this.x = x;
            this.y = y;
            this.z = z;
        }
    }

    public struct Quaternion
    {
        public float x, y, z, w;

        public static Quaternion Euler(float x, float y, float z) { return new Quaternion(); }
    }

    public static class Debug
    {
        public static void Log(object message) { }
        public static void LogWarning(object message) { }
        public static void LogError(object message) { }
    }

    public static class Input
    {
        public static float GetAxis(string axisName) { return 0f; }
    }

    public enum NetworkReachability
    {
        NotReachable,
        ReachableViaCarrierDataNetwork,
        ReachableViaLocalAreaNetwork,
    }

    public static class Application
    {
        public static NetworkReachability internetReachability { get { return NetworkReachability.NotReachable; } }
    }

    public static class Mathf
    {
        public const float Rad2Deg = 57.29578f;

        public static float Atan2(float y, float x) { return (float)System.Math.Atan2(y, x); }
    }

    [System.AttributeUsage(System.AttributeTargets.Field)]
    public sealed class SerializeField : System.Attribute
    {
    }
}

namespace AOT
{
    [System.AttributeUsage(System.AttributeTargets.Method)]
    public sealed class MonoPInvokeCallbackAttribute : System.Attribute
    {
        public MonoPInvokeCallbackAttribute(System.Type type) { }
    }
}
