BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-StagedModulePath) -Force
}

Describe 'Module' {
    It 'exports exactly the cmdlets its manifest lists' {
        $manifest = Import-PowerShellDataFile (Get-StagedModulePath)
        $exported = (Get-Module DreamBooth).ExportedCmdlets.Keys | Sort-Object
        $exported | Should -Be ($manifest.CmdletsToExport | Sort-Object)
    }

    It 'declares PowerShell 7.4+, Core edition and a format file' {
        $m = Import-PowerShellDataFile (Get-StagedModulePath)
        $m.PowerShellVersion | Should -Be '7.4'
        $m.CompatiblePSEditions | Should -Be @('Core')
        $m.FormatsToProcess | Should -Not -BeNullOrEmpty
    }

    It 'loads the engine in its own AssemblyLoadContext, apart from the cmdlets' {
        $env = Get-DreamBoothEnvironment
        $env.EngineLoadContext | Should -Be 'DreamBooth.Engine'
        $cmdletAlc = [System.Runtime.Loader.AssemblyLoadContext]::GetLoadContext([DreamBooth.DreamBoothEnvironment].Assembly).Name
        $cmdletAlc | Should -Not -Be 'DreamBooth.Engine'
    }

    It 'turns on huge pages for libtorch on import (Linux) or reports the system default' {
        $reported = Get-DreamBoothEnvironment
        if ($IsLinux -and -not $env:DREAMBOOTH_CPU_ALLOCATOR -and -not $env:MALLOC_MMAP_THRESHOLD_) {
            $reported.CpuAllocator | Should -Match 'transparent huge pages'
        } else {
            $reported.CpuAllocator | Should -Not -BeNullOrEmpty
        }
    }

    It 'asks libtorch for expandable CUDA segments on import (Linux) unless the user chose' {
        $reported = Get-DreamBoothEnvironment
        if ($IsLinux -and -not $env:DREAMBOOTH_CUDA_ALLOCATOR -and -not $env:PYTORCH_CUDA_ALLOC_CONF) {
            $reported.CudaAllocator | Should -Be 'PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True'
        } elseif ($IsLinux -and $env:PYTORCH_CUDA_ALLOC_CONF -and -not $env:DREAMBOOTH_CUDA_ALLOCATOR) {
            $reported.CudaAllocator | Should -BeLike "*$($env:PYTORCH_CUDA_ALLOC_CONF)*set by the environment*"
        } else {
            $reported.CudaAllocator | Should -Match 'libtorch default'
        }
    }

    It 'says how much host memory is available (what CPU runs are checked against)' {
        $env = Get-DreamBoothEnvironment
        $env.AvailableMemoryGB | Should -BeGreaterThan 0
        if ($IsLinux) {
            $kb = [long]((Select-String -Path /proc/meminfo -Pattern '^MemTotal:\s+(\d+)').Matches[0].Groups[1].Value)
            $swap = [long]((Select-String -Path /proc/meminfo -Pattern '^SwapTotal:\s+(\d+)').Matches[0].Groups[1].Value)
            $env.AvailableMemoryGB | Should -BeLessOrEqual ([math]::Round(($kb + $swap) / 1MB, 1) + 0.1)
        }
    }
    It 'says that -Deterministic works with the loaded libtorch' {
        (Get-DreamBoothEnvironment).DeterministicAlgorithms | Should -BeLike 'available (-Deterministic turns it on for a run*'
    }
    It 'puts MKL on its AVX2 path on import where the CPU is not Intel''s (Linux) unless the user chose' {
        $reported = Get-DreamBoothEnvironment
        $reported.CpuMatrixLibrary | Should -Not -BeNullOrEmpty
        $cpu = if ($IsLinux) { Get-Content /proc/cpuinfo -Raw } else { '' }
        $amdWithAvx2 = $cpu -match 'vendor_id\s*:\s*AuthenticAMD' -and $cpu -match '\bavx2\b' -and $cpu -match '\bfma\b'
        if ($amdWithAvx2 -and -not $env:MKL_CBWR -and -not $env:DREAMBOOTH_MKL) {
            $reported.CpuMatrixLibrary | Should -Match 'MKL_CBWR=AVX2; AuthenticAMD'
        } elseif ($cpu -match 'vendor_id\s*:\s*GenuineIntel') {
            $reported.CpuMatrixLibrary | Should -Match 'own choice'
        }
    }
}

Describe 'Get-DreamBoothEnvironment' {
    BeforeAll { $script:info = Get-DreamBoothEnvironment }

    It 'returns a typed object' {
        $info | Should -BeOfType ([DreamBooth.DreamBoothEnvironment])
    }

    It 'reports TorchSharp 0.107 on libtorch 2.10' {
        $info.TorchSharpVersion | Should -Be '0.107.0'
        $info.LibTorchVersion | Should -Be '2.10.0'
    }

    It 'lists the CPU device and a thread count' {
        $info.Devices.Name | Should -Contain 'cpu'
        $info.Threads | Should -BeGreaterThan 0
        $info.DefaultDType | Should -Be 'Float32'
    }

    It 'reports how much slower fp16 and bf16 run on this CPU, and says so in its list view' {
        $info.CpuFp16Slowdown | Should -BeGreaterThan 0
        $info.CpuBf16Slowdown | Should -BeGreaterThan 0
        $list = $info | Format-List | Out-String -Width 1000
        $list | Should -Match 'CpuHalfPrecision\s*:\s*fp16 [\d.,]+x, bf16 [\d.,]+x'
        $info.CpuFp16Emulated | Should -BeOfType [bool]
        $info.CpuBf16Emulated | Should -BeOfType [bool]
        # Each precision is described by what happens to it here (a Zen 4 CPU emulates fp16 but runs bf16 natively).
        foreach ($kind in @(@{ Name = 'fp16'; Emulated = $info.CpuFp16Emulated; Factor = $info.CpuFp16Slowdown },
                            @{ Name = 'bf16'; Emulated = $info.CpuBf16Emulated; Factor = $info.CpuBf16Slowdown })) {
            $emulatedPhrase = "(fp16 and bf16|$($kind.Name)) computed in fp32 arithmetic"
            $nativePhrase = "(fp16 and bf16|$($kind.Name)) runs in libtorch's kernels"
            if ($kind.Emulated) { $list | Should -Match $emulatedPhrase; $list | Should -Not -Match $nativePhrase }
            else { $list | Should -Not -Match $emulatedPhrase }
            if (-not $kind.Emulated -and $kind.Factor -le 8) { $list | Should -Match $nativePhrase }
        }
    }

    It 'found the native library inside the module folder' {
        $info.NativeLibraryPath | Should -Not -BeNullOrEmpty
        $moduleDir = Split-Path (Get-StagedModulePath)
        $info.NativeLibraryPath | Should -BeLike "$moduleDir*"
        Test-Path $info.NativeLibraryPath | Should -BeTrue
    }

    It 'formats as a list view' {
        ($info | Out-String) | Should -Match 'LibTorchVersion\s*:\s*2\.10\.0'
    }
}
