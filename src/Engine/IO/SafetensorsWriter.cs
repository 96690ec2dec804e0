using System.Text;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.IO;

/// <summary>
/// Writes tensors in the safetensors format (keys sorted as the Python library does, header padded to 8 bytes,
/// <c>__metadata__</c> kept). The file is written next to its destination under a temporary name, then renamed,
/// so a crash never leaves a half-written file under the real name.
/// </summary>
public static class SafetensorsWriter
{
    public static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        path = Path.GetFullPath(path);
        var items = tensors.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToList();
        var dup = items.GroupBy(kv => kv.Key).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new ArgumentException($"Tensor name '{dup.Key}' appears twice.");

        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
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
        var header = ms.ToArray();

        var dir = Path.GetDirectoryName(path)!;
        Directory.CreateDirectory(dir);
        var tmp = Path.Combine(dir, "." + Path.GetFileName(path) + "." + Guid.NewGuid().ToString("N")[..8] + ".tmp");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                fs.Write(BitConverter.GetBytes((long)header.Length));
                fs.Write(header);
                foreach (var (_, t) in items)
                {
                    using var scope = torch.NewDisposeScope();
                    var cpu = t.detach().cpu().contiguous();
                    if (cpu.numel() > 0) fs.Write(cpu.bytes);
                }
                fs.Flush(true);
            }
            File.Move(tmp, path, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch { /* best effort */ }
            throw;
        }
    }
}
