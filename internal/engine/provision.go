package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/composable-metal/terraform-provider-metal/internal/boot/artifact"
	"github.com/composable-metal/terraform-provider-metal/internal/boot/httpboot"
	"github.com/composable-metal/terraform-provider-metal/internal/boot/render"
	"github.com/composable-metal/terraform-provider-metal/internal/redfish"
	"github.com/composable-metal/terraform-provider-metal/internal/store"
)

// PlaceholderToken stands in for the provisioning token in plan-time
// renderings; the real token is issued when the machine is registered.
const PlaceholderToken = "TOKEN-ISSUED-AT-APPLY-TIME"

// MachineID is the boot service's stable id for a BMC's system.
func MachineID(endpoint, systemID string) (string, error) {
	ep, err := redfish.ParseEndpoint(endpoint)
	if err != nil {
		return "", err
	}
	if systemID == "" {
		systemID = ep.SystemID
	}
	sum := sha256.Sum256([]byte(ep.BaseURL + "#" + systemID))
	return "m-" + hex.EncodeToString(sum[:8]), nil
}

// bootSvc starts the boot service on first use and shares it afterwards. A
// failed start is not cached, so a fixed configuration works on retry.
func (e *Embedded) bootSvc() (*bootService, error) {
	e.bootMu.Lock()
	defer e.bootMu.Unlock()
	if e.boot != nil {
		return e.boot, nil
	}
	if e.cfg.Boot == nil {
		return nil, fmt.Errorf("%w: add a boot_service block to the provider to provision machines", ErrBootServiceNotConfigured)
	}
	svc, err := startBootService(*e.cfg.Boot, e.log)
	if err != nil {
		return nil, err
	}
	e.boot = svc
	return svc, nil
}

// ServeBoot starts the boot service's listeners now instead of at the first
// provisioning: the daemon serves machines between Terraform runs.
func (e *Embedded) ServeBoot() error {
	_, err := e.bootServing()
	return err
}

// bootServing is bootSvc with its listeners bound.
func (e *Embedded) bootServing() (*bootService, error) {
	svc, err := e.bootSvc()
	if err != nil {
		return nil, err
	}
	if err := svc.serve(); err != nil {
		return nil, err
	}
	return svc, nil
}

func (e *Embedded) EnsureImage(ctx context.Context, spec ImageSpec) (*ImageInfo, error) {
	if !slices.Contains(InstallKinds(), spec.Kind) {
		return nil, fmt.Errorf("install kind %q is not one of %s", spec.Kind, strings.Join(InstallKinds(), ", "))
	}
	svc, err := e.bootSvc()
	if err != nil {
		return nil, err
	}
	files := map[string]string{}
	info := &ImageInfo{Name: spec.Name, Kind: spec.Kind}
	fetch := func(role string, src ArtifactSource) (artifact.Artifact, error) {
		a, err := svc.cache.Ensure(ctx, artifact.Source{URL: src.URL, SHA256: src.SHA256})
		if err != nil {
			return a, &ImageFileError{Role: role, Err: err}
		}
		files[role] = a.SHA256
		return a, nil
	}
	k, err := fetch("kernel", spec.Kernel)
	if err != nil {
		return nil, err
	}
	info.KernelSHA256, info.KernelSize = k.SHA256, k.Size
	i, err := fetch("initrd", spec.Initrd)
	if err != nil {
		return nil, err
	}
	info.InitrdSHA256, info.InitrdSize = i.SHA256, i.Size
	if spec.Image != nil {
		im, err := fetch("image", *spec.Image)
		if err != nil {
			return nil, err
		}
		info.ImageSHA256, info.ImageSize = im.SHA256, im.Size
	}
	if _, err := svc.store.PutImage(store.Image{
		Name: spec.Name, Kind: spec.Kind, Source: spec.Kernel.URL, Files: files,
		KernelArgs: spec.KernelArgs, Templates: spec.Templates,
	}); err != nil {
		return nil, fmt.Errorf("saving image %s: %w", spec.Name, err)
	}
	return info, nil
}

// Image reports a cached image; ErrImageNotFound when the boot service has
// no record of it or one of its files left the cache.
func (e *Embedded) Image(_ context.Context, name string) (*ImageInfo, error) {
	svc, err := e.bootSvc()
	if err != nil {
		return nil, err
	}
	img, err := svc.store.GetImage(name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrImageNotFound, name)
	}
	if err != nil {
		return nil, err
	}
	info := &ImageInfo{Name: img.Name, Kind: img.Kind}
	for role, sum := range img.Files {
		a, err := svc.cache.Lookup(sum)
		if err != nil {
			return nil, fmt.Errorf("%w: %s (its %s left the cache)", ErrImageNotFound, name, role)
		}
		switch role {
		case "kernel":
			info.KernelSHA256, info.KernelSize = a.SHA256, a.Size
		case "initrd":
			info.InitrdSHA256, info.InitrdSize = a.SHA256, a.Size
		case "image":
			info.ImageSHA256, info.ImageSize = a.SHA256, a.Size
		}
	}
	return info, nil
}

