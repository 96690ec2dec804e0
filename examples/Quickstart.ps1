#!/usr/bin/env pwsh
# The README's first command runs this after the build: it shows the engine is alive.
$ErrorActionPreference = 'Stop'
Import-Module (Join-Path $PSScriptRoot '../out/DreamBooth/DreamBooth.psd1')
Get-DreamBoothEnvironment
