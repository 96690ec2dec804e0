namespace DreamBooth.Engine.Sources;

/// <summary>
/// The huggingface_hub cache layout: <c>models--owner--name/refs/&lt;revision&gt;</c> holds a commit hash,
/// <c>snapshots/&lt;commit&gt;/&lt;path&gt;</c> are the files (symlinks to <c>../../blobs/&lt;etag&gt;</c> on Linux/macOS,
/// plain files on Windows), <c>blobs/&lt;etag&gt;</c> the content (sha256 for LFS files, git sha1 otherwise).
/// </summary>
public sealed class HuggingFaceCache
{
    public string Root { get; }
    public HuggingFaceCache(string? root = null) => Root = root ?? DefaultCacheDir();

    /// <summary><c>HF_HOME</c>, else <c>$XDG_CACHE_HOME/huggingface</c>, else <c>~/.cache/huggingface</c>.</summary>
    public static string HfHome()
    {
        if (Environment.GetEnvironmentVariable("HF_HOME") is { Length: > 0 } home) return ExpandHome(home);
        var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        var cache = string.IsNullOrEmpty(xdg) ? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache") : ExpandHome(xdg);
        return Path.Combine(cache, "huggingface");
    }

    /// <summary><c>HF_HUB_CACHE</c> (or the older <c>HUGGINGFACE_HUB_CACHE</c>), else <c>HF_HOME/hub</c>.</summary>
    public static string DefaultCacheDir()
    {
        foreach (var v in new[] { "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE" })
            if (Environment.GetEnvironmentVariable(v) is { Length: > 0 } dir) return ExpandHome(dir);
        return Path.Combine(HfHome(), "hub");
    }

    static string ExpandHome(string path)
        => path.StartsWith("~/", StringComparison.Ordinal) || path == "~"
            ? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), path.Length > 2 ? path[2..] : "")
            : path;

    public string RepoFolder(HubModelId id) => Path.Combine(Root, id.CacheFolderName);
    public string BlobsFolder(HubModelId id) => Path.Combine(RepoFolder(id), "blobs");
    public string SnapshotFolder(HubModelId id, string commit) => Path.Combine(RepoFolder(id), "snapshots", commit);
    string RefFile(HubModelId id, string revision) => Path.Combine(RepoFolder(id), "refs", revision.Replace('/', Path.DirectorySeparatorChar));

    /// <summary>The commit a revision points at in the cache, or null.</summary>
    public string? CommitOf(HubModelId id)
    {
        if (HubModelId.IsCommitHash(id.Revision)) return id.Revision!.ToLowerInvariant();
        var file = RefFile(id, id.EffectiveRevision);
        if (!File.Exists(file)) return null;
        var commit = File.ReadAllText(file).Trim();
        return commit.Length > 0 ? commit : null;
    }

    public void WriteRef(HubModelId id, string commit)
    {
        if (HubModelId.IsCommitHash(id.Revision)) return;
        var file = RefFile(id, id.EffectiveRevision);
        Directory.CreateDirectory(Path.GetDirectoryName(file)!);
        if (File.Exists(file) && File.ReadAllText(file).Trim() == commit) return;
        File.WriteAllText(file, commit);
    }

    /// <summary>The snapshot folder of a model already in the cache (it must hold model_index.json), or null.</summary>
    public string? Resolve(HubModelId id)
    {
        var commit = CommitOf(id);
        if (commit is null) return null;
        var folder = SnapshotFolder(id, commit);
        return FileIsReadable(Path.Combine(folder, "model_index.json")) ? folder : null;
    }

    /// <summary>True for a file, or a symlink whose blob exists (a dangling link is a missing file).</summary>
    public static bool FileIsReadable(string path)
    {
        var info = new FileInfo(path);
        if (!info.Exists) return false;
        if (info.LinkTarget is null) return true;
        return info.ResolveLinkTarget(returnFinalTarget: true) is { Exists: true };
    }

    /// <summary>
    /// The file a snapshot entry stands for (the blob behind a symlink). Needed because
    /// <c>SafetensorsFile.Open</c> takes <c>FileInfo.Length</c>, which for a symlink is the link's own length.
    /// </summary>
    public static string RealPath(string path)
    {
        var info = new FileInfo(path);
        return info.LinkTarget is null ? info.FullName : info.ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? info.FullName;
    }

    /// <summary>
    /// Puts a finished blob at its snapshot path: a relative symlink where the OS allows one (as huggingface_hub does
    /// on Linux/macOS), otherwise a copy (Windows without developer mode).
    /// </summary>
    public static void LinkIntoSnapshot(string blob, string snapshotFile)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(snapshotFile)!);
        if (File.Exists(snapshotFile) || new FileInfo(snapshotFile).LinkTarget is not null) File.Delete(snapshotFile);
        if (!OperatingSystem.IsWindows())
        {
            try
            {
                File.CreateSymbolicLink(snapshotFile, Path.GetRelativePath(Path.GetDirectoryName(snapshotFile)!, blob));
                return;
            }
            catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
        File.Copy(blob, snapshotFile, overwrite: true);
    }
}
