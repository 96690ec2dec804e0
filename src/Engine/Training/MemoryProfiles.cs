namespace DreamBooth.Engine.Training;

/// <summary>
/// The diffusers DreamBooth guide's GPU-memory recipes as one switch (-MemoryProfile 16GB|12GB|8GB). Each turns on
/// exactly the memory flags the guide's command for that size uses; learning rate, steps and accumulation stay the
/// user's. Memory-efficient attention (the guide's xFormers flag) is always on here: every attention call is
/// scaled_dot_product_attention.
/// </summary>
public static class MemoryProfiles
{
    public static IReadOnlyList<string> Names { get; } = new[] { "16GB", "12GB", "8GB" };

    /// <summary>
    /// -MemoryProfile Auto: the recipe for a GPU of <paramref name="totalBytes"/> (what the driver reports; a "16 GB"
    /// card reports a little under 16 GiB), sized by the SD-1.4 peaks at 512 px measured on a GPU (docs/benchmarks.md:
    /// plain fp32 17.6 GB, 16GB 11.3 GB, 12GB 11.7 GB, 8GB 5.1 GB): none from 20 GiB, 16GB from 14, 12GB from 10.5,
    /// else 8GB. Null (no recipe) on the CPU, where nothing is known (null bytes) or the card is large.
    /// </summary>
    /// <summary>-MemoryProfile Auto for a -Device name: the recipe (or null) and a line that says why.</summary>
    public static (string? Profile, string Reason) ForDevice(string device)
    {
        var d = DeviceSelection.Parse(device);
        long? total = d.type == TorchSharp.DeviceType.CUDA ? Nvml.Driver?.DeviceMemory(Math.Max(0, (int)d.index))?.Total : null;
        var chosen = ForDeviceMemory(total);
        return (chosen, total is long t
            ? $"-MemoryProfile Auto: {chosen ?? "no recipe"} for {d} ({t / 1073741824.0:F1} GB)."
            : $"-MemoryProfile Auto: no recipe: training runs on {d}, not on a GPU whose memory the recipes are about.");
    }

    public static string? ForDeviceMemory(long? totalBytes) => totalBytes switch
    {
        null => null,
        >= 20L << 30 => null,
        >= 14L << 30 => "16GB",
        >= 21L << 29 => "12GB",   // 10.5 GiB
        _ => "8GB",
    };

    /// <summary>
    /// Returns <paramref name="options"/> with the profile's flags set, and one line per flag saying what it turned on
    /// (flags already on are listed too, marked as such). Throws ArgumentException for an unknown profile.
    /// </summary>
    public static (DreamBoothOptions Options, IReadOnlyList<string> Changes) Apply(DreamBoothOptions options, string profile)
    {
        var changes = new List<string>();
        void Note(bool wasOn, string flag, string why) => changes.Add($"{flag}{(wasOn ? " (already on)" : "")}: {why}");
        var o = options;
        switch (Normalize(profile))
        {
            case "16GB":
                // Guide, "16GB GPU": --gradient_checkpointing --use_8bit_adam.
                Note(o.GradientCheckpointing, "-GradientCheckpointing", "recompute UNet block activations in backward");
                Note(o.Use8BitAdam, "-Use8BitAdam", "AdamW moments stored in 8 bits (block-wise dynamic quantization)");
                o = o with { GradientCheckpointing = true, Use8BitAdam = true };
                break;
            case "12GB":
                // Guide, "12GB GPU": --gradient_checkpointing --use_8bit_adam --enable_xformers_memory_efficient_attention --set_grads_to_none.
                Note(o.GradientCheckpointing, "-GradientCheckpointing", "recompute UNet block activations in backward");
                Note(o.Use8BitAdam, "-Use8BitAdam", "AdamW moments stored in 8 bits (block-wise dynamic quantization)");
                Note(true, "-EnableXformersMemoryEfficientAttention", "scaled_dot_product_attention is always used");
                Note(o.SetGradsToNone, "-SetGradsToNone", "gradients released after each step instead of zeroed");
                o = o with { GradientCheckpointing = true, Use8BitAdam = true, SetGradsToNone = true };
                break;
            case "8GB":
                // Guide, "8GB GPU": DeepSpeed stage 2 with CPU offload of optimizer state, --gradient_checkpointing,
                // --mixed_precision=fp16, --sample_batch_size=1; 8-bit Adam is not used (incompatible with DeepSpeed).
                // Like ZeRO-Offload, gradients leave the device as backward produces them (GradientOffload); DeepSpeed's
                // parameter offload has no equivalent here: fp32 weights stay on the device.
                Note(o.GradientCheckpointing, "-GradientCheckpointing", "recompute UNet block activations in backward");
                Note(o.MixedPrecision == "fp16", "-MixedPrecision fp16", "frozen VAE/text encoder in fp16, UNet compute in fp16 with dynamic loss scaling");
                Note(o.OffloadOptimizerState, "-OffloadOptimizerState", "optimizer state and update on the CPU, gradients moved there during backward (DeepSpeed offload_optimizer)");
                Note(o.SampleBatchSize == 1, "-SampleBatchSize 1", "class images generated one at a time");
                o = o with { GradientCheckpointing = true, MixedPrecision = "fp16", OffloadOptimizerState = true, SampleBatchSize = 1 };
                break;
            default:
                throw new ArgumentException($"-MemoryProfile must be one of {string.Join(", ", Names)} (got '{profile}').", nameof(profile));
        }
        return (o, changes);
    }

    static string Normalize(string profile) => (profile ?? "").Trim().ToUpperInvariant().Replace(" ", "").Replace("GIB", "GB") switch
    {
        "16" or "16G" => "16GB",
        "12" or "12G" => "12GB",
        "8" or "8G" => "8GB",
        var p => p,
    };
}
