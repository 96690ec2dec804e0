using System.Globalization;
using System.Text.Json;
using DreamBooth.Engine.IO;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Training;

/// <summary>
/// AdamW with named, device-placeable state, so it can be offloaded to the CPU, stored in 8 bits and saved as
/// safetensors keyed by parameter name.
/// <para>Float32 moments follow PyTorch's single-tensor AdamW exactly:
/// <c>p ← p(1 − lr·wd); m ← lerp(m, g, 1−β₁); v ← β₂v + (1−β₂)g²;
/// p ← p − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε)</c>.</para>
/// <para>With <see cref="AdamWOptions.Use8Bit"/> the moments of large tensors are bitsandbytes AdamW8bit block-wise
/// state: dequantize, update in float32 (bitsandbytes' order of operations), requantize (see
/// <see cref="BlockwiseQuantization"/>).</para>
/// Parameters whose grad is null are skipped and get no state (as in PyTorch, state is created at the first update).
/// </summary>
public sealed class AdamW : IDisposable
{
    public const string FormatName = "dreambooth.adamw";
    public const int FormatVersion = 1;
    internal const string ExpAvgSuffix = ".exp_avg";
    internal const string ExpAvgSqSuffix = ".exp_avg_sq";
    internal const string CodesSuffix = ".codes";
    internal const string AbsmaxSuffix = ".absmax";

    readonly IReadOnlyList<(string Name, Parameter P)> _params;
    readonly Dictionary<string, AdamWParamState> _state = new(StringComparer.Ordinal);
    readonly Dictionary<string, (Tensor Signed, Tensor Unsigned)> _codesByDevice = new();

    public double Beta1 { get; private set; }
    public double Beta2 { get; private set; }
    public double Eps { get; private set; }
    public double WeightDecay { get; private set; }
    public Device? StateDevice { get; }
    public bool HostMasterWeights { get; }
    public bool Use8Bit { get; }
    public long Min8BitSize { get; }

    public AdamW(IReadOnlyList<(string Name, Parameter P)> parameters, AdamWOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        options ??= new AdamWOptions();
        if (!(options.Beta1 >= 0 && options.Beta1 < 1)) throw new ArgumentOutOfRangeException(nameof(options), $"Beta1 {options.Beta1} is outside [0, 1).");
        if (!(options.Beta2 >= 0 && options.Beta2 < 1)) throw new ArgumentOutOfRangeException(nameof(options), $"Beta2 {options.Beta2} is outside [0, 1).");
        if (!(options.Eps >= 0)) throw new ArgumentOutOfRangeException(nameof(options), $"Eps {options.Eps} is negative.");
        if (!(options.WeightDecay >= 0)) throw new ArgumentOutOfRangeException(nameof(options), $"WeightDecay {options.WeightDecay} is negative.");
        var dup = parameters.GroupBy(p => p.Name).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new ArgumentException($"Parameter name '{dup.Key}' appears twice.", nameof(parameters));
        _params = parameters.ToList();
        Beta1 = options.Beta1; Beta2 = options.Beta2; Eps = options.Eps; WeightDecay = options.WeightDecay;
        StateDevice = options.StateDevice; HostMasterWeights = options.HostMasterWeights; Use8Bit = options.Use8Bit; Min8BitSize = options.Min8BitSize;
    }

    public IReadOnlyList<(string Name, Parameter P)> Parameters => _params;

    /// <summary>
    /// Each parameter's learning rate as a multiple of the one <see cref="Step(double, float, IReadOnlyList{Tensor?})"/>
    /// is given, in parameter order (PyTorch's parameter groups with their own lr, scheduled alike: kohya's text-encoder
    /// learning rate). Null: all 1.
    /// </summary>
    public IReadOnlyList<double>? LearningRateFactors
    {
        get => _lrFactors;
        set
        {
            if (value is not null && (value.Count != _params.Count || value.Any(f => !(f > 0) || !double.IsFinite(f))))
                throw new ArgumentException($"{value.Count} learning-rate factors for {_params.Count} parameters, or one that is not a positive number.", nameof(value));
            _lrFactors = value?.ToArray();
        }
    }
    double[]? _lrFactors;

