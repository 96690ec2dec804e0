using System.Diagnostics;
using DreamBooth.Engine;
using DreamBooth.Engine.Pipelines;
using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Benchmark;

public static class Profile
{
    public static int Tiny(string repo)
    {
        using var pipe = StableDiffusionPipeline.FromPretrained(Path.Combine(repo, "tests/fixtures/tiny-sd"), ScalarType.Float32, torch.CPU);
        using var _ = torch.no_grad();
        void Time(string what, Action a) { a(); var sw = Stopwatch.StartNew(); for (int i = 0; i < 10; i++) a(); Console.WriteLine($"{what}: {sw.Elapsed.TotalMilliseconds / 10:F1} ms"); }
        var x = torch.randn(2, 4, 32, 32); var t = torch.tensor(500L); var c = torch.randn(2, 77, 32);
        Time("unet b2", () => { using var s = torch.NewDisposeScope(); pipe.Unet.forward(x, t, c); });
        Time("text enc", () => { using var s = torch.NewDisposeScope(); pipe.EncodePrompts(new[] { "a photo of sks dog" }); });
        var z = torch.randn(1, 4, 32, 32);
        Time("vae decode", () => { using var s = torch.NewDisposeScope(); pipe.Vae.Decode(z); });
        var sch = pipe.CreateScheduler(null);
        Time("scheduler set+step", () => { using var s = torch.NewDisposeScope(); sch.SetTimesteps(5); var ts = sch.Timesteps; for (int i = 0; i < 6; i++) sch.Step(z, ts[i], z); });
        return 0;
    }
}

public static class ProfileOps
{
    public static int Run()
    {
        using var _ = torch.no_grad();
        void Time(string what, Action a) { a(); var sw = Stopwatch.StartNew(); for (int i = 0; i < 10; i++) a(); Console.WriteLine($"{what}: {sw.Elapsed.TotalMilliseconds / 10:F2} ms"); }
        var q = torch.randn(2, 8, 1024, 4); 
        Time("sdpa 2x8x1024x4", () => { using var s = torch.NewDisposeScope(); nn.functional.scaled_dot_product_attention(q, q, q); });
        var q2 = torch.randn(2, 8, 1024, 8);
        Time("sdpa 2x8x1024x8", () => { using var s = torch.NewDisposeScope(); nn.functional.scaled_dot_product_attention(q2, q2, q2); });
        Time("manual 2x8x1024x4", () => { using var s = torch.NewDisposeScope(); torch.matmul(torch.softmax(torch.matmul(q, q.transpose(-1,-2)) * 0.5, -1), q); });
        var x = torch.randn(2, 32, 32, 32); var conv = nn.Conv2d(32, 32, 3, padding: 1);
        Time("conv 32ch 32x32", () => { using var s = torch.NewDisposeScope(); conv.forward(x); });
        var gn = nn.GroupNorm(32, 32);
        Time("groupnorm", () => { using var s = torch.NewDisposeScope(); gn.forward(x); });
        Console.WriteLine($"threads {torch.get_num_threads()}");
        return 0;
    }
}

/// <summary>
/// profile-step-sd14 [workdir]: the phases of one batch-1 fp32 DreamBooth step on the random SD-1.4 pipeline written by
/// train-sd14 (VAE encode, text encoder, UNet forward, backward, grad clip, AdamW), twice; the second is reported.
/// Flags: --thread, --checkpointing, --selective, --8bit, --set-to-none; those memory recipes get the trainer's
/// low-memory glibc heap unless --default-heap.
/// </summary>
public static class ProfileStep
{
    public static int Run(string[] args)
    {
        if (!args.Contains("--thread")) return RunHere(args);
        int rc = 0;   // --thread: on a thread of its own, as the cmdlets run the trainer (its own glibc malloc arena)
        var worker = new Thread(() => rc = RunHere(args), 16 << 20);
        worker.Start(); worker.Join();
        return rc;
    }

