#!/usr/bin/env pwsh
<#
.SYNOPSIS
    Builds the DreamBooth module (out/DreamBooth), and optionally runs the quick-start demo or every test.
.EXAMPLE
    dotnet tool restore && dotnet pwsh ./build.ps1 -Demo      # build, then a short DreamBooth run + inference
.EXAMPLE
    dotnet tool restore && dotnet pwsh ./build.ps1 -Test      # build, then engine (xunit) and cmdlet (Pester) tests
#>
[CmdletBinding()]
param(
    # Debug by default: SixLabors.ImageSharp 4 refuses Release builds without a license key (see README).
    [ValidateSet('Debug', 'Release')] [string] $Configuration = 'Debug',
    # TorchSharp backend: cpu (default), cuda-windows or cuda-linux.
    [ValidateSet('cpu', 'cuda-windows', 'cuda-linux')] [string] $Backend = 'cpu',
    [string] $SixLaborsLicenseKey = $env:SIXLABORS_LICENSE_KEY,
    [switch] $Test,
    [switch] $Demo,
    # Also run the slow engine tests (full-size SD-1.4-shaped models).
    [switch] $IncludeSlow,
    [switch] $Clean
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest
$root = $PSScriptRoot
$pwshExe = Join-Path $PSHOME ($IsWindows ? 'pwsh.exe' : 'pwsh')

if ($Clean) { Remove-Item -Recurse -Force -ErrorAction SilentlyContinue (Join-Path $root 'out'), (Get-ChildItem $root -Recurse -Directory -Include bin, obj).FullName }

$buildArgs = @('build', (Join-Path $root 'DreamBoothPS.sln'), '-c', $Configuration, "-p:DreamBoothBackend=$Backend", '-nologo', '-v:minimal')
if ($Configuration -eq 'Release') {
    if (-not $SixLaborsLicenseKey) { throw 'Release builds need a Six Labors license key (ImageSharp 4): pass -SixLaborsLicenseKey or set SIXLABORS_LICENSE_KEY, or build Debug (the default).' }
    $buildArgs += "-p:SixLaborsLicenseKey=$SixLaborsLicenseKey"
}
$sw = [Diagnostics.Stopwatch]::StartNew()
& dotnet @buildArgs
if ($LASTEXITCODE) { throw "dotnet build failed ($LASTEXITCODE)." }
Write-Host ("Build finished in {0:N1} s: module in {1}" -f $sw.Elapsed.TotalSeconds, (Join-Path $root 'out/DreamBooth'))

if ($Demo) {
    & $pwshExe -NoProfile -NonInteractive -File (Join-Path $root 'examples/Quickstart.ps1')
    if ($LASTEXITCODE) { exit $LASTEXITCODE }
}

if ($Test) {
    $results = Join-Path $root 'out/TestResults'
    New-Item -ItemType Directory -Force $results | Out-Null
    Remove-Item (Join-Path $results '*') -Force -ErrorAction SilentlyContinue

    # 1. Engine unit tests (xunit).
    $filter = $IncludeSlow ? '' : 'Category!=Slow'
    $testArgs = @('test', (Join-Path $root 'tests/Engine/DreamBooth.Engine.Tests.csproj'), '--no-build', '-c', $Configuration,
        '--logger', 'trx;LogFileName=engine.trx', '--logger', 'console;verbosity=normal', '--results-directory', $results)
    if ($filter) { $testArgs += @('--filter', $filter) }
    & dotnet @testArgs
    $xunitPassed = 0; $xunitFailed = 0; $failures = @()
    $trx = Join-Path $results 'engine.trx'
    if (Test-Path $trx) {
        $c = ([xml](Get-Content -Raw $trx)).TestRun.ResultSummary.Counters
        $xunitPassed = [int]$c.passed; $xunitFailed = [int]$c.failed + [int]$c.error + [int]$c.timeout + [int]$c.aborted
        # Named again at the end, so that a log's tail (all some CI systems keep) says what failed and why.
        $ns = @{ t = 'http://microsoft.com/schemas/VisualStudio/TeamTest/2010' }
        $failures = @(Select-Xml -Path $trx -Namespace $ns -XPath '//t:UnitTestResult[@outcome!="Passed" and @outcome!="NotExecuted"]' |
            ForEach-Object {
                $message = $_.Node.Output.ErrorInfo.Message
                $frame = ($_.Node.Output.ErrorInfo.StackTrace -split "`n" | Where-Object { $_ -match ':line \d+' } | Select-Object -First 1)
                "xunit: $($_.Node.testName)`n    $(($message -split "`n" | Select-Object -First 6) -join "`n    ")`n    $("$frame".Trim())"
            })
    } else { $xunitFailed = 1; Write-Warning 'xunit produced no result file.' }
    Write-Host "xunit: $xunitPassed passed, $xunitFailed failed"

    # 2. Cmdlet tests (Pester 5 from NuGet), in a fresh pwsh: a binary module cannot be unloaded.
    & dotnet restore (Join-Path $root 'tests/Pester/Pester.proj') -nologo -v:quiet
    if ($LASTEXITCODE) { throw 'Could not restore Pester from NuGet.' }
    $nuget = $env:NUGET_PACKAGES ? $env:NUGET_PACKAGES : (Join-Path ([Environment]::GetFolderPath('UserProfile')) '.nuget/packages')
    $pester = Join-Path $nuget 'pester/5.7.1/tools/Pester.psd1'
    $summary = Join-Path $results 'pester-summary.json'
    & $pwshExe -NoProfile -NonInteractive -File (Join-Path $root 'tests/Pester/Invoke-Tests.ps1') -PesterPath $pester -SummaryPath $summary
    $pesterPassed = 0; $pesterFailed = 0
    if (Test-Path $summary) {
        $s = Get-Content -Raw $summary | ConvertFrom-Json
        $pesterPassed = [int]$s.Passed; $pesterFailed = [int]$s.Failed
        $failures += @($s.Failures | ForEach-Object { "pester: $_" })
    } else { $pesterFailed = 1; Write-Warning 'Pester produced no summary.' }

    $passed = $xunitPassed + $pesterPassed; $failed = $xunitFailed + $pesterFailed
    if ($failures) { Write-Host "Failed:"; $failures | ForEach-Object { Write-Host "  $_" } }
    Write-Host ("Tests finished in {0:N0} s" -f $sw.Elapsed.TotalSeconds)
    Write-Host "$passed passed, $failed failed"
    exit ([int]($failed -gt 0))
}
