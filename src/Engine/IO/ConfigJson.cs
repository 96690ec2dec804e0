using System.Text.Json;
using System.Text.Json.Nodes;

namespace DreamBooth.Engine.IO;

/// <summary>Thrown for a config.json that is missing, unreadable, or holds a value the engine cannot honour.</summary>
public sealed class ModelConfigException : FormatException
{
    public string? Key { get; }
    public ModelConfigException(string message, string? key = null) : base(message) => Key = key;
}

/// <summary>
/// A component's config.json as diffusers/transformers write it. Typed configs read their keys through this and
/// keep the original object, so keys the engine does not know are written back unchanged on save.
/// </summary>
public sealed class ConfigJson
{
    public JsonObject Root { get; }
    public string Source { get; }

    public ConfigJson(JsonObject root, string source) { Root = root; Source = source; }

    public static ConfigJson Load(string path)
    {
        if (!File.Exists(path)) throw new ModelConfigException($"Config file '{path}' does not exist. A diffusers model folder has one config per component.");
        JsonNode? node;
        try { node = JsonNode.Parse(File.ReadAllText(path), documentOptions: new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip }); }
        catch (JsonException e) { throw new ModelConfigException($"Config file '{path}' is not valid JSON: {e.Message}"); }
        if (node is not JsonObject obj) throw new ModelConfigException($"Config file '{path}' does not hold a JSON object.");
        return new ConfigJson(obj, path);
    }

    public static ConfigJson Parse(string json, string source = "<memory>")
        => new((JsonNode.Parse(json) as JsonObject) ?? throw new ModelConfigException($"{source} does not hold a JSON object."), source);

    public bool Has(string key) => Root.TryGetPropertyValue(key, out var v) && v is not null;

    public T Get<T>(string key, T defaultValue)
    {
        if (!Root.TryGetPropertyValue(key, out var v) || v is null) return defaultValue;
        try { return v.Deserialize<T>()!; }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        { throw new ModelConfigException($"'{key}' in {Source} has value {v.ToJsonString()}, which is not a valid {typeof(T).Name}.", key); }
    }

    public T Require<T>(string key)
    {
        if (!Has(key)) throw new ModelConfigException($"{Source} lacks the required key '{key}'.", key);
        return Get<T>(key, default!);
    }

    /// <summary>An int or a per-block list of ints (diffusers allows both for e.g. attention_head_dim).</summary>
    public int[]? GetIntOrList(string key, int blocks)
    {
        if (!Root.TryGetPropertyValue(key, out var v) || v is null) return null;
        if (v is JsonArray a) return a.Select(x => x!.GetValue<int>()).ToArray();
        return Enumerable.Repeat(v.GetValue<int>(), blocks).ToArray();
    }

    public ModelConfigException Unsupported(string key, string why)
        => new($"{Source}: '{key}' = {Root[key]?.ToJsonString() ?? "null"} is not supported ({why}).", key);

    /// <summary>A deep copy with some keys set (null removes), for saving.</summary>
    public ConfigJson With(IReadOnlyDictionary<string, JsonNode?> changes)
    {
        var copy = (JsonObject)Root.DeepClone();
        foreach (var (k, v) in changes) { if (v is null) copy.Remove(k); else copy[k] = v.DeepClone(); }
        return new ConfigJson(copy, Source);
    }

    public void Save(string path)
    {
        var text = System.Text.Encoding.UTF8.GetBytes(Root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        AtomicFile.Write(Path.GetFullPath(path), s => s.Write(text));
    }
}