func (e *Embedded) DeleteImage(_ context.Context, name string) error {
	svc, err := e.bootSvc()
	if err != nil {
		return err
	}
	if err := svc.store.DeleteImage(name); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}

// machineVars builds the rendering input of spec for a machine.
func machineVars(svc *bootService, img store.Image, id string, macs []string, spec ProvisionSpec) render.MachineVars {
	return render.MachineVars{
		MachineID:         id,
		Hostname:          spec.Hostname,
		MACs:              macs,
		BootMAC:           spec.BootMAC,
		Network:           render.Network{Address: spec.IPAddress, Gateway: spec.Gateway, DNS: spec.DNS},
		SSHAuthorizedKeys: spec.SSHAuthorizedKeys,
		UserData:          spec.UserData,
		RootDevice:        spec.RootDevice,
		KernelArgs:        img.KernelArgs,
		BaseURL:           svc.baseURL,
		Image:             render.Image{KernelSHA256: img.Files["kernel"], InitrdSHA256: img.Files["initrd"], ImageSHA256: img.Files["image"]},
		Kind:              render.Kind(img.Kind),
		Templates:         img.Templates,
	}
}

// withRoles adds the spec's roles and agent to vars. The credential is
// derived per request, never stored.
func (s *bootService) withRoles(vars *render.MachineVars, spec ProvisionSpec, inv *Inventory, planning bool) error {
	if !spec.Agent && len(spec.Roles.Roles) == 0 {
		return nil
	}
	s.rolesMu.Lock()
	ordered, values, err := s.resolveRoles(spec.Roles, planning)
	s.rolesMu.Unlock()
	if err != nil {
		return err
	}
	vars.Roles, vars.RoleValues, vars.Inventory = ordered, values, inventoryFacts(inv)
	vars.Agent = &render.Agent{Generation: 1}
	return nil
}

// PlaceholderCredential stands in for the agent credential in plan-time
// renderings.
const PlaceholderCredential = "CREDENTIAL-ISSUED-AT-APPLY-TIME"

// Render shows what a machine will boot, with a placeholder token.
func (e *Embedded) Render(ctx context.Context, bmc BMC, macs []string, spec ProvisionSpec) (*Rendered, error) {
	svc, err := e.bootSvc()
	if err != nil {
		return nil, err
	}
	if svc.baseURL == "" {
		// An ephemeral HTTP port (tests) is only known once bound.
		if err := svc.serve(); err != nil {
			return nil, err
		}
	}
	img, err := svc.store.GetImage(spec.Image)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrImageNotFound, spec.Image)
	}
	ep, err := redfish.ParseEndpoint(bmc.Endpoint)
	if err != nil {
		return nil, err
	}
	if bmc.SystemID == "" && ep.SystemID == "" {
		return nil, errors.New("rendering needs the system id: it is known once the machine exists")
	}
	id, err := MachineID(bmc.Endpoint, bmc.SystemID)
	if err != nil {
		return nil, err
	}
	vars := machineVars(svc, img, id, macs, spec)
	vars.Token = PlaceholderToken
	if spec.Agent || len(spec.Roles.Roles) > 0 {
		var inv *Inventory
		if len(spec.Roles.Roles) > 0 {
			// Role templates may use the inventory.
			if inv, err = e.Machine(ctx, bmc); err != nil {
				return nil, err
			}
		}
		if err := svc.withRoles(&vars, spec, inv, true); err != nil {
			return nil, err
		}
		vars.Agent.Credential = id + "." + PlaceholderCredential
	}
	script, err := render.IPXEScript(vars)
	if err != nil {
		return nil, err
	}
	out := &Rendered{IPXE: string(script)}
	if names := render.ConfigNames(vars.Kind); slices.Contains(names, "user-data") {
		ud, err := render.Config(vars, "user-data")
		if err != nil {
			return nil, err
		}
		out.UserData = string(ud)
	}
	return out, nil
}

