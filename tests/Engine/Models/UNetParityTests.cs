using Xunit.Abstractions;
using DreamBooth.Engine.Models.Unets;

namespace DreamBooth.Engine.Tests.Models;

/// <summary>UNet2DConditionModel against diffusers 0.32.2 outputs for the tiny-sd UNet (reference/unet.safetensors).</summary>
public sealed class UNetParityTests : IClassFixture<UNetParityTests.Data>
{
    public sealed class Data : IDisposable
    {
        public UNet2DConditionModel Unet { get; } = UNet2DConditionModel.FromPretrained(Path.Combine(Fixtures.TinySd, "unet"));
        public Dictionary<string, Tensor> Ref { get; } = Fixtures.Load("unet.safetensors");
        public void Dispose() { Unet.Dispose(); foreach (var t in Ref.Values) t.Dispose(); }
    }

    const double Tolerance = 1e-4;
    readonly Data data;
    readonly ITestOutputHelper log;
    public UNetParityTests(Data data, ITestOutputHelper log) { this.data = data; this.log = log; }

    void Check(Tensor actual, Tensor expected, double tolerance, string what)
    {
        log.WriteLine($"{what}: rel {Fixtures.RelativeError(actual, expected):E2}, max abs {Fixtures.MaxAbs(actual, expected):E2} (tolerance {tolerance:E0})");
        Fixtures.AssertRelative(actual, expected, tolerance, what);
    }

    [Theory]
    [InlineData("t_0", "out_t_0")]
    [InlineData("t_10", "out_t_10")]
    [InlineData("t_500", "out_t_500")]
    [InlineData("t_999", "out_t_999")]
    [InlineData("t_batch", "out_t_batch")]
    [InlineData("t_float", "out_t_float")]
    public void Forward_MatchesDiffusers(string timestepKey, string outputKey)
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var r = data.Ref;
        var t = r[timestepKey];
        var output = data.Unet.forward(r["sample"], t, r["encoder_hidden_states"]);
        Check(output, r[outputKey], Tolerance, $"UNet output for {timestepKey} ({t.dtype}, shape [{string.Join(",", t.shape)}])");
    }

    [Fact]
    public void Forward_ScalarIntTimestep_EqualsPythonIntCase()
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var r = data.Ref;
        var output = data.Unet.forward(r["sample"], 500L, r["encoder_hidden_states"]);
        Check(output, r["out_t_python_int_500"], Tolerance, "UNet output for timestep 500 (C# long)");
        var viaTensor = data.Unet.forward(r["sample"], r["t_500"], r["encoder_hidden_states"]);
        Assert.True(output.Equals(viaTensor), "a long timestep and a 0-dim int64 tensor must give identical outputs");
    }

    [Fact]
    public void TimeProjectionAndEmbedding_MatchDiffusers()
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var t = torch.tensor(new long[] { 0, 10, 500, 999 });
        var proj = data.Unet.time_proj.forward(t);
        Check(proj, data.Ref["time_proj_0_10_500_999"], 1e-6, "time_proj");
        var emb = data.Unet.time_embedding.forward(proj);
        Check(emb, data.Ref["time_embedding_0_10_500_999"], Tolerance, "time_embedding");
    }
}
