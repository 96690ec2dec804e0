using System.Text;
using System.Text.Json;
using DreamBooth.Engine.IO;

namespace DreamBooth.Engine.Tests.IO;

public class SafetensorsTests
{
    static byte[] BytesOf(Tensor t) => t.numel() == 0 ? Array.Empty<byte>() : t.contiguous().bytes.ToArray();

    /// <summary>A file from a hand-written header and data section.</summary>
    static string WriteRaw(TempDir dir, string header, int dataBytes, long? claimedHeaderLength = null)
    {
        var path = dir["raw.safetensors"];
        var h = Encoding.UTF8.GetBytes(header);
        using var fs = File.Create(path);
        fs.Write(BitConverter.GetBytes(claimedHeaderLength ?? h.Length));
        fs.Write(h);
        fs.Write(new byte[dataBytes]);
        return path;
    }

    static SafetensorsFormatException Rejects(string path, string expectedProblem)
    {
        var e = Assert.Throws<SafetensorsFormatException>(() => SafetensorsFile.Open(path).Dispose());
        Assert.Contains(path, e.Message);
        Assert.Contains(expectedProblem, e.Message);
        Assert.Equal(path, e.FilePath);
        return e;
    }

    public static IEnumerable<object[]> AllDTypes() => new[]
    {
        ScalarType.Float64, ScalarType.Float32, ScalarType.Float16, ScalarType.BFloat16, ScalarType.Int64,
        ScalarType.Int32, ScalarType.Int16, ScalarType.Int8, ScalarType.Byte, ScalarType.Bool,
    }.Select(t => new object[] { t });

