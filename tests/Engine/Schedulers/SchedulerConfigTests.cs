using System.Text.Json.Nodes;
using DreamBooth.Engine.IO;
using DreamBooth.Engine.Schedulers;

namespace DreamBooth.Engine.Tests.Schedulers;

/// <summary>Effective configs (from_config semantics), factory names, refusals and config round trips.</summary>
public class SchedulerConfigTests
{
    public static IEnumerable<object[]> Classes() => new[] { "PNDMScheduler", "DDIMScheduler", "DDPMScheduler", "EulerDiscreteScheduler",
        "EulerAncestralDiscreteScheduler", "DPMSolverMultistepScheduler", "LMSDiscreteScheduler" }.Select(c => new object[] { c });

    [Theory]
    [MemberData(nameof(Classes))]
    public void EffectiveConfigEqualsDiffusers(string cls)
    {
        var expected = SchedulerFixtures.Case($"scheduler_{cls}_N5")["scheduler_config"]!.AsObject();
        using var s = SchedulerFactory.Create(cls, SchedulerFixtures.HubConfig());
        AssertConfigEquals(expected, s.Config);
    }

    [Theory]
    [InlineData("epsilon")]
    [InlineData("v_prediction")]
    public void OverridesBehaveLikeFromConfigKwargs(string predictionType)
    {
        var expected = SchedulerFixtures.Case($"ddpm_add_noise_{predictionType}")["scheduler_config"]!.AsObject();
        using var s = SchedulerFactory.Create("ddpm", SchedulerFixtures.HubConfig(), new Dictionary<string, JsonNode?> { ["prediction_type"] = predictionType });
        AssertConfigEquals(expected, s.Config);
    }

    [Fact]
    public void ConfigFromAnotherSchedulerDropsItsDefaults()
    {
        // diffusers: EulerDiscreteScheduler.from_config(ddim.config) must not inherit DDIM's defaulted 'leading' spacing
        using var ddim = SchedulerFactory.Create("ddim", SchedulerFixtures.HubConfig());
        Assert.Equal("leading", ddim.Config.TimestepSpacing);
        using var euler = SchedulerFactory.Create("euler", ddim.Config.ToConfigJson());
        var expected = SchedulerFixtures.Case("scheduler_EulerDiscreteScheduler_N5")["scheduler_config"]!.AsObject();
        AssertConfigEquals(expected, euler.Config);
    }

    static void AssertConfigEquals(JsonObject expected, SchedulerConfig actual)
    {
        var exp = (JsonObject)expected.DeepClone();
        var act = (JsonObject)actual.Json.Root.DeepClone();
        var expDefaults = exp[SchedulerConfig.UseDefaultValuesKey]!.AsArray().Select(n => n!.GetValue<string>()).OrderBy(x => x).ToArray();
        var actDefaults = actual.DefaultedKeys.OrderBy(x => x).ToArray();
        Assert.Equal(expDefaults, actDefaults);
        exp.Remove(SchedulerConfig.UseDefaultValuesKey);
        act.Remove(SchedulerConfig.UseDefaultValuesKey);
        var diffs = new List<string>();
        bool same = SchedulerFixtures.JsonEqual(act, exp, "config", diffs);
        Assert.True(same, "effective config differs from diffusers': " + string.Join("; ", diffs));
    }

    [Theory]
    [InlineData("pndm", "PNDMScheduler")]
    [InlineData("PLMS", "PNDMScheduler")]
    [InlineData("ddim", "DDIMScheduler")]
    [InlineData("DDPM", "DDPMScheduler")]
    [InlineData("euler", "EulerDiscreteScheduler")]
    [InlineData("euler-a", "EulerAncestralDiscreteScheduler")]
    [InlineData("Euler_A", "EulerAncestralDiscreteScheduler")]
    [InlineData("dpm++2m", "DPMSolverMultistepScheduler")]
    [InlineData("dpmpp2m", "DPMSolverMultistepScheduler")]
    [InlineData("dpm++2m-karras", "DPMSolverMultistepScheduler")]
    [InlineData("lms", "LMSDiscreteScheduler")]
    [InlineData("dpmsolvermultistepscheduler", "DPMSolverMultistepScheduler")]
    [InlineData("EulerAncestralDiscreteScheduler", "EulerAncestralDiscreteScheduler")]
    public void NamesAndAliasesResolve(string name, string cls)
    {
        Assert.Equal(cls, SchedulerFactory.ResolveClassName(name));
        using var s = SchedulerFactory.Create(name, SchedulerFixtures.HubConfig());
        Assert.Equal(cls, s.ClassName);
        Assert.Equal(cls, s.GetType().Name);
        Assert.Contains(name, SchedulerFactory.KnownNames, StringComparer.OrdinalIgnoreCase);
    }

    [Fact]
    public void UnknownNameListsTheKnownOnes()
    {
        var e = Assert.Throws<ArgumentException>(() => SchedulerFactory.Create("heun", SchedulerFixtures.HubConfig()));
        Assert.Contains("'heun'", e.Message);
        foreach (var n in SchedulerFactory.KnownNames) Assert.Contains(n, e.Message);
    }

