namespace DreamBooth.Engine;

/// <summary>Runs an action when disposed: the restore half of a "set now, put back later" scope.</summary>
internal sealed class DisposableAction(Action onDispose) : IDisposable
{
    public void Dispose() => onDispose();
}