    static int RunHere(string[] args)
    {
        string dir = Path.Combine(args.FirstOrDefault(a => !a.StartsWith("--") && !int.TryParse(a, out _)) ?? Path.Combine(Path.GetTempPath(), "dreambooth-bench"), "sd14-random");
        using var vae = DreamBooth.Engine.Models.Autoencoders.AutoencoderKL.FromPretrained(Path.Combine(dir, "vae"));
        using var unet = DreamBooth.Engine.Models.Unets.UNet2DConditionModel.FromPretrained(Path.Combine(dir, "unet"));
        using var te = DreamBooth.Engine.Models.TextEncoders.ClipTextModel.FromPretrained(Path.Combine(dir, "text_encoder"));
        foreach (var p in vae.parameters()) p.requires_grad = false;
        foreach (var p in te.parameters()) p.requires_grad = false;
        unet.train();
        var trainable = unet.named_parameters().Select(p => (p.name, p.parameter)).ToList();
        bool eightBit = args.Contains("--8bit"), checkpointing = args.Contains("--checkpointing"), selective = args.Contains("--selective"), setToNone = args.Contains("--set-to-none");
        // The glibc heap the trainer gives these recipes, unless --default-heap.
        if (!args.Contains("--default-heap")) CpuAllocatorPolicy.UseLowMemoryHeap(checkpointing || selective || eightBit);
        if (checkpointing || selective) { unet.GradientCheckpointing = true; unet.SelectiveCheckpointing = selective; unet.CheckpointRunner = DreamBooth.Engine.Training.GradientCheckpoint.Run; }
        using var opt = new DreamBooth.Engine.Training.AdamW(trainable, new DreamBooth.Engine.Training.AdamWOptions { WeightDecay = 1e-2, Use8Bit = eightBit });
        var image = torch.rand(1, 3, 512, 512) * 2 - 1;
        var ids = torch.randint(0, 1000, new long[] { 1, 77 }, ScalarType.Int64);
        args = args.Where(a => !a.StartsWith("--")).ToArray();
        int rounds = args.Length > 0 && int.TryParse(args[^1], out var r) ? r : 2;
        Console.WriteLine($"allocator: {CpuAllocatorPolicy.Description}");
        for (int round = 0; round < rounds; round++)
        {
            var times = new List<(string, double)>();
            var sw = Stopwatch.StartNew();
            var last = Program.CpuAndFaults();
            void Mark(string what)
            {
                var now = Program.CpuAndFaults();
                times.Add(($"{what} [user {now.User - last.User:F1} sys {now.Sys - last.Sys:F1} faults {(now.Faults - last.Faults) / 1e3:F0}k]", sw.Elapsed.TotalSeconds));
                last = now; sw.Restart();
            }
            using (var scope = torch.NewDisposeScope())
            {
                Tensor latents, context;
                using (torch.no_grad())
                {
                    using var dist = vae.Encode(image);
                    latents = dist.Sample(null) * 0.18215; Mark("vae encode 512");
                    context = te.Forward(ids).LastHiddenState; Mark("text encoder");
                }
                var pred = unet.forward(latents, torch.tensor(500L), context);
                var loss = nn.functional.mse_loss(pred, torch.randn_like(pred)); loss.item<float>(); Mark("unet forward b1");
                loss.backward(); DreamBooth.Engine.Training.GradientCheckpoint.ThrowPendingError(); Mark("backward");
            }
            var (_, clip) = DreamBooth.Engine.Training.GradientClipping.ClipCoefficient(trainable.Select(p => p.parameter), 1.0); Mark("clip grad norm");
            opt.Step(5e-6, clip); Mark("adamw step (clip factor applied inside)");
            opt.ZeroGrad(setToNone); Mark("zero grad");
            Console.WriteLine($"round {round}: " + string.Join("\n  ", times.Select(t => $"{t.Item1} {t.Item2:F2} s")) + $"; total {times.Sum(t => t.Item2):F1} s; peak RSS {Program.PeakRssGB():F2} GB; {Program.MinorFaults() / 1e6:F2} M faults");
        }
        return 0;
    }
}

