using DreamBooth.Engine.Training;

namespace DreamBooth.Engine.Tests.Training;

/// <summary>-MemoryProfile Auto: the guide's recipe for the GPU's memory as drivers report it; none on the CPU.</summary>
public class MemoryProfileAutoTests
{
    const double GiB = 1L << 30;

    [Theory]
    [InlineData(79.2, null)]    // H100 80 GB: plain fp32 fits (17.6 GB measured)
    [InlineData(23.6, null)]    // 24 GB cards
    [InlineData(15.77, "16GB")] // a "16 GB" card reports a little under 16 GiB
    [InlineData(11.73, "12GB")]
    [InlineData(10.5, "12GB")]
    [InlineData(10.0, "8GB")]   // 10 GB cards: the 12GB recipe peaked at 11.7 GB
    [InlineData(7.79, "8GB")]
    public void PicksTheRecipeForTheCardsMemory(double gib, string? expected)
        => Assert.Equal(expected, MemoryProfiles.ForDeviceMemory((long)(gib * GiB)));

    [Fact]
    public void OnTheCpu_NoRecipe_AndSaysWhy()
    {
        Assert.Null(MemoryProfiles.ForDeviceMemory(null));
        var (profile, reason) = MemoryProfiles.ForDevice("cpu");
        Assert.Null(profile);
        Assert.Contains("no recipe", reason);
        Assert.Contains("cpu", reason);
    }
}
