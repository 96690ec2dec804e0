using System.Runtime.InteropServices;
using DreamBooth.Engine.Training;

namespace DreamBooth.Engine.Tests.Devices;

/// <summary>Recognising "out of memory" in libtorch's words, and the advice a training run that hit it gives.</summary>
public class OutOfMemoryTests
{
    const string CudaOom = "CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total capacity of 7.79 GiB of which 3.56 MiB is free.\nException raised from malloc at /pytorch/c10/cuda/CUDACachingAllocator.cpp:1234 (most recent call first):\nframe #0: …";

    [Theory]
    [InlineData(CudaOom)]
    [InlineData("CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported")]
    [InlineData("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried to allocate 3435973836 bytes. Error code 12 (Cannot allocate memory)")]
    [InlineData("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`")]
    public void LibtorchsMessages_AreOutOfMemory_AlsoWhenWrapped(string message)
    {
        var native = new ExternalException(message);
        Assert.True(OutOfMemory.Is(native));
        // A checkpointed block's recompute fails inside backward; the engine rethrows it wrapped after backward().
        Assert.True(OutOfMemory.Is(new InvalidOperationException("Backward failed inside the engine's custom autograd: " + message.Split('\n')[0], native)));
        Assert.True(OutOfMemory.Is(new AggregateException(native)));
        Assert.DoesNotContain("\n", OutOfMemory.Describe(native));
    }

    [Fact]
    public void OtherErrors_AreNot()
    {
        Assert.False(OutOfMemory.Is(new ExternalException("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)")));
        Assert.False(OutOfMemory.Is(new IOException("disk full")));
        Assert.False(OutOfMemory.Is(null));
        Assert.True(OutOfMemory.Is(new OutOfMemoryException()));
    }

    [Fact]
    public void Advice_OffersOnlySwitchesStillOff_ResumeOnesWhenACheckpointExists()
    {
        var o = new DreamBoothOptions { Model = "m", InstanceDataDirectory = "i", InstancePrompt = "p", OutputDirectory = "/runs/dog" };
        var first = OutOfMemoryAdvice.Build(o, "cuda:0", 37, OutOfMemory.Describe(new ExternalException(CudaOom)), "/runs/dog/checkpoint-36", true, null);
        Assert.StartsWith("Training ran out of memory on cuda:0 at step 37: CUDA out of memory. Tried to allocate 20.00 MiB.", first);
        Assert.DoesNotContain("Exception raised from", first);
        Assert.Contains("up to step 36 is saved in '/runs/dog/checkpoint-36'", first);
        Assert.Contains("Resume-DreamBoothTraining -Path '/runs/dog' -GradientCheckpointing -OffloadOptimizerState -SetGradsToNone.", first);
        Assert.Contains("-MemoryProfile 12GB or 8GB", first);
        Assert.Contains("-Use8BitAdam, -MixedPrecision fp16, -LoRA", first);

        var lean = o with { GradientCheckpointing = true, OffloadOptimizerState = true, SetGradsToNone = true, Use8BitAdam = true, MixedPrecision = "fp16" };
        var second = OutOfMemoryAdvice.Build(lean, "cuda:0", 1, "CUDA out of memory.", null, false, null);
        Assert.Contains("nothing to save", second);
        Assert.DoesNotContain("Resume-DreamBoothTraining", second);
        Assert.DoesNotContain("-Use8BitAdam", second);
        Assert.DoesNotContain("-MixedPrecision", second);
        Assert.Contains("a smaller -Resolution than 512", second);

        // Host memory: the optimizer state is on the CPU already, and fp16 would not make a CPU run smaller.
        var host = OutOfMemoryAdvice.Build(o, "cpu", 5, "DefaultCPUAllocator: can't allocate memory", "/runs/dog/checkpoint-4", true, null);
        // On the CPU auto checkpointing is selective, so the advice asks for whole blocks, which keep the least.
        Assert.Contains("-Path '/runs/dog' -GradientCheckpointing -GradientCheckpointingMode Blocks -SetGradsToNone.", host);
        Assert.DoesNotContain("-OffloadOptimizerState", host);
        Assert.DoesNotContain("-MixedPrecision", host);
        var selective = OutOfMemoryAdvice.Build(o with { GradientCheckpointing = true, SetGradsToNone = true }, "cpu", 5, "DefaultCPUAllocator: can't allocate memory", "/runs/dog/checkpoint-4", true, null);
        Assert.Contains("-Path '/runs/dog' -GradientCheckpointingMode Blocks.", selective);
        var blocks = OutOfMemoryAdvice.Build(o with { GradientCheckpointing = true, GradientCheckpointingMode = "blocks", SetGradsToNone = true }, "cpu", 5, "DefaultCPUAllocator: can't allocate memory", "/runs/dog/checkpoint-4", true, null);
        Assert.DoesNotContain("Resume-DreamBoothTraining", blocks);
        Assert.DoesNotContain("Checkpointing", blocks);
    }

