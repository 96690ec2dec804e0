using DreamBooth.Engine.Training;

namespace DreamBooth.Engine.Tests.Training;

/// <summary>kohya-ss' caption files: which prompt each instance image gets.</summary>
public sealed class InstanceCaptionsTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("db-captions-").FullName;

    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    string Image(string name) { var p = Path.Combine(_dir, name); File.WriteAllBytes(p, [0]); return p; }

    [Fact]
    public void EachImageGetsTheFirstLineOfItsCaption_OrTheInstancePrompt()
    {
        var images = new[] { Image("a.png"), Image("b.jpg"), Image("c.webp") };
        File.WriteAllText(Path.Combine(_dir, "a.txt"), "  a photo of sks dog on a sofa \r\nsecond line is ignored\n");
        File.WriteAllText(Path.Combine(_dir, "c.txt"), "\uFEFFsks dog, watercolor");   // a UTF-8 byte-order mark is not part of the prompt
        File.WriteAllText(Path.Combine(_dir, "b.caption"), "not this extension");
        var prompts = InstanceCaptions.Read(images, "txt", "a photo of sks dog");
        Assert.Equal(new[] { "a photo of sks dog on a sofa", "a photo of sks dog", "sks dog, watercolor" }, prompts);
        Assert.Equal(new[] { "a photo of sks dog", "not this extension", "a photo of sks dog" }, InstanceCaptions.Read(images, ".caption", "a photo of sks dog"));
        Assert.All(InstanceCaptions.Read(images, null, "p"), p => Assert.Equal("p", p));   // no extension: diffusers' one prompt
    }

    [Fact]
    public void AnEmptyCaptionFile_IsAnErrorThatNamesIt()
    {
        var images = new[] { Image("dog.png") };
        File.WriteAllText(Path.Combine(_dir, "dog.txt"), "   \n a prompt on the second line");
        var e = Assert.Throws<InvalidDataException>(() => InstanceCaptions.Read(images, ".txt", "a photo of sks dog"));
        Assert.Contains("dog.txt", e.Message);
        Assert.Contains("first line", e.Message);
    }

    [Theory]
    [InlineData("")]
    [InlineData(".")]
    [InlineData("sub/x.txt")]
    [InlineData("*.txt")]
    public void ABadExtension_IsRefusedByValidate(string extension)
    {
        var o = new DreamBoothOptions { Model = "m", InstanceDataDirectory = "i", InstancePrompt = "p", OutputDirectory = "o", CaptionExtension = extension };
        var e = Assert.Throws<ArgumentException>(o.Validate);
        Assert.Contains("-CaptionExtension", e.Message);
    }
}