    /// <summary>Use the one-pass CPU kernels where they apply (tests turn this off to compare with the tensor-op path).</summary>
    internal bool FusedCpu { get; set; } = true;

    /// <summary>The state of a parameter, or null before its first update.</summary>
    public AdamWParamState? GetState(string name) => _state.TryGetValue(name, out var s) ? s : null;

    /// <summary>Bytes held by all moment tensors.</summary>
    public long StateBytes => _state.Values.Sum(s => s.Bytes);

    /// <summary>Bytes held by the float32 copies of offloaded parameters (<see cref="AdamWOptions.HostMasterWeights"/>).</summary>
    public long MasterBytes => _state.Values.Sum(s => s.Master is { } m ? m.numel() * m.ElementSize : 0);

    /// <summary>
    /// Test hook: handle CPU parameters as if they lived on another device than the state, so that the offload path
    /// (master copies, copying back) runs without a GPU.
    /// </summary>
    internal bool TreatParametersAsRemote { get; set; }

    /// <summary>
    /// Forgets the float32 copies of offloaded parameters, to be taken again from the parameters at the next update;
    /// for code that writes the parameters itself while this optimizer holds state for them.
    /// </summary>
    public void DropHostMasterWeights()
    {
        foreach (var s in _state.Values) { s.Master?.Dispose(); s.Master = null; s.MasterPinned = false; }
    }

    /// <summary>Whether a parameter of this size gets 8-bit moments (bitsandbytes: numel ≥ min_8bit_size).</summary>
    public bool Uses8BitFor(Tensor p) => Use8Bit && p.numel() >= Min8BitSize;

    /// <summary>One AdamW update of every parameter that has a grad, with learning rate <paramref name="lr"/>.</summary>
    public void Step(double lr) => Step(lr, 1f);

    /// <summary>
    /// One AdamW update with every gradient taken as <c>grad × gradScale</c> (float32 product), the same update as
    /// scaling the gradients in place first (gradient clipping, <see cref="GradientClipping.ClipCoefficient"/>) without
    /// the extra pass over them; the stored gradients are left as they are.
    /// </summary>
    public void Step(double lr, float gradScale) => Step(lr, gradScale, null);

    /// <summary>
    /// <see cref="Step(double, float)"/> with the gradients given in parameter order instead of read from the parameters
    /// (null: none for that parameter): the host copies of <see cref="GradientOffload"/>. They are left as they are.
    /// </summary>
    public void Step(double lr, float gradScale, IReadOnlyList<Tensor?>? gradients)
    {
        if (gradients is not null && gradients.Count != _params.Count)
            throw new ArgumentException($"{gradients.Count} gradients for {_params.Count} parameters.", nameof(gradients));
        using var noGrad = torch.no_grad();
        Device? copiedTo = null;   // a GPU that asynchronous copies of master weights went to
        try
        {
            for (int i = 0; i < _params.Count; i++)
            {
                var (name, p) = _params[i];
                using var scope = torch.NewDisposeScope();
                var grad = gradients is null ? p.grad : gradients[i];
                if (grad is null) continue;
                double lrP = _lrFactors is null ? lr : lr * _lrFactors[i];
                var device = StateDevice ?? p.device;
                var state = GetOrCreateState(name, p, device);
                state.Step++;

                bool inPlace = p.dtype == ScalarType.Float32 && SameDevice(p.device, device) && !TreatParametersAsRemote;
                bool useMaster = !inPlace && HostMasterWeights && p.dtype == ScalarType.Float32;
                Tensor param = inPlace ? p : useMaster ? MasterOf(state, p, device) : p.detach().to(ScalarType.Float32, device);
                var g = grad.to(ScalarType.Float32, device);
                if (FusedCpu && FusedAdamWCpu.Supports(param) && FusedAdamWCpu.Supports(g)) UpdateFused(state, param, g, lrP, gradScale);
                else
                {
                    if (gradScale != 1f) g = g.mul(gradScale);
                    if (state.Is8Bit) Update8Bit(state, param, g, lrP, device);
                    else UpdateFloat32(state, param, g, lrP);
                }
                if (inPlace) continue;
                // From page-locked memory the copy to the GPU runs while the next parameters are updated here.
                bool async = useMaster && state.MasterPinned && p.device.type == DeviceType.CUDA;
                p.copy_(param, async);
                if (async) copiedTo = p.device;
            }
        }
        finally
        {
            // The masters are written again at the next update: the copies from them must be done before.
            if (copiedTo is not null) torch.cuda.synchronize(copiedTo);
        }
    }

