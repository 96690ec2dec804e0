using System.Text.Json;
using DreamBooth.Engine.IO;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;

namespace DreamBooth.Engine.Tests;

/// <summary>Paths to tests/fixtures and helpers to read the diffusers reference tensors.</summary>
public static class Fixtures
{
    public static string Root { get; } = FindRoot();
    public static string TinySd => Path.Combine(Root, "tiny-sd");
    public static string Reference => Path.Combine(Root, "reference");

    static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null)
        {
            var candidate = Path.Combine(dir.FullName, "tests", "fixtures");
            if (Directory.Exists(Path.Combine(candidate, "tiny-sd"))) return candidate;
            dir = dir.Parent;
        }
        throw new DirectoryNotFoundException("tests/fixtures not found above " + AppContext.BaseDirectory);
    }

    static JsonDocument? s_manifest;
    /// <summary>manifest.json, with Python's bare Infinity/NaN literals turned into strings ("-Infinity") for System.Text.Json.</summary>
    public static JsonElement Manifest => (s_manifest ??= JsonDocument.Parse(System.Text.RegularExpressions.Regex.Replace(
        File.ReadAllText(Path.Combine(Reference, "manifest.json")), @"(?<=[:\[,]\s*)(-?Infinity|NaN)(?=\s*[,\]}])", "\"$1\""))).RootElement;

    /// <summary>The manifest case with this name.</summary>
    public static JsonElement Case(string name)
    {
        foreach (var c in Manifest.GetProperty("cases").EnumerateArray())
            if (c.GetProperty("name").GetString() == name) return c;
        throw new KeyNotFoundException("No fixture case " + name);
    }

    /// <summary>All tensors of a reference file (path relative to reference/).</summary>
    public static Dictionary<string, Tensor> Load(string relativePath)
    {
        using var f = SafetensorsFile.Open(Path.Combine(Reference, relativePath));
        return f.ReadAll();
    }

    /// <summary>The toy photos the examples and the trainer tests use as instance images (96×80 PNGs).</summary>
    public static string InstanceImages => Path.Combine(Root, "..", "..", "examples", "data", "sks-toy");

    /// <summary>
    /// The toy photos (96×80, landscape) cut to 60×80 portraits (3:4) in <paramref name="folder"/>, each named
    /// <paramref name="prefix"/> + its file name: a second subject, or images of another aspect-ratio bucket.
    /// </summary>
    public static string PortraitToys(string folder, int count = int.MaxValue, string prefix = "")
    {
        Directory.CreateDirectory(folder);
        foreach (var f in Directory.GetFiles(InstanceImages, "*.png").Order().Take(count))
        {
            using var image = Image.Load<Rgb24>(f);
            image.Mutate(x => x.Crop(new Rectangle(18, 0, 60, 80)));
            image.SaveAsPng(Path.Combine(folder, prefix + Path.GetFileName(f)));
        }
        return folder;
    }

    /// <summary>A model component's weights as a pipeline folder or checkpoint holds them (unet, text_encoder).</summary>
    public static Dictionary<string, Tensor> ComponentWeights(string folder, string component)
    {
        using var f = SafetensorsFile.Open(Path.Combine(folder, component, component == "text_encoder" ? "model.safetensors" : "diffusion_pytorch_model.safetensors"));
        return f.ReadAll();
    }

    /// <summary>‖a−b‖/‖b‖ in float64.</summary>
    public static double RelativeError(Tensor actual, Tensor expected)
    {
        using var scope = torch.NewDisposeScope();
        var a = actual.detach().cpu().to(ScalarType.Float64);
        var b = expected.detach().cpu().to(ScalarType.Float64);
        Assert.Equal(b.shape, a.shape);
        double denom = b.norm().item<double>();
        double num = (a - b).norm().item<double>();
        return denom == 0 ? num : num / denom;
    }

    public static double MaxAbs(Tensor actual, Tensor expected)
    {
        using var scope = torch.NewDisposeScope();
        var a = actual.detach().cpu().to(ScalarType.Float64);
        var b = expected.detach().cpu().to(ScalarType.Float64);
        Assert.Equal(b.shape, a.shape);
        return (a - b).abs().max().item<double>();
    }

    public static void AssertRelative(Tensor actual, Tensor expected, double tolerance, string what)
    {
        double err = RelativeError(actual, expected);
        Assert.True(err <= tolerance, $"{what}: relative error {err:E3} exceeds {tolerance:E1}");
    }
}