    [Fact]
    public void KarrasAliasGivesKarrasSigmas()
    {
        using var s = SchedulerFactory.Create("dpm++2m-karras", SchedulerFixtures.HubConfig());
        Assert.True(s.Config.UseKarrasSigmas);
        s.SetTimesteps(5);
        var sig = s.Sigmas!.data<float>().ToArray();
        // rho=7 ramp between the training sigma extremes, then 0
        using var plain = new DPMSolverMultistepScheduler(SchedulerFixtures.HubConfig());
        float sMin = MathF.Sqrt((1 - plain.AlphasCumprod[0].item<float>()) / plain.AlphasCumprod[0].item<float>());
        float sMax = MathF.Sqrt((1 - plain.AlphasCumprod[-1].item<float>()) / plain.AlphasCumprod[-1].item<float>());
        Assert.Equal(6, sig.Length);
        Assert.Equal(sMax, sig[0], 5);
        Assert.Equal(sMin, sig[4], 6);
        Assert.Equal(0f, sig[5]);
        double mid = Math.Pow(Math.Pow(sMax, 1 / 7.0) + 0.5 * (Math.Pow(sMin, 1 / 7.0) - Math.Pow(sMax, 1 / 7.0)), 7);
        Assert.Equal(mid, sig[2], 5);
        var ts = s.Timesteps.data<long>().ToArray();
        Assert.Equal(999, ts[0]);
        Assert.Equal(0, ts[4]);
        Assert.True(ts.Zip(ts.Skip(1)).All(p => p.First > p.Second), "Karras timesteps must descend");
    }

    [Fact]
    public void FromFolderUsesClassName()
    {
        using var s = SchedulerFactory.FromFolder(Path.Combine(Fixtures.TinySd, "scheduler"));
        Assert.IsType<PNDMScheduler>(s);
        Assert.True(s.Config.SkipPrkSteps);
        Assert.Equal(1, s.Config.StepsOffset);
    }

    [Fact]
    public void ThresholdingIsRefusedNamingTheKey()
    {
        var e = Assert.Throws<ModelConfigException>(() => SchedulerFactory.Create("ddim", SchedulerFixtures.HubConfig(),
            new Dictionary<string, JsonNode?> { ["thresholding"] = true }));
        Assert.Equal("thresholding", e.Key);
        Assert.Contains("thresholding", e.Message);
        Assert.Contains("true", e.Message);
    }

    [Fact]
    public void UnsupportedValuesAreRefused()
    {
        var hub = SchedulerFixtures.HubConfig();
        Assert.Equal("beta_schedule", Assert.Throws<ModelConfigException>(() => SchedulerFactory.Create("ddpm", hub,
            new Dictionary<string, JsonNode?> { ["beta_schedule"] = "sigmoid" })).Key);
        Assert.Equal("algorithm_type", Assert.Throws<ModelConfigException>(() => SchedulerFactory.Create("dpm++2m", hub,
            new Dictionary<string, JsonNode?> { ["algorithm_type"] = "sde-dpmsolver++" })).Key);
        Assert.Equal("skip_prk_steps", Assert.Throws<ModelConfigException>(() => SchedulerFactory.Create("pndm", hub,
            new Dictionary<string, JsonNode?> { ["skip_prk_steps"] = false })).Key);
        Assert.Equal("timestep_spacing", Assert.Throws<ModelConfigException>(() =>
        {
            using var s = SchedulerFactory.Create("ddim", hub, new Dictionary<string, JsonNode?> { ["timestep_spacing"] = "karras" });
            s.SetTimesteps(5);
        }).Key);
    }

    [Fact]
    public void SaveRoundTripsKeysAndNonFiniteValues()
    {
        var dir = Directory.CreateTempSubdirectory("db-sched-").FullName;
        try
        {
            using var s = SchedulerFactory.Create("dpm++2m", SchedulerFixtures.HubConfig());
            var path = Path.Combine(dir, "scheduler_config.json");
            s.Config.Save(path);
            var text = File.ReadAllText(path);
            Assert.Contains("\"lambda_min_clipped\": -Infinity", text);   // what Python's json writes and reads
            Assert.DoesNotContain(SchedulerConfig.UseDefaultValuesKey, text);  // diffusers' save_config drops it
            using var back = SchedulerFactory.FromFolder(dir);
            Assert.IsType<DPMSolverMultistepScheduler>(back);
            Assert.Equal(double.NegativeInfinity, back.Config.LambdaMinClipped);
            Assert.True(back.Config.Json.Has("skip_prk_steps"));            // unknown keys kept
            var diffs = new List<string>();
            var a = (JsonObject)s.Config.Json.Root.DeepClone(); a.Remove(SchedulerConfig.UseDefaultValuesKey);
            var b = (JsonObject)back.Config.Json.Root.DeepClone(); b.Remove(SchedulerConfig.UseDefaultValuesKey);
            Assert.True(SchedulerFixtures.JsonEqual(b, a, "config", diffs), string.Join("; ", diffs));
        }
        finally { Directory.Delete(dir, true); }
    }
}
