using DreamBooth.Engine.IO;

namespace DreamBooth.Engine.Tests.IO;

public class SafetensorsSmokeTests
{
    [Fact]
    public void RoundTripsFloatTensor()
    {
        var dir = Directory.CreateTempSubdirectory("db-st-").FullName;
        var path = Path.Combine(dir, "a.safetensors");
        using var a = torch.arange(12, dtype: ScalarType.Float32).reshape(3, 4);
        SafetensorsWriter.Write(path, new Dictionary<string, Tensor> { ["a"] = a });
        using var f = SafetensorsFile.Open(path);
        using var b = f.Read("a");
        Assert.True(a.Equals(b));
        Directory.Delete(dir, true);
    }
}
