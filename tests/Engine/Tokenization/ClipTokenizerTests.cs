using System.Diagnostics;
using System.Text.Json;
using DreamBooth.Engine.Tokenization;
using Xunit.Abstractions;

namespace DreamBooth.Engine.Tests.Tokenization;

public class ClipTokenizerTests
{
    readonly ITestOutputHelper _output;
    public ClipTokenizerTests(ITestOutputHelper output) => _output = output;

    static readonly Lazy<ClipTokenizer> s_tokenizer = new(() => ClipTokenizer.FromPretrained(TinySdTokenizerDir));
    static string TinySdTokenizerDir => Path.Combine(Fixtures.TinySd, "tokenizer");

    static readonly Lazy<JsonDocument> s_reference =
        new(() => JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures.Reference, "tokenizer.json"))));
    static JsonElement Reference => s_reference.Value.RootElement;
    static JsonElement ReferenceCase(int index) => Reference.GetProperty("cases")[index];

    public static IEnumerable<object[]> ReferenceCaseIndices =>
        Enumerable.Range(0, Reference.GetProperty("cases").GetArrayLength()).Select(i => new object[] { i });

    static string[] Strings(JsonElement e) => e.EnumerateArray().Select(x => x.GetString()!).ToArray();
    static long[] Longs(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt64()).ToArray();
    static long[] Row(long[,] a, int row) => Enumerable.Range(0, a.GetLength(1)).Select(j => a[row, j]).ToArray();

    [Theory]
    [MemberData(nameof(ReferenceCaseIndices))]
    public void MatchesTransformersOnReferencePrompt(int index)
    {
        var c = ReferenceCase(index);
        string prompt = c.GetProperty("prompt").GetString()!;
        var tok = s_tokenizer.Value;

        Assert.Equal(Strings(c.GetProperty("tokens")), tok.Tokenize(prompt));
        Assert.Equal(Longs(c.GetProperty("input_ids_unpadded")), tok.Encode(prompt).Select(i => (long)i).ToArray());

        var batch = tok.EncodeBatch([prompt]);
        Assert.Equal(77, batch.Length);
        Assert.Equal(Longs(c.GetProperty("input_ids")), Row(batch.InputIds, 0));
        Assert.Equal(Longs(c.GetProperty("attention_mask")), Row(batch.AttentionMask, 0));
    }

    [Fact]
    public void BatchOfAllReferencePromptsMatchesRowByRow()
    {
        var cases = Reference.GetProperty("cases").EnumerateArray().ToArray();
        var batch = s_tokenizer.Value.EncodeBatch(cases.Select(c => c.GetProperty("prompt").GetString()!).ToArray());
        Assert.Equal(cases.Length, batch.BatchSize);
        for (int b = 0; b < cases.Length; b++)
        {
            Assert.Equal(Longs(cases[b].GetProperty("input_ids")), Row(batch.InputIds, b));
            Assert.Equal(Longs(cases[b].GetProperty("attention_mask")), Row(batch.AttentionMask, b));
        }

        using var ids = batch.ToTensor();
        using var mask = batch.AttentionMaskToTensor();
        Assert.Equal(ScalarType.Int64, ids.dtype);
        Assert.Equal(new long[] { cases.Length, 77 }, ids.shape);
        Assert.Equal(new long[] { cases.Length, 77 }, mask.shape);
        Assert.Equal(batch.InputIds[0, 5], ids[0, 5].item<long>());
        Assert.Equal(batch.AttentionMask[3, 2], mask[3, 2].item<long>());
        Assert.Equal(Longs(cases[^1].GetProperty("input_ids")), ids[cases.Length - 1].data<long>().ToArray());
    }

    [Fact]
    public void SpecialTokenPropertiesComeFromTheConfig()
    {
        var tok = s_tokenizer.Value;
        Assert.Equal(Reference.GetProperty("bos_token_id").GetInt32(), tok.BosTokenId);
        Assert.Equal(Reference.GetProperty("eos_token_id").GetInt32(), tok.EosTokenId);
        Assert.Equal(Reference.GetProperty("pad_token_id").GetInt32(), tok.PadTokenId);
        Assert.Equal(Reference.GetProperty("pad_token").GetString(), tok.PadToken);
        Assert.Equal(Reference.GetProperty("model_max_length").GetInt32(), tok.ModelMaxLength);
        Assert.Equal(49408, tok.VocabSize);
    }

    [Fact]
    public void TruncationKeepsBosFirstTokensAndEos()
    {
        var tok = s_tokenizer.Value;
        string prompt = string.Join(" ", Enumerable.Repeat("dog", 100));
        var full = tok.Encode(prompt);
        Assert.Equal(102, full.Length);
        var batch = tok.EncodeBatch([prompt, "dog"], maxLength: 10);
        Assert.Equal(new long[] { 49406, 1929, 1929, 1929, 1929, 1929, 1929, 1929, 1929, 49407 }, Row(batch.InputIds, 0));
        Assert.Equal(Enumerable.Repeat(1L, 10), Row(batch.AttentionMask, 0));
        Assert.Equal(new long[] { 49406, 1929, 49407, 49407, 49407, 49407, 49407, 49407, 49407, 49407 }, Row(batch.InputIds, 1));
        Assert.Equal(new long[] { 1, 1, 1, 0, 0, 0, 0, 0, 0, 0 }, Row(batch.AttentionMask, 1));
    }

    [Fact]
    public void NormalisationEdgeCasesFollowPython()
    {
        var tok = s_tokenizer.Value;
        // Upper-case special-token text is lower-cased by BasicTokenizer and then caught by the regex + bpe cache.
        Assert.Equal(["<|endoftext|>", "a</w>"], tok.Tokenize("<|ENDOFTEXT|>a"));
        // Format chars (U+200B, U+FEFF) vanish even inside a special token; the regex then still sees it.
        Assert.Equal(["<|endoftext|>"], tok.Tokenize("<|endof\u200Btext|>"));
        // Python's str.lower(): İ → i + U+0307 (a mark, neither letter nor number), final sigma.
        Assert.Equal(tok.Tokenize("i\u0307stanbul"), tok.Tokenize("\u0130stanbul"));
        Assert.Equal(tok.Tokenize("\u03bf\u03b4\u03bf\u03c2"), tok.Tokenize("\u039f\u0394\u039f\u03a3"));
        Assert.NotEqual(tok.Tokenize("\u03bf\u03b4\u03bf\u03c2"), tok.Tokenize("\u03bf\u03b4\u03bf\u03c3"));
        // A supplementary-plane letter is one \p{L} code point (one word with the letters around it), not two surrogates.
        Assert.Single(tok.Tokenize("x\U0001D41Ay"), t => t.EndsWith("</w>"));
        // NFC: e + combining acute == é.
        Assert.Equal(tok.Tokenize("caf\u00e9"), tok.Tokenize("cafe\u0301"));
    }

    [Fact]
    public void Sd2StylePadTokenPadsWithExclamationMarkId0()
    {
        using var dir = new TempTokenizerDir();
        // SD-2/SDXL: tokenizer_config says <|endoftext|>, special_tokens_map.json (which wins) says "!" as a plain string.
        File.WriteAllText(Path.Combine(dir.Path, "tokenizer_config.json"),
            """{"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "model_max_length": 77, "do_lower_case": true}""");
        File.WriteAllText(Path.Combine(dir.Path, "special_tokens_map.json"),
            """{"bos_token": {"content": "<|startoftext|>", "lstrip": false, "normalized": true, "rstrip": false, "single_word": false}, "eos_token": "<|endoftext|>", "pad_token": "!", "unk_token": "<|endoftext|>"}""");
        var tok = ClipTokenizer.FromPretrained(dir.Path);

        Assert.Equal("!", tok.PadToken);
        Assert.Equal(0, tok.PadTokenId);
        var batch = tok.EncodeBatch(["a photo of sks dog"]);
        var expected = new long[77];
        new long[] { 49406, 320, 1125, 539, 48136, 1929, 49407 }.CopyTo(expected, 0);
        Assert.Equal(expected, Row(batch.InputIds, 0));
        Assert.Equal(7, Row(batch.AttentionMask, 0).Sum());

        // The pad token is an added token, so every '!' is split off as id 0 (huggingface/diffusers#4153:
        // "! !! !!!" -> [49406, 0, 0, 0, 0, 0, 0, 49407]); the SD-1 tokenizer merges "!!!" instead.
        Assert.Equal([49406, 0, 0, 0, 0, 0, 0, 49407], tok.Encode("! !! !!!"));
        Assert.Equal(["cat</w>", "!", "!"], tok.Tokenize("cat!!"));
        Assert.Equal(["cat</w>", "!!</w>"], s_tokenizer.Value.Tokenize("cat!!"));
    }

    [Fact]
    public void AddedTokensJsonAndStripFlagsAreHonoured()
    {
        using var dir = new TempTokenizerDir();
        File.WriteAllText(Path.Combine(dir.Path, "added_tokens.json"), """{"<sks>": 49408}""");
        File.WriteAllText(Path.Combine(dir.Path, "special_tokens_map.json"),
            """{"eos_token": {"__type": "AddedToken", "content": "<|endoftext|>", "lstrip": true, "rstrip": true}}""");
        var tok = ClipTokenizer.FromPretrained(dir.Path);
        Assert.Equal([49406, 320, 49408, 1929, 49407], tok.Encode("a <sks> dog"));
        Assert.Equal(["a</w>", "<|endoftext|>", "b</w>"], tok.Tokenize("a  <|endoftext|>  b"));
        Assert.Equal(77, tok.ModelMaxLength);      // no tokenizer_config.json: CLIP's 77
    }

    [Fact]
    public void MissingOrMalformedFilesGiveClearErrors()
    {
        using var dir = new TempTokenizerDir();
        File.Delete(Path.Combine(dir.Path, "merges.txt"));
        var missing = Assert.Throws<FileNotFoundException>(() => ClipTokenizer.FromPretrained(dir.Path));
        Assert.Contains("merges.txt", missing.Message);

        File.WriteAllText(Path.Combine(dir.Path, "merges.txt"), "#version: 0.2\ni n\nthis line is bad\n");
        var badMerges = Assert.Throws<InvalidDataException>(() => ClipTokenizer.FromPretrained(dir.Path));
        Assert.Contains("merges.txt", badMerges.Message);
        Assert.Contains("line 3", badMerges.Message);

        File.WriteAllText(Path.Combine(dir.Path, "vocab.json"), "{\"a\": 0, ");
        var badVocab = Assert.Throws<InvalidDataException>(() => ClipTokenizer.FromPretrained(dir.Path));
        Assert.Contains("vocab.json", badVocab.Message);

        File.WriteAllText(Path.Combine(dir.Path, "vocab.json"), "{\"a\": \"zero\"}");
        badVocab = Assert.Throws<InvalidDataException>(() => ClipTokenizer.FromPretrained(dir.Path));
        Assert.Contains("vocab.json", badVocab.Message);

        File.Delete(Path.Combine(dir.Path, "vocab.json"));
        missing = Assert.Throws<FileNotFoundException>(() => ClipTokenizer.FromPretrained(dir.Path));
        Assert.Contains("vocab.json", missing.Message);

        File.WriteAllText(Path.Combine(dir.Path, "vocab.json"), File.ReadAllText(Path.Combine(TinySdTokenizerDir, "vocab.json")));
        File.Copy(Path.Combine(TinySdTokenizerDir, "merges.txt"), Path.Combine(dir.Path, "merges.txt"), overwrite: true);
        File.WriteAllText(Path.Combine(dir.Path, "special_tokens_map.json"), """{"pad_token": 5}""");
        var badConfig = Assert.Throws<InvalidDataException>(() => ClipTokenizer.FromPretrained(dir.Path));
        Assert.Contains("special_tokens_map.json", badConfig.Message);
        Assert.Contains("pad_token", badConfig.Message);

        Assert.Throws<DirectoryNotFoundException>(() => ClipTokenizer.FromPretrained(Path.Combine(dir.Path, "nope")));
    }

    [Fact]
    public void TokenizationSpeed()
    {
        var prompts = Reference.GetProperty("cases").EnumerateArray().Select(c => c.GetProperty("prompt").GetString()!).ToArray();
        var load = Stopwatch.StartNew();
        var tok = ClipTokenizer.FromPretrained(TinySdTokenizerDir);
        load.Stop();

        var cold = Stopwatch.StartNew();
        foreach (var p in prompts) tok.Encode(p);
        cold.Stop();

        const int rounds = 200;
        var warm = Stopwatch.StartNew();
        for (int r = 0; r < rounds; r++) tok.EncodeBatch(prompts);
        warm.Stop();
        double perSecond = rounds * prompts.Length / warm.Elapsed.TotalSeconds;
        _output.WriteLine($"load {load.Elapsed.TotalMilliseconds:F0} ms; first pass {prompts.Length} prompts " +
                          $"{cold.Elapsed.TotalMilliseconds:F1} ms; cached: {perSecond:F0} prompts/s");
        // A floor that catches an uncached or quadratic path, far below what a loaded 2-core CI box measures (~2500/s).
        Assert.True(perSecond > 500, $"only {perSecond:F0} prompts/s");
    }

    [Fact]
    public void ConcurrentCallersGetTheSameIds()
    {
        var prompts = Reference.GetProperty("cases").EnumerateArray().Select(c => c.GetProperty("prompt").GetString()!).ToArray();
        var expected = prompts.Select(p => s_tokenizer.Value.Encode(p)).ToArray();
        var fresh = ClipTokenizer.FromPretrained(TinySdTokenizerDir);   // empty caches, filled concurrently
        var actual = new int[prompts.Length * 8][];
        Parallel.For(0, actual.Length, i => actual[i] = fresh.Encode(prompts[i % prompts.Length]));
        for (int i = 0; i < actual.Length; i++) Assert.Equal(expected[i % prompts.Length], actual[i]);
    }

    sealed class TempTokenizerDir : IDisposable
    {
        public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "clip-tok-" + Guid.NewGuid().ToString("N"));
        public TempTokenizerDir()
        {
            Directory.CreateDirectory(Path);
            foreach (var f in new[] { "vocab.json", "merges.txt" })
                File.Copy(System.IO.Path.Combine(TinySdTokenizerDir, f), System.IO.Path.Combine(Path, f));
        }
        public void Dispose() { try { Directory.Delete(Path, recursive: true); } catch (IOException) { } }
    }
}
