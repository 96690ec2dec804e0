using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models;

/// <summary>
/// Channels-last memory layout (PyTorch's <c>memory_format=torch.channels_last</c>, which TorchSharp 0.107 does not
/// expose): the same [B, C, H, W] tensor stored as B·H·W·C. oneDNN's CPU convolutions run on that layout directly
/// instead of reordering every activation; convolution, GroupNorm, SiLU, nearest upsampling and the residual adds
/// keep it, so converting a model's input once carries through the whole network. A single 128-channel 256×256 3×3
/// convolution takes 159 ms instead of 238 ms (2 threads); over the whole frozen VAE the gain is small (512 px decode
/// 20.1–22.0 s against 22.0–22.3 s, encode within noise: `profile-vae-sd14`). Used where no grad flows (the frozen
/// VAE); the values are the same convolutions, summed in a different order.
/// </summary>
public static class ChannelsLast
{
    /// <summary>Whether the layout pays off for <paramref name="x"/>: a 4-D tensor on the CPU.</summary>
    public static bool Applies(Tensor x) => Enabled && x.dim() == 4 && x.device_type == DeviceType.CPU;

    /// <summary>Off switch, for measuring the layout's effect (benchmarks).</summary>
    public static bool Enabled { get; set; } = true;

    /// <summary>The tensor with channels-last strides (a copy unless it already has them); the shape is unchanged.</summary>
    public static Tensor Convert(Tensor x) => x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2);
}
