using DreamBooth.Engine.Models.Autoencoders;
using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Training;

/// <summary>
/// The frozen VAE's latent distributions (mean ‖ log-variance), one per <see cref="ImageView"/>. diffusers encodes the
/// batch's pixels every step; the VAE is frozen and a view always gives the same pixels, so its distribution is the
/// same every time: it is computed once and each step still draws a fresh sample from it with the step's generator.
/// Training is therefore the same as re-encoding every step, one image at a time, while the VAE's ~10 s per 512 px
/// image (CPU) is paid once per view instead of once per step.
/// <para>Lazily filled, up to <see cref="DefaultBudgetBytes"/> (beyond it, views are encoded each time they come);
/// -CacheLatents fills it for every item before training (<see cref="Build"/>), which needs a center crop and no
/// random flip.</para>
/// </summary>
public sealed class LatentCache : IDisposable
{
    /// <summary>256 MiB: 2,048 views at 512 px in fp32 (128 KiB each).</summary>
    public const long DefaultBudgetBytes = 256L << 20;

    readonly Dictionary<ImageView, Tensor> _moments = new();
    AutoencoderKL? _vae;
    readonly ScalarType _dtype;
    readonly Device _device;
    readonly long _budgetBytes;
    long _bytes;

    public LatentCache(AutoencoderKL vae, ScalarType dtype, Device device, long budgetBytes = DefaultBudgetBytes)
    {
        _vae = vae; _dtype = dtype; _device = device; _budgetBytes = budgetBytes;
    }

    /// <summary>Distributions held.</summary>
    public int Count => _moments.Count;

    /// <summary>VAE encodes done (cache misses), for tests and logs.</summary>
    public int Encodes { get; private set; }

    /// <summary>-CacheLatents: encodes every dataset item before training, with no budget.</summary>
    public static LatentCache Build(DreamBoothDataset dataset, AutoencoderKL vae, ScalarType dtype, Device device, Action<int, int>? progress = null)
    {
        if (!dataset.CenterCrop || dataset.RandomFlip)
            throw new ArgumentException("Latents can only be cached with a center crop and no random flip (each image is encoded once).");
        var cache = new LatentCache(vae, dtype, device, long.MaxValue);
        cache.EncodeAll(dataset, progress);
        return cache;
    }

    /// <summary>
    /// Encodes every item's views now, for a dataset whose views never change (<see cref="DreamBoothDataset.HasFixedViews"/>),
    /// and tells whether all of them are held (false where the budget ran out), so that the VAE may be released.
    /// </summary>
    public bool EncodeAll(DreamBoothDataset dataset, Action<int, int>? progress = null)
    {
        var fixedViews = new Pcg32(0);   // a fixed view draws nothing that matters; the run's generator is not touched
        bool all = true;
        for (int i = 0; i < dataset.Length; i++)
        {
            var (instance, cls) = dataset.Plan(i, fixedViews);
            foreach (var view in cls is { } c ? new[] { instance, c } : new[] { instance })
            {
                Moments(view, dataset.Load).Dispose();
                all &= _moments.ContainsKey(view);
            }
            progress?.Invoke(i + 1, dataset.Length);
        }
        return all;
    }

    /// <summary>
    /// Drops the cache's hold on the VAE once every view is held (<see cref="EncodeAll"/>): the caller may free it. A view
    /// asked for after that is a bug and throws rather than encoding with a freed model.
    /// </summary>
    public void ReleaseVae() => _vae = null;

    /// <summary>The latent distribution of a batch of views, in order (the trainer passes instance views, then class views). Caller disposes.</summary>
    public DiagonalGaussianDistribution Batch(IReadOnlyList<ImageView> views, Func<ImageView, Tensor> loadPixels)
    {
        Tensor moments;
        using (var scope = torch.NewDisposeScope())
            moments = scope.MoveToOuter(torch.cat(views.Select(v => Moments(v, loadPixels)).ToArray(), 0));
        using (moments) return new DiagonalGaussianDistribution(moments);
    }

    /// <summary>[1, 2·latent channels, h, w] of one view: the stored copy's alias, or a fresh encode. Caller disposes.</summary>
    Tensor Moments(ImageView view, Func<ImageView, Tensor> loadPixels)
    {
        if (_moments.TryGetValue(view, out var stored)) return stored.alias();
        var vae = _vae ?? throw new InvalidOperationException($"The latent cache has no VAE any more and holds no distribution for '{view.Path}'.");
        Tensor moments;
        using (var scope = torch.NewDisposeScope())
        using (torch.no_grad())
        {
            using var pixels = loadPixels(view);
            using var dist = vae.Encode(pixels.unsqueeze(0).to(_dtype, _device));
            moments = scope.MoveToOuter(torch.cat(new[] { dist.Mean, dist.LogVar }, 1));
        }
        Encodes++;
        long bytes = moments.NumberOfElements * moments.ElementSize;
        if (_bytes + bytes > _budgetBytes) return moments;
        _moments[view] = moments.DetachFromDisposeScope();
        _bytes += bytes;
        return moments.alias();
    }

    public void Dispose()
    {
        foreach (var t in _moments.Values) t.Dispose();
        _moments.Clear();
        _bytes = 0;
    }
}
