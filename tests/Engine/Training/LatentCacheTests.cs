using DreamBooth.Engine.IO;
using DreamBooth.Engine.Models.Autoencoders;
using DreamBooth.Engine.Training;

namespace DreamBooth.Engine.Tests.Training;

/// <summary>
/// The trainer's per-view latent distributions: reusing them is the same as encoding the view's pixels again every
/// step, and each distinct view (file, crop, flip) is encoded once.
/// </summary>
public sealed class LatentCacheTests : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("db-latents-").FullName;

    public void Dispose() { try { Directory.Delete(_root, true); } catch (IOException) { } }

    DreamBoothDataset Dataset(bool centerCrop, bool randomFlip)
    {
        var g = new torch.Generator(11);
        var paths = new List<string>();
        foreach (var (w, h) in new[] { (72, 64), (64, 70) })   // non-square: a random crop has several offsets
        {
            using var img = torch.rand(new long[] { 3, h, w }, generator: g);
            var path = Path.Combine(_root, $"{w}x{h}.png");
            PngWriter.Save(img, path);
            paths.Add(path);
        }
        return new DreamBoothDataset(paths, Array.Empty<string>(), 64, centerCrop, randomFlip);
    }

    [Fact]
    public void ReusedDistributions_EqualReencodingEveryStep_AndEachViewIsEncodedOnce()
    {
        using var vae = AutoencoderKL.FromPretrained(Path.Combine(Fixtures.Root, "tiny-sd", "vae"));
        var dataset = Dataset(centerCrop: false, randomFlip: true);
        using var reused = new LatentCache(vae, ScalarType.Float32, torch.CPU);
        using var reencoded = new LatentCache(vae, ScalarType.Float32, torch.CPU, budgetBytes: 0);
        var random = new Pcg32(5);
        var distinct = new HashSet<ImageView>();
        for (int step = 0; step < 24; step++)
        {
            using var scope = torch.NewDisposeScope();
            var views = new[] { dataset.Plan(step % 2, random).Instance, dataset.Plan((step + 1) % 2, random).Instance };
            distinct.UnionWith(views);
            using var a = reused.Batch(views, dataset.Load);
            using var b = reencoded.Batch(views, dataset.Load);
            Assert.True(a.Mean.equal(b.Mean).all().item<bool>() && a.LogVar.equal(b.LogVar).all().item<bool>(), $"step {step}: reused distribution differs from a fresh encode");
        }
        Assert.True(distinct.Count < 48, "the test should revisit views");
        Assert.Equal(distinct.Count, reused.Encodes);
        Assert.Equal(distinct.Count, reused.Count);
        Assert.Equal(48, reencoded.Encodes);
        Assert.Equal(0, reencoded.Count);
    }
}
