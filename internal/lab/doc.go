// Package lab is a local lab of real VMs behind Redfish BMC simulators, so
// that users and CI can watch the whole provisioning path work without
// hardware: firmware PXE-boots over a real (namespaced) network from the
// provider's boot service, driven by Redfish, and ends with a disk that
// holds the installed image and boots it.
//
// Pieces:
//
//   - [VM] is a [bmcsim.PowerBackend] that runs QEMU (one process per
//     power-on, QMP for resets and ACPI power-off) with the boot order the
//     pending one-time override asks for; see its documentation. It also
//     implements [bmcsim.BootOverrideAware], through which the simulator
//     tells it the override before each power request.
//   - [BuildInstaller] builds, from Debian packages only, the kernel (the
//     host's /boot/vmlinuz-*), a busybox initramfs (installer/init.sh: load
//     the NIC and disk drivers, DHCP with a vendor class that is not
//     PXEClient, fetch the image.env the boot service renders for kind
//     "image", download and verify the image, write and read it back,
//     put the role agent on it when image.env names one, report events and
//     "provisioned", reboot; or wipe; or act as the installed system) and
//     the disk image itself (MBR + FAT partition with syslinux for BIOS and
//     systemd-boot for UEFI, booting the same initramfs with
//     metal.mode=installed, which asks DHCP for an address: the boot
//     service's "booted"; and runs the role agent from the partition when
//     the installer put one there, writing its roles' files under /root of
//     the partition). The partition's file system is [AgentRoomMiB] larger
//     than the image file, which stops at the last allocated cluster, so
//     lab disks must hold the whole partition ([DiskSizeMiB]). Builds are
//     cached by their inputs.
//   - [SetupNetwork] creates the network namespace (default "metal-lab")
//     with a bridge (br-lab, 10.99.0.1/24) and one tap per VM; nothing is
//     added to the root namespace. [StartMachines] (run inside the
//     namespace) starts one BMC simulator per VM on 127.0.0.1 there.
//   - [Accel] probes KVM by booting the installer kernel briefly and falls
//     back to TCG (nested CPUs without vmx/svm expose a /dev/kvm that
//     hangs).
//
// cmd/metal-lab wraps this as `metal-lab up` / `metal-lab down`, and
// TestLabEndToEnd (METAL_LAB=1, root) provisions one BIOS and one UEFI VM
// through the engine, concurrently, to "booted", checks each timeline and
// disk, wipes them, and tears the lab down, checking nothing is left. The
// first VM is installed with a role and the agent (this repository's
// binary, built static by the test): once it booted, the test changes its
// roles in place through the engine, checks that nothing was reinstalled,
// and reads the changed file from the powered-off VM's disk
// (METAL_LAB_E2E_ROLES=0 skips this).
// bench/lab-provision compares the boot service with dnsmasq + busybox
// httpd on the same VM.
package lab
