using DreamBooth.Engine;
using DreamBooth.Engine.Tests.Training;
using Xunit;

namespace DreamBooth.Engine.Tests.Devices;

/// <summary>
/// -Deterministic turns libtorch's process-wide deterministic-algorithms mode on for the run and puts it back; TorchSharp
/// does not implement the switch, so the engine calls libtorch's own (the test proves those calls reach it).
/// </summary>
[Collection(TrainingSerialCollection.Name)]   // the switch is process-wide: not while a training test runs
public class DeterministicAlgorithmsTests
{
    [Fact]
    public void Enable_SetsLibTorchsSwitchForTheScope_AndPutsItBack()
    {
        Assert.False(DeterministicAlgorithms.Enabled);   // libtorch's default, as PyTorch's
        using (DeterministicAlgorithms.Enable(false)) Assert.False(DeterministicAlgorithms.Enabled);
        using (DeterministicAlgorithms.Enable(true))
        {
            Assert.True(DeterministicAlgorithms.Enabled);
            using (DeterministicAlgorithms.Enable(true)) Assert.True(DeterministicAlgorithms.Enabled);
            Assert.True(DeterministicAlgorithms.Enabled);   // an inner run leaves the outer one's setting
            // cuBLAS's condition for deterministic results, as libtorch checks it.
            Assert.False(string.IsNullOrEmpty(Environment.GetEnvironmentVariable(DeterministicAlgorithms.CublasWorkspaceVariable)));
            if (OperatingSystem.IsLinux())
                Assert.False(string.IsNullOrEmpty(CEnvironment.Get(DeterministicAlgorithms.CublasWorkspaceVariable)));
        }
        Assert.False(DeterministicAlgorithms.Enabled);
    }

    /// <summary>
    /// The switch is libtorch's own: in deterministic mode libtorch fills new, uninitialised memory with NaN
    /// (<c>torch.utils.deterministic.fill_uninitialized_memory</c>, on by default), which it does not do otherwise.
    /// </summary>
    [Fact]
    public void TheSwitchIsLibTorchs_NewMemoryIsFilledWithNaN()
    {
        using var scope = torch.NewDisposeScope();
        using (DeterministicAlgorithms.Enable(true))
        {
            Assert.True(torch.empty(1000).isnan().all().item<bool>());
        }
        Assert.False(DeterministicAlgorithms.Enabled);
    }
}
