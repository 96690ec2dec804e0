using DreamBooth.Engine.IO;
using DreamBooth.Engine.Models.Autoencoders;
using DreamBooth.Engine.Models.Unets;
using DreamBooth.Engine.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Benchmark;

/// <summary>
/// parity-fullsize DIR: loads the full-size models that tools/Benchmark/reference/diffusers_fullsize_reference.py wrote
/// with diffusers (DIR/&lt;case&gt;/unet, vae) and compares the engine's outputs with diffusers' own
/// (DIR/&lt;case&gt;/reference.safetensors): largest absolute difference, and that difference over the reference's
/// largest magnitude; then one MSE backward, plain and with each checkpointing mode, against diffusers' loss, total
/// gradient norm and a few parameters' gradients. A check run by hand where PyTorch and diffusers are at hand, not a test.
/// </summary>
public static class ParityFullsize
{
    public static int Run(string[] args)
    {
        if (args.Length < 1) { Console.WriteLine("parity-fullsize DIR (written by tools/Benchmark/reference/diffusers_fullsize_reference.py)"); return 2; }
        using var _ = torch.no_grad();
        foreach (var caseDir in Directory.GetDirectories(args[0]).Order())
        {
            using var reference = SafetensorsFile.Open(Path.Combine(caseDir, "reference.safetensors"));
            Tensor R(string name) => reference.Read(name);
            string name = Path.GetFileName(caseDir);
            using (var unet = UNet2DConditionModel.FromPretrained(Path.Combine(caseDir, "unet")))
            {
                using (var scope = torch.NewDisposeScope())
                {
                    unet.eval();
                    var output = unet.forward(R("unet.sample"), (long)R("unet.timestep").item<float>(), R("unet.encoder_hidden_states"));
                    Report(name, "UNet noise prediction, 64×64 latents", output, R("unet.out"));
                }
                if (reference.Contains("unet.target")) CompareGradients(name, unet, reference);
            }
            if (!Directory.Exists(Path.Combine(caseDir, "vae"))) continue;
            using (var vae = AutoencoderKL.FromPretrained(Path.Combine(caseDir, "vae")))
            using (var scope = torch.NewDisposeScope())
            {
                vae.eval();
                using var posterior = vae.Encode(R("vae.image"));
                Report(name, "VAE posterior mean, 256 px image", posterior.Mean, R("vae.mean"));
                Report(name, "VAE posterior logvar", posterior.LogVar, R("vae.logvar"));
                Report(name, "VAE decode, 32×32 latents", vae.Decode(R("vae.latents")), R("vae.decoded"));
            }
        }
        return 0;
    }

    /// <summary>One MSE backward, plain and with each checkpointing mode, against diffusers' loss, gradient norm and gradients.</summary>
    static void CompareGradients(string model, UNet2DConditionModel unet, SafetensorsFile reference)
    {
        const string gradPrefix = "unet.grad.";
        using var grad = torch.enable_grad();   // Run holds no_grad for the forward comparisons
        unet.train();   // dropout is 0: the same function as in eval
        unet.CheckpointRunner = GradientCheckpoint.Run;
        var parameters = unet.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using var sample = reference.Read("unet.sample");
        using var context = reference.Read("unet.encoder_hidden_states");
        using var target = reference.Read("unet.target");
        long timestep = (long)reference.Read("unet.timestep").item<float>();
        float theirLoss = reference.Read("unet.loss").item<float>(), theirNorm = reference.Read("unet.grad_norm").item<float>();
        var gradKeys = reference.Keys.Where(k => k.StartsWith(gradPrefix, StringComparison.Ordinal)).Order().ToList();
        foreach (var (mode, blocks, selective) in new[] { ("plain", false, false), ("whole-block checkpointing", true, false), ("selective checkpointing", true, true) })
        {
            unet.GradientCheckpointing = blocks; unet.SelectiveCheckpointing = selective;
            foreach (var p in parameters.Values) { using var old = p.grad; p.grad = null; }
            using var scope = torch.NewDisposeScope();
            var loss = nn.functional.mse_loss(unet.forward(sample, timestep, context), target);
            loss.backward();
            GradientCheckpoint.ThrowPendingError();
            float norm = torch.stack(parameters.Values.Select(p => p.grad!.pow(2).sum()).ToArray()).sum().sqrt().item<float>();
            Console.WriteLine($"{model}: {mode}: loss {loss.item<float>():F7} against {theirLoss:F7}, gradient norm {norm:F6} against {theirNorm:F6} (relative {Math.Abs(norm - theirNorm) / theirNorm:E2})");
            foreach (var key in gradKeys)
            {
                string parameter = key[gradPrefix.Length..];
                Report(model, $"{mode}: grad {parameter}", parameters[parameter].grad!, reference.Read(key));
            }
        }
    }

    static void Report(string model, string what, Tensor ours, Tensor theirs)
    {
        if (!ours.shape.SequenceEqual(theirs.shape)) { Console.WriteLine($"{model}: {what}: shape [{string.Join(",", ours.shape)}] against [{string.Join(",", theirs.shape)}]"); return; }
        using var scope = torch.NewDisposeScope();
        var abs = (ours - theirs).abs();
        double diff = abs.max().item<float>(), meanDiff = abs.mean().item<float>(), scale = theirs.abs().max().item<float>();
        Console.WriteLine($"{model}: {what}: max |ours - diffusers| {diff:E2} (mean {meanDiff:E2}), reference max |x| {scale:G4}, relative {diff / scale:E2}");
    }
}
