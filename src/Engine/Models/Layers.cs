using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models;

/// <summary>
/// The parameterised TorchSharp layers the models are built from, created the engine's way:
/// <list type="bullet">
/// <item>with PyTorch's initial values: TorchSharp leaves GroupNorm/LayerNorm affine parameters uninitialised
/// (torch.empty), so norms start at weight 1, bias 0;</item>
/// <item>on the meta device inside <see cref="EmptyWeights.Init"/> (all but Embedding), so a model that is about to load its weights
/// spends no time drawing random ones;</item>
/// <item>Conv2d with explicit stride and padding (TorchSharp's overloads make literal arguments ambiguous).</item>
/// </list>
/// </summary>
public static class Layers
{
    public static Linear Linear(long inFeatures, long outFeatures, bool hasBias = true)
        => nn.Linear(inFeatures, outFeatures, hasBias, device: EmptyWeights.Device);

    public static Conv2d Conv2d(long inChannels, long outChannels, long kernelSize, long stride = 1, long padding = 0)
        => nn.Conv2d(inChannels, outChannels, kernelSize, stride, padding, device: EmptyWeights.Device);

    /// <summary>
    /// Always created on the CPU with its random values: TorchSharp's Embedding is a native module, and one moved to
    /// the meta device and given storage again kept its first CPU weight alive as long as the model lived (+152 MB
    /// for CLIP's token embedding). Drawing the values costs a fraction of a second.
    /// </summary>
    public static Embedding Embedding(long numEmbeddings, long dim) => nn.Embedding(numEmbeddings, dim);

    public static GroupNorm GroupNorm(long numGroups, long numChannels, double eps)
    {
        var norm = nn.GroupNorm(numGroups, numChannels, eps, affine: true, device: EmptyWeights.Device);
        Identity(norm.weight!, norm.bias!);
        return norm;
    }

    public static LayerNorm LayerNorm(long dim, double eps)
    {
        var norm = nn.LayerNorm(dim, eps, elementwise_affine: true, device: EmptyWeights.Device);
        Identity(norm.weight!, norm.bias!);
        return norm;
    }

    /// <summary>A norm's affine parameters at PyTorch's initial values: weight 1, bias 0.</summary>
    static void Identity(Tensor weight, Tensor bias)
    {
        using (torch.no_grad()) { weight.fill_(1.0); bias.zero_(); }
    }
}
