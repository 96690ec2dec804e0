using Xunit.Abstractions;
using DreamBooth.Engine.Models.Autoencoders;

namespace DreamBooth.Engine.Tests.Models;

/// <summary>AutoencoderKL against diffusers 0.32.2 outputs for the tiny-sd VAE (reference/vae.safetensors).</summary>
public sealed class VaeParityTests : IClassFixture<VaeParityTests.Data>
{
    public sealed class Data : IDisposable
    {
        public AutoencoderKL Vae { get; } = AutoencoderKL.FromPretrained(Path.Combine(Fixtures.TinySd, "vae"));
        public Dictionary<string, Tensor> Ref { get; } = Fixtures.Load("vae.safetensors");
        public void Dispose() { Vae.Dispose(); foreach (var t in Ref.Values) t.Dispose(); }
    }

    const double Tolerance = 1e-4;
    readonly Data data;
    readonly ITestOutputHelper log;
    public VaeParityTests(Data data, ITestOutputHelper log) { this.data = data; this.log = log; }

    void Check(Tensor actual, Tensor expected, double tolerance, string what)
    {
        log.WriteLine($"{what}: rel {Fixtures.RelativeError(actual, expected):E2}, max abs {Fixtures.MaxAbs(actual, expected):E2} (tolerance {tolerance:E0})");
        Fixtures.AssertRelative(actual, expected, tolerance, what);
    }

    [Fact]
    public void Encode_DistributionMatchesDiffusers()
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var r = data.Ref;
        using var dist = data.Vae.Encode(r["image"]);
        Check(dist.Mean, r["latent_mean"], Tolerance, "mean");
        Check(dist.LogVar, r["latent_logvar"], Tolerance, "logvar");
        Check(dist.Std, r["latent_std"], Tolerance, "std");
        Check(dist.Mode(), r["latent_mode"], Tolerance, "mode");
        Check(dist.Var, r["latent_std"] * r["latent_std"], Tolerance, "var = std²");
        Check(dist.Sample(new torch.Generator(0)), r["latent_sample_seed0"], Tolerance, "sample with Generator(0)");
    }

    [Fact]
    public void Decode_MatchesDiffusers()
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var decoded = data.Vae.Decode(data.Ref["decode_latents"]);
        Check(decoded, data.Ref["decoded"], Tolerance, "decoded");
    }

    [Fact]
    public void ScalingFactor_ComesFromConfig() => Assert.Equal(0.18215, data.Vae.ScalingFactor);

    [Fact]
    public void Encode_DistributionSurvivesCallerScopeOnly()
    {
        var r = data.Ref;
        DiagonalGaussianDistribution dist;
        using (torch.no_grad()) dist = data.Vae.Encode(r["image"]);
        using (dist)
            Check(dist.Mean, r["latent_mean"], Tolerance, "mean read after Encode returned");
    }
}
