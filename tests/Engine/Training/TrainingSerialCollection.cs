namespace DreamBooth.Engine.Tests.Training;

/// <summary>
/// Tests that read process-wide state (live tensor count, the checkpoint error slot, the default generator) run alone,
/// after the parallel ones, so other test classes can't disturb them.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class TrainingSerialCollection
{
    public const string Name = "Training (serial)";
}
