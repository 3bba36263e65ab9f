package dhcp

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// ClientKind is what kind of DHCP client sent a request.
type ClientKind int

const (
	// ClientOS is a plain DHCP client, typically the installed operating
	// system. It only ever gets an address.
	ClientOS ClientKind = iota
	// ClientPXE is PXE firmware (option 60 starts with "PXEClient").
	ClientPXE
	// ClientHTTP is UEFI HTTP boot firmware (option 60 "HTTPClient").
	ClientHTTP
	// ClientIPXE is iPXE (user class "iPXE" or option 175 present).
	ClientIPXE
)

func (k ClientKind) String() string {
	switch k {
	case ClientOS:
		return "os"
	case ClientPXE:
		return "pxe"
	case ClientHTTP:
		return "http"
	case ClientIPXE:
		return "ipxe"
	}
	return fmt.Sprintf("ClientKind(%d)", int(k))
}

const (
	vendorPXEClient  = "PXEClient"
	vendorHTTPClient = "HTTPClient"

	// optIPXE is iPXE's encapsulated option space (175); sub-option 176 is
	// no-pxedhcp: "do not wait for proxyDHCP offers".
	optIPXE                 = dhcpv4.GenericOptionCode(175)
	ipxeNoPXEDHCP           = 176
	scriptLogName           = "script"
	pxeDiscoveryCtl         = 6  // PXE option 43 sub-option PXE_DISCOVERY_CONTROL
	pxeBootItem             = 71 // PXE option 43 sub-option PXE_BOOT_ITEM
	pxeDiscoverySkipUseFile = 8
)

// classify tells firmware, iPXE and operating systems apart. iPXE is checked
// first: it also sends a "PXEClient:..." vendor class.
func classify(req *dhcpv4.DHCPv4) ClientKind {
	if req.Options.Has(optIPXE) || slices.Contains(req.UserClass(), "iPXE") {
		return ClientIPXE
	}
	vc := req.ClassIdentifier()
	switch {
	case strings.HasPrefix(vc, vendorHTTPClient):
		return ClientHTTP
	case strings.HasPrefix(vc, vendorPXEClient):
		return ClientPXE
	}
	return ClientOS
}

// clientArch returns option 93's first entry, falling back to the arch
// encoded in the vendor class ("PXEClient:Arch:00007:UNDI:003016").
func clientArch(req *dhcpv4.DHCPv4, vendorClass string) (iana.Arch, bool) {
	if archs := req.ClientArch(); len(archs) > 0 {
		return archs[0], true
	}
	_, rest, ok := strings.Cut(vendorClass, ":Arch:")
	if !ok || len(rest) < 5 {
		return 0, false
	}
	n, err := strconv.ParseUint(rest[:5], 10, 16)
	if err != nil {
		return 0, false
	}
	return iana.Arch(n), true
}

type transport int

const (
	viaTFTP transport = iota
	viaHTTP
)

type loader int

const (
	loaderBIOS loader = iota
	loaderEFIx64
	loaderARM64
)

// archTable maps the firmware architecture (option 93) to how and what it
// boots. Architectures not listed get an address but no boot file.
var archTable = map[iana.Arch]struct {
	via    transport
	loader loader
}{
	iana.INTEL_X86PC:     {viaTFTP, loaderBIOS},   // 0: legacy BIOS PXE
	iana.EFI_X86_64:      {viaTFTP, loaderEFIx64}, // 7: UEFI x64 PXE
	iana.EFI_BC:          {viaTFTP, loaderEFIx64}, // 9: UEFI x64 PXE (RFC 4578 errata swapped 7/9)
	iana.EFI_ARM64:       {viaTFTP, loaderARM64},  // 11: UEFI arm64 PXE
	iana.EFI_X86_64_HTTP: {viaHTTP, loaderEFIx64}, // 16: UEFI x64 HTTP boot
	iana.EFI_ARM64_HTTP:  {viaHTTP, loaderARM64},  // 19: UEFI arm64 HTTP boot
}

func (b *BootConfig) file(l loader) string {
	switch l {
	case loaderEFIx64:
		return b.EFIx64File
	case loaderARM64:
		return b.ARM64File
	}
	return b.BIOSFile
}

// bootPlan is the boot part of a reply. The zero value means address only.
type bootPlan struct {
	file string // file name or URL; may be a secret script URL
	// logName is what logs and events show instead of file.
	logName string
	// tftpServer, when valid, is set as siaddr and option 66.
	tftpServer netip.Addr
	// vendorClass, when set, is sent as option 60.
	vendorClass string
	// pxeOptions adds option 43 with PXE discovery control.
	pxeOptions bool
	// noProxyWait adds option 175 with sub-option 176 = 1.
	noProxyWait bool
	// fileOption forces option 67 even if the client did not request it.
	fileOption bool
	// echoGUID copies option 97 from the request.
	echoGUID bool
}

