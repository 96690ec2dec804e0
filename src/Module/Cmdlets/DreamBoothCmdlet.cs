using System.Collections.Concurrent;
using System.Management.Automation;
using DreamBooth.Engine;
using DreamBooth.Engine.IO;
using DreamBooth.Engine.Models;
using DreamBooth.Engine.Pipelines;
using DreamBooth.Engine.Sources;

namespace DreamBooth.Cmdlets;

/// <summary>
/// What a worker thread may ask the pipeline thread to do. PowerShell allows Write* only on the pipeline thread,
/// so long work runs on a dedicated thread and posts here.
/// </summary>
public sealed class WorkerChannel
{
    readonly BlockingCollection<Action<PSCmdlet>> _queue;
    internal WorkerChannel(BlockingCollection<Action<PSCmdlet>> queue, CancellationToken token) { _queue = queue; Token = token; }

    public CancellationToken Token { get; }
    public void Progress(ProgressRecord record) => Post(c => c.WriteProgress(record));
    public void Verbose(string message) => Post(c => c.WriteVerbose(message));
    public void Warning(string message) => Post(c => c.WriteWarning(message));
    public void Information(string message, string tag) => Post(c => c.WriteInformation(message, new[] { tag }));
    public void Output(object value) => Post(c => c.WriteObject(value));

    /// <summary>Runs <paramref name="ask"/> on the pipeline thread (e.g. ShouldProcess) and waits for its answer.</summary>
    public T Ask<T>(Func<PSCmdlet, T> ask, T whenStopped)
    {
        using var done = new ManualResetEventSlim();
        T answer = whenStopped;
        Post(c => { try { answer = ask(c); } finally { done.Set(); } });
        try { done.Wait(Token); } catch (OperationCanceledException) { return whenStopped; }
        return answer;
    }

    void Post(Action<PSCmdlet> a) { try { _queue.Add(a); } catch (InvalidOperationException) { /* pipeline gone */ } }
}

/// <summary>
/// Base of the module's cmdlets: cancellation wired to Ctrl+C (StopProcessing), long work on a worker thread with
/// progress and output pumped on the pipeline thread, and engine exceptions turned into terminating errors with the
/// right ErrorCategory and a message that says what to do.
/// </summary>
public abstract class DreamBoothCmdlet : PSCmdlet
{
    CancellationTokenSource? _cts;

    protected CancellationToken CancellationToken => (_cts ??= new CancellationTokenSource()).Token;

    protected override void StopProcessing() => _cts?.Cancel();

