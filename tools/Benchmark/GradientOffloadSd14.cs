using System.Diagnostics;
using DreamBooth.Engine.Models.Unets;
using DreamBooth.Engine.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Benchmark;

/// <summary>
/// offload-sd14 [workdir] [--device D]: how many bytes of gradients the device holds at once when -OffloadOptimizerState
/// moves them to the host during backward (GradientOffload), on the full-size SD-1.4 UNet (random weights from
/// train-sd14's folder) with whole-block checkpointing, as the 8GB profile runs it. Gradient sizes do not depend on the
/// resolution, so one step at 64 px (8×8 latents, batch 2) measures them; on a GPU the device's peak is printed too.
/// </summary>
public static class GradientOffloadSd14
{
    public static int Run(string repo, string[] args)
    {
        string work = args.Length > 0 && !args[0].StartsWith("--") ? args[0] : "/tmp/dreambooth-bench";
        int at = Array.IndexOf(args, "--device");
        var device = DreamBooth.Engine.DeviceSelection.Parse(at >= 0 && at + 1 < args.Length ? args[at + 1] : "auto");
        string model = Benchmarks.EnsureRandomPipeline(repo, Path.Combine(work, "sd14-random"));
        using var monitor = DreamBooth.Engine.DeviceMemoryMonitor.Start(device);
        using var unet = UNet2DConditionModel.FromPretrained(Path.Combine(model, "unet"), ScalarType.Float32, device);
        unet.train();
        unet.GradientCheckpointing = true;
        unet.CheckpointRunner = GradientCheckpoint.Run;
        var named = unet.named_parameters().Select(p => ("unet." + p.name, p.parameter)).ToList();
        using var offload = new GradientOffload(named);
        using var collect = offload.CollectAfterCheckpointedBlocks();
        var g = new torch.Generator(0);
        long total = named.Sum(p => p.Item2.numel() * 4);
        for (int round = 1; round <= 2; round++)
        {
            var sw = Stopwatch.StartNew();
            long remainder;
            using (var scope = torch.NewDisposeScope())
            {
                var x = torch.randn(new long[] { 2, 4, 8, 8 }, generator: g).to(device);
                var c = torch.randn(new long[] { 2, 77, 768 }, generator: g).to(device);
                var t = torch.tensor(new long[] { 10, 700 }).to(device);
                unet.forward(x, t, c).pow(2).mean().backward();
                GradientCheckpoint.ThrowPendingError();
                remainder = named.Sum(p => { using var gr = p.Item2.grad; return gr is null ? 0 : gr.numel() * gr.ElementSize; });
                offload.Collect();
            }
            monitor.Sample();
            Console.WriteLine($"round {round}: {sw.Elapsed.TotalSeconds:F1} s; UNet gradients {total / 1073741824.0:F3} GB; " +
                $"on the parameters at once at most {offload.PeakCollectedBytes / 1073741824.0:F3} GB " +
                $"({100.0 * offload.PeakCollectedBytes / total:F1}%); left for the end of backward (outside checkpointed blocks) " +
                $"{remainder / 1073741824.0:F3} GB; host buffers {offload.HostBytes / 1073741824.0:F3} GB" +
                (monitor.PeakBytes is long peak ? $"; peak device memory {peak / 1073741824.0:F2} GB ({monitor.Source})" : ""));
            offload.Zero(setToNone: false);
        }
        return 0;
    }
}
