using System.Text.Json;
using System.Text.Json.Nodes;
using DreamBooth.Engine.IO;
using DreamBooth.Engine.Schedulers;

namespace DreamBooth.Engine.Tests.Schedulers;

/// <summary>
/// Manifest access for the scheduler cases. The manifest holds Python's bare <c>-Infinity</c> (DPM-Solver's
/// lambda_min_clipped), which <see cref="Fixtures.Manifest"/>'s strict JsonDocument rejects, so it is read here
/// through <see cref="SchedulerConfig.QuoteNonFinite"/>.
/// </summary>
static class SchedulerFixtures
{
    static JsonObject? s_manifest;
    static readonly object s_lock = new();

    public static JsonObject Manifest
    {
        get
        {
            lock (s_lock)
                return s_manifest ??= (JsonObject)JsonNode.Parse(SchedulerConfig.QuoteNonFinite(
                    File.ReadAllText(Path.Combine(Fixtures.Reference, "manifest.json"))))!;
        }
    }

    public static JsonObject Case(string name)
        => Manifest["cases"]!.AsArray().Select(c => c!.AsObject()).First(c => c["name"]!.GetValue<string>() == name);

    public static ConfigJson HubConfig()
        => SchedulerConfig.LoadJson(Path.Combine(Fixtures.TinySd, "scheduler", "scheduler_config.json"));

    /// <summary>Structural JSON equality with numbers compared as doubles (1 == 1.0) and "-Infinity" strings as numbers.</summary>
    public static bool JsonEqual(JsonNode? a, JsonNode? b, string path, List<string> diffs)
    {
        if (a is null || b is null)
        {
            if (a is null && b is null) return true;
            diffs.Add($"{path}: {a?.ToJsonString() ?? "null"} vs {b?.ToJsonString() ?? "null"}"); return false;
        }
        switch (a)
        {
            case JsonObject oa when b is JsonObject ob:
                bool ok = true;
                foreach (var k in oa.Select(p => p.Key).Union(ob.Select(p => p.Key)))
                {
                    if (!oa.ContainsKey(k) || !ob.ContainsKey(k)) { diffs.Add($"{path}.{k}: present only in {(oa.ContainsKey(k) ? "actual" : "expected")}"); ok = false; }
                    else ok &= JsonEqual(oa[k], ob[k], $"{path}.{k}", diffs);
                }
                return ok;
            case JsonArray aa when b is JsonArray ab:
                if (aa.Count != ab.Count) { diffs.Add($"{path}: length {aa.Count} vs {ab.Count}"); return false; }
                bool all = true;
                for (int i = 0; i < aa.Count; i++) all &= JsonEqual(aa[i], ab[i], $"{path}[{i}]", diffs);
                return all;
            case JsonValue va when b is JsonValue vb:
                var ea = va.GetValueKind(); var eb = vb.GetValueKind();
                bool same = ea == JsonValueKind.Number && eb == JsonValueKind.Number
                    ? double.Parse(va.ToJsonString(), System.Globalization.CultureInfo.InvariantCulture) == double.Parse(vb.ToJsonString(), System.Globalization.CultureInfo.InvariantCulture)
                    : va.ToJsonString() == vb.ToJsonString();
                if (!same) diffs.Add($"{path}: {va.ToJsonString()} vs {vb.ToJsonString()}");
                return same;
            default:
                diffs.Add($"{path}: kinds differ"); return false;
        }
    }
}
