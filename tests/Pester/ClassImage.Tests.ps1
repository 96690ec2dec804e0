BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-StagedModulePath) -Force
    $script:dir = Join-Path (New-TestDirectory 'class') 'dog'
    $script:common = @{ Model = (Get-TinyModelPath); ClassPrompt = 'a photo of dog'; OutputDirectory = $dir; Steps = 2; Width = 64; Height = 64; BatchSize = 2; Seed = 5 }
}
AfterAll { Remove-Item -Recurse -Force (Split-Path $dir) -ErrorAction SilentlyContinue }

Describe 'New-DreamBoothClassImage' {
    It '-WhatIf generates nothing' {
        New-DreamBoothClassImage @common -Count 2 -WhatIf | Should -BeNullOrEmpty
        @(Get-ChildItem $dir -File -ErrorAction SilentlyContinue) | Should -HaveCount 0
    }

    It 'generates exactly the shortfall and says so in the verbose stream' {
        New-Item -ItemType Directory -Force $dir | Out-Null
        Copy-Item (Join-Path (Get-InstanceImagesPath) 'toy-1.png') (Join-Path $dir 'existing.png')
        Set-Content (Join-Path $dir 'notes.txt') 'not an image'
        $verbose = $( $images = New-DreamBoothClassImage @common -Count 3 -Verbose ) 4>&1
        ($verbose | Out-String) | Should -Match 'found 1, generating 2'
        $images | Should -HaveCount 2
        $images | Should -BeOfType ([DreamBooth.DreamBoothImage])
        $images.Prompt | Should -Be @('a photo of dog', 'a photo of dog')
        @(Get-ChildItem $dir -Filter *.png) | Should -HaveCount 3
    }

    It 'generates and emits nothing when the folder already has enough' {
        $verbose = $( $images = New-DreamBoothClassImage @common -Count 3 -Verbose ) 4>&1
        ($verbose | Out-String) | Should -Match 'found 3, generating 0'
        $images | Should -BeNullOrEmpty
        @(Get-ChildItem $dir -Filter *.png) | Should -HaveCount 3
    }

    # Stop() on a pipeline in a second runspace of this process, as a host's Ctrl+C does.
    It 'stops on Ctrl+C without leaving a partial image, and a rerun fills the folder' {
        $stopDir = Join-Path (Split-Path $dir) 'stopped'
        $options = $common.Clone(); $options.OutputDirectory = $stopDir; $options.Count = 40; $options.Steps = 50; $options.BatchSize = 1
        $r = Invoke-AndStop -Script {
            param($Module, $Options)
            Import-Module $Module
            New-DreamBoothClassImage @Options
        } -Arguments @{ Module = (Get-StagedModulePath); Options = $options } `
          -When { param($ps) @(Get-ChildItem $stopDir -Filter *.png -ErrorAction SilentlyContinue).Count -ge 1 } -TimeoutSeconds 120 `
          -AfterStop "@(Get-ChildItem '$stopDir' -Filter *.png).Count"
        $r.Errors | Should -BeNullOrEmpty
        $r.State | Should -Be 'Stopped'
        $kept = $r.AfterStop[0]
        $kept | Should -BeGreaterOrEqual 1
        $kept | Should -BeLessThan 40
        # Every file is a whole PNG (written atomically): no temp names, each ends with its IEND chunk.
        @(Get-ChildItem $stopDir -Force | Where-Object Extension -ne '.png') | Should -HaveCount 0
        foreach ($png in Get-ChildItem $stopDir -Filter *.png) {
            $bytes = [IO.File]::ReadAllBytes($png.FullName)
            [Text.Encoding]::ASCII.GetString($bytes, $bytes.Length - 8, 4) | Should -Be 'IEND'
        }
        $options.Count = $kept + 1; $options.Steps = 2
        $more = New-DreamBoothClassImage @options
        $more | Should -HaveCount 1
        @(Get-ChildItem $stopDir -Filter *.png) | Should -HaveCount ($kept + 1)
    }

    It 'is also New-ClassImages' {
        (Get-Alias New-ClassImages).ResolvedCommandName | Should -Be 'New-DreamBoothClassImage'
    }
}
