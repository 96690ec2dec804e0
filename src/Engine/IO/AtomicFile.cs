namespace DreamBooth.Engine.IO;

/// <summary>
/// Writes a file under a hidden unique temporary name in the destination folder, flushes it to disk, then renames it over
/// the destination, so readers and crashes never see a partial file under the real name. On Windows the rename
/// (MoveFileEx with REPLACE_EXISTING) fails while the destination is open without delete sharing or memory-mapped;
/// on Unix rename(2) replaces it atomically and open readers keep the old contents.
/// </summary>
public static class AtomicFile
{
    public static void Write(string path, Action<Stream> write)
    {
        path = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(path)!;
        Directory.CreateDirectory(dir);
        var tmp = Path.Combine(dir, "." + Path.GetFileName(path) + "." + Guid.NewGuid().ToString("N")[..8] + ".tmp");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                write(fs);
                fs.Flush(true);
            }
            try { File.Move(tmp, path, overwrite: true); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new IOException($"Could not replace '{path}' with the newly written file ({e.Message}). Is it open in another program or still loaded in this session?", e);
            }
        }
        catch
        {
            try { File.Delete(tmp); } catch { /* best effort: the temp name is hidden and unique */ }
            throw;
        }
    }
}
