using System.Diagnostics;
using DreamBooth.Engine.Models.TextEncoders;
using Xunit.Abstractions;

namespace DreamBooth.Engine.Tests.Models.TextEncoders;

/// <summary>Full-size checks; excluded from the default run with --filter "Category!=Slow".</summary>
[Trait("Category", "Slow")]
public sealed class TextEncoderSlowTests(ITestOutputHelper log)
{
    [Fact]
    public void FullSizeStableDiffusion14TextEncoderRunsOneForward()
    {
        var config = ClipTextConfig.Load(Path.Combine(Fixtures.Root, "configs", "sd-v1-4", "text_encoder_config.json"));
        var build = Stopwatch.StartNew();
        using var model = ClipTextModel.FromConfig(config);
        model.eval();
        build.Stop();
        long parameters = model.parameters().Sum(p => p.numel());
        Assert.Equal(123_060_480, parameters);   // CLIP ViT-L/14 text tower

        using var _ = no_grad();
        using var ids = randint(0, 49406, new long[] { 2, 77 });
        ids[TensorIndex.Colon, 0] = tensor(49406L);
        ids[TensorIndex.Colon, 76] = tensor(49407L);
        var forward = Stopwatch.StartNew();
        using var output = model.Forward(ids, outputHiddenStates: true);
        forward.Stop();
        var warm = Stopwatch.StartNew();
        using (var again = model.Forward(ids)) Assert.True(again.LastHiddenState.Equals(output.LastHiddenState));
        warm.Stop();
        log.WriteLine($"SD-1.4 text encoder: build+init {build.ElapsedMilliseconds} ms, forward 2x77 first {forward.ElapsedMilliseconds} ms, " +
                      $"second {warm.ElapsedMilliseconds} ms, {get_num_threads()} threads, load average {(File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Split(' ')[0] : "n/a")}");

        Assert.Equal(new long[] { 2, 77, 768 }, output.LastHiddenState.shape);
        Assert.Equal(new long[] { 2, 768 }, output.PoolerOutput.shape);
        Assert.Equal(13, output.HiddenStates!.Count);
        Assert.True(output.LastHiddenState.isfinite().all().item<bool>());
        // legacy eos_token_id 2 → pooled at argmax(ids) = the EOS at position 76
        Assert.True(output.PoolerOutput[1].Equals(output.LastHiddenState[1, 76]));
    }
}
