using System.Reflection;
using System.Runtime.InteropServices;
using System.Runtime.Loader;

namespace DreamBooth.Loading;

/// <summary>
/// The engine and everything it depends on (TorchSharp, ImageSharp, Tokenizers, Protobuf...) load here, apart from
/// PowerShell's default context, so another module's versions of the same libraries cannot clash with ours.
/// Native libraries resolve from Dependencies/runtimes/&lt;rid&gt;/native through the engine's .deps.json, which
/// PowerShell would not find by itself.
/// </summary>
internal sealed class EngineLoadContext : AssemblyLoadContext
{
    readonly AssemblyDependencyResolver _resolver;
    readonly string _directory;
    readonly Dictionary<string, IntPtr> _natives = new(StringComparer.Ordinal);

    public EngineLoadContext(string engineAssemblyPath) : base("DreamBooth.Engine", isCollectible: false)
    {
        _resolver = new AssemblyDependencyResolver(engineAssemblyPath);
        _directory = Path.GetDirectoryName(engineAssemblyPath)!;
    }

    protected override Assembly? Load(AssemblyName name)
    {
        // Framework assemblies are not in the engine's deps.json: null defers them to the default context.
        var path = _resolver.ResolveAssemblyToPath(name);
        return path is null ? null : LoadFromAssemblyPath(path);
    }

    protected override IntPtr LoadUnmanagedDll(string name)
    {
        lock (_natives)   // TorchSharp asks once per P/Invoke method: cache the handle
        {
            if (_natives.TryGetValue(name, out var handle)) return handle;
            var path = _resolver.ResolveUnmanagedDllToPath(name) ?? ProbeNative(name);
            handle = path is null ? IntPtr.Zero : LoadUnmanagedDllFromPath(path);
            _natives[name] = handle;
            return handle;
        }
    }

    // Fallback when deps.json does not list a library (e.g. a CUDA backend's extra natives).
    string? ProbeNative(string name)
    {
        var nativeDir = Path.Combine(_directory, "runtimes", RidFolder(), "native");
        if (!Directory.Exists(nativeDir)) return null;
        foreach (var candidate in new[] { name, "lib" + name + ".so", name + ".dll", "lib" + name + ".dylib" })
        {
            var p = Path.Combine(nativeDir, candidate);
            if (File.Exists(p)) return p;
        }
        return null;
    }

    static string RidFolder()
    {
        string os = OperatingSystem.IsWindows() ? "win" : OperatingSystem.IsMacOS() ? "osx" : "linux";
        string arch = RuntimeInformation.ProcessArchitecture switch
        {
            Architecture.Arm64 => "arm64",
            Architecture.X86 => "x86",
            _ => "x64",
        };
        return os + "-" + arch;
    }
}
