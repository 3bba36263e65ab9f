# List the systems behind a BMC, then manage each one.
data "metal_machine_inventory" "chassis" {
  bmc = {
    endpoint = "https://10.0.0.20"
  }
}

resource "metal_machine" "blade" {
  for_each = { for s in data.metal_machine_inventory.chassis.systems : s.id => s }

  bmc = {
    endpoint  = "https://10.0.0.20"
    system_id = each.key
  }
}
