package bmcsim

import (
	"fmt"
	"strconv"
	"time"
)

// Vendor selects which real BMC family the simulator imitates: resource ids,
// payload shapes, capabilities and known quirks.
type Vendor string

// Supported vendors.
const (
	Generic    Vendor = "generic"
	Dell       Vendor = "dell"
	HPE        Vendor = "hpe"
	Supermicro Vendor = "supermicro"
)

// Vendors lists every supported vendor, Generic first.
func Vendors() []Vendor { return []Vendor{Generic, Dell, HPE, Supermicro} }

// ParseVendor converts a string (case-sensitive, as printed by Vendors) to a
// Vendor.
func ParseVendor(s string) (Vendor, error) {
	for _, v := range Vendors() {
		if string(v) == s {
			return v, nil
		}
	}
	return "", fmt.Errorf("bmcsim: unknown vendor %q (want one of %v)", s, Vendors())
}

// expandCaps mirrors ServiceRoot.ProtocolFeaturesSupported.ExpandQuery.
type expandCaps struct {
	advertised bool // ProtocolFeaturesSupported.ExpandQuery present in the service root
	expandAll  bool // "*"
	links      bool // "~"
	noLinks    bool // "."
	levels     bool // "($levels=n)"
	maxLevels  int
}

// successStyle is how a vendor answers a successful PATCH / action / DELETE.
type successStyle int

const (
	successNoContent    successStyle = iota // 204, no body (bmcweb, DMTF mockup server)
	successExtendedInfo                     // 200 {"@Message.ExtendedInfo":[Success]} (iDRAC PATCH)
	successHPEError                         // 200 {"error":{"code":"iLO.0.10.ExtendedInfo",...Success}} (iLO)
	successSMC                              // 200 {"Success":{"code":...,"Message":...}} (Supermicro)
)

// conflictPolicy is what a vendor does with a reset that does not fit the
// current power state (On while on, ForceOff while off, restart while off).
type conflictPolicy int

const (
	conflictNoop    conflictPolicy = iota // accept and do nothing
	conflictDell409                       // 409 IDRAC.x.PSU501/PSU502
	conflictHPE400                        // 400 iLO.x.InvalidOperationForSystemState
	conflictStandby                       // 409 Base.ResourceInStandby (only for restart/Nmi while off)
)

// profile collects everything vendor-specific. Each quirk field names its
// source in a comment.
type profile struct {
	vendor         Vendor
	redfishVersion string
	product        string
	vendorName     string // ServiceRoot.Vendor
	base           string // Base message registry prefix, e.g. "Base.1.16.0"
	oem            string // OEM message registry prefix for OEM message ids
	realm          string // WWW-Authenticate realm
	managerID      string
	odataContext   bool // emit @odata.context (iDRAC and iLO do; bmcweb does not)
	countAnnot     bool // emit "<array>@odata.count" next to link arrays (iDRAC)

	systemID  func(i int) string
	chassisID func(systemID string, i int) string
	nicID     func(i int) string

	// Defaults for SystemSpec.
	manufacturer, model, biosVersion, cpuModel string
	cpuCount                                   int
	memoryGiB                                  float64

	resetTypes  []string
	bootTargets []string

	expand      expandCaps
	selectQuery bool
	// ignoreQueries: the service does not parse OData query parameters at
	// all and answers as if none were given.
	ignoreQueries bool

	etagWeak bool // W/"..." ETags (iLO) rather than strong ones

	success  successStyle
	conflict conflictPolicy
	// resetSuccess overrides success for actions (iDRAC answers resets with
	// 204 although its PATCH answers 200 with a body).
	resetSuccess successStyle

	// Quirks, see the comments where each profile sets them.
	trailingSlash          bool   // @odata.id values end in "/"
	rejectOverrideMode     bool   // Boot.BootSourceOverrideMode in a PATCH -> 400
	requireIfMatch         bool   // PATCH without If-Match -> 428
	modeRevertsIfOmitted   bool   // PATCH Boot without Mode resets Mode to modeRevertValue
	modeRevertValue        string //
	misreportEnabled       string // BootSourceOverrideEnabled always reads back this value
	rejectIfMatchOnAction  bool   // action POST carrying If-Match -> 412
	bootPatchBlockedInPOST bool   // PATCH Boot while the host is in POST -> 400
	gracefulFactor         int    // the OS takes gracefulFactor*PowerTransition to shut down
	resetActionInfo        bool   // Actions.#ComputerSystem.Reset has @Redfish.ActionInfo
	dellJobs               bool   // Manager exposes the Oem Jobs collection
	hpeOem                 bool   // Oem.Hpe blocks
	dellOem                bool   // Oem.Dell blocks
	smcOem                 bool   // Oem.Supermicro blocks
}

