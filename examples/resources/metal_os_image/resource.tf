# Ubuntu's netboot kernel and initrd, pinned by sha256 (required for
# http(s) URLs), installed through cloud-init (autoinstall).
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

  kernel_args = ["console=ttyS0,115200n8", "autoinstall"]
}

# Files on the host running Terraform: the sums are computed when unset.
resource "metal_os_image" "local" {
  name    = "appliance-1.4"
  install = "image"

  kernel = {
    url = "file:///srv/images/appliance/vmlinuz"
  }
  initrd = {
    url = "file:///srv/images/appliance/installer.img"
  }
  image = {
    url = "file:///srv/images/appliance/disk.raw.gz"
  }
}

output "ubuntu_kernel_size" {
  value = metal_os_image.ubuntu.kernel_size
}
