using System.Globalization;
using System.Text;

namespace DreamBooth.Engine.Tokenization;

/// <summary>
/// CLIP's pre-tokenization regex (transformers tokenization_clip.py, Python <c>regex</c> module, IGNORECASE):
/// <c>&lt;\|startoftext\|&gt;|&lt;\|endoftext\|&gt;|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+</c>,
/// applied with <c>re.findall</c> (unmatched whitespace is skipped).
/// Hand-written instead of a .NET Regex because .NET classifies UTF-16 code units: a supplementary-plane letter or
/// digit (e.g. U+1D41A 𝐚, U+1D7CF 𝟏) is two Cs surrogates to .NET's \p{L} but one letter/number to Python.
/// </summary>
internal static class ClipPattern
{
    static readonly string[] SpecialLiterals = ["<|startoftext|>", "<|endoftext|>"];
    static readonly string[] Contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"];   // alternation order

    public static List<string> FindAll(string text)
    {
        var words = new List<string>();
        int i = 0;
        while (i < text.Length)
        {
            var rune = RuneAt(text, i);
            if (BasicTokenizer.IsPythonWhitespace(rune.Value)) { i += rune.Utf16SequenceLength; continue; }

            string? literal = MatchLiteral(text, i, SpecialLiterals) ?? MatchLiteral(text, i, Contractions);
            if (literal is not null) { words.Add(text.Substring(i, literal.Length)); i += literal.Length; continue; }

            var kind = Classify(rune);
            int start = i;
            i += rune.Utf16SequenceLength;
            if (kind != CharKind.Number)                                      // [\p{N}] is one code point; the others are runs
            {
                while (i < text.Length)
                {
                    var next = RuneAt(text, i);
                    if (Classify(next) != kind) break;
                    i += next.Utf16SequenceLength;
                }
            }
            words.Add(text[start..i]);
        }
        return words;
    }

    enum CharKind { Letter, Number, Other, Space }

    static CharKind Classify(Rune r)
    {
        if (BasicTokenizer.IsPythonWhitespace(r.Value)) return CharKind.Space;
        return Rune.GetUnicodeCategory(r) switch
        {
            UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter => CharKind.Letter,
            UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => CharKind.Number,
            _ => CharKind.Other,
        };
    }

    static string? MatchLiteral(string text, int index, string[] alternatives)
    {
        foreach (var alt in alternatives)
            if (string.Compare(text, index, alt, 0, alt.Length, StringComparison.OrdinalIgnoreCase) == 0
                && index + alt.Length <= text.Length)
                return alt;
        return null;
    }

    static Rune RuneAt(string text, int index) =>
        Rune.TryGetRuneAt(text, index, out var r) ? r : Rune.ReplacementChar;   // lone surrogates never survive BasicTokenizer
}
