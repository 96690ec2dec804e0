using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;
using DreamBooth.Engine.Schedulers;

namespace DreamBooth.Cmdlets;

/// <summary>Tab-completes -Scheduler with the short names and diffusers class names the engine accepts.</summary>
public sealed class SchedulerNameCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        var pattern = new WildcardPattern((wordToComplete ?? "").Trim('\'', '"') + "*", WildcardOptions.IgnoreCase);
        foreach (var name in SchedulerFactory.KnownNames)
            if (pattern.IsMatch(name))
                yield return new CompletionResult(name.Contains('+') ? $"'{name}'" : name, name, CompletionResultType.ParameterValue, name);
    }
}
