using System.Diagnostics;
using DreamBooth.Engine;
using DreamBooth.Engine.Models.Unets;
using DreamBooth.Engine.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Benchmark;

/// <summary>
/// checkpoint-ab-sd14 [rounds=3] [workdir] [--prior] [--heap-as-trainer] [--with-step] [--device D]: what checkpointing costs, measured in one process on one UNet so
/// that the machine's speed swings hit every variant alike. Each round runs a forward + backward of the full-size SD-1.4
/// UNet (512 px latents, batch 1, or 2 with --prior) once per variant, in a rotating order: plain, whole blocks
/// recomputed (-GradientCheckpointingMode Blocks), selective (-GradientCheckpointingMode Selective), after one untimed warm-up pass. Prints each
/// time, the medians against plain, and the median of each round's own ratio to that round's plain pass (a slow stretch
/// of the machine then moves both sides of a ratio). With --heap-as-trainer each variant also gets the glibc heap the
/// trainer gives it (checkpointing: the low-memory heap, <see cref="CpuAllocatorPolicy.UseLowMemoryHeap"/>; plain: the
/// default), so the figure is what the switch costs as shipped; without it every variant runs on the default heap and
/// the figure is the recompute's alone. With --with-step each pass is a whole training step as the trainer runs it:
/// forward + backward, the clipping norm, the fp32 AdamW update (weight decay 1e-2) and zeroing the gradients. On a GPU (--device cuda) each pass ends with a synchronisation, so the time is
/// the kernels', not their queueing. Peak memory needs a process per variant: train-sd14.
/// </summary>
public static class CheckpointAbSd14
{
    public static int Run(string repo, string[] args)
    {
        var positional = BenchmarkArgs.Positional(args, "--device");
        int rounds = positional.Length > 0 ? int.Parse(positional[0]) : 3;
        string work = positional.Length > 1 ? positional[1] : "/tmp/dreambooth-bench";
        int batch = args.Contains("--prior") ? 2 : 1;
        bool heapAsTrainer = args.Contains("--heap-as-trainer"), withStep = args.Contains("--with-step");
        var device = DeviceSelection.Parse(BenchmarkArgs.Option(args, "--device", "cpu"));
        string model = Benchmarks.EnsureRandomPipeline(repo, Path.Combine(work, "sd14-random"));
        using var unet = UNet2DConditionModel.FromPretrained(Path.Combine(model, "unet"), ScalarType.Float32, device);
        unet.train();
        var g = new torch.Generator(0);
        var x = torch.randn(new long[] { batch, 4, 64, 64 }, generator: g).to(device);
        var c = torch.randn(new long[] { batch, 77, 768 }, generator: g).to(device);
        var t = torch.tensor(Enumerable.Range(0, batch).Select(i => 100L + 600 * i).ToArray()).to(device);
        var trainable = unet.named_parameters().Select(p => (p.name, p.parameter)).ToList();
        using var optimizer = withStep ? new AdamW(trainable, new AdamWOptions { WeightDecay = 1e-2 }) : null;
        var variants = new (string Name, Action Set)[]
        {
            ("plain", () => { unet.GradientCheckpointing = false; unet.SelectiveCheckpointing = false; Heap(false); }),
            ("blocks", () => { unet.GradientCheckpointing = true; unet.SelectiveCheckpointing = false; unet.CheckpointRunner = GradientCheckpoint.Run; Heap(true); }),
            ("selective", () => { unet.GradientCheckpointing = true; unet.SelectiveCheckpointing = true; unet.CheckpointRunner = GradientCheckpoint.Run; Heap(true); }),
        };
        void Heap(bool lowMemory) { if (heapAsTrainer) CpuAllocatorPolicy.UseLowMemoryHeap(lowMemory); }
        var times = variants.ToDictionary(v => v.Name, _ => new List<double>());
        double Pass()
        {
            if (optimizer is null) foreach (var p in unet.parameters()) { using var gr = p.grad; gr?.zero_(); }   // as the trainer's zero_grad
            var sw = Stopwatch.StartNew();
            using (var scope = torch.NewDisposeScope())
            {
                unet.forward(x, t, c).pow(2).mean().backward();
                GradientCheckpoint.ThrowPendingError();
                if (optimizer is not null)
                {
                    // The trainer's step: clipping's factor applied as AdamW reads each gradient, then zero_grad.
                    var grads = trainable.Select(p => (Tensor?)p.parameter.grad).ToList();
                    var (_, clip) = GradientClipping.ClipCoefficientOfGradients(grads.OfType<Tensor>().ToList(), 1.0);
                    optimizer.Step(1e-12, clip, grads);
                }
            }
            optimizer?.ZeroGrad(false);
            if (device.type == DeviceType.CUDA) torch.cuda.synchronize(device);
            return sw.Elapsed.TotalSeconds;
        }
        variants[0].Set();
        Console.WriteLine($"warm-up: plain {Pass(),7:F2} s (not counted)");
        for (int round = 0; round < rounds; round++)
            for (int k = 0; k < variants.Length; k++)
            {
                var (name, set) = variants[(k + round) % variants.Length];
                set();
                double s = Pass();
                times[name].Add(s);
                Console.WriteLine($"round {round + 1}: {name,-12} {s,7:F2} s");
            }
        double Median(List<double> v) { var o = v.OrderBy(d => d).ToList(); return o.Count % 2 == 1 ? o[o.Count / 2] : (o[o.Count / 2 - 1] + o[o.Count / 2]) / 2; }
        double plain = Median(times["plain"]);
        string Percent(double ratio) => $"{(ratio - 1) * 100:+0.0;-0.0}%";
        Console.WriteLine($"device: {device}");
        Console.WriteLine($"glibc heap: {(heapAsTrainer ? "as the trainer sets it (checkpointing variants: low-memory heap)" : "default for every variant")}");
        Console.WriteLine($"| variant (batch {batch}, {(withStep ? "whole step: forward, backward, clipping, AdamW, zero_grad" : "forward + backward")}, {rounds} rounds) | median s | vs plain | median of per-round ratios |");
        Console.WriteLine("|---|---|---|---|");
        foreach (var (name, _) in variants)
        {
            var ratios = times[name].Zip(times["plain"], (v, p) => v / p).ToList();
            Console.WriteLine($"| {name} | {Median(times[name]):F2} ({string.Join(", ", times[name].Select(d => d.ToString("F2")))}) | {Percent(Median(times[name]) / plain)} | {Percent(Median(ratios))} ({string.Join(", ", ratios.Select(Percent))}) |");
        }
        return 0;
    }
}
