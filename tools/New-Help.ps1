#!/usr/bin/env pwsh
<#
.SYNOPSIS
    Writes src/Module/en-US/DreamBooth.dll-Help.xml (MAML) from tools/help/HelpText.psd1 and the cmdlets' metadata.
.DESCRIPTION
    No platyPS here: parameter names, types, positions and pipeline input come from the built module (Get-Command),
    the prose from HelpText.psd1. Build first; run from a fresh pwsh: dotnet pwsh ./tools/New-Help.ps1
#>
$ErrorActionPreference = 'Stop'
$root = Split-Path $PSScriptRoot
Import-Module (Join-Path $root 'out/DreamBooth/DreamBooth.psd1')
$text = Import-PowerShellDataFile (Join-Path $PSScriptRoot 'help/HelpText.psd1')
$common = [System.Management.Automation.Cmdlet]::CommonParameters + [System.Management.Automation.Cmdlet]::OptionalCommonParameters
function Esc([string] $s) { [Security.SecurityElement]::Escape($s) }
function Para([string] $s) { "<maml:para>$(Esc $s)</maml:para>" }

$sb = [Text.StringBuilder]::new()
$null = $sb.AppendLine('<?xml version="1.0" encoding="utf-8"?>')
$null = $sb.AppendLine('<helpItems schema="maml" xmlns="http://msh">')
foreach ($cmd in Get-Command -Module DreamBooth -CommandType Cmdlet | Sort-Object Name) {
    $t = $text.Cmdlets[$cmd.Name]
    if (-not $t) { throw "HelpText.psd1 has no entry for $($cmd.Name)." }
    $verb, $noun = $cmd.Name -split '-', 2
    $params = $cmd.Parameters.Values | Where-Object { $_.Name -notin $common }
    function Describe($p) {
        $d = $t.Parameters[$p.Name]; if (-not $d) { $d = $text.Common[$p.Name] }
        if (-not $d) { throw "No description for $($cmd.Name) -$($p.Name)." }
        $d
    }
    function ParamXml($p, $set) {
        $a = if ($set) { $p.ParameterSets[$set] } else { $p.ParameterSets.Values | Select-Object -First 1 }
        $pipe = if ($a.ValueFromPipeline -and $a.ValueFromPipelineByPropertyName) { 'True (ByValue, ByPropertyName)' } elseif ($a.ValueFromPipeline) { 'True (ByValue)' } elseif ($a.ValueFromPipelineByPropertyName) { 'True (ByPropertyName)' } else { 'False' }
        $pos = if ($a.Position -ge 0) { $a.Position + 1 } else { 'named' }
        $type = $p.ParameterType.Name
        "<command:parameter required=`"$($a.IsMandatory.ToString().ToLower())`" globbing=`"false`" pipelineInput=`"$pipe`" position=`"$pos`" aliases=`"$(($p.Aliases -join ', '))`"><maml:name>$($p.Name)</maml:name><maml:description>$(Para (Describe $p))</maml:description><command:parameterValue required=`"true`">$type</command:parameterValue><dev:type><maml:name>$($p.ParameterType.FullName)</maml:name></dev:type></command:parameter>"
    }
    $null = $sb.AppendLine("<command:command xmlns:maml=`"http://schemas.microsoft.com/maml/2004/10`" xmlns:command=`"http://schemas.microsoft.com/maml/dev/command/2004/10`" xmlns:dev=`"http://schemas.microsoft.com/maml/dev/2004/10`">")
    $null = $sb.AppendLine("<command:details><command:name>$($cmd.Name)</command:name><command:verb>$verb</command:verb><command:noun>$noun</command:noun><maml:description>$(Para $t.Synopsis)</maml:description></command:details>")
    $null = $sb.AppendLine("<maml:description>$(Para $t.Description)</maml:description>")
    $null = $sb.AppendLine('<command:syntax>')
    foreach ($set in $cmd.ParameterSets) {
        $null = $sb.AppendLine("<command:syntaxItem><maml:name>$($cmd.Name)</maml:name>")
        foreach ($sp in $set.Parameters | Where-Object { $_.Name -notin $common }) { $null = $sb.AppendLine((ParamXml $cmd.Parameters[$sp.Name] $set.Name)) }
        $null = $sb.AppendLine('</command:syntaxItem>')
    }
    $null = $sb.AppendLine('</command:syntax><command:parameters>')
    foreach ($p in $params) { $null = $sb.AppendLine((ParamXml $p $null)) }
    $null = $sb.AppendLine('</command:parameters>')
    $outs = $cmd.OutputType | ForEach-Object { "<command:returnValue><dev:type><maml:name>$($_.Name)</maml:name></dev:type></command:returnValue>" }
    $null = $sb.AppendLine("<command:returnValues>$($outs -join '')</command:returnValues><command:examples>")
    $i = 0
    foreach ($ex in $t.Examples) {
        $i++
        $null = $sb.AppendLine("<command:example><maml:title>-------------------------- Example $i --------------------------</maml:title><dev:code>$(Esc $ex.Code)</dev:code><dev:remarks>$(Para $ex.Remarks)</dev:remarks></command:example>")
    }
    $null = $sb.AppendLine('</command:examples></command:command>')
}
$null = $sb.AppendLine('</helpItems>')
$dest = Join-Path $root 'src/Module/en-US/DreamBooth.dll-Help.xml'
New-Item -ItemType Directory -Force (Split-Path $dest) | Out-Null
[IO.File]::WriteAllText($dest, $sb.ToString())
Write-Host "Wrote $dest"
