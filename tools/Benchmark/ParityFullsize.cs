using DreamBooth.Engine.IO;
using DreamBooth.Engine.Models.Autoencoders;
using DreamBooth.Engine.Models.Unets;
using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Benchmark;

/// <summary>
/// parity-fullsize DIR: loads the full-size models that tools/Benchmark/reference/diffusers_fullsize_reference.py wrote
/// with diffusers (DIR/&lt;case&gt;/unet, vae) and compares the engine's outputs with diffusers' own
/// (DIR/&lt;case&gt;/reference.safetensors): largest absolute difference, and that difference over the reference's
/// largest magnitude. A check run by hand where PyTorch and diffusers are at hand, not a test.
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
            using (var scope = torch.NewDisposeScope())
            {
                unet.eval();
                var output = unet.forward(R("unet.sample"), (long)R("unet.timestep").item<float>(), R("unet.encoder_hidden_states"));
                Report(name, "UNet noise prediction, 64×64 latents", output, R("unet.out"));
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

    static void Report(string model, string what, Tensor ours, Tensor theirs)
    {
        if (!ours.shape.SequenceEqual(theirs.shape)) { Console.WriteLine($"{model}: {what}: shape [{string.Join(",", ours.shape)}] against [{string.Join(",", theirs.shape)}]"); return; }
        double diff = (ours - theirs).abs().max().item<float>(), scale = theirs.abs().max().item<float>();
        double meanDiff = (ours - theirs).abs().mean().item<float>();
        Console.WriteLine($"{model}: {what}: max |ours - diffusers| {diff:E2} (mean {meanDiff:E2}), reference max |x| {scale:F3}, relative {diff / scale:E2}");
    }
}
