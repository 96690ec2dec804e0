using System.Text;
using DreamBooth.Engine.IO;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Jpeg;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.Metadata.Profiles.Exif;
using SixLabors.ImageSharp.PixelFormats;

namespace DreamBooth.Engine.Tests.IO;

public class ImageTests
{
    /// <summary>The synthetic image of make_pil_bilinear_reference.py (high-frequency, so the antialiasing filter matters).</summary>
    static Image<Rgb24> Pattern(int w, int h)
    {
        var img = new Image<Rgb24>(w, h);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                img[x, y] = new Rgb24((byte)((x * 53 + y * 29) & 255), (byte)((x * y * 7) & 255), (byte)(((x ^ y) * 17) & 255));
        return img;
    }

    static byte[] Pixels(Image<Rgb24> img) { var b = new byte[img.Width * img.Height * 3]; img.CopyPixelDataTo(b); return b; }

    /// <summary>Expected bytes from Pillow 9.4 (python3-pil), see make_pil_bilinear_reference.py.</summary>
    [Theory]
    [InlineData(37, 23, 16, 25, 16, "HQEIZgQesgg1ZAxPTw9poBOCqhaaPBq0ih3OpSHnRiXHdSkZsywzaDBLYTNjrzd9njuYUz6wnELIgUXiOUmyhU1RtlAtOVRHa1dfQwQdjBQYqSUtTzZhdUdbvVmHdWmjYnuhrYjcbpHlTaG7m7MtsKgnOUdLh1hwz2lqXnijcn+yqpC4VKG1X7KRq8Omg9Q8UeY3kfVlbAgzsCYnkUUxUmZVnoVHv6WLWrW2i6irpqPWO03UdmyuxIxDXpk1YmdLpYdje6dVV62vm1LDoGOFQ1KEiG/WvY6oYK9Qcc5DuuxjlgxNyDdjS2RPfJULo8ImS6OQZXzdsE/yd32iUqqjoG+gqoZcVZ14jGhMq38eLUQ6d3G9xZ+6V7uMYYefslG5nVmiT4pxm7eLkOJOrw9ncUlaXIVFo8Eika0SQ1WVj3zrvaLaUaWzfGuhwHSRf4R4Z6RntmRMXHQwU34goaGUl2GLTXfXi6i+pautVUyceWOFtZ91W9lVjhN+NVp7f6V4vqN1Q1ZzbY6CubyMe2eJWHaGpIODen6ERF+OkZWLqYSITmSFfF9OuG4pb7eUaYyZtVuWUKKTU4uWoz2dl4iaOs+XQBeVXWylqbu7gXjbUH3vl75qs4ATUX4ngadKuWhfR4l3bJGltI66fJfTWHW9pnWStpBDS2Qok508lIJfQ2lzfJ+QtlC4V3HMYsbUPRqwhn2dt52xYlryb6Dbu3RvlXogXE4PqnNceJxcS2holX/AtpioPWGmgXOQpmXbUYVhbYorrl8qcKh2WV9npYWKonPMUWK2i7xaZx7Iro3PpKzKTYC1maW9gnNzRJ1DhmZJrasxTIIycaJav23Zd5W4XWRdp4qzeobOSJVulntVsoxWQHE+g4FEyFyDZ6zVbFpbtbNpkCLenozoUFjTdp+br22nXo54X3ZarKJiloogTLcamo5NxFvKW4WKhnDDq22sOYW5cYB6v5ltZZNoXZInonwtfVVkU4erlUNdsqqVuCbzW5reT2XIn36vooGVPXJ9iXxmzGtNUaszdpccpG8hSZCFYaLSsHzReVe7TmOhm4iHq5NwVmlZhYs/r3slNIYac3MyvXveZKDdlyk/PatOeYVdunBuVHZ+Z2qOs5yeioKuWHu/n2awlnFEPGogi6NHwIhWVG5mdlp3vHqIiJOXY4Cnr3K4YXXJT2iUnWs7n6NvQ5eDYi0pV70qo6U/naBtU6hukZqWvYKxZoG0e4jMxXl4R66uZqYZtZ0ah5U7Uo1doIRee3uRQnOhjWusp2PhT6bmdo6ruIJJdItKXI10ODFAgWMxwXE9cHdtanVbr36bUo3BV3uYpX16iYbOTZC5kJQwuZcdTaE7fKNat5lITJqeZ6mtsFirhmrjVHTWoG+lul1cUHRLhoR1YTRboVJvcndeTIogk3I3nnufSJPRgFyGtn+VZFe2a2uquYJLmJlkV608pWoThF0rRXGrkInhuonjQnabfYaro6qfUHJ/Z2aWr3tfhzhyuWJsPJRXbVkuuWglcXmaVmCApmjIt4XAQ3qxkUudinFjP5lafWY8rF8dTX0VaIG3tmzmfHrYV4qqo06fjoGZQKeSjGCJ1XFj", 0, 4)]
    [InlineData(7, 5, 12, 16, 12, "AAAACAADHwAKNwASTgAZZQAgfAAokwAvqwA3wgA+wQBGaABNDwBUHwBcNgBjPgBmBAACDAAEIwEKOwEQUgEZaQIigAIplwIurwM2xgM/xQRIbARNEwRSIwVcOgVlQgVoEAAJGAEJLwIIRwQJXgUYdQcojAkrowoquwwy0g5B0RBNeBFMHxNMLxVaRhZqThdvHAAQJAEOOwQHUwcDagoYgQwtmA8trxImxxYt3hlD3RxShB9MKyJGOyRZUiduWih2KAAXMAEXRwYVXwoUdg4ZjRIfpBYeuxsdvh8qqyNFkihbYyxZNDBXRzRcXjhiZjpkNAAePAIgUwckaw0nghMamRgOsB0OxyMSsygmcS5IPTNkPTloPT9sU0RgaklTcktPQAAmSAInXwkrdxAujhcbpR4IvCQH0ysLszIiWjhKGT9rMEZvR01zX1RhdltOfl1ITAAtVAMsawsqgxMnmhsasSMOyCsJ3zMHvzseZkNMJUtwPFNuU1tta2RggmxUim5PWAA0YAMxdwwrjxYjph8dvSkW0TIP4zsJw0Udb05MMVdwSGBqX2ljd3Rcjn1WloBTZAA7bAM7gw46mxk5siQ5yS44uDk3nEM3fE45Vlg9PWNAVG5Aa3g/g4M+mo4+opE+cABCeAREjxBJpxxPvihV1TNan0BgVExlNFdVPWMuSW8QYHsWd4cbj5Ihpp8mrqModABEfARHkxFOqx1Wwild2TVkmEJsP05zH1pdNmYpTXMCZH8Je4sQk5cYqqQfsqgi", 0, 2)]
    [InlineData(20, 41, 9, 9, 18, "QwUTnhEtXB5Ylyt7fjiig0XIclLidF9Qn1cwfxEvlzkwamdMqJF1bpu0mpbIWnLNn5NgbI04ph5abGZPk64cYJBujXfle4y9fYainXl3Z4xvaCt/cJF+kY99ZYN/pJiCZ4aBl3iBY3+MnYqPTjikoJqwaXXkmJaRiHUah3xCdoBfdoago4mvhUXPlpLOcZC0iYOKY4VLn5I4X5g0pX6ub4igllLUVHTCmX6fY3qFlHxofpNJgpEtf3VybpWwa18/d55RlYNxa4KKqIqnbH26m3yNWIk3pJ07VUs+pHg/bYFek4aFZYa4jnuPeIa9fpNWpJsmjUdpa3hfdHcsjGxxZ3Sro36uZWWxmHJuZZpemlSOWZSMn3N8Z3xEmn95gomUiX+RdXKCbJh9bmGzfnC0mIipcpSHinkqZ4ZSoI9vXYOXrISgXG7NkmuRWJmtmXebYo1alINIeodEgXCujWjUlHyUbYa8e2uwj5iVbnZ3qG9Xa3kymX+xUXzRnohDX7FipXKCa1ialHC2aoO5kHFhd3lUc3plcZNNhNlPb7xveaCViYi1ZX5ppHeqY495n3dVYix4lk1vWFY9n15sZmaIm26UfXXBiXGWd3SOmw+ZdjORflxpm4Ugb59qjoCxaZunnHOpU36k", 4, 0)]
    public void ResizeAndCenterCropEqualPilAndTorchvision(int w, int h, int size, int newW, int newH, string pilBase64, int top, int left)
    {
        Assert.Equal((newW, newH), ImageTransforms.ResizedSize(w, h, size));
        using var src = Pattern(w, h);
        using var resized = ImageTransforms.ResizeShorterSide(src, size);
        Assert.Equal(newW, resized.Width);
        Assert.Equal(newH, resized.Height);
        var expected = Convert.FromBase64String(pilBase64);
        var actual = Pixels(resized);
        int maxDiff = expected.Zip(actual, (a, b) => Math.Abs(a - b)).Max();
        Assert.True(maxDiff == 0, $"max |ours - PIL| = {maxDiff} (of 255)");
        Assert.Equal((top, left), ImageTransforms.CenterCropOffsets(newH, newW, size));

        // The whole transform: crop of the PIL pixels, /255, (x - 0.5) / 0.5, CHW.
        using var scope = torch.NewDisposeScope();
        var t = ImageTransforms.DreamBoothTransform(src, size);
        Assert.Equal(new long[] { 3, size, size }, t.shape);
        var want = torch.tensor(expected, new long[] { newH, newW, 3 })
            .narrow(0, top, size).narrow(1, left, size).permute(2, 0, 1).to(ScalarType.Float32).div(255).sub(0.5).div(0.5);
        Assert.True(want.Equals(t));
        var flipped = ImageTransforms.DreamBoothTransform(src, size, flip: true);
        var wantFlipped = torch.tensor(expected, new long[] { newH, newW, 3 }).flip(1)
            .narrow(0, top, size).narrow(1, left, size).permute(2, 0, 1).to(ScalarType.Float32).div(255).sub(0.5).div(0.5);
        Assert.True(wantFlipped.Equals(flipped));
    }