func (p *profile) registry(id string) string { return p.base + "." + id }

func profileFor(v Vendor) *profile {
	switch v {
	case Dell:
		return dellProfile()
	case HPE:
		return hpeProfile()
	case Supermicro:
		return supermicroProfile()
	default:
		return genericProfile()
	}
}

// genericProfile imitates the DMTF Redfish mockups (public-rackmount1) served
// by a conformant implementation such as OpenBMC bmcweb: full $expand and
// $select, 204 on success, idempotent power requests.
func genericProfile() *profile {
	return &profile{
		vendor:         Generic,
		redfishVersion: "1.17.0",
		product:        "Redfish Simulator",
		vendorName:     "Contoso",
		base:           "Base.1.16.0",
		oem:            "Base.1.16.0",
		realm:          "Redfish",
		managerID:      "BMC",
		systemID: func(i int) string {
			// public-rackmount1 uses "437XR1138R2"; further systems count on.
			return "437XR1138R" + strconv.Itoa(2+i)
		},
		chassisID: func(_ string, i int) string {
			if i == 0 {
				return "1U"
			}
			return "1U-" + strconv.Itoa(i+1)
		},
		nicID: func(i int) string { return "NIC" + strconv.Itoa(i+1) },

		manufacturer: "Contoso",
		model:        "3500RX",
		biosVersion:  "P79 v1.45 (12/06/2017)",
		cpuModel:     "Multi-Core Intel(R) Xeon(R) processor 7xxx Series",
		cpuCount:     2,
		memoryGiB:    96,

		resetTypes: []string{"On", "ForceOff", "GracefulShutdown", "GracefulRestart",
			"ForceRestart", "Nmi", "ForceOn", "PushPowerButton", "PowerCycle"},
		bootTargets: []string{"None", "Pxe", "Cd", "Usb", "Hdd", "BiosSetup", "Utilities",
			"Diags", "UefiShell", "UefiTarget", "SDCard", "UefiHttp"},

		// bmcweb advertises every expand form; its compile-time maximum is 6.
		expand:      expandCaps{advertised: true, expandAll: true, links: true, noLinks: true, levels: true, maxLevels: 6},
		selectQuery: true,

		success:         successNoContent,
		resetSuccess:    successNoContent,
		conflict:        conflictStandby,
		gracefulFactor:  1,
		resetActionInfo: true,
	}
}

