using System.Text.RegularExpressions;

namespace DreamBooth.Engine.Sources;

/// <summary>A Hugging Face Hub model id <c>owner/name</c>, optionally <c>@revision</c> (branch, tag or commit).</summary>
public sealed partial record HubModelId(string Owner, string Name, string? Revision = null)
{
    public string RepoId => Owner + "/" + Name;
    /// <summary>The revision asked for, <c>main</c> when none was.</summary>
    public string EffectiveRevision => Revision ?? "main";
    /// <summary>The cache folder name huggingface_hub uses: <c>models--owner--name</c>.</summary>
    public string CacheFolderName => "models--" + Owner + "--" + Name;

    // Hub rules: letters, digits, '-', '_', '.'; no "--" or ".." (they would make cache folder names ambiguous).
    [GeneratedRegex(@"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}$")]
    private static partial Regex PartPattern();

    public static bool TryParse(string? text, out HubModelId id)
    {
        id = null!;
        if (string.IsNullOrWhiteSpace(text)) return false;
        string? revision = null;
        int at = text.IndexOf('@');
        if (at >= 0)
        {
            revision = text[(at + 1)..];
            text = text[..at];
            if (revision.Length == 0 || revision.Contains("..") || revision.Contains('\\') || revision.StartsWith('/')) return false;
        }
        var parts = text.Split('/');
        if (parts.Length != 2) return false;
        foreach (var p in parts)
            if (!PartPattern().IsMatch(p) || p.Contains("--") || p.Contains("..") || p.EndsWith('.')) return false;
        id = new HubModelId(parts[0], parts[1], revision);
        return true;
    }

    public static HubModelId Parse(string text)
        => TryParse(text, out var id) ? id : throw new ModelSourceException($"'{text}' is not a Hugging Face model id (owner/name or owner/name@revision).");

    /// <summary>A full 40-hex commit hash (snapshots are named by it, no ref needed).</summary>
    public static bool IsCommitHash(string? revision) => revision is { Length: 40 } && revision.All(Uri.IsHexDigit);

    public override string ToString() => Revision is null ? RepoId : RepoId + "@" + Revision;
}
