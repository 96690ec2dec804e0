using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models.Unets;

/// <summary>A UNet down block: returns the block output and the skip tensors (one per resnet, plus the downsampled one).</summary>
public abstract class UNetDownBlock : nn.Module
{
    protected UNetDownBlock(string name) : base(name) { }
    public abstract (Tensor Hidden, Tensor[] ResSamples) Forward(Tensor hiddenStates, Tensor temb, Tensor? encoderHiddenStates);
}

/// <summary>A UNet up block: consumes as many skip tensors as it has resnets (the last one first).</summary>
public abstract class UNetUpBlock : nn.Module
{
    protected UNetUpBlock(string name) : base(name) { }
    public abstract int ResnetCount { get; }
    public abstract Tensor Forward(Tensor hiddenStates, IReadOnlyList<Tensor> resSamples, Tensor temb, Tensor? encoderHiddenStates, long[]? upsampleSize);
}
