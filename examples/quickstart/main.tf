# Quickstart: provision the VM lab's machines (one BIOS, one UEFI) over the
# network, as README.md's quickstart does, as root on Debian:
#
#   make dev-override && export TF_CLI_CONFIG_FILE=$PWD/.dev/terraformrc
#   make lab-up
#   cd examples/quickstart
#   ip netns exec metal-lab terraform apply -auto-approve
#   ip netns exec metal-lab terraform destroy -auto-approve
#   cd ../.. && make lab-down
#
# `make lab-up` writes everything this configuration needs (the BMCs, their
# CA, the boot service's network and the installer's files with their sums)
# to .lab/terraform.tfvars.json. Terraform runs inside the lab's network
# namespace, where the BMCs listen and the boot service answers DHCP on the
# lab bridge.

terraform {
  required_providers {
    metal = {
      source = "composable-metal/metal"
    }
  }
}

variable "lab_file" {
  description = "The settings `metal-lab up` writes."
  type        = string
  default     = null
}

locals {
  lab = jsondecode(file(coalesce(var.lab_file, "${path.module}/../../.lab/terraform.tfvars.json"))).lab
}

provider "metal" {
  bmc_username       = local.lab.bmc_username
  bmc_password       = local.lab.bmc_password
  bmc_ca_certificate = file(local.lab.bmc_ca_file)
  poll_interval      = "500ms"

  # The boot service runs inside the provider while Terraform runs, bound to
  # the lab bridge: DHCP, TFTP and HTTP for the machines' network boot.
  boot_service {
    address     = local.lab.boot_service.address
    interface   = local.lab.boot_service.interface
    http_listen = local.lab.boot_service.http_listen
    state_dir   = local.lab.boot_service.state_dir

    dhcp {
      mode        = local.lab.boot_service.dhcp.mode
      listen      = local.lab.boot_service.dhcp.listen
      subnet      = local.lab.boot_service.dhcp.subnet
      range_start = local.lab.boot_service.dhcp.range_start
      range_end   = local.lab.boot_service.dhcp.range_end
    }
  }
}

# The lab's installer: a Debian kernel and a busybox initramfs that write a
# bootable disk image to root_device and report back.
resource "metal_os_image" "lab" {
  name        = "lab-os"
  install     = local.lab.os_image.install
  kernel      = local.lab.os_image.kernel
  initrd      = local.lab.os_image.initrd
  image       = local.lab.os_image.image
  kernel_args = local.lab.os_image.kernel_args
}

resource "metal_machine" "node" {
  for_each = local.lab.machines

  bmc = {
    endpoint  = each.value.endpoint
    system_id = each.value.system_id
  }
  boot_mac = each.value.mac

  os_image    = metal_os_image.lab.name
  hostname    = each.key
  root_device = local.lab.os_image.root_device

  # Wait until the machine installed the image, rebooted from its disk and
  # asked DHCP for its address.
  wait_for = "booted"

  timeouts {
    create = "20m"
  }
}

output "machines" {
  value = {
    for name, m in metal_machine.node : name => {
      firmware   = local.lab.machines[name].firmware
      ip_address = m.ip_address
      boot_mac   = m.boot_mac
      serial_log = local.lab.machines[name].serial_log
    }
  }
}

output "timelines" {
  value = { for name, m in metal_machine.node : name => m.timeline }
}
