// Package bmcsim is a stateful Redfish BMC simulator for tests, the README
// quickstart and (later) a VM lab.
//
// It follows DSP0266 and imitates the payload shapes and quirks of real BMC
// families, because the client it exercises also meets those BMCs:
//
//   - The service root (/redfish/v1, with or without the trailing slash), the
//     /redfish version document and /redfish/v1/odata are unauthenticated;
//     everything else needs an X-Auth-Token from the SessionService or HTTP
//     Basic credentials, and answers 401 with WWW-Authenticate otherwise.
//   - Every error carries a Redfish error body with @Message.ExtendedInfo.
//   - ComputerSystem resources keep power and boot-override state. Power
//     changes take Options.PowerTransition (PoweringOn/PoweringOff first),
//     evaluated lazily from deadlines, so no goroutine runs per system
//     (systems with an OnBoot hook get a timer for each boot in flight).
//     A completed boot consumes a one-time (Once) override and is reported
//     to SystemSpec.OnBoot (with the override target it followed), which is
//     how a simulated machine (internal/machinesim) learns to netboot.
//   - PATCH of a system validates every property (PropertyUnknown,
//     PropertyNotWritable, PropertyValueNotInList, PropertyValueTypeError),
//     applies nothing if any fails, and honours If-Match (412).
//     GET honours If-None-Match (304).
//   - $expand (".", "~", "*", "($levels=n)") inlines real resources,
//     recursively; $select trims properties. What each vendor accepts follows
//     its ProtocolFeaturesSupported: unsupported $-parameters or options are
//     501, malformed or out-of-range values 400 (as bmcweb does).
//   - BIOS: Bios (current Attributes) with @Redfish.Settings pointing at
//     Bios/Settings, where a PATCH stages attributes (validated against the
//     BiosAttributeRegistry served under /redfish/v1/Registries) with an
//     optional @Redfish.SettingsApplyTime. Staged values are applied when the
//     next boot completes (Immediate reboots now); values the firmware
//     refuses (Simulator.RejectBIOSValue, Dell's ProcCStates dependency on
//     SysProfile=Custom) are dropped, never applied. Dell stages through a
//     job in the iDRAC job queue (202 + Location), HPE rejects the apply-time
//     annotation, Supermicro only offers OnReset.
//   - Storage: controllers (SupportedRAIDTypes) with Drives and Volumes.
//     POST Volumes validates drives and RAID level and answers 202 with a
//     TaskMonitor that answers 202 for Options.TaskPolls GETs, then the Task
//     (Simulator.FailNextTask makes it end in Exception with messages).
//
// # Vendors and their quirks
//
// Generic (DMTF public-rackmount1 mockup ids, bmcweb behaviour): system
// "437XR1138R2", manager "BMC", chassis "1U"; ExpandQuery with every option
// and MaxLevels 6, $select; 204 on success; On while on and off while off are
// no-ops, restarts of a powered-off system are 409 ResourceInStandby.
//
// Dell (iDRAC9/iDRAC10): "System.Embedded.1", "iDRAC.Embedded.1", NICs
// "NIC.Integrated.1-1-1"; @odata.context and @odata.count annotations;
// ExpandQuery MaxLevels 1 with $select (iDRAC9 service root). Quirks:
// BootSourceOverrideMode in a PATCH is 400 PropertyNotWritable (iDRAC10,
// UEFI-only); an action POST carrying If-Match is 412 (iDRAC10, gofish#510);
// "On" while on is 409 IDRAC.x.PSU501 (off while off: PSU502); PATCH answers
// 200 with a Success message, resets 204; the manager links the Oem
// Dell job queue.
//
// HPE (iLO 5, ProLiant Gen10): "1" everywhere and @odata.id values with a
// trailing slash; ExpandQuery "." only with MaxLevels 1, no $select; weak
// ETags. Quirks: successful writes and actions answer 200 with an "error"
// object whose ExtendedInfo is Base.x.Success; resets that do not fit the
// power state are 400 iLO.x.InvalidOperationForSystemState; a Boot PATCH
// while the host is in POST is 400 iLO.x.UnableToModifyDuringSystemPOST
// (Oem.Hpe.PostState shows InPost); GracefulShutdown waits three transitions
// for the OS; property errors use iLO.x.PropertyNotWritableOrUnknown.
//
// Supermicro (X11-era firmware, AMI-style write rules): "1" everywhere; no
// ProtocolFeaturesSupported and OData query parameters are ignored. Quirks:
// PATCH without If-Match is 428; BootSourceOverrideMode reverts to Legacy
// when a Boot PATCH omits it; BootSourceOverrideEnabled always reads back
// "Continuous" although a Once override is honoured and consumed; success
// answers are 200 {"Success":{...}}; power requests that do not fit the
// state are accepted as no-ops.
//
// Simulator.System reports the ground truth, which is what tests should
// assert on when a vendor misreports.
package bmcsim
