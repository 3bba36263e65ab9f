// Package machinesim is a simulated bare-metal machine: it plays the client
// side of a network install over real sockets, so that the boot service
// (internal/boot/dhcp, internal/boot/httpboot) and the provider's
// acceptance tests can go create → provisioned → destroy without VMs.
//
// [Machine.NetBoot] does what iPXE and an installer would:
//
//  1. DHCP: DISCOVER/OFFER/REQUEST/ACK over UDP, unicast to
//     Machine.DHCPServer, with the options iPXE sends (vendor class
//     "PXEClient:Arch:00000:UNDI:002001" or the EFI equivalent, user class
//     "iPXE", option 93, option 94, option 175 feature flags). The boot file
//     of the ACK (option 67, else the file field) must be an http(s) URL:
//     the machine's script. On loopback the server must run with
//     dhcp.ServerConfig.ReplyToSender (or ClientPort = Machine.ClientPort).
//  2. iPXE: the script is fetched and interpreted. The subset is what the
//     renderer emits and a little more: #!ipxe, comments, :labels, goto,
//     set/clear/inc/iseq/isset with ${setting} expansion, echo, sleep,
//     kernel/imgselect, initrd/module/imgfetch, imgargs, imgfree,
//     chain/imgexec, boot, sanboot, exit, reboot, poweroff, dhcp/ifconf
//     (no-ops), and the && / || command separators with iPXE's semantics (a
//     line whose last command fails aborts the script). Any other command
//     is an error naming it. Fetched images are verified against the
//     server's "sha256:" ETag, and their sizes and sums recorded.
//  3. The installer: booting a kernel runs the installer its command line
//     names, which fetches its configuration from the URLs the rendered
//     script and configs carry (nothing is constructed here):
//     cloud-init (ds=nocloud-net;s=URL: meta-data, user-data,
//     network-config; write_files, recorded in Installation.Files; runcmd
//     curl commands; phone_home to the URL in the user-data), kickstart
//     (inst.ks=URL: the curl commands of %pre and %post), Ignition
//     (coreos.live.rootfs_url, coreos.inst.ignition_url: files, merged
//     configs, the curl commands of enabled systemd units),
//     the image writer (metal.config=URL: image.env's image, cloud-init
//     seed, events and provisioned URLs) and the wiper (metal.action=wipe
//     with metal.events and metal.provisioned). What got installed lands on
//     the machine's [Disk].
//  4. Local boot: sanboot of a local drive, or exit (back to the firmware,
//     whose next boot entry is the disk), ends the run with BootedFrom
//     "disk"; an empty disk is then ErrNoOS.
//
// Every failure is returned as a *StageError naming the stage ("dhcp",
// "script", "kernel", "config/user-data", "provisioned", ...) or a
// *ScriptError naming the script line. Tokens never appear in errors, logs
// or Result.String: URLs are redacted with RedactURL.
//
// [Fleet] connects machines to a bmcsim.Simulator: its OnBoot method is a
// bmcsim.SystemSpec.OnBoot hook that netboots the machine when the boot
// followed a "Pxe" override and boots its disk otherwise, recording every
// boot for the test to wait on.
//
// Time is simulated: the script's sleep does not wait unless
// Machine.Sleep says otherwise, so retry loops run at full speed.
package machinesim
