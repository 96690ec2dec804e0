using DreamBooth.Engine;
using Xunit;

namespace DreamBooth.Engine.Tests.Devices;

public class Tf32Tests
{
    /// <summary>-AllowTf32 sets libtorch's process-wide matmul switch for the run only (the flag exists on CPU builds too).</summary>
    [Fact]
    public void Allow_SetsTheMatmulSwitchForTheScope_AndPutsItBack()
    {
        Assert.False(Tf32.MatmulAllowed);   // libtorch's default, as PyTorch's
        using (Tf32.Allow(false)) Assert.False(Tf32.MatmulAllowed);
        using (Tf32.Allow(true))
        {
            Assert.True(Tf32.MatmulAllowed);
            using (Tf32.Allow(true)) Assert.True(Tf32.MatmulAllowed);
            Assert.True(Tf32.MatmulAllowed);   // an inner run leaves the outer one's setting
        }
        Assert.False(Tf32.MatmulAllowed);
    }
}
