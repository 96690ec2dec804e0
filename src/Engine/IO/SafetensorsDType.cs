using TorchSharp;

namespace DreamBooth.Engine.IO;

/// <summary>The safetensors dtype names and their TorchSharp equivalents.</summary>
public static class SafetensorsDType
{
    static readonly (string Name, torch.ScalarType Type, int Size)[] s_table =
    {
        ("F64", torch.ScalarType.Float64, 8), ("F32", torch.ScalarType.Float32, 4),
        ("F16", torch.ScalarType.Float16, 2), ("BF16", torch.ScalarType.BFloat16, 2),
        ("I64", torch.ScalarType.Int64, 8), ("I32", torch.ScalarType.Int32, 4),
        ("I16", torch.ScalarType.Int16, 2), ("I8", torch.ScalarType.Int8, 1),
        ("U8", torch.ScalarType.Byte, 1), ("BOOL", torch.ScalarType.Bool, 1),
    };

    public static bool TryParse(string name, out torch.ScalarType type, out int elementSize)
    {
        foreach (var e in s_table)
            if (e.Name == name) { type = e.Type; elementSize = e.Size; return true; }
        type = default; elementSize = 0; return false;
    }

    public static bool IsSupported(torch.ScalarType type) => s_table.Any(e => e.Type == type);

    public static string NameOf(torch.ScalarType type)
    {
        foreach (var e in s_table) if (e.Type == type) return e.Name;
        throw new NotSupportedException($"Tensors of type {type} cannot be stored in safetensors by this module.");
    }

    public static int SizeOf(torch.ScalarType type)
    {
        foreach (var e in s_table) if (e.Type == type) return e.Size;
        throw new NotSupportedException($"Tensors of type {type} cannot be stored in safetensors by this module.");
    }

    public static IEnumerable<string> Names => s_table.Select(e => e.Name);

    /// <summary>
    /// The position of a dtype in the Rust safetensors <c>Dtype</c> enum (BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16,
    /// BF16, I32, U32, F32, F64, I64, U64). The Python library lays tensors out by this rank, descending (widest
    /// alignment first), then by name; the writer does the same so our files match its bytes.
    /// </summary>
    internal static int LayoutRank(torch.ScalarType type) => type switch
    {
        torch.ScalarType.Bool => 0, torch.ScalarType.Byte => 1, torch.ScalarType.Int8 => 2,
        torch.ScalarType.Int16 => 5, torch.ScalarType.Float16 => 7, torch.ScalarType.BFloat16 => 8,
        torch.ScalarType.Int32 => 9, torch.ScalarType.Float32 => 11, torch.ScalarType.Float64 => 12,
        torch.ScalarType.Int64 => 13,
        _ => throw new NotSupportedException($"Tensors of type {type} cannot be stored in safetensors by this module."),
    };
}