    /// <summary>
    /// Runs <paramref name="work"/> on a dedicated thread (its own DisposeScopes, grad mode and thread count, which are
    /// thread-local in libtorch) and pumps what it posts until it ends. Rethrows its exception on this thread.
    /// </summary>
    protected T RunOnWorker<T>(Func<WorkerChannel, T> work, bool rethrow = false)
    {
        var token = CancellationToken;
        using var queue = new BlockingCollection<Action<PSCmdlet>>();
        var channel = new WorkerChannel(queue, token);
        T result = default!;
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try { result = work(channel); }
            catch (Exception e) { failure = e; }
            finally { queue.CompleteAdding(); }
        }, 16 * 1024 * 1024) { IsBackground = true, Name = "DreamBooth worker" };
        thread.Start();
        bool drained = false;
        try
        {
            foreach (var action in queue.GetConsumingEnumerable()) action(this);
            drained = true;
        }
        finally
        {
            // Ctrl+C makes Write* throw PipelineStoppedException: cancel and wait so nothing runs on after the prompt
            // returns. Only then: a worker that merely has not exited yet must not cancel this cmdlet's later work.
            if (!drained) _cts?.Cancel();
            thread.Join();
        }
        if (failure is not null)
        {
            if (failure is OperationCanceledException && token.IsCancellationRequested) throw new PipelineStoppedException();
            if (rethrow) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
            ThrowEngineError(failure, null);
        }
        return result;
    }

    /// <summary>Throws a terminating error for an engine exception, with the category that fits it.</summary>
    protected void ThrowEngineError(Exception e, object? target, string? errorId = null)
    {
        if (e is PipelineStoppedException) throw e;
        if (e is AggregateException { InnerExceptions.Count: 1 } agg) e = agg.InnerException!;
        var record = new ErrorRecord(e, errorId ?? e.GetType().Name, CategoryOf(e), target);
        // libtorch's own words come with a C++ stack; say what ran out and what needs less (training says more itself).
        if (e is not Engine.Training.TrainingOutOfMemoryException && OutOfMemory.Is(e))
            record.ErrorDetails = new ErrorDetails($"Out of memory: {OutOfMemory.Describe(e)} Clear-DreamBoothModelCache frees the pipelines kept loaded; fp16 precision, smaller images and smaller batches need less.");
        ThrowTerminatingError(record);
    }

    /// <summary>The ErrorCategory that fits an engine exception.</summary>
    protected static ErrorCategory CategoryOf(Exception e) => e switch
        {
            FileNotFoundException or DirectoryNotFoundException => ErrorCategory.ObjectNotFound,
            ModelSourceException => ErrorCategory.InvalidData,
            // A pipeline folder that is there but incomplete or malformed (pickle-only weights or several variants without default ones, say).
            DiffusersFolderException d => Directory.Exists(d.FolderPath) || File.Exists(d.FolderPath) ? ErrorCategory.InvalidData : ErrorCategory.ObjectNotFound,
            SafetensorsFormatException or ModelConfigException or StateDictMismatchException => ErrorCategory.InvalidData,
            InvalidDataException or FormatException => ErrorCategory.InvalidData,
            ArgumentException => ErrorCategory.InvalidArgument,
            UnauthorizedAccessException => ErrorCategory.PermissionDenied,
            OperationCanceledException => ErrorCategory.OperationStopped,
            OutOfMemoryException or Engine.Training.TrainingOutOfMemoryException or Engine.HostMemoryShortfallException
                or Engine.Training.InsufficientDiskSpaceException => ErrorCategory.ResourceUnavailable,
            _ when Engine.OutOfMemory.Is(e) => ErrorCategory.ResourceUnavailable,   // libtorch's CUDA/CPU allocators
            InvalidOperationException => ErrorCategory.InvalidOperation,
            NotSupportedException => ErrorCategory.NotImplemented,
            IOException => ErrorCategory.WriteError,
            _ => ErrorCategory.NotSpecified,
        };

    /// <summary>The generation inputs the parameter attributes cannot check: sizes in multiples of 8, a known scheduler.</summary>
    protected void ValidateGenerationInputs(int? width, int? height, string? scheduler)
    {
        if (width is int w && (w <= 0 || w % 8 != 0))
            ThrowInputError($"-Width must be a positive multiple of 8 (got {w}).", ErrorCategory.InvalidArgument, w, "InvalidWidth");
        if (height is int h && (h <= 0 || h % 8 != 0))
            ThrowInputError($"-Height must be a positive multiple of 8 (got {h}).", ErrorCategory.InvalidArgument, h, "InvalidHeight");
        if (scheduler is not null && !Engine.Schedulers.SchedulerFactory.IsKnown(scheduler))
            ThrowInputError($"Unknown scheduler '{scheduler}'. Known: {string.Join(", ", Engine.Schedulers.SchedulerFactory.KnownNames)}.",
                ErrorCategory.InvalidArgument, scheduler, "UnknownScheduler");
    }

    /// <summary>Terminating error for bad input found before any work starts.</summary>
    protected void ThrowInputError(string message, ErrorCategory category, object? target, string errorId)
        => ThrowTerminatingError(new ErrorRecord(new ArgumentException(message), errorId, category, target));

    /// <summary>
    /// Resolves a -Model argument: a folder or checkpoint-N (relative to the current location), a single-file
    /// .safetensors checkpoint (imported once into the user's cache) or a Hub id owner/name[@revision] (from the
    /// Hugging Face cache, downloaded when missing unless <paramref name="offline"/> or HF_HUB_OFFLINE).
    /// A missing model is a terminating ObjectNotFound error.
    /// </summary>
    protected Engine.Pipelines.ModelSource ResolveModel(string model, bool offline)
    {
        var (source, error) = TryResolveModel(model, offline);
        if (error is not null) ThrowTerminatingError(error);
        return source!;
    }

    /// <summary><see cref="ResolveModel"/> that returns its error instead of throwing it (for cmdlets that go on to the next path).</summary>
    protected (Engine.Pipelines.ModelSource? Source, ErrorRecord? Error) TryResolveModel(string model, bool offline)
    {
        var path = ResolvePath(model);
        bool local = Directory.Exists(path) || File.Exists(path);
        bool hub = !local && HubModelId.TryParse(model, out _);
        var argument = hub ? model : path;
        try
        {
            var source = RunOnWorker(ch =>
            {
                var downloads = new InlineProgress<DownloadProgress>(d => ch.Progress(new ProgressRecord(3, $"Downloading {model}",
                    $"{d.File} ({d.FileIndex}/{d.FileCount})")));
                var messages = new InlineProgress<string>(ch.Verbose);
                var s = Engine.Pipelines.ModelSource.Resolve(argument, HubOptions.FromEnvironment(offline: offline), messages, downloads, ch.Token);
                ch.Progress(new ProgressRecord(3, $"Downloading {model}", "Done") { RecordType = ProgressRecordType.Completed });
                return s;
            }, rethrow: true);
            DiffusersPipelineFolder.Open(source.BaseModel);
            return (source, null);
        }
        catch (Exception e) when (e is not PipelineStoppedException)
        {
            if (e is AggregateException { InnerExceptions.Count: 1 } agg) e = agg.InnerException!;
            bool notFound = e is ModelSourceException && hub || e is DirectoryNotFoundException or FileNotFoundException;
            return (null, new ErrorRecord(e, notFound ? "ModelNotFound" : "InvalidModel", notFound ? ErrorCategory.ObjectNotFound : CategoryOf(e), model));
        }
    }

    /// <summary>
    /// The file-system paths a -Path argument names (wildcards expanded); null when nothing matches (the caller says
    /// what that means); empty, with a non-terminating error, when it is not a file-system path.
    /// </summary>
    protected IReadOnlyList<string>? ExpandPaths(string path)
    {
        try
        {
            var paths = GetResolvedProviderPathFromPSPath(path, out var provider);
            if (provider.Name == "FileSystem") return paths;
            WriteError(new ErrorRecord(new ArgumentException($"'{path}' is not a file-system path."), "NotAFileSystemPath", ErrorCategory.InvalidArgument, path));
            return Array.Empty<string>();
        }
        catch (ItemNotFoundException) { return null; }
    }

    /// <summary>Resolves a user path (relative to the current location, ~ expanded) to a full file-system path.</summary>
    protected string ResolvePath(string path) => GetUnresolvedProviderPathFromPSPath(path);
}
