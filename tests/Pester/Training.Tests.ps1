BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-StagedModulePath) -Force
    $script:tiny = Get-TinyModelPath
    $script:work = New-TestDirectory 'train'
    $script:instances = Get-InstanceImagesPath
    $script:base = @{ Model = $tiny; InstanceDataDirectory = $instances; InstancePrompt = 'a photo of sks toy'; Resolution = 64; Seed = 1; LearningRate = 1e-4 }
}
AfterAll { Clear-DreamBoothModelCache -Confirm:$false; Remove-Item -Recurse -Force $work -ErrorAction SilentlyContinue }

Describe 'Start-DreamBoothTraining' {
    Context 'a full run on the tiny pipeline' {
        BeforeAll {
            $script:out = Join-Path $work 'run'
            $script:result = Start-DreamBoothTraining @base -OutputDirectory $out -MaxTrainSteps 4 `
                -WithPriorPreservation -ClassDataDirectory (Join-Path $work 'class') -ClassPrompt 'a photo of toy' -NumClassImages 2 -SampleBatchSize 2 `
                -CheckpointingSteps 2 -CheckpointsTotalLimit 1 -ValidationPrompt 'sks toy on a beach' -NumValidationImages 1 -ValidationSteps 4 -Confirm:$false
        }

        It 'generated the class images first' {
            @(Get-ChildItem (Join-Path $work 'class') -Filter *.png) | Should -HaveCount 2
        }
        It 'emits two checkpoints, a validation image and the model, and keeps only the last checkpoint' {
            $ckpts = @($result | Where-Object { $_ -is [DreamBooth.DreamBoothCheckpoint] })
            $ckpts.Step | Should -Be @(2, 4)
            @(Get-ChildItem $out -Directory -Filter 'checkpoint-*').Name | Should -Be @('checkpoint-4')
            $val = @($result | Where-Object { $_ -is [DreamBooth.DreamBoothImage] })
            $val | Should -HaveCount 1
            Test-Path $val[0].Path | Should -BeTrue
            $model = $result | Where-Object { $_ -is [DreamBooth.DreamBoothModel] }
            $model.Steps | Should -Be 4
            $model.Completed | Should -BeTrue
            $model.FinalLoss | Should -BeGreaterThan 0
            ($model | Out-String) | Should -Match 'FinalLoss\s*:'
            ($ckpts | Out-String -Width 300) | Should -Match 'Step\s+Epoch\s+Loss\s+LearningRate\s+Path'
        }
        It 'the output folder and a checkpoint load in Invoke-DreamBoothInference' {
            $model = $result | Where-Object { $_ -is [DreamBooth.DreamBoothModel] }
            ($model | Invoke-DreamBoothInference -Prompt 'sks toy' -Steps 2 -Width 64 -Height 64 -Seed 1 -OutputDirectory (Join-Path $work 'img')).Model | Should -Be $out
            $ck = Join-Path $out 'checkpoint-4'
            (Invoke-DreamBoothInference -Model $ck -Prompt 'sks toy' -Steps 2 -Width 64 -Height 64 -Seed 1 -OutputDirectory (Join-Path $work 'img')).Model | Should -Be $ck
        }
        It 'logs each step''s loss and learning rate where the model says (-ReportTo all)' {
            $model = $result | Where-Object { $_ -is [DreamBooth.DreamBoothModel] }
            $model.LogDirectory | Should -Be (Join-Path $out 'logs' 'dreambooth')
            $rows = Import-Csv (Join-Path $model.LogDirectory 'training_log.csv')
            $rows.step | Should -Be @('1', '2', '3', '4')
            [double]$rows[-1].loss | Should -Be $model.FinalLoss
            [double]$rows[0].lr | Should -Be 1e-4
            @(Get-ChildItem $model.LogDirectory -Filter 'events.out.tfevents.*') | Should -HaveCount 1
        }
        It 'Get-DreamBoothCheckpoint lists the checkpoints as the run emitted them' {
            $emitted = @($result | Where-Object { $_ -is [DreamBooth.DreamBoothCheckpoint] })[-1]
            $listed = @(Get-DreamBoothCheckpoint $out)
            $listed | Should -HaveCount 1
            $listed[0] | Should -BeOfType ([DreamBooth.DreamBoothCheckpoint])
            foreach ($p in 'Path', 'Step', 'Epoch', 'Loss', 'LearningRate') { $listed[0].$p | Should -Be $emitted.$p -Because $p }
            [math]::Abs(($listed[0].Time - $emitted.Time).TotalSeconds) | Should -BeLessThan 30
            # The model object binds by Path, so do folders from Get-Item; a checkpoint folder lists itself.
            ($result | Where-Object { $_ -is [DreamBooth.DreamBoothModel] } | Get-DreamBoothCheckpoint -Latest).Step | Should -Be 4
            (Get-Item $out | Get-DreamBoothCheckpoint).Step | Should -Be 4
            (Get-DreamBoothCheckpoint (Join-Path $out 'checkpoint-4')).Step | Should -Be 4
            Push-Location $out; try { (Get-DreamBoothCheckpoint).Step | Should -Be 4 } finally { Pop-Location }
        }
        It 'Get-DreamBoothCheckpoint: wildcards, and a non-terminating error for each path it cannot list' {
            $damaged = Join-Path $work 'damaged'
            Copy-Item -Recurse (Join-Path $out 'checkpoint-4') (Join-Path $damaged 'checkpoint-4')
            Copy-Item -Recurse (Join-Path $out 'checkpoint-4') (Join-Path $damaged 'checkpoint-9')
            Set-Content (Join-Path $damaged 'checkpoint-9/dreambooth_checkpoint.json') '{ "global_step": '
            $listed = Get-DreamBoothCheckpoint (Join-Path $work 'ru?'), (Join-Path $work 'nope'), $instances, $damaged -ErrorVariable errs -ErrorAction SilentlyContinue
            $listed.Path | Should -Be @((Join-Path $out 'checkpoint-4'), (Join-Path $damaged 'checkpoint-4'))
            $errs | Should -HaveCount 3
            $errs[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
            $errs[1].FullyQualifiedErrorId | Should -BeLike 'NoCheckpoints*'
            $errs[1].Exception.Message | Should -Match 'holds no checkpoint-N folder'
            $errs[2].CategoryInfo.Category | Should -Be 'InvalidData'
            $errs[2].Exception.Message | Should -Match 'checkpoint-9.*damaged'
            Remove-Item -Recurse -Force $damaged
        }
        It 'Resume-DreamBoothTraining -MaxTrainSteps trains further (from Get-DreamBoothCheckpoint)' {
            $more = Get-DreamBoothCheckpoint $out -Latest | Resume-DreamBoothTraining -MaxTrainSteps 6 -Confirm:$false
            ($more | Where-Object { $_ -is [DreamBooth.DreamBoothModel] }).Steps | Should -Be 6
            @(Get-ChildItem $out -Directory -Filter 'checkpoint-*').Name | Should -Be @('checkpoint-6')
        }
        It 'Resume-DreamBoothTraining can turn on memory switches, which the run then records' {
            $more = Resume-DreamBoothTraining -Path $out -MaxTrainSteps 7 -GradientCheckpointing -GradientCheckpointingMode Blocks -SetGradsToNone -Confirm:$false -Verbose 4>&1
            $verbose = @($more | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }).Message
            $verbose | Should -Contain 'Resuming with -GradientCheckpointing (memory; what is learned stays the same).'
            $verbose | Should -Contain 'Resuming with -GradientCheckpointingMode blocks (memory; what is learned stays the same).'
            $verbose | Should -Contain 'Gradient checkpointing recomputes whole UNet resnets and transformer blocks in backward.'
            $model = $more | Where-Object { $_ -is [DreamBooth.DreamBoothModel] }
            $model.Steps | Should -Be 7
            $model.Settings.GradientCheckpointing | Should -BeTrue
            $model.Settings.GradientCheckpointingMode | Should -Be 'blocks'
            $model.Settings.ContainsKey('LegacySelectiveCheckpointing') | Should -BeFalse
            $model.Settings.SetGradsToNone | Should -BeTrue
            $model.Settings.OffloadOptimizerState | Should -BeFalse
        }
        It 'trains the text encoder for -StopTextEncoderTraining steps at -TextEncoderLearningRate, then the UNet alone' {
            $m = Start-DreamBoothTraining @base -OutputDirectory (Join-Path $work 'te-stop') -MaxTrainSteps 3 -TrainTextEncoder `
                -TextEncoderLearningRate 5e-5 -StopTextEncoderTraining 1 -Confirm:$false -Verbose 4>&1
            ($m | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }).Message | Should -Contain 'Text encoder training stopped after step 1 (-StopTextEncoderTraining); the UNet trains on.'
            $model = $m | Where-Object { $_ -is [DreamBooth.DreamBoothModel] }
            $model.Settings.TextEncoderLearningRate | Should -Be 5e-5
            $model.Settings.StopTextEncoderTraining | Should -Be 1
            Test-Path (Join-Path $model.Path 'text_encoder/model.safetensors') | Should -BeTrue
        }
        It '-EnableBucket trains each photo at its aspect-ratio bucket, in batches that keep to one bucket, and says which' {
            $m = Start-DreamBoothTraining @base -OutputDirectory (Join-Path $work 'buckets') -MaxTrainSteps 2 -EnableBucket `
                -MinBucketResolution 32 -MaxBucketResolution 128 -BucketResolutionSteps 8 -Confirm:$false -Verbose 4>&1
            ($m | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }).Message | Should -Contain 'Aspect-ratio buckets (-EnableBucket): 72x56: 4 image(s).'
            ($m | Where-Object { $_ -is [DreamBooth.DreamBoothModel] }).Settings.EnableBucket | Should -BeTrue
            $b = Start-DreamBoothTraining @base -OutputDirectory (Join-Path $work 'buckets2') -MaxTrainSteps 1 -EnableBucket -TrainBatchSize 2 `
                -MinBucketResolution 32 -MaxBucketResolution 128 -BucketResolutionSteps 8 -Confirm:$false -Verbose 4>&1
            ($b | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }).Message | Should -Contain '  Num batches each epoch = 2'
            ($b | Where-Object { $_ -is [DreamBooth.DreamBoothModel] }).Settings.TrainBatchSize | Should -Be 2
            $e = { Start-DreamBoothTraining @base -OutputDirectory (Join-Path $work 'buckets3') -EnableBucket -BucketResolutionSteps 12 } | Should -Throw -PassThru
            $e.CategoryInfo.Category | Should -Be 'InvalidArgument'
        }
        It '-Deterministic repeats a seeded run exactly and is recorded with it' {
            $a = Start-DreamBoothTraining @base -OutputDirectory (Join-Path $work 'det-a') -MaxTrainSteps 2 -Deterministic -Confirm:$false |
                Where-Object { $_ -is [DreamBooth.DreamBoothModel] }
            $b = Start-DreamBoothTraining @base -OutputDirectory (Join-Path $work 'det-b') -MaxTrainSteps 2 -Deterministic -Confirm:$false |
                Where-Object { $_ -is [DreamBooth.DreamBoothModel] }
            $a.Settings.Deterministic | Should -BeTrue
            $hashA = (Get-FileHash (Join-Path $a.Path 'unet/diffusion_pytorch_model.safetensors')).Hash
            (Get-FileHash (Join-Path $b.Path 'unet/diffusion_pytorch_model.safetensors')).Hash | Should -Be $hashA
        }
        It '-CaptionExtension trains each captioned image with its own prompt, and an empty caption stops the run first' {
            $captioned = Join-Path $work 'captioned'
            Copy-Item $instances $captioned -Recurse
            $first = Get-ChildItem $captioned -File | Select-Object -First 1
            Set-Content ([IO.Path]::ChangeExtension($first.FullName, '.txt')) 'a photo of sks toy on a beach'
            $run = Start-DreamBoothTraining @base -InstanceDataDirectory $captioned -CaptionExtension .txt -OutputDirectory (Join-Path $work 'cap') -MaxTrainSteps 1 -Confirm:$false -Verbose 4>&1
            @($run | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }).Message |
                Should -Contain ("Captions (.txt): 1 of $(@(Get-ChildItem $instances -File).Count) instance images have their own prompt; the others use -InstancePrompt.")
            ($run | Where-Object { $_ -is [DreamBooth.DreamBoothModel] }).Settings.CaptionExtension | Should -Be '.txt'
            Set-Content ([IO.Path]::ChangeExtension($first.FullName, '.txt')) ''
            $e = { Start-DreamBoothTraining @base -InstanceDataDirectory $captioned -CaptionExtension .txt -OutputDirectory (Join-Path $work 'cap-empty') -MaxTrainSteps 1 -Confirm:$false } |
                Should -Throw -PassThru
            $e.CategoryInfo.Category | Should -Be 'InvalidData'
            $e.Exception.Message | Should -Match 'is empty'
        }
        It '-ShuffleCaption and the caption dropouts augment the captions and say how; -KeepTokens alone is refused' {
            $run = Start-DreamBoothTraining @base -OutputDirectory (Join-Path $work 'shuffled') -MaxTrainSteps 1 -ShuffleCaption -KeepTokens 1 `
                -CaptionDropoutRate 0.25 -Confirm:$false -Verbose 4>&1
            @($run | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }).Message |
                Should -Contain 'Caption augmentation (kohya-ss): tags shuffled after the first 1, 25% of captions empty; the frozen text encoder stays loaded to encode them each step.'
            $settings = ($run | Where-Object { $_ -is [DreamBooth.DreamBoothModel] }).Settings
            $settings.ShuffleCaption | Should -BeTrue
            $settings.CaptionDropoutRate | Should -Be 0.25
            $e = { Start-DreamBoothTraining @base -OutputDirectory (Join-Path $work 'keep-only') -KeepTokens 1 } | Should -Throw -PassThru
            $e.CategoryInfo.Category | Should -Be 'InvalidArgument'
            $e.Exception.Message | Should -Match '-ShuffleCaption'
        }
        It '-Concept trains several subjects in one run, from hashtables or a concepts_list file' {
            $figures = Join-Path $work 'figures'
            New-Item -ItemType Directory $figures | Out-Null
            Get-ChildItem $instances -Filter *.png | Select-Object -First 2 | Copy-Item -Destination $figures
            $run = Start-DreamBoothTraining -Model $tiny -Resolution 64 -Seed 1 -LearningRate 1e-4 -OutputDirectory (Join-Path $work 'concepts') -MaxTrainSteps 1 `
                -Concept @{ InstanceDataDirectory = $instances; InstancePrompt = 'a photo of sks toy' }, @{ instance_data_dir = $figures; instance_prompt = 'a photo of zwx figure'; num_repeats = 2 } `
                -Confirm:$false -Verbose 4>&1
            @($run | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }).Message |
                Should -Contain "Concepts: 'a photo of sks toy' (4 images); 'a photo of zwx figure' (2 images × 2 repeats)."
            $settings = ($run | Where-Object { $_ -is [DreamBooth.DreamBoothModel] }).Settings
            $settings.InstancePrompt | Should -Be 'a photo of sks toy'
            $settings.Concepts[0].InstancePrompt | Should -Be 'a photo of zwx figure'
            $settings.Concepts[0].Repeats | Should -Be 2

            # The concepts-list fork's file, named by -ConfigFile's concepts_list (its keys, its relative paths).
            $list = Join-Path $work 'concepts.json'
            ConvertTo-Json -InputObject @(@{ instance_data_dir = $instances; instance_prompt = 'a photo of sks toy' }, @{ instance_data_dir = $figures; instance_prompt = 'a photo of zwx figure' }) |
                Set-Content $list
            $config = Join-Path $work 'concepts-config.json'
            @{ concepts_list = $list; pretrained_model_name_or_path = $tiny; resolution = 64; max_train_steps = 1 } | ConvertTo-Json | Set-Content $config
            $fromFile = Start-DreamBoothTraining -ConfigFile $config -OutputDirectory (Join-Path $work 'concepts-file') -Confirm:$false |
                Where-Object { $_ -is [DreamBooth.DreamBoothModel] }
            $fromFile.Settings.Concepts[0].InstanceDataDirectory | Should -Be $figures

            $e = { Start-DreamBoothTraining -Model $tiny -OutputDirectory (Join-Path $work 'concepts-bad') -Concept @{ InstanceDataDirectory = $instances } } | Should -Throw -PassThru
            $e.CategoryInfo.Category | Should -Be 'InvalidArgument'
            $e.Exception.Message | Should -Match 'InstancePrompt'
        }
        It 'Get-DreamBoothModel describes the base model, the run and its checkpoint, and reports what is not a model' {
            $latest = (Get-DreamBoothCheckpoint $out -Latest).Path   # earlier tests may have trained the run further
            $d = Get-DreamBoothModel $tiny, $out, $latest, (Join-Path $work 'no-such-model') -ErrorVariable errs -ErrorAction SilentlyContinue
            $d.Kind | Should -Be @('pipeline', 'training output', 'checkpoint')
            $d[0].Resolution | Should -Be 64
            $d[0].Precision | Should -Be 'fp32'
            $d[2].BaseModel | Should -Be $tiny
            $errs | Should -HaveCount 1
            $errs[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
            ($d[0] | Out-String) | Should -Match 'Name\s+Kind\s+Family\s+Resolution'
        }
        It 'refuses an output folder that already has checkpoints' {
            $e = { Start-DreamBoothTraining @base -OutputDirectory $out -MaxTrainSteps 2 } | Should -Throw -PassThru
            $e.CategoryInfo.Category | Should -Be 'InvalidOperation'
            $e.Exception.Message | Should -Match 'Resume-DreamBoothTraining'
        }
    }

    Context 'examples/SmallGpu.ps1' {
        It 'trains with the memory profile it is given and returns the model' {
            $example = Join-Path $PSScriptRoot '../../examples/SmallGpu.ps1'
            $model = & $example -MemoryProfile 12GB -MaxTrainSteps 2 -OutputDirectory (Join-Path $work 'small-gpu') 6>$null
            $model | Should -BeOfType DreamBooth.DreamBoothModel
            $model.Steps | Should -Be 2
            $model.Settings.GradientCheckpointing | Should -BeTrue
            $model.Settings.Use8BitAdam | Should -BeTrue
            $model.Settings.SetGradsToNone | Should -BeTrue
        }
        It 'resumes a run that ran out of memory with the switches that lower memory' {
            # Start-DreamBoothTraining trains for real, then stops as the trainer does when the card is full: with a
            # saved checkpoint and a TrainingOutOfMemoryException error. The example must resume it.
            Mock Start-DreamBoothTraining {
                $real = Get-Command Start-DreamBoothTraining -CommandType Cmdlet
                $p = @{} + $PesterBoundParameters
                $null = & $real @p
                $e = [Exception]::new('Training ran out of memory on cuda:0 at step 3: CUDA out of memory. Tried to allocate 2.00 GiB.')
                $e | Add-Member -NotePropertyName CheckpointPath -NotePropertyValue (Join-Path $p.OutputDirectory 'checkpoint-2')
                throw [System.Management.Automation.ErrorRecord]::new($e, 'TrainingOutOfMemoryException', 'ResourceUnavailable', $null)
            }
            $example = Join-Path $PSScriptRoot '../../examples/SmallGpu.ps1'
            $model = & $example -MemoryProfile None -MaxTrainSteps 2 -OutputDirectory (Join-Path $work 'small-gpu-oom') -WarningVariable warned 6>$null 3>$null
            Should -Invoke Start-DreamBoothTraining -Times 1 -Exactly
            $warned | Should -Match 'CUDA out of memory'
            $model | Should -BeOfType DreamBooth.DreamBoothModel
            $model.Settings.OffloadOptimizerState | Should -BeTrue
            $model.Settings.SetGradsToNone | Should -BeTrue
            $model.Settings.GradientCheckpointing | Should -BeTrue
        }
    }

    Context 'bad input fails before training' {
        It 'a model whose UNet holds only pickle weights' {
            $pickled = Join-Path $work 'pickled-model'
            Copy-Item $tiny $pickled -Recurse
            Remove-Item (Join-Path $pickled 'unet/diffusion_pytorch_model.safetensors')
            [IO.File]::WriteAllBytes((Join-Path $pickled 'unet/diffusion_pytorch_model.bin'), [byte[]](0x80, 0x02))
            $e = { Start-DreamBoothTraining @base -Model $pickled -OutputDirectory (Join-Path $work 'o0') } | Should -Throw -PassThru
            $e.CategoryInfo.Category | Should -Be 'InvalidData'
            $e.Exception.Message | Should -Match 'pickle weights .*safetensors'
        }
        It 'an empty instance folder' {
            $empty = New-Item -ItemType Directory (Join-Path $work 'empty')
            $e = { Start-DreamBoothTraining @base -InstanceDataDirectory $empty -OutputDirectory (Join-Path $work 'o1') } | Should -Throw -PassThru
            $e.CategoryInfo.Category | Should -Be 'InvalidArgument'
            $e.Exception.Message | Should -Match 'holds no images'
        }
        It 'a folder of non-image files only' {
            $txt = New-Item -ItemType Directory (Join-Path $work 'txt')
            Set-Content (Join-Path $txt 'a.txt') 'x'
            $e = { Start-DreamBoothTraining @base -InstanceDataDirectory $txt -OutputDirectory (Join-Path $work 'o2') } | Should -Throw -PassThru
            $e.CategoryInfo.Category | Should -Be 'InvalidArgument'
        }
        It 'prior preservation without a class prompt' {
            $e = { Start-DreamBoothTraining @base -WithPriorPreservation -ClassDataDirectory (Join-Path $work 'c') -OutputDirectory (Join-Path $work 'o3') } | Should -Throw -PassThru
            $e.CategoryInfo.Category | Should -Be 'InvalidArgument'
            $e.Exception.Message | Should -Match 'ClassPrompt'
        }
        It 'a resolution that is not a multiple of 8' {
            $e = { Start-DreamBoothTraining @base -Resolution 65 -OutputDirectory (Join-Path $work 'o4') } | Should -Throw -PassThru
            $e.CategoryInfo.Category | Should -Be 'InvalidArgument'
            $e.Exception.Message | Should -Match 'Resolution'
        }
        It 'an unwritable output folder' -Skip:($IsWindows -or (id -u) -eq 0) {
            $ro = New-Item -ItemType Directory (Join-Path $work 'ro'); chmod 555 $ro
            $e = { Start-DreamBoothTraining @base -OutputDirectory (Join-Path $ro 'x') } | Should -Throw -PassThru
            $e.CategoryInfo.Category | Should -Be 'PermissionDenied'
        }
        It '-SelectiveCheckpointing with another -GradientCheckpointingMode' {
            $e = { Start-DreamBoothTraining @base -SelectiveCheckpointing -GradientCheckpointingMode Blocks -OutputDirectory (Join-Path $work 'o5') } | Should -Throw -PassThru
            $e.CategoryInfo.Category | Should -Be 'InvalidArgument'
            $e.FullyQualifiedErrorId | Should -Match '^ConflictingCheckpointingMode'
            Test-Path (Join-Path $work 'o5') | Should -BeFalse
        }
        It '-GradientCheckpointingMode alone warns that it does nothing' {
            $null = Start-DreamBoothTraining @base -GradientCheckpointingMode Blocks -OutputDirectory (Join-Path $work 'o6') -WhatIf -WarningVariable warned 3>$null
            $warned | Should -Match 'no effect without -GradientCheckpointing'
        }
        It '-MemoryProfile Auto turns nothing on for the CPU, and says so' {
            $null = Start-DreamBoothTraining @base -OutputDirectory (Join-Path $work 'auto') -MemoryProfile Auto -Device cpu -WhatIf -InformationVariable info
            ($info | Out-String) | Should -Match '-MemoryProfile Auto: no recipe: training runs on cpu'
        }
        It '-WhatIf checks everything and creates nothing' {
            $out3 = Join-Path $work 'whatif/out'
            $r = Start-DreamBoothTraining @base -OutputDirectory $out3 -WhatIf
            $r | Should -BeNullOrEmpty
            Test-Path (Join-Path $work 'whatif') | Should -BeFalse
            $e = { Start-DreamBoothTraining @base -OutputDirectory $out3 -Resolution 65 -WhatIf } | Should -Throw -PassThru
            $e.CategoryInfo.Category | Should -Be 'InvalidArgument'
        }
        It 'an output path under a file (cannot be created)' {
            $file = Join-Path $work 'a-file'; Set-Content $file 'x'
            $e = { Start-DreamBoothTraining @base -OutputDirectory (Join-Path $file 'out') } | Should -Throw -PassThru
            $e.CategoryInfo.Category | Should -Be 'PermissionDenied'
            $e.Exception.Message | Should -Match 'Cannot write'
        }
        It 'reads -ConfigFile JSON with diffusers flag names' {
            $json = Join-Path $work 'cfg.json'
            @{ resolution = 60; instance_prompt = 'a photo of sks toy'; train_batch_size = 1 } | ConvertTo-Json | Set-Content $json
            $e = { Start-DreamBoothTraining -Model $tiny -InstanceDataDirectory $instances -OutputDirectory (Join-Path $work 'o5') -ConfigFile $json } | Should -Throw -PassThru
            $e.Exception.Message | Should -Match 'Resolution.*60'
        }
        It '-TextEncoderLearningRate and -StopTextEncoderTraining (kohya-ss names in a config file too) need -TrainTextEncoder' {
            $e = { Start-DreamBoothTraining @base -OutputDirectory (Join-Path $work 'o8') -StopTextEncoderTraining 5 } | Should -Throw -PassThru
            $e.CategoryInfo.Category | Should -Be 'InvalidArgument'
            $e.Exception.Message | Should -Match 'needs -TrainTextEncoder'
            $json = Join-Path $work 'te.json'
            @{ learning_rate_te = 1e-6 } | ConvertTo-Json | Set-Content $json
            $e = { Start-DreamBoothTraining @base -OutputDirectory (Join-Path $work 'o8') -ConfigFile $json } | Should -Throw -PassThru
            $e.Exception.Message | Should -Match '-TextEncoderLearningRate needs -TrainTextEncoder'
        }
        It 'refuses -ConfigFile report_to wandb, saying what to use' {
            $json = Join-Path $work 'wandb.json'
            @{ report_to = 'wandb' } | ConvertTo-Json | Set-Content $json
            $e = { Start-DreamBoothTraining @base -OutputDirectory (Join-Path $work 'o7') -ConfigFile $json } | Should -Throw -PassThru
            $e.CategoryInfo.Category | Should -Be 'InvalidArgument'
            $e.Exception.Message | Should -Match 'tensorboard'
        }
        It 'reads -ConfigFile .psd1 with our names; the command line wins' {
            $psd1 = Join-Path $work 'cfg.psd1'
            "@{ Resolution = 60; InstancePrompt = 'a photo of sks toy' }" | Set-Content $psd1
            $e = { Start-DreamBoothTraining -Model $tiny -InstanceDataDirectory $instances -OutputDirectory (Join-Path $work 'o6') -ConfigFile $psd1 -Resolution 61 } | Should -Throw -PassThru
            $e.Exception.Message | Should -Match 'Resolution.*61'
            "@{ NoSuchSetting = 1 }" | Set-Content $psd1
            $e = { Start-DreamBoothTraining @base -OutputDirectory (Join-Path $work 'o6') -ConfigFile $psd1 } | Should -Throw -PassThru
            $e.FullyQualifiedErrorId | Should -BeLike 'UnknownConfigKey*'
        }
    }

    # Stop() on a pipeline in a second runspace of this process, as a host's Ctrl+C does.
    It 'Ctrl+C during training leaves a resumable checkpoint' {
        $out2 = Join-Path $work 'stopped'
        $r = Invoke-AndStop -Script {
            param($Module, $Options)
            Import-Module $Module
            Start-DreamBoothTraining @Options -Confirm:$false
        } -Arguments @{ Module = (Get-StagedModulePath); Options = ($base + @{ OutputDirectory = $out2; MaxTrainSteps = 1000; CheckpointingSteps = 1000 }) } `
          -When { param($ps) $n = $ps.Streams.Progress.Count; $n -gt 0 -and $ps.Streams.Progress[$n - 1].StatusDescription -match '^Step ([3-9]|\d\d+)/' } -TimeoutSeconds 120
        $r.Errors | Should -BeNullOrEmpty
        $r.State | Should -Be 'Stopped'
        # No scheduled checkpoint comes before step 1000: this one is the stop's own.
        $last = Get-ChildItem $out2 -Directory -Filter 'checkpoint-*' | Sort-Object { [int]($_.Name -replace '\D') } | Select-Object -Last 1
        $last | Should -Not -BeNullOrEmpty
        [int]($last.Name -replace '\D') | Should -BeGreaterOrEqual 2
        @(Get-ChildItem $out2 -Directory -Filter '*.tmp*') | Should -HaveCount 0
        Test-Path (Join-Path $last 'dreambooth_checkpoint.json') | Should -BeTrue
        $step = [int]($last.Name -replace '\D')
        $resumed = Resume-DreamBoothTraining -Path $out2 -MaxTrainSteps ($step + 1) -Confirm:$false
        ($resumed | Where-Object { $_ -is [DreamBooth.DreamBoothModel] }).Steps | Should -Be ($step + 1)
    }
}
