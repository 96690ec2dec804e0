using System.Text;
using System.Text.Json;
using DreamBooth.Engine.Tokenization;

namespace DreamBooth.Engine.Tests.Tokenization;

/// <summary>
/// ClipTokenizer delegates the merge loop to Microsoft.ML.Tokenizers' BpeTokenizer. This checks, on thousands of
/// words, that it gives the same pieces as CLIP's own <c>bpe()</c> (repeatedly merge every occurrence of the
/// lowest-ranked adjacent pair, left to right), written out below from tokenization_clip.py's description.
/// </summary>
public class ClipBpeEquivalenceTests
{
    static string TokenizerDir => Path.Combine(Fixtures.TinySd, "tokenizer");

    [Fact]
    public void MlTokenizersBpeEqualsClipMergeLoop()
    {
        var ranks = new Dictionary<(string, string), int>();
        var lines = File.ReadAllText(Path.Combine(TokenizerDir, "merges.txt")).Trim().Split('\n');
        for (int i = 1; i < lines.Length && i <= 49152 - 256 - 2; i++)
        {
            var p = lines[i].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            ranks[(p[0], p[1])] = i - 1;
        }
        var tokenizer = ClipTokenizer.FromPretrained(TokenizerDir);

        // Words: decoded vocab entries (real words, sub-words, CJK, emoji bytes) plus random mixed-script strings.
        var byteDecoder = BuildByteDecoder();
        using var vocab = JsonDocument.Parse(File.ReadAllText(Path.Combine(TokenizerDir, "vocab.json")));
        var rng = new Random(1234);
        var words = new List<string>();
        foreach (var entry in vocab.RootElement.EnumerateObject())
        {
            if (rng.Next(32) != 0) continue;                                  // ~1500 entries
            if (entry.Name is "<|startoftext|>" or "<|endoftext|>") continue;  // whole tokens via the bpe cache, not merges
            string sym = entry.Name.EndsWith("</w>") ? entry.Name[..^4] : entry.Name;
            if (sym.Length == 0 || sym.Any(c => !byteDecoder.ContainsKey(c))) continue;
            var bytes = sym.Select(c => byteDecoder[c]).ToArray();
            string text;
            try { text = new UTF8Encoding(false, true).GetString(bytes); } catch (DecoderFallbackException) { continue; }
            words.Add(text);
            words.Add(text + text);                                          // longer words exercise more merges
        }
        var alphabet = "abcdefghijklmnopqrstuvwxyzéüßøçñ日本語中文тестαβγ🐶🔥😀!?.,'-".EnumerateRunes().ToArray();
        for (int i = 0; i < 1000; i++)
        {
            var sb = new StringBuilder();
            int len = 1 + rng.Next(20);
            for (int j = 0; j < len; j++) sb.Append(alphabet[rng.Next(alphabet.Length)].ToString());
            words.Add(sb.ToString());
        }

        int compared = 0;
        foreach (var word in words)
        {
            string expected = string.Join(" ", ClipBpe(ByteLevel(word), ranks));
            string actual = string.Join(" ", tokenizer.BpeWordTokens(word));
            Assert.True(expected == actual, $"word '{word}': CLIP bpe '{expected}' vs ML.Tokenizers '{actual}'");
            compared++;
        }
        Assert.True(compared > 3500, $"only {compared} words compared");
    }

    /// <summary>CLIPTokenizer.bpe: last symbol carries "&lt;/w&gt;"; merge the best-ranked pair everywhere until none applies.</summary>
    static List<string> ClipBpe(string token, Dictionary<(string, string), int> ranks)
    {
        var word = token.Select(c => c.ToString()).ToList();
        word[^1] += "</w>";
        while (word.Count > 1)
        {
            (string, string)? best = null;
            int bestRank = int.MaxValue;
            for (int i = 0; i + 1 < word.Count; i++)
                if (ranks.TryGetValue((word[i], word[i + 1]), out int r) && r < bestRank) { bestRank = r; best = (word[i], word[i + 1]); }
            if (best is null) break;
            var merged = new List<string>();
            for (int i = 0; i < word.Count;)
            {
                if (i + 1 < word.Count && word[i] == best.Value.Item1 && word[i + 1] == best.Value.Item2)
                { merged.Add(word[i] + word[i + 1]); i += 2; }
                else { merged.Add(word[i]); i++; }
            }
            word = merged;
        }
        return word;
    }

    static Dictionary<char, byte> BuildByteDecoder()
    {
        var bs = new List<int>();
        for (int b = '!'; b <= '~'; b++) bs.Add(b);
        for (int b = 0xA1; b <= 0xAC; b++) bs.Add(b);
        for (int b = 0xAE; b <= 0xFF; b++) bs.Add(b);
        var map = bs.ToDictionary(b => (char)b, b => (byte)b);
        int n = 0;
        for (int b = 0; b < 256; b++) if (!bs.Contains(b)) map[(char)(256 + n++)] = (byte)b;
        return map;
    }

    static readonly Dictionary<byte, char> s_byteEncoder = BuildByteDecoder().ToDictionary(kv => kv.Value, kv => kv.Key);

    static string ByteLevel(string word) => new(Encoding.UTF8.GetBytes(word).Select(b => s_byteEncoder[b]).ToArray());
}
