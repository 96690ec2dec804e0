using System.Text.Json.Nodes;
using DreamBooth.Engine.Schedulers;
using Xunit.Abstractions;

namespace DreamBooth.Engine.Tests.Schedulers;

/// <summary>Every schedulers/*.safetensors case: timesteps, sigmas, init_noise_sigma and each loop step vs diffusers 0.32.2.</summary>
public class SchedulerParityTests
{
    readonly ITestOutputHelper output;
    public SchedulerParityTests(ITestOutputHelper output) => this.output = output;

    const double StepTolerance = 1e-5;

    public static IEnumerable<object[]> Cases()
    {
        foreach (var cls in new[] { "PNDMScheduler", "DDIMScheduler", "DDPMScheduler", "EulerDiscreteScheduler",
                     "EulerAncestralDiscreteScheduler", "DPMSolverMultistepScheduler", "LMSDiscreteScheduler" })
            foreach (var n in new[] { 5, 25 })
                yield return new object[] { cls, n };
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void LoopMatchesDiffusers(string cls, int n)
    {
        var c = SchedulerFixtures.Case($"scheduler_{cls}_N{n}");
        var t = Fixtures.Load(c["file"]!.GetValue<string>());
        using var scope = torch.NewDisposeScope();
        using var s = SchedulerFactory.Create(cls, SchedulerFixtures.HubConfig());
        Assert.Equal(cls, s.ClassName);
        s.SetTimesteps(n);

        var expectedTs = t["timesteps"];
        Assert.Equal(expectedTs.dtype, s.Timesteps.dtype);
        Assert.True(expectedTs.Equals(s.Timesteps), $"timesteps differ: {Str(s.Timesteps)} vs {Str(expectedTs)}");

        if (t.TryGetValue("sigmas", out var expectedSigmas))
        {
            Assert.NotNull(s.Sigmas);
            // bit-exact: numpy's float64 interp of correctly rounded float32 training sigmas, then float32
            double sigmaErr = Fixtures.MaxAbs(s.Sigmas!, expectedSigmas);
            output.WriteLine($"sigmas max |diff| = {sigmaErr:E2}");
            Assert.True(expectedSigmas.Equals(s.Sigmas!), $"sigmas differ: max |diff| {sigmaErr:E2}");
        }

        double initSigma = c["init_noise_sigma"]!.GetValue<double>();
        Assert.True(Math.Abs(s.InitNoiseSigma - initSigma) <= 1e-6 * initSigma, $"init_noise_sigma {s.InitNoiseSigma} vs {initSigma}");

        var x = t["sample0"] * s.InitNoiseSigma;
        Fixtures.AssertRelative(x, t["initial_sample"], 1e-7, "initial_sample");
        int loopSteps = c["num_loop_steps"]!.GetValue<int>();
        Assert.Equal(loopSteps, (int)s.Timesteps.shape[0]);

        // like the manifest: ONE generator seeded 0, created before the loop, passed to every step
        var gen = new torch.Generator(0).manual_seed(0);
        double worstScaled = 0, worstPrev = 0;
        for (int i = 0; i < loopSteps; i++)
        {
            var ts = s.Timesteps[i];
            var scaled = s.ScaleModelInput(x, ts);
            double es = Fixtures.RelativeError(scaled, t[$"scaled_{i:D2}"]);
            x = s.Step(t[$"model_output_{i:D2}"], ts, x, gen);
            double ep = Fixtures.RelativeError(x, t[$"prev_sample_{i:D2}"]);
            worstScaled = Math.Max(worstScaled, es); worstPrev = Math.Max(worstPrev, ep);
            Assert.True(es <= StepTolerance, $"step {i} (t={ts.to(torch.ScalarType.Float64).item<double>()}): scaled rel err {es:E3}");
            Assert.True(ep <= StepTolerance, $"step {i} (t={ts.to(torch.ScalarType.Float64).item<double>()}): prev_sample rel err {ep:E3}");
        }
        output.WriteLine($"{cls} N={n}: worst rel err scaled {worstScaled:E2}, prev_sample {worstPrev:E2} (tol {StepTolerance:E0})");
    }

    static string Str(torch.Tensor t) => string.Join(",", t.to(torch.ScalarType.Float64).data<double>().ToArray());

    [Theory]
    [InlineData("epsilon")]
    [InlineData("v_prediction")]
    public void DdpmTrainingHelpersMatchDiffusers(string predictionType)
    {
        var c = SchedulerFixtures.Case($"ddpm_add_noise_{predictionType}");
        var t = Fixtures.Load(c["file"]!.GetValue<string>());
        using var scope = torch.NewDisposeScope();
        using var s = new DDPMScheduler(SchedulerFixtures.HubConfig(),
            new Dictionary<string, JsonNode?> { ["prediction_type"] = predictionType });
        Assert.Equal(predictionType, s.Config.PredictionType);
        double eb = Fixtures.RelativeError(s.Betas, t["betas"]);
        double ea = Fixtures.RelativeError(s.AlphasCumprod, t["alphas_cumprod"]);
        double en = Fixtures.RelativeError(s.AddNoise(t["original"], t["noise"], t["timesteps"]), t["noisy"]);
        double ev = Fixtures.RelativeError(s.GetVelocity(t["original"], t["noise"], t["timesteps"]), t["velocity"]);
        output.WriteLine($"betas {eb:E2}, alphas_cumprod {ea:E2}, add_noise {en:E2}, velocity {ev:E2}");
        foreach (var (what, e) in new[] { ("betas", eb), ("alphas_cumprod", ea), ("add_noise", en), ("velocity", ev) })
            Assert.True(e <= 1e-6, $"{what}: rel err {e:E3} > 1e-6");
    }
}
