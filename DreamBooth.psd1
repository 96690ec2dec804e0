@{
    # Development manifest: `Import-Module ./DreamBooth.psd1` from the repository root after a build.
    # The build writes a copy into out/DreamBooth/ (the real module folder) with the paths below made local.
    RootModule           = 'out/DreamBooth/DreamBooth.dll'
    ModuleVersion        = '0.1.0'
    GUID                 = '5f0c7f0e-8f43-4f0e-9a55-3b8d2f3c9d11'
    Author               = 'DreamBooth for PowerShell contributors'
    CompanyName          = 'Community'
    Copyright            = '(c) DreamBooth for PowerShell contributors. Apache-2.0.'
    Description          = 'DreamBooth for Stable Diffusion in PowerShell: personalise SD 1.x/2.x diffusers models with a few photos of a subject, generate class images, and run inference, on a TorchSharp (libtorch) engine.'
    PowerShellVersion    = '7.4'
    CompatiblePSEditions = @('Core')
    FormatsToProcess     = @('src/Module/DreamBooth.format.ps1xml')
    CmdletsToExport      = @(
        'Get-DreamBoothEnvironment'
        'Get-DreamBoothModel'
        'Invoke-DreamBoothInference'
        'New-DreamBoothClassImage'
        'Start-DreamBoothTraining'
        'Resume-DreamBoothTraining'
        'Clear-DreamBoothModelCache'
        'Merge-DreamBoothLoRA'
        'Import-DreamBoothCheckpoint'
        'Export-DreamBoothCheckpoint'
        'Get-DreamBoothCheckpoint'
    )
    FunctionsToExport    = @()
    VariablesToExport    = @()
    AliasesToExport      = @('New-ClassImages')
    PrivateData          = @{
        PSData = @{
            Tags         = @('DreamBooth', 'StableDiffusion', 'Diffusers', 'TorchSharp', 'AI', 'Linux', 'Windows')
            LicenseUri   = 'https://www.apache.org/licenses/LICENSE-2.0'
            ProjectUri   = 'https://example.invalid/DreamBoothPS'
        }
    }
}