/// <summary>profile-ops-sd14: forward and backward time of the SD-1.4 UNet's heaviest ops at 64×64 latents, batch 1.</summary>
public static class ProfileOpsSd14
{
    public static int Run()
    {
        void Time(string what, Func<Tensor> forward)
        {
            double f = 0, b = 0;
            for (int i = 0; i < 4; i++)
            {
                using var s = torch.NewDisposeScope();
                var sw = Stopwatch.StartNew();
                var y = forward();
                double tf = sw.Elapsed.TotalMilliseconds; sw.Restart();
                y.sum().backward();
                double tb = sw.Elapsed.TotalMilliseconds;
                if (i > 0) { f += tf / 3; b += tb / 3; }
            }
            Console.WriteLine($"{what}: forward {f:F1} ms, backward {b:F1} ms ({b / f:F2}x)");
        }
        var q = torch.randn(new long[] { 1, 8, 4096, 40 }, requires_grad: true);
        var k = torch.randn(new long[] { 1, 8, 4096, 40 }, requires_grad: true);
        var v = torch.randn(new long[] { 1, 8, 4096, 40 }, requires_grad: true);
        Time("sdpa self 1x8x4096x40", () => nn.functional.scaled_dot_product_attention(q, k, v));
        var kc = torch.randn(new long[] { 1, 8, 77, 40 }, requires_grad: true);
        Time("sdpa cross 1x8x4096x77x40", () => nn.functional.scaled_dot_product_attention(q, kc, kc));
        var x = torch.randn(new long[] { 1, 320, 64, 64 }, requires_grad: true);
        var conv = nn.Conv2d(320, 320, 3, padding: 1);
        Time("conv3x3 320 64x64", () => conv.forward(x));
        var xcl = torch.randn(new long[] { 1, 64, 64, 320 }).permute(0, 3, 1, 2).requires_grad_(true);
        var wcl = conv.weight!.detach().permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2).requires_grad_(true);
        Time("conv3x3 320 64x64 channels-last", () => nn.functional.conv2d(xcl, wcl, conv.bias, padding: new long[] { 1, 1 }));
        foreach (var (ch, res) in new[] { (320, 64), (640, 32), (1280, 16), (1280, 8) })
        {
            var xi = torch.randn(new long[] { 1, ch, res, res }, requires_grad: true);
            var ci = nn.Conv2d(ch, ch, 3, padding: 1);
            double tf = 0, tb = 0, tdx = 0, tdw = 0;
            for (int i = 0; i < 4; i++)
            {
                using var s = torch.NewDisposeScope();
                var sw = Stopwatch.StartNew();
                var y = ci.forward(xi); double a = sw.Elapsed.TotalMilliseconds; sw.Restart();
                var gy = torch.ones_like(y);
                torch.autograd.backward(new[] { y }, new[] { gy }); double b = sw.Elapsed.TotalMilliseconds; sw.Restart();
                using (torch.no_grad())
                {
                    nn.functional.conv_transpose2d(gy, ci.weight!, padding: new long[] { 1, 1 }); double c = sw.Elapsed.TotalMilliseconds; sw.Restart();
                    var unf = nn.functional.unfold(xi, 3, padding: 1);
                    torch.mm(gy.view(ch, res * res), unf[0].t()).view(ch, ch, 3, 3); gy.sum(new long[] { 0, 2, 3 });
                    double d = sw.Elapsed.TotalMilliseconds;
                    if (i > 0) { tf += a / 3; tb += b / 3; tdx += c / 3; tdw += d / 3; }
                }
            }
            Console.WriteLine($"conv3x3 {ch} {res}x{res}: forward {tf:F1} ms, backward {tb:F1} ms; dX by conv_transpose {tdx:F1} ms, dW by unfold+mm {tdw:F1} ms");
        }
        var x128 = torch.randn(new long[] { 1, 128, 256, 256 });
        var c128 = nn.Conv2d(128, 128, 3, padding: 1);
        using (torch.no_grad())
        {
            var sw0 = Stopwatch.StartNew(); for (int i = 0; i < 3; i++) c128.forward(x128).Dispose(); Console.WriteLine($"vae-like conv 128 256x256 no-grad: {sw0.Elapsed.TotalMilliseconds / 3:F1} ms");
            var x128cl = x128.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2);
            var w128cl = c128.weight!.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2);
            sw0.Restart(); for (int i = 0; i < 3; i++) nn.functional.conv2d(x128cl, w128cl, c128.bias, padding: new long[] { 1, 1 }).Dispose(); Console.WriteLine($"vae-like conv 128 256x256 no-grad channels-last: {sw0.Elapsed.TotalMilliseconds / 3:F1} ms");
        }
        var gn = nn.GroupNorm(32, 320);
        Time("groupnorm 320 64x64", () => gn.forward(x));
        Time("silu 320 64x64", () => nn.functional.silu(x));
        var t = torch.randn(new long[] { 1, 4096, 320 }, requires_grad: true);
        var lin = nn.Linear(320, 2560);
        Time("linear 4096x320->2560", () => lin.forward(t));
        var ln = nn.LayerNorm(320);
        Time("layernorm 4096x320", () => ln.forward(t));
        var g = torch.randn(new long[] { 1, 4096, 1280 }, requires_grad: true);
        Time("gelu 4096x1280", () => nn.functional.gelu(g));
        Time("transpose+reshape copy 320x4096", () => x.view(1, 320, 4096).transpose(1, 2).reshape(1, 4096, 320) * 1.0);
        Console.WriteLine($"threads {torch.get_num_threads()}");
        return 0;
    }
}

