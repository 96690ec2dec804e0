using System.Diagnostics;
using System.Runtime.InteropServices;

namespace DreamBooth.Engine;

/// <summary>
/// accelerate's <c>set_seed(seed, deterministic=True)</c>: libtorch's deterministic-algorithms mode
/// (<c>torch.use_deterministic_algorithms(True)</c> and <c>torch.backends.cudnn.deterministic = True</c>), so that a
/// seeded run on a GPU repeats bit for bit. cuDNN then picks deterministic convolution algorithms and operations that
/// accumulate with atomics take ordered versions, some slower; an operation that has no deterministic version throws,
/// naming itself. cuBLAS needs <c>CUBLAS_WORKSPACE_CONFIG=:4096:8</c>, set here where unset. The CPU kernels are
/// deterministic already. Process-wide in libtorch, so set for a run and put back after it.
/// <para>TorchSharp 0.107 does not implement these switches, so they are called in libtorch itself
/// (<c>at::globalContext()</c>'s setters, by their exported C++ names).</para>
/// </summary>
public static class DeterministicAlgorithms
{
    public const string CublasWorkspaceVariable = "CUBLAS_WORKSPACE_CONFIG";
    const string CublasWorkspaceValue = ":4096:8";

    /// <summary>Turns the mode on until disposed when <paramref name="enable"/>; otherwise changes nothing.</summary>
    /// <exception cref="PlatformNotSupportedException">The loaded libtorch does not export the switches.</exception>
    public static IDisposable Enable(bool enable)
    {
        if (!enable) return new DisposableAction(() => { });
        var context = LibTorchContext.Get();
        SetCublasWorkspaceIfUnset();
        var (algorithms, cudnn) = (context.DeterministicAlgorithms, context.DeterministicCuDNN);
        context.DeterministicAlgorithms = true;
        context.DeterministicCuDNN = true;
        return new DisposableAction(() => { context.DeterministicAlgorithms = algorithms; context.DeterministicCuDNN = cudnn; });
    }

    /// <summary>Throws <see cref="PlatformNotSupportedException"/> where the loaded libtorch lacks the switches.</summary>
    public static void EnsureAvailable() => LibTorchContext.Get();

    /// <summary>For Get-DreamBoothEnvironment: whether -Deterministic can be used with the loaded libtorch.</summary>
    public static string Availability => LibTorchContext.TryGet() is null
        ? "not available: the loaded libtorch does not export its deterministic-algorithms switches"
        : $"available (-Deterministic turns it on for a run; {CublasWorkspaceVariable} {(Environment.GetEnvironmentVariable(CublasWorkspaceVariable) is { Length: > 0 } v ? "= " + v : "set when used")})";

    /// <summary>Whether libtorch's deterministic-algorithms mode is on (false where the switch cannot be read).</summary>
    public static bool Enabled => LibTorchContext.TryGet() is { } c && c.DeterministicAlgorithms;

    /// <summary>
    /// libtorch reads the variable with the C library's getenv when a cuBLAS call checks it, so it is set there
    /// (glibc's environment on Linux, the C runtime's on Windows) as well as in .NET's.
    /// </summary>
    static void SetCublasWorkspaceIfUnset()
    {
        if (!string.IsNullOrEmpty(Environment.GetEnvironmentVariable(CublasWorkspaceVariable))) return;
        Environment.SetEnvironmentVariable(CublasWorkspaceVariable, CublasWorkspaceValue);
        try
        {
            if (OperatingSystem.IsLinux()) CEnvironment.SetIfUnset(CublasWorkspaceVariable, CublasWorkspaceValue);
            else if (OperatingSystem.IsWindows()) _putenv_s(CublasWorkspaceVariable, CublasWorkspaceValue);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            // Then libtorch's first cuBLAS call in this mode throws, saying which variable to set.
        }
    }

    [DllImport("ucrtbase.dll", CharSet = CharSet.Ansi)] static extern int _putenv_s(string name, string value);

