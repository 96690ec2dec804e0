using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text.Json.Nodes;

namespace DreamBooth.Engine.Sources;

/// <summary>
/// Makes a Hub model's pipeline files present in the huggingface_hub cache, downloading only what is missing
/// (configs, tokenizer, safetensors weights; never pickles), resuming partial downloads and checking sha256.
/// </summary>
public sealed class HubDownloader : IDisposable
{
    /// <summary>The components a Stable Diffusion pipeline needs, and the stem of their weights file.</summary>
    static readonly (string Folder, string? WeightsStem)[] s_components =
    {
        ("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"), ("text_encoder", "model"),
        ("tokenizer", null), ("scheduler", null),
    };

    readonly HubOptions _options;
    readonly HttpClient _http;
    readonly bool _ownsClient;
    public HuggingFaceCache Cache { get; }

    public HubDownloader(HubOptions options, HttpClient? http = null)
    {
        _options = options;
        Cache = new HuggingFaceCache(options.CacheDir);
        _ownsClient = http is null;
        // Redirects to the LFS CDN are followed; .NET drops the Authorization header on them, as it should.
        _http = http ?? new HttpClient(new SocketsHttpHandler { AllowAutoRedirect = true, AutomaticDecompression = DecompressionMethods.None })
        { Timeout = Timeout.InfiniteTimeSpan };
    }

    public void Dispose() { if (_ownsClient) _http.Dispose(); }

    /// <summary>The repository files a pipeline needs, preferring the weights variant when the repository has it.</summary>
    public static IReadOnlyList<HubRepoFile> SelectPipelineFiles(IReadOnlyList<HubRepoFile> siblings, string? variant)
    {
        var byPath = siblings.ToDictionary(s => s.Path, StringComparer.Ordinal);
        var result = new List<HubRepoFile>();
        if (!byPath.TryGetValue("model_index.json", out var index))
            throw new ModelSourceException("The repository has no model_index.json; it is not a diffusers pipeline.");
        result.Add(index);
        foreach (var (folder, stem) in s_components)
        {
            if (stem is null)
            {
                var files = siblings.Where(s => s.Path.StartsWith(folder + "/", StringComparison.Ordinal) && !s.Path[(folder.Length + 1)..].Contains('/')).ToList();
                if (files.Count == 0) throw new ModelSourceException($"The repository has no {folder}/ files.");
                result.AddRange(files);
                continue;
            }
            result.Add(byPath.TryGetValue($"{folder}/config.json", out var config) ? config
                : throw new ModelSourceException($"The repository has no {folder}/config.json."));
            HubRepoFile? weights = null;
            if (variant is not null) byPath.TryGetValue($"{folder}/{stem}.{variant}.safetensors", out weights);
            if (weights is null) byPath.TryGetValue($"{folder}/{stem}.safetensors", out weights);
            if (weights is null)
            {
                // No default weights but one variant (a repository of fp16 files, say): the loader takes that variant.
                var only = siblings.Where(s => s.Path.StartsWith($"{folder}/{stem}.", StringComparison.Ordinal) && s.Path.EndsWith(".safetensors", StringComparison.Ordinal)
                    && !s.Path[(folder.Length + stem.Length + 2)..^".safetensors".Length].Contains('.')).ToList();
                if (only.Count == 1) weights = only[0];
            }
            if (weights is null)
            {
                bool pickles = siblings.Any(s => s.Path.StartsWith(folder + "/", StringComparison.Ordinal) && (s.Path.EndsWith(".bin", StringComparison.Ordinal) || s.Path.EndsWith(".ckpt", StringComparison.Ordinal)));
                if (siblings.Any(s => s.Path.StartsWith($"{folder}/{stem}", StringComparison.Ordinal) && s.Path.EndsWith(".safetensors.index.json", StringComparison.Ordinal)))
                    throw new ModelSourceException($"The repository's {folder} weights are sharded, which is not supported.");
                throw new ModelSourceException(pickles
                    ? $"The repository has only pickle (.bin) weights for {folder}; pickles are refused because loading them can run code. Use a repository with safetensors weights."
                    : $"The repository has no {folder}/{stem}.safetensors{(variant is null ? "" : $" (nor the {variant} variant)")}.");
            }
            result.Add(weights);
        }
        return result;
    }

