using static TorchSharp.torch;

namespace DreamBooth.Engine.Lora;

/// <summary>One module's adapter as read from a file: down = A [r, in], up = B [out, r], alpha (null = rank).</summary>
public sealed record LoRAModuleWeights(Tensor Down, Tensor Up, double? Alpha)
{
    public int Rank => (int)Down.shape[0];
}
