using System.Globalization;
using DreamBooth.Engine.IO;

namespace DreamBooth.Engine.Training;

/// <summary>
/// accelerate's trackers (diffusers' <c>--report_to</c>, <c>--logging_dir</c>): each optimizer step's loss and
/// learning rate, and the validation images, logged under OUTPUT/&lt;logging dir&gt;/dreambooth as a TensorBoard event
/// file (<c>tensorboard --logdir OUTPUT/logs</c>) and a CSV file (<c>Import-Csv</c>). wandb and comet_ml need their
/// services and Python; they are not offered.
/// </summary>
public sealed class TrainingTrackers : IDisposable
{
    /// <summary>accelerate's init_trackers project name in train_dreambooth.py: the sub-folder of the logging directory.</summary>
    public const string ProjectName = "dreambooth";
    public const string CsvFileName = "training_log.csv";
    const string CsvHeader = "step,epoch,loss,lr,time";
    public static readonly IReadOnlyList<string> Names = new[] { "all", "tensorboard", "csv", "none" };

    readonly TensorBoardEventWriter? _tensorBoard;
    readonly StreamWriter? _csv;

    /// <summary>Where the logs go (null with <c>none</c>).</summary>
    public string? Directory { get; }

    TrainingTrackers(string? directory, TensorBoardEventWriter? tensorBoard, StreamWriter? csv)
    {
        Directory = directory;
        _tensorBoard = tensorBoard;
        _csv = csv;
    }

    /// <summary>The folder the trackers of a run with these options write to, or null when it reports to none.</summary>
    public static string? DirectoryFor(DreamBoothOptions o) => o.ReportTo == "none"
        ? null
        : Path.GetFullPath(Path.Combine(o.OutputDirectory, o.LoggingDirectory, ProjectName));   // an absolute logging directory wins, as in diffusers

    /// <summary>
    /// Opens the trackers for a run that starts (or resumes) at <paramref name="startStep"/>: the CSV keeps the rows up
    /// to that step and drops those of steps a resume repeats; the event file starts a session there, which tells
    /// TensorBoard to drop the older files' events after it.
    /// </summary>
    public static TrainingTrackers Open(DreamBoothOptions o, int startStep)
    {
        var directory = DirectoryFor(o);
        if (directory is null) return new TrainingTrackers(null, null, null);
        System.IO.Directory.CreateDirectory(directory);
        TensorBoardEventWriter? tensorBoard = null;
        StreamWriter? csv = null;
        try
        {
            if (o.ReportTo is "all" or "tensorboard")
            {
                tensorBoard = TensorBoardEventWriter.Create(directory);
                tensorBoard.StartSession(startStep);
            }
            if (o.ReportTo is "all" or "csv") csv = OpenCsv(Path.Combine(directory, CsvFileName), startStep);
            return new TrainingTrackers(directory, tensorBoard, csv);
        }
        catch
        {
            tensorBoard?.Dispose();
            csv?.Dispose();
            throw;
        }
    }

    static StreamWriter OpenCsv(string path, int startStep)
    {
        if (File.Exists(path))
        {
            // A resume repeats the steps after its checkpoint: keep the rows before, atomically.
            var kept = File.ReadLines(path).Skip(1)
                .Where(line => int.TryParse(line.Split(',')[0], NumberStyles.None, CultureInfo.InvariantCulture, out var step) && step <= startStep)
                .ToList();
            var temp = path + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
            File.WriteAllLines(temp, kept.Prepend(CsvHeader));
            File.Move(temp, path, overwrite: true);
        }
        else File.WriteAllText(path, CsvHeader + Environment.NewLine);
        return new StreamWriter(new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read)) { AutoFlush = true };
    }

    /// <summary>One optimizer step: its loss (mean over the accumulated micro-batches) and the learning rate it used.</summary>
    public void LogStep(int step, int epoch, double loss, double learningRate)
    {
        var now = DateTime.UtcNow;
        _tensorBoard?.AddScalars(step, new[] { ("loss", loss), ("lr", learningRate) }, now);
        _csv?.WriteLine(string.Join(",",
            step.ToString(CultureInfo.InvariantCulture), epoch.ToString(CultureInfo.InvariantCulture),
            loss.ToString("R", CultureInfo.InvariantCulture), learningRate.ToString("R", CultureInfo.InvariantCulture),
            now.ToString("o", CultureInfo.InvariantCulture)));
    }

    /// <summary>A validation image (already written as PNG) in TensorBoard's Images tab.</summary>
    public void LogImage(string tag, string pngPath, int width, int height, int step)
    {
        if (_tensorBoard is null) return;
        _tensorBoard.AddImage(tag, File.ReadAllBytes(pngPath), width, height, step);
    }

    public void Dispose()
    {
        _tensorBoard?.Dispose();
        _csv?.Dispose();
    }
}
