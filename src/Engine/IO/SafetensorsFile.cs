using System.IO.MemoryMappedFiles;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.IO;

/// <summary>One tensor's entry in a safetensors header.</summary>
public sealed record SafetensorsEntry(string Name, string DType, long[] Shape, long Begin, long End)
{
    public ScalarType ScalarType => SafetensorsDType.TryParse(DType, out var t, out _) ? t : throw new NotSupportedException(DType);
    public long ByteLength => End - Begin;
}

/// <summary>
/// A safetensors file opened for reading: the header is parsed and validated up front (bounded length, known dtypes,
/// offsets in bounds, contiguous, non-overlapping, size = shape × dtype); tensor data is memory-mapped and copied
/// straight into each tensor's storage, so a multi-GB file never sits in memory twice.
/// </summary>
public sealed class SafetensorsFile : ISafetensorsSource
{
    /// <summary>safetensors' own limit on the JSON header.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    readonly MemoryMappedFile? _map;
    readonly MemoryMappedViewAccessor? _view;
    readonly long _dataStart;

    public string Path { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }
    public IReadOnlyList<SafetensorsEntry> Entries { get; }
    readonly Dictionary<string, SafetensorsEntry> _byName;

    SafetensorsFile(string path, MemoryMappedFile? map, MemoryMappedViewAccessor? view, long dataStart,
        Dictionary<string, string> metadata, List<SafetensorsEntry> entries)
    {
        Path = path; _map = map; _view = view; _dataStart = dataStart;
        Metadata = metadata; Entries = entries;
        _byName = entries.ToDictionary(e => e.Name, StringComparer.Ordinal);
    }

    public IEnumerable<string> Keys => _byName.Keys;
    public bool Contains(string name) => _byName.ContainsKey(name);
    public SafetensorsEntry this[string name] => _byName.TryGetValue(name, out var e) ? e
        : throw new KeyNotFoundException($"'{Path}' has no tensor named '{name}'.");

    public static SafetensorsFile Open(string path)
    {
        path = System.IO.Path.GetFullPath(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"Safetensors file '{path}' does not exist.", path);
        byte[] header;
        long headerLength, fileLength;
        // The opened stream's length, not FileInfo's: a Hugging Face cache snapshot is a symlink to its blob.
        using (var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read))
        {
            fileLength = fs.Length;
            if (fileLength < 8) throw new SafetensorsFormatException(path, $"the file has {fileLength} bytes, fewer than the 8-byte header length");
            Span<byte> len = stackalloc byte[8];
            fs.ReadExactly(len);
            headerLength = BitConverter.ToInt64(len);
            if (headerLength <= 0 || headerLength > MaxHeaderBytes)
                throw new SafetensorsFormatException(path, $"the header length {headerLength} is outside 1..{MaxHeaderBytes}");
            if (8 + headerLength > fileLength)
                throw new SafetensorsFormatException(path, $"the header claims {headerLength} bytes but the file has {fileLength} (truncated?)");
            header = new byte[headerLength];
            fs.ReadExactly(header);
        }

        var (metadata, entries) = ParseHeader(path, header);
        long dataStart = 8 + headerLength;
        long dataLength = fileLength - dataStart;
        ValidateLayout(path, entries, dataLength);

