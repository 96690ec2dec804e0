namespace DreamBooth.Engine.Sources;

/// <summary>
/// Refuses PyTorch pickles (<c>.ckpt</c>, <c>.pt</c>, <c>.pth</c>, <c>.bin</c>): unpickling runs arbitrary code, and
/// this engine reads weights only from safetensors.
/// </summary>
public static class PickleRefusal
{
    static readonly string[] s_pickleExtensions = { ".ckpt", ".pt", ".pth", ".bin", ".pkl" };

    public static bool LooksLikePickle(string path)
    {
        if (s_pickleExtensions.Contains(Path.GetExtension(path), StringComparer.OrdinalIgnoreCase)) return true;
        if (!File.Exists(path)) return false;
        Span<byte> head = stackalloc byte[2];
        using var f = File.OpenRead(path);
        int read = f.Read(head);
        // torch.save writes a zip archive ("PK") or, for old files, a raw pickle (protocol opcode 0x80).
        return read == 2 && ((head[0] == (byte)'P' && head[1] == (byte)'K') || head[0] == 0x80);
    }

    public static void ThrowIfPickle(string path)
    {
        if (LooksLikePickle(path))
            throw new ModelSourceException(
                $"'{path}' is a PyTorch pickle checkpoint. Loading pickles can run arbitrary code, so they are refused. " +
                "Use the model's .safetensors file, or convert it once in a trusted Python environment " +
                "(safetensors.torch.save_file(torch.load(path, weights_only=True)['state_dict'], 'model.safetensors')).");
    }
}
