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
