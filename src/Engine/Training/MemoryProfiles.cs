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
