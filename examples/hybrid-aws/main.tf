# A hybrid stack in one plan: a VPC side on AWS (a network load balancer and
# a Route 53 zone) and a rack of bare-metal machines that the metal
# provider installs over the network, with values flowing both ways:
#
#   metal -> AWS: each machine's address, leased while it installs, becomes
#                 a Route 53 A record and a load-balancer target;
#   AWS -> metal: the load balancer's DNS name, known only once AWS created
#                 it, is a role parameter of every machine: written onto it
#                 as it installs, and kept up to date in place after.
#
# The guide "Hybrid stacks with AWS" (docs/guides/hybrid-aws.md) runs it
# against a simulated BMC and moto_server on loopback, and walks through
# what is known at plan time and what is not. internal/hybridtest runs the
# same configuration in `make test`.

terraform {
  required_providers {
    metal = {
      source = "composable-metal/metal"
    }
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }
}

# --- providers --------------------------------------------------------------------

provider "metal" {
  bmc_username       = var.bmc_username
  bmc_password       = var.bmc_password
  bmc_ca_certificate = var.bmc_ca_file == null ? null : file(var.bmc_ca_file)
  poll_interval      = var.poll_interval

  # The embedded boot service answers the machines' network boot while
  # Terraform runs. A team that shares one site moves it to the metal
  # daemon (boot_service { endpoint = ..., token = ... }); see the guide.
  boot_service {
    address     = var.boot_address
    http_listen = var.boot_http_listen
    state_dir   = var.boot_state_dir
    dhcp {
      mode        = "authoritative"
      listen      = var.boot_dhcp_listen
      subnet      = var.boot_subnet
      range_start = var.boot_range[0]
      range_end   = var.boot_range[1]
    }
    tftp {
      enabled = false # the machines boot iPXE over HTTP
    }
  }
}

provider "aws" {
  region = var.aws_region

  # With aws_endpoint (moto_server), nothing reaches AWS: every service the
  # example uses goes to that URL, and no account or instance metadata is
  # looked up. Credentials come from the usual AWS_* variables.
  skip_credentials_validation = var.aws_endpoint != null
  skip_requesting_account_id  = var.aws_endpoint != null
  skip_metadata_api_check     = var.aws_endpoint != null

  dynamic "endpoints" {
    for_each = var.aws_endpoint == null ? [] : [var.aws_endpoint]
    content {
      ec2     = endpoints.value
      elbv2   = endpoints.value
      route53 = endpoints.value
      sts     = endpoints.value
      iam     = endpoints.value
    }
  }
}

# --- the machines -------------------------------------------------------------------

# Read at plan time: the machines' keys (the BMC's system ids) are known
# before anything is created, so for_each works on the first plan.
data "metal_machine_inventory" "rack" {
  bmc = {
    endpoint = var.bmc_endpoint
  }
}

locals {
  system_ids = var.system_ids != null ? var.system_ids : data.metal_machine_inventory.rack.systems[*].id
  # system id => host name, such as node1.metal.example.internal
  hostnames = {
    for id in local.system_ids : id => "${replace(lower(id), "/[^a-z0-9-]/", "-")}.${var.zone_name}"
  }
}

resource "metal_os_image" "installer" {
  name    = "${var.name}-installer"
  install = "cloud-init"
  kernel = {
    url    = var.kernel_url
    sha256 = var.kernel_sha256
  }
  initrd = {
    url    = var.initrd_url
    sha256 = var.initrd_sha256
  }
}

