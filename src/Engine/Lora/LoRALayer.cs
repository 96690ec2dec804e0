using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Lora;

/// <summary>
/// PEFT's <c>lora.Linear</c> adapter half: <c>lora_B(lora_A(x)) · scaling</c> with <c>scaling = lora_alpha / r</c>,
/// added to the frozen base Linear's output. Parameter names (<c>lora_A.weight</c> [r, in], <c>lora_B.weight</c>
/// [out, r]) are PEFT's, so diffusers' saved keys are <c>{component}.{module}.lora_A.weight</c>.
/// On a 1×1 Conv2d (kohya files adapt SD 1.x's proj_in/proj_out) the same matrices act per pixel.
/// </summary>
public sealed class LoRALayer : nn.Module<Tensor, Tensor>
{
    readonly Linear lora_A;
    readonly Linear lora_B;

    public int Rank { get; }
    public double Alpha { get; }
    /// <summary>Per-adapter strength at inference (diffusers' adapter weight / lora_scale); 1 when training.</summary>
    public double Multiplier { get; set; } = 1.0;
    /// <summary>What B·A is multiplied by: alpha / rank × multiplier.</summary>
    public double Scale => Alpha / Rank * Multiplier;

    public Parameter Down => lora_A.weight!;
    public Parameter Up => lora_B.weight!;
    /// <summary>The adapted layer is a 1×1 Conv2d: input [B, C, H, W].</summary>
    public bool IsConv1x1 { get; init; }

    public LoRALayer(long inFeatures, long outFeatures, int rank, double alpha, ScalarType dtype, Device device)
        : base(nameof(LoRALayer))
    {
        if (rank < 1) throw new ArgumentOutOfRangeException(nameof(rank), rank, "LoRA rank must be at least 1.");
        Rank = rank; Alpha = alpha;
        lora_A = nn.Linear(inFeatures, rank, hasBias: false, device: device, dtype: dtype);
        lora_B = nn.Linear(rank, outFeatures, hasBias: false, device: device, dtype: dtype);
        RegisterComponents();
    }

    /// <summary>
    /// PEFT's default init (<c>init_lora_weights=True</c>): A ~ kaiming_uniform(a=√5) = U(−1/√in, 1/√in), B = 0, so a
    /// new adapter leaves the model unchanged. Drawn from <paramref name="generator"/> so a seeded run repeats.
    /// </summary>
    public void ResetParameters(Generator? generator)
    {
        using var _ = torch.no_grad();
        using var scope = torch.NewDisposeScope();   // the draw's temporaries
        double bound = 1.0 / Math.Sqrt(Down.shape[1]);
        using var u = torch.rand(Down.shape, dtype: ScalarType.Float32, generator: generator);
        Down.copy_(u * (2 * bound) - bound);
        Up.zero_();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        // An adapter held in fp16/bf16 (inference on a low-precision pipeline) on a CPU without kernels for it computes
        // in fp32 arithmetic and rounds once, like the layers it adapts (LowPrecisionOnCpu.Emulates).
        var dtype = LowPrecisionOnCpu.Emulates(x.device, Down.dtype) ? ScalarType.Float32 : Down.dtype;
        var input = x.dtype == dtype ? x : x.to(dtype);
        var (down, up) = dtype == Down.dtype ? ((Tensor)Down, (Tensor)Up) : (Down.to(dtype), Up.to(dtype));
        var delta = IsConv1x1
            ? nn.functional.conv2d(nn.functional.conv2d(input, down.view(down.shape[0], down.shape[1], 1, 1)), up.view(up.shape[0], up.shape[1], 1, 1))
            : nn.functional.linear(nn.functional.linear(input, down), up);
        if (Scale != 1.0) delta = delta * Scale;
        if (delta.dtype != Down.dtype) delta = delta.to(Down.dtype);
        return delta.MoveToOuterDisposeScope();
    }

    /// <summary>The weight change the adapter stands for: scale · B·A ([out, in], fp32).</summary>
    public Tensor DeltaWeight()
    {
        using var _ = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var delta = torch.matmul(Up.to(ScalarType.Float32), Down.to(ScalarType.Float32)) * Scale;
        return delta.MoveToOuterDisposeScope();
    }
}
