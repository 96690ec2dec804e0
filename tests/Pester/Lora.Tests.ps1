BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-StagedModulePath) -Force

    # Decompressed PNG image data: equal bytes = equal pixels (same encoder), whatever the text metadata says.
    # The decoded 8-bit samples of a non-interlaced 8-bit RGB/RGBA PNG (IDAT inflated, then PNG row filters undone).
    function Get-PngPixels([string] $Path) {
        $bytes = [IO.File]::ReadAllBytes($Path)
        $width = ([int]$bytes[16] -shl 24) -bor ([int]$bytes[17] -shl 16) -bor ([int]$bytes[18] -shl 8) -bor [int]$bytes[19]
        $bpp = if ($bytes[25] -eq 6) { 4 } else { 3 }
        $raw = [Convert]::FromBase64String((Get-PngPixelData $Path))
        $stride = $width * $bpp
        $rows = $raw.Length / ($stride + 1)
        $out = [byte[]]::new($rows * $stride)
        for ($y = 0; $y -lt $rows; $y++) {
            $filter = $raw[$y * ($stride + 1)]
            for ($x = 0; $x -lt $stride; $x++) {
                $v = [int]$raw[$y * ($stride + 1) + 1 + $x]
                $a = if ($x -ge $bpp) { [int]$out[$y * $stride + $x - $bpp] } else { 0 }
                $b = if ($y -gt 0) { [int]$out[($y - 1) * $stride + $x] } else { 0 }
                $c = if ($x -ge $bpp -and $y -gt 0) { [int]$out[($y - 1) * $stride + $x - $bpp] } else { 0 }
                $pred = switch ($filter) {
                    0 { 0 } 1 { $a } 2 { $b } 3 { [Math]::Floor(($a + $b) / 2) }
                    4 { $p = $a + $b - $c; $pa = [Math]::Abs($p - $a); $pb = [Math]::Abs($p - $b); $pc = [Math]::Abs($p - $c)
                        if ($pa -le $pb -and $pa -le $pc) { $a } elseif ($pb -le $pc) { $b } else { $c } }
                }
                $out[$y * $stride + $x] = [byte](($v + $pred) % 256)
            }
        }
        , $out
    }

    function Get-PngPixelData([string] $Path) {
        $bytes = [IO.File]::ReadAllBytes($Path)
        $idat = [IO.MemoryStream]::new()
        $i = 8
        while ($i -lt $bytes.Length) {
            $len = ([int]$bytes[$i] -shl 24) -bor ([int]$bytes[$i + 1] -shl 16) -bor ([int]$bytes[$i + 2] -shl 8) -bor [int]$bytes[$i + 3]
            $type = [Text.Encoding]::ASCII.GetString($bytes, $i + 4, 4)
            if ($type -eq 'IDAT') { $idat.Write($bytes, $i + 8, $len) }
            $i += 12 + $len
        }
        $idat.Position = 0
        $z = [IO.Compression.ZLibStream]::new($idat, [IO.Compression.CompressionMode]::Decompress)
        $out = [IO.MemoryStream]::new(); $z.CopyTo($out)
        [Convert]::ToBase64String($out.ToArray())
    }

    $script:tiny = Get-TinyModelPath
    $script:work = New-TestDirectory 'lora'
    $script:instances = Join-Path (Get-RepoRoot) 'examples/data/sks-toy'
    $script:common = @{
        Model = $tiny; InstanceDataDirectory = $instances; InstancePrompt = 'a photo of sks toy'
        WithPriorPreservation = $true; ClassDataDirectory = (Join-Path $work 'class'); ClassPrompt = 'a photo of toy'
        NumClassImages = 2; SampleBatchSize = 2; Resolution = 32; LearningRate = 1e-2; MaxTrainSteps = 4
        CheckpointingSteps = 2; Seed = 11; LoRA = $true; Rank = 4; SaveKohyaLoRA = $true; Device = 'cpu'
    }
    # Class images given up front (copies of instance photos): generating them would take 50 denoising steps each.
    New-Item -ItemType Directory (Join-Path $work 'class') | Out-Null
    Get-ChildItem $instances -Filter *.png | Select-Object -First 2 | Copy-Item -Destination (Join-Path $work 'class')
    # Cached pipelines: adapters hook on for one call and come off, which these tests also check.
    $script:infer = @{ Prompt = 'a photo of sks toy'; Steps = 2; Seed = 5; Width = 32; Height = 32; Device = 'cpu' }
    $script:run = Start-DreamBoothTraining @common -OutputDirectory (Join-Path $work 'run')
    $script:model = $run | Where-Object { $_ -is [DreamBooth.DreamBoothModel] }
    $script:lora = Join-Path $model.Path 'pytorch_lora_weights.safetensors'
}

AfterAll { Remove-Item -Recurse -Force $work -ErrorAction SilentlyContinue }

