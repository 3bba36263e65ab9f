# List the controllers, drives and volumes of a machine, e.g. to pick the
# drives of a metal_raid_volume.
data "metal_storage" "node1" {
  bmc = {
    endpoint = "https://10.0.0.11"
  }
}

output "free_drives" {
  value = flatten([
    for c in data.metal_storage.node1.controllers : [
      for d in c.drives : d.id if length(d.volume_ids) == 0
    ]
  ])
}