// dellProfile imitates iDRAC9/iDRAC10.
func dellProfile() *profile {
	return &profile{
		vendor:         Dell,
		redfishVersion: "1.11.0", // iDRAC9 service root capture
		product:        "Integrated Dell Remote Access Controller",
		vendorName:     "Dell",
		base:           "Base.1.12",
		oem:            "IDRAC.2.8",
		realm:          "RedfishAuth",
		managerID:      "iDRAC.Embedded.1",
		odataContext:   true,
		countAnnot:     true,
		systemID:       func(i int) string { return "System.Embedded." + strconv.Itoa(i+1) },
		// iDRAC names the system's chassis after the system.
		chassisID: func(systemID string, _ int) string { return systemID },
		// Integrated LOM ports: NIC.Integrated.1-<port>-<partition>.
		nicID: func(i int) string { return "NIC.Integrated.1-" + strconv.Itoa(i+1) + "-1" },

		manufacturer: "Dell Inc.",
		model:        "PowerEdge R760",
		biosVersion:  "1.6.5",
		cpuModel:     "Intel(R) Xeon(R) Gold 6430",
		cpuCount:     2,
		memoryGiB:    256,

		// PowerEdge R750 / iDRAC9 capture (ansible-collections test fixtures).
		resetTypes: []string{"On", "ForceOff", "ForceRestart", "GracefulRestart",
			"GracefulShutdown", "PushPowerButton", "Nmi", "PowerCycle"},
		bootTargets: []string{"None", "Pxe", "Floppy", "Cd", "Hdd", "BiosSetup",
			"Utilities", "UefiTarget", "SDCard", "UefiHttp"},

		// iDRAC9 service root: ExpandAll/Levels/Links/NoLinks true, MaxLevels 1,
		// SelectQuery true.
		expand:      expandCaps{advertised: true, expandAll: true, links: true, noLinks: true, levels: true, maxLevels: 1},
		selectQuery: true,

		// iDRAC answers PATCH with 200 and a Success message, resets with 204.
		success:      successExtendedInfo,
		resetSuccess: successNoContent,
		// iDRAC: "On" on a powered-on server -> 409 IDRAC.x.PSU501 "Server is
		// already powered ON." (dellemc-openmanage-ansible-modules#132).
		conflict: conflictDell409,
		// iDRAC10 (UEFI-only platforms): BootSourceOverrideMode is read-only
		// (dsx-ai-factory/libredfish#26, ansible community.general#11297), so
		// a PATCH carrying it fails and clients must resend a minimal payload.
		rejectOverrideMode: true,
		// iDRAC10 rejects If-Match on action POSTs with 412 (gofish#510, which
		// made gofish retry without the header).
		rejectIfMatchOnAction: true,
		gracefulFactor:        1,
		dellJobs:              true,
		dellOem:               true,
	}
}

// hpeProfile imitates iLO 5 (ProLiant Gen10).
func hpeProfile() *profile {
	return &profile{
		vendor:         HPE,
		redfishVersion: "1.6.0", // iLO 5 2.10 capture (DL360 Gen10)
		product:        "ProLiant DL360 Gen10",
		vendorName:     "HPE",
		base:           "Base.1.4",
		oem:            "iLO.2.14",
		realm:          "iLO",
		managerID:      "1",
		odataContext:   true,
		systemID:       func(i int) string { return strconv.Itoa(i + 1) },
		chassisID:      func(_ string, i int) string { return strconv.Itoa(i + 1) },
		// iLO 5 >= 3.03: LOM ports are numbered 1-4.
		nicID: func(i int) string { return strconv.Itoa(i + 1) },

		manufacturer: "HPE",
		model:        "ProLiant DL360 Gen10",
		biosVersion:  "U32 v2.72 (09/29/2022)",
		cpuModel:     "Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz",
		cpuCount:     2,
		memoryGiB:    192,

		resetTypes: []string{"On", "ForceOff", "GracefulShutdown", "ForceRestart",
			"Nmi", "PushPowerButton", "GracefulRestart"},
		// iLO 5 ComputerSystem resource definitions (HPEDevCom/redfishdocs).
		bootTargets: []string{"None", "Pxe", "Floppy", "Cd", "Usb", "Hdd", "BiosSetup",
			"Utilities", "Diags", "UefiShell", "UefiTarget", "SDCard", "UefiHttp"},

		// iLO 5 service root: ExpandAll false, Levels true, Links false,
		// MaxLevels 1, NoLinks true, SelectQuery false. Only "." works.
		expand:   expandCaps{advertised: true, noLinks: true, levels: true, maxLevels: 1},
		etagWeak: true, // iLO: ETag: W/"16CA421D"

		// iLO answers successful writes/actions with 200 and an "error" object
		// whose ExtendedInfo is Base.x.Success (goldyfruit/ansible-ilo#1):
		// clients must look at the status code, not at the "error" key.
		success:      successHPEError,
		resetSuccess: successHPEError,
		// iLO: a reset that does not fit the power state -> 400
		// iLO.x.InvalidOperationForSystemState (ansible-ilo#1,
		// python-redfish-utility#72).
		conflict: conflictHPE400,
		// iLO 5 @odata.id values carry a trailing slash ("/redfish/v1/Systems/1/").
		trailingSlash: true,
		// iLO: PATCH of boot settings during POST -> 400
		// iLO.x.UnableToModifyDuringSystemPOST (iLO message registry; libredfish
		// and several tools special-case it).
		bootPatchBlockedInPOST: true,
		// GracefulShutdown waits for the OS; modelled as 3x PowerTransition
		// before power starts going off.
		gracefulFactor: 3,
		hpeOem:         true,
	}
}