    [Theory]
    [MemberData(nameof(AllDTypes))]
    public void EveryDTypeRoundTripsBitExactly(ScalarType dtype)
    {
        using var dir = new TempDir();
        using var scope = torch.NewDisposeScope();
        var gen = new torch.Generator(7);
        Tensor Make(params long[] shape) => dtype switch
        {
            ScalarType.Bool => torch.rand(shape, generator: gen) > 0.5,
            ScalarType.Byte => torch.randint(0, 256, shape, dtype: dtype, generator: gen),
            ScalarType.Int8 => torch.randint(-128, 128, shape, dtype: dtype, generator: gen),
            ScalarType.Int16 or ScalarType.Int32 or ScalarType.Int64 => torch.randint(-30000, 30000, shape, dtype: dtype, generator: gen),
            _ => (torch.randn(shape, generator: gen) * 100).to(dtype),
        };
        var tensors = new Dictionary<string, Tensor>
        {
            ["matrix"] = Make(3, 5), ["scalar"] = Make(), ["empty"] = Make(0, 4), ["vector"] = Make(17),
        };
        if (torch.is_floating_point(tensors["matrix"]))   // NaN and ±inf survive as bit patterns
            tensors["special"] = torch.tensor(new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity, -0.0f }).to(dtype);
        var path = dir["t.safetensors"];
        SafetensorsWriter.Write(path, tensors);
        using var f = SafetensorsFile.Open(path);
        Assert.Equal(tensors.Keys.OrderBy(k => k, StringComparer.Ordinal), f.Keys.OrderBy(k => k, StringComparer.Ordinal));
        foreach (var (name, t) in tensors)
        {
            var back = f.Read(name);
            Assert.Equal(dtype, back.dtype);
            Assert.Equal(t.shape, back.shape);
            Assert.Equal(BytesOf(t), BytesOf(back));
        }
        Assert.Empty(f.Read("scalar").shape);
        Assert.Equal(SafetensorsDType.NameOf(dtype), f["matrix"].DType);
    }

    [Fact]
    public void MetadataRoundTrips()
    {
        using var dir = new TempDir();
        using var t = torch.ones(2);
        var meta = new Dictionary<string, string> { ["format"] = "pt", ["ss_note"] = "ünïcode \"quoted\" <b>&", ["empty"] = "" };
        SafetensorsWriter.Write(dir["m.safetensors"], new Dictionary<string, Tensor> { ["x"] = t }, meta);
        using var f = SafetensorsFile.Open(dir["m.safetensors"]);
        Assert.Equal(meta.OrderBy(kv => kv.Key), f.Metadata.OrderBy(kv => kv.Key));
    }

    [Fact]
    public void TinySdWeightsReadWithExpectedKeysAndShapes()
    {
        using var unet = SafetensorsFile.Open(Path.Combine(Fixtures.TinySd, "unet", "diffusion_pytorch_model.safetensors"));
        Assert.Equal("pt", unet.Metadata["format"]);
        Assert.Equal(new long[] { 32, 4, 3, 3 }, unet["conv_in.weight"].Shape);
        Assert.Equal("F32", unet["conv_in.weight"].DType);
        using (var w = unet.Read("conv_in.bias")) Assert.Equal(new long[] { 32 }, w.shape);
        using var te = SafetensorsFile.Open(Path.Combine(Fixtures.TinySd, "text_encoder", "model.safetensors"));
        Assert.Equal(new long[] { 49408, 32 }, te["text_model.embeddings.token_embedding.weight"].Shape);
        using var vae = SafetensorsFile.Open(Path.Combine(Fixtures.TinySd, "vae", "diffusion_pytorch_model.safetensors"));
        Assert.Equal(new long[] { 8, 8, 1, 1 }, vae["quant_conv.weight"].Shape);
    }

    [Fact]
    public void EveryReferenceFileMatchesItsManifestTensors()
    {
        int checkedTensors = 0;
        // Python's json writes -Infinity (DPM-Solver's lambda_min_clipped), which System.Text.Json rejects.
        var text = File.ReadAllText(Path.Combine(Fixtures.Reference, "manifest.json")).Replace("-Infinity", "null");
        using var manifest = JsonDocument.Parse(text);
        foreach (var c in manifest.RootElement.GetProperty("cases").EnumerateArray())
        {
            var file = c.GetProperty("file").GetString()!;
            if (!file.EndsWith(".safetensors")) continue;
            using var f = SafetensorsFile.Open(Path.Combine(Fixtures.Reference, file));
            foreach (var t in c.GetProperty("tensors").EnumerateObject())
            {
                var e = f[t.Name];
                var dtype = t.Value.GetProperty("dtype").GetString() switch
                { "float32" => "F32", "float64" => "F64", "int64" => "I64", "int32" => "I32", "bool" => "BOOL", var d => d };
                Assert.Equal(dtype, e.DType);
                Assert.Equal(t.Value.GetProperty("shape").EnumerateArray().Select(x => x.GetInt64()), e.Shape);
                using var r = f.Read(t.Name);
                checkedTensors++;
            }
        }
        Assert.True(checkedTensors > 100, $"only {checkedTensors} tensors checked");
    }

    /// <summary>Python safetensors' own files, re-written by us, come out byte-identical (layout, order, padding).</summary>
    [Theory]
    [InlineData("tiny-sd/unet/diffusion_pytorch_model.safetensors")]
    [InlineData("tiny-sd/text_encoder/model.safetensors")]
    [InlineData("reference/rng.safetensors")]
    [InlineData("reference/unet.safetensors")]
    [InlineData("reference/dreambooth/unet_te.safetensors")]
    public void RewritingAPythonFileReproducesItsBytes(string relative)
    {
        var source = Path.Combine(Fixtures.Root, relative);
        using var dir = new TempDir();
        using (var f = SafetensorsFile.Open(source))
        {
            var all = f.ReadAll();
            SafetensorsWriter.Write(dir["copy.safetensors"], all, f.Metadata.Count > 0 ? f.Metadata : null);
            foreach (var t in all.Values) t.Dispose();
        }
        Assert.Equal(File.ReadAllBytes(source), File.ReadAllBytes(dir["copy.safetensors"]));
    }

    [Fact]
    public void ChunkedCopyAndWriteMatchWholeCopy()
    {
        using var dir = new TempDir();
        using var scope = torch.NewDisposeScope();
        var a = torch.arange(1001, dtype: ScalarType.Float32).reshape(7, 11, 13);
        SafetensorsWriter.Write(dir["whole.safetensors"], new Dictionary<string, Tensor> { ["a"] = a }, null);
        SafetensorsWriter.Write(dir["chunked.safetensors"], new Dictionary<string, Tensor> { ["a"] = a }, null, chunkBytes: 12);
        Assert.Equal(File.ReadAllBytes(dir["whole.safetensors"]), File.ReadAllBytes(dir["chunked.safetensors"]));
        using var f = SafetensorsFile.Open(dir["chunked.safetensors"]);
        var b = torch.empty(7, 11, 13);
        f.CopyInto(f["a"], b, chunkBytes: 12);   // 3 floats per piece, 1001 elements: a ragged last piece
        Assert.True(a.Equals(b));
    }

    [Fact]
    public void PublicCopyIntoConvertsDTypeAndChecksSize()
    {
        using var dir = new TempDir();
        using var scope = torch.NewDisposeScope();
        var a = torch.randn(4, 3);
        SafetensorsWriter.Write(dir["a.safetensors"], new Dictionary<string, Tensor> { ["a"] = a });
        using var f = SafetensorsFile.Open(dir["a.safetensors"]);
        var half = torch.zeros(4, 3, dtype: ScalarType.Float16);
        f.CopyInto("a", half);
        Assert.True(a.to(ScalarType.Float16).Equals(half));
        Assert.Throws<ArgumentException>(() => f.CopyInto("a", torch.zeros(5, 3)));
    }

    [Fact]
    public void RejectsFileShorterThan8Bytes()
    {
        using var dir = new TempDir();
        File.WriteAllBytes(dir["short.safetensors"], new byte[] { 1, 2, 3 });
        Rejects(dir["short.safetensors"], "fewer than the 8-byte header length");
    }

    [Fact]
    public void RejectsOversizedHeaderLength()
    {
        using var dir = new TempDir();
        var path = WriteRaw(dir, "{}", 0, claimedHeaderLength: 200_000_000);
        Rejects(path, "header length 200000000 is outside");
    }

    [Fact]
    public void RejectsTruncatedHeader()
    {
        using var dir = new TempDir();
        var path = WriteRaw(dir, "{\"a\":{\"dtype\":\"F32\"", 0, claimedHeaderLength: 4000);
        Rejects(path, "truncated");
    }

    [Fact]
    public void RejectsTruncatedData()
    {
        using var dir = new TempDir();
        using var t = torch.ones(100);
        SafetensorsWriter.Write(dir["full.safetensors"], new Dictionary<string, Tensor> { ["x"] = t });
        var bytes = File.ReadAllBytes(dir["full.safetensors"]);
        File.WriteAllBytes(dir["cut.safetensors"], bytes[..^10]);
        Rejects(dir["cut.safetensors"], "ends at byte 400 of the data but the data has 390 bytes (truncated?)");
    }

    [Fact]
    public void RejectsCorruptJsonHeader()
    {
        using var dir = new TempDir();
        var path = WriteRaw(dir, "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},,}", 4);
        Rejects(path, "the header is not valid JSON");
    }

    [Fact]
    public void RejectsOverlappingOffsets()
    {
        using var dir = new TempDir();
        var path = WriteRaw(dir, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12);
        Rejects(path, "tensor 'b' overlaps the tensor before it");
    }

    [Fact]
    public void RejectsGapBetweenTensors()
    {
        using var dir = new TempDir();
        var path = WriteRaw(dir, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12);
        Rejects(path, "there is a gap before tensor 'b'");
    }

    [Fact]
    public void RejectsTrailingBytesAfterLastTensor()
    {
        using var dir = new TempDir();
        var path = WriteRaw(dir, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 16);
        Rejects(path, "the tensors cover 4 bytes of data but the file holds 16");
    }

    [Fact]
    public void RejectsSizeShapeMismatch()
    {
        using var dir = new TempDir();
        var path = WriteRaw(dir, "{\"a\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", 24);
        Rejects(path, "tensor 'a' needs 12 bytes for shape [2, 3] F16 but its offsets span 24");
    }

    [Fact]
    public void RejectsUnknownDType()
    {
        using var dir = new TempDir();
        var path = WriteRaw(dir, "{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4);
        Rejects(path, "tensor 'a' has dtype 'F8_E4M3', which is not one of F64, F32");
    }

    [Fact]
    public void RejectsDuplicateTensorNames()
    {
        using var dir = new TempDir();
        var path = WriteRaw(dir, "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2);
        Rejects(path, "tensor 'a' appears twice");
    }

    [Fact]
    public void RejectsNonNumericOffsets()
    {
        using var dir = new TempDir();
        var path = WriteRaw(dir, "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[\"0\",1]}}", 1);
        Rejects(path, "tensor 'a' has invalid data_offsets");
    }

    [Fact]
    public void FailedWriteLeavesOldFileAndNoTempFile()
    {
        using var dir = new TempDir();
        using var scope = torch.NewDisposeScope();
        var path = dir["model.safetensors"];
        SafetensorsWriter.Write(path, new Dictionary<string, Tensor> { ["old"] = torch.ones(3) });
        var before = File.ReadAllBytes(path);
        var tensors = new Dictionary<string, Tensor>
        {
            ["a"] = torch.ones(2), ["b_complex"] = torch.ones(2, dtype: ScalarType.ComplexFloat32), ["c"] = torch.ones(2),
        };
        var e = Assert.Throws<NotSupportedException>(() => SafetensorsWriter.Write(path, tensors));
        Assert.Contains("b_complex", e.Message);
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Equal(new[] { "model.safetensors" }, Directory.GetFiles(dir.Path).Select(Path.GetFileName));
    }

    [Fact]
    public void WriteReplacesAnExistingFileAndLeavesNoTempFile()
    {
        using var dir = new TempDir();
        using var scope = torch.NewDisposeScope();
        var path = dir["model.safetensors"];
        SafetensorsWriter.Write(path, new Dictionary<string, Tensor> { ["old"] = torch.ones(300) });
        SafetensorsWriter.Write(path, new Dictionary<string, Tensor> { ["new"] = torch.zeros(2) });
        using var f = SafetensorsFile.Open(path);
        Assert.Equal(new[] { "new" }, f.Keys);
        Assert.Single(Directory.GetFiles(dir.Path));
    }

    [Fact]
    public void ShardSetOpensAnIndexAsOneStateDict()
    {
        using var dir = new TempDir();
        using var scope = torch.NewDisposeScope();
        SafetensorsWriter.Write(dir["m-00001-of-00002.safetensors"], new Dictionary<string, Tensor> { ["a"] = torch.ones(2), ["b"] = torch.zeros(3) });
        SafetensorsWriter.Write(dir["m-00002-of-00002.safetensors"], new Dictionary<string, Tensor> { ["c"] = torch.full(4, 7.0f) });
        File.WriteAllText(dir["m.safetensors.index.json"], JsonSerializer.Serialize(new
        {
            metadata = new { total_size = 36 },
            weight_map = new Dictionary<string, string> { ["a"] = "m-00001-of-00002.safetensors", ["b"] = "m-00001-of-00002.safetensors", ["c"] = "m-00002-of-00002.safetensors" },
        }));
        using var set = SafetensorsShardSet.OpenIndex(dir["m.safetensors.index.json"]);
        Assert.Equal(new[] { "a", "b", "c" }, set.Keys.OrderBy(k => k));
        Assert.Equal("36", set.Metadata["total_size"]);
        Assert.True(set.Read("c").Equals(torch.full(4, 7.0f)));
        Assert.EndsWith("m-00002-of-00002.safetensors", set.FileOf("c").Path);
        var target = torch.empty(3);
        set.CopyInto("b", target);
        Assert.True(target.Equals(torch.zeros(3)));
        Assert.Equal(3, set.ReadAll().Count);
    }

    [Fact]
    public void ShardSetRejectsBadIndexes()
    {
        using var dir = new TempDir();
        using var scope = torch.NewDisposeScope();
        SafetensorsWriter.Write(dir["s1.safetensors"], new Dictionary<string, Tensor> { ["a"] = torch.ones(2) });
        SafetensorsWriter.Write(dir["s2.safetensors"], new Dictionary<string, Tensor> { ["a"] = torch.ones(2) });
        void Index(Dictionary<string, string> map) => File.WriteAllText(dir["i.json"], JsonSerializer.Serialize(new { weight_map = map }));

        Index(new() { ["a"] = "../s1.safetensors" });
        Assert.Contains("is not a plain file name", Assert.Throws<SafetensorsFormatException>(() => SafetensorsShardSet.OpenIndex(dir["i.json"])).Message);
        Index(new() { ["a"] = "s1.safetensors", ["b"] = "missing.safetensors" });
        Assert.Contains("missing.safetensors", Assert.Throws<FileNotFoundException>(() => SafetensorsShardSet.OpenIndex(dir["i.json"])).Message);
        Index(new() { ["a"] = "s1.safetensors", ["z"] = "s2.safetensors" });
        Assert.Contains("tensor 'a' is also in", Assert.Throws<SafetensorsFormatException>(() => SafetensorsShardSet.OpenIndex(dir["i.json"])).Message);
        Index(new() { ["a"] = "s1.safetensors", ["b"] = "s1.safetensors" });
        Assert.Contains("no shard holds it", Assert.Throws<SafetensorsFormatException>(() => SafetensorsShardSet.OpenIndex(dir["i.json"])).Message);
    }

    /// <summary>A tensor over 2 GiB (Span's limit) round-trips; needs ~5 GB of RAM and disk.</summary>
    [Fact]
    [Trait("Category", "Slow")]
    public void TensorOver2GiBRoundTrips()
    {
        using var dir = new TempDir();
        long n = (1L << 31) + 1000;
        using (var big = torch.zeros(n, dtype: ScalarType.Byte))
        {
            big[n - 1] = torch.tensor((byte)42);
            big[0] = torch.tensor((byte)7);
            SafetensorsWriter.Write(dir["big.safetensors"], new Dictionary<string, Tensor> { ["big"] = big });
        }
        using var f = SafetensorsFile.Open(dir["big.safetensors"]);
        using var back = f.Read("big");
        Assert.Equal(n, back.numel());
        Assert.Equal((byte)42, back[n - 1].item<byte>());
        Assert.Equal((byte)7, back[0].item<byte>());
        Assert.Equal(49L, back.sum().item<long>());
    }
}
