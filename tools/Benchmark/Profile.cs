using System.Diagnostics;
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
