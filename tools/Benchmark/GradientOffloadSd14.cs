using System.Diagnostics;
using DreamBooth.Engine.Models.Unets;
using DreamBooth.Engine.Training;
using TorchSharp;
using TorchSharp.Modules;
using AdamW = DreamBooth.Engine.Training.AdamW;
using static TorchSharp.torch;

namespace DreamBooth.Benchmark;

/// <summary>
/// offload-sd14 [workdir] [--device D]: how many bytes of gradients the device holds at once when -OffloadOptimizerState
/// moves them to the host during backward (GradientOffload), on the full-size SD-1.4 UNet (random weights from
/// train-sd14's folder) with whole-block checkpointing, as the 8GB profile runs it. Gradient sizes do not depend on the
/// resolution, so one step at 64 px (8×8 latents, batch 2) measures them; on a GPU the device's peak is printed too,
/// and the offloaded optimizer step on those host gradients is timed (<see cref="OptimizerStep"/>).
/// </summary>
public static class GradientOffloadSd14
{
    public static int Run(string repo, string[] args)
    {
        string work = BenchmarkArgs.Positional(args, "--device").FirstOrDefault() ?? "/tmp/dreambooth-bench";
        var device = DreamBooth.Engine.DeviceSelection.Parse(BenchmarkArgs.Option(args, "--device", "auto"));
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
            if (round < 2) offload.Zero(setToNone: false);
        }
        if (device.type == DeviceType.CUDA) OptimizerStep(named, offload.Gradients);
        return 0;
    }

    /// <summary>
    /// The offloaded optimizer step on the host gradients that backward left: the fp16 loss scaler's unscale and check,
    /// clipping's norm, and AdamW on the CPU with float32 master copies of the weights kept on the host (as shipped) and
    /// without them (each parameter read from the device every step, as before), alternating; then checks that every
    /// parameter on the device equals its master copy (the asynchronous copies back were complete and exact).
    /// </summary>
    static void OptimizerStep(List<(string, Parameter)> named, IReadOnlyList<Tensor?> grads)
    {
        var present = grads.OfType<Tensor>().ToList();
        var scaler = new DynamicLossScaler(initScale: 1.0);   // ×1: leaves the gradients as they are
        var withMasters = new AdamW(named, new AdamWOptions { StateDevice = torch.CPU });
        var readBack = new AdamW(named, new AdamWOptions { StateDevice = torch.CPU, HostMasterWeights = false });
        double Time(Action a) { var sw = Stopwatch.StartNew(); a(); torch.cuda.synchronize(); return sw.Elapsed.TotalSeconds; }
        float clip = 1f;
        for (int round = 0; round < 4; round++)
        {
            double unscale = Time(() => scaler.UnscaleAndCheck(grads));
            double norm = Time(() => clip = GradientClipping.ClipCoefficientOfGradients(present, 1.0).Coefficient);
            double masters = Time(() => withMasters.Step(1e-6, clip, grads));
            double back = Time(() => readBack.Step(1e-6, clip, grads));
            Console.WriteLine($"optimizer round {round + 1}{(round == 0 ? " (creates the state)" : "")}: unscale+check {unscale:F3} s, clip norm {norm:F3} s, " +
                $"AdamW on the host with master weights {masters:F3} s, reading each weight back {back:F3} s");
        }
        withMasters.Step(1e-6, clip, grads);
        long mismatched = 0;
        using (torch.no_grad())
            foreach (var (name, p) in named)
            {
                using var scope = torch.NewDisposeScope();
                if (!p.cpu().Equals(withMasters.GetState(name)!.Master)) mismatched++;
            }
        Console.WriteLine($"master weights: {withMasters.MasterBytes / 1073741824.0:F3} GB on the host; parameters on the device that differ from their master copy: {mismatched} of {named.Count}");
        withMasters.Dispose(); readBack.Dispose();
    }
}
