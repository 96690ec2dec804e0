using TorchSharp;

namespace DreamBooth.Engine;

/// <summary>
/// diffusers' <c>--allow_tf32</c>: float32 matrix products on CUDA in TF32 (Ampere and later), faster at about
/// 10 bits of mantissa in the products (<c>torch.backends.cuda.matmul.allow_tf32</c>). cuDNN convolutions already use
/// TF32 by libtorch's default. Process-wide in libtorch, so set for a run and put back after it. No effect on the CPU.
/// </summary>
public static class Tf32
{
    /// <summary>Allows TF32 matmuls until disposed when <paramref name="allow"/>; otherwise changes nothing.</summary>
    public static IDisposable Allow(bool allow)
    {
        if (!allow) return new DisposableAction(() => { });
        bool before = torch.backends.cuda.matmul.allow_tf32;
        torch.backends.cuda.matmul.allow_tf32 = true;
        return new DisposableAction(() => torch.backends.cuda.matmul.allow_tf32 = before);
    }

    public static bool MatmulAllowed => torch.backends.cuda.matmul.allow_tf32;
}
