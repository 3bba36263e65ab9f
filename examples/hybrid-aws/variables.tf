# Inputs of the hybrid example. The defaults fit the loopback setup of the
# "Hybrid stacks with AWS" guide (a simulated BMC and moto_server); on a
# real site set the BMC, boot service and image variables, and leave
# aws_endpoint unset to talk to AWS itself.

# --- metal: BMC ---------------------------------------------------------------

variable "bmc_endpoint" {
  description = "Redfish endpoint of the BMC (or chassis manager) whose systems become the machines."
  type        = string
  default     = "https://127.0.0.1:8443"
}

variable "bmc_username" {
  description = "BMC user name."
  type        = string
  default     = "admin"
}

variable "bmc_password" {
  description = "BMC password."
  type        = string
  sensitive   = true
  default     = "password"
}

variable "bmc_ca_file" {
  description = "PEM file of the CA that signed the BMC's certificate (the simulator writes .dev/bmc-ca.pem)."
  type        = string
  default     = null
}

variable "system_ids" {
  description = "The BMC systems to install, one metal_machine each. null: every system the BMC lists."
  type        = list(string)
  default     = null
}

# --- metal: boot service and image --------------------------------------------

variable "boot_address" {
  description = "This host's IPv4 address on the provisioning network (boot_service.address)."
  type        = string
  default     = "127.0.0.1"
}

variable "boot_http_listen" {
  description = "host:port of the boot service's HTTP server."
  type        = string
  default     = "127.0.0.1:8081"
}

variable "boot_dhcp_listen" {
  description = "host:port DHCP listens on: 0.0.0.0:67 on a real network; a loopback port for the simulator."
  type        = string
  default     = "127.0.0.1:6767"
}

variable "boot_subnet" {
  description = "The provisioning network, in CIDR notation."
  type        = string
  default     = "127.0.0.0/8"
}

variable "boot_range" {
  description = "First and last address machines lease from boot_subnet."
  type        = list(string)
  default     = ["127.0.0.100", "127.0.0.199"]
}

variable "boot_state_dir" {
  description = "The boot service's state directory (null: the provider's default under ~/.local/state)."
  type        = string
  default     = null
}

variable "kernel_url" {
  description = "Kernel of the cloud-init installer: https:// (with kernel_sha256) or file:///absolute/path."
  type        = string
}

variable "kernel_sha256" {
  description = "sha256 of the kernel; required for http(s) URLs, computed for file:// ones when null."
  type        = string
  default     = null
}

variable "initrd_url" {
  description = "Initrd of the cloud-init installer: https:// (with initrd_sha256) or file:///absolute/path."
  type        = string
}

variable "initrd_sha256" {
  description = "sha256 of the initrd; required for http(s) URLs, computed for file:// ones when null."
  type        = string
  default     = null
}

variable "poll_interval" {
  description = "How often the provider polls BMCs while it waits."
  type        = string
  default     = "1s"
}

# --- AWS ------------------------------------------------------------------------

variable "aws_region" {
  description = "AWS region of the VPC side."
  type        = string
  default     = "us-east-1"
}

variable "aws_endpoint" {
  description = "Send every AWS API call to this URL instead of AWS, such as a moto_server on http://127.0.0.1:5000 (null: AWS itself)."
  type        = string
  default     = null
}

variable "name" {
  description = "Name of the stack: prefixes the AWS resources."
  type        = string
  default     = "hybrid"
}

variable "vpc_cidr" {
  description = "Address range of the VPC."
  type        = string
  default     = "10.80.0.0/16"
}

variable "zone_name" {
  description = "Route 53 zone the machines are named in: <system>.<zone_name>."
  type        = string
  default     = "metal.example.internal"
}

variable "private_zone" {
  description = "Make the zone private to the VPC (what you want on AWS; moto_server does not keep the VPC association, so the guide leaves it false)."
  type        = bool
  default     = false
}

variable "service_port" {
  description = "TCP port the machines serve and the load balancer forwards."
  type        = number
  default     = 443
}

variable "node_labels" {
  description = "Labels by system id, a role parameter of that machine only (changing one updates only that machine, in place)."
  type        = map(string)
  default     = {}
}
