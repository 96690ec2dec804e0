using System.Buffers.Binary;
using System.Text;
using DreamBooth.Engine.IO;

namespace DreamBooth.Engine.Tests.IO;

/// <summary>
/// Reads TensorBoard event files back, independently of the writer's encoder: each TFRecord's two CRCs are checked and
/// the Event protobuf is decoded field by field (event.proto / summary.proto numbers), as TensorBoard's loader does.
/// </summary>
public static class TensorBoardEventFile
{
    public sealed record Value(string Tag, float? Scalar, int? ImageWidth, int? ImageHeight, byte[]? ImagePng);
    public sealed record Event(double WallTime, long Step, string? FileVersion, int? SessionStatus, IReadOnlyList<Value> Values);

    public static List<Event> Read(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var events = new List<Event>();
        int pos = 0;
        while (pos < bytes.Length)
        {
            var header = bytes.AsSpan(pos, 8);
            ulong length = BinaryPrimitives.ReadUInt64LittleEndian(header);
            Assert.Equal(TensorBoardEventWriter.MaskedCrc32C(header), BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(pos + 8, 4)));
            var data = bytes.AsSpan(pos + 12, (int)length);
            Assert.Equal(TensorBoardEventWriter.MaskedCrc32C(data), BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(pos + 12 + (int)length, 4)));
            events.Add(ParseEvent(data.ToArray()));
            pos += 16 + (int)length;
        }
        return events;
    }

    static Event ParseEvent(byte[] data)
    {
        double wall = 0; long step = 0; string? version = null; int? status = null; var values = new List<Value>();
        foreach (var (field, wire, number, payload) in Fields(data))
        {
            switch (field)
            {
                case 1: Assert.Equal(1, wire); wall = BitConverter.Int64BitsToDouble((long)number); break;
                case 2: Assert.Equal(0, wire); step = (long)number; break;
                case 3: version = Encoding.UTF8.GetString(payload!); break;
                case 5: foreach (var (f, _, _, v) in Fields(payload!)) if (f == 1) values.Add(ParseValue(v!)); break;
                case 7: status = (int)Fields(payload!).Single(f => f.Field == 1).Number; break;
                default: throw new InvalidDataException($"unexpected Event field {field}");
            }
        }
        return new Event(wall, step, version, status, values);
    }

    static Value ParseValue(byte[] data)
    {
        string tag = ""; float? scalar = null; int? w = null, h = null; byte[]? png = null;
        foreach (var (field, wire, number, payload) in Fields(data))
        {
            if (field == 1) tag = Encoding.UTF8.GetString(payload!);
            else if (field == 2) { Assert.Equal(5, wire); scalar = BitConverter.Int32BitsToSingle((int)number); }
            else if (field == 4)
                foreach (var (f, _, n, p) in Fields(payload!))
                {
                    if (f == 1) h = (int)n; else if (f == 2) w = (int)n; else if (f == 3) Assert.Equal(3ul, n); else if (f == 4) png = p;
                }
        }
        return new Value(tag, scalar, w, h, png);
    }

    /// <summary>(field, wire type, varint/fixed value, length-delimited payload) of each field of a message.</summary>
    static IEnumerable<(int Field, int Wire, ulong Number, byte[]? Payload)> Fields(byte[] data)
    {
        int pos = 0;
        var list = new List<(int, int, ulong, byte[]?)>();
        while (pos < data.Length)
        {
            ulong key = Varint(data, ref pos);
            int field = (int)(key >> 3), wire = (int)(key & 7);
            switch (wire)
            {
                case 0: list.Add((field, wire, Varint(data, ref pos), null)); break;
                case 1: list.Add((field, wire, BinaryPrimitives.ReadUInt64LittleEndian(data.AsSpan(pos, 8)), null)); pos += 8; break;
                case 5: list.Add((field, wire, BinaryPrimitives.ReadUInt32LittleEndian(data.AsSpan(pos, 4)), null)); pos += 4; break;
                case 2: int n = (int)Varint(data, ref pos); list.Add((field, wire, 0, data.AsSpan(pos, n).ToArray())); pos += n; break;
                default: throw new InvalidDataException($"wire type {wire}");
            }
        }
        return list;
    }

    static ulong Varint(byte[] data, ref int pos)
    {
        ulong v = 0; int shift = 0;
        while (true) { byte b = data[pos++]; v |= (ulong)(b & 0x7f) << shift; if (b < 0x80) return v; shift += 7; }
    }
}
