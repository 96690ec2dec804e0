using System.Management.Automation;
using DreamBooth.Engine;
using DreamBooth.Loading;

namespace DreamBooth.Cmdlets;

/// <summary>
/// <para type="synopsis">Reports the engine's versions, backend, devices and native library location.</para>
/// </summary>
[Cmdlet(VerbsCommon.Get, "DreamBoothEnvironment")]
[OutputType(typeof(DreamBoothEnvironment))]
public sealed class GetDreamBoothEnvironmentCommand : DreamBoothCmdlet
{
    protected override void EndProcessing()
    {
        EngineInfo info;
        try { info = EngineInfo.Collect(); }
        catch (Exception e)
        {
            ThrowEngineError(new InvalidOperationException(
                "The TorchSharp engine could not start: " + (e.InnerException ?? e).Message +
                " Rebuild the module (see README) so its native libraries are in place, then start a new PowerShell session.", e),
                null, "EngineStartFailed");
            return;
        }
        WriteObject(new DreamBoothEnvironment
        {
            ModuleVersion = typeof(GetDreamBoothEnvironmentCommand).Assembly.GetName().Version?.ToString(3) ?? "",
            TorchSharpVersion = info.TorchSharpVersion,
            LibTorchVersion = info.LibTorchVersion,
            Backend = info.Backend,
            Devices = info.Devices.Select(d => new DreamBoothDevice
            {
                Name = d.Name, Kind = d.Kind, Index = d.Index, Description = d.Description, TotalMemoryBytes = d.TotalMemoryBytes,
            }).ToArray(),
            Threads = info.Threads,
            DefaultDType = info.DefaultDType,
            NativeLibraryPath = info.NativeLibraryPath,
            EngineLoadContext = ModuleInitializer.LoadContextName ?? System.Runtime.Loader.AssemblyLoadContext.GetLoadContext(typeof(EngineInfo).Assembly)?.Name,
            CpuAllocator = DreamBooth.Engine.CpuAllocatorPolicy.Description,
            CudaAllocator = DreamBooth.Engine.CudaAllocatorPolicy.Description,
            CpuMatrixLibrary = DreamBooth.Engine.MklCodePathPolicy.Description,
            DeterministicAlgorithms = DreamBooth.Engine.DeterministicAlgorithms.Availability,
            AvailableMemoryGB = HostMemory.AvailableBytes() is long available ? Math.Round(available / 1073741824.0, 1) : null,
            CpuFp16Slowdown = Math.Round(LowPrecisionOnCpu.Slowdown(TorchSharp.torch.ScalarType.Float16), 1),
            CpuBf16Slowdown = Math.Round(LowPrecisionOnCpu.Slowdown(TorchSharp.torch.ScalarType.BFloat16), 1),
            CpuFp16Emulated = LowPrecisionOnCpu.Emulates(TorchSharp.torch.CPU, TorchSharp.torch.ScalarType.Float16),
            CpuBf16Emulated = LowPrecisionOnCpu.Emulates(TorchSharp.torch.CPU, TorchSharp.torch.ScalarType.BFloat16),
            PowerShellVersion = (SessionState.PSVariable.GetValue("PSVersionTable") as System.Collections.Hashtable)?["PSVersion"]?.ToString() ?? "",
            OperatingSystem = System.Runtime.InteropServices.RuntimeInformation.OSDescription,
        });
    }
}
