# A site workspace using a role that the platform workspace owns (both
# point at the same boot service daemon). When the platform workspace
# changes the role, its ref changes and this machine updates in place.
data "metal_role" "k8s_worker" {
  name = "k8s-worker"
}

resource "metal_machine" "node1" {
  bmc = {
    endpoint = "https://10.0.0.11"
  }
  os_image = "ubuntu-24.04"
  hostname = "node1"

  roles = [data.metal_role.k8s_worker.ref]
  role_parameters = {
    "k8s-worker" = { api_endpoint = "https://cp.example.internal:6443" }
  }
}
