# A reusable profile for Dell virtualization hosts. Attribute names are the
# BIOS registry names of the vendor (iDRAC here).
resource "metal_bios_profile" "virt_host" {
  name = "virt-host"
  attributes = {
    SysProfile          = "Custom"
    ProcCStates         = "Disabled"
    LogicalProc         = "Enabled"
    ProcVirtualization  = "Enabled"
    SriovGlobalEnable   = "Enabled"
    AcPwrRcvryUserDelay = "120"
  }
}

# The profile is applied (with a reboot) and verified when the machine is
# created; editing the profile updates every machine using it in place.
resource "metal_machine" "node1" {
  bmc = {
    endpoint = "https://10.0.0.11"
  }
  bios_profile = metal_bios_profile.virt_host
}

# Staged for a maintenance window instead of rebooting now.
resource "metal_bios_profile" "tuned_later" {
  name                        = "tuned-later"
  attributes                  = { WorkloadProfile = "Virtualization-MaxPerformance" }
  apply_time                  = "AtMaintenanceWindowStart"
  maintenance_window_start    = "2026-01-10T02:00:00Z"
  maintenance_window_duration = "2h"
}