func (p bootPlan) none() bool { return p.file == "" }

// selectBoot decides what a client boots. proxy is true for proxyDHCP offers
// and port-4011 answers, where option 60 "PXEClient" is mandatory. The second
// result explains an address-only plan for a netboot client.
func selectBoot(f ClientFacts, m *Machine, cfg *BootConfig, serverID netip.Addr, proxy bool) (bootPlan, Reason) {
	if f.Client == ClientOS {
		return bootPlan{}, ""
	}
	if !m.Netboot {
		return bootPlan{}, ReasonNetbootDisabled
	}
	if f.Client == ClientIPXE {
		if m.ScriptURL == "" {
			return bootPlan{}, ReasonNoBootFile
		}
		p := bootPlan{file: m.ScriptURL, logName: scriptLogName, fileOption: true}
		if proxy {
			// iPXE only takes a proxyDHCP offer that says PXEClient;
			// no-pxedhcp would make it ignore the very offer it needs.
			p.vendorClass = vendorPXEClient
		} else {
			p.noProxyWait = true
		}
		return p, ""
	}
	if !f.HasArch {
		return bootPlan{}, ReasonNoBootFile
	}
	entry, ok := archTable[f.Arch]
	if !ok {
		return bootPlan{}, ReasonNoBootFile
	}
	name := cfg.file(entry.loader)
	switch {
	case f.Client == ClientPXE && entry.via == viaTFTP:
		tftp := cfg.TFTPServer
		if !tftp.IsValid() {
			tftp = serverID
		}
		p := bootPlan{file: name, logName: name, tftpServer: tftp}
		if proxy || cfg.PXEBootServer {
			p.vendorClass = vendorPXEClient
			p.pxeOptions = true
			p.echoGUID = true
		}
		return p, ""
	case f.Client == ClientHTTP && entry.via == viaHTTP && cfg.HTTPBaseURL != "":
		u := strings.TrimSuffix(cfg.HTTPBaseURL, "/") + "/" + name
		// UEFI HTTP boot ignores offers without option 60 "HTTPClient".
		return bootPlan{file: u, logName: u, vendorClass: vendorHTTPClient, echoGUID: true}, ""
	}
	return bootPlan{}, ReasonNoBootFile
}

// pxeVendorOptions is option 43 for PXE clients: discovery control 8 ("skip
// discovery, boot the file in this packet") and, for boot-server replies, the
// boot item the client asked for, echoed.
func pxeVendorOptions(req *dhcpv4.DHCPv4) []byte {
	out := []byte{pxeDiscoveryCtl, 1, pxeDiscoverySkipUseFile}
	if item := subOption(req.Options.Get(dhcpv4.OptionVendorSpecificInformation), pxeBootItem); len(item) == 4 {
		out = append(out, pxeBootItem, 4)
		out = append(out, item...)
	}
	return append(out, 255)
}

// subOption finds code in an encapsulated TLV option value; nil when absent or
// malformed.
func subOption(data []byte, code byte) []byte {
	for len(data) > 0 {
		c := data[0]
		if c == 0 {
			data = data[1:]
			continue
		}
		if c == 255 || len(data) < 2 {
			return nil
		}
		n := int(data[1])
		if len(data) < 2+n {
			return nil
		}
		if c == code {
			return data[2 : 2+n]
		}
		data = data[2+n:]
	}
	return nil
}

// bootModifiers renders p into reply modifiers.
func bootModifiers(req *dhcpv4.DHCPv4, want *optionSet, p bootPlan) []dhcpv4.Modifier {
	if p.none() {
		return nil
	}
	var mods []dhcpv4.Modifier
	const fileField = 127 // 128 bytes, NUL terminated
	if len(p.file) <= fileField {
		file := p.file
		mods = append(mods, func(d *dhcpv4.DHCPv4) { d.BootFileName = file })
	}
	if p.fileOption || len(p.file) > fileField || want.has(dhcpv4.OptionBootfileName) {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptBootFileName(p.file)))
	}
	if p.tftpServer.IsValid() {
		mods = append(mods,
			dhcpv4.WithServerIP(ipOf(p.tftpServer)),
			dhcpv4.WithOption(dhcpv4.OptTFTPServerName(p.tftpServer.String())))
	}
	if p.vendorClass != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClassIdentifier(p.vendorClass)))
	}
	if p.pxeOptions {
		mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionVendorSpecificInformation, pxeVendorOptions(req)))
	}
	if p.noProxyWait {
		mods = append(mods, dhcpv4.WithGeneric(optIPXE, []byte{ipxeNoPXEDHCP, 1, 1}))
	}
	if p.echoGUID {
		mods = append(mods, dhcpv4.WithOptionCopied(req, dhcpv4.OptionClientMachineIdentifier))
	}
	return mods
}
