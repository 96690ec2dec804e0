BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $script:cmdlets = (Import-PowerShellDataFile (Get-StagedModulePath)).CmdletsToExport
}
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-StagedModulePath) -Force
    $script:common = [System.Management.Automation.Cmdlet]::CommonParameters + [System.Management.Automation.Cmdlet]::OptionalCommonParameters
}

Describe '<_>' -ForEach $cmdlets {
    BeforeAll { $script:cmd = Get-Command $_; $script:help = Get-Help $_ -Full }

    It 'uses an approved verb' { (Get-Verb).Verb | Should -Contain $cmd.Verb }
    It 'declares its output type' {
        if ($cmd.Name -ne 'Get-DreamBoothEnvironment') { $cmd.OutputType | Should -Not -BeNullOrEmpty }
    }
    It 'has a synopsis, a description and an example' {
        $help.Synopsis | Should -Not -BeLike "$($cmd.Name)*"   # the auto-generated synopsis is the syntax line
        $help.Synopsis.Length | Should -BeGreaterThan 20
        ($help.Description.Text -join '').Length | Should -BeGreaterThan 20
        @($help.Examples.Example).Count | Should -BeGreaterOrEqual 1
        $help.Examples.Example[0].Code | Should -Match $cmd.Name.Split('-')[0]
    }
    It 'describes every parameter' {
        $names = $cmd.Parameters.Keys | Where-Object { $_ -notin $common }
        foreach ($n in $names) {
            $p = $help.Parameters.Parameter | Where-Object Name -EQ $n
            ($p.Description.Text -join '') | Should -Not -BeNullOrEmpty -Because "-$n of $($cmd.Name) needs a description"
        }
    }
}

Describe 'about_DreamBooth' {
    It 'is a conceptual help topic that names every cmdlet' {
        $text = Get-Help about_DreamBooth | Out-String
        $text | Should -Match 'TOPIC\s+about_DreamBooth'
        foreach ($name in (Import-PowerShellDataFile (Get-StagedModulePath)).CmdletsToExport) {
            # Import- and Export-DreamBoothCheckpoint share a line there: "Import-/Export-DreamBoothCheckpoint".
            ($text -match [regex]::Escape($name) -or ($name -eq 'Import-DreamBoothCheckpoint' -and $text -match 'Import-/Export-DreamBoothCheckpoint')) |
                Should -BeTrue -Because "$name is a cmdlet of the module"
        }
    }
}
