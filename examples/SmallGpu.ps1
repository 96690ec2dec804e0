#!/usr/bin/env pwsh
<#
.SYNOPSIS
    The diffusers guide's small-GPU recipes from PowerShell: picks -MemoryProfile by the GPU's memory, and if the card
    still runs out of memory, continues from the checkpoint the run saved, with the switches that lower memory.
.DESCRIPTION
    -MemoryProfile Auto (the default) lets Start-DreamBoothTraining pick by the GPU's memory: cards of 20 GB or more
    train without a profile, 14–20 GB get the 16GB profile (gradient checkpointing + 8-bit Adam), 10.5–14 GB the 12GB
    profile (+ gradients released after each step), smaller ones the 8GB profile (+ fp16 with loss scaling, optimizer
    state and gradients in CPU memory). Without a GPU it trains on the CPU without a profile. -MemoryProfile 16GB, 12GB,
    8GB or None overrides the choice.

    A run that runs out of memory saves a resumable checkpoint and ends with a ResourceUnavailable error
    (TrainingOutOfMemoryException); the script then resumes it with -GradientCheckpointing -OffloadOptimizerState
    -SetGradsToNone, which lower memory without changing what is learned.

    The defaults train the tiny pipeline that ships with the repository for a few steps at 64 px. For a real run, point
    -Model at a Stable Diffusion folder (diffusers layout), -InstanceDataDirectory at 3–5 photos of the subject, and use
    -Resolution 512 -MaxTrainSteps 400.
#>
[CmdletBinding()]
param(
    [string] $Model = (Join-Path $PSScriptRoot '../tests/fixtures/tiny-sd'),
    [string] $InstanceDataDirectory = (Join-Path $PSScriptRoot 'data/sks-toy'),
    [string] $InstancePrompt = 'a photo of sks toy',
    [string] $OutputDirectory = (Join-Path $PSScriptRoot '../out/small-gpu/sks-toy-model'),
    [int] $Resolution = 64,
    [int] $MaxTrainSteps = 4,
    [ValidateSet('Auto', '16GB', '12GB', '8GB', 'None')] [string] $MemoryProfile = 'Auto'
)
$ErrorActionPreference = 'Stop'
if (-not (Get-Module DreamBooth)) { Import-Module (Join-Path $PSScriptRoot '../out/DreamBooth/DreamBooth.psd1') }

$gpu = @((Get-DreamBoothEnvironment).Devices | Where-Object Kind -eq 'cuda')[0]
Write-Host ("Device: {0}; memory profile: {1}" -f ($gpu ? "$($gpu.Description) ($($gpu.TotalMemoryGB) GB)" : 'CPU'), $MemoryProfile)

$train = @{
    Model = $Model; InstanceDataDirectory = $InstanceDataDirectory; InstancePrompt = $InstancePrompt
    Resolution = $Resolution; TrainBatchSize = 1; LearningRate = 5e-6; MaxTrainSteps = $MaxTrainSteps
    CheckpointingSteps = [Math]::Max(1, [int]($MaxTrainSteps / 2)); Seed = 1234; OutputDirectory = $OutputDirectory
}
if ($MemoryProfile -ne 'None') { $train.MemoryProfile = $MemoryProfile; $train.InformationAction = 'Continue' }   # Auto says what it chose

try {
    $run = Start-DreamBoothTraining @train
}
catch {
    # Only an out-of-memory stop with a saved checkpoint is worth resuming; anything else is the user's to fix.
    if ($_.FullyQualifiedErrorId -notlike 'TrainingOutOfMemoryException*' -or -not $_.Exception.CheckpointPath) { throw }
    Write-Warning $_.Exception.Message
    Write-Host "Resuming from $($_.Exception.CheckpointPath) with less memory."
    $run = Resume-DreamBoothTraining -Path $OutputDirectory -GradientCheckpointing -OffloadOptimizerState -SetGradsToNone
}

# (not $model: that is -Model, a [string] parameter, and PowerShell names are case-insensitive)
$trained = $run | Where-Object { $_ -is [DreamBooth.DreamBoothModel] }
$trained | Format-List Path, Steps, FinalLoss, PeakDeviceMemoryGB, @{ n = 'Memory switches'; e = {
    ($_.Settings.GetEnumerator() | Where-Object { $_.Key -in 'GradientCheckpointing', 'GradientCheckpointingMode', 'Use8BitAdam', 'SetGradsToNone', 'OffloadOptimizerState', 'MixedPrecision' } |
        Sort-Object Key | ForEach-Object { "$($_.Key)=$($_.Value)" }) -join ', ' } } | Out-Host
$trained
