package engine

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/boot/agentapi"
	"github.com/composable-metal/terraform-provider-metal/internal/boot/render"
	"github.com/composable-metal/terraform-provider-metal/internal/roles"
	"github.com/composable-metal/terraform-provider-metal/internal/store"
)

// Role types shared with internal/roles.
type (
	Role             = roles.Role
	RoleFile         = roles.File
	RoleParameter    = roles.Parameter
	RoleSelection    = roles.Selection
	RoleResult       = roles.Result
	RoleReport       = roles.Report
	RoleFieldError   = roles.FieldError
	RoleFacts        = roles.Facts
	CycleError       = roles.CycleError
	MissingRoleError = roles.MissingError
	TemplateError    = roles.TemplateError
	ConflictError    = roles.ConflictError
	ParameterError   = roles.ParameterError
)

// RoleInstallKinds lists the install kinds whose install config carries
// roles and the agent.
func RoleInstallKinds() []string {
	out := make([]string, 0, 4)
	for _, k := range render.KindsWithRoles() {
		out = append(out, string(k))
	}
	return out
}

// RoleParameterTypes lists the parameter types a role can declare.
func RoleParameterTypes() []string { return roles.ParameterTypes() }

// RoleRef is what metal_role exports for machines to reference: the name
// and a digest of the definition, so a content change reaches them.
func RoleRef(r Role) string { return roles.Ref(r) }

// RoleInfo is a role as the catalog holds it.
type RoleInfo struct {
	Role Role   `json:"role"`
	Ref  string `json:"ref"`
}

// RoleStatus is a machine's desired role set and what its agent last said.
type RoleStatus struct {
	MachineID string `json:"machine_id"`
	// Roles is the desired application order.
	Roles      []string `json:"roles"`
	Revision   string   `json:"revision"`
	Generation uint64   `json:"generation"`
	// Report is the agent's last report (nil: none yet).
	Report     *RoleReport `json:"report,omitempty"`
	ReportedAt time.Time   `json:"reported_at,omitzero"`
	// AgentSeen is when the agent last asked for its roles.
	AgentSeen time.Time `json:"agent_seen,omitzero"`
}

// Converged reports whether the last report covers the desired generation
// with every role ok.
func (s *RoleStatus) Converged() bool { return s.Reported() && len(s.Failed()) == 0 }

// Reported reports whether the last report covers the desired roles.
func (s *RoleStatus) Reported() bool {
	return s != nil && s.Report != nil && s.Report.Generation >= s.Generation && s.Report.Revision == s.Revision
}

// Failed lists the roles that failed in the last report, when it covers
// the desired roles (none otherwise: a machine that has not reported yet is
// not failing).
func (s *RoleStatus) Failed() []RoleResult {
	if !s.Reported() {
		return nil
	}
	return failedResults(s.Report.Results)
}

func failedResults(results []RoleResult) []RoleResult {
	var out []RoleResult
	for _, r := range results {
		if r.Status != roles.StatusOK {
			out = append(out, r)
		}
	}
	return out
}

// Role errors (match with errors.Is).
var (
	ErrRoleNotFound = errors.New("role not found")
	ErrRoleInUse    = errors.New("role is in use")
	// ErrNoAgent: the machine was installed without the agent.
	ErrNoAgent = errors.New("the machine has no role agent")
	// ErrAgentTimeout: the agent did not report in time.
	ErrAgentTimeout = errors.New("timed out waiting for the machine's agent")
	// ErrRoleFailed: a role failed on the machine (see *RoleFailedError).
	ErrRoleFailed = errors.New("a role failed on the machine")
)

// RoleFailedError carries the roles that failed and their output.
type RoleFailedError struct {
	MachineID string
	Failed    []RoleResult
}

