# Shared helpers for the Pester suite.
$script:RepoRoot = (Resolve-Path (Join-Path $PSScriptRoot '../..')).Path

function Get-RepoRoot { $script:RepoRoot }
function Get-StagedModulePath { Join-Path $script:RepoRoot 'out/DreamBooth/DreamBooth.psd1' }
function Get-TinyModelPath { Join-Path $script:RepoRoot 'tests/fixtures/tiny-sd' }
function Get-InstanceImagesPath { Join-Path $script:RepoRoot 'examples/data/sks-toy' }

function New-TestDirectory([string] $Name = 'db') {
    $p = Join-Path ([IO.Path]::GetTempPath()) ("$Name-" + [Guid]::NewGuid().ToString('N').Substring(0, 8))
    New-Item -ItemType Directory -Path $p | Out-Null
    $p
}

# The text chunks (tEXt and uncompressed iTXt) of a PNG file, as a hashtable keyword -> text.
function Read-PngText([string] $Path) {
    $bytes = [IO.File]::ReadAllBytes($Path)
    $text = @{}
    $pos = 8
    while ($pos + 8 -le $bytes.Length) {
        $len = ([int]$bytes[$pos] -shl 24) -bor ([int]$bytes[$pos + 1] -shl 16) -bor ([int]$bytes[$pos + 2] -shl 8) -bor [int]$bytes[$pos + 3]
        $type = [Text.Encoding]::ASCII.GetString($bytes, $pos + 4, 4)
        $data = [byte[]]::new($len); [Array]::Copy($bytes, $pos + 8, $data, 0, $len)
        if ($type -eq 'tEXt') {
            $z = [Array]::IndexOf($data, [byte]0)
            $text[[Text.Encoding]::Latin1.GetString($data, 0, $z)] = [Text.Encoding]::Latin1.GetString($data, $z + 1, $len - $z - 1)
        } elseif ($type -eq 'iTXt') {
            $z = [Array]::IndexOf($data, [byte]0)
            $key = [Text.Encoding]::Latin1.GetString($data, 0, $z)
            $p = $z + 3                                   # compression flag, method
            $p = [Array]::IndexOf($data, [byte]0, $p) + 1 # language tag
            $p = [Array]::IndexOf($data, [byte]0, $p) + 1 # translated keyword
            $text[$key] = [Text.Encoding]::UTF8.GetString($data, $p, $len - $p)
        }
        if ($type -eq 'IEND') { break }
        $pos += 12 + $len
    }
    $text
}

# Runs $Script in a fresh runspace of this process (as a host does), calls Stop() (Ctrl+C) once $When (given the
# PowerShell object; polled every 200 ms) is true, then runs $AfterStop in the same runspace; returns what happened.
function Invoke-AndStop([scriptblock] $Script, [hashtable] $Arguments = @{}, [scriptblock] $When, [double] $TimeoutSeconds = 120, [string] $AfterStop = '1 + 1') {
    $ps = [powershell]::Create()
    try {
        $null = $ps.AddScript($Script.ToString())
        foreach ($k in $Arguments.Keys) { $null = $ps.AddParameter($k, $Arguments[$k]) }
        $handle = $ps.BeginInvoke()
        $sw = [Diagnostics.Stopwatch]::StartNew()
        while (-not $handle.IsCompleted -and -not (& $When $ps) -and $sw.Elapsed.TotalSeconds -lt $TimeoutSeconds) { Start-Sleep -Milliseconds 200 }
        # Index, don't enumerate: enumerating a running pipeline's PSDataCollection blocks until the pipeline ends.
        $errors = @(for ($i = 0; $i -lt $ps.Streams.Error.Count; $i++) { "$($ps.Streams.Error[$i])" })
        $stopAt = $sw.Elapsed
        $stop = $ps.BeginStop($null, $null)
        while (-not $stop.IsCompleted -and ($sw.Elapsed - $stopAt).TotalSeconds -lt 60) { Start-Sleep -Milliseconds 100 }
        $latency = $sw.Elapsed - $stopAt
        $state = $ps.InvocationStateInfo.State
        # The same runspace must still run commands after the stop.
        $ps.Commands.Clear()
        $after = $ps.AddScript($AfterStop).Invoke()
        [pscustomobject]@{ State = $state; StopLatency = $latency; Errors = $errors; AfterStop = $after }
    } finally { $ps.Dispose() }
}

Export-ModuleMember -Function *
