using System.Runtime.InteropServices;

namespace DreamBooth.Engine;

/// <summary>
/// The C library's environment (glibc), which libtorch reads with <c>getenv</c>. On Unix, .NET's
/// <c>Environment.SetEnvironmentVariable</c> changes only its own copy and does not reach it. Linux only; the calls
/// throw <see cref="DllNotFoundException"/> or <see cref="EntryPointNotFoundException"/> without glibc.
/// </summary>
internal static class CEnvironment
{
    /// <summary>The variable's value in the C environment, or null where unset.</summary>
    public static string? Get(string name)
    {
        var p = getenv(name);
        return p == IntPtr.Zero ? null : Marshal.PtrToStringUTF8(p);
    }

    /// <summary>Sets the variable unless it is set already; true on success.</summary>
    public static bool SetIfUnset(string name, string value) => setenv(name, value, 0) == 0;

    [DllImport("libc.so.6")] static extern IntPtr getenv(string name);
    [DllImport("libc.so.6")] static extern int setenv(string name, string value, int overwrite);
}
