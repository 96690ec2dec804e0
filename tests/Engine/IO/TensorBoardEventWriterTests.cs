using System.Text;
using DreamBooth.Engine.IO;

namespace DreamBooth.Engine.Tests.IO;

public class TensorBoardEventWriterTests : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("db-tb-").FullName;
    public void Dispose() { try { Directory.Delete(_root, true); } catch { } }

    [Fact]
    public void Crc32C_IsCastagnolis()
    {
        // The standard check value of CRC-32C (iSCSI), and the empty input.
        Assert.Equal(0xE3069283u, TensorBoardEventWriter.Crc32C(Encoding.ASCII.GetBytes("123456789")));
        Assert.Equal(0u, TensorBoardEventWriter.Crc32C(ReadOnlySpan<byte>.Empty));
    }

    [Fact]
    public void WritesRecordsTensorBoardReads_VersionSessionScalarsAndImages()
    {
        string path;
        var png = new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G', 1, 2, 3 };
        using (var w = TensorBoardEventWriter.Create(_root))
        {
            path = w.FilePath;
            w.StartSession(5);
            w.AddScalars(6, new[] { ("loss", 0.125), ("lr", 5e-6) });
            w.AddScalars(300, new[] { ("loss", 1.5) });
            w.AddImage("validation/0", png, 64, 32, 300);
        }
        Assert.StartsWith("events.out.tfevents.", Path.GetFileName(path));
        var events = TensorBoardEventFile.Read(path);
        Assert.Equal(5, events.Count);
        Assert.Equal("brain.Event:2", events[0].FileVersion);
        Assert.Equal((5L, 1), (events[1].Step, events[1].SessionStatus!.Value));
        Assert.Equal(6, events[2].Step);
        Assert.Equal(new[] { ("loss", 0.125f), ("lr", 5e-6f) }, events[2].Values.Select(v => (v.Tag, v.Scalar!.Value)));
        Assert.Equal(300, events[3].Step);   // a step past one byte of varint
        var image = Assert.Single(events[4].Values);
        Assert.Equal(("validation/0", 64, 32), (image.Tag, image.ImageWidth!.Value, image.ImageHeight!.Value));
        Assert.Equal(png, image.ImagePng);
        Assert.All(events, e => Assert.InRange(e.WallTime, DateTimeOffset.UtcNow.ToUnixTimeSeconds() - 600, DateTimeOffset.UtcNow.ToUnixTimeSeconds() + 5));
    }
}
