BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-StagedModulePath) -Force
    $script:tiny = Get-TinyModelPath
    $script:out = New-TestDirectory 'infer'
    $script:common = @{ Model = $tiny; Steps = 2; Width = 64; Height = 64; OutputDirectory = $out }
    # Loads the tiny pipeline into the cache once for the whole file.
    $script:first = Invoke-DreamBoothInference @common -Prompt 'a photo of a dog' -Seed 42 -Scheduler 'dpm++2m'
}
AfterAll { Clear-DreamBoothModelCache -Confirm:$false; Remove-Item -Recurse -Force $out -ErrorAction SilentlyContinue }

Describe 'Invoke-DreamBoothInference' {
    It 'writes a PNG and emits one DreamBoothImage with the documented properties' {
        $first | Should -HaveCount 1
        $first | Should -BeOfType ([DreamBooth.DreamBoothImage])
        Test-Path $first.Path | Should -BeTrue
        $first.Path | Should -BeLike "$out*.png"
        $first.Prompt | Should -Be 'a photo of a dog'
        $first.Seed | Should -Be 42
        $first.Steps | Should -Be 2
        $first.Width | Should -Be 64
        $first.Height | Should -Be 64
        $first.GuidanceScale | Should -Be 7.5
        $first.Scheduler | Should -Be 'DPMSolverMultistepScheduler'
        $first.Model | Should -Be $tiny
        $first.Duration | Should -BeGreaterThan ([TimeSpan]::Zero)
        [IO.File]::ReadAllBytes($first.Path)[1..3] | Should -Be ([byte[]][char[]]'PNG')
    }

    It 'stores the generation parameters in PNG text chunks' {
        $text = Read-PngText $first.Path
        $text['dreambooth:prompt'] | Should -Be 'a photo of a dog'
        $text['dreambooth:seed'] | Should -Be '42'
        $text['dreambooth:steps'] | Should -Be '2'
        $text['dreambooth:size'] | Should -Be '64x64'
        $text['dreambooth:scheduler'] | Should -Be 'DPMSolverMultistepScheduler'
        $text['parameters'] | Should -Match '^a photo of a dog\nSteps: 2, Sampler: .+, CFG scale: 7\.5, Seed: 42, Size: 64x64'
    }

    It 'formats images as a table with Size' {
        $s = $first | Out-String -Width 400
        $s | Should -Match 'Path\s+Prompt\s+Seed\s+Steps\s+Scheduler\s+Size'
        $s | Should -Match '64x64'
    }

    It 'takes prompts from the pipeline, one image each' {
        $images = 'a cat', 'a bird' | Invoke-DreamBoothInference @common -Seed 1
        $images | Should -HaveCount 2
        $images.Prompt | Should -Be @('a cat', 'a bird')
        $images | ForEach-Object { Test-Path $_.Path | Should -BeTrue }
    }

    It '-InitImage starts from a picture (image to image) at its size, records it, and repeats when the image is piped back' {
        $toy = Join-Path (Get-RepoRoot) 'examples/data/sks-toy/toy-1.png'
        $img = Invoke-DreamBoothInference -Model $tiny -Prompt 'a photo of sks dog' -InitImage $toy -Strength 0.6 -Steps 5 -Seed 3 -OutputDirectory $out
        $img.Width | Should -Be 96      # the toy photo's own size
        $img.Height | Should -Be 80
        $img.InitImage | Should -Be (Resolve-Path $toy).Path
        $img.Strength | Should -Be 0.6
        $text = Read-PngText $img.Path
        $text['dreambooth:init_image'] | Should -Be (Resolve-Path $toy).Path
        $text['parameters'] | Should -Match 'Denoising strength: 0\.6$'
        $again = $img | Invoke-DreamBoothInference -OutputDirectory $out
        $again.Strength | Should -Be 0.6
        (Get-FileHash $again.Path).Hash | Should -Be (Get-FileHash $img.Path).Hash
        # A text-to-image result piped back stays text to image.
        $txt = $first | Invoke-DreamBoothInference -OutputDirectory $out
        $txt | Should -HaveCount 1
        $txt.InitImage | Should -BeNullOrEmpty
        (Get-FileHash $txt.Path).Hash | Should -Be (Get-FileHash $first.Path).Hash
    }

    It '-MaskImage paints the white part of the mask anew (inpainting), at strength 1 unless told, and says so on the image' {
        $toy = Join-Path (Get-RepoRoot) 'examples/data/sks-toy/toy-1.png'
        $mask = Join-Path (Get-RepoRoot) 'tests/fixtures/img2img/inpaint/mask.png'
        $img = Invoke-DreamBoothInference -Model $tiny -Prompt 'a photo of sks dog' -InitImage $toy -MaskImage $mask -Steps 3 -Seed 3 -OutputDirectory $out
        $img.Width | Should -Be 96
        $img.Strength | Should -Be 1
        $img.MaskImage | Should -Be (Resolve-Path $mask).Path
        (Read-PngText $img.Path)['dreambooth:mask_image'] | Should -Be (Resolve-Path $mask).Path
        $again = $img | Invoke-DreamBoothInference -OutputDirectory $out
        (Get-FileHash $again.Path).Hash | Should -Be (Get-FileHash $img.Path).Hash
        $e = { Invoke-DreamBoothInference @common -Prompt 'x' -MaskImage $mask } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'InvalidArgument'
        $e = { Invoke-DreamBoothInference @common -Prompt 'x' -InitImage $toy -MaskImage (Join-Path $out 'no-mask.png') } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'ObjectNotFound'
    }

    It '-InitImage that is missing or not a picture, and -Strength that leaves no step, stop before the model loads' {
        $e = { Invoke-DreamBoothInference @common -Prompt 'x' -InitImage (Join-Path $out 'nope.png') } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $bad = Join-Path $out 'not-a-picture.png'
        Set-Content $bad 'hello'
        $e = { Invoke-DreamBoothInference @common -Prompt 'x' -InitImage $bad } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'InvalidData'
        $toy = Join-Path (Get-RepoRoot) 'examples/data/sks-toy/toy-1.png'
        $e = { Invoke-DreamBoothInference @common -Prompt 'x' -InitImage $toy -Strength 0.1 -Steps 5 } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'InvalidArgument'
        $e.Exception.Message | Should -Match 'leaves no step'
        $e = { Invoke-DreamBoothInference @common -Prompt 'x' -Strength 0.5 } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'InvalidArgument'
        $e = { Invoke-DreamBoothInference @common -Prompt 'x' -InitImage $toy -Strength 1.5 } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'InvalidArgument'
    }

    It '-GuidanceRescale changes the image, is recorded, and repeats when the image is piped back' {
        $plain = Invoke-DreamBoothInference @common -Prompt 'a photo of sks dog' -Seed 5 -Scheduler ddim
        $rescaled = Invoke-DreamBoothInference @common -Prompt 'a photo of sks dog' -Seed 5 -Scheduler ddim -GuidanceRescale 0.7
        $rescaled.GuidanceRescale | Should -Be 0.7
        (Read-PngText $rescaled.Path)['dreambooth:guidance_rescale'] | Should -Be '0.7'
        (Get-FileHash $rescaled.Path).Hash | Should -Not -Be (Get-FileHash $plain.Path).Hash
        (Get-FileHash ($rescaled | Invoke-DreamBoothInference -OutputDirectory $out).Path).Hash | Should -Be (Get-FileHash $rescaled.Path).Hash
    }

    It 'gives identical PNG bytes for the same seed' {
        $a = Invoke-DreamBoothInference @common -Prompt 'same' -Seed 7
        $b = Invoke-DreamBoothInference @common -Prompt 'same' -Seed 7
        $a.Path | Should -Not -Be $b.Path
        (Get-FileHash $a.Path).Hash | Should -Be (Get-FileHash $b.Path).Hash
        $c = Invoke-DreamBoothInference @common -Prompt 'same' -Seed 8
        (Get-FileHash $c.Path).Hash | Should -Not -Be (Get-FileHash $a.Path).Hash
    }

    It 'accepts a model object from the pipeline (its Path binds to -Model)' {
        $img = [pscustomobject]@{ Path = $tiny } | Invoke-DreamBoothInference -Prompt 'x' -Steps 2 -Width 64 -Height 64 -Seed 3 -OutputDirectory $out
        $img.Model | Should -Be $tiny
        $model = [DreamBooth.DreamBoothModel]@{ Path = $tiny }
        ($model | Invoke-DreamBoothInference -Prompt 'y' -Steps 2 -Width 64 -Height 64 -Seed 3 -OutputDirectory $out).Model | Should -Be $tiny
    }

    It 'keeps the model cached between calls' {
        Clear-DreamBoothModelCache -Confirm:$false
        $null = Invoke-DreamBoothInference @common -Prompt 'warm' -Seed 1 -Steps 2
        Clear-DreamBoothModelCache -PassThru -Confirm:$false | Should -Be 1
        Clear-DreamBoothModelCache -PassThru -Confirm:$false | Should -Be 0
        $null = Invoke-DreamBoothInference @common -Prompt 'warm' -Seed 1 -Steps 2 -NoCache
        Clear-DreamBoothModelCache -PassThru -Confirm:$false | Should -Be 0
    }

    It 'generates in bf16 on the CPU: computed in fp32 arithmetic where the CPU has no bf16 instructions (said with -Verbose), warned about only where slow kernels would run' {
        $env = Get-DreamBoothEnvironment
        $slow = -not $env.CpuBf16Emulated -and $env.CpuBf16Slowdown -gt 8
        $image = Invoke-DreamBoothInference @common -Prompt 'a dog' -Seed 1 -Precision bf16 -NoCache -WarningVariable warnings -WarningAction SilentlyContinue -Verbose 4>&1 |
            Tee-Object -Variable stream | Where-Object { $_ -is [DreamBooth.DreamBoothImage] }
        $image | Should -HaveCount 1
        [bool]($warnings | Where-Object { "$_" -match '-Precision bf16 on this CPU runs .*fallback' }) | Should -Be $slow
        [bool]($stream | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] -and $_.Message -match '-Precision bf16: .*compute in fp32' }) | Should -Be $env.CpuBf16Emulated
    }

    Context 'bad input' {
        It 'a missing model folder is ObjectNotFound' {
            $e = { Invoke-DreamBoothInference -Model (Join-Path $out 'no-such-model') -Prompt x -OutputDirectory $out } | Should -Throw -PassThru
            $e.CategoryInfo.Category | Should -Be 'ObjectNotFound'
            $e.Exception.Message | Should -Match 'does not exist'
        }
        It 'a width that is not a multiple of 8 is InvalidArgument' {
            $e = { Invoke-DreamBoothInference @common -Prompt x -Width 65 } | Should -Throw -PassThru
            $e.CategoryInfo.Category | Should -Be 'InvalidArgument'
            $e.Exception.Message | Should -Match 'multiple of 8'
        }
        It 'a size no memory holds is ResourceUnavailable before the first step, and the session goes on' {
            $e = { Invoke-DreamBoothInference @common -Prompt x -Width 32768 -Height 32768 -Device cpu -Precision fp32 } | Should -Throw -PassThru
            $e.CategoryInfo.Category | Should -Be 'ResourceUnavailable'
            $e.Exception.Message | Should -Match 'smaller -Width and -Height'
            (Invoke-DreamBoothInference @common -Prompt x -Seed 1) | Should -HaveCount 1
        }
        It 'an unknown scheduler is InvalidArgument and lists the known ones' {
            $e = { Invoke-DreamBoothInference @common -Prompt x -Scheduler 'nope' } | Should -Throw -PassThru
            $e.CategoryInfo.Category | Should -Be 'InvalidArgument'
            $e.Exception.Message | Should -Match 'dpm\+\+2m|DPMSolverMultistep'
        }
        It 'a -ClipSkip beyond the text encoder''s layers is InvalidArgument, naming its layer count' {
            $e = { Invoke-DreamBoothInference @common -Prompt x -ClipSkip 40 } | Should -Throw -PassThru
            $e.CategoryInfo.Category | Should -Be 'InvalidArgument'
            $e.Exception.Message | Should -Match 'number of layers \(5\)'
        }
        It '0 steps fails parameter validation' {
            $e = { Invoke-DreamBoothInference @common -Prompt x -Steps 0 } | Should -Throw -PassThru
            $e.FullyQualifiedErrorId | Should -BeLike 'ParameterArgumentValidationError*'
        }
    }

    It 'completes -Scheduler names' {
        $line = "Invoke-DreamBoothInference -Scheduler dpm"
        $r = TabExpansion2 -inputScript $line -cursorColumn $line.Length
        $r.CompletionMatches.CompletionText | Should -Contain "'dpm++2m'"   # quoted: + is special in PowerShell
    }
    It 'completes -Device names on the cmdlets that take one' {
        foreach ($cmd in 'Invoke-DreamBoothInference', 'New-DreamBoothClassImage', 'Start-DreamBoothTraining') {
            $line = "$cmd -Device cu"
            (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText | Should -Contain 'cuda:0' -Because $cmd
        }
    }

    # Stop() on a pipeline in a second runspace of this process, as a host's Ctrl+C does.
    It 'stops cleanly on Ctrl+C and the runspace stays usable' {
        $r = Invoke-AndStop -Script {
            param($Module, $Model, $Out)
            Import-Module $Module
            Invoke-DreamBoothInference -Model $Model -Prompt 'long' -Steps 500 -Width 64 -Height 64 -Seed 1 -OutputDirectory $Out -Count 50
        } -Arguments @{ Module = (Get-StagedModulePath); Model = $tiny; Out = (Join-Path $out 'stopped') } `
          -When { param($ps) $ps.Streams.Progress.Count -ge 4 } -TimeoutSeconds 60 `
          -AfterStop '(Get-DreamBoothEnvironment).Threads'
        $r.Errors | Should -BeNullOrEmpty
        $r.State | Should -Be 'Stopped'
        $r.StopLatency.TotalSeconds | Should -BeLessThan 10
        $r.AfterStop | Should -BeGreaterThan 0
        # This runspace still works, and the stopped one wrote no half image.
        (Invoke-DreamBoothInference @common -Prompt 'after' -Seed 1 -Steps 2) | Should -HaveCount 1
        @(Get-ChildItem (Join-Path $out 'stopped') -Filter *.png -ErrorAction SilentlyContinue) | Should -HaveCount 0
    }
}
