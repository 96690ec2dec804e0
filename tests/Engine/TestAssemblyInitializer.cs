using System.Runtime.CompilerServices;

namespace DreamBooth.Engine.Tests;

static class TestAssemblyInitializer
{
    /// <summary>As the module does on import, before libtorch's first matrix product: the tests run MKL on the path users get.</summary>
    [ModuleInitializer]
    internal static void Init() => MklCodePathPolicy.Apply();
}
