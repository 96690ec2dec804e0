using DreamBooth.Engine.Models;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using DreamBooth.Engine.IO;
using DreamBooth.Engine.Lora;
using DreamBooth.Engine.Pipelines;
using DreamBooth.Engine.Training;

namespace DreamBooth.Engine.Tests.Lora;

/// <summary>
/// A LoRA DreamBooth run on the tiny pipeline (prior preservation, checkpoints, kohya copy): adapter-only checkpoints,
/// exact resume, base weights untouched, outputs loadable as models.
/// </summary>
public sealed class LoRATrainingTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), "lora-train-" + Guid.NewGuid().ToString("N")[..8]);
    public LoRATrainingTests() => Directory.CreateDirectory(_dir);
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    DreamBoothOptions Options(string output, bool textEncoder) => new()
    {
        Model = Fixtures.TinySd,
        InstanceDataDirectory = Path.Combine(Fixtures.Root, "..", "..", "examples", "data", "sks-toy"),
        InstancePrompt = "a photo of sks toy",
        WithPriorPreservation = true, ClassDataDirectory = Path.Combine(_dir, "class"), ClassPrompt = "a photo of toy",
        NumClassImages = 2, SampleBatchSize = 2, ClassImageSteps = 2,
        Resolution = 32, LearningRate = 1e-2, MaxTrainSteps = 4, CheckpointingSteps = 2, Seed = 42,
        LoRA = true, LoRARank = 2, LoRAAlpha = 4, TrainTextEncoder = textEncoder, SaveKohyaLoRA = true,
        OutputDirectory = output, Device = "cpu",
    };

    static string Hash(string file) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(file)));

    [Fact]
    public void LoRARun_CheckpointsAdaptersOnly_ResumesExactly_LeavesBaseUntouched()
    {
        var unetFile = Path.Combine(Fixtures.TinySd, "unet", "diffusion_pytorch_model.safetensors");
        var baseHash = Hash(unetFile);
        var full = Path.Combine(_dir, "full");
        var result = DreamBoothTrainer.Train(Options(full, textEncoder: true), new TrainingEvents(), CancellationToken.None);
        Assert.Equal(4, result.Steps);

        // Checkpoint: adapters + optimizer + state, no model folders.
        var ckpt = Path.Combine(full, "checkpoint-2");
        Assert.Equal(new[] { CheckpointStore.OptimizerFile, ModelSource.CheckpointManifest, LoRAWeights.FileName }.OrderBy(x => x, StringComparer.Ordinal),
            Directory.EnumerateFileSystemEntries(ckpt).Select(Path.GetFileName).OrderBy(x => x, StringComparer.Ordinal));
        var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(ckpt, ModelSource.CheckpointManifest)))!;
        Assert.Equal(2, manifest["lora"]!["rank"]!.GetValue<int>());
        Assert.Equal(4.0, manifest["lora"]!["alpha"]!.GetValue<double>());

        // Final output: diffusers file + kohya copy, trained (B ≠ 0) on both components.
        var final = Path.Combine(full, LoRAWeights.FileName);
        using (var w = LoRAWeights.Load(final))
        {
            Assert.Equal(LoRAFormat.Diffusers, w.Format);
            Assert.True(w.For(LoRATargets.Unet).Values.Any(m => m.Up.abs().sum().item<float>() > 0), "UNet adapters were not trained");
            Assert.True(w.For(LoRATargets.TextEncoder).Values.Any(m => m.Up.abs().sum().item<float>() > 0), "text-encoder adapters were not trained");
            Assert.Equal(Path.GetFullPath(Fixtures.TinySd), w.BaseModel);
        }
        using (var k = LoRAWeights.Load(Path.Combine(full, LoRAWeights.KohyaFileName))) Assert.Equal(LoRAFormat.Kohya, k.Format);
        Assert.Equal(baseHash, Hash(unetFile));

        // Resume a copy of checkpoint-2: the same final adapters, bit for bit.
        var resumed = Path.Combine(_dir, "resumed");
        Directory.CreateDirectory(resumed);
        var copy = Path.Combine(resumed, "checkpoint-2");
        Directory.CreateDirectory(copy);
        foreach (var f in Directory.EnumerateFiles(ckpt)) File.Copy(f, Path.Combine(copy, Path.GetFileName(f)));
        DreamBoothTrainer.Resume(resumed, null, new TrainingEvents(), CancellationToken.None);
        using (var a = SafetensorsFile.Open(final))
        using (var b = SafetensorsFile.Open(Path.Combine(resumed, LoRAWeights.FileName)))
        {
            Assert.Equal(a.Keys.OrderBy(x => x, StringComparer.Ordinal), b.Keys.OrderBy(x => x, StringComparer.Ordinal));
            foreach (var key in a.Keys) using (var ta = a.Read(key)) using (var tb = b.Read(key)) Assert.True(ta.Equals(tb), key + " differs after resume");
        }

        // Output and checkpoint are models: base + adapters.
        foreach (var path in new[] { full, ckpt })
        {
            var source = ModelSource.Resolve(path);
            Assert.True(source.IsLoRA);
            Assert.Equal(Path.GetFullPath(Fixtures.TinySd), source.BaseModel);
        }
    }

    [Fact]
    public void Bf16FrozenModels_TrainFp32Adapters()
    {
        var output = Path.Combine(_dir, "bf16");
        var o = Options(output, textEncoder: true) with { MixedPrecision = "bf16", WithPriorPreservation = false, MaxTrainSteps = 2, CheckpointingSteps = 100, SaveKohyaLoRA = false,
            ValidationPrompts = new[] { "a photo of sks toy" }, ValidationSteps = 2, NumValidationImages = 1, ValidationInferenceSteps = 2 };
        DreamBoothTrainer.Train(o, new TrainingEvents(), CancellationToken.None);
        using var w = LoRAWeights.Load(Path.Combine(output, LoRAWeights.FileName));
        foreach (var component in new[] { LoRATargets.Unet, LoRATargets.TextEncoder })
        {
            Assert.True(w.For(component).Values.Any(m => m.Up.abs().sum().item<float>() > 0), component + " adapters were not trained");
            Assert.All(w.For(component).Values, m => Assert.True(m.Up.isfinite().all().item<bool>() && m.Down.isfinite().all().item<bool>()));
        }
        Assert.Single(Directory.GetFiles(Path.Combine(output, "validation", "step-2"), "*.png"));
        using var raw = SafetensorsFile.Open(Path.Combine(output, LoRAWeights.FileName));
        Assert.All(raw.Entries, e => Assert.Equal("F32", e.DType));
    }

    [Fact]
    public void TrainingFromALoRAOutput_IsRefused()
    {
        var lora = Path.Combine(_dir, "lora-out");
        Directory.CreateDirectory(lora);
        using var unet = DreamBooth.Engine.Models.Unets.UNet2DConditionModel.FromPretrained(Path.Combine(Fixtures.TinySd, "unet"));
        using var n = LoRANetwork.Create(unet, LoRATargets.Unet, 2, 2);
        LoRAWeights.Save(Path.Combine(lora, LoRAWeights.FileName), new[] { n }, LoRAFormat.Diffusers, Path.GetFullPath(Fixtures.TinySd));
        var e = Assert.Throws<ArgumentException>(() => DreamBoothTrainer.Preflight(Options(Path.Combine(_dir, "o"), false) with { Model = lora }));
        Assert.Contains("Merge-DreamBoothLoRA", e.Message);
    }
}
