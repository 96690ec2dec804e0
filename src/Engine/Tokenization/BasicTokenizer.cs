using System.Globalization;
using System.Text;

namespace DreamBooth.Engine.Tokenization;

/// <summary>
/// transformers' <c>BasicTokenizer(strip_accents=False, do_split_on_punc=False)</c>, the text clean-up the slow
/// CLIPTokenizer runs when ftfy is not installed: drop control/format characters, map whitespace to ' ', put spaces
/// around CJK ideographs, NFC, split on whitespace, lower-case each word like Python's <c>str.lower()</c>.
/// Returns the words joined by single spaces (what <c>CLIPTokenizer._tokenize</c> feeds to its regex).
/// Works on code points (Runes) because Python does; UTF-16 surrogates must never be classified on their own.
/// </summary>
internal static class BasicTokenizer
{
    public static string Normalize(string text)
    {
        var cleaned = new StringBuilder(text.Length + 8);
        foreach (var rune in EnumerateRunesLossy(text))
        {
            int cp = rune.Value;
            if (cp == 0 || cp == 0xFFFD || IsControl(rune)) continue;        // _clean_text
            if (IsWhitespace(rune)) { cleaned.Append(' '); continue; }
            if (IsChineseChar(cp)) { cleaned.Append(' '); Append(cleaned, rune); cleaned.Append(' '); continue; } // _tokenize_chinese_chars
            Append(cleaned, rune);
        }
        string nfc = cleaned.ToString().Normalize(NormalizationForm.FormC);

        var output = new StringBuilder(nfc.Length);
        foreach (var word in SplitOnPythonWhitespace(nfc))
        {
            if (output.Length > 0) output.Append(' ');
            PythonLower(word, output);
        }
        return output.ToString();
    }

    static void Append(StringBuilder sb, Rune rune)
    {
        if (rune.IsBmp) sb.Append((char)rune.Value);
        else { Span<char> pair = stackalloc char[2]; rune.EncodeToUtf16(pair); sb.Append(pair); }
    }

    /// <summary>Python iterates code points; a lone surrogate is category Cs and is dropped as a control char.</summary>
    static IEnumerable<Rune> EnumerateRunesLossy(string text)
    {
        for (int i = 0; i < text.Length;)
        {
            if (Rune.TryGetRuneAt(text, i, out var rune)) { yield return rune; i += rune.Utf16SequenceLength; }
            else { yield return new Rune(0xFFFD); i++; }                     // removed by the 0xFFFD check
        }
    }

    /// <summary>transformers' _is_control: \t \n \r are whitespace, every other category C* (Cc, Cf, Co, Cn, Cs) is control.</summary>
    static bool IsControl(Rune r)
    {
        if (r.Value is '\t' or '\n' or '\r') return false;
        return Rune.GetUnicodeCategory(r) is UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.PrivateUse
            or UnicodeCategory.OtherNotAssigned or UnicodeCategory.Surrogate;
    }

    /// <summary>transformers' _is_whitespace: ' ', \t, \n, \r or category Zs.</summary>
    static bool IsWhitespace(Rune r) =>
        r.Value is ' ' or '\t' or '\n' or '\r' || Rune.GetUnicodeCategory(r) == UnicodeCategory.SpaceSeparator;

    static bool IsChineseChar(int cp) =>
        (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
        (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
        (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);

    /// <summary>Python's str.isspace() (what str.split() splits on); after _clean_text only ' ', U+2028, U+2029 can remain.</summary>
    internal static bool IsPythonWhitespace(int cp) =>
        cp is (>= 0x09 and <= 0x0D) or (>= 0x1C and <= 0x20) or 0x85 or 0xA0 or 0x1680 or (>= 0x2000 and <= 0x200A)
            or 0x2028 or 0x2029 or 0x202F or 0x205F or 0x3000;

    static IEnumerable<string> SplitOnPythonWhitespace(string text)
    {
        int start = -1;
        for (int i = 0; i < text.Length; i++)
        {
            if (IsPythonWhitespace(text[i])) { if (start >= 0) { yield return text[start..i]; start = -1; } }
            else if (start < 0) start = i;
        }
        if (start >= 0) yield return text[start..];
    }

    /// <summary>
    /// Python's str.lower(): the simple Unicode lower-case mapping (= .NET's invariant ToLower per code point) plus the
    /// two full mappings Python applies: U+0130 'İ' → "i̇" and the Final_Sigma rule (Σ → ς at the end of a word).
    /// </summary>
    static void PythonLower(string word, StringBuilder output)
    {
        for (int i = 0; i < word.Length;)
        {
            var rune = Rune.GetRuneAt(word, i);
            if (rune.Value == 0x0130) output.Append("i\u0307");
            else if (rune.Value == 0x03A3) output.Append(IsFinalSigma(word, i) ? '\u03C2' : '\u03C3');
            else Append(output, Rune.ToLowerInvariant(rune));
            i += rune.Utf16SequenceLength;
        }
    }

    /// <summary>Unicode Final_Sigma: a cased letter before (skipping case-ignorables) and none after.</summary>
    static bool IsFinalSigma(string word, int index)
    {
        int j = index;
        bool casedBefore = false;
        while (j > 0)
        {
            j -= char.IsLowSurrogate(word[j - 1]) && j >= 2 ? 2 : 1;
            var r = Rune.GetRuneAt(word, j);
            if (IsCaseIgnorable(r)) continue;
            casedBefore = IsCased(r);
            break;
        }
        if (!casedBefore) return false;
        for (int k = index + 1; k < word.Length;)
        {
            var r = Rune.GetRuneAt(word, k);
            k += r.Utf16SequenceLength;
            if (IsCaseIgnorable(r)) continue;
            return !IsCased(r);
        }
        return true;
    }

    // Approximations of the Unicode Cased / Case_Ignorable properties (not exposed by .NET) from general categories
    // plus the Word_Break MidLetter/MidNumLet/Single_Quote characters; exact for every script SD prompts realistically use.
    static bool IsCased(Rune r) => Rune.GetUnicodeCategory(r) is UnicodeCategory.UppercaseLetter
        or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter;

    static bool IsCaseIgnorable(Rune r) =>
        Rune.GetUnicodeCategory(r) is UnicodeCategory.NonSpacingMark or UnicodeCategory.EnclosingMark
            or UnicodeCategory.Format or UnicodeCategory.ModifierLetter or UnicodeCategory.ModifierSymbol
        || r.Value is '\'' or '.' or ':' or 0x00B7 or 0x0387 or 0x05F4 or 0x2018 or 0x2019 or 0x2024 or 0x2027
            or 0xFE13 or 0xFE52 or 0xFE55 or 0xFF07 or 0xFF0E or 0xFF1A;
}
