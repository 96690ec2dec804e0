using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;

namespace DreamBooth.Engine.Tests.Sources;

/// <summary>
/// A loopback HttpListener that serves a diffusers folder the way the Hub does: the model info API with
/// <c>siblings[].lfs.sha256</c>, and <c>resolve/{rev}/{path}</c> with X-Repo-Commit, ETag (sha256 for LFS files,
/// git blob sha1 otherwise) and Range support. Knobs simulate a dropped connection and a corrupted file.
/// </summary>
public sealed class FakeHubServer : IDisposable
{
    public const string Commit = "0123456789abcdef0123456789abcdef01234567";
    readonly HttpListener _listener = new();
    readonly string _folder;
    readonly string _repo;
    readonly Dictionary<string, byte[]> _files;
    readonly Task _loop;

    public string Endpoint { get; }
    public ConcurrentQueue<(string Path, string? Range)> Downloads { get; } = new();
    public int ApiCalls;
    /// <summary>Paths whose next download stops after half the bytes (the connection is dropped).</summary>
    public ConcurrentDictionary<string, bool> DropHalfwayOnce { get; } = new();
    /// <summary>Paths served with one byte flipped (while listed with the right sha256).</summary>
    public ConcurrentDictionary<string, bool> Corrupt { get; } = new();
    public string? RequiredToken { get; set; }

    public FakeHubServer(string folder, string repo, IEnumerable<(string Path, byte[] Bytes)>? extraFiles = null)
    {
        _folder = folder;
        _repo = repo;
        _files = Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories)
            .ToDictionary(f => Path.GetRelativePath(folder, f).Replace('\\', '/'), File.ReadAllBytes, StringComparer.Ordinal);
        foreach (var (p, b) in extraFiles ?? Array.Empty<(string, byte[])>()) _files[p] = b;
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        int port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        Endpoint = $"http://127.0.0.1:{port}";
        _listener.Prefixes.Add(Endpoint + "/");
        _listener.Start();
        _loop = Task.Run(Loop);
    }

    static bool IsLfs(string path) => path.EndsWith(".safetensors", StringComparison.Ordinal) || path.EndsWith(".bin", StringComparison.Ordinal);
    public static string Sha256(byte[] b) => Convert.ToHexString(SHA256.HashData(b)).ToLowerInvariant();
    static string GitSha1(byte[] b) => Convert.ToHexString(SHA1.HashData(Encoding.ASCII.GetBytes($"blob {b.Length}\0").Concat(b).ToArray())).ToLowerInvariant();
    public byte[] Bytes(string path) => _files[path];

    async Task Loop()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext ctx;
            try { ctx = await _listener.GetContextAsync(); }
            catch (Exception) { return; }
            try { Handle(ctx); }
            catch (Exception) { try { ctx.Response.Abort(); } catch { } }
        }
    }

    void Handle(HttpListenerContext ctx)
    {
        var req = ctx.Request; var res = ctx.Response;
        if (RequiredToken is not null && req.Headers["Authorization"] != "Bearer " + RequiredToken)
        { res.StatusCode = 401; res.Close(); return; }
        var path = Uri.UnescapeDataString(req.Url!.AbsolutePath);
        var api = $"/api/models/{_repo}/revision/";
        var resolve = $"/{_repo}/resolve/";
        if (path.StartsWith(api, StringComparison.Ordinal))
        {
            Interlocked.Increment(ref ApiCalls);
            var siblings = new JsonArray();
            foreach (var (p, b) in _files.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            {
                var s = new JsonObject { ["rfilename"] = p, ["size"] = b.Length };
                if (IsLfs(p)) s["lfs"] = new JsonObject { ["sha256"] = Sha256(b), ["size"] = b.Length, ["pointerSize"] = 134 };
                siblings.Add(s);
            }
            var body = Encoding.UTF8.GetBytes(new JsonObject { ["id"] = _repo, ["sha"] = Commit, ["siblings"] = siblings }.ToJsonString());
            res.ContentType = "application/json";
            res.OutputStream.Write(body);
            res.Close();
            return;
        }
        if (!path.StartsWith(resolve, StringComparison.Ordinal)) { res.StatusCode = 404; res.Close(); return; }
        var rest = path[resolve.Length..];
        var file = rest[(rest.IndexOf('/') + 1)..];
        if (!_files.TryGetValue(file, out var bytes)) { res.StatusCode = 404; res.Close(); return; }
        var range = req.Headers["Range"];
        Downloads.Enqueue((file, range));
        if (Corrupt.ContainsKey(file)) { bytes = (byte[])bytes.Clone(); bytes[^1] ^= 0xFF; }
        res.Headers["X-Repo-Commit"] = Commit;
        if (IsLfs(file)) { res.Headers["X-Linked-Etag"] = $"\"{Sha256(_files[file])}\""; res.Headers["ETag"] = $"\"{Sha256(_files[file])}\""; }
        else res.Headers["ETag"] = $"\"{GitSha1(_files[file])}\"";
        long start = 0;
        if (range is not null && range.StartsWith("bytes=", StringComparison.Ordinal) && range.EndsWith('-'))
        {
            start = long.Parse(range[6..^1]);
            res.StatusCode = 206;
            res.Headers["Content-Range"] = $"bytes {start}-{bytes.Length - 1}/{bytes.Length}";
        }
        res.ContentLength64 = bytes.Length - start;
        if (DropHalfwayOnce.TryRemove(file, out _))
        {
            res.OutputStream.Write(bytes, (int)start, (int)((bytes.Length - start) / 2));
            res.OutputStream.Flush();
            res.Abort();
            return;
        }
        res.OutputStream.Write(bytes, (int)start, (int)(bytes.Length - start));
        res.Close();
    }

    public void Dispose()
    {
        _listener.Stop();
        _listener.Close();
        try { _loop.Wait(2000); } catch { }
    }
}
