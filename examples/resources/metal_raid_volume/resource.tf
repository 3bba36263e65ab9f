# A mirrored boot volume on the only RAID-capable controller, from two
# named drives.
resource "metal_raid_volume" "os" {
  bmc = {
    endpoint = "https://10.0.0.11"
  }
  raid_type = "RAID1"
  name      = "os"
  drives = [
    "Disk.Bay.0:Enclosure.Internal.0-1:RAID.Integrated.1-1",
    "Disk.Bay.1:Enclosure.Internal.0-1:RAID.Integrated.1-1",
  ]
}

# A RAID5 data volume from any three free HDDs of at least 4 TB.
resource "metal_raid_volume" "data" {
  bmc = {
    endpoint = "https://10.0.0.11"
  }
  storage_id = "RAID.Integrated.1-1"
  raid_type  = "RAID5"
  name       = "data"
  drive_selector = {
    media_type         = "HDD"
    min_capacity_bytes = 4000000000000
    count              = 3
  }
  init_mode = "Background"

  # Large volumes can keep the controller's task busy for a while; create
  # waits for the task up to this long (default 20m).
  timeouts {
    create = "1h"
  }

  # Build the OS volume first so the selector never races it for drives.
  depends_on = [metal_raid_volume.os]
}

# Install the OS on the mirrored volume: its device_hint is a stable
# /dev/disk/by-id path for metal_machine.root_device (with os_image).
output "os_root_device" {
  value = metal_raid_volume.os.device_hint
}