// supermicroProfile imitates an X11-era Supermicro BMC (Redfish 1.0.x-1.8)
// with the boot override behaviour reported against X11/X12 and the AMI-based
// H12/H13 stacks.
func supermicroProfile() *profile {
	return &profile{
		vendor:         Supermicro,
		redfishVersion: "1.8.0",
		product:        "",
		vendorName:     "Supermicro",
		base:           "Base.1.10.3",
		oem:            "Base.1.10.3",
		realm:          "Supermicro",
		managerID:      "1",
		systemID:       func(i int) string { return strconv.Itoa(i + 1) },
		chassisID:      func(_ string, i int) string { return strconv.Itoa(i + 1) },
		nicID:          func(i int) string { return strconv.Itoa(i + 1) },

		manufacturer: "Supermicro",
		model:        "SYS-510T-MR-EI018",
		biosVersion:  "2.0",
		cpuModel:     "Intel(R) Xeon(R) processor",
		cpuCount:     1,
		memoryGiB:    64,

		// AS-1015CS-TNR-EU capture (bmclib fixtures/supermicro/system.1.json).
		resetTypes: []string{"On", "ForceOff", "GracefulShutdown", "GracefulRestart",
			"ForceRestart", "Nmi", "ForceOn", "PowerCycle"},
		// X12 capture (bmclib fixtures/smc_1.14.0_systems_1.json).
		bootTargets: []string{"None", "Pxe", "Floppy", "Cd", "Usb", "Hdd", "BiosSetup",
			"UsbCd", "UefiBootNext", "UefiHttp"},

		// No ProtocolFeaturesSupported; OData query parameters are ignored
		// (the resource is returned unexpanded with 200).
		ignoreQueries: true,

		// Supermicro answers writes with 200 {"Success":{...}}
		// (bmclib fixtures/supermicro/patch-success.json).
		success:      successSMC,
		resetSuccess: successSMC,
		conflict:     conflictNoop,
		// AMI-based stacks answer a PATCH without If-Match with 428
		// (Ami.1.0.PreconditionHeaderMissing, gofish#171).
		requireIfMatch: true,
		// Supermicro reverts BootSourceOverrideMode to its default when a Boot
		// PATCH omits it (DMTF/Redfishtool#106; bmclib#459 saw it fall back
		// to Legacy).
		modeRevertsIfOmitted: true,
		modeRevertValue:      "Legacy",
		// BootSourceOverrideEnabled reads back "Continuous" whatever was set
		// (X12 capture shows Continuous at rest); the client must not use the
		// read-back to verify a Once override.
		misreportEnabled: "Continuous",
		gracefulFactor:   1,
		resetActionInfo:  true,
		smcOem:           true,
	}
}

// defaultSessionTimeout is used when Options.SessionTimeout is zero (iDRAC
// and bmcweb default to 30 minutes).
const defaultSessionTimeout = 30 * time.Minute
