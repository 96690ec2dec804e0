using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine;

/// <summary>
/// diffusers' <c>randn_tensor</c>: normal noise drawn where the generator lives, then moved to the target device. The
/// engine's seeded generators are CPU generators (so that a seed gives the same noise on every device), and libtorch
/// refuses a CPU generator for a draw on CUDA.
/// </summary>
public static class RandnTensor
{
    public static Tensor Create(long[] shape, ScalarType dtype, Device device, Generator? generator)
    {
        if (generator is null || device.type == DeviceType.CPU) return torch.randn(shape, dtype: dtype, device: device, generator: generator);
        using var onCpu = torch.randn(shape, dtype: dtype, generator: generator);
        return onCpu.to(device);
    }
}
