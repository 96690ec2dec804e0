using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine;

/// <summary>
/// diffusers' <c>randn_tensor</c>: normal noise drawn where the generator lives, then moved to the target device. The
/// engine's seeded generators are CPU generators (so that a seed gives the same noise on every device), and libtorch
/// refuses a CPU generator for a draw on CUDA. A seeded draw is made in fp32 and then cast, as the pipeline's start
/// latents are: libtorch's CPU normal kernel gives fp16/bf16 draws other values (and uses the generator differently),
/// so drawing in the model's precision would make a seed give another image in fp16 than in fp32.
/// </summary>
public static class RandnTensor
{
    public static Tensor Create(long[] shape, ScalarType dtype, Device device, Generator? generator)
    {
        if (generator is null) return torch.randn(shape, dtype: dtype, device: device);
        var draw = torch.randn(shape, dtype: ScalarType.Float32, generator: generator);
        if (dtype == ScalarType.Float32 && device.type == DeviceType.CPU) return draw;
        using (draw) return draw.to(dtype, device);
    }
}
