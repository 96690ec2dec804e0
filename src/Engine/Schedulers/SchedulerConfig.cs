using TorchSharp;
using System.Text.Json;
using System.Text.Json.Nodes;
using DreamBooth.Engine.IO;

namespace DreamBooth.Engine.Schedulers;

/// <summary>
/// A scheduler's effective config, resolved like diffusers' <c>SchedulerClass.from_config(config, **overrides)</c>:
/// the class's own <c>__init__</c> keys take the file's value when present, else the CLASS'S default; keys listed in
/// the source's <c>_use_default_values</c> are dropped first (so a config taken from another scheduler does not leak its
/// defaults); unknown keys are kept for round trips. <see cref="Json"/> is diffusers' in-memory <c>scheduler.config</c>.
/// </summary>
public sealed class SchedulerConfig
{
    public const string UseDefaultValuesKey = "_use_default_values";

    /// <summary>The effective config (all class keys, kept unknown keys, <c>_class_name</c>, <c>_use_default_values</c>).</summary>
    public ConfigJson Json { get; }
    public string ClassName { get; }
    /// <summary>Class keys that were absent from the source and took the class default (diffusers' <c>_use_default_values</c>).</summary>
    public IReadOnlyList<string> DefaultedKeys { get; }

    SchedulerConfig(ConfigJson json, string className, IReadOnlyList<string> defaulted)
    { Json = json; ClassName = className; DefaultedKeys = defaulted; }

    /// <summary>Resolves <paramref name="source"/> against a class's <c>__init__</c> defaults (in signature order).</summary>
    public static SchedulerConfig Resolve(ConfigJson source, string className, IReadOnlyList<KeyValuePair<string, JsonNode?>> classDefaults,
        IReadOnlyDictionary<string, JsonNode?>? overrides = null)
    {
        var src = source.Root;
        var dropped = new HashSet<string>();
        if (src[UseDefaultValuesKey] is JsonArray used)
            foreach (var k in used) if (k is not null) dropped.Add(k.GetValue<string>());

        bool Present(string key) => src.ContainsKey(key) && !dropped.Contains(key) && key != UseDefaultValuesKey;
        var result = new JsonObject();
        var defaulted = new List<string>();
        foreach (var (key, def) in classDefaults)
        {
            if (overrides is not null && overrides.TryGetValue(key, out var o)) result[key] = o?.DeepClone();
            else if (Present(key)) result[key] = src[key]?.DeepClone();
            else { result[key] = def?.DeepClone(); defaulted.Add(key); }
        }
        result[UseDefaultValuesKey] = new JsonArray(defaulted.Select(k => (JsonNode?)JsonValue.Create(k)).ToArray());
        foreach (var (key, value) in src)
            if (!result.ContainsKey(key) && Present(key) && key != "_class_name") result[key] = value?.DeepClone();
        if (overrides is not null)
            foreach (var (key, value) in overrides) if (!result.ContainsKey(key)) result[key] = value?.DeepClone();
        result["_class_name"] = className;
        return new SchedulerConfig(new ConfigJson(result, source.Source), className, defaulted);
    }

    // ---- typed accessors (the effective config holds every class key, so the fallbacks only serve foreign keys) ----
    public int NumTrainTimesteps => Json.Get("num_train_timesteps", 1000);
    public double BetaStart => Json.Get("beta_start", 0.0001);
    public double BetaEnd => Json.Get("beta_end", 0.02);
    public string BetaSchedule => Json.Get("beta_schedule", "linear");
    public double[]? TrainedBetas => Json.Get<double[]?>("trained_betas", null);
    public string PredictionType => Json.Get("prediction_type", "epsilon");
    public int StepsOffset => Json.Get("steps_offset", 0);
    public string TimestepSpacing => Json.Get("timestep_spacing", "leading");
    public bool SetAlphaToOne => Json.Get("set_alpha_to_one", true);
    public bool ClipSample => Json.Get("clip_sample", false);
    public double ClipSampleRange => Json.Get("clip_sample_range", 1.0);
    public bool SkipPrkSteps => Json.Get("skip_prk_steps", false);
    public bool Thresholding => Json.Get("thresholding", false);
    public bool RescaleBetasZeroSnr => Json.Get("rescale_betas_zero_snr", false);
    public string VarianceType => Json.Get("variance_type", "fixed_small") ?? "fixed_small";
    public bool UseKarrasSigmas => Json.Get<bool?>("use_karras_sigmas", false) ?? false;
    public bool UseExponentialSigmas => Json.Get<bool?>("use_exponential_sigmas", false) ?? false;
    public bool UseBetaSigmas => Json.Get<bool?>("use_beta_sigmas", false) ?? false;
    public bool UseLuLambdas => Json.Get<bool?>("use_lu_lambdas", false) ?? false;
    public bool UseFlowSigmas => Json.Get<bool?>("use_flow_sigmas", false) ?? false;
    public string InterpolationType => Json.Get("interpolation_type", "linear");
    public string TimestepType => Json.Get("timestep_type", "discrete");
    public string FinalSigmasType => Json.Get("final_sigmas_type", "zero") ?? "zero";
    public int SolverOrder => Json.Get("solver_order", 2);
    public string AlgorithmType => Json.Get("algorithm_type", "dpmsolver++");
    public string SolverType => Json.Get("solver_type", "midpoint");
    public bool LowerOrderFinal => Json.Get("lower_order_final", true);
    public bool EulerAtFinal => Json.Get("euler_at_final", false);
    public double? SigmaMin => GetDouble("sigma_min");
    public double? SigmaMax => GetDouble("sigma_max");
    public double LambdaMinClipped => GetDouble("lambda_min_clipped") ?? double.NegativeInfinity;

