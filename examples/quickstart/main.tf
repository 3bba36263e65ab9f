# Quickstart: provision the VM lab's machines (one BIOS, one UEFI) over the
# network, as README.md's quickstart does, as root on Debian:
#
#   make dev-override && export TF_CLI_CONFIG_FILE=$PWD/.dev/terraformrc
#   make lab-up
#   cd examples/quickstart
#   ip netns exec metal-lab terraform apply -auto-approve
#   ip netns exec metal-lab terraform apply -auto-approve -var message=changed
#   ip netns exec metal-lab terraform destroy -auto-approve
#   cd ../.. && make lab-down
#
# The second apply changes a role's parameter: the machines' agents apply
# it in place (no reinstall), and apply waits until they report it done.
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

variable "message" {
  description = "What the motd role writes; change it to see roles converge in place."
  type        = string
  default     = "installed by Terraform"
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

# A role: the agent installed with each machine keeps /etc/motd-lab as this
# says (in the lab, files land under /root on the VM disk's FAT partition).
resource "metal_role" "motd" {
  name       = "motd"
  parameters = { message = { type = "string" } }
  files = [{
    path    = "/etc/motd-lab"
    content = "{{ .machine.hostname }}: {{ .params.message }}\n"
  }]
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

  roles           = [metal_role.motd.ref]
  role_parameters = { motd = { message = var.message } }

  # Wait until the machine installed the image, rebooted from its disk and
  # asked DHCP for its address.
  wait_for = "booted"

  timeouts {
    create = "20m"
    update = "5m"
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
