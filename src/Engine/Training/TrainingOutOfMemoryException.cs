namespace DreamBooth.Engine.Training;

/// <summary>
/// Training ran out of device (or host) memory. The trainer has saved what was learned up to the last optimizer step as
/// a resumable checkpoint where it could (<see cref="CheckpointPath"/>), and the message names the switches that lower
/// memory, those a resume can add and those that need a new run.
/// </summary>
public sealed class TrainingOutOfMemoryException : Exception
{
    public TrainingOutOfMemoryException(string message, Exception inner, int step, string? checkpointPath)
        : base(message, inner) { Step = step; CheckpointPath = checkpointPath; }

    /// <summary>The optimizer step that was running (1-based).</summary>
    public int Step { get; }

    /// <summary>The checkpoint to resume from: saved after the failure, or the one the run had resumed from; null if none.</summary>
    public string? CheckpointPath { get; }
}
