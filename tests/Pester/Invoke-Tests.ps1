#!/usr/bin/env pwsh
# Runs the Pester suite against the staged module (out/DreamBooth) and writes a pass/fail summary for build.ps1.
param(
    [Parameter(Mandatory)] [string] $PesterPath,
    [Parameter(Mandatory)] [string] $SummaryPath
)
$ErrorActionPreference = 'Stop'
Import-Module $PesterPath -MinimumVersion 5.7.1
$config = New-PesterConfiguration
$config.Run.Path = $PSScriptRoot
$config.Run.PassThru = $true
$config.Output.Verbosity = 'Detailed'
$config.TestResult.Enabled = $true
$config.TestResult.OutputFormat = 'NUnitXml'
$config.TestResult.OutputPath = Join-Path (Split-Path $SummaryPath) 'pester.xml'
$result = Invoke-Pester -Configuration $config
$failed = $result.FailedCount + $result.FailedBlocksCount + $result.FailedContainersCount
$failures = @($result.Failed | ForEach-Object { "$($_.ExpandedPath)`n    $(($_.ErrorRecord | Select-Object -First 1).Exception.Message)" }) +
    @($result.FailedBlocks + $result.FailedContainers | ForEach-Object { "$($_.Name ?? $_.Item): $(($_.ErrorRecord | Select-Object -First 1).Exception.Message)" })
@{ Passed = $result.PassedCount; Failed = $failed; Skipped = $result.SkippedCount; Failures = $failures } | ConvertTo-Json | Set-Content $SummaryPath
Write-Host "pester: $($result.PassedCount) passed, $failed failed, $($result.SkippedCount) skipped"
exit ([int]($failed -gt 0))
