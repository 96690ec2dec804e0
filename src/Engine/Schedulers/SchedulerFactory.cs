using TorchSharp;
using System.Text.Json.Nodes;
using DreamBooth.Engine.IO;

namespace DreamBooth.Engine.Schedulers;

/// <summary>
/// Creates schedulers like diffusers' <c>Class.from_config(config)</c> from a diffusers class name or a short name
/// (case-insensitive). <see cref="KnownNames"/> feeds tab completion.
/// </summary>
public static class SchedulerFactory
{
    sealed record Entry(string ClassName, Func<ConfigJson, IReadOnlyDictionary<string, JsonNode?>?, SchedulerBase> Create,
        IReadOnlyDictionary<string, JsonNode?>? Preset = null);

    static readonly Dictionary<string, Entry> Entries = Build();

    static Dictionary<string, Entry> Build()
    {
        var pndm = new Entry(PNDMScheduler.DiffusersClassName, (c, o) => new PNDMScheduler(c, o));
        var ddim = new Entry(DDIMScheduler.DiffusersClassName, (c, o) => new DDIMScheduler(c, o));
        var ddpm = new Entry(DDPMScheduler.DiffusersClassName, (c, o) => new DDPMScheduler(c, o));
        var euler = new Entry(EulerDiscreteScheduler.DiffusersClassName, (c, o) => new EulerDiscreteScheduler(c, o));
        var eulerA = new Entry(EulerAncestralDiscreteScheduler.DiffusersClassName, (c, o) => new EulerAncestralDiscreteScheduler(c, o));
        var dpm = new Entry(DPMSolverMultistepScheduler.DiffusersClassName, (c, o) => new DPMSolverMultistepScheduler(c, o));
        var dpmKarras = dpm with { Preset = new Dictionary<string, JsonNode?> { ["use_karras_sigmas"] = true } };
        var lms = new Entry(LMSDiscreteScheduler.DiffusersClassName, (c, o) => new LMSDiscreteScheduler(c, o));
        var d = new Dictionary<string, Entry>(StringComparer.OrdinalIgnoreCase);
        foreach (var e in new[] { pndm, ddim, ddpm, euler, eulerA, dpm, lms }) d[e.ClassName] = e;
        d["pndm"] = pndm; d["plms"] = pndm; d["ddim"] = ddim; d["ddpm"] = ddpm; d["euler"] = euler;
        d["euler-a"] = eulerA; d["euler_a"] = eulerA; d["dpm++2m"] = dpm; d["dpmpp2m"] = dpm;
        d["dpm++2m-karras"] = dpmKarras; d["dpmpp2m-karras"] = dpmKarras; d["lms"] = lms;
        return d;
    }

    /// <summary>Short names first, then the diffusers class names.</summary>
    public static IReadOnlyList<string> KnownNames { get; } = new[]
    {
        "pndm", "plms", "ddim", "ddpm", "euler", "euler-a", "euler_a", "dpm++2m", "dpmpp2m", "dpm++2m-karras", "dpmpp2m-karras", "lms",
        PNDMScheduler.DiffusersClassName, DDIMScheduler.DiffusersClassName, DDPMScheduler.DiffusersClassName,
        EulerDiscreteScheduler.DiffusersClassName, EulerAncestralDiscreteScheduler.DiffusersClassName,
        DPMSolverMultistepScheduler.DiffusersClassName, LMSDiscreteScheduler.DiffusersClassName,
    };

    /// <summary>Whether <paramref name="nameOrClass"/> names a scheduler (short name or diffusers class, any case).</summary>
    public static bool IsKnown(string? nameOrClass) => !string.IsNullOrWhiteSpace(nameOrClass) && Entries.ContainsKey(nameOrClass.Trim());

    /// <summary>The diffusers class a name stands for (throws listing the known names).</summary>
    public static string ResolveClassName(string nameOrClass) => Lookup(nameOrClass).ClassName;

    /// <summary>
    /// <c>Class.from_config(schedulerConfig, **overrides)</c>: e.g. Create("euler-a", pipelineSchedulerConfig).
    /// Short names may preset keys (dpm++2m-karras sets use_karras_sigmas); explicit overrides win.
    /// </summary>
    public static SchedulerBase Create(string nameOrClass, ConfigJson schedulerConfig, IReadOnlyDictionary<string, JsonNode?>? overrides = null)
    {
        var e = Lookup(nameOrClass);
        var merged = new Dictionary<string, JsonNode?>();
        if (e.Preset is not null) foreach (var (k, v) in e.Preset) merged[k] = v;
        if (overrides is not null) foreach (var (k, v) in overrides) merged[k] = v;
        return e.Create(schedulerConfig, merged.Count == 0 ? null : merged);
    }

    /// <summary>The scheduler a diffusers <c>scheduler/</c> folder describes (its <c>_class_name</c>).</summary>
    public static SchedulerBase FromFolder(string schedulerDir)
    {
        var path = Path.Combine(schedulerDir, "scheduler_config.json");
        var config = SchedulerConfig.LoadJson(path);
        var cls = config.Get<string?>("_class_name", null)
                  ?? throw new ModelConfigException($"{path} lacks '_class_name', so the scheduler class is unknown.", "_class_name");
        if (!Entries.ContainsKey(cls))
            throw config.Unsupported("_class_name", $"supported schedulers: {string.Join(", ", KnownNames.Skip(12))}");
        return Create(cls, config);
    }

    static Entry Lookup(string nameOrClass)
    {
        if (!string.IsNullOrWhiteSpace(nameOrClass) && Entries.TryGetValue(nameOrClass.Trim(), out var e)) return e;
        throw new ArgumentException($"Unknown scheduler '{nameOrClass}'. Known names: {string.Join(", ", KnownNames)}.", nameof(nameOrClass));
    }
}
