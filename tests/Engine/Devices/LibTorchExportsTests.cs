#if DREAMBOOTH_BACKEND_CPU
using System.Reflection;
using System.Reflection.PortableExecutable;
using DreamBooth.Engine;

namespace DreamBooth.Engine.Tests.Devices;

/// <summary>
/// Code that only Windows runs, checked here against Windows' libtorch itself: the cpu backend's libtorch-cpu package
/// brings win-x64's torch_cpu.dll too, so its export table can be read on any machine. -Deterministic calls libtorch's
/// at::Context by MSVC's decorated names; a wrong one would only show on a Windows user's machine.
/// </summary>
public class LibTorchExportsTests
{
    [Fact]
    public void WindowsTorchCpuDll_ExportsTheDeterministicSwitchesByTheNamesTheEngineLooksUp()
    {
        var exports = ExportedNames(WindowsTorchCpuDll());
        Assert.True(exports.Count > 10000, $"only {exports.Count} exports read");   // the reader works at all
        foreach (var name in DeterministicAlgorithms.LibTorchContext.ExportNames(msvc: true))
            Assert.Contains(name, exports);
        // The decoration encodes the signature: the setter with warn_only (bool, bool) is there, a one-bool one is not.
        Assert.DoesNotContain("?setDeterministicAlgorithms@Context@at@@QEAAX_N@Z", exports);
    }

    static string WindowsTorchCpuDll()
    {
        var root = typeof(LibTorchExportsTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .Single(a => a.Key == "NuGetPackageRoot").Value;
        Assert.False(string.IsNullOrEmpty(root), "the build did not record NuGet's package folder");
        var libTorch = EngineInfo.Collect().LibTorchVersion;
        var dll = Path.Combine(root!, "libtorch-cpu-win-x64", libTorch, "runtimes", "win-x64", "native", "torch_cpu.dll");
        Assert.True(File.Exists(dll), $"{dll} is missing: libtorch-cpu {libTorch} brings it with the cpu backend");
        return dll;
    }

    /// <summary>The names in a PE file's export directory (IMAGE_EXPORT_DIRECTORY: NumberOfNames at 24, AddressOfNames at 32).</summary>
    static HashSet<string> ExportedNames(string path)
    {
        using var pe = new PEReader(File.OpenRead(path));
        var directory = pe.PEHeaders.PEHeader!.ExportTableDirectory;
        var table = pe.GetSectionData(directory.RelativeVirtualAddress).GetReader();
        table.Offset = 24;
        int count = table.ReadInt32();
        table.Offset = 32;
        var names = pe.GetSectionData(table.ReadInt32()).GetReader();
        var result = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < count; i++)
        {
            var text = pe.GetSectionData(names.ReadInt32()).GetReader();
            result.Add(text.ReadUTF8(text.IndexOf(0)));
        }
        return result;
    }
}
#endif
