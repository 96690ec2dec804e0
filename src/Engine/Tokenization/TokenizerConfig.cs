using System.Text.Json;

namespace DreamBooth.Engine.Tokenization;

/// <summary>
/// The special-token settings of a transformers tokenizer folder: <c>tokenizer_config.json</c>, overridden key by key
/// by <c>special_tokens_map.json</c> (what <c>PreTrainedTokenizerBase._from_pretrained</c> does), plus the extra added
/// tokens of <c>added_tokens_decoder</c> (tokenizer_config) and <c>added_tokens.json</c>.
/// A token may be a plain string or an AddedToken dict (<c>{"__type": "AddedToken", "content": ...}</c>, CompVis style,
/// or the same without <c>__type</c>).
/// </summary>
internal sealed class TokenizerConfig
{
    public sealed record TokenSpec(string Content, bool Lstrip, bool Rstrip);

    // CLIPTokenizer.__init__ defaults.
    public TokenSpec Bos { get; private set; } = new("<|startoftext|>", false, false);
    public TokenSpec Eos { get; private set; } = new("<|endoftext|>", false, false);
    public TokenSpec Unk { get; private set; } = new("<|endoftext|>", false, false);
    public TokenSpec Pad { get; private set; } = new("<|endoftext|>", false, false);
    /// <summary>transformers leaves it "unlimited" when absent; every CLIP text encoder has 77 positions.</summary>
    public int ModelMaxLength { get; private set; } = 77;
    public List<(TokenSpec Token, int Id)> ExtraAddedTokens { get; } = new();

    public static TokenizerConfig Load(string tokenizerDir)
    {
        var config = new TokenizerConfig();
        string configPath = Path.Combine(tokenizerDir, "tokenizer_config.json");
        if (File.Exists(configPath))
        {
            using var doc = ParseFile(configPath);
            var root = doc.RootElement;
            config.ApplySpecialTokens(root, configPath);
            if (root.TryGetProperty("model_max_length", out var max) && max.ValueKind == JsonValueKind.Number)
            {
                // Hub files without a limit store 1e30 (VERY_LARGE_INTEGER); keep the CLIP default then.
                double value = max.GetDouble();
                if (value >= 1 && value <= int.MaxValue) config.ModelMaxLength = (int)value;
            }
            if (root.TryGetProperty("added_tokens_decoder", out var decoder) && decoder.ValueKind == JsonValueKind.Object)
                foreach (var entry in decoder.EnumerateObject())
                {
                    if (!int.TryParse(entry.Name, out int id))
                        throw new InvalidDataException($"{configPath}: added_tokens_decoder key '{entry.Name}' is not an integer id.");
                    config.ExtraAddedTokens.Add((ParseToken(entry.Value, configPath, "added_tokens_decoder." + entry.Name), id));
                }
        }

        string mapPath = Path.Combine(tokenizerDir, "special_tokens_map.json");
        if (File.Exists(mapPath))
        {
            using var doc = ParseFile(mapPath);
            config.ApplySpecialTokens(doc.RootElement, mapPath);
        }

        string addedPath = Path.Combine(tokenizerDir, "added_tokens.json");
        if (File.Exists(addedPath))
        {
            using var doc = ParseFile(addedPath);
            foreach (var entry in doc.RootElement.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out int id))
                    throw new InvalidDataException($"{addedPath}: id of '{entry.Name}' is not an integer.");
                config.ExtraAddedTokens.Add((new TokenSpec(entry.Name, false, false), id));
            }
        }
        return config;
    }

    void ApplySpecialTokens(JsonElement root, string path)
    {
        if (root.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"{path}: expected a JSON object.");
        Bos = Read(root, "bos_token", path) ?? Bos;
        Eos = Read(root, "eos_token", path) ?? Eos;
        Unk = Read(root, "unk_token", path) ?? Unk;
        Pad = Read(root, "pad_token", path) ?? Pad;
    }

    /// <summary>null when the key is absent or JSON null (then the previous/default value stays).</summary>
    static TokenSpec? Read(JsonElement root, string key, string path) =>
        root.TryGetProperty(key, out var value) && value.ValueKind != JsonValueKind.Null ? ParseToken(value, path, key) : null;

    static TokenSpec ParseToken(JsonElement value, string path, string key)
    {
        if (value.ValueKind == JsonValueKind.String) return new TokenSpec(value.GetString()!, false, false);
        if (value.ValueKind == JsonValueKind.Object && value.TryGetProperty("content", out var content)
            && content.ValueKind == JsonValueKind.String)
            return new TokenSpec(content.GetString()!, Flag(value, "lstrip"), Flag(value, "rstrip"));
        throw new InvalidDataException($"{path}: '{key}' must be a string or an AddedToken object with \"content\", got {value.GetRawText()}.");
    }

    static bool Flag(JsonElement obj, string name) =>
        obj.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.True;

    static JsonDocument ParseFile(string path)
    {
        try { return JsonDocument.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON ({e.Message})", e); }
    }
}
