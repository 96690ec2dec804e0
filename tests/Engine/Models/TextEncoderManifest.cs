using System.Text.Json;
using System.Text.RegularExpressions;

namespace DreamBooth.Engine.Tests.Models.TextEncoders;

/// <summary>
/// Reads a case of reference/manifest.json. The manifest holds bare -Infinity literals (Python's json.dump), which
/// System.Text.Json rejects, so Fixtures.Case throws; until Fixtures is fixed this reads them as null.
/// </summary>
internal static class TextEncoderManifest
{
    static readonly Lazy<JsonDocument> Doc = new(() =>
    {
        var text = File.ReadAllText(Path.Combine(Fixtures.Reference, "manifest.json"));
        // Only bare tokens after ':' ',' or '[' are literals; strings are left alone.
        text = Regex.Replace(text, @"(?<=[:\[,]\s*)-?(Infinity|NaN)\b", "null");
        return JsonDocument.Parse(text);
    });

    public static JsonElement Case(string name)
        => Doc.Value.RootElement.GetProperty("cases").EnumerateArray().First(c => c.GetProperty("name").GetString() == name);
}
