# The no-root quickstart, against the BMC simulator on loopback (no VMs,
# no network boot; README.md, "Without root"):
#
#   make dev-override                 # builds this checkout
#   export TF_CLI_CONFIG_FILE=$PWD/.dev/terraformrc
#   make sim &                        # serves https://127.0.0.1:8443
#   make sim-ready
#   cd examples/simulator && terraform apply
#
# The simulator's default credentials are admin/password, and it writes its
# self-signed CA to .dev/bmc-ca.pem.

terraform {
  required_providers {
    metal = {
      source = "composable-metal/metal"
    }
  }
}

provider "metal" {
  bmc_username       = "admin"
  bmc_password       = "password"
  bmc_ca_certificate = file("${path.module}/../../.dev/bmc-ca.pem")
  poll_interval      = "500ms"
}

data "metal_machine_inventory" "sim" {
  bmc = {
    endpoint = "https://127.0.0.1:8443"
  }
}

resource "metal_machine" "node" {
  bmc = {
    endpoint  = "https://127.0.0.1:8443"
    system_id = data.metal_machine_inventory.sim.systems[0].id
  }

  power_state = "on"
}

output "machine_id" {
  value = metal_machine.node.id
}

output "inventory" {
  value = {
    manufacturer = metal_machine.node.manufacturer
    model        = metal_machine.node.model
    serial       = metal_machine.node.serial_number
    cpus         = "${metal_machine.node.cpu_count} x ${metal_machine.node.cpu_model}"
    memory_gib   = metal_machine.node.memory_gib
    boot_mac     = metal_machine.node.boot_mac
  }
}

output "systems_on_bmc" {
  value = [for s in data.metal_machine_inventory.sim.systems : "${s.id} (${s.power_state})"]
}