    /// <summary>The float32 copy of an offloaded parameter, taken from it at its first update.</summary>
    static Tensor MasterOf(AdamWParamState state, Parameter p, Device device)
    {
        if (state.Master is { } m) return m;
        var master = p.detach().to(ScalarType.Float32, device, copy: true);
        if (device.type == DeviceType.CPU && p.device.type == DeviceType.CUDA)
        {
            try { var pinned = master.pin_memory(); master.Dispose(); master = pinned; state.MasterPinned = true; }
            catch (Exception e) when (e is System.Runtime.InteropServices.ExternalException or InvalidOperationException) { }
        }
        state.Master = master.DetachFromDisposeScope();
        return state.Master;
    }

    /// <summary>Contiguous float32 CPU tensors: the same update in one pass over memory (<see cref="FusedAdamWCpu"/>).</summary>
    void UpdateFused(AdamWParamState s, Tensor param, Tensor grad, double lr, float gradScale)
    {
        // Scalars rounded to float32 as ATen passes them to its float kernels.
        var h = new FusedAdamWCpu.Hyper(
            Beta1: (float)Beta1, OneMinusBeta1: (float)(1 - Beta1), Beta2: (float)Beta2, OneMinusBeta2: (float)(1 - Beta2),
            Decay: (float)(1 - lr * WeightDecay), StepSize: (float)(lr / (1 - Math.Pow(Beta1, s.Step))),
            BiasCorrection2Sqrt: (float)Math.Sqrt(1 - Math.Pow(Beta2, s.Step)), Eps: (float)Eps, GradScale: gradScale);
        if (s.Is8Bit)
            FusedAdamWCpu.Update8Bit(param, grad, s.ExpAvgCodes!, s.ExpAvgAbsmax!, s.ExpAvgSqCodes!, s.ExpAvgSqAbsmax!,
                BlockwiseQuantization.DynamicMapShared(true), BlockwiseQuantization.DynamicMapShared(false), h);
        else
            FusedAdamWCpu.Update(param, grad, s.ExpAvg!, s.ExpAvgSq!, h);
    }

    void UpdateFloat32(AdamWParamState s, Tensor param, Tensor grad, double lr)
    {
        var (m, v) = (s.ExpAvg!, s.ExpAvgSq!);
        if (WeightDecay != 0) param.mul_(1 - lr * WeightDecay);
        m.lerp_(grad, 1 - Beta1);
        v.mul_(Beta2).addcmul_(grad, grad, value: 1 - Beta2);
        double biasCorrection1 = 1 - Math.Pow(Beta1, s.Step);
        double biasCorrection2 = 1 - Math.Pow(Beta2, s.Step);
        double stepSize = lr / biasCorrection1;
        double biasCorrection2Sqrt = Math.Pow(biasCorrection2, 0.5);
        var denom = (v.sqrt() / biasCorrection2Sqrt).add_(Eps);
        param.addcdiv_(m, denom, value: -stepSize);
    }

