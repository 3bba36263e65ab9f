# A machine kept powered on, with credentials from the provider block or
# METAL_BMC_USERNAME / METAL_BMC_PASSWORD.
resource "metal_machine" "node1" {
  bmc = {
    endpoint = "https://10.0.0.11"
  }
}

# A node behind a multi-system BMC, with a write-only password (Terraform
# 1.11 or later) that is never stored in state. Refresh and destroy use the
# provider's bmc_password or METAL_BMC_PASSWORD.
resource "metal_machine" "node2" {
  bmc = {
    endpoint            = "https://10.0.0.12"
    system_id           = "System.Embedded.1"
    username            = "root"
    password_wo         = var.node2_bmc_password
    password_wo_version = 1
    ca_certificate      = file("${path.module}/idrac-ca.pem")
  }

  power_state = "off"
  boot_mac    = "b8:ca:3a:6e:11:20"
  on_destroy  = "none"

  timeouts {
    create = "30m"
  }
}

variable "node2_bmc_password" {
  type      = string
  sensitive = true
  ephemeral = true
}

output "node1_serial" {
  value = metal_machine.node1.serial_number
}

# Installs Ubuntu over the network (the provider needs a boot_service block;
# metal_os_image.ubuntu is the example of metal_os_image): the machine is
# registered with the boot service, network-boots once and create waits until
# the installer reports it is done.
resource "metal_machine" "node3" {
  bmc = {
    endpoint = "https://10.0.0.13"
  }

  os_image            = metal_os_image.ubuntu.name
  hostname            = "node3"
  ssh_authorized_keys = [file("~/.ssh/id_ed25519.pub")]
  user_data           = <<-EOT
    #cloud-config
    packages: [htop]
  EOT
  ip_address          = "192.0.2.13/24"
  gateway             = "192.0.2.254"
  dns                 = ["192.0.2.53"]
  root_device         = "/dev/disk/by-path/pci-0000:00:17.0-ata-1"

  # Erase root_device before powering off when destroyed.
  on_destroy = "wipe"

  timeouts {
    create = "45m"
    delete = "30m"
  }
}

output "node3_timeline" {
  value = metal_machine.node3.timeline
}