Describe 'Start-DreamBoothTraining -LoRA' {
    It 'trains with prior preservation and writes adapters, not a pipeline' {
        $model.Steps | Should -Be 4
        $lora | Should -Exist
        Join-Path $model.Path 'pytorch_lora_weights_kohya.safetensors' | Should -Exist
        Join-Path $model.Path 'unet' | Should -Not -Exist
        (Get-ChildItem (Join-Path $work 'class') -Filter *.png).Count | Should -Be 2
    }

    It 'writes checkpoints holding only adapters and run state (small)' {
        $ckpt = Join-Path $model.Path 'checkpoint-2'
        (Get-ChildItem $ckpt).Name | Sort-Object | Should -Be @('dreambooth_checkpoint.json', 'optimizer.safetensors', 'pytorch_lora_weights.safetensors')
        (Get-Content (Join-Path $ckpt 'dreambooth_checkpoint.json') -Raw | ConvertFrom-Json).lora.rank | Should -Be 4
    }

    It 'resumes bit-identically from a checkpoint' {
        $resumed = Join-Path $work 'resumed'
        New-Item -ItemType Directory $resumed | Out-Null
        Copy-Item -Recurse (Join-Path $model.Path 'checkpoint-2') $resumed
        $null = Resume-DreamBoothTraining -Path $resumed
        (Get-FileHash (Join-Path $resumed 'pytorch_lora_weights.safetensors')).Hash | Should -Be (Get-FileHash $lora).Hash
    }
}

Describe 'Invoke-DreamBoothInference -LoRA' {
    BeforeAll {
        $script:base = Invoke-DreamBoothInference -Model $tiny @infer -OutputDirectory (Join-Path $work 'img-base')
    }

    It 'with scale 0 equals the base model' {
        $zero = Invoke-DreamBoothInference -Model $tiny -LoRA $lora -LoRAScale 0 @infer -OutputDirectory (Join-Path $work 'img-zero')
        Get-PngPixelData $zero.Path | Should -Be (Get-PngPixelData $base.Path)
    }

    It 'applies the adapter (diffusers or kohya file, or the run output as -Model)' {
        $a = Invoke-DreamBoothInference -Model $tiny -LoRA $lora @infer -OutputDirectory (Join-Path $work 'img-a')
        $k = Invoke-DreamBoothInference -Model $tiny -LoRA (Join-Path $model.Path 'pytorch_lora_weights_kohya.safetensors') @infer -OutputDirectory (Join-Path $work 'img-k')
        $o = Invoke-DreamBoothInference -Model $model.Path @infer -OutputDirectory (Join-Path $work 'img-o')
        Get-PngPixelData $a.Path | Should -Not -Be (Get-PngPixelData $base.Path)
        Get-PngPixelData $k.Path | Should -Be (Get-PngPixelData $a.Path)
        $o.Path | Should -Exist
    }

    It 'takes several adapters with a scale each and leaves a cached model unchanged' {
        $null = Invoke-DreamBoothInference -Model $tiny -LoRA $lora, $lora -LoRAScale 0.5, 0.25 @infer -OutputDirectory (Join-Path $work 'img-two')
        $again = Invoke-DreamBoothInference -Model $tiny @infer -OutputDirectory (Join-Path $work 'img-again')
        Get-PngPixelData $again.Path | Should -Be (Get-PngPixelData $base.Path)
    }

    It 'refuses a scale count that does not match' {
        { Invoke-DreamBoothInference -Model $tiny -LoRA $lora -LoRAScale 1, 2 @infer -ErrorAction Stop } | Should -Throw '*one per -LoRA file*'
    }
}

Describe 'Merge-DreamBoothLoRA' {
    It 'bakes the adapter into a full diffusers folder that generates like the adapter' {
        $merged = Merge-DreamBoothLoRA -Model $tiny -LoRA $lora -OutputDirectory (Join-Path $work 'merged')
        $merged | Should -BeOfType ([IO.DirectoryInfo])
        $merged.FullName | Should -Be (Join-Path $work 'merged')
        foreach ($c in 'unet', 'text_encoder', 'vae', 'tokenizer', 'scheduler', 'model_index.json') { Join-Path $merged.FullName $c | Should -Exist }
        $m = Invoke-DreamBoothInference -Model $merged.FullName @infer -OutputDirectory (Join-Path $work 'img-m')
        $a = Invoke-DreamBoothInference -Model $tiny -LoRA $lora @infer -OutputDirectory (Join-Path $work 'img-a2')
        # W + s·BA baked into W and the same delta added at run time are equal up to float32 rounding (the engine
        # test holds them to 1e-5); after 8-bit quantization that shows at most as a level here and there.
        $pm = Get-PngPixels $m.Path; $pa = Get-PngPixels $a.Path
        $pm.Length | Should -Be $pa.Length
        $differ = 0; $worst = 0
        for ($k = 0; $k -lt $pm.Length; $k++) { $d = [Math]::Abs([int]$pm[$k] - [int]$pa[$k]); if ($d) { $differ++; $worst = [Math]::Max($worst, $d) } }
        $worst | Should -BeLessOrEqual 1
        $differ | Should -BeLessOrEqual ($pm.Length / 100)
        # The base model on disk is untouched.
        $b = Invoke-DreamBoothInference -Model $tiny @infer -OutputDirectory (Join-Path $work 'img-b2')
        Get-PngPixelData $b.Path | Should -Be (Get-PngPixelData $base.Path)
    }

    It 'refuses a non-empty output folder without -Force' {
        { Merge-DreamBoothLoRA -Model $tiny -LoRA $lora -OutputDirectory (Join-Path $work 'merged') -ErrorAction Stop } | Should -Throw '*-Force*'
    }
}
