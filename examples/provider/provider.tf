# Defaults every `bmc` block inherits. Leave bmc_username and bmc_password
# out to take them from METAL_BMC_USERNAME and METAL_BMC_PASSWORD.
provider "metal" {
  bmc_username       = "admin"
  bmc_password       = var.bmc_password
  bmc_ca_certificate = file("${path.module}/bmc-ca.pem")

  # At most this many BMC operations run at once across all resources.
  max_concurrent_bmc_operations = 8
  poll_interval                 = "2s"

  # The DHCP, TFTP and HTTP services machines install from (metal_os_image,
  # metal_machine.os_image). They run inside the provider while Terraform
  # runs; ports 67 and 69 need root or CAP_NET_BIND_SERVICE.
  boot_service {
    address   = "192.0.2.1" # this host on the provisioning network
    interface = "eno2"

    dhcp {
      subnet      = "192.0.2.0/24"
      range_start = "192.0.2.100"
      range_end   = "192.0.2.199"
      router      = "192.0.2.254"
      dns         = ["192.0.2.53"]
      lease_time  = "1h"
    }
  }
}

variable "bmc_password" {
  type      = string
  sensitive = true
}
