using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models;

/// <summary>
/// GroupNorm/LayerNorm with PyTorch's initial values. TorchSharp leaves their affine parameters uninitialised
/// (torch.empty), so every norm in the engine is created here with weight = 1 and bias = 0.
/// </summary>
public static class Normalization
{
    public static GroupNorm GroupNorm(long numGroups, long numChannels, double eps)
    {
        var norm = nn.GroupNorm(numGroups, numChannels, eps, affine: true);
        using (torch.no_grad()) { norm.weight!.fill_(1.0); norm.bias!.zero_(); }
        return norm;
    }

    public static LayerNorm LayerNorm(long dim, double eps)
    {
        var norm = nn.LayerNorm(dim, eps, elementwise_affine: true);
        using (torch.no_grad()) { norm.weight!.fill_(1.0); norm.bias!.zero_(); }
        return norm;
    }
}