        MemoryMappedFile? map = null; MemoryMappedViewAccessor? view = null;
        if (dataLength > 0)
        {
            map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        }
        return new SafetensorsFile(path, map, view, dataStart, metadata, entries);
    }

    static (Dictionary<string, string>, List<SafetensorsEntry>) ParseHeader(string path, byte[] header)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(header.AsMemory().TrimEnd((byte)' ')); }
        catch (JsonException e) { throw new SafetensorsFormatException(path, "the header is not valid JSON (" + e.Message + ")"); }
        using var docScope = doc;
        if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new SafetensorsFormatException(path, "the header is not a JSON object");
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        var entries = new List<SafetensorsEntry>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var prop in doc.RootElement.EnumerateObject())
        {
            if (prop.Name == "__metadata__")
            {
                if (prop.Value.ValueKind != JsonValueKind.Object) throw new SafetensorsFormatException(path, "__metadata__ is not an object");
                foreach (var m in prop.Value.EnumerateObject())
                {
                    if (m.Value.ValueKind != JsonValueKind.String) throw new SafetensorsFormatException(path, $"__metadata__ value '{m.Name}' is not a string");
                    metadata[m.Name] = m.Value.GetString()!;
                }
                continue;
            }
            var v = prop.Value;
            if (v.ValueKind != JsonValueKind.Object
                || !v.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String
                || !v.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array
                || !v.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
                throw new SafetensorsFormatException(path, $"tensor '{prop.Name}' lacks dtype, shape or data_offsets");
            string dtype = dt.GetString()!;
            if (!SafetensorsDType.TryParse(dtype, out _, out _))
                throw new SafetensorsFormatException(path, $"tensor '{prop.Name}' has dtype '{dtype}', which is not one of {string.Join(", ", SafetensorsDType.Names)}");
            var shape = new long[sh.GetArrayLength()];
            int i = 0;
            foreach (var d in sh.EnumerateArray())
            {
                if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out var n) || n < 0)
                    throw new SafetensorsFormatException(path, $"tensor '{prop.Name}' has an invalid shape");
                shape[i++] = n;
            }
            var o = off.EnumerateArray().ToArray();
            if (o[0].ValueKind != JsonValueKind.Number || o[1].ValueKind != JsonValueKind.Number
                || !o[0].TryGetInt64(out var begin) || !o[1].TryGetInt64(out var end) || begin < 0 || end < begin)
                throw new SafetensorsFormatException(path, $"tensor '{prop.Name}' has invalid data_offsets");
            if (!names.Add(prop.Name))
                throw new SafetensorsFormatException(path, $"tensor '{prop.Name}' appears twice in the header");
            entries.Add(new SafetensorsEntry(prop.Name, dtype, shape, begin, end));
        }
        return (metadata, entries);
    }

    static void ValidateLayout(string path, List<SafetensorsEntry> entries, long dataLength)
    {
        foreach (var e in entries)
        {
            SafetensorsDType.TryParse(e.DType, out _, out int size);
            long count = 1;
            try { foreach (var d in e.Shape) count = checked(count * d); count = checked(count * size); }
            catch (OverflowException) { throw new SafetensorsFormatException(path, $"tensor '{e.Name}' has a shape too large to address"); }
            if (count != e.ByteLength)
                throw new SafetensorsFormatException(path, $"tensor '{e.Name}' needs {count} bytes for shape [{string.Join(", ", e.Shape)}] {e.DType} but its offsets span {e.ByteLength}");
            if (e.End > dataLength)
                throw new SafetensorsFormatException(path, $"tensor '{e.Name}' ends at byte {e.End} of the data but the data has {dataLength} bytes (truncated?)");
        }
        long expect = 0;
        foreach (var e in entries.OrderBy(e => e.Begin).ThenBy(e => e.End))
        {
            if (e.Begin < expect)
                throw new SafetensorsFormatException(path, $"tensor '{e.Name}' overlaps the tensor before it (starts at {e.Begin}, previous ends at {expect})");
            if (e.Begin > expect)
                throw new SafetensorsFormatException(path, $"there is a gap before tensor '{e.Name}' (starts at {e.Begin}, previous ends at {expect})");
            expect = e.End;
        }
        if (expect != dataLength)
            throw new SafetensorsFormatException(path, $"the tensors cover {expect} bytes of data but the file holds {dataLength} after the header");
    }

    /// <summary>Reads one tensor onto the CPU in its file dtype, then converts to <paramref name="dtype"/> / <paramref name="device"/> if given.</summary>
    public Tensor Read(string name, ScalarType? dtype = null, Device? device = null)
    {
        var e = this[name];
        var t = torch.empty(e.Shape, e.ScalarType);
        if (e.ByteLength > 0) CopyInto(e, t);
        if ((dtype is null || dtype == t.dtype) && (device is null || device.type == DeviceType.CPU)) return t;
        using (t) return t.to(dtype ?? t.dtype, device ?? t.device);
    }

    /// <summary>
    /// Copies tensor <paramref name="name"/> into <paramref name="target"/> (same element count). A contiguous CPU target of
    /// the file's dtype is filled straight from the mapped file; any other target gets a converted copy.
    /// </summary>
    public void CopyInto(string name, Tensor target)
    {
        var e = this[name];
        long count = e.Shape.Aggregate(1L, (a, d) => a * d);
        if (target.numel() != count)
            throw new ArgumentException($"'{name}' in '{Path}' has {count} elements [{string.Join(", ", e.Shape)}] but the target has {target.numel()} [{string.Join(", ", target.shape)}].");
        if (target.device_type == DeviceType.CPU && target.dtype == e.ScalarType && target.is_contiguous())
        {
            CopyInto(e, target);
            return;
        }
        // The view is disposed too: a view handle left to the finalizer keeps the converted copy's storage alive, which
        // held a whole fp32 copy of a model loaded in bf16 or onto a GPU (3 GB more for SD-1.4's UNet) until a GC.
        using var src = Read(name);
        using var shaped = src.view(target.shape);
        using (torch.no_grad()) target.copy_(shaped);
    }

    /// <summary>Spans are int-indexed, so tensors are copied in pieces of at most this many bytes.</summary>
    internal const long CopyChunkBytes = 1L << 30;

    /// <summary>Copies an entry's bytes into a contiguous CPU tensor of the same dtype and element count.</summary>
    internal void CopyInto(SafetensorsEntry e, Tensor target) => CopyInto(e, target, CopyChunkBytes);

    internal unsafe void CopyInto(SafetensorsEntry e, Tensor target, long chunkBytes)
    {
        if (target.device_type != DeviceType.CPU || target.dtype != e.ScalarType || !target.is_contiguous()
            || target.numel() * target.element_size() != e.ByteLength)
            throw new ArgumentException($"CopyInto needs a contiguous CPU {e.ScalarType} tensor of {e.ByteLength} bytes for '{e.Name}'.");
        if (e.ByteLength == 0) return;
        if (_view is null) throw new ObjectDisposedException(Path);
        byte* basePtr = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref basePtr);
        try
        {
            byte* src = basePtr + _view.PointerOffset + _dataStart + e.Begin;
            if (e.ByteLength <= chunkBytes)
            {
                new ReadOnlySpan<byte>(src, (int)e.ByteLength).CopyTo(target.bytes);
                return;
            }
            // Larger than one span: copy through views of the flattened target, each small enough for a Span.
            long elementSize = target.element_size();
            long perChunk = Math.Max(1, chunkBytes / elementSize);
            using var flat = target.view(-1);
            long n = flat.numel();
            for (long start = 0; start < n; start += perChunk)
            {
                using var part = flat.narrow(0, start, Math.Min(perChunk, n - start));
                var dst = part.bytes;
                new ReadOnlySpan<byte>(src + start * elementSize, dst.Length).CopyTo(dst);
            }
        }
        finally { _view.SafeMemoryMappedViewHandle.ReleasePointer(); }
    }

    /// <summary>Reads every tensor (CPU, file dtype unless <paramref name="dtype"/> is given).</summary>
    public Dictionary<string, Tensor> ReadAll(ScalarType? dtype = null, Device? device = null)
    {
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var e in Entries) result[e.Name] = Read(e.Name, dtype, device);
        return result;
    }

    public void Dispose()
    {
        _view?.Dispose();
        _map?.Dispose();
    }
}
