using System.Collections.Concurrent;
using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace DreamBooth.Engine.Tokenization;

/// <summary>
/// transformers' slow <c>CLIPTokenizer</c> as loaded by <c>CLIPTokenizer.from_pretrained(model/tokenizer)</c> without
/// ftfy (as diffusers' training scripts and pipelines use it):
/// added/special tokens split from the raw text → <see cref="BasicTokenizer"/> normalisation → <see cref="ClipPattern"/>
/// words → <see cref="ByteEncoder"/> → BPE with the <c>&lt;/w&gt;</c> end-of-word suffix (Microsoft.ML.Tokenizers'
/// <see cref="BpeTokenizer"/>, which merges exactly like CLIP's <c>bpe()</c> given the same merge ranks).
/// Thread-safe after construction.
/// </summary>
public sealed class ClipTokenizer
{
    /// <summary>CLIP's merges.txt holds more lines than the model uses: transformers reads lines [1, 49152-256-2+1).</summary>
    const int MergesUsed = 49152 - 256 - 2;
    const string EndOfWord = "</w>";

    readonly Dictionary<string, int> _encoder;
    readonly BpeTokenizer _bpe;
    readonly AddedTokenSplitter _splitter;
    readonly Dictionary<string, int> _addedTokensEncoder;
    readonly int _unkTokenId;
    readonly ConcurrentDictionary<string, (string Token, int Id)[]> _wordCache = new(StringComparer.Ordinal);

    ClipTokenizer(Dictionary<string, int> encoder, List<string> merges, TokenizerConfig config, string mergesPath)
    {
        _encoder = encoder;
        try
        {
            // The byte-to-unicode mapping is done by ByteEncoder (ByteLevel=false): CLIP maps the bytes itself and
            // our words are already split, so no pre-tokenizer or normaliser of the library may touch them.
            _bpe = BpeTokenizer.Create(new BpeOptions(encoder) { Merges = merges, EndOfWordSuffix = EndOfWord, ByteLevel = false });
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or KeyNotFoundException)
        {
            throw new InvalidDataException($"{mergesPath}: merges do not match vocab.json ({e.Message})", e);
        }

        // PreTrainedTokenizer._add_tokens: explicit added tokens first, then every special token at its vocab id,
        // or a new id after the vocabulary if it is not in it.
        _addedTokensEncoder = new Dictionary<string, int>(StringComparer.Ordinal);
        var added = new List<AddedToken>();
        foreach (var (spec, id) in config.ExtraAddedTokens)
        {
            _addedTokensEncoder[spec.Content] = id;
            added.Add(new AddedToken(spec.Content, id, spec.Lstrip, spec.Rstrip));
        }
        int nextId = encoder.Count + _addedTokensEncoder.Keys.Count(k => !encoder.ContainsKey(k));
        foreach (var spec in new[] { config.Bos, config.Eos, config.Unk, config.Pad })
        {
            if (_addedTokensEncoder.ContainsKey(spec.Content)) continue;
            int id = encoder.TryGetValue(spec.Content, out int v) ? v : nextId++;
            _addedTokensEncoder[spec.Content] = id;
            added.Add(new AddedToken(spec.Content, id, spec.Lstrip, spec.Rstrip));
        }
        _splitter = new AddedTokenSplitter(added);

        BosToken = config.Bos.Content;
        EosToken = config.Eos.Content;
        PadToken = config.Pad.Content;
        BosTokenId = _addedTokensEncoder[BosToken];
        EosTokenId = _addedTokensEncoder[EosToken];
        PadTokenId = _addedTokensEncoder[PadToken];
        _unkTokenId = _addedTokensEncoder[config.Unk.Content];
        ModelMaxLength = config.ModelMaxLength;
    }

    public string BosToken { get; }
    public string EosToken { get; }
    public string PadToken { get; }
    public int BosTokenId { get; }
    public int EosTokenId { get; }
    public int PadTokenId { get; }
    public int ModelMaxLength { get; }
    /// <summary>Size of vocab.json without added tokens (transformers' <c>vocab_size</c>; 49408 for CLIP).</summary>
    public int VocabSize => _encoder.Count;

    /// <summary>Loads <c>vocab.json</c>, <c>merges.txt</c>, <c>tokenizer_config.json</c>, <c>special_tokens_map.json</c>
    /// (and <c>added_tokens.json</c> if present) from a diffusers <c>tokenizer/</c> folder.</summary>
    public static ClipTokenizer FromPretrained(string tokenizerDir)
    {
        if (!Directory.Exists(tokenizerDir))
            throw new DirectoryNotFoundException($"Tokenizer folder not found: {tokenizerDir}");
        string vocabPath = Path.Combine(tokenizerDir, "vocab.json");
        string mergesPath = Path.Combine(tokenizerDir, "merges.txt");
        var encoder = ReadVocab(vocabPath);
        var merges = ReadMerges(mergesPath);
        return new ClipTokenizer(encoder, merges, TokenizerConfig.Load(tokenizerDir), mergesPath);
    }

    /// <summary>The BPE token strings, like <c>tokenizer.tokenize(text)</c> (no BOS/EOS).</summary>
    public IReadOnlyList<string> Tokenize(string text) => TokenizeWithIds(text).Select(t => t.Token).ToList();

