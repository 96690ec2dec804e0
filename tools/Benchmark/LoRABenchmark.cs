using System.Diagnostics;
using DreamBooth.Engine.Lora;
using DreamBooth.Engine.Models.Unets;
using DreamBooth.Engine.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Benchmark;

/// <summary>
/// train-sd14-lora lora|full [resolution=512] [steps=3] [checkpointing]: one DreamBooth UNet training step of an
/// SD-1.4-shaped UNet (random weights) at batch 1 + 1 prior image (latents [2,4,res/8,res/8], context [2,77,768]):
/// forward, MSE backward, clipping, AdamW. LoRA: rank 4 adapters on to_q/k/v/out.0, base frozen. Run each mode in
/// its own process: the peak memory is the process's VmHWM. Also prints the adapter file size at rank 4.
/// VAE encoding and the frozen text encoder are not included (they cost the same in both modes).
/// </summary>
public static class LoRABenchmark
{
    public static int Run(string repo, string[] args)
    {
        string mode = args.Length > 0 ? args[0] : "lora";
        int res = args.Length > 1 ? int.Parse(args[1]) : 512;
        int steps = args.Length > 2 ? int.Parse(args[2]) : 3;
        bool checkpointing = args.Contains("checkpointing");
        var config = UNet2DConditionConfig.Load(Path.Combine(repo, "tests/fixtures/configs/sd-v1-4/unet/config.json"));
        using var unet = UNet2DConditionModel.FromConfig(config, ScalarType.Float32, torch.CPU);
        if (checkpointing) { unet.GradientCheckpointing = true; unet.CheckpointRunner = GradientCheckpoint.Run; }
        unet.train();
        LoRANetwork? lora = null;
        List<(string, Parameter)> trainable;
        if (mode == "lora")
        {
            foreach (var p in unet.parameters()) p.requires_grad = false;
            lora = LoRANetwork.Create(unet, LoRATargets.Unet, 4, 4, new torch.Generator(0));
            trainable = lora.NamedParameters().ToList();
            var file = Path.Combine(Path.GetTempPath(), "bench-" + Guid.NewGuid().ToString("N")[..8] + ".safetensors");
            LoRAWeights.Save(file, new[] { lora }, LoRAFormat.Diffusers);
            Console.WriteLine($"adapter file (UNet, rank 4, fp32): {new FileInfo(file).Length / 1e6:F2} MB, {trainable.Sum(p => p.Item2.numel()):N0} parameters");
            File.Delete(file);
        }
        else trainable = unet.named_parameters().Select(p => (p.name, p.parameter)).ToList();
        using var optimizer = new DreamBooth.Engine.Training.AdamW(trainable, new AdamWOptions { WeightDecay = 1e-2 });
        var g = new torch.Generator(1);
        var times = new List<double>();
        for (int i = 0; i < steps; i++)
        {
            var sw = Stopwatch.StartNew();
            using (var scope = torch.NewDisposeScope())
            {
                var latents = torch.randn(new long[] { 2, 4, res / 8, res / 8 }, generator: g);
                var context = torch.randn(new long[] { 2, 77, 768 }, generator: g);
                var target = torch.randn(latents.shape, generator: g);
                var pred = unet.forward(latents, torch.tensor(new long[] { 500, 300 }), context);
                nn.functional.mse_loss(pred, target).backward();
                GradientCheckpoint.ThrowPendingError();
                GradientClipping.ClipGradNorm(trainable.Select(p => p.Item2), 1.0);
                optimizer.Step(1e-4);
                optimizer.ZeroGrad();
            }
            times.Add(sw.Elapsed.TotalSeconds);
            Console.WriteLine($"step {i + 1}: {times[^1]:F2} s, peak {PeakMb():N0} MB");
        }
        times.Sort();
        Console.WriteLine($"| train-sd14-{mode}{(checkpointing ? "+ckpt" : "")} | {res} px | batch 1+prior | {times[times.Count / 2]:F2} s/step (median of {steps}) | peak {PeakMb():N0} MB | {Environment.ProcessorCount} threads |");
        lora?.Dispose();
        return 0;
    }

    static long PeakMb()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmHWM:")) return long.Parse(line.Split(new[] { ' ', '\t' }, StringSplitOptions.RemoveEmptyEntries)[1]) / 1024;
        return -1;
    }
}
