namespace DreamBooth.Engine;

/// <summary>IProgress that calls back synchronously on the reporting thread (Progress&lt;T&gt; posts to the thread pool, out of order).</summary>
public sealed class InlineProgress<T> : IProgress<T>
{
    readonly Action<T> _report;
    public InlineProgress(Action<T> report) => _report = report;
    public void Report(T value) => _report(value);
}