func (e *RoleFailedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "machine %s:", e.MachineID)
	for _, r := range e.Failed {
		fmt.Fprintf(&b, " role %q failed (%s)", r.Role, r.Action)
		if out := strings.TrimSpace(r.Output); out != "" {
			fmt.Fprintf(&b, ":\n%s\n", out)
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

func (e *RoleFailedError) Unwrap() error { return ErrRoleFailed }

// --- catalog ---

func (s *bootService) catalog() (map[string]Role, error) {
	recs, err := s.store.ListRoles()
	if err != nil {
		return nil, err
	}
	cat := make(map[string]Role, len(recs))
	for _, rec := range recs {
		var r Role
		if err := json.Unmarshal(rec.Definition, &r); err != nil {
			return nil, fmt.Errorf("role %s in the store is unreadable: %w", rec.Name, err)
		}
		cat[r.Name] = r
	}
	return cat, nil
}

// checkInCatalog validates r and checks it against the catalog as it
// would be with r in it. Caller holds s.rolesMu.
func (s *bootService) checkInCatalog(r Role) error {
	if err := roles.Validate(r); err != nil {
		return err
	}
	cat, err := s.catalog()
	if err != nil {
		return err
	}
	for _, req := range r.Requires {
		if n, _ := roles.ParseRef(req); cat[n].Name == "" {
			return &roles.MissingError{Role: n, RequiredBy: r.Name}
		}
	}
	cat[r.Name] = r
	return roles.CheckCatalog(cat)
}

// CheckRole is PutRole without storing: plan-time validation.
func (e *Embedded) CheckRole(_ context.Context, r Role) error {
	if err := roles.Validate(r); err != nil {
		return err
	}
	svc, err := e.bootSvc()
	if err != nil {
		return err
	}
	svc.rolesMu.Lock()
	defer svc.rolesMu.Unlock()
	cat, err := svc.catalog()
	if err != nil {
		return err
	}
	// A referenced role the catalog does not hold as referenced is
	// created or changed earlier in the same apply: it cannot be checked
	// yet (Terraform itself refuses reference cycles).
	r.Requires = slices.DeleteFunc(slices.Clone(r.Requires), func(req string) bool {
		n, digest := roles.ParseRef(req)
		have, ok := cat[n]
		return digest != "" && (!ok || roles.Ref(have) != req)
	})
	return svc.checkInCatalog(r)
}

// CheckRoles resolves and renders a machine's roles with the facts known
// so far (plan-time validation: cycles, missing roles and keys, conflicts,
// parameters).
func (e *Embedded) CheckRoles(_ context.Context, sel RoleSelection, facts RoleFacts) error {
	svc, err := e.bootSvc()
	if err != nil {
		return err
	}
	svc.rolesMu.Lock()
	ordered, values, err := svc.resolveRoles(sel, true)
	svc.rolesMu.Unlock()
	if errors.Is(err, ErrRolesPending) {
		return nil
	}
	if err != nil {
		return err
	}
	_, err = roles.Render(ordered, facts, values)
	return err
}

// PutRole validates a role and stores it, refusing missing requirements
// and cycles.
func (e *Embedded) PutRole(_ context.Context, r Role) (*RoleInfo, error) {
	if err := roles.Validate(r); err != nil {
		return nil, err
	}
	svc, err := e.bootSvc()
	if err != nil {
		return nil, err
	}
	svc.rolesMu.Lock()
	defer svc.rolesMu.Unlock()
	if err := svc.checkInCatalog(r); err != nil {
		return nil, err
	}
	def, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	if _, err := svc.store.PutRole(store.Role{Name: r.Name, Definition: def}); err != nil {
		return nil, err
	}
	return &RoleInfo{Role: r, Ref: roles.Ref(r)}, nil
}

// Role returns a role from the catalog.
func (e *Embedded) Role(_ context.Context, name string) (*RoleInfo, error) {
	svc, err := e.bootSvc()
	if err != nil {
		return nil, err
	}
	rec, err := svc.store.GetRole(name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrRoleNotFound, name)
	}
	if err != nil {
		return nil, err
	}
	var r Role
	if err := json.Unmarshal(rec.Definition, &r); err != nil {
		return nil, err
	}
	return &RoleInfo{Role: r, Ref: roles.Ref(r)}, nil
}

// DeleteRole removes a role no other role requires; a missing one is not
// an error.
func (e *Embedded) DeleteRole(_ context.Context, name string) error {
	svc, err := e.bootSvc()
	if err != nil {
		return err
	}
	svc.rolesMu.Lock()
	defer svc.rolesMu.Unlock()
	cat, err := svc.catalog()
	if err != nil {
		return err
	}
	if deps := roles.Dependents(cat, name); len(deps) > 0 {
		return fmt.Errorf("%w: %s is required by %s; change those first", ErrRoleInUse, name, strings.Join(deps, ", "))
	}
	if err := svc.store.DeleteRole(name); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}

// ErrRolesPending means a role reference names a definition the catalog
// does not hold yet (the role changes in the same plan): rendering waits
// for apply.
var ErrRolesPending = errors.New("a referenced role changes before this machine: its content is known after apply")

// resolveRoles turns a machine's selection into the ordered closure. A
// reference whose digest is not the catalog's (or, while planning, whose
// role is not there yet) gives ErrRolesPending.
func (s *bootService) resolveRoles(sel RoleSelection, planning bool) ([]Role, map[string]map[string]string, error) {
	if len(sel.Roles) == 0 {
		if len(sel.Parameters) > 0 {
			return nil, nil, &roles.ParameterError{Role: firstKey(sel.Parameters), Parameter: "*", Reason: "role_parameters names a role the machine does not use (directly or through requires)"}
		}
		return nil, nil, nil
	}
	cat, err := s.catalog()
	if err != nil {
		return nil, nil, err
	}
	names := make([]string, 0, len(sel.Roles))
	for _, ref := range sel.Roles {
		n, digest := roles.ParseRef(ref)
		if r, ok := cat[n]; digest != "" && (ok && roles.Ref(r) != ref || !ok && planning) {
			return nil, nil, fmt.Errorf("%w (%s)", ErrRolesPending, ref)
		}
		names = append(names, n)
	}
	ordered, err := roles.Closure(cat, names)
	if err != nil {
		return nil, nil, err
	}
	// A copy: the registration must not share the caller's maps.
	var values map[string]map[string]string
	for role, vs := range sel.Parameters {
		if values == nil {
			values = map[string]map[string]string{}
		}
		values[role] = maps.Clone(vs)
	}
	return ordered, values, nil
}

func firstKey(m map[string]map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys[0]
}

// inventoryFacts is the inventory role templates see.
func inventoryFacts(inv *Inventory) map[string]any {
	if inv == nil {
		return nil
	}
	return map[string]any{
		"system_id": inv.SystemID, "uuid": inv.UUID, "manufacturer": inv.Manufacturer, "model": inv.Model,
		"serial_number": inv.SerialNumber, "bios_version": inv.BIOSVersion, "cpu_count": inv.CPUCount,
		"cpu_model": inv.CPUModel, "memory_gib": inv.MemoryGiB, "boot_mode": inv.BootMode,
	}
}

// --- agent credentials and the agentapi.Backend ---

// agentCredential derives a machine's agent credential from the
// registration nonce: only the nonce is stored, a reinstall changes it.
func (s *bootService) agentCredential(id, nonce string) string {
	return id + "." + s.derive("agent-credential", id, nonce)
}

// AgentMachine implements agentapi.Backend.
func (s *bootService) AgentMachine(_ context.Context, credential string) (string, error) {
	id, _, ok := strings.Cut(credential, ".")
	if !ok {
		return "", agentapi.ErrUnauthorized
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.byID[id]
	if !ok || r.vars.Agent == nil {
		return "", agentapi.ErrUnauthorized
	}
	want := s.agentCredential(id, r.nonce)
	if !hmac.Equal([]byte(want), []byte(credential)) {
		return "", agentapi.ErrUnauthorized
	}
	r.agentSeen = time.Now()
	return id, nil
}

// varsLocked is r's rendering input with the leased address filled in, as
// the machine sees it. Caller holds s.mu.
func (s *bootService) varsLocked(r *registration) render.MachineVars {
	vars := r.vars
	if vars.Network.Address == "" && r.leased.IsValid() && s.cfg.DHCP.Subnet.IsValid() && s.cfg.DHCP.Subnet.Contains(r.leased) {
		// Render the leased address as static configuration, so the
		// installed system keeps it when this boot service is gone.
		vars.Network = render.Network{Address: netip.PrefixFrom(r.leased, s.cfg.DHCP.Subnet.Bits()).String()}
		if s.cfg.DHCP.Router.IsValid() {
			vars.Network.Gateway = s.cfg.DHCP.Router.String()
		}
		for _, d := range s.cfg.DHCP.DNS {
			vars.Network.DNS = append(vars.Network.DNS, d.String())
		}
	}
	if vars.Agent != nil {
		a := *vars.Agent
		a.Credential = s.agentCredential(r.id, r.nonce)
		vars.Agent = &a
	}
	return vars
}

// Desired implements agentapi.Backend.
func (s *bootService) Desired(_ context.Context, machineID string) (roles.Desired, <-chan struct{}, error) {
	s.mu.Lock()
	r, ok := s.byID[machineID]
	if !ok {
		// Deregistered while its agent waited: the credential is void.
		s.mu.Unlock()
		return roles.Desired{}, nil, fmt.Errorf("%w: machine %s is not registered", agentapi.ErrUnauthorized, machineID)
	}
	vars, changed := s.varsLocked(r), s.changed
	s.mu.Unlock()
	d, err := vars.DesiredRoles()
	return d, changed, err
}

// Report implements agentapi.Backend.
func (s *bootService) Report(_ context.Context, machineID string, rep roles.Report) error {
	blob, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	if err := s.store.PutRoleReport(store.RoleReport{MachineID: machineID, Report: blob, ReceivedAt: now}); err != nil {
		return err
	}
	failed := 0
	for _, res := range rep.Results {
		if res.Status != roles.StatusOK {
			failed++
		}
	}
	msg := fmt.Sprintf("generation %d: %d roles, %d failed", rep.Generation, len(rep.Results), failed)
	s.record(machineID, "agent", "roles_reported", msg)
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.byID[machineID]; ok {
		r.report, r.reportedAt = &rep, now
	}
	s.notify()
	return nil
}

// --- engine methods on machines ---

// roleStatusLocked builds a machine's RoleStatus. Caller holds s.mu.
func (s *bootService) roleStatusLocked(r *registration) (*RoleStatus, error) {
	st := &RoleStatus{MachineID: r.id, Report: r.report, ReportedAt: r.reportedAt, AgentSeen: r.agentSeen}
	d, err := s.varsLocked(r).DesiredRoles()
	if err != nil {
		return nil, err
	}
	st.Revision, st.Generation = d.Revision, d.Generation
	for _, rr := range d.Roles {
		st.Roles = append(st.Roles, rr.Name)
	}
	return st, nil
}

// RoleStatus reports a machine's desired roles and its agent's last report.
func (e *Embedded) RoleStatus(ctx context.Context, bmc BMC) (*RoleStatus, error) {
	svc, err := e.bootSvc()
	if err != nil {
		return nil, err
	}
	id, _, err := e.machineIDOf(ctx, bmc)
	if err != nil {
		return nil, err
	}
	svc.mu.Lock()
	defer svc.mu.Unlock()
	r, ok := svc.byID[id]
	if !ok {
		return nil, fmt.Errorf("%w: machine %s is not registered with the boot service", ErrNoAgent, id)
	}
	return svc.roleStatusLocked(r)
}

// ApplyRoles sets a provisioned machine's roles and waits until its agent
// reports the new generation. The desired state is kept even when a role
// fails or the wait ends, so the agent converges when it can.
func (e *Embedded) ApplyRoles(ctx context.Context, bmc BMC, sel RoleSelection) (*RoleStatus, error) {
	svc, err := e.bootServing()
	if err != nil {
		return nil, err
	}
	id, _, err := e.machineIDOf(ctx, bmc)
	if err != nil {
		return nil, err
	}
	svc.rolesMu.Lock()
	ordered, values, err := svc.resolveRoles(sel, false)
	svc.rolesMu.Unlock()
	if err != nil {
		return nil, err
	}
	svc.mu.Lock()
	r, ok := svc.byID[id]
	if !ok || r.vars.Agent == nil {
		svc.mu.Unlock()
		return nil, fmt.Errorf("%w: machine %s was installed without roles, so no agent runs on it; set roles (even to []) and reinstall it to get one", ErrNoAgent, id)
	}
	next := r.vars
	agent := *next.Agent
	agent.Generation++
	next.Agent, next.Roles, next.RoleValues = &agent, ordered, values
	probe := *r
	probe.vars = next
	if _, err := svc.varsLocked(&probe).DesiredRoles(); err != nil {
		svc.mu.Unlock()
		return nil, err
	}
	blob, err := json.Marshal(persisted{Nonce: r.nonce, Action: r.action, Vars: next})
	if err == nil {
		_, err = svc.store.UpdateMachine(id, func(m *store.Machine) error {
			m.InstallInputs["registration"] = string(blob)
			return nil
		})
	}
	if err != nil {
		svc.mu.Unlock()
		return nil, fmt.Errorf("saving machine %s's roles: %w", id, err)
	}
	r.vars = next
	gen := agent.Generation
	svc.notify()
	svc.mu.Unlock()
	svc.record(id, "engine", "roles_requested", fmt.Sprintf("generation %d: %d roles", gen, len(ordered)))

	for {
		svc.mu.Lock()
		r, ok := svc.byID[id]
		if !ok {
			svc.mu.Unlock()
			return nil, fmt.Errorf("machine %s was deregistered while its roles were applied", id)
		}
		st, err := svc.roleStatusLocked(r)
		changed := svc.changed
		svc.mu.Unlock()
		if err != nil {
			return nil, err
		}
		if st.Report != nil && st.Report.Generation >= gen {
			if failed := failedResults(st.Report.Results); len(failed) > 0 {
				return st, &RoleFailedError{MachineID: id, Failed: failed}
			}
			return st, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			seen := "the agent never asked for its roles"
			if !st.AgentSeen.IsZero() {
				seen = "the agent last asked at " + st.AgentSeen.Format(time.RFC3339)
			}
			return st, fmt.Errorf("%w (generation %d on machine %s; %s): %w", ErrAgentTimeout, gen, id, seen, ctx.Err())
		}
	}
}
