using Xunit.Abstractions;

namespace DreamBooth.Engine.Tests.Schedulers;

/// <summary>Tests that touch torch's global CPU generator must not run beside other tests.</summary>
[CollectionDefinition("GlobalTorchRng", DisableParallelization = true)]
public sealed class GlobalTorchRngCollection { }

/// <summary>
/// reference/rng.safetensors: PyTorch 2.6 CPU generator streams (mt19937 + randn's scalar path for &lt;16 elements and
/// vectorised Box-Muller for ≥16, rand, randint, float64 randn) reproduced with TorchSharp 0.107 / libtorch 2.10.
/// </summary>
[Collection("GlobalTorchRng")]
public class RngParityTests
{
    readonly ITestOutputHelper output;
    public RngParityTests(ITestOutputHelper output) => this.output = output;

    // loaded per test, inside the test's dispose scope (a cached copy would be disposed by the first scope)
    Dictionary<string, torch.Tensor>? reference;
    Dictionary<string, torch.Tensor> Ref => reference ??= Fixtures.Load("rng.safetensors");

    void AssertBitExact(torch.Tensor actual, string key)
    {
        var expected = Ref[key];
        Assert.Equal(expected.dtype, actual.dtype);
        Assert.Equal(expected.shape, actual.shape);
        bool equal = expected.Equals(actual);
        long mismatches = equal ? 0 : actual.ne(expected).sum().item<long>();
        double maxAbs = Fixtures.MaxAbs(actual, expected);
        output.WriteLine($"{key}: {(equal ? "bit-exact" : $"{mismatches} of {expected.numel()} differ, max |diff| {maxAbs:E2}")}");
        Assert.True(equal, $"{key}: {mismatches} of {expected.numel()} elements differ (max |diff| {maxAbs:E3})");
    }

    [Fact]
    public void GlobalSeedStreamMatchesPyTorch()
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(0);
        AssertBitExact(torch.randn(2, 4, 8, 8), "global_seed0_randn_2x4x8x8");
        AssertBitExact(torch.rand(8), "global_seed0_then_rand_8");
        AssertBitExact(torch.randint(0, 1000, new long[] { 8 }, dtype: torch.ScalarType.Int64), "global_seed0_then_randint_0_1000_8");
    }

    [Fact]
    public void GeneratorSeed42StreamMatchesPyTorch()
    {
        using var scope = torch.NewDisposeScope();
        var g = new torch.Generator(42).manual_seed(42);
        AssertBitExact(torch.randn(new long[] { 2, 4, 8, 8 }, generator: g), "gen42_randn_2x4x8x8");
        AssertBitExact(torch.rand(new long[] { 8 }, generator: g), "gen42_then_rand_8");
        AssertBitExact(torch.randint(0, 1000, new long[] { 8 }, dtype: torch.ScalarType.Int64, generator: g), "gen42_then_randint_0_1000_8");
    }

    [Fact]
    public void GeneratorConstructorSeedEqualsManualSeed()
    {
        using var scope = torch.NewDisposeScope();
        var a = torch.randn(new long[] { 33 }, generator: new torch.Generator(42));
        var b = torch.randn(new long[] { 33 }, generator: new torch.Generator().manual_seed(42));
        Assert.True(a.Equals(b));
        AssertBitExact(torch.randn(new long[] { 33 }, generator: new torch.Generator(0)), "gen0_randn_33");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(15)]
    [InlineData(16)]
    [InlineData(17)]
    [InlineData(33)]
    public void FreshSeed0RandnMatchesPyTorch(int n)
    {
        using var scope = torch.NewDisposeScope();
        AssertBitExact(torch.randn(new long[] { n }, generator: new torch.Generator(0).manual_seed(0)), $"gen0_randn_{n}");
    }

    [Fact]
    public void FreshSeed0OtherDistributionsMatchPyTorch()
    {
        using var scope = torch.NewDisposeScope();
        AssertBitExact(torch.rand(new long[] { 17 }, generator: new torch.Generator(0).manual_seed(0)), "gen0_rand_17");
        AssertBitExact(torch.randint(0, 1000, new long[] { 2 }, dtype: torch.ScalarType.Int64, generator: new torch.Generator(0).manual_seed(0)), "gen0_randint_0_1000_2");
        AssertBitExact(torch.randn(new long[] { 1, 4, 32, 32 }, generator: new torch.Generator(0).manual_seed(0)), "gen0_randn_1x4x32x32");
        AssertBitExact(torch.randn(new long[] { 5 }, dtype: torch.ScalarType.Float64, generator: new torch.Generator(0).manual_seed(0)), "gen0_randn_float64_5");
    }
}
