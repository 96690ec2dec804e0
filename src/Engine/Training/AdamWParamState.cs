using static TorchSharp.torch;

namespace DreamBooth.Engine.Training;

/// <summary>
/// One parameter's AdamW state: its step count and either float32 moments (<see cref="ExpAvg"/>,
/// <see cref="ExpAvgSq"/>, shaped like the parameter) or 8-bit ones (uint8 codes shaped like the parameter plus
/// float32 absmax per block of <see cref="BlockwiseQuantization.BlockSize"/>).
/// </summary>
public sealed class AdamWParamState : IDisposable
{
    public long Step { get; internal set; }
    public Tensor? ExpAvg { get; internal set; }
    public Tensor? ExpAvgSq { get; internal set; }
    public Tensor? ExpAvgCodes { get; internal set; }
    public Tensor? ExpAvgAbsmax { get; internal set; }
    public Tensor? ExpAvgSqCodes { get; internal set; }
    public Tensor? ExpAvgSqAbsmax { get; internal set; }

    public bool Is8Bit => ExpAvgCodes is not null;

    /// <summary>
    /// The parameter's float32 value on the state's device when that is not the parameter's own
    /// (<see cref="AdamWOptions.HostMasterWeights"/>); not saved: the parameter holds the same value.
    /// </summary>
    public Tensor? Master { get; internal set; }

    /// <summary>Whether <see cref="Master"/> is page-locked, so that copying it to the GPU can run asynchronously.</summary>
    internal bool MasterPinned { get; set; }

    internal IEnumerable<(string Suffix, Tensor Tensor)> Tensors()
    {
        if (ExpAvg is not null) yield return (AdamW.ExpAvgSuffix, ExpAvg);
        if (ExpAvgSq is not null) yield return (AdamW.ExpAvgSqSuffix, ExpAvgSq);
        if (ExpAvgCodes is not null) yield return (AdamW.ExpAvgSuffix + AdamW.CodesSuffix, ExpAvgCodes);
        if (ExpAvgAbsmax is not null) yield return (AdamW.ExpAvgSuffix + AdamW.AbsmaxSuffix, ExpAvgAbsmax);
        if (ExpAvgSqCodes is not null) yield return (AdamW.ExpAvgSqSuffix + AdamW.CodesSuffix, ExpAvgSqCodes);
        if (ExpAvgSqAbsmax is not null) yield return (AdamW.ExpAvgSqSuffix + AdamW.AbsmaxSuffix, ExpAvgSqAbsmax);
    }

    /// <summary>Bytes held by the state tensors.</summary>
    public long Bytes => Tensors().Sum(t => t.Tensor.numel() * t.Tensor.ElementSize);

    public void Dispose()
    {
        foreach (var (_, t) in Tensors()) t.Dispose();
        Master?.Dispose();
        ExpAvg = ExpAvgSq = ExpAvgCodes = ExpAvgAbsmax = ExpAvgSqCodes = ExpAvgSqAbsmax = Master = null;
    }
}
