// Package render produces what a netbooting machine fetches from the boot
// service: its iPXE script and its install configuration (cloud-init,
// kickstart, Ignition, image-writer variables).
//
// Rendering is strict and hermetic, so that the exact bytes a machine will
// receive can be computed (and diffed) at plan time:
//
//   - Templates are text/template with Option("missingkey=error") over a
//     map built from [MachineVars]; a reference to a key that does not exist
//     fails with an error naming the key. (index .metadata "k" is the
//     explicit way to read an optional key.)
//   - The function set is small and pure (see [Funcs]): quoting, joining,
//     indenting, YAML/JSON/base64 encoding. There is no access to the
//     environment, files, time or randomness.
//   - Every input is validated first ([MachineVars.Validate]): values that
//     end up in an iPXE script or a kernel command line cannot contain
//     whitespace or control characters, so they cannot inject commands.
//
// The built-in templates live in templates/ and can be replaced per file by
// MachineVars.Templates (see [DefaultTemplate] for a starting point).
//
// Local boot: [LocalBootScript] uses `sanboot --no-describe --drive 0x80`
// under BIOS (the iPXE-documented way to boot the first hard disk through
// INT 13h) and `exit 1` under UEFI. iPXE's EFI sanboot of a local drive only
// exists in recent builds and picks the first EFI block device, which may be
// removable install media; returning an error status to the firmware makes
// it continue with the next BootOrder entry, the installed disk, which is
// what the iPXE maintainers recommend. This relies on the disk being in the
// BootOrder after the network entry.
package render
