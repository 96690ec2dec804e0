using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Tokenization;

/// <summary>
/// What <c>tokenizer(texts, padding="max_length", truncation=True, max_length=L)</c> returns: ids and attention mask,
/// [batch, L], int64 like PyTorch's.
/// </summary>
public sealed class TokenizedBatch
{
    public TokenizedBatch(long[,] inputIds, long[,] attentionMask)
    {
        if (inputIds.GetLength(0) != attentionMask.GetLength(0) || inputIds.GetLength(1) != attentionMask.GetLength(1))
            throw new ArgumentException("input_ids and attention_mask must have the same shape.");
        InputIds = inputIds;
        AttentionMask = attentionMask;
    }

    public long[,] InputIds { get; }
    public long[,] AttentionMask { get; }
    public int BatchSize => InputIds.GetLength(0);
    public int Length => InputIds.GetLength(1);

    /// <summary>input_ids as an int64 tensor [B, L].</summary>
    public Tensor ToTensor(Device? device = null) => ToTensor(InputIds, device);

    /// <summary>attention_mask as an int64 tensor [B, L] (1 = real token, 0 = padding).</summary>
    public Tensor AttentionMaskToTensor(Device? device = null) => ToTensor(AttentionMask, device);

    static Tensor ToTensor(long[,] values, Device? device)
    {
        var flat = new long[values.Length];
        Buffer.BlockCopy(values, 0, flat, 0, values.Length * sizeof(long));
        return torch.tensor(flat, new long[] { values.GetLength(0), values.GetLength(1) }, dtype: ScalarType.Int64, device: device);
    }
}