    [Fact]
    public void CenterCropRoundsHalvesToEvenLikePython()
    {
        Assert.Equal((0, 0), ImageTransforms.CenterCropOffsets(17, 16, 16));   // round(0.5) = 0
        Assert.Equal((2, 0), ImageTransforms.CenterCropOffsets(19, 16, 16));   // round(1.5) = 2
        Assert.Equal((2, 1), ImageTransforms.CenterCropOffsets(20, 18, 16));
        Assert.Throws<ArgumentException>(() => ImageTransforms.CenterCropOffsets(15, 20, 16));
    }

    [Fact]
    public void RandomCropOffsetsDrawLikeTorchvision()
    {
        // torchvision draws top then left with torch.randint(0, n + 1, (1,)); two single draws = one draw of 2 values.
        using var rng = SafetensorsFile.Open(Path.Combine(Fixtures.Reference, "rng.safetensors"));
        using var expected = rng.Read("gen0_randint_0_1000_2");
        var g = new torch.Generator(0);
        var (top, left) = ImageTransforms.RandomCropOffsets(1000 + 63, 1000 + 63, 64, g);
        Assert.Equal(expected[0].item<long>(), top);
        Assert.Equal(expected[1].item<long>(), left);
        var g2 = new torch.Generator(0);
        Assert.Equal((0, 0), ImageTransforms.RandomCropOffsets(64, 64, 64, g2));   // no draw for an exact fit
        using var next = torch.randint(0, 1000, new long[] { 2 }, generator: g2);
        Assert.True(next.Equals(expected));
    }

