using System.Text.RegularExpressions;
using DreamBooth.Engine;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Tests.Devices;

/// <summary>
/// Seeded noise is drawn from CPU generators and moved (diffusers' randn_tensor), so a seed gives the same noise on
/// every device; libtorch refuses a CPU generator for a draw on CUDA ("Expected a 'cuda' device type for generator
/// but found 'cpu'"), which is how VAE sampling and the noise-adding schedulers failed on the first GPU run.
/// </summary>
public class SeededNoiseTests
{
    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.Float16)]
    [InlineData(ScalarType.BFloat16)]
    public void OnTheCpu_IsAnFp32DrawFromTheGenerator_InThePrecisionAsked(ScalarType dtype)
    {
        using var g1 = new Generator(42);
        using var g2 = new Generator(42);
        // In fp32 whatever the precision: a seed then gives the same noise, rounded, in fp16 and bf16 (the VAE's
        // posterior sample in image to image drew fp16 values of its own before, and the image changed with the precision).
        using var fp32 = torch.randn(new long[] { 2, 4, 8, 8 }, dtype: ScalarType.Float32, generator: g1);
        using var expected = fp32.to(dtype);
        using var actual = RandnTensor.Create(new long[] { 2, 4, 8, 8 }, dtype, torch.CPU, g2);
        Assert.Equal(dtype, actual.dtype);
        Assert.True(expected.Equals(actual));
    }

    [Fact]
    public void WithoutAGenerator_DrawsOnTheDeviceAsked()
    {
        using var t = RandnTensor.Create(new long[] { 3 }, ScalarType.Float32, torch.CPU, null);
        Assert.Equal(DeviceType.CPU, t.device_type);
        Assert.Equal(new long[] { 3 }, t.shape);
    }

    /// <summary>The engine's seeded draws go through RandnTensor or draw on the CPU and move: none names a device and a generator in one call.</summary>
    [Fact]
    public void NoEngineCode_DrawsFromAGeneratorDirectlyOnADevice()
    {
        var src = Path.GetFullPath(Path.Combine(Fixtures.Root, "..", "..", "src", "Engine"));
        var call = new Regex(@"\b(randn|rand|randint|randperm|normal|bernoulli|multinomial)\((?<args>[^;]*?)\)\s*[;.)]", RegexOptions.Singleline);
        var offenders = new List<string>();
        foreach (var file in Directory.EnumerateFiles(src, "*.cs", SearchOption.AllDirectories))
        {
            if (file.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}") || file.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}")) continue;
            if (Path.GetFileName(file) == "RandnTensor.cs") continue;
            foreach (var line in File.ReadLines(file).Select((text, i) => (text, i)))
                foreach (Match m in call.Matches(line.text))
                    if (m.Groups["args"].Value.Contains("generator:") && m.Groups["args"].Value.Contains("device:"))
                        offenders.Add($"{Path.GetRelativePath(src, file)}:{line.i + 1}: {line.text.Trim()}");
        }
        Assert.True(offenders.Count == 0, "seeded draws on a device (use RandnTensor.Create):\n" + string.Join("\n", offenders));
    }
}