resource "metal_machine" "node" {
  for_each = local.hostnames

  bmc = {
    endpoint  = var.bmc_endpoint
    system_id = each.key
  }
  os_image = metal_os_image.installer.name
  hostname = each.value

  # AWS -> metal, through a role's parameters. The load balancer's DNS name
  # is unknown until AWS has created it, so the plan shows role_parameters
  # as known after apply, and Terraform installs the machines after the
  # load balancer exists. Changing a value later (or the role) updates the
  # machines in place through their agents: no reinstall.
  # An order no value expresses: machines come up once the listener
  # forwards to their target group.
  depends_on = [aws_lb_listener.ingress]

  roles = [metal_role.ingress_worker.ref]
  role_parameters = {
    (metal_role.ingress_worker.name) = {
      ingress_endpoint = aws_lb.ingress.dns_name
      vpc_cidr         = aws_vpc.main.cidr_block
      labels           = lookup(var.node_labels, each.key, "")
    }
  }
}

# What every machine of the rack runs: here just the file that tells it
# where its ingress is; a real stack would require a base and a runtime
# role (see examples/roles).
resource "metal_role" "ingress_worker" {
  name        = "ingress-worker"
  description = "Joins the machine to the AWS-side ingress"
  parameters = {
    ingress_endpoint = { type = "string", description = "DNS name of the AWS load balancer" }
    vpc_cidr         = { type = "string", description = "The VPC's address range" }
    labels           = { type = "string", default = "", description = "Per-machine labels" }
  }
  files = [{
    path    = "/etc/hybrid/ingress.env"
    content = "INGRESS_ENDPOINT={{ .params.ingress_endpoint }}\nVPC_CIDR={{ .params.vpc_cidr }}\n{{ with .params.labels }}LABELS={{ . }}\n{{ end }}"
  }]
}

locals {
  # metal -> AWS: the address each machine leased while it installed
  # (ip_address is "address/prefix"), known once the machine is created.
  machine_ips = { for id, m in metal_machine.node : id => split("/", m.ip_address)[0] }
}

# --- the VPC side ---------------------------------------------------------------------

resource "aws_vpc" "main" {
  cidr_block = var.vpc_cidr
  # A private zone resolves in the VPC only with DNS hostnames on.
  enable_dns_hostnames = var.private_zone
  tags = {
    Name = var.name
  }
}

resource "aws_subnet" "ingress" {
  vpc_id            = aws_vpc.main.id
  cidr_block        = cidrsubnet(var.vpc_cidr, 8, 1)
  availability_zone = "${var.aws_region}a"
  tags = {
    Name = "${var.name}-ingress"
  }
}

resource "aws_lb" "ingress" {
  name               = "${var.name}-ingress"
  load_balancer_type = "network"
  internal           = true
  subnets            = [aws_subnet.ingress.id]
}

resource "aws_lb_target_group" "metal" {
  name        = "${var.name}-metal"
  port        = var.service_port
  protocol    = "TCP"
  target_type = "ip"
  vpc_id      = aws_vpc.main.id
}

resource "aws_lb_listener" "ingress" {
  load_balancer_arn = aws_lb.ingress.arn
  port              = var.service_port
  protocol          = "TCP"
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.metal.arn
  }
}

# metal -> AWS: one target per machine. The machines are outside the VPC
# (on the site, reached over a VPN or Direct Connect), hence
# availability_zone = "all"; AWS wants such addresses in a private range.
resource "aws_lb_target_group_attachment" "metal" {
  for_each = local.machine_ips

  target_group_arn  = aws_lb_target_group.metal.arn
  target_id         = each.value
  port              = var.service_port
  availability_zone = "all"
}

resource "aws_route53_zone" "site" {
  name = var.zone_name
  # Private to the VPC with private_zone; moto_server (the guide, the test)
  # keeps no VPC association, so there the zone is public.
  dynamic "vpc" {
    for_each = var.private_zone ? [aws_vpc.main.id] : []
    content {
      vpc_id = vpc.value
    }
  }
}

# metal -> AWS: one A record per machine, under the name it was installed with.
resource "aws_route53_record" "machine" {
  for_each = local.machine_ips

  zone_id = aws_route53_zone.site.zone_id
  name    = local.hostnames[each.key]
  type    = "A"
  ttl     = 60
  records = [each.value]
}
