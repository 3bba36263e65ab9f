# A base layer every machine gets.
resource "metal_role" "base" {
  name        = "base"
  description = "Time sync and a message of the day"
  packages    = ["chrony"]

  files = [{
    path    = "/etc/motd"
    content = "{{ .machine.hostname }} ({{ .machine.inventory.model }}) is managed by Terraform\n"
  }]
}

# A layer on top, with a parameter each machine can set.
resource "metal_role" "node_exporter" {
  name     = "node-exporter"
  requires = [metal_role.base.ref]

  parameters = {
    port = { type = "number", default = "9100", description = "Port to listen on" }
  }

  packages = ["prometheus-node-exporter"]
  files = [{
    path    = "/etc/default/prometheus-node-exporter"
    content = "ARGS=\"--web.listen-address=:{{ .params.port }}\"\n"
  }]
  scripts   = ["systemctl restart prometheus-node-exporter"]
  on_remove = "systemctl disable --now prometheus-node-exporter"
}