/// <summary>profile-vae-sd14 [workdir]: VAE encode (512 px) and decode (64×64 latents), channels-last on and off, three each.</summary>
public static class ProfileVae
{
    public static int Run(string[] args)
    {
        string dir = Path.Combine(args.Length > 0 ? args[0] : Path.Combine(Path.GetTempPath(), "dreambooth-bench"), "sd14-random");
        using var vae = DreamBooth.Engine.Models.Autoencoders.AutoencoderKL.FromPretrained(Path.Combine(dir, "vae"));
        using var _ = torch.no_grad();
        var image = torch.rand(1, 3, 512, 512) * 2 - 1;
        var z = torch.randn(1, 4, 64, 64);
        foreach (var on in new[] { true, false, true, false, true, false })
        {
            DreamBooth.Engine.Models.ChannelsLast.Enabled = on;
            var sw = Stopwatch.StartNew();
            using (var d = vae.Encode(image)) { }
            double enc = sw.Elapsed.TotalSeconds; sw.Restart();
            vae.Decode(z).Dispose();
            Console.WriteLine($"channels-last {(on ? "on " : "off")}: encode {enc:F2} s, decode {sw.Elapsed.TotalSeconds:F2} s");
        }
        return 0;
    }
}

/// <summary>
/// profile-gemm: the UNet's Linear shapes (tokens × in → out) through nn.functional.linear (MKL sgemm), torch.addmm on
/// the flattened input, and a 1×1 channels-last convolution (oneDNN), forward and backward, each timed 4 times after a warm-up.
/// </summary>
public static class ProfileGemm
{
    public static int Run()
    {
        double TimeIt(Func<Tensor> forward, bool backward, out double tb)
        {
            double f = 0; tb = 0;
            for (int i = 0; i < 5; i++)
            {
                using var s = torch.NewDisposeScope();
                var sw = Stopwatch.StartNew();
                var y = forward();
                double a = sw.Elapsed.TotalMilliseconds; sw.Restart();
                if (backward) torch.autograd.backward(new[] { y }, new[] { torch.ones_like(y) });
                double b = sw.Elapsed.TotalMilliseconds;
                if (i > 0) { f += a / 4; tb += b / 4; }
            }
            return f;
        }
        foreach (var (t, i, o) in new[] { (4096, 320, 2560), (4096, 1280, 320), (4096, 320, 320), (1024, 640, 5120), (1024, 2560, 640), (256, 1280, 10240), (256, 5120, 1280), (256, 1280, 1280) })
        {
            var x = torch.randn(new long[] { 1, t, i }, requires_grad: true);
            var w = (torch.randn(new long[] { o, i }) * 0.02).requires_grad_(true);
            var bias = torch.zeros(new long[] { o }, requires_grad: true);
            double gflop = 2.0 * t * i * o / 1e9;
            double lf = TimeIt(() => nn.functional.linear(x, w, bias), true, out double lb);
            double cf = TimeIt(() => nn.functional.conv2d(x.view(1, t, 1, i).permute(0, 3, 1, 2), w.view(o, i, 1, 1), bias).permute(0, 2, 3, 1).reshape(1, t, o), true, out double cb);
            double mf = TimeIt(() => torch.addmm(bias, x.view(t, i), w.t(), 1, 1), true, out double mb);
            Console.WriteLine($"{t}x{i}->{o} ({gflop:F2} GFLOP): linear fwd {lf:F1} ms ({gflop / lf * 1e3:F0} GFLOP/s) bwd {lb:F1} ms | conv1x1-cl fwd {cf:F1} ms ({gflop / cf * 1e3:F0}) bwd {cb:F1} ms | addmm fwd {mf:F1} bwd {mb:F1}");
        }
        return 0;
    }
}

