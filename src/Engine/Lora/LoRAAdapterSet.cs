using DreamBooth.Engine.Models.TextEncoders;
using DreamBooth.Engine.Models.Unets;
using DreamBooth.Engine.Pipelines;

namespace DreamBooth.Engine.Lora;

/// <summary>A LoRA file to apply and its strength (diffusers' adapter weight / cross_attention_kwargs scale).</summary>
public sealed record LoRAReference(string Path, double Scale = 1.0);

/// <summary>
/// LoRA files applied to a loaded UNet and text encoder (either key layout, several adapters each with its own scale)
/// through forward hooks; <see cref="Dispose"/> removes them, so a cached pipeline returns to its base weights.
/// <see cref="Merge"/> instead bakes them into the weights (fuse_lora).
/// </summary>
public sealed class LoRAAdapterSet : IDisposable
{
    readonly List<LoRANetwork> _networks = new();
    public IReadOnlyList<LoRANetwork> Networks => _networks;

    public static LoRAAdapterSet Apply(UNet2DConditionModel unet, ClipTextModel textEncoder, IEnumerable<LoRAReference> loras)
    {
        var set = new LoRAAdapterSet();
        try
        {
            foreach (var r in loras)
            {
                if (!double.IsFinite(r.Scale)) throw new ArgumentOutOfRangeException(nameof(loras), r.Scale, "A LoRA scale must be a finite number.");
                using var weights = LoRAWeights.Load(r.Path);
                foreach (var (component, modules) in weights.Components)
                {
                    if (modules.Count == 0) continue;
                    TorchSharp.torch.nn.Module model = component == LoRATargets.Unet ? unet : textEncoder;
                    set._networks.Add(LoRANetwork.FromWeights(model, component, modules, r.Scale));
                }
            }
            return set;
        }
        catch
        {
            set.Dispose();
            throw;
        }
    }

    public static LoRAAdapterSet Apply(StableDiffusionPipeline pipeline, IEnumerable<LoRAReference> loras)
        => Apply(pipeline.Unet, pipeline.TextEncoder, loras);

    /// <summary>Adds every adapter into its base weights and removes the hooks.</summary>
    public void Merge()
    {
        foreach (var n in _networks) n.Merge();
    }

    public void Dispose()
    {
        foreach (var n in _networks) n.Dispose();
        _networks.Clear();
    }
}
