using DreamBooth.Engine.Sources;

namespace DreamBooth.Engine.Tests.Sources;

/// <summary>The downloader against a loopback server that serves tests/fixtures/tiny-sd like the Hub; never the real Hub.</summary>
public sealed class HubDownloaderTests : IDisposable
{
    const string Repo = "test-owner/tiny-sd";
    const string UnetWeights = "unet/diffusion_pytorch_model.safetensors";
    readonly string _cache = Directory.CreateTempSubdirectory("db-hub-").FullName;
    readonly FakeHubServer _hub = new(Fixtures.TinySd, Repo, new[]
    {
        // Pickles and other frameworks' files the pipeline must never download.
        ("unet/diffusion_pytorch_model.bin", new byte[] { (byte)'P', (byte)'K', 1, 2 }),
        ("text_encoder/flax_model.msgpack", new byte[] { 1, 2, 3 }),
        ("README.md", "# tiny"u8.ToArray()),
    });

    public void Dispose()
    {
        _hub.Dispose();
        try { Directory.Delete(_cache, true); } catch { }
    }

    HubDownloader Downloader(bool offline = false, string? token = null)
        => new(new HubOptions { Endpoint = _hub.Endpoint, CacheDir = _cache, Offline = offline, Token = token });

    [Fact]
    public void Fresh_cache_is_filled_then_a_second_run_downloads_nothing()
    {
        var progress = new List<DownloadProgress>();
        string folder;
        using (var d = Downloader()) folder = d.EnsureSnapshot(HubModelId.Parse(Repo), new SyncProgress<DownloadProgress>(progress.Add));

        Assert.Equal(Path.Combine(_cache, "models--test-owner--tiny-sd", "snapshots", FakeHubServer.Commit), folder);
        Assert.Equal(FakeHubServer.Commit, File.ReadAllText(Path.Combine(_cache, "models--test-owner--tiny-sd", "refs", "main")));
        var expected = Directory.EnumerateFiles(Fixtures.TinySd, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(Fixtures.TinySd, f).Replace('\\', '/')).ToList();
        Assert.Equal(expected.Order(StringComparer.Ordinal), _hub.Downloads.Select(x => x.Path).Order(StringComparer.Ordinal));
        foreach (var rel in expected)
        {
            var local = Path.Combine(folder, rel);
            Assert.Equal(_hub.Bytes(rel), File.ReadAllBytes(local));
            if (!OperatingSystem.IsWindows())
                Assert.StartsWith(Path.Combine("..", "..", rel.Contains('/') ? ".." : "", "blobs").Replace(Path.DirectorySeparatorChar + Path.DirectorySeparatorChar.ToString(), Path.DirectorySeparatorChar.ToString()),
                    new FileInfo(local).LinkTarget!);
        }
        Assert.True(File.Exists(Path.Combine(_cache, "models--test-owner--tiny-sd", "blobs", FakeHubServer.Sha256(_hub.Bytes(UnetWeights)))));
        Assert.Contains(progress, p => p.File == UnetWeights && p.BytesDone == p.BytesTotal && !p.FromCache);

        int before = _hub.Downloads.Count;
        using (var d = Downloader()) Assert.Equal(folder, d.EnsureSnapshot(HubModelId.Parse(Repo)));
        Assert.Equal(before, _hub.Downloads.Count);

        // Offline now resolves from the cache without asking the server anything.
        int api = _hub.ApiCalls;
        using (var d = Downloader(offline: true)) Assert.Equal(folder, d.EnsureSnapshot(HubModelId.Parse(Repo)));
        Assert.Equal(api, _hub.ApiCalls);
        Assert.Equal(folder, new HuggingFaceCache(_cache).Resolve(HubModelId.Parse(Repo)));

        // Online but the Hub is unreachable: the cached snapshot is used.
        using (var d = new HubDownloader(new HubOptions { Endpoint = "http://127.0.0.1:9", CacheDir = _cache }))
            Assert.Equal(folder, d.EnsureSnapshot(HubModelId.Parse(Repo)));
    }

    [Fact]
    public void Unreachable_hub_and_empty_cache_fails_clearly()
    {
        using var d = new HubDownloader(new HubOptions { Endpoint = "http://127.0.0.1:9", CacheDir = _cache });
        var e = Assert.Throws<ModelSourceException>(() => d.EnsureSnapshot(HubModelId.Parse(Repo)));
        Assert.Contains("Could not reach", e.Message);
    }

