namespace DreamBooth.Engine.IO;

/// <summary>Free space of the drive (Windows) or mount (Linux) a path is on, or would be created on.</summary>
public static class DiskSpace
{
    /// <summary>Bytes available to this user where <paramref name="path"/> is or would be; null where that cannot be told.</summary>
    public static long? FreeBytes(string path)
    {
        try
        {
            var existing = Path.GetFullPath(path);
            while (!Directory.Exists(existing)) existing = Path.GetDirectoryName(existing) ?? throw new DirectoryNotFoundException(path);
            var cmp = OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
            // The mount whose root is the longest prefix of the path (on Linux / is a prefix of everything).
            var drive = DriveInfo.GetDrives()
                .Where(d => d.IsReady && IsUnder(existing, d.RootDirectory.FullName, cmp))
                .MaxBy(d => d.RootDirectory.FullName.Length);
            return drive?.AvailableFreeSpace;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException) { return null; }
    }

    static bool IsUnder(string path, string root, StringComparison cmp)
    {
        var r = root.EndsWith(Path.DirectorySeparatorChar) ? root : root + Path.DirectorySeparatorChar;
        return path.Equals(root, cmp) || (path + Path.DirectorySeparatorChar).StartsWith(r, cmp);
    }
}