/// <summary>profile-adam8 [million elements=64]: one tensor's AdamW update, fp32 and 8-bit moments (fused CPU kernels), three steps each after a warm-up.</summary>
public static class ProfileAdam8
{
    public static int Run(string[] args)
    {
        long n = (args.Length > 0 && long.TryParse(args[0], out var mil) ? mil : 64) * 1_000_000;
        foreach (bool eightBit in new[] { true, false, true, false })
        {
            var p = new TorchSharp.Modules.Parameter(torch.randn(n) * 0.02, requires_grad: true);
            using var opt = new DreamBooth.Engine.Training.AdamW(new[] { ("w", p) }, new DreamBooth.Engine.Training.AdamWOptions { WeightDecay = 1e-2, Use8Bit = eightBit });
            var times = new List<double>();
            for (int i = 0; i < 4; i++)
            {
                p.grad = torch.randn(n) * 1e-3;
                var sw = Stopwatch.StartNew();
                opt.Step(1e-4, 0.5f);
                if (i > 0) times.Add(sw.Elapsed.TotalSeconds);
                p.grad.Dispose(); p.grad = null;
            }
            times.Sort();
            Console.WriteLine($"{(eightBit ? "8-bit" : "fp32 ")} AdamW step, {n / 1e6:F0} M elements: {times[1]:F3} s median ({times[0]:F3}–{times[2]:F3}); {times[1] / n * 859.5e6:F1} s scaled to the SD-1.4 UNet");
            p.Dispose();
        }
        return 0;
    }
}

/// <summary>
/// profile-attention-sd14 [reps=5]: scaled_dot_product_attention against the explicit softmax(QKᵀ·s)·V at the SD-1.4
/// UNet's attention shapes (batch 1, 8 heads), forward + backward, alternating, fp32 on the CPU.
/// </summary>
public static class ProfileAttention
{
    public static int Run(string[] args)
    {
        int reps = args.Length > 0 && int.TryParse(args[0], out var r) ? r : 5;
        var shapes = new (int Tokens, int Keys, int HeadDim)[] { (4096, 4096, 40), (4096, 77, 40), (1024, 1024, 80), (256, 256, 160), (64, 64, 160) };
        foreach (var (n, m, d) in shapes)
        {
            var q0 = torch.randn(1, 8, n, d); var k0 = torch.randn(1, 8, m, d); var v0 = torch.randn(1, 8, m, d); var g = torch.randn(1, 8, n, d);
            double scale = 1.0 / Math.Sqrt(d);
            Tensor Sdpa(Tensor q, Tensor k, Tensor v) => nn.functional.scaled_dot_product_attention(q, k, v);
            Tensor Explicit(Tensor q, Tensor k, Tensor v) => torch.matmul(torch.softmax(torch.matmul(q * scale, k.transpose(-1, -2)), -1), v);
            (double F, double B) Once(Func<Tensor, Tensor, Tensor, Tensor> f)
            {
                using var scope = torch.NewDisposeScope();
                var q = q0.detach().requires_grad_(true); var k = k0.detach().requires_grad_(true); var v = v0.detach().requires_grad_(true);
                var sw = Stopwatch.StartNew();
                var o = f(q, k, v); o.sum().item<float>();
                double fwd = sw.Elapsed.TotalMilliseconds; sw.Restart();
                o.backward(new[] { g }); q.grad!.sum().item<float>();
                return (fwd, sw.Elapsed.TotalMilliseconds);
            }
            Once(Sdpa); Once(Explicit);
            var a = new List<(double, double)>(); var b = new List<(double, double)>();
            for (int i = 0; i < reps; i++) { a.Add(Once(Sdpa)); b.Add(Once(Explicit)); }
            double Med(IEnumerable<double> xs) { var s = xs.OrderBy(x => x).ToList(); return s[s.Count / 2]; }
            using (torch.no_grad())
            {
                var d1 = Sdpa(q0, k0, v0); var d2 = Explicit(q0, k0, v0);
                Console.WriteLine($"{n}x{m} d{d}: sdpa fwd {Med(a.Select(x => x.Item1)):F1} bwd {Med(a.Select(x => x.Item2)):F1} ms | explicit fwd {Med(b.Select(x => x.Item1)):F1} bwd {Med(b.Select(x => x.Item2)):F1} ms | max diff {(d1 - d2).abs().max().item<float>():E1}");
            }
        }
        return 0;
    }
}
