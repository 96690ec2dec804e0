using System.Security.Cryptography;
using DreamBooth.Engine.Sources;

namespace DreamBooth.Engine.Tests.Sources;

public sealed class HuggingFaceCacheTests : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("db-hfcache-").FullName;
    public void Dispose() { try { Directory.Delete(_root, true); } catch { } }

    /// <summary>Lays tiny-sd out as huggingface_hub does: blobs named by sha256, snapshot entries linking to them (copies on Windows).</summary>
    string PlaceLikeHuggingFaceHub(string repoFolderName, string commit, string? refName)
    {
        var repo = Path.Combine(_root, repoFolderName);
        var blobs = Directory.CreateDirectory(Path.Combine(repo, "blobs")).FullName;
        var snapshot = Path.Combine(repo, "snapshots", commit);
        foreach (var file in Directory.EnumerateFiles(Fixtures.TinySd, "*", SearchOption.AllDirectories))
        {
            var rel = Path.GetRelativePath(Fixtures.TinySd, file);
            var blob = Path.Combine(blobs, Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(file))).ToLowerInvariant());
            File.Copy(file, blob, overwrite: true);
            var target = Path.Combine(snapshot, rel);
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            if (OperatingSystem.IsWindows()) File.Copy(blob, target);
            else File.CreateSymbolicLink(target, Path.GetRelativePath(Path.GetDirectoryName(target)!, blob));
        }
        if (refName is not null)
        {
            Directory.CreateDirectory(Path.Combine(repo, "refs"));
            File.WriteAllText(Path.Combine(repo, "refs", refName), commit); // huggingface_hub writes no newline
        }
        return snapshot;
    }

    [Fact]
    public void Hub_id_resolves_to_a_symlinked_snapshot_and_loads_offline()
    {
        const string commit = "fedcba9876543210fedcba9876543210fedcba98";
        var snapshot = PlaceLikeHuggingFaceHub("models--someone--tiny-sd", commit, "main");
        var cache = new HuggingFaceCache(_root);
        Assert.Equal(snapshot, cache.Resolve(HubModelId.Parse("someone/tiny-sd")));
        Assert.Equal(snapshot, cache.Resolve(HubModelId.Parse("someone/tiny-sd@" + commit)));
        Assert.Null(cache.Resolve(HubModelId.Parse("someone/tiny-sd@v2")));
        Assert.Null(cache.Resolve(HubModelId.Parse("someone/other")));

        if (!OperatingSystem.IsWindows()) Assert.NotNull(new FileInfo(Path.Combine(snapshot, "unet", "config.json")).LinkTarget);
        // Reading through the links gives the model's bytes (RealPath until SafetensorsFile.Open follows links itself).
        using (var f = DreamBooth.Engine.IO.SafetensorsFile.Open(HuggingFaceCache.RealPath(Path.Combine(snapshot, "unet", "diffusion_pytorch_model.safetensors"))))
            Assert.Equal(304, f.Entries.Count);
        // A single-file export straight from the symlinked snapshot works and matches the fixture's.
        var fromCache = Path.Combine(_root, "from-cache.safetensors");
        var fromFixture = Path.Combine(_root, "from-fixture.safetensors");
        LdmCheckpoint.Export(snapshot, fromCache);
        LdmCheckpoint.Export(Fixtures.TinySd, fromFixture);
        Assert.Equal(File.ReadAllBytes(fromFixture), File.ReadAllBytes(fromCache));

        // An offline downloader returns it without any endpoint.
        using var d = new HubDownloader(new HubOptions { CacheDir = _root, Offline = true, Endpoint = "http://127.0.0.1:9" });
        Assert.Equal(snapshot, d.EnsureSnapshot(HubModelId.Parse("someone/tiny-sd")));
    }

    [Fact]
    public void SafetensorsFile_opens_a_symlinked_snapshot_file_directly()
    {
        var snapshot = PlaceLikeHuggingFaceHub("models--someone--tiny-sd", "2222222222222222222222222222222222222222", "main");
        using var f = DreamBooth.Engine.IO.SafetensorsFile.Open(Path.Combine(snapshot, "unet", "diffusion_pytorch_model.safetensors"));
        Assert.Equal(304, f.Entries.Count);
    }

    [Fact]
    public void A_dangling_link_counts_as_missing()
    {
        if (OperatingSystem.IsWindows()) return;
        var snapshot = PlaceLikeHuggingFaceHub("models--someone--tiny-sd", "1111111111111111111111111111111111111111", "main");
        var unet = Path.Combine(snapshot, "unet", "diffusion_pytorch_model.safetensors");
        File.Delete(new FileInfo(unet).ResolveLinkTarget(true)!.FullName);
        Assert.False(HuggingFaceCache.FileIsReadable(unet));
        using var d = new HubDownloader(new HubOptions { CacheDir = _root, Offline = true });
        var e = Assert.Throws<ModelSourceException>(() => d.EnsureSnapshot(HubModelId.Parse("someone/tiny-sd")));
        Assert.Contains("unet/diffusion_pytorch_model.safetensors", e.Message);
    }

    [Fact]
    public void Cache_dir_follows_HF_HUB_CACHE_then_HF_HOME()
    {
        var saved = (Environment.GetEnvironmentVariable("HF_HUB_CACHE"), Environment.GetEnvironmentVariable("HF_HOME"), Environment.GetEnvironmentVariable("HUGGINGFACE_HUB_CACHE"));
        try
        {
            Environment.SetEnvironmentVariable("HUGGINGFACE_HUB_CACHE", null);
            Environment.SetEnvironmentVariable("HF_HUB_CACHE", "/x/hub-cache");
            Environment.SetEnvironmentVariable("HF_HOME", "/y/hf-home");
            Assert.Equal("/x/hub-cache", HuggingFaceCache.DefaultCacheDir());
            Environment.SetEnvironmentVariable("HF_HUB_CACHE", null);
            Assert.Equal(Path.Combine("/y/hf-home", "hub"), HuggingFaceCache.DefaultCacheDir());
            Environment.SetEnvironmentVariable("HF_HOME", null);
            Assert.EndsWith(Path.Combine("huggingface", "hub"), HuggingFaceCache.DefaultCacheDir());
        }
        finally
        {
            Environment.SetEnvironmentVariable("HF_HUB_CACHE", saved.Item1);
            Environment.SetEnvironmentVariable("HF_HOME", saved.Item2);
            Environment.SetEnvironmentVariable("HUGGINGFACE_HUB_CACHE", saved.Item3);
        }
    }

    [Theory]
    [InlineData("CompVis/stable-diffusion-v1-4", "CompVis", "stable-diffusion-v1-4", null)]
    [InlineData("stabilityai/stable-diffusion-2-1@fp16", "stabilityai", "stable-diffusion-2-1", "fp16")]
    [InlineData("a.b/c_d@refs/pr/1", "a.b", "c_d", "refs/pr/1")]
    public void Hub_ids_parse(string text, string owner, string name, string? revision)
    {
        Assert.True(HubModelId.TryParse(text, out var id));
        Assert.Equal((owner, name, revision), (id.Owner, id.Name, id.Revision));
        Assert.Equal($"models--{owner}--{name}", id.CacheFolderName);
    }

    [Theory]
    [InlineData("model.safetensors")]
    [InlineData("a/b/c")]
    [InlineData("../etc")]
    [InlineData("a--b/c")]
    [InlineData("owner/name@")]
    [InlineData("C:\\models\\x")]
    [InlineData("owner/na..me")]
    public void Non_ids_do_not_parse(string text) => Assert.False(HubModelId.TryParse(text, out _));

    [Fact]
    public void Model_argument_is_classified()
    {
        Assert.Equal(ModelSourceKind.DiffusersFolder, ModelSource.Classify(Fixtures.TinySd).Kind);
        var hub = ModelSource.Classify("someone/tiny-sd@main");
        Assert.Equal(ModelSourceKind.HubId, hub.Kind);
        Assert.Equal("main", hub.HubId!.Revision);
        var ckpt = Path.Combine(_root, "m.ckpt");
        File.WriteAllBytes(ckpt, new byte[] { 0x80, 2 });
        Assert.Contains("pickle", Assert.Throws<ModelSourceException>(() => ModelSource.Classify(ckpt)).Message);
        var single = Path.Combine(_root, "m.safetensors");
        LdmCheckpoint.Export(Fixtures.TinySd, single);
        Assert.Equal(ModelSourceKind.SingleFile, ModelSource.Classify(single).Kind);
        Assert.Throws<ModelSourceException>(() => ModelSource.Classify(Path.Combine(Fixtures.TinySd, "unet", "diffusion_pytorch_model.safetensors")));
    }
}