    [Fact]
    public void AppliesExifOrientation()
    {
        using var dir = new TempDir();
        using (var img = new Image<Rgb24>(32, 16))
        {
            for (int y = 0; y < 16; y++)
                for (int x = 0; x < 32; x++) img[x, y] = x < 16 ? new Rgb24(255, 0, 0) : new Rgb24(0, 0, 255);
            img.Metadata.ExifProfile = new ExifProfile();
            img.Metadata.ExifProfile.SetValue(ExifTag.Orientation, (ushort)6);   // stored rotated: display = 90° clockwise
            img.SaveAsJpeg(dir["o.jpg"], new JpegEncoder { Quality = 100 });
        }
        using var loaded = ImageLoader.LoadRgb(dir["o.jpg"]);
        Assert.Equal(16, loaded.Width);
        Assert.Equal(32, loaded.Height);
        // Rotating clockwise puts the stored left half (red) on top.
        Assert.True(loaded[8, 4].R > 200 && loaded[8, 4].B < 50, $"top is {loaded[8, 4]}");
        Assert.True(loaded[8, 28].B > 200 && loaded[8, 28].R < 50, $"bottom is {loaded[8, 28]}");
    }

    [Fact]
    public void RgbaDropsAlphaWithoutCompositingAndGreyBecomesRgb()
    {
        using var dir = new TempDir();
        using (var rgba = new Image<Rgba32>(2, 1))
        {
            rgba[0, 0] = new Rgba32(10, 20, 30, 0);      // fully transparent: PIL's convert("RGB") keeps 10,20,30
            rgba[1, 0] = new Rgba32(200, 100, 50, 128);
            rgba.SaveAsPng(dir["rgba.png"], new PngEncoder { ColorType = PngColorType.RgbWithAlpha });
        }
        using (var grey = new Image<L8>(1, 1)) { grey[0, 0] = new L8(77); grey.SaveAsPng(dir["grey.png"], new PngEncoder { ColorType = PngColorType.Grayscale }); }
        using (var la = new Image<La16>(1, 1)) { la[0, 0] = new La16(90, 0); la.SaveAsPng(dir["la.png"], new PngEncoder { ColorType = PngColorType.GrayscaleWithAlpha }); }

        using var a = ImageLoader.LoadRgb(dir["rgba.png"]);
        Assert.Equal(new Rgb24(10, 20, 30), a[0, 0]);
        Assert.Equal(new Rgb24(200, 100, 50), a[1, 0]);
        using var g = ImageLoader.LoadRgb(dir["grey.png"]);
        Assert.Equal(new Rgb24(77, 77, 77), g[0, 0]);
        using var l = ImageLoader.LoadRgb(dir["la.png"]);
        Assert.Equal(new Rgb24(90, 90, 90), l[0, 0]);
        using var t = ImageTensor.FromImage(g);
        Assert.Equal(new long[] { 3, 1, 1 }, t.shape);
    }

