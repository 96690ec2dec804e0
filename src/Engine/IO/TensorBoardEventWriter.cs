using System.Buffers.Binary;
using System.Numerics;
using System.Text;

namespace DreamBooth.Engine.IO;

/// <summary>
/// A TensorBoard event file, as torch.utils.tensorboard's SummaryWriter writes it (what diffusers' default
/// <c>--report_to tensorboard</c> leaves under <c>OUTPUT/logs</c>): TFRecord records (length, masked CRC-32C of the
/// length, an <c>Event</c> protobuf, masked CRC-32C of the data), the first naming the format. Each record is flushed,
/// so a running <c>tensorboard --logdir</c> sees it at once and a stopped run leaves a readable file.
/// </summary>
public sealed class TensorBoardEventWriter : IDisposable
{
    readonly FileStream _file;
    static int s_files;

    public string FilePath { get; }

    TensorBoardEventWriter(string path)
    {
        FilePath = path;
        _file = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.Read);
        var e = new ProtoBuffer();
        e.Double(1, UnixSeconds(DateTime.UtcNow));
        e.String(3, "brain.Event:2");
        WriteRecord(e.ToArray());
    }

    /// <summary>A new event file in <paramref name="directory"/> (created), named as TensorBoard finds it: events.out.tfevents.*.</summary>
    public static TensorBoardEventWriter Create(string directory)
    {
        Directory.CreateDirectory(directory);
        var name = $"events.out.tfevents.{DateTimeOffset.UtcNow.ToUnixTimeSeconds()}.{Environment.MachineName}.{Environment.ProcessId}.{Interlocked.Increment(ref s_files)}";
        return new TensorBoardEventWriter(Path.Combine(directory, name));
    }

    /// <summary>Scalars of one step in one event (accelerate's <c>log({"loss": …, "lr": …}, step)</c>).</summary>
    public void AddScalars(long step, IEnumerable<(string Tag, double Value)> values, DateTime? time = null)
    {
        var summary = new ProtoBuffer();
        foreach (var (tag, value) in values)
        {
            var v = new ProtoBuffer();
            v.String(1, tag);
            v.Float(2, (float)value);
            summary.Message(1, v);
        }
        WriteEvent(step, time, 5, summary);
    }

    /// <summary>An encoded image (PNG) under <paramref name="tag"/>: TensorBoard's Images tab, one slider step per <paramref name="step"/>.</summary>
    public void AddImage(string tag, byte[] png, int width, int height, long step, DateTime? time = null)
    {
        var image = new ProtoBuffer();
        image.Int(1, height);
        image.Int(2, width);
        image.Int(3, 3);   // colorspace: RGB
        image.Bytes(4, png);
        var value = new ProtoBuffer();
        value.String(1, tag);
        value.Message(4, image);
        var summary = new ProtoBuffer();
        summary.Message(1, value);
        WriteEvent(step, time, 5, summary);
    }

    /// <summary>
    /// SessionLog START at <paramref name="step"/>: TensorBoard then drops what earlier files logged after this step,
    /// so a run resumed from a checkpoint shows one curve, not the abandoned steps beside the new ones.
    /// </summary>
    public void StartSession(long step)
    {
        var log = new ProtoBuffer();
        log.Int(1, 1);   // SessionStatus.START
        WriteEvent(step, null, 7, log);
    }

    void WriteEvent(long step, DateTime? time, int field, ProtoBuffer payload)
    {
        var e = new ProtoBuffer();
        e.Double(1, UnixSeconds(time ?? DateTime.UtcNow));
        e.Int(2, step);
        e.Message(field, payload);
        WriteRecord(e.ToArray());
    }

    void WriteRecord(byte[] data)
    {
        Span<byte> header = stackalloc byte[12];
        BinaryPrimitives.WriteUInt64LittleEndian(header, (ulong)data.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(header[8..], MaskedCrc32C(header[..8]));
        Span<byte> footer = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(footer, MaskedCrc32C(data));
        _file.Write(header);
        _file.Write(data);
        _file.Write(footer);
        _file.Flush();
    }

    static double UnixSeconds(DateTime utc) => (utc.ToUniversalTime() - DateTime.UnixEpoch).TotalSeconds;

    /// <summary>CRC-32C (Castagnoli), as TFRecord uses it.</summary>
    public static uint Crc32C(ReadOnlySpan<byte> data)
    {
        uint crc = ~0u;
        foreach (var b in data) crc = BitOperations.Crc32C(crc, b);
        return ~crc;
    }

    /// <summary>TFRecord's masked CRC: rotated and offset, so that CRCs of data holding CRCs stay well spread.</summary>
    public static uint MaskedCrc32C(ReadOnlySpan<byte> data)
    {
        uint crc = Crc32C(data);
        return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
    }

    public void Dispose() => _file.Dispose();

    /// <summary>Just what the Event, Summary and SessionLog messages need of the protobuf wire format.</summary>
    sealed class ProtoBuffer
    {
        readonly MemoryStream _bytes = new();

        public void Double(int field, double value) { Key(field, 1); Span<byte> b = stackalloc byte[8]; BinaryPrimitives.WriteDoubleLittleEndian(b, value); _bytes.Write(b); }
        public void Float(int field, float value) { Key(field, 5); Span<byte> b = stackalloc byte[4]; BinaryPrimitives.WriteSingleLittleEndian(b, value); _bytes.Write(b); }
        public void Int(int field, long value) { Key(field, 0); Varint((ulong)value); }
        public void String(int field, string value) => Bytes(field, Encoding.UTF8.GetBytes(value));
        public void Bytes(int field, ReadOnlySpan<byte> value) { Key(field, 2); Varint((ulong)value.Length); _bytes.Write(value); }
        public void Message(int field, ProtoBuffer message) => Bytes(field, message._bytes.GetBuffer().AsSpan(0, (int)message._bytes.Length));
        public byte[] ToArray() => _bytes.ToArray();

        void Key(int field, int wireType) => Varint((ulong)((field << 3) | wireType));
        void Varint(ulong v)
        {
            while (v >= 0x80) { _bytes.WriteByte((byte)(v | 0x80)); v >>= 7; }
            _bytes.WriteByte((byte)v);
        }
    }
}