    [Fact]
    public void ResumeSwitches_TurnOnlyOn_AndSayWhich()
    {
        var o = new DreamBoothOptions { Model = "m", InstanceDataDirectory = "i", InstancePrompt = "p", OutputDirectory = "o", SetGradsToNone = true };
        var (changed, on) = new ResumeMemorySwitches { GradientCheckpointing = true, SetGradsToNone = true }.ApplyTo(o);
        Assert.Equal(new[] { "-GradientCheckpointing" }, on);
        Assert.True(changed.GradientCheckpointing && changed.SetGradsToNone && !changed.OffloadOptimizerState && changed.GradientCheckpointingMode == "auto");
        var (same, none) = new ResumeMemorySwitches().ApplyTo(o);
        Assert.Empty(none);
        Assert.Equal(o, same);

        // A mode says what checkpointing recomputes, from here on or once it is on; the same mode again says nothing.
        var (blocks, blocksOn) = new ResumeMemorySwitches { GradientCheckpointing = true, GradientCheckpointingMode = "Blocks" }.ApplyTo(o);
        Assert.Equal(new[] { "-GradientCheckpointing", "-GradientCheckpointingMode blocks" }, blocksOn);
        Assert.True(blocks.GradientCheckpointing && blocks.GradientCheckpointingMode == "blocks");
        var (_, again) = new ResumeMemorySwitches { GradientCheckpointingMode = "blocks", GradientCheckpointing = true }.ApplyTo(blocks);
        Assert.Empty(again);
        var (selective, selectiveOn) = new ResumeMemorySwitches { GradientCheckpointingMode = "selective" }.ApplyTo(blocks);
        Assert.Equal(new[] { "-GradientCheckpointingMode selective" }, selectiveOn);
        Assert.Equal("selective", selective.GradientCheckpointingMode);
        var (off, offOn) = new ResumeMemorySwitches { GradientCheckpointingMode = "blocks" }.ApplyTo(o);
        Assert.Empty(offOn);
        Assert.False(off.GradientCheckpointing);
        Assert.Throws<ArgumentException>(() => new ResumeMemorySwitches { GradientCheckpointingMode = "layers" }.ApplyTo(o));
    }

    [Fact]
    public void CheckpointingMode_AutoIsBlocksOnAGpu_SelectiveOnTheCpu_AndOldCheckpointsKeepTheirs()
    {
        var o = new DreamBoothOptions { Model = "m", InstanceDataDirectory = "i", InstancePrompt = "p", OutputDirectory = "o", GradientCheckpointing = true };
        Assert.True(GradientCheckpointingMode.IsSelective(o, onCpu: true));
        Assert.False(GradientCheckpointingMode.IsSelective(o, onCpu: false));
        Assert.False(GradientCheckpointingMode.IsSelective(o with { GradientCheckpointingMode = "blocks" }, onCpu: true));
        Assert.True(GradientCheckpointingMode.IsSelective(o with { GradientCheckpointingMode = "Selective" }, onCpu: false));
        Assert.False(GradientCheckpointingMode.IsSelective(o with { GradientCheckpointing = false }, onCpu: true));
        Assert.Contains("auto on the CPU", GradientCheckpointingMode.Describe("auto", onCpu: true));
        Assert.Contains("whole UNet resnets and transformer blocks", GradientCheckpointingMode.Describe("auto", onCpu: false));
        Assert.Throws<ArgumentException>(() => (o with { GradientCheckpointingMode = "layers" }).Validate());

        // A checkpoint's options as the version before -GradientCheckpointingMode wrote them: selective stays selective.
        var json = System.Text.Json.JsonSerializer.Serialize(o with { GradientCheckpointing = false });
        Assert.DoesNotContain("\"SelectiveCheckpointing\"", json);
        Assert.Contains("\"GradientCheckpointing\":false,\"GradientCheckpointingMode\":\"auto\",", json);
        var old = System.Text.Json.JsonSerializer.Deserialize<DreamBoothOptions>(json.Replace("\"GradientCheckpointingMode\":\"auto\",", "\"SelectiveCheckpointing\":true,"))!;
        Assert.True(old.GradientCheckpointing);
        Assert.Equal("selective", old.GradientCheckpointingMode);
    }
}
