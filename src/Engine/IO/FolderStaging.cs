namespace DreamBooth.Engine.IO;

/// <summary>
/// Writing a model folder without ever leaving it half-written: components are built in a staging folder beside the
/// output, then moved into place one entry at a time (each a rename on the same volume).
/// </summary>
public static class FolderStaging
{
    /// <summary>Copies a folder tree (e.g. a component the run did not change) into <paramref name="to"/>.</summary>
    public static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var f in Directory.EnumerateFiles(from)) File.Copy(f, Path.Combine(to, Path.GetFileName(f)), true);
        foreach (var d in Directory.EnumerateDirectories(from)) CopyDirectory(d, Path.Combine(to, Path.GetFileName(d)));
    }

    /// <summary>Moves every entry of <paramref name="staging"/> into <paramref name="output"/>, replacing entries of the same name.</summary>
    public static void PublishInto(string staging, string output)
    {
        foreach (var entry in Directory.EnumerateFileSystemEntries(staging))
        {
            var dest = Path.Combine(output, Path.GetFileName(entry));
            if (Directory.Exists(dest)) Directory.Delete(dest, true);
            else if (File.Exists(dest)) File.Delete(dest);
            if (Directory.Exists(entry)) Directory.Move(entry, dest); else File.Move(entry, dest);
        }
    }
}
