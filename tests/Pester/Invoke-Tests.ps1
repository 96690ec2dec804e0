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
@{ Passed = $result.PassedCount; Failed = $failed; Skipped = $result.SkippedCount } | ConvertTo-Json | Set-Content $SummaryPath
Write-Host "pester: $($result.PassedCount) passed, $failed failed, $($result.SkippedCount) skipped"
exit ([int]($failed -gt 0))