// Provision registers the machine, network-boots it once and waits as asked.
func (e *Embedded) Provision(ctx context.Context, bmc BMC, spec ProvisionSpec) (*ProvisionResult, error) {
	svc, err := e.bootServing()
	if err != nil {
		return nil, err
	}
	img, err := svc.store.GetImage(spec.Image)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s (create it with metal_os_image first)", ErrImageNotFound, spec.Image)
	}
	if err != nil {
		return nil, err
	}
	inv, err := e.Machine(ctx, bmc)
	if err != nil {
		return nil, err
	}
	id, err := MachineID(bmc.Endpoint, inv.SystemID)
	if err != nil {
		return nil, err
	}
	bmc.SystemID = inv.SystemID
	macs := make([]string, 0, len(inv.NICs))
	for _, n := range inv.NICs {
		if n.MAC != "" {
			macs = append(macs, n.MAC)
		}
	}
	if spec.BootMAC == "" {
		spec.BootMAC = inv.FirstLinkedMAC()
	}
	spec.BootMAC = strings.ToLower(spec.BootMAC)
	if spec.BootMAC == "" {
		return nil, fmt.Errorf("system %s reports no NIC with a MAC address to network-boot from", inv.SystemID)
	}
	var static netip.Addr
	if spec.IPAddress != "" {
		p, err := netip.ParsePrefix(spec.IPAddress)
		if err != nil {
			return nil, fmt.Errorf("ip_address %q is not address/prefix: %w", spec.IPAddress, err)
		}
		static = p.Addr()
	}
	vars := machineVars(svc, img, id, macs, spec)
	if err := svc.withRoles(&vars, spec, inv, false); err != nil {
		return nil, err
	}
	if len(vars.Roles) > 0 {
		if _, err := vars.DesiredRoles(); err != nil {
			return nil, err
		}
	}
	if err := svc.register(id, []string{spec.BootMAC}, static, httpboot.ActionInstall, vars); err != nil {
		return nil, err
	}
	mode := BootMode(inv.BootMode)
	if mode != BootModeUEFI && mode != BootModeLegacy {
		mode = ""
	}
	// Recorded before the request: a fast machine's DHCP follows at once.
	svc.record(id, "engine", "pxe_boot_requested", string(mode))
	if err := e.BootOnce(ctx, bmc, BootOverride{Target: BootPxe, Mode: mode}); err != nil {
		svc.record(id, "engine", "pxe_boot_failed", err.Error())
		return nil, err
	}
	res := &ProvisionResult{MachineID: id}
	if spec.WaitFor != WaitNone {
		want := spec.WaitFor
		if want == "" {
			want = WaitProvisioned
		}
		if err := svc.wait(ctx, id, want); err != nil {
			return nil, &ProvisionError{MachineID: id, Want: want, Timeline: svc.timeline(id), Err: err}
		}
	}
	if ip := svc.leasedIP(id); ip.IsValid() {
		res.IPAddress = ip.String()
	}
	res.Timeline = svc.timeline(id)
	return res, nil
}

// machineIDOf resolves the system when bmc does not name it, so a machine
// is the same boot-service machine however its BMC is addressed.
func (e *Embedded) machineIDOf(ctx context.Context, bmc BMC) (string, BMC, error) {
	if bmc.SystemID == "" {
		ep, err := redfish.ParseEndpoint(bmc.Endpoint)
		if err != nil {
			return "", bmc, err
		}
		bmc.SystemID = ep.SystemID
	}
	if bmc.SystemID == "" {
		inv, err := e.Machine(ctx, bmc)
		if err != nil {
			return "", bmc, err
		}
		bmc.SystemID = inv.SystemID
	}
	id, err := MachineID(bmc.Endpoint, bmc.SystemID)
	return id, bmc, err
}

// Deprovision deregisters the machine; with wipe it first network-boots
// the image's wipe step and waits for it to report.
func (e *Embedded) Deprovision(ctx context.Context, bmc BMC, image string, wipe bool) error {
	svc, err := e.bootSvc()
	if err != nil {
		return err
	}
	id, bmc, err := e.machineIDOf(ctx, bmc)
	if err != nil {
		return err
	}
	if wipe {
		if err := svc.serve(); err != nil {
			return err
		}
		svc.mu.Lock()
		r, ok := svc.byID[id]
		svc.mu.Unlock()
		if !ok {
			return fmt.Errorf("machine %s is not registered with the boot service, so it cannot be wiped", id)
		}
		if err := svc.register(id, r.macs, r.ip, httpboot.ActionWipe, r.vars); err != nil {
			return err
		}
		if err := e.BootOnce(ctx, bmc, BootOverride{Target: BootPxe}); err != nil {
			return err
		}
		if err := svc.wait(ctx, id, WaitProvisioned); err != nil {
			return &ProvisionError{MachineID: id, Want: "wiped", Timeline: svc.timeline(id), Err: err}
		}
	}
	return svc.deregister(id)
}

// Timeline lists a machine's recorded events.
func (e *Embedded) Timeline(ctx context.Context, bmc BMC) ([]TimelineEvent, error) {
	svc, err := e.bootSvc()
	if err != nil {
		return nil, err
	}
	id, _, err := e.machineIDOf(ctx, bmc)
	if err != nil {
		return nil, err
	}
	return svc.timeline(id), nil
}

// Discovered lists MACs that asked for network boot without being registered.
func (e *Embedded) Discovered(_ context.Context) ([]DiscoveredMachine, error) {
	svc, err := e.bootSvc()
	if err != nil {
		return nil, err
	}
	ms, err := svc.store.ListMachines()
	if err != nil {
		return nil, err
	}
	var out []DiscoveredMachine
	for _, m := range ms {
		if m.Status != statusDiscovered || len(m.MACs) == 0 {
			continue
		}
		in := m.InstallInputs
		out = append(out, DiscoveredMachine{
			MAC: m.MACs[0], FirstSeen: m.CreatedAt, Arch: in["arch"], VendorClass: in["vendor_class"],
			CircuitID: in["circuit_id"], RemoteID: in["remote_id"], RelayAddress: in["relay"], Interface: in["interface"],
		})
	}
	return out, nil
}