    void Update8Bit(AdamWParamState s, Tensor param, Tensor grad, double lr, Device device)
    {
        var (signed, unsigned) = Codes(device);
        var m = BlockwiseQuantization.Dequantize(s.ExpAvgCodes!, s.ExpAvgAbsmax!, signed);
        var v = BlockwiseQuantization.Dequantize(s.ExpAvgSqCodes!, s.ExpAvgSqAbsmax!, unsigned);
        m.mul_(Beta1).add_(grad, alpha: 1 - Beta1);
        v.mul_(Beta2).addcmul_(grad, grad, value: 1 - Beta2);
        double biasCorrection1 = 1 - Math.Pow(Beta1, s.Step);
        double biasCorrection2 = 1 - Math.Pow(Beta2, s.Step);
        var denom = (v.sqrt() / Math.Sqrt(biasCorrection2)).add_(Eps);
        if (WeightDecay > 0) param.mul_(1 - lr * WeightDecay);
        param.addcdiv_(m, denom, value: -lr / biasCorrection1);
        BlockwiseQuantization.QuantizeInto(m, signed, s.ExpAvgCodes!, s.ExpAvgAbsmax!);
        BlockwiseQuantization.QuantizeInto(v, unsigned, s.ExpAvgSqCodes!, s.ExpAvgSqAbsmax!);
    }

    AdamWParamState GetOrCreateState(string name, Parameter p, Device device)
    {
        if (_state.TryGetValue(name, out var s)) return s;
        s = new AdamWParamState();
        if (Uses8BitFor(p))
        {
            // bitsandbytes starts from zero codes and zero absmax, which dequantize to 0.
            long blocks = BlockwiseQuantization.BlockCount(p.numel());
            s.ExpAvgCodes = torch.zeros(p.shape, ScalarType.Byte, device).DetachFromDisposeScope();
            s.ExpAvgSqCodes = torch.zeros(p.shape, ScalarType.Byte, device).DetachFromDisposeScope();
            s.ExpAvgAbsmax = torch.zeros(blocks, ScalarType.Float32, device).DetachFromDisposeScope();
            s.ExpAvgSqAbsmax = torch.zeros(blocks, ScalarType.Float32, device).DetachFromDisposeScope();
        }
        else
        {
            s.ExpAvg = torch.zeros(p.shape, ScalarType.Float32, device).DetachFromDisposeScope();
            s.ExpAvgSq = torch.zeros(p.shape, ScalarType.Float32, device).DetachFromDisposeScope();
        }
        _state[name] = s;
        return s;
    }

    (Tensor Signed, Tensor Unsigned) Codes(Device device)
    {
        string key = device.ToString();
        if (!_codesByDevice.TryGetValue(key, out var c))
        {
            c = (torch.tensor(BlockwiseQuantization.DynamicMapShared(true), ScalarType.Float32, device).DetachFromDisposeScope(),
                 torch.tensor(BlockwiseQuantization.DynamicMapShared(false), ScalarType.Float32, device).DetachFromDisposeScope());
            _codesByDevice[key] = c;
        }
        return c;
    }

    static bool SameDevice(Device a, Device b) =>
        a.type == b.type && (a.index == b.index || (a.type == DeviceType.CPU) || a.index < 0 || b.index < 0);

    /// <summary>
    /// Zeroes the gradients; with <paramref name="setToNone"/> (PyTorch's default) drops them instead, which frees
    /// their memory.
    /// </summary>
    public void ZeroGrad(bool setToNone = true)
    {
        using var noGrad = torch.no_grad();
        foreach (var (_, p) in _params)
        {
            using var scope = torch.NewDisposeScope();   // the handles p.grad and zero_ return (one each, per parameter and step)
            using var g = p.grad;
            if (g is null) continue;
            if (setToNone) p.grad = null;
            else g.zero_();
        }
    }

