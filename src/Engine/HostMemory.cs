using System.Globalization;
using System.Runtime.InteropServices;

namespace DreamBooth.Engine;

/// <summary>
/// How much host memory a run can still take. On Linux a process that outgrows it is not given an error: the kernel's
/// OOM killer ends it, and with it the user's pwsh; so work whose known needs exceed it is refused before it starts.
/// </summary>
public static class HostMemory
{
    /// <summary>
    /// Bytes that new allocations can still get: Linux's MemAvailable plus free swap, within the cgroup's limit (a
    /// container's); on Windows the commit charge still available. Null where the OS does not say.
    /// </summary>
    public static long? AvailableBytes()
    {
        try
        {
            if (OperatingSystem.IsLinux()) return LinuxAvailable();
            if (OperatingSystem.IsWindows()) return WindowsAvailable();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException) { }
        return null;
    }

    static long? LinuxAvailable()
    {
        long? memAvailable = null, swapFree = null;
        foreach (var line in File.ReadLines("/proc/meminfo"))
        {
            if (line.StartsWith("MemAvailable:", StringComparison.Ordinal)) memAvailable = Kilobytes(line);
            else if (line.StartsWith("SwapFree:", StringComparison.Ordinal)) swapFree = Kilobytes(line);
        }
        if (memAvailable is not long available) return null;
        available += swapFree ?? 0;
        if (CgroupHeadroom() is long headroom) available = Math.Min(available, headroom);
        return available;
    }

    /// <summary>
    /// What the process's memory cgroups (a container's, a systemd slice's) still allow, the tightest level counted:
    /// limit minus usage, less the inactive file cache the kernel reclaims first (as docker stats counts usage).
    /// cgroup v2 (memory.max, memory.current) and v1 (memory.limit_in_bytes, memory.usage_in_bytes). Null when unlimited.
    /// </summary>
    static long? CgroupHeadroom()
    {
        long? tightest = null;
        foreach (var line in File.ReadLines("/proc/self/cgroup"))
        {
            var parts = line.Split(':', 3);
            if (parts.Length != 3) continue;
            var (root, limitFile, usageFile, inactiveKey) = parts[1] switch
            {
                "" when parts[0] == "0" => ("/sys/fs/cgroup", "memory.max", "memory.current", "inactive_file"),
                var c when c.Split(',').Contains("memory") => ("/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"),
                _ => (null, "", "", ""),
            };
            if (root is null) continue;
            // From the process's own group up to the mount's root (a container may see only its own group as the root).
            for (var dir = Path.Combine(root, parts[2].TrimStart('/')); dir.Length >= root.Length; dir = Path.GetDirectoryName(dir) ?? "")
            {
                if (ReadNumber(Path.Combine(dir, limitFile)) is long limit && limit < (1L << 60) && ReadNumber(Path.Combine(dir, usageFile)) is long usage)
                {
                    long inactive = StatValue(Path.Combine(dir, "memory.stat"), inactiveKey) ?? 0;
                    long headroom = Math.Max(0, limit - Math.Max(0, usage - inactive));
                    tightest = tightest is long t ? Math.Min(t, headroom) : headroom;
                }
                if (dir == root) break;
            }
        }
        return tightest;
    }

    static long? ReadNumber(string path) =>
        File.Exists(path) && long.TryParse(File.ReadAllText(path).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : null;

    static long? StatValue(string path, string key)
    {
        if (!File.Exists(path)) return null;
        foreach (var line in File.ReadLines(path))
            if (line.StartsWith(key + " ", StringComparison.Ordinal)
                && long.TryParse(line[(key.Length + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var v)) return v;
        return null;
    }

    static long Kilobytes(string meminfoLine) =>
        long.Parse(meminfoLine.Split(':')[1].Trim().Split(' ')[0], NumberStyles.None, CultureInfo.InvariantCulture) * 1024;

    [StructLayout(LayoutKind.Sequential)]
    struct MemoryStatusEx
    {
        public uint Length, MemoryLoad;
        public ulong TotalPhys, AvailPhys, TotalPageFile, AvailPageFile, TotalVirtual, AvailVirtual, AvailExtendedVirtual;
    }

    [DllImport("kernel32.dll", SetLastError = true)]
    [return: MarshalAs(UnmanagedType.Bool)]
    static extern bool GlobalMemoryStatusEx(ref MemoryStatusEx status);

    static long? WindowsAvailable()
    {
        var status = new MemoryStatusEx { Length = (uint)Marshal.SizeOf<MemoryStatusEx>() };
        return GlobalMemoryStatusEx(ref status) ? (long)status.AvailPageFile : null;
    }

    public static string Gigabytes(long bytes) => (bytes / 1073741824.0).ToString("F1", CultureInfo.InvariantCulture) + " GB";
}
