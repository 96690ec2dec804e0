#!/usr/bin/env pwsh
<#
.SYNOPSIS
    The README's first command runs this after the build: a short DreamBooth run with prior preservation on the tiny
    Stable Diffusion pipeline that ships with the repository, then inference from the result.
.DESCRIPTION
    Copy it and point -Model at a real Stable Diffusion folder (diffusers layout), -InstanceDataDirectory at 3–5
    photos of your subject, and raise -Resolution (512), -MaxTrainSteps (400–800) and -NumClassImages (100–200).
#>
param(
    [string] $Model = (Join-Path $PSScriptRoot '../tests/fixtures/tiny-sd'),
    [string] $InstanceDataDirectory = (Join-Path $PSScriptRoot 'data/sks-toy'),
    [string] $WorkDirectory = (Join-Path $PSScriptRoot '../out/quickstart')
)
$ErrorActionPreference = 'Stop'
Import-Module (Join-Path $PSScriptRoot '../out/DreamBooth/DreamBooth.psd1')

Get-DreamBoothEnvironment | Format-List ModuleVersion, TorchSharpVersion, LibTorchVersion, Backend, Devices, Threads

if (Test-Path $WorkDirectory) { Remove-Item -Recurse -Force $WorkDirectory }
$output = Join-Path $WorkDirectory 'sks-toy-model'
$sw = [Diagnostics.Stopwatch]::StartNew()

Write-Host "`n== DreamBooth training (tiny pipeline, prior preservation, class images generated first)" -ForegroundColor Cyan
$run = Start-DreamBoothTraining -Model $Model `
    -InstanceDataDirectory $InstanceDataDirectory -InstancePrompt 'a photo of sks toy' `
    -WithPriorPreservation -ClassDataDirectory (Join-Path $WorkDirectory 'class-toy') -ClassPrompt 'a photo of toy' `
    -NumClassImages 4 -SampleBatchSize 2 `
    -Resolution 64 -TrainBatchSize 1 -LearningRate 1e-4 -MaxTrainSteps 6 `
    -CheckpointingSteps 3 -CheckpointsTotalLimit 2 `
    -ValidationPrompt 'a photo of sks toy on the beach' -NumValidationImages 1 -ValidationSteps 6 `
    -Seed 1234 -OutputDirectory $output -Verbose:$false

$run | Format-Table -AutoSize @{ n = 'Type'; e = { $_.GetType().Name } }, Path, @{ n = 'Step'; e = { if ($_.Step) { $_.Step } else { $_.Steps } } }
$trained = $run | Where-Object { $_ -is [DreamBooth.DreamBoothModel] }

Write-Host "== The run's loss per step (also a TensorBoard event file: tensorboard --logdir $($trained.Path)/logs)" -ForegroundColor Cyan
Import-Csv (Join-Path $trained.LogDirectory 'training_log.csv') | Format-Table -AutoSize step, epoch, loss, lr
Write-Host "== Its checkpoints (Get-DreamBoothCheckpoint; pipe one into Resume-DreamBoothTraining to go on)" -ForegroundColor Cyan
Get-DreamBoothCheckpoint $output | Format-Table -AutoSize

Write-Host "== Inference from the trained model" -ForegroundColor Cyan
$images = $trained | Invoke-DreamBoothInference -Prompt 'a photo of sks toy in a garden', 'a photo of sks toy on a table' `
    -Steps 10 -Seed 7 -Scheduler 'dpm++2m' -OutputDirectory (Join-Path $WorkDirectory 'images')
$images | Format-Table -AutoSize Path, Prompt, Seed, Steps, Scheduler, Width, Height

Write-Host "== Image to image, and inpainting, from one of the photos (-InitImage, -Strength, -MaskImage)" -ForegroundColor Cyan
$photo = Get-ChildItem $InstanceDataDirectory -Filter *.png | Select-Object -First 1
$mask = Join-Path $PSScriptRoot '../tests/fixtures/img2img/inpaint/mask.png'
@(
    $trained | Invoke-DreamBoothInference -Prompt 'a painting of sks toy' -InitImage $photo.FullName -Strength 0.6 -Steps 10 -Seed 7 -OutputDirectory (Join-Path $WorkDirectory 'images')
    $trained | Invoke-DreamBoothInference -Prompt 'a photo of sks toy' -InitImage $photo.FullName -MaskImage $mask -Steps 10 -Seed 7 -OutputDirectory (Join-Path $WorkDirectory 'images')
) | Format-Table -AutoSize Path, Prompt, Strength, @{ n = 'Mask'; e = { $_.MaskImage -and (Split-Path $_.MaskImage -Leaf) } }, Width, Height

Write-Host "== What the trained model is (Get-DreamBoothModel)" -ForegroundColor Cyan
Get-DreamBoothModel $Model, $trained.Path | Format-Table -AutoSize

Write-Host ("Quick start finished in {0:N0} s. Model: {1}" -f $sw.Elapsed.TotalSeconds, $trained.Path) -ForegroundColor Green
