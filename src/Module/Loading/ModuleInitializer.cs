using System.Management.Automation;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.Loader;

namespace DreamBooth.Loading;

/// <summary>
/// Hooks the default context's resolution of "DreamBooth.Engine" on import so that the engine (and through it, all
/// of its dependencies) loads in <see cref="EngineLoadContext"/>. Everything PowerShell sees is defined in this
/// assembly; engine types never cross into scripts.
/// </summary>
public sealed class ModuleInitializer : IModuleAssemblyInitializer, IModuleAssemblyCleanup
{
    const string EngineName = "DreamBooth.Engine";
    static readonly object s_gate = new();
    static EngineLoadContext? s_context;
    static int s_hooks;

    internal static string DependenciesDirectory { get; } =
        Path.Combine(Path.GetDirectoryName(typeof(ModuleInitializer).Assembly.Location)!, "Dependencies");

    internal static string? LoadContextName => s_context?.Name;

    public void OnImport()
    {
        // Each runspace that imports the module calls this (ForEach-Object -Parallel): hook once.
        lock (s_gate) { if (s_hooks++ == 0) AssemblyLoadContext.Default.Resolving += Resolve; }
        // Before any tensor exists: libtorch reads its huge-page switch at its first allocation, its CUDA allocator
        // settings when CUDA starts, and MKL its code path at its first call.
        try { ApplyAllocatorPolicies(); } catch { /* a memory-layout preference must never fail the import */ }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]   // the engine types resolve only now, through the hook above
    static void ApplyAllocatorPolicies() => DreamBooth.Engine.ProcessPolicies.Apply();

    public void OnRemove(PSModuleInfo module)
    {
        lock (s_gate) { if (--s_hooks == 0) AssemblyLoadContext.Default.Resolving -= Resolve; }
    }

    static HashSet<string>? s_dependencyNames;

    // The engine, and the few engine types' dependencies the cmdlets touch (TorchSharp's enums), resolve to the one
    // copy in the engine's context. Only names shipped in Dependencies/ are answered; anything else stays PowerShell's.
    static Assembly? Resolve(AssemblyLoadContext context, AssemblyName name)
    {
        if (name.Name is null) return null;
        s_dependencyNames ??= Directory.Exists(DependenciesDirectory)
            ? Directory.EnumerateFiles(DependenciesDirectory, "*.dll").Select(Path.GetFileNameWithoutExtension).ToHashSet(StringComparer.OrdinalIgnoreCase)!
            : new HashSet<string>();
        if (!s_dependencyNames.Contains(name.Name)) return null;
        var path = Path.Combine(DependenciesDirectory, EngineName + ".dll");
        if (!File.Exists(path)) return null;
        lock (s_gate) s_context ??= new EngineLoadContext(path);
        return s_context.LoadFromAssemblyName(name);
    }
}
