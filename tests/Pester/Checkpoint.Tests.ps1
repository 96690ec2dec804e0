BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-StagedModulePath) -Force
    $script:tiny = Get-TinyModelPath
    $script:work = New-TestDirectory 'ckpt'
    $script:file = Join-Path $work 'tiny.safetensors'
}
AfterAll {
    Remove-Item Env:DREAMBOOTH_CACHE, Env:DREAMBOOTH_TOKENIZER, Env:HF_HUB_CACHE -ErrorAction SilentlyContinue
    Clear-DreamBoothModelCache -Confirm:$false
    Remove-Item -Recurse -Force $work -ErrorAction SilentlyContinue
}

Describe 'Export-/Import-DreamBoothCheckpoint' {
    It 'exports a diffusers folder to one SD 1.x single file' {
        $r = Export-DreamBoothCheckpoint -Model $tiny -Path $file
        $r | Should -BeOfType ([DreamBooth.DreamBoothExportResult])
        $r.Path | Should -Be $file
        $r.Layout | Should -Match 'SD 1\.x'
        $r.TensorCount | Should -BeGreaterThan 100
        (Get-Item $file).Length | Should -Be $r.Bytes
    }

    It '-WhatIf writes nothing, and an existing file needs -Force' {
        Export-DreamBoothCheckpoint -Model $tiny -Path (Join-Path $work 'whatif.safetensors') -WhatIf
        Test-Path (Join-Path $work 'whatif.safetensors') | Should -BeFalse
        $e = { Export-DreamBoothCheckpoint -Model $tiny -Path $file } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'ResourceExists'
        (Export-DreamBoothCheckpoint -Model $tiny -Path $file -Force -Precision fp16).DType | Should -Be 'Float16'
        $null = Export-DreamBoothCheckpoint -Model $tiny -Path $file -Force
    }

    It 'imports it back to a folder with the same weights and reports what it inferred' {
        $dest = Join-Path $work 'imported'
        $r = Import-DreamBoothCheckpoint -Path $file -Destination $dest -TokenizerFolder (Join-Path $tiny 'tokenizer')
        $r | Should -BeOfType ([DreamBooth.DreamBoothImportResult])
        $r.Path | Should -Be $dest
        $r.Inferred | Should -Not -BeNullOrEmpty
        Test-Path (Join-Path $dest 'model_index.json') | Should -BeTrue
        # Round trip: exporting the imported folder gives the same file, byte for byte.
        $again = Join-Path $work 'again.safetensors'
        $null = Export-DreamBoothCheckpoint -Model $dest -Path $again
        (Get-FileHash $again).Hash | Should -Be (Get-FileHash $file).Hash
        $e = { Import-DreamBoothCheckpoint -Path $file -Destination $dest } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'ResourceExists'
    }

    It 'a missing file is ObjectNotFound' {
        $e = { Import-DreamBoothCheckpoint -Path (Join-Path $work 'nope.safetensors') -Destination (Join-Path $work 'x') } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'ObjectNotFound'
    }

    It '-Model takes the single file (imported once into DREAMBOOTH_CACHE)' {
        $env:DREAMBOOTH_CACHE = Join-Path $work 'cache'
        $env:DREAMBOOTH_TOKENIZER = Join-Path $tiny 'tokenizer'
        $img = Invoke-DreamBoothInference -Model $file -Prompt 'a dog' -Steps 2 -Width 64 -Height 64 -Seed 1 -OutputDirectory (Join-Path $work 'img')
        $img.Model | Should -BeLike (Join-Path $work 'cache/single-file/tiny-*')
        @(Get-ChildItem (Join-Path $work 'cache/single-file') -Directory) | Should -HaveCount 1
    }
}

Describe '-Model as a Hugging Face id' {
    BeforeAll {
        # A cache laid out like huggingface_hub's: refs/main -> commit, snapshots/<commit>/... (links into blobs/ on Unix).
        $script:hub = Join-Path $work 'hf'
        $repo = Join-Path $hub 'models--tiny-owner--tiny-sd'
        $commit = 'a' * 40
        $snapshot = Join-Path $repo "snapshots/$commit"
        New-Item -ItemType Directory -Force -Path (Join-Path $repo 'refs') | Out-Null
        New-Item -ItemType Directory -Force -Path (Join-Path $repo 'blobs') | Out-Null
        [IO.File]::WriteAllText((Join-Path $repo 'refs/main'), $commit)
        foreach ($f in Get-ChildItem $tiny -Recurse -File) {
            $rel = [IO.Path]::GetRelativePath($tiny, $f.FullName)
            $target = Join-Path $snapshot $rel
            New-Item -ItemType Directory -Force (Split-Path $target) | Out-Null
            if ($IsWindows) { Copy-Item $f.FullName $target }
            else {
                $blob = Join-Path $repo ('blobs/' + (Get-FileHash $f.FullName).Hash.ToLower())
                Copy-Item $f.FullName $blob -Force
                New-Item -ItemType SymbolicLink -Path $target -Target $blob | Out-Null
            }
        }
        $env:HF_HUB_CACHE = $hub
    }

    It 'resolves owner/name from the cache with -Offline' {
        $img = Invoke-DreamBoothInference -Model 'tiny-owner/tiny-sd' -Offline -Prompt 'a dog' -Steps 2 -Width 64 -Height 64 -Seed 1 -OutputDirectory (Join-Path $work 'hubimg')
        $img.Model | Should -BeLike "*models--tiny-owner--tiny-sd*snapshots*"
        Test-Path $img.Path | Should -BeTrue
    }

    It 'a Hub id missing from the cache with -Offline is ObjectNotFound and names the cache' {
        $e = { Invoke-DreamBoothInference -Model 'nobody/missing-model' -Offline -Prompt x -OutputDirectory $work } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $e.Exception.Message | Should -Match 'not in the Hugging Face cache'
    }
}