    /// <summary>libtorch's <c>at::Context</c> (the process-wide settings) and its deterministic switches.</summary>
    internal sealed unsafe class LibTorchContext
    {
        static readonly Lazy<LibTorchContext?> s_instance = new(Find);
        readonly IntPtr _context;
        readonly delegate* unmanaged<IntPtr, byte> _getAlgorithms;
        readonly delegate* unmanaged<IntPtr, byte, byte, void> _setAlgorithms;
        readonly delegate* unmanaged<IntPtr, byte> _getCuDNN;
        readonly delegate* unmanaged<IntPtr, byte, void> _setCuDNN;

        // Itanium C++ ABI names (Linux, macOS) and MSVC's (Windows) of at::globalContext() and the Context members.
        static readonly string[] GlobalContext = { "_ZN2at13globalContextEv", "?globalContext@at@@YAAEAVContext@1@XZ" };
        static readonly string[] GetAlgorithms = { "_ZNK2at7Context23deterministicAlgorithmsEv", "?deterministicAlgorithms@Context@at@@QEBA_NXZ" };
        static readonly string[] SetAlgorithms = { "_ZN2at7Context26setDeterministicAlgorithmsEbb", "?setDeterministicAlgorithms@Context@at@@QEAAX_N0@Z" };
        static readonly string[] GetCuDNN = { "_ZNK2at7Context18deterministicCuDNNEv", "?deterministicCuDNN@Context@at@@QEBA_NXZ" };
        static readonly string[] SetCuDNN = { "_ZN2at7Context21setDeterministicCuDNNEb", "?setDeterministicCuDNN@Context@at@@QEAAX_N@Z" };

        /// <summary>Every export looked up, by platform (tests check Windows' against torch_cpu.dll's export table).</summary>
        internal static IEnumerable<string> ExportNames(bool msvc) =>
            new[] { GlobalContext, GetAlgorithms, SetAlgorithms, GetCuDNN, SetCuDNN }.Select(names => names[msvc ? 1 : 0]);

        LibTorchContext(IntPtr library)
        {
            _context = ((delegate* unmanaged<IntPtr>)Export(library, GlobalContext))();
            _getAlgorithms = (delegate* unmanaged<IntPtr, byte>)Export(library, GetAlgorithms);
            _setAlgorithms = (delegate* unmanaged<IntPtr, byte, byte, void>)Export(library, SetAlgorithms);
            _getCuDNN = (delegate* unmanaged<IntPtr, byte>)Export(library, GetCuDNN);
            _setCuDNN = (delegate* unmanaged<IntPtr, byte, void>)Export(library, SetCuDNN);
        }

        public bool DeterministicAlgorithms
        {
            get => _getAlgorithms(_context) != 0;
            set => _setAlgorithms(_context, (byte)(value ? 1 : 0), 0);   // warn_only = false: an op without a deterministic version throws
        }

        public bool DeterministicCuDNN
        {
            get => _getCuDNN(_context) != 0;
            set => _setCuDNN(_context, (byte)(value ? 1 : 0));
        }

        public static LibTorchContext Get() => TryGet() ?? throw new PlatformNotSupportedException(
            "The loaded libtorch does not export its deterministic-algorithms switches (at::Context::setDeterministicAlgorithms), " +
            "so -Deterministic is not available with it; run without -Deterministic.");

        public static LibTorchContext? TryGet() => s_instance.Value;

        static LibTorchContext? Find()
        {
            _ = TorchSharp.torch.cuda.is_available();   // makes TorchSharp load libtorch, if nothing has yet
            var path = LoadedLibTorchCpu();
            if (path is null || !System.Runtime.InteropServices.NativeLibrary.TryLoad(path, out var library)) return null;
            try { return new LibTorchContext(library); }
            catch (EntryPointNotFoundException) { return null; }
        }

        static IntPtr Export(IntPtr library, string[] names)
        {
            foreach (var name in names)
                if (System.Runtime.InteropServices.NativeLibrary.TryGetExport(library, name, out var address)) return address;
            throw new EntryPointNotFoundException(names[0]);
        }

        static string? LoadedLibTorchCpu()
        {
            try
            {
                foreach (ProcessModule m in Process.GetCurrentProcess().Modules)
                    if (m.ModuleName is "libtorch_cpu.so" or "torch_cpu.dll" or "libtorch_cpu.dylib") return m.FileName;
            }
            catch (Exception e) when (e is InvalidOperationException or NotSupportedException or System.ComponentModel.Win32Exception) { }
            return null;
        }
    }
}
