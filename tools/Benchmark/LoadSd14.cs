using System.Diagnostics;
using DreamBooth.Engine.Models;
using DreamBooth.Engine.Models.Autoencoders;
using DreamBooth.Engine.Models.TextEncoders;
using DreamBooth.Engine.Models.Unets;
using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Benchmark;

/// <summary>
/// load-sd14 [empty|random-init] [fp32|fp16] [workdir]: loads the random SD-1.4 pipeline's UNet, VAE and text encoder
/// from their diffusers folders three times and prints the seconds of each and the process's peak RSS. "empty" is
/// FromPretrained (meta-device construction, <see cref="EmptyWeights"/>); "random-init" is the way before it:
/// TorchSharp's random initialisation in fp32, a cast to the dtype, then the same strict load. One variant per process.
/// </summary>
public static class LoadSd14
{
    public static int Run(string repo, string[] args)
    {
        string variant = args.Length > 0 ? args[0] : "empty";
        var dtype = args.Length > 1 ? args[1] switch { "fp16" => ScalarType.Float16, "bf16" => ScalarType.BFloat16, _ => ScalarType.Float32 } : ScalarType.Float32;
        string work = args.Length > 2 ? args[2] : Path.Combine(Path.GetTempPath(), "dreambooth-bench");
        string folder = Benchmarks.EnsureRandomPipeline(repo, Path.Combine(work, "sd14-random"));
        bool empty = variant == "empty";

        nn.Module Load(string component) => (component, empty) switch
        {
            ("unet", true) => UNet2DConditionModel.FromPretrained(Path.Combine(folder, "unet"), dtype),
            ("vae", true) => AutoencoderKL.FromPretrained(Path.Combine(folder, "vae"), dtype),
            ("text_encoder", true) => ClipTextModel.FromPretrained(Path.Combine(folder, "text_encoder"), dtype),
            ("unet", false) => Fill(UNet2DConditionModel.FromConfig(UNet2DConditionConfig.Load(Path.Combine(folder, "unet", "config.json")), dtype), "unet", UNet2DConditionModel.WeightsName),
            ("vae", false) => Fill(AutoencoderKL.FromConfig(AutoencoderKLConfig.Load(Path.Combine(folder, "vae", "config.json")), dtype), "vae", AutoencoderKL.WeightsName),
            _ => Fill(ClipTextModel.FromConfig(ClipTextConfig.Load(Path.Combine(folder, "text_encoder", "config.json"))).to(dtype), "text_encoder", "model.safetensors"),
        };
        nn.Module Fill(nn.Module m, string component, string file) { StateDictLoader.Load(m, Path.Combine(folder, component, file)); return m; }

        foreach (int round in Enumerable.Range(1, 3))
        {
            var line = new List<string>();
            double total = 0;
            foreach (var component in new[] { "unet", "vae", "text_encoder" })
            {
                var sw = Stopwatch.StartNew();
                using var m = Load(component);
                double s = sw.Elapsed.TotalSeconds;
                total += s;
                line.Add($"{component} {s:F2} s (RSS {Program.RssGB():F2} GB loaded)");
            }
            Console.WriteLine($"round {round}, {variant}, {dtype}: {string.Join(", ", line)}; all three {total:F2} s; peak RSS so far {Program.PeakRssGB():F2} GB");
        }
        return 0;
    }
}