    /// <summary>
    /// Writes the state to a safetensors file (atomically): <c>&lt;param&gt;.exp_avg</c>, <c>&lt;param&gt;.exp_avg_sq</c>
    /// (float32), or for 8-bit state <c>&lt;param&gt;.exp_avg.codes</c> (uint8) + <c>&lt;param&gt;.exp_avg.absmax</c>
    /// (float32) and the same for exp_avg_sq; metadata holds the format, hyperparameters and per-parameter step counts.
    /// </summary>
    public void SaveState(string path)
    {
        var tensors = new List<KeyValuePair<string, Tensor>>();
        foreach (var (name, s) in _state)
            foreach (var (suffix, t) in s.Tensors())
                tensors.Add(new(name + suffix, t));
        var steps = _state.ToDictionary(kv => kv.Key, kv => kv.Value.Step);
        var meta = new Dictionary<string, string>
        {
            ["format"] = FormatName,
            ["format_version"] = FormatVersion.ToString(CultureInfo.InvariantCulture),
            ["beta1"] = Beta1.ToString("R", CultureInfo.InvariantCulture),
            ["beta2"] = Beta2.ToString("R", CultureInfo.InvariantCulture),
            ["eps"] = Eps.ToString("R", CultureInfo.InvariantCulture),
            ["weight_decay"] = WeightDecay.ToString("R", CultureInfo.InvariantCulture),
            ["use_8bit"] = Use8Bit ? "true" : "false",
            ["min_8bit_size"] = Min8BitSize.ToString(CultureInfo.InvariantCulture),
            ["block_size"] = BlockwiseQuantization.BlockSize.ToString(CultureInfo.InvariantCulture),
            ["steps"] = JsonSerializer.Serialize(steps),
        };
        SafetensorsWriter.Write(path, tensors, meta);
    }