    /// <summary>A number that Python's json may have written as <c>-Infinity</c>/<c>Infinity</c>/<c>NaN</c> (kept as strings here).</summary>
    public double? GetDouble(string key)
    {
        var node = Json.Root[key];
        if (node is null) return null;
        if (node is JsonValue v && v.TryGetValue<string>(out var s))
            return s switch
            {
                "-Infinity" => double.NegativeInfinity, "Infinity" => double.PositiveInfinity, "NaN" => double.NaN,
                _ => throw new ModelConfigException($"'{key}' in {Json.Source} has value \"{s}\", which is not a number.", key),
            };
        return Json.Get<double>(key, 0);
    }

    public ModelConfigException Unsupported(string key, string why) => Json.Unsupported(key, why);

    /// <summary>The config as diffusers keeps it in memory (with <c>_use_default_values</c>), for <c>from_config</c>-style reuse.</summary>
    public ConfigJson ToConfigJson() => Json.With(new Dictionary<string, JsonNode?>());

    /// <summary>Writes scheduler_config.json like diffusers' <c>save_config</c> (no <c>_use_default_values</c>, ±Infinity bare).</summary>
    public void Save(string path)
    {
        var copy = Json.With(new Dictionary<string, JsonNode?> { [UseDefaultValuesKey] = null });
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var text = copy.Root.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
        text = text.Replace("\"-Infinity\"", "-Infinity").Replace("\"Infinity\"", "Infinity").Replace("\"NaN\"", "NaN");
        File.WriteAllText(path, text + "\n");
    }

    /// <summary>
    /// Loads a scheduler_config.json; Python writes non-finite floats as bare <c>-Infinity</c> (e.g. DPM-Solver's
    /// <c>lambda_min_clipped</c>), which System.Text.Json rejects, so they are quoted before parsing.
    /// </summary>
    public static ConfigJson LoadJson(string path)
    {
        if (!File.Exists(path)) throw new ModelConfigException($"Scheduler config '{path}' does not exist.");
        return ParseJson(File.ReadAllText(path), path);
    }

    public static ConfigJson ParseJson(string json, string source = "<memory>") => ConfigJson.Parse(QuoteNonFinite(json), source);

    /// <summary>Quotes bare NaN/Infinity/-Infinity tokens outside strings.</summary>
    public static string QuoteNonFinite(string json)
    {
        var sb = new System.Text.StringBuilder(json.Length + 16);
        bool inString = false;
        for (int i = 0; i < json.Length; i++)
        {
            char c = json[i];
            if (inString)
            {
                sb.Append(c);
                if (c == '\\' && i + 1 < json.Length) sb.Append(json[++i]);
                else if (c == '"') inString = false;
                continue;
            }
            if (c == '"') { inString = true; sb.Append(c); continue; }
            string? token = null;
            foreach (var t in new[] { "-Infinity", "Infinity", "NaN" })
                if (string.CompareOrdinal(json, i, t, 0, t.Length) == 0) { token = t; break; }
            if (token is not null) { sb.Append('"').Append(token).Append('"'); i += token.Length - 1; }
            else sb.Append(c);
        }
        return sb.ToString();
    }
}
