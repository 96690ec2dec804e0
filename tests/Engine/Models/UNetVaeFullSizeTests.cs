using System.Diagnostics;
using Xunit.Abstractions;
using DreamBooth.Engine.Models.Autoencoders;
using DreamBooth.Engine.Models.Unets;

namespace DreamBooth.Engine.Tests.Models;

/// <summary>
/// Full-size SD v1-4 UNet and VAE (random weights, real configs in tests/fixtures/configs/sd-v1-4): one inference forward
/// each, timed, with the process's peak RSS (VmHWM). Run each alone to get a per-model peak:
/// dotnet test --filter "FullyQualifiedName~UNetVaeFullSizeTests.UNet" (or .Vae).
/// </summary>
[Trait("Category", "Slow")]
public sealed class UNetVaeFullSizeTests
{
    static string ConfigDir => Path.Combine(Fixtures.Root, "configs", "sd-v1-4");
    readonly ITestOutputHelper log;
    public UNetVaeFullSizeTests(ITestOutputHelper log) => this.log = log;

    static long KiB(string field)
    {
        var line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith(field + ":"));
        return line is null ? -1 : long.Parse(line.Split(new[] { ' ', '\t' }, StringSplitOptions.RemoveEmptyEntries)[1]);
    }

    TimeSpan cpuAtStart = Process.GetCurrentProcess().TotalProcessorTime;

    void Restart(Stopwatch sw) { cpuAtStart = Process.GetCurrentProcess().TotalProcessorTime; sw.Restart(); }

    // CPU time is reported too: on a shared machine wall time depends on the other processes
    void Report(string what, Stopwatch sw)
        => log.WriteLine($"{what}: {sw.Elapsed.TotalSeconds:F2} s wall, {(Process.GetCurrentProcess().TotalProcessorTime - cpuAtStart).TotalSeconds:F1} s CPU; RSS {KiB("VmRSS") / 1024} MiB, peak RSS (VmHWM) {KiB("VmHWM") / 1024} MiB; threads {torch.get_num_threads()}");

    [Fact]
    public void UNet_FullSize_Forward64x64With77x768Context()
    {
        log.WriteLine($"before: peak RSS {KiB("VmHWM") / 1024} MiB");
        var sw = new Stopwatch(); Restart(sw);
        using var unet = UNet2DConditionModel.FromConfig(UNet2DConditionConfig.Load(Path.Combine(ConfigDir, "unet", "config.json")));
        Report("UNet construct (random init)", sw);
        Assert.Equal(859_520_964L, unet.parameters().Sum(p => p.numel()));   // SD-1 UNet parameter count

        using var scope = torch.NewDisposeScope();
        var sample = torch.randn(1, 4, 64, 64, generator: new torch.Generator(0));
        var context = torch.randn(1, 77, 768, generator: new torch.Generator(1));
        using (torch.inference_mode())
        {
            Restart(sw);
            var output = unet.forward(sample, 500L, context);
            Report("UNet forward 1x4x64x64, 77x768 context, fp32", sw);
            Assert.Equal(new long[] { 1, 4, 64, 64 }, output.shape);
            Assert.True(output.isfinite().all().item<bool>());
        }
    }

    [Fact]
    public void Vae_FullSize_Decode64x64To512x512()
    {
        log.WriteLine($"before: peak RSS {KiB("VmHWM") / 1024} MiB");
        var sw = new Stopwatch(); Restart(sw);
        using var vae = AutoencoderKL.FromConfig(AutoencoderKLConfig.Load(Path.Combine(ConfigDir, "vae", "config.json")));
        Report("VAE construct (random init)", sw);
        Assert.Equal(83_653_863L, vae.parameters().Sum(p => p.numel()));   // SD-1 VAE parameter count

        using var scope = torch.NewDisposeScope();
        var latents = torch.randn(1, 4, 64, 64, generator: new torch.Generator(0));
        using (torch.inference_mode())
        {
            Restart(sw);
            var image = vae.Decode(latents);
            Report("VAE decode 1x4x64x64 -> 1x3x512x512, fp32", sw);
            Assert.Equal(new long[] { 1, 3, 512, 512 }, image.shape);
            Assert.True(image.isfinite().all().item<bool>());
        }
    }
}
