# Defaults every `bmc` block inherits. Leave bmc_username and bmc_password
# out to take them from METAL_BMC_USERNAME and METAL_BMC_PASSWORD.
provider "metal" {
  bmc_username       = "admin"
  bmc_password       = var.bmc_password
  bmc_ca_certificate = file("${path.module}/bmc-ca.pem")

  # At most this many BMC operations run at once across all resources.
  max_concurrent_bmc_operations = 8
  poll_interval                 = "2s"
}

variable "bmc_password" {
  type      = string
  sensitive = true
}