    /// <summary>
    /// The local snapshot folder of <paramref name="id"/>: from the cache when complete (nothing is downloaded; offline
    /// works), else filled from the Hub. Returns <c>…/models--owner--name/snapshots/&lt;commit&gt;</c>.
    /// </summary>
    public async Task<string> EnsureSnapshotAsync(HubModelId id, IProgress<DownloadProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        if (_options.Offline)
        {
            var cached = Cache.Resolve(id);
            if (cached is null)
                throw new ModelSourceException($"Model '{id}' is not in the Hugging Face cache ({Cache.Root}) and downloads are off (-Offline / HF_HUB_OFFLINE). Download it once while online, or point HF_HUB_CACHE at a cache that has it.");
            var missing = MissingLocalComponents(cached);
            if (missing is not null)
                throw new ModelSourceException($"Model '{id}' is only partly in the Hugging Face cache ({missing} is missing) and downloads are off (-Offline / HF_HUB_OFFLINE).");
            return cached;
        }

        string commit; IReadOnlyList<HubRepoFile> siblings;
        try { (commit, siblings) = await GetRepoInfoAsync(id, cancellationToken).ConfigureAwait(false); }
        catch (ModelSourceException e) when (e.InnerException is HttpRequestException && Cache.Resolve(id) is { } cached && MissingLocalComponents(cached) is null)
        {
            // As huggingface_hub does: the Hub is unreachable, but the cache has the model.
            return cached;
        }
        var needed = SelectPipelineFiles(siblings, _options.Variant);
        var snapshot = Cache.SnapshotFolder(id, commit);
        Directory.CreateDirectory(Cache.BlobsFolder(id));
        for (int i = 0; i < needed.Count; i++)
        {
            var file = needed[i];
            var target = Path.Combine(snapshot, file.Path.Replace('/', Path.DirectorySeparatorChar));
            if (HuggingFaceCache.FileIsReadable(target))
            {
                progress?.Report(new DownloadProgress(file.Path, file.Size ?? 0, file.Size, i + 1, needed.Count, FromCache: true));
                continue;
            }
            await DownloadFileAsync(id, commit, file, target, i + 1, needed.Count, progress, cancellationToken).ConfigureAwait(false);
        }
        Cache.WriteRef(id, commit);
        return snapshot;
    }

    /// <summary>Synchronous wrapper for callers (cmdlets) that are not async.</summary>
    public string EnsureSnapshot(HubModelId id, IProgress<DownloadProgress>? progress = null, CancellationToken cancellationToken = default)
        => EnsureSnapshotAsync(id, progress, cancellationToken).GetAwaiter().GetResult();

    /// <summary>The first pipeline file a cached snapshot lacks (by the same rule as a download), or null.</summary>
    static string? MissingLocalComponents(string snapshot)
    {
        foreach (var (folder, stem) in s_components)
        {
            if (stem is null) { if (!Directory.Exists(Path.Combine(snapshot, folder))) return folder + "/"; continue; }
            if (!HuggingFaceCache.FileIsReadable(Path.Combine(snapshot, folder, "config.json"))) return folder + "/config.json";
            bool any = Directory.Exists(Path.Combine(snapshot, folder))
                       && Directory.EnumerateFileSystemEntries(Path.Combine(snapshot, folder), stem + "*.safetensors").Any(HuggingFaceCache.FileIsReadable);
            if (!any) return $"{folder}/{stem}.safetensors";
        }
        return null;
    }

