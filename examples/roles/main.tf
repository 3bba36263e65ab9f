# A three-role stack, base -> container runtime -> Kubernetes worker, on
# machines installed from an Ubuntu cloud image (README.md, "Roles").
#
# Each role requires the one below it by `ref`, and machines list only the
# top role: the stack is applied in order at install (rendered into the
# cloud-init user-data), and any later change to any layer reaches every
# machine using it in place, through the agent installed with it. Try:
#
#   terraform apply                        # installs the workers
#   # edit containerd's config below, then:
#   terraform apply                        # only the agents converge
#
# A role that fails (say, a typo in a script) fails the apply with the
# role's output, and the change stays pending in the next plan.

terraform {
  required_providers {
    metal = {
      source = "composable-metal/metal"
    }
  }
}

variable "control_plane_endpoint" {
  description = "host:port of the Kubernetes API the workers join"
  type        = string
}

variable "join_token" {
  description = "kubeadm bootstrap token (kubeadm token create)"
  type        = string
  sensitive   = true
}

variable "workers" {
  description = "Worker name => BMC endpoint"
  type        = map(string)
}

provider "metal" {
  boot_service {
    address = "192.0.2.10"
    dhcp {
      subnet = "192.0.2.0/24"
    }
  }
}

resource "metal_os_image" "ubuntu" {
  name    = "ubuntu-24.04"
  install = "cloud-init"
  kernel = {
    url    = "https://releases.example.com/ubuntu/24.04/netboot/amd64/linux"
    sha256 = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
  }
  initrd = {
    url    = "https://releases.example.com/ubuntu/24.04/netboot/amd64/initrd"
    sha256 = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
  }
}

resource "metal_role" "base" {
  name     = "base"
  packages = ["chrony", "curl", "gnupg"]
  files = [
    {
      path    = "/etc/modules-load.d/k8s.conf"
      content = "overlay\nbr_netfilter\n"
    },
    {
      path    = "/etc/sysctl.d/90-k8s.conf"
      content = "net.ipv4.ip_forward = 1\nnet.bridge.bridge-nf-call-iptables = 1\n"
    },
  ]
  scripts = ["modprobe overlay && modprobe br_netfilter && sysctl --system"]
}

resource "metal_role" "containerd" {
  name     = "containerd"
  requires = [metal_role.base.ref]
  parameters = {
    sandbox_image = { type = "string", default = "registry.k8s.io/pause:3.10" }
  }
  packages = ["containerd"]
  files = [{
    path    = "/etc/containerd/config.toml"
    content = <<-EOT
      version = 2
      [plugins."io.containerd.grpc.v1.cri"]
        sandbox_image = "{{ .params.sandbox_image }}"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = true
    EOT
  }]
  scripts   = ["systemctl restart containerd"]
  on_remove = "systemctl disable --now containerd"
}

resource "metal_role" "k8s_worker" {
  name     = "k8s-worker"
  requires = [metal_role.containerd.ref]
  parameters = {
    endpoint = { type = "string", description = "host:port of the API server" }
    token    = { type = "string", description = "bootstrap token" }
  }
  packages = ["kubelet", "kubeadm"]
  files = [{
    path    = "/etc/kubernetes/join.env"
    mode    = "0600"
    content = "ENDPOINT={{ .params.endpoint }}\nTOKEN={{ .params.token }}\nNODE={{ .machine.hostname }}\n"
  }]
  # Idempotent: joining again is skipped once the kubelet is configured.
  scripts = [<<-EOT
    . /etc/kubernetes/join.env
    [ -f /etc/kubernetes/kubelet.conf ] && exit 0
    kubeadm join "$ENDPOINT" --token "$TOKEN" --node-name "$NODE" --discovery-token-unsafe-skip-ca-verification
  EOT
  ]
  on_remove = "kubeadm reset --force"
}

resource "metal_machine" "worker" {
  for_each = var.workers

  bmc = {
    endpoint = each.value
  }
  os_image = metal_os_image.ubuntu.name
  hostname = each.key

  roles = [metal_role.k8s_worker.ref]
  role_parameters = {
    "k8s-worker" = {
      endpoint = var.control_plane_endpoint
      token    = var.join_token
    }
  }
}

output "workers" {
  value = { for name, m in metal_machine.worker : name => m.ip_address }
}
