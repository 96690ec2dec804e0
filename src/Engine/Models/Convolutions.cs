using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models;

/// <summary>nn.Conv2d with explicit stride and padding (TorchSharp's overloads make literal arguments ambiguous).</summary>
public static class Convolutions
{
    public static Conv2d Conv2d(long inChannels, long outChannels, long kernelSize, long stride = 1, long padding = 0)
        => nn.Conv2d(inChannels, outChannels, kernelSize, stride, padding);
}