    HttpRequestMessage Request(string url)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, url);
        if (!string.IsNullOrEmpty(_options.Token)) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _options.Token);
        request.Headers.UserAgent.ParseAdd("DreamBooth-PowerShell/1.0");
        return request;
    }

    async Task<(string Commit, IReadOnlyList<HubRepoFile> Siblings)> GetRepoInfoAsync(HubModelId id, CancellationToken ct)
    {
        var url = $"{_options.Endpoint.TrimEnd('/')}/api/models/{id.RepoId}/revision/{Uri.EscapeDataString(id.EffectiveRevision)}?blobs=true";
        using var response = await SendAsync(Request(url), id, ct).ConfigureAwait(false);
        var json = JsonNode.Parse(await response.Content.ReadAsStringAsync(ct).ConfigureAwait(false)) as JsonObject
                   ?? throw new ModelSourceException($"The Hub's answer for '{id}' is not a JSON object.");
        var commit = json["sha"]?.GetValue<string>() ?? throw new ModelSourceException($"The Hub's answer for '{id}' has no commit (sha).");
        if (!HubModelId.IsCommitHash(commit)) throw new ModelSourceException($"The Hub's commit for '{id}' is not a commit hash.");
        var siblings = (json["siblings"] as JsonArray ?? new JsonArray()).OfType<JsonObject>().Select(s => new HubRepoFile(
            s["rfilename"]!.GetValue<string>(),
            s["size"]?.GetValue<long>() ?? s["lfs"]?["size"]?.GetValue<long>(),
            s["lfs"]?["sha256"]?.GetValue<string>())).ToList();
        foreach (var s in siblings)
            if (s.Path.Split('/').Any(p => p is "" or "." or ".."))
                throw new ModelSourceException($"The Hub listed an unsafe file name '{s.Path}' for '{id}'.");
        return (commit, siblings);
    }

    async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, HubModelId id, CancellationToken ct)
    {
        HttpResponseMessage response;
        try { response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct).ConfigureAwait(false); }
        catch (HttpRequestException e)
        { throw new ModelSourceException($"Could not reach {_options.Endpoint} for '{id}' ({e.Message}). Use -Offline to load from the cache only.", e); }
        if (response.IsSuccessStatusCode) return response;
        var status = (int)response.StatusCode;
        response.Dispose();
        throw new ModelSourceException(status switch
        {
            401 or 403 => $"The Hub refused access to '{id}' (HTTP {status}). For gated or private models accept the license on the model page and set HF_TOKEN.",
            404 => $"The Hub has no model '{id}' (HTTP 404); check the id and revision.",
            _ => $"The Hub answered HTTP {status} for '{id}' ({request.RequestUri?.AbsolutePath}).",
        });
    }

    async Task DownloadFileAsync(HubModelId id, string commit, HubRepoFile file, string target, int index, int count, IProgress<DownloadProgress>? progress, CancellationToken ct)
    {
        var url = $"{_options.Endpoint.TrimEnd('/')}/{id.RepoId}/resolve/{commit}/{string.Join('/', file.Path.Split('/').Select(Uri.EscapeDataString))}";
        var blobs = Cache.BlobsFolder(id);
        // LFS files are named by their sha256, known in advance, so a partial download can be found and resumed.
        var knownEtag = file.Sha256?.ToLowerInvariant();
        var partial = Path.Combine(blobs, (knownEtag ?? "tmp-" + Convert.ToHexString(SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(commit + "/" + file.Path))).ToLowerInvariant()[..16]) + ".incomplete");
        long have = File.Exists(partial) ? new FileInfo(partial).Length : 0;

        var request = Request(url);
        if (have > 0) request.Headers.Range = new RangeHeaderValue(have, null);
        using var response = await SendAsync(request, id, ct).ConfigureAwait(false);
        var etag = knownEtag ?? EtagOf(response) ?? throw new ModelSourceException($"The Hub sent no ETag for '{file.Path}' of '{id}'.");
        if (response.StatusCode != HttpStatusCode.PartialContent) have = 0; // the server ignored the range: start over

        long? total = file.Size ?? (response.Content.Headers.ContentLength is { } len ? len + have : null);
        await using (var output = new FileStream(partial, have > 0 ? FileMode.Append : FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20, useAsync: true))
        await using (var input = await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false))
        {
            var buffer = new byte[1 << 20];
            long done = have;
            var lastReport = DateTime.MinValue;
            int read;
            while ((read = await input.ReadAsync(buffer, ct).ConfigureAwait(false)) > 0)
            {
                await output.WriteAsync(buffer.AsMemory(0, read), ct).ConfigureAwait(false);
                done += read;
                if (DateTime.UtcNow - lastReport > TimeSpan.FromMilliseconds(250)) { progress?.Report(new DownloadProgress(file.Path, done, total, index, count)); lastReport = DateTime.UtcNow; }
            }
            progress?.Report(new DownloadProgress(file.Path, done, total, index, count));
        }

        VerifyDownload(partial, file, etag, id);
        var blob = Path.Combine(blobs, etag);
        File.Move(partial, blob, overwrite: true);
        HuggingFaceCache.LinkIntoSnapshot(blob, target);
    }

    /// <summary>LFS files must match the Hub's sha256; small git files their git blob sha1 (the ETag) when it has that form.</summary>
    static void VerifyDownload(string partial, HubRepoFile file, string etag, HubModelId id)
    {
        long length = new FileInfo(partial).Length;
        if (file.Size is { } size && size != length)
        {
            if (length > size) File.Delete(partial); // cannot be resumed into a valid file
            throw new ModelSourceException($"Download of '{file.Path}' of '{id}' is incomplete ({length} of {size} bytes); run again to resume.");
        }
        if (file.Sha256 is not null)
        {
            using var stream = File.OpenRead(partial);
            var actual = Convert.ToHexString(SHA256.HashData(stream)).ToLowerInvariant();
            stream.Dispose();
            if (actual != file.Sha256.ToLowerInvariant())
            {
                File.Delete(partial);
                throw new ModelSourceException($"Checksum mismatch for '{file.Path}' of '{id}': sha256 {actual}, the Hub lists {file.Sha256}. The file was discarded.");
            }
        }
        else if (etag.Length == 40 && etag.All(Uri.IsHexDigit))
        {
            var bytes = File.ReadAllBytes(partial);
            var header = System.Text.Encoding.ASCII.GetBytes($"blob {bytes.Length}\0");
            var actual = Convert.ToHexString(SHA1.HashData(header.Concat(bytes).ToArray())).ToLowerInvariant();
            if (actual != etag.ToLowerInvariant())
            {
                File.Delete(partial);
                throw new ModelSourceException($"Checksum mismatch for '{file.Path}' of '{id}': git sha1 {actual}, the Hub's ETag is {etag}. The file was discarded.");
            }
        }
    }

    /// <summary><c>X-Linked-Etag</c> (LFS, behind a redirect) else <c>ETag</c>, without quotes and weak marker, as huggingface_hub does.</summary>
    static string? EtagOf(HttpResponseMessage response)
    {
        string? raw = response.Headers.TryGetValues("X-Linked-Etag", out var linked) ? linked.FirstOrDefault()
            : response.Headers.ETag?.Tag;
        if (raw is null) return null;
        if (raw.StartsWith("W/", StringComparison.Ordinal)) raw = raw[2..];
        raw = raw.Trim('"');
        return raw.Length > 0 && raw.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_') ? raw : null;
    }
}
