using DreamBooth.Engine.Models.Autoencoders;
using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Training;

/// <summary>
/// -CacheLatents: the VAE encodes every dataset image once, before training, and each step samples from the stored
/// latent distribution (mean ‖ log-variance), so the VAE is not run per step. The crop and flip are therefore fixed
/// at caching time: the options require -CenterCrop and no -RandomFlip. A step draws the same noise from the same
/// generator as the uncached path, so both train the same (up to per-image vs batched encoder arithmetic).
/// </summary>
public sealed class LatentCache : IDisposable
{
    readonly List<(Tensor Instance, Tensor? Class)> _moments = new();

    public int Count => _moments.Count;

    /// <summary>Encodes each dataset item with <paramref name="vae"/> (its dtype and device) under no_grad.</summary>
    public static LatentCache Build(DreamBoothDataset dataset, AutoencoderKL vae, ScalarType dtype, Device device, Action<int, int>? progress = null)
    {
        if (!dataset.CenterCrop || dataset.RandomFlip)
            throw new ArgumentException("Latents can only be cached with a center crop and no random flip (each image is encoded once).");
        var cache = new LatentCache();
        var noRandomness = new Pcg32(0);   // center crop and no flip draw nothing
        using var noGrad = torch.no_grad();
        for (int i = 0; i < dataset.Length; i++)
        {
            using var scope = torch.NewDisposeScope();
            var (instance, cls) = dataset.Get(i, noRandomness);
            var a = Encode(vae, instance, dtype, device);
            var c = cls is null ? null : Encode(vae, cls, dtype, device);
            scope.Detach(a);
            if (c is not null) scope.Detach(c);
            cache._moments.Add((a, c));
            progress?.Invoke(i + 1, dataset.Length);
        }
        return cache;
    }

    static Tensor Encode(AutoencoderKL vae, Tensor pixels, ScalarType dtype, Device device)
    {
        using var dist = vae.Encode(pixels.unsqueeze(0).to(dtype, device));
        return torch.cat(new[] { dist.Mean, dist.LogVar }, 1);
    }

    /// <summary>
    /// The latent distribution of a batch in the uncached path's order: the items' instance images, then their class
    /// images. Caller disposes.
    /// </summary>
    public DiagonalGaussianDistribution Batch(IReadOnlyList<int> indices)
    {
        var parts = indices.Select(i => _moments[i].Instance)
            .Concat(indices.Where(i => _moments[i].Class is not null).Select(i => _moments[i].Class!)).ToArray();
        using var moments = torch.cat(parts, 0);
        return new DiagonalGaussianDistribution(moments);
    }

    public void Dispose()
    {
        foreach (var (a, c) in _moments) { a.Dispose(); c?.Dispose(); }
        _moments.Clear();
    }
}
