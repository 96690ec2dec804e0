using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;

namespace DreamBooth.Cmdlets;

/// <summary>Tab-completes -Device with the names the engine accepts (cuda:N for the first GPUs; any N is accepted).</summary>
public sealed class DeviceNameCompleter : IArgumentCompleter
{
    static readonly string[] Names = { "auto", "cpu", "cuda", "cuda:0", "cuda:1", "cuda:2", "cuda:3" };

    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        var pattern = new WildcardPattern((wordToComplete ?? "").Trim('\'', '"') + "*", WildcardOptions.IgnoreCase);
        return Names.Where(pattern.IsMatch).Select(n => new CompletionResult(n, n, CompletionResultType.ParameterValue, n));
    }
}