    /// <summary>
    /// Replaces the state with the one saved by <see cref="SaveState"/>, and restores the saved betas, eps and weight
    /// decay (as PyTorch's <c>load_state_dict</c> restores its param groups). Each saved parameter must be one of
    /// this optimizer's, with the same shape and the same storage kind (float32 or 8-bit); otherwise nothing changes
    /// and an <see cref="InvalidDataException"/> names the offending entries.
    /// </summary>
    public void LoadState(string path)
    {
        using var file = SafetensorsFile.Open(path);
        string Meta(string key) => file.Metadata.TryGetValue(key, out var v) ? v
            : throw new InvalidDataException($"'{file.Path}' is not an AdamW state file: metadata '{key}' is missing.");
        if (Meta("format") != FormatName) throw new InvalidDataException($"'{file.Path}' has format '{Meta("format")}', expected '{FormatName}'.");
        if (Meta("format_version") != FormatVersion.ToString(CultureInfo.InvariantCulture))
            throw new InvalidDataException($"'{file.Path}' has AdamW state format version {Meta("format_version")}; this build reads version {FormatVersion}.");
        if (Meta("block_size") != BlockwiseQuantization.BlockSize.ToString(CultureInfo.InvariantCulture))
            throw new InvalidDataException($"'{file.Path}' uses 8-bit block size {Meta("block_size")}, expected {BlockwiseQuantization.BlockSize}.");
        var steps = JsonSerializer.Deserialize<Dictionary<string, long>>(Meta("steps"))
            ?? throw new InvalidDataException($"'{file.Path}': metadata 'steps' is not a JSON object.");
        double Num(string key) => double.TryParse(Meta(key), NumberStyles.Float, CultureInfo.InvariantCulture, out var d) ? d
            : throw new InvalidDataException($"'{file.Path}': metadata '{key}' = '{Meta(key)}' is not a number.");

        var byName = _params.ToDictionary(p => p.Name, p => p.P, StringComparer.Ordinal);
        var errors = new List<string>();
        var expectedKeys = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, _) in steps)
        {
            if (!byName.TryGetValue(name, out var p)) { errors.Add($"'{name}' is not a parameter of this optimizer"); continue; }
            bool eight = file.Contains(name + ExpAvgSuffix + CodesSuffix);
            if (eight != Uses8BitFor(p))
            {
                errors.Add($"'{name}' was saved with {(eight ? "8-bit" : "float32")} state but this optimizer keeps {(eight ? "float32" : "8-bit")} state for it");
                continue;
            }
            long blocks = BlockwiseQuantization.BlockCount(p.numel());
            var expect = eight
                ? new (string Key, long[] Shape, string DType)[]
                {
                    (name + ExpAvgSuffix + CodesSuffix, p.shape, "U8"), (name + ExpAvgSuffix + AbsmaxSuffix, [blocks], "F32"),
                    (name + ExpAvgSqSuffix + CodesSuffix, p.shape, "U8"), (name + ExpAvgSqSuffix + AbsmaxSuffix, [blocks], "F32"),
                }
                : [(name + ExpAvgSuffix, p.shape, "F32"), (name + ExpAvgSqSuffix, p.shape, "F32")];
            foreach (var (key, shape, dtype) in expect)
            {
                expectedKeys.Add(key);
                if (!file.Contains(key)) { errors.Add($"'{key}' is missing"); continue; }
                var e = file[key];
                if (!e.Shape.SequenceEqual(shape) || e.DType != dtype)
                    errors.Add($"'{key}' is {e.DType} [{string.Join(", ", e.Shape)}], expected {dtype} [{string.Join(", ", shape)}]");
            }
        }
        foreach (var key in file.Keys.Where(k => !expectedKeys.Contains(k)).Order(StringComparer.Ordinal))
            if (!errors.Any(e => e.Contains(key, StringComparison.Ordinal))) errors.Add($"unexpected tensor '{key}'");
        if (errors.Count > 0)
            throw new InvalidDataException($"AdamW state '{file.Path}' does not match this optimizer: " + string.Join("; ", errors.Take(20))
                + (errors.Count > 20 ? $"; and {errors.Count - 20} more" : "") + ".");

        var loaded = new Dictionary<string, AdamWParamState>(StringComparer.Ordinal);
        try
        {
            foreach (var (name, step) in steps)
            {
                var p = byName[name];
                var device = StateDevice ?? p.device;
                var s = new AdamWParamState { Step = step };
                loaded[name] = s;
                Tensor Read(string key) { using var scope = torch.NewDisposeScope(); return file.Read(key).to(device).MoveToOuterDisposeScope().DetachFromDisposeScope(); }
                if (Uses8BitFor(p))
                {
                    s.ExpAvgCodes = Read(name + ExpAvgSuffix + CodesSuffix);
                    s.ExpAvgAbsmax = Read(name + ExpAvgSuffix + AbsmaxSuffix);
                    s.ExpAvgSqCodes = Read(name + ExpAvgSqSuffix + CodesSuffix);
                    s.ExpAvgSqAbsmax = Read(name + ExpAvgSqSuffix + AbsmaxSuffix);
                }
                else
                {
                    s.ExpAvg = Read(name + ExpAvgSuffix);
                    s.ExpAvgSq = Read(name + ExpAvgSqSuffix);
                }
            }
        }
        catch
        {
            foreach (var s in loaded.Values) s.Dispose();
            throw;
        }
        (Beta1, Beta2, Eps, WeightDecay) = (Num("beta1"), Num("beta2"), Num("eps"), Num("weight_decay"));
        foreach (var s in _state.Values) s.Dispose();
        _state.Clear();
        foreach (var kv in loaded) _state[kv.Key] = kv.Value;
    }

    public void Dispose()
    {
        foreach (var s in _state.Values) s.Dispose();
        _state.Clear();
        foreach (var (a, b) in _codesByDevice.Values) { a.Dispose(); b.Dispose(); }
        _codesByDevice.Clear();
    }
}
