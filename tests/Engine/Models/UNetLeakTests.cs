using DreamBooth.Engine.Models.Unets;

namespace DreamBooth.Engine.Tests.Models;

/// <summary>Tensor.TotalCount is process-wide, so this runs with no other test in parallel.</summary>
[CollectionDefinition(nameof(UNetLeakTests), DisableParallelization = true)]
public sealed class UNetLeakCollection { }

[Collection(nameof(UNetLeakTests))]
public sealed class UNetLeakTests
{
    [Fact]
    public void Forward_DoesNotLeakTensors()
    {
        using var unet = UNet2DConditionModel.FromPretrained(Path.Combine(Fixtures.TinySd, "unet"));
        var r = Fixtures.Load("unet.safetensors");
        using var _ = torch.no_grad();
        using (unet.forward(r["sample"], r["t_10"], r["encoder_hidden_states"])) { }   // warm-up
        GC.Collect(); GC.WaitForPendingFinalizers();   // other tests' garbage tensors must not be finalized while counting
        long before = Tensor.TotalCount;
        using (unet.forward(r["sample"], r["t_10"], r["encoder_hidden_states"])) { }
        Assert.Equal(before, Tensor.TotalCount);
        foreach (var t in r.Values) t.Dispose();
    }
}
