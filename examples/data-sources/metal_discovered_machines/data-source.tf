# Machines that asked to network-boot while boot_service.dhcp.discovery = true,
# with the switch port they are cabled to when a relay adds option 82.
data "metal_discovered_machines" "new" {}

output "new_machines" {
  value = { for m in data.metal_discovered_machines.new.machines : m.mac => m.circuit_id }
}
