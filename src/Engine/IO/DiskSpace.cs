namespace DreamBooth.Engine.IO;

/// <summary>Where a path is or would be created: its drive's (Windows) or mount's (Linux) free space, and whether it can be written.</summary>
public static class DiskSpace
{
    /// <summary>Bytes available to this user where <paramref name="path"/> is or would be; null where that cannot be told.</summary>
    public static long? FreeBytes(string path)
    {
        try
        {
            var existing = NearestExisting(path);
            if (existing is null) return null;
            if (!Directory.Exists(existing)) existing = Path.GetDirectoryName(existing)!;   // a file in the way: its folder's drive
            var cmp = OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
            // The mount whose root is the longest prefix of the path (on Linux / is a prefix of everything).
            var drive = DriveInfo.GetDrives()
                .Where(d => d.IsReady && IsUnder(existing, d.RootDirectory.FullName, cmp))
                .MaxBy(d => d.RootDirectory.FullName.Length);
            return drive?.AvailableFreeSpace;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException) { return null; }
    }

    /// <summary>
    /// The longest part of <paramref name="path"/> that exists: the folder itself, or the parent a new folder would be
    /// created in, or a file standing where a folder of the path should be; null when nothing of it exists.
    /// </summary>
    public static string? NearestExisting(string path)
    {
        for (string? p = Path.GetFullPath(path); p is not null; p = Path.GetDirectoryName(p))
            if (Directory.Exists(p) || File.Exists(p)) return p;
        return null;
    }

    /// <summary>
    /// Whether <paramref name="folder"/> can be written, or created: a file is written and deleted in it, or in its
    /// nearest existing parent, so nothing is left behind (what -WhatIf allows). Throws UnauthorizedAccessException
    /// that starts with <paramref name="problem"/> and ends with <paramref name="fix"/>.
    /// </summary>
    public static void EnsureWritable(string folder, string problem, string fix)
    {
        var existing = NearestExisting(folder) ?? throw new UnauthorizedAccessException($"{problem}: no part of the path exists. {fix}");
        if (File.Exists(existing)) throw new UnauthorizedAccessException($"{problem}: '{existing}' is a file. {fix}");
        try
        {
            var probe = Path.Combine(existing, ".write-test-" + Guid.NewGuid().ToString("N"));
            File.WriteAllText(probe, "");
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UnauthorizedAccessException($"{problem}: {e.Message} {fix}", e);
        }
    }

    static bool IsUnder(string path, string root, StringComparison cmp)
    {
        var r = root.EndsWith(Path.DirectorySeparatorChar) ? root : root + Path.DirectorySeparatorChar;
        return path.Equals(root, cmp) || (path + Path.DirectorySeparatorChar).StartsWith(r, cmp);
    }
}