    [Fact]
    public void An_interrupted_download_resumes_where_it_stopped()
    {
        _hub.DropHalfwayOnce[UnetWeights] = true;
        using (var d = Downloader())
            Assert.ThrowsAny<Exception>(() => d.EnsureSnapshot(HubModelId.Parse(Repo)));
        var total = _hub.Bytes(UnetWeights).Length;
        var partial = Path.Combine(_cache, "models--test-owner--tiny-sd", "blobs", FakeHubServer.Sha256(_hub.Bytes(UnetWeights)) + ".incomplete");
        Assert.True(File.Exists(partial));
        long have = new FileInfo(partial).Length;
        Assert.InRange(have, 1, total - 1);

        string folder;
        using (var d = Downloader()) folder = d.EnsureSnapshot(HubModelId.Parse(Repo));
        var unetRequests = _hub.Downloads.Where(x => x.Path == UnetWeights).ToList();
        Assert.Equal(2, unetRequests.Count);
        Assert.Equal($"bytes={have}-", unetRequests[1].Range);
        Assert.Equal(_hub.Bytes(UnetWeights), File.ReadAllBytes(Path.Combine(folder, UnetWeights)));
        Assert.False(File.Exists(partial));
    }

    [Fact]
    public void A_file_with_a_wrong_checksum_is_rejected()
    {
        _hub.Corrupt[UnetWeights] = true;
        using var d = Downloader();
        var e = Assert.Throws<ModelSourceException>(() => d.EnsureSnapshot(HubModelId.Parse(Repo)));
        Assert.Contains("Checksum mismatch", e.Message);
        Assert.Contains(UnetWeights, e.Message);
        var repo = Path.Combine(_cache, "models--test-owner--tiny-sd");
        Assert.False(File.Exists(Path.Combine(repo, "snapshots", FakeHubServer.Commit, UnetWeights)));
        Assert.Empty(Directory.EnumerateFiles(Path.Combine(repo, "blobs"), FakeHubServer.Sha256(_hub.Bytes(UnetWeights)) + "*"));
        Assert.Null(new HuggingFaceCache(_cache).Resolve(HubModelId.Parse(Repo)));
    }

    [Fact]
    public void Offline_with_a_missing_model_fails_clearly_without_network()
    {
        using var d = Downloader(offline: true);
        var e = Assert.Throws<ModelSourceException>(() => d.EnsureSnapshot(HubModelId.Parse(Repo)));
        Assert.Contains("not in the Hugging Face cache", e.Message);
        Assert.Contains("Offline", e.Message);
        Assert.Equal(0, _hub.ApiCalls);
        Assert.Empty(_hub.Downloads);
    }

    [Fact]
    public void Token_is_sent_and_never_appears_in_errors()
    {
        const string secret = "hf_secretTOKEN123";
        _hub.RequiredToken = secret;
        using (var d = Downloader(token: "hf_wrong_token_456"))
        {
            var e = Assert.Throws<ModelSourceException>(() => d.EnsureSnapshot(HubModelId.Parse(Repo)));
            Assert.Contains("HF_TOKEN", e.Message);
            Assert.DoesNotContain("hf_wrong_token_456", e.ToString());
        }
        using (var d = Downloader(token: secret))
            Assert.True(File.Exists(Path.Combine(d.EnsureSnapshot(HubModelId.Parse(Repo)), "model_index.json")));
    }

    [Fact]
    public void Variant_weights_are_preferred_and_pickles_never_selected()
    {
        var siblings = new[]
        {
            "model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.bin", "unet/diffusion_pytorch_model.safetensors",
            "unet/diffusion_pytorch_model.fp16.safetensors", "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
            "text_encoder/config.json", "text_encoder/model.fp16.safetensors", "text_encoder/pytorch_model.bin",
            "tokenizer/vocab.json", "tokenizer/merges.txt", "scheduler/scheduler_config.json", "safety_checker/model.safetensors",
        }.Select(p => new HubRepoFile(p, 1, null)).ToList();
        var fp16 = HubDownloader.SelectPipelineFiles(siblings, "fp16").Select(f => f.Path).ToList();
        Assert.Contains("unet/diffusion_pytorch_model.fp16.safetensors", fp16);
        Assert.Contains("vae/diffusion_pytorch_model.safetensors", fp16); // no fp16 variant: the plain file
        Assert.Contains("text_encoder/model.fp16.safetensors", fp16);
        Assert.DoesNotContain(fp16, p => p.EndsWith(".bin") || p.StartsWith("safety_checker"));
        Assert.Equal(10, fp16.Count);

        // Without a variant asked, a component with no default weights but one variant gets that variant.
        var plainRequest = HubDownloader.SelectPipelineFiles(siblings, null).Select(f => f.Path).ToList();
        Assert.Contains("unet/diffusion_pytorch_model.safetensors", plainRequest);
        Assert.Contains("text_encoder/model.fp16.safetensors", plainRequest);
        Assert.DoesNotContain(plainRequest, p => p.EndsWith(".bin"));

        // Without it, the text encoder has only a pickle: refuse the pickle.
        var plain = siblings.Where(s => s.Path != "text_encoder/model.fp16.safetensors").ToList();
        var e = Assert.Throws<ModelSourceException>(() => HubDownloader.SelectPipelineFiles(plain, null));
        Assert.Contains("pickle", e.Message);
    }

    /// <summary>Progress&lt;T&gt; posts to the thread pool; tests need the reports in order and complete.</summary>
    sealed class SyncProgress<T>(Action<T> report) : IProgress<T> { public void Report(T value) => report(value); }
}
