using DreamBooth.Engine.Training;

namespace DreamBooth.Engine.Tests.Training;

[Collection(TrainingSerialCollection.Name)]   // touches the process-wide default generator
public class RngStateTests
{
    [Fact]
    public void GeneratorStateRestoresTheSameDraws()
    {
        using var scope = torch.NewDisposeScope();
        var g = new torch.Generator(1234);
        torch.randn(37, generator: g);   // move away from the seed state (incl. the Box–Muller cache)
        var saved = RngState.Capture(g);
        var first = torch.randn(100, generator: g);
        var firstU = torch.rand(5, generator: g);
        var g2 = new torch.Generator(0);
        RngState.Restore(g2, saved);
        Assert.True(first.Equals(torch.randn(100, generator: g2)));
        Assert.True(firstU.Equals(torch.rand(5, generator: g2)));
        RngState.Restore(g, saved);
        Assert.True(first.Equals(torch.randn(100, generator: g)));
    }

    [Fact]
    public void DefaultGeneratorStateRestoresTheSameDraws()
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(99);
        var saved = RngState.CaptureDefault();
        var first = torch.randn(50);
        var idx = torch.randint(0, 1000, [8]);
        RngState.RestoreDefault(saved);
        Assert.True(first.Equals(torch.randn(50)));
        Assert.True(idx.Equals(torch.randint(0, 1000, [8])));
    }

    [Fact]
    public void Pcg32MatchesTheReferenceStreamAndResumesExactly()
    {
        // pcg32-demo (pcg32_srandom(42, 54)), first six outputs.
        var rng = new Pcg32(42, 54);
        uint[] expected = [0xa15c02b7, 0x7b47f409, 0xba1d3330, 0x83d2f293, 0xbfa4784b, 0xcbed606e];
        foreach (var e in expected) Assert.Equal(e, rng.NextUInt32());

        var saved = rng.Serialize();
        var a = Enumerable.Range(0, 20).Select(_ => rng.NextInt(7)).ToArray();
        var d = rng.NextDouble();
        var items = Enumerable.Range(0, 10).ToList(); rng.Shuffle(items);

        var again = Pcg32.Deserialize(saved);
        Assert.Equal(a, Enumerable.Range(0, 20).Select(_ => again.NextInt(7)).ToArray());
        Assert.Equal(d, again.NextDouble());
        var items2 = Enumerable.Range(0, 10).ToList(); again.Shuffle(items2);
        Assert.Equal(items, items2);
        Assert.Equal(rng.State, again.State);
        Assert.All(a, x => Assert.InRange(x, 0, 6));
        Assert.InRange(d, 0.0, 1.0 - double.Epsilon);
        Assert.Throws<FormatException>(() => Pcg32.Deserialize("nonsense"));
    }
}
