namespace DreamBooth.Engine.Tokenization;

/// <summary>
/// The first step of transformers' <c>PreTrainedTokenizer.tokenize</c>: cut the raw prompt at every added token
/// (<c>tokens_trie.split</c>: leftmost, then longest match), apply their lstrip/rstrip, drop empty pieces.
/// Every special token (bos/eos/unk/pad) is an added token, so with SD-2's pad token "!" a '!' in a prompt becomes
/// its own token (id 0) exactly as in the slow CLIPTokenizer.
/// </summary>
internal sealed class AddedTokenSplitter
{
    readonly AddedToken[] _tokens;    // longest first, so the first match at a position is the longest
    readonly HashSet<char> _firstChars;

    public AddedTokenSplitter(IEnumerable<AddedToken> tokens)
    {
        _tokens = tokens.Where(t => t.Content.Length > 0)
            .GroupBy(t => t.Content, StringComparer.Ordinal).Select(g => g.Last())
            .OrderByDescending(t => t.Content.Length).ToArray();
        _firstChars = _tokens.Select(t => t.Content[0]).ToHashSet();
    }

    /// <summary>Pieces in order: either an added token, or a run of plain text (Token is null).</summary>
    public List<(string Text, AddedToken? Token)> Split(string text)
    {
        var pieces = new List<(string Text, AddedToken? Token)>();
        int plainStart = 0;
        for (int i = 0; i < text.Length;)
        {
            var match = MatchAt(text, i);
            if (match is null) { i++; continue; }
            if (i > plainStart) pieces.Add((text[plainStart..i], null));
            pieces.Add((match.Content, match));
            i += match.Content.Length;
            plainStart = i;
        }
        if (plainStart < text.Length) pieces.Add((text[plainStart..], null));

        for (int k = 0; k < pieces.Count; k++)
        {
            var token = pieces[k].Token;
            if (token is null) continue;
            if (token.Rstrip && k + 1 < pieces.Count && pieces[k + 1].Token is null)
                pieces[k + 1] = (pieces[k + 1].Text.TrimStart(), null);
            if (token.Lstrip && k > 0 && pieces[k - 1].Token is null)
                pieces[k - 1] = (pieces[k - 1].Text.TrimEnd(), null);
        }
        pieces.RemoveAll(p => p.Text.Length == 0);
        return pieces;
    }

    AddedToken? MatchAt(string text, int index)
    {
        if (!_firstChars.Contains(text[index])) return null;
        foreach (var t in _tokens)
            if (string.CompareOrdinal(text, index, t.Content, 0, t.Content.Length) == 0 && index + t.Content.Length <= text.Length)
                return t;
        return null;
    }
}
