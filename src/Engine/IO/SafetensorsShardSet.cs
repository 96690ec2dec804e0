using System.Text.Json;
using static TorchSharp.torch;

namespace DreamBooth.Engine.IO;

/// <summary>
/// The shards of one sharded checkpoint (<c>*.safetensors.index.json</c> + <c>*-0000k-of-0000n.safetensors</c>, as
/// diffusers' and transformers' <c>save_pretrained</c> write them) opened as one logical state dict. Every shard is
/// memory-mapped; a tensor is read from the shard that holds it.
/// </summary>
public sealed class SafetensorsShardSet : ISafetensorsSource
{
    readonly List<SafetensorsFile> _files;
    readonly Dictionary<string, SafetensorsFile> _fileOf;

    public string Path { get; }
    public IReadOnlyList<SafetensorsFile> Files => _files;
    /// <summary>The index file's <c>metadata</c> object (e.g. <c>total_size</c>), as JSON text per key; empty for a plain file list.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    SafetensorsShardSet(string path, List<SafetensorsFile> files, Dictionary<string, SafetensorsFile> fileOf, Dictionary<string, string> metadata)
    { Path = path; _files = files; _fileOf = fileOf; Metadata = metadata; }

    public IEnumerable<string> Keys => _fileOf.Keys;
    public bool Contains(string name) => _fileOf.ContainsKey(name);
    public SafetensorsEntry this[string name] => FileOf(name)[name];
    public IEnumerable<SafetensorsEntry> Entries => _files.SelectMany(f => f.Entries);

    /// <summary>The shard that holds <paramref name="name"/>.</summary>
    public SafetensorsFile FileOf(string name) => _fileOf.TryGetValue(name, out var f) ? f
        : throw new KeyNotFoundException($"The checkpoint '{Path}' has no tensor named '{name}'.");

    public Tensor Read(string name, ScalarType? dtype = null, Device? device = null) => FileOf(name).Read(name, dtype, device);
    public void CopyInto(string name, Tensor target) => FileOf(name).CopyInto(name, target);

    public Dictionary<string, Tensor> ReadAll(ScalarType? dtype = null, Device? device = null)
    {
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var f in _files) foreach (var e in f.Entries) result[e.Name] = f.Read(e.Name, dtype, device);
        return result;
    }

    /// <summary>Opens several safetensors files as one state dict; a tensor name in two files is an error.</summary>
    public static SafetensorsShardSet Open(IEnumerable<string> files, string? description = null)
    {
        var paths = files.Select(System.IO.Path.GetFullPath).Distinct().ToList();
        if (paths.Count == 0) throw new ArgumentException("No safetensors files given.", nameof(files));
        var opened = new List<SafetensorsFile>();
        try
        {
            var fileOf = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
            foreach (var p in paths)
            {
                var f = SafetensorsFile.Open(p);
                opened.Add(f);
                foreach (var k in f.Keys)
                    if (!fileOf.TryAdd(k, f))
                        throw new SafetensorsFormatException(p, $"tensor '{k}' is also in '{fileOf[k].Path}'");
            }
            return new SafetensorsShardSet(description ?? paths[0], opened, fileOf, new Dictionary<string, string>());
        }
        catch { foreach (var f in opened) f.Dispose(); throw; }
    }

    /// <summary>
    /// Opens the shards listed by an index file (<c>{"metadata": {...}, "weight_map": {tensor: shard file}}</c>). Shard
    /// names must be plain file names next to the index; each listed tensor must be in its shard, and each shard's
    /// tensors must be listed.
    /// </summary>
    public static SafetensorsShardSet OpenIndex(string indexPath)
    {
        indexPath = System.IO.Path.GetFullPath(indexPath);
        var (shards, weightMap, metadata) = ReadIndex(indexPath);
        var dir = System.IO.Path.GetDirectoryName(indexPath)!;
        var missing = shards.Where(s => !File.Exists(System.IO.Path.Combine(dir, s))).ToList();
        if (missing.Count > 0)
            throw new FileNotFoundException($"The sharded checkpoint '{indexPath}' lists {missing.Count} shard(s) that do not exist: {string.Join(", ", missing)}.");
        var set = Open(shards.Select(s => System.IO.Path.Combine(dir, s)), indexPath);
        try
        {
            foreach (var (name, shard) in weightMap)
            {
                if (!set._fileOf.TryGetValue(name, out var f))
                    throw new SafetensorsFormatException(indexPath, $"the weight_map lists tensor '{name}' in '{shard}', but no shard holds it");
                if (!string.Equals(System.IO.Path.GetFileName(f.Path), shard, StringComparison.Ordinal))
                    throw new SafetensorsFormatException(indexPath, $"the weight_map puts tensor '{name}' in '{shard}', but it is in '{System.IO.Path.GetFileName(f.Path)}'");
            }
            var unlisted = set._fileOf.Keys.Where(k => !weightMap.ContainsKey(k)).Take(5).ToList();
            if (unlisted.Count > 0)
                throw new SafetensorsFormatException(indexPath, $"the shards hold tensors the weight_map does not list: {string.Join(", ", unlisted)}");
            return new SafetensorsShardSet(indexPath, set._files, set._fileOf, metadata);
        }
        catch { set.Dispose(); throw; }
    }

    /// <summary>The shard file names of an index file, in the order they first appear, with its weight_map and metadata.</summary>
    public static (IReadOnlyList<string> Shards, IReadOnlyDictionary<string, string> WeightMap, Dictionary<string, string> Metadata) ReadIndex(string indexPath)
    {
        if (!File.Exists(indexPath)) throw new FileNotFoundException($"Index file '{indexPath}' does not exist.", indexPath);
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllBytes(indexPath)); }
        catch (JsonException e) { throw new SafetensorsFormatException(indexPath, "the index is not valid JSON (" + e.Message + ")"); }
        using var _ = doc;
        if (doc.RootElement.ValueKind != JsonValueKind.Object
            || !doc.RootElement.TryGetProperty("weight_map", out var wm) || wm.ValueKind != JsonValueKind.Object)
            throw new SafetensorsFormatException(indexPath, "the index has no \"weight_map\" object");
        var weightMap = new Dictionary<string, string>(StringComparer.Ordinal);
        var shards = new List<string>();
        foreach (var p in wm.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.String) throw new SafetensorsFormatException(indexPath, $"weight_map['{p.Name}'] is not a file name");
            var shard = p.Value.GetString()!;
            // Shards live next to the index: refuse paths, so an index cannot point outside its folder.
            if (shard.Length == 0 || shard != System.IO.Path.GetFileName(shard) || shard is "." or ".." || shard.Contains('\\') || shard.Contains('/'))
                throw new SafetensorsFormatException(indexPath, $"weight_map['{p.Name}'] = '{shard}' is not a plain file name");
            weightMap[p.Name] = shard;
            if (!shards.Contains(shard)) shards.Add(shard);
        }
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        if (doc.RootElement.TryGetProperty("metadata", out var md) && md.ValueKind == JsonValueKind.Object)
            foreach (var m in md.EnumerateObject()) metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : m.Value.GetRawText();
        return (shards, weightMap, metadata);
    }

    public void Dispose() { foreach (var f in _files) f.Dispose(); }
}