    [Fact]
    public void CorruptAndMissingImagesGiveClearErrors()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir["notes.png"], "this is not a png");
        var e = Assert.Throws<ImageLoadException>(() => ImageLoader.LoadRgb(dir["notes.png"]));
        Assert.Contains(dir["notes.png"], e.Message);
        using (var img = Pattern(40, 40)) img.SaveAsPng(dir["full.png"]);
        var bytes = File.ReadAllBytes(dir["full.png"]);
        File.WriteAllBytes(dir["cut.png"], bytes[..(bytes.Length / 2)]);
        var cut = Assert.ThrowsAny<IOException>(() => ImageLoader.LoadRgb(dir["cut.png"]));
        Assert.Contains("cut.png", cut.Message);
        Assert.Throws<FileNotFoundException>(() => ImageLoader.LoadRgb(dir["missing.jpg"]));
    }

    [Fact]
    public void ListsImagesSortedOrdinally()
    {
        using var dir = new TempDir();
        foreach (var n in new[] { "b.jpg", "A.PNG", "c.txt", "a.jpeg", "d.WebP", "e.tiff", "f.gif", "g.bmp", "h.tif", ".hidden.png", "z.png.bak" })
            File.WriteAllText(dir[n], "");
        Directory.CreateDirectory(dir["sub.png"]);
        Assert.Equal(new[] { "A.PNG", "a.jpeg", "b.jpg", "d.WebP", "e.tiff", "f.gif", "g.bmp", "h.tif" }, ImageFiles.List(dir.Path).Select(Path.GetFileName));
        Assert.True(ImageFiles.IsImageFile("x/Y.JPG"));
        Assert.False(ImageFiles.IsImageFile("x/y.txt"));
        Assert.Contains("does not exist", Assert.Throws<DirectoryNotFoundException>(() => ImageFiles.List(dir["nope"])).Message);
    }

    [Fact]
    public void PngRoundTripsPixelsAndTextMetadata()
    {
        using var dir = new TempDir();
        using var scope = torch.NewDisposeScope();
        var image = torch.rand(new long[] { 3, 5, 7 }, generator: new torch.Generator(3));
        image[0, 0, 0] = torch.tensor(1.5f);   // clamped
        var meta = new Dictionary<string, string>
        {
            ["parameters"] = "a photo of sks dog\nSteps: 20, Sampler: DDIM, CFG scale: 7.5, Seed: 42, Size: 7x5",
            ["dreambooth.seed"] = "42", ["prompt_utf8"] = "ein Foto von sks Hund – 犬",
        };
        PngWriter.Save(image, dir["out.png"], meta);
        Assert.Single(Directory.GetFiles(dir.Path));

        using var loaded = ImageLoader.LoadRgb(dir["out.png"]);
        var want = image.clamp(0, 1).mul(255).round().to(ScalarType.Byte).permute(1, 2, 0).contiguous();
        Assert.Equal(want.bytes.ToArray(), Pixels(loaded));
        using var back = Image.Load(dir["out.png"]);
        var text = back.Metadata.GetPngMetadata().TextData.ToDictionary(t => t.Keyword, t => t.Value);
        Assert.Equal(meta, text);
        var raw = Encoding.Latin1.GetString(File.ReadAllBytes(dir["out.png"]));
        Assert.Contains("tEXtparameters\0a photo of sks dog\nSteps: 20", raw);   // plain tEXt as A1111 writes it
        Assert.Contains("iTXtprompt_utf8", raw);

        // [H, W, 3] input and the ImageTensor round trip.
        PngWriter.Save(image.permute(1, 2, 0), dir["hwc.png"]);
        using var hwc = ImageLoader.LoadRgb(dir["hwc.png"]);
        Assert.Equal(Pixels(loaded), Pixels(hwc));
        using var fromTensor = ImageTensor.ToImage(ImageTensor.FromImage(loaded));
        Assert.Equal(Pixels(loaded), Pixels(fromTensor));
        Assert.Throws<ArgumentException>(() => PngWriter.Save(image, dir["bad.png"], new Dictionary<string, string> { [""] = "x" }));
        Assert.Throws<ArgumentException>(() => ImageTensor.ToImage(torch.zeros(4, 5, 7)));
    }
}