    /// <summary><c>tokenizer(text).input_ids</c>: BOS + ids + EOS, not truncated (may exceed <see cref="ModelMaxLength"/>).</summary>
    public int[] Encode(string text)
    {
        var tokens = TokenizeWithIds(text);
        var ids = new int[tokens.Count + 2];
        ids[0] = BosTokenId;
        for (int i = 0; i < tokens.Count; i++) ids[i + 1] = tokens[i].Id;
        ids[^1] = EosTokenId;
        return ids;
    }

    /// <summary>
    /// <c>tokenizer(texts, padding="max_length", truncation=True, max_length=maxLength ?? model_max_length)</c>:
    /// BOS + first (L-2) ids + EOS, then <see cref="PadTokenId"/> up to L; attention mask 1 on real tokens.
    /// </summary>
    public TokenizedBatch EncodeBatch(IReadOnlyList<string> texts, int? maxLength = null)
    {
        ArgumentNullException.ThrowIfNull(texts);
        int length = maxLength ?? ModelMaxLength;
        if (length < 2) throw new ArgumentOutOfRangeException(nameof(maxLength), length, "max_length must leave room for BOS and EOS.");
        var ids = new long[texts.Count, length];
        var mask = new long[texts.Count, length];
        for (int b = 0; b < texts.Count; b++)
        {
            var tokens = TokenizeWithIds(texts[b] ?? throw new ArgumentNullException(nameof(texts), $"texts[{b}] is null"));
            int kept = Math.Min(tokens.Count, length - 2);
            ids[b, 0] = BosTokenId;
            for (int i = 0; i < kept; i++) ids[b, i + 1] = tokens[i].Id;
            ids[b, kept + 1] = EosTokenId;
            for (int i = kept + 2; i < length; i++) ids[b, i] = PadTokenId;
            for (int i = 0; i < kept + 2; i++) mask[b, i] = 1;
        }
        return new TokenizedBatch(ids, mask);
    }

    /// <summary>Id of a token string: added tokens first, then vocab.json, else the unk id (transformers' rule).</summary>
    public int ConvertTokenToId(string token) =>
        _addedTokensEncoder.TryGetValue(token, out int id) ? id : _encoder.TryGetValue(token, out id) ? id : _unkTokenId;

    List<(string Token, int Id)> TokenizeWithIds(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var result = new List<(string Token, int Id)>();
        foreach (var (piece, added) in _splitter.Split(text))
        {
            if (added is not null) { result.Add((added.Content, added.Id)); continue; }
            foreach (var word in ClipPattern.FindAll(BasicTokenizer.Normalize(piece)))
                result.AddRange(_wordCache.GetOrAdd(word, BpeWord));
        }
        return result;
    }

    /// <summary>The BPE pieces of one regex word (test hook for checking the library against CLIP's merge loop).</summary>
    internal IReadOnlyList<string> BpeWordTokens(string word) => BpeWord(word).Select(t => t.Token).ToList();

    /// <summary>CLIPTokenizer.bpe() on one regex word; its cache is seeded so the special-token strings stay whole.</summary>
    (string Token, int Id)[] BpeWord(string word)
    {
        if (word is "<|startoftext|>" or "<|endoftext|>") return [(word, ConvertTokenToId(word))];
        var encoded = _bpe.EncodeToTokens(ByteEncoder.Encode(word), out _, considerPreTokenization: false, considerNormalization: false);
        var tokens = new (string Token, int Id)[encoded.Count];
        for (int i = 0; i < tokens.Length; i++) tokens[i] = (encoded[i].Value, ConvertTokenToId(encoded[i].Value));
        return tokens;
    }

    static Dictionary<string, int> ReadVocab(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"CLIP tokenizer vocabulary not found: {path}", path);
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"{path}: expected a JSON object mapping token to id.");
            foreach (var entry in doc.RootElement.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out int id) || id < 0)
                    throw new InvalidDataException($"{path}: id of token '{entry.Name}' is not a non-negative integer ({entry.Value.GetRawText()}).");
                vocab[entry.Name] = id;
            }
        }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON ({e.Message})", e); }
        if (vocab.Count == 0) throw new InvalidDataException($"{path}: the vocabulary is empty.");
        return vocab;
    }

    /// <summary>transformers: <c>read().strip().split("\n")[1 : 49152-256-2+1]</c>, each line split on whitespace.
    /// The first line is skipped unconditionally (it is "#version: 0.2"); later lines may start with '#' ("# #&lt;/w&gt;").</summary>
    static List<string> ReadMerges(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"CLIP tokenizer merges not found: {path}", path);
        var lines = File.ReadAllText(path).Trim().Split('\n');
        var merges = new List<string>(Math.Min(lines.Length, MergesUsed));
        for (int i = 1; i < lines.Length && i <= MergesUsed; i++)
        {
            var parts = lines[i].Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length != 2)
                throw new InvalidDataException($"{path}: line {i + 1} is not a merge pair \"a b\": '{lines[i].TrimEnd()}'.");
            merges.Add(parts[0] + " " + parts[1]);
        }
        if (merges.Count == 0) throw new InvalidDataException($"{path}: no merges after the header line.");
        return merges;
    }
}
