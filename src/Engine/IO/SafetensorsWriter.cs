using System.Text.Encodings.Web;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.IO;

/// <summary>
/// Writes tensors in the safetensors format with the Python library's layout: compact header JSON with
/// <c>__metadata__</c> first, tensors ordered by dtype (widest first, see <see cref="SafetensorsDType.LayoutRank"/>) then
/// by name, header padded with spaces to a multiple of 8 bytes. For the same tensors and at most one metadata entry the
/// bytes equal <c>safetensors.torch.save_file</c>'s (the Rust library writes metadata in hash order, so with several
/// entries only their order can differ). The file is written through <see cref="AtomicFile"/>, so a crash or error never
/// leaves a half-written file under the real name.
/// </summary>
public static class SafetensorsWriter
{
    public static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
        => Write(path, tensors, metadata, SafetensorsFile.CopyChunkBytes);

    internal static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata, long chunkBytes)
    {
        path = Path.GetFullPath(path);
        var items = tensors.ToList();
        var dup = items.GroupBy(kv => kv.Key, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new ArgumentException($"Tensor name '{dup.Key}' appears twice.");
        if (items.Any(kv => kv.Key == "__metadata__")) throw new ArgumentException("'__metadata__' is reserved and cannot name a tensor.");
        // Checked before any file is touched: a tensor of an unsupported dtype fails here.
        foreach (var (name, t) in items)
            if (!SafetensorsDType.IsSupported(t.dtype))
                throw new NotSupportedException($"Tensor '{name}' has dtype {t.dtype}, which safetensors files written by this module cannot hold (supported: {string.Join(", ", SafetensorsDType.Names)}).");
        items = items
            .OrderByDescending(kv => SafetensorsDType.LayoutRank(kv.Value.dtype))
            .ThenBy(kv => kv.Key, StringComparer.Ordinal)
            .ToList();

        var header = BuildHeader(items, metadata);

        AtomicFile.Write(path, fs =>
        {
            fs.Write(BitConverter.GetBytes((long)header.Length));
            fs.Write(header);
            foreach (var (_, t) in items) WriteData(fs, t, chunkBytes);
        });
    }

    static byte[] BuildHeader(List<KeyValuePair<string, Tensor>> items, IReadOnlyDictionary<string, string>? metadata)
    {
        using var ms = new MemoryStream();
        // serde_json escapes only quotes, backslashes and control characters; the relaxed encoder comes closest.
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject("__metadata__");
                foreach (var kv in metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal)) w.WriteString(kv.Key, kv.Value);
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var (name, t) in items)
            {
                long n = t.numel() * SafetensorsDType.SizeOf(t.dtype);
                w.WriteStartObject(name);
                w.WriteString("dtype", SafetensorsDType.NameOf(t.dtype));
                w.WriteStartArray("shape"); foreach (var d in t.shape) w.WriteNumberValue(d); w.WriteEndArray();
                w.WriteStartArray("data_offsets"); w.WriteNumberValue(offset); w.WriteNumberValue(offset + n); w.WriteEndArray();
                w.WriteEndObject();
                offset += n;
            }
            w.WriteEndObject();
        }
        int pad = (int)((8 - ms.Length % 8) % 8);
        for (int i = 0; i < pad; i++) ms.WriteByte((byte)' ');
        if (ms.Length > SafetensorsFile.MaxHeaderBytes)
            throw new ArgumentException($"The safetensors header would be {ms.Length} bytes, more than readers accept ({SafetensorsFile.MaxHeaderBytes}).");
        return ms.ToArray();
    }

    /// <summary>Writes a tensor's bytes (C order, little-endian as in memory) in Span-sized pieces.</summary>
    static void WriteData(Stream fs, Tensor t, long chunkBytes)
    {
        if (t.numel() == 0) return;
        using var scope = torch.NewDisposeScope();
        var flat = t.detach().cpu().contiguous().view(-1);
        long elementSize = flat.element_size();
        long perChunk = Math.Max(1, chunkBytes / elementSize);
        long n = flat.numel();
        if (n <= perChunk) { fs.Write(flat.bytes); return; }
        for (long start = 0; start < n; start += perChunk)
            fs.Write(flat.narrow(0, start, Math.Min(perChunk, n - start)).bytes);
    }
}
