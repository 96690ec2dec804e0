using System.Runtime.Intrinsics.X86;

namespace DreamBooth.Engine.Tests.Devices;

public class MklCodePathPolicyTests
{
    [Theory]
    [InlineData("AuthenticAMD", true, true, true)]
    [InlineData("HygonGenuine", true, true, true)]
    [InlineData("GenuineIntel", true, true, false)]    // MKL chooses well on Intel (AVX-512 where there is)
    [InlineData("AuthenticAMD", false, true, false)]   // no AVX2: the AVX2 path would not run
    [InlineData("AuthenticAMD", true, false, false)]
    [InlineData(null, false, false, false)]             // not x86
    public void AVX2PathIsAskedForOnlyWhereMklWouldNotTakeIt(string? vendor, bool avx2, bool fma, bool expected)
        => Assert.Equal(expected, MklCodePathPolicy.NeedsAvx2Branch(vendor, avx2, fma));

    [Fact]
    public void CpuVendor_IsCpuidsTwelveCharacters_OnX86()
    {
        var vendor = MklCodePathPolicy.CpuVendor;
        if (!X86Base.IsSupported) { Assert.Null(vendor); return; }
        Assert.Equal(12, vendor!.Length);
        if (OperatingSystem.IsLinux())
            Assert.Contains($"vendor_id\t: {vendor}", File.ReadAllText("/proc/cpuinfo"));
    }

    [Fact]
    public void OnLinux_TheTestHostRunsMklOnThePathThePolicyChose()
    {
        MklCodePathPolicy.Apply();   // done once already by the test assembly's initializer
        Assert.False(string.IsNullOrEmpty(MklCodePathPolicy.Description));
        if (OperatingSystem.IsLinux() && Environment.GetEnvironmentVariable("DREAMBOOTH_MKL") is null
            && MklCodePathPolicy.NeedsAvx2Branch(MklCodePathPolicy.CpuVendor, Avx2.IsSupported, Fma.IsSupported))
            Assert.Matches("MKL_CBWR=", MklCodePathPolicy.Description);
    }
}
