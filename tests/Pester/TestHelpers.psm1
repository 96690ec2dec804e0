# Shared helpers for the Pester suite.
$script:RepoRoot = (Resolve-Path (Join-Path $PSScriptRoot '../..')).Path

function Get-RepoRoot { $script:RepoRoot }
function Get-StagedModulePath { Join-Path $script:RepoRoot 'out/DreamBooth/DreamBooth.psd1' }
function Get-TinyModelPath { Join-Path $script:RepoRoot 'tests/fixtures/tiny-sd' }

function New-TestDirectory([string] $Name = 'db') {
    $p = Join-Path ([IO.Path]::GetTempPath()) ("$Name-" + [Guid]::NewGuid().ToString('N').Substring(0, 8))
    New-Item -ItemType Directory -Path $p | Out-Null
    $p
}

Export-ModuleMember -Function *
