package hybridtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/store"
)

// The systems of the simulated BMC; the example makes a machine of each
// one the BMC lists.
var systemIDs = []string{"node1", "node2", "node3"}

const (
	zoneName    = "metal.example.internal"
	vpcCIDR     = "10.80.0.0/16" // the example's default
	servicePort = 443
	ingressFile = "/etc/hybrid/ingress.env"
	// The example's boot_range default: machines lease from it.
	rangeStart, rangeEnd = "127.0.0.100", "127.0.0.199"
)

// TestHybridAWS runs examples/hybrid-aws end to end: init, plan, apply, an
// empty second plan and destroy, with hashicorp/aws against moto_server and
// this provider against simulated machines, and checks both sides after
// each step.
func TestHybridAWS(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the hybrid AWS test runs terraform with the aws provider for a few minutes")
	}
	tl := requireTools(t)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	root := repoRoot(t)
	dir := t.TempDir()

	binDir := filepath.Join(dir, "bin")
	providerBin, simBin := buildBinaries(ctx, t, root, binDir)
	t.Logf("built the provider and metal-bmcsim in %s", time.Since(start).Round(time.Millisecond))

	motoURL := startMoto(ctx, t, tl)
	aws := awsAPI{endpoint: motoURL, region: "us-east-1"}
	sim := startSimulator(ctx, t, simBin, dir, freePort(t, "udp4"), systemIDs)

	// The installer the machines "boot": small files the boot service
	// reads from file:// URLs.
	kernel := writeArtifact(t, dir, "vmlinuz", "hybrid test kernel\n")
	initrd := writeArtifact(t, dir, "initrd.img", "hybrid test initrd\n"+strings.Repeat("x", 64))

	work := filepath.Join(dir, "work")
	copyExample(t, filepath.Join(root, "examples", "hybrid-aws"), work)
	stateDir := filepath.Join(dir, "boot-state")
	writeJSON(t, filepath.Join(work, "terraform.tfvars.json"), map[string]any{
		"bmc_endpoint":     sim.url,
		"bmc_username":     sim.username,
		"bmc_password":     sim.password,
		"bmc_ca_file":      sim.caFile,
		"boot_http_listen": fmt.Sprintf("127.0.0.1:%d", freePort(t, "tcp4")),
		"boot_dhcp_listen": fmt.Sprintf("127.0.0.1:%d", sim.dhcpPort),
		"boot_state_dir":   stateDir,
		"kernel_url":       "file://" + kernel.path,
		"initrd_url":       "file://" + initrd.path,
		"poll_interval":    "100ms",
		"aws_endpoint":     motoURL,
	})
	tf := newTerraform(t, tl, dir, work, providerBin)

	// init: hashicorp/aws from the mirror, this provider from its own
	// one-binary mirror (dev_overrides is what runs it).
	out := tf.run(ctx, 0, "init", "-input=false")
	lock, err := os.ReadFile(filepath.Join(work, ".terraform.lock.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "Installed hashicorp/aws v"+awsProviderVersion) ||
		!strings.Contains(string(lock), `provider "registry.terraform.io/hashicorp/aws" {`+"\n  version     = \""+awsProviderVersion+`"`) {
		t.Fatalf("init did not install hashicorp/aws %s from the mirror:\n%s\nlock file:\n%s", awsProviderVersion, out, lock)
	}

	// plan: everything is created; what comes from the other side is
	// unknown, and for_each over the machines still has its keys.
	tf.run(ctx, 2, "plan", "-input=false", "-out=tfplan", "-detailed-exitcode")
	checkPlan(t, tf.showPlan(ctx, "tfplan"))

	tf.run(ctx, 0, "apply", "-input=false", "tfplan")
	var outputs struct {
		MachineIPs     struct{ Value map[string]string } `json:"machine_ips"`
		MachineFQDNs   struct{ Value map[string]string } `json:"machine_fqdns"`
		IngressDNSName struct{ Value string }            `json:"ingress_dns_name"`
		ZoneID         struct{ Value string }            `json:"zone_id"`
		TargetGroupARN struct{ Value string }            `json:"target_group_arn"`
	}
	if err := json.Unmarshal([]byte(tf.run(ctx, 0, "output", "-json")), &outputs); err != nil {
		t.Fatal(err)
	}
	ips := outputs.MachineIPs.Value
	t.Logf("machines: %v; load balancer: %s", ips, outputs.IngressDNSName.Value)

	// The metal side: every machine installed what the boot service served
	// it, with the address it leased, and the AWS-side value.
	machines := sim.machines(ctx, t)
	lb := checkLoadBalancer(ctx, t, aws, outputs.IngressDNSName.Value)
	// The role's file, rendered with the AWS-side values (machinesim
	// records cloud-init write_files).
	wantFile := fmt.Sprintf("INGRESS_ENDPOINT=%s\nVPC_CIDR=%s\n", lb.DNSName, vpcCIDR)
	if len(ips) != len(systemIDs) {
		t.Fatalf("machine_ips = %v, want one address for each of %v", ips, systemIDs)
	}
	seen := map[string]string{}
	for _, id := range systemIDs {
		m, ok := machines[id]
		if !ok {
			t.Fatalf("the simulator has no machine %s", id)
		}
		ip := ips[id]
		if other, dup := seen[ip]; dup {
			t.Errorf("%s and %s both have address %s", id, other, ip)
		}
		seen[ip] = id
		if !inRange(ip, rangeStart, rangeEnd) {
			t.Errorf("%s: address %q is not in the boot range %s-%s", id, ip, rangeStart, rangeEnd)
		}
		if len(m.Boots) != 1 || m.Boots[0].Target != "Pxe" || !m.Boots[0].Provisioned || m.Boots[0].Error != "" {
			t.Errorf("%s: boots %+v, want one provisioned network boot", id, m.Boots)
			continue
		}
		if m.Boots[0].LeaseIP != ip {
			t.Errorf("%s: metal_machine.ip_address says %s, the machine leased %s", id, ip, m.Boots[0].LeaseIP)
		}
		inst := m.Installed
		switch {
		case inst == nil:
			t.Errorf("%s: nothing installed", id)
		case inst.Kind != "cloud-init" || inst.Kernel != kernel.sha256 || inst.Initrd != initrd.sha256:
			t.Errorf("%s: installed %s with kernel %s and initrd %s, want cloud-init with %s and %s",
				id, inst.Kind, inst.Kernel, inst.Initrd, kernel.sha256, initrd.sha256)
		case inst.Hostname != id+"."+zoneName:
			t.Errorf("%s: host name %q, want %q", id, inst.Hostname, id+"."+zoneName)
		case !slices.Contains(inst.Addresses, ip+"/8"):
			t.Errorf("%s: installed addresses %v, want %s/8", id, inst.Addresses, ip)
		case inst.Files[ingressFile] != wantFile:
			// AWS -> metal.
			t.Errorf("%s: %s is %q, want %q (the load balancer's DNS name from AWS)", id, ingressFile, inst.Files[ingressFile], wantFile)
		}
		if m.PowerState != "On" {
			t.Errorf("%s: power %s after apply, want On", id, m.PowerState)
		}
	}

	// metal -> AWS: Route 53 records and load-balancer targets hold the
	// machines' addresses.
	checkRecords(ctx, t, aws, outputs.ZoneID.Value, ips)
	checkTargets(ctx, t, aws, outputs.TargetGroupARN.Value, ips)
	for id, fqdn := range outputs.MachineFQDNs.Value {
		if fqdn != id+"."+zoneName {
			t.Errorf("machine_fqdns[%s] = %q, want %q", id, fqdn, id+"."+zoneName)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// A second plan finds nothing to do on either side.
	tf.run(ctx, 0, "plan", "-input=false", "-detailed-exitcode")

	// Changing one machine's role parameter touches that machine only, in
	// place.
	tf.run(ctx, 2, "plan", "-input=false", "-out=labels.tfplan", "-detailed-exitcode", `-var=node_labels={"node2":"gpu"}`)
	var changed []string
	for _, rc := range tf.showPlan(ctx, "labels.tfplan").ResourceChanges {
		if !slices.Equal(rc.Change.Actions, []string{"no-op"}) && !slices.Equal(rc.Change.Actions, []string{"read"}) {
			changed = append(changed, rc.Address+" "+strings.Join(rc.Change.Actions, ","))
		}
	}
	if want := []string{`metal_machine.node["node2"] update`}; !slices.Equal(changed, want) {
		t.Errorf("changing node2's labels plans %v, want %v", changed, want)
	}

	tf.run(ctx, 0, "destroy", "-input=false", "-auto-approve")
	if left := strings.TrimSpace(tf.run(ctx, 0, "state", "list")); left != "" {
		t.Errorf("terraform state still lists after destroy:\n%s", left)
	}
	checkAWSEmpty(ctx, t, aws)
	checkBootServiceEmpty(t, stateDir)
	for id, m := range sim.machines(ctx, t) {
		if m.PowerState != "Off" {
			t.Errorf("%s: power %s after destroy, want Off", id, m.PowerState)
		}
		if len(m.Boots) != 1 {
			t.Errorf("%s: %d boots after destroy, want the one install", id, len(m.Boots))
		}
	}
	t.Logf("init, plan, apply, plan, destroy in %s (%s with the build)", tf.elapsed.Round(time.Second), time.Since(start).Round(time.Second))
}

// checkPlan checks the first plan: everything is created, and the values
// that flow between the sides are unknown but their for_each keys are not.
func checkPlan(t *testing.T, plan tfPlan) {
	t.Helper()
	byAddr := map[string]tfChange{}
	for _, rc := range plan.ResourceChanges {
		if !slices.Equal(rc.Change.Actions, []string{"create"}) {
			t.Errorf("%s: planned %v, want create", rc.Address, rc.Change.Actions)
		}
		byAddr[rc.Address] = rc.Change
	}
	for _, id := range systemIDs {
		machine := fmt.Sprintf("metal_machine.node[%q]", id)
		record := fmt.Sprintf("aws_route53_record.machine[%q]", id)
		attach := fmt.Sprintf("aws_lb_target_group_attachment.metal[%q]", id)
		for _, addr := range []string{machine, record, attach} {
			if _, ok := byAddr[addr]; !ok {
				t.Errorf("the plan has no %s; it has %v", addr, slices.Sorted(maps.Keys(byAddr)))
			}
		}
		// AWS -> metal: the role parameters carry the load balancer's
		// DNS name.
		if !isUnknown(byAddr[machine].AfterUnknown["role_parameters"]) || !isUnknown(byAddr[machine].AfterUnknown["ip_address"]) {
			t.Errorf("%s: role_parameters and ip_address should be unknown until apply, after_unknown = %v", machine, byAddr[machine].AfterUnknown)
		}
		// metal -> AWS: the records and targets carry the leased address.
		if !isUnknown(byAddr[record].AfterUnknown["records"]) || !isUnknown(byAddr[attach].AfterUnknown["target_id"]) {
			t.Errorf("%s / %s: the machine's address should be unknown until apply: %v / %v",
				record, attach, byAddr[record].AfterUnknown, byAddr[attach].AfterUnknown)
		}
	}
	if want := 8 + 3*len(systemIDs); len(plan.ResourceChanges) != want {
		t.Errorf("the plan has %d changes, want %d", len(plan.ResourceChanges), want)
	}
	if t.Failed() {
		t.FailNow()
	}
}

// isUnknown reports whether an after_unknown value marks the value, or
// any of its elements, unknown.
func isUnknown(v any) bool {
	switch v := v.(type) {
	case bool:
		return v
	case []any:
		return slices.ContainsFunc(v, isUnknown)
	case map[string]any:
		for _, e := range v {
			if isUnknown(e) {
				return true
			}
		}
	}
	return false
}

func checkLoadBalancer(ctx context.Context, t *testing.T, aws awsAPI, dnsName string) loadBalancer {
	t.Helper()
	lbs, err := aws.loadBalancers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(lbs) != 1 || lbs[0].DNSName == "" || lbs[0].DNSName != dnsName {
		t.Fatalf("moto's load balancers: %+v; want one whose DNS name is the output %q", lbs, dnsName)
	}
	return lbs[0]
}

func checkRecords(ctx context.Context, t *testing.T, aws awsAPI, zoneID string, ips map[string]string) {
	t.Helper()
	zones, err := aws.hostedZones(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(zones) != 1 || strings.TrimPrefix(zones[0].ID, "/hostedzone/") != zoneID || zones[0].Name != zoneName+"." {
		t.Fatalf("moto's hosted zones: %+v; want %s (%s)", zones, zoneName, zoneID)
	}
	sets, err := aws.recordSets(ctx, zoneID)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, s := range sets {
		if s.Type == "A" {
			got[s.Name] = s.Values
		}
	}
	want := map[string][]string{}
	for id, ip := range ips {
		want[id+"."+zoneName+"."] = []string{ip}
	}
	if !maps.EqualFunc(got, want, slices.Equal[[]string]) {
		t.Errorf("Route 53 A records: %v, want %v", got, want)
	}
}

func checkTargets(ctx context.Context, t *testing.T, aws awsAPI, tgARN string, ips map[string]string) {
	t.Helper()
	targets, err := aws.targets(ctx, tgARN)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tg := range targets {
		// moto does not report the availability zone ("all") back.
		if tg.Port != servicePort {
			t.Errorf("target %+v: want port %d", tg, servicePort)
		}
		got = append(got, tg.ID)
	}
	want := slices.Collect(maps.Values(ips))
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("the target group's targets: %v, want the machines' addresses %v", got, want)
	}
}

// checkAWSEmpty checks that destroy left nothing of the example in moto.
func checkAWSEmpty(ctx context.Context, t *testing.T, aws awsAPI) {
	t.Helper()
	zones, err := aws.hostedZones(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(zones) != 0 {
		t.Errorf("Route 53 zones left after destroy: %+v", zones)
	}
	lbs, err := aws.loadBalancers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(lbs) != 0 {
		t.Errorf("load balancers left after destroy: %+v", lbs)
	}
	tgs, err := aws.targetGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(tgs) != 0 {
		t.Errorf("target groups left after destroy: %+v", tgs)
	}
	vpcs, err := aws.vpcs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vpcs {
		if !v.IsDefault {
			t.Errorf("VPC left after destroy: %+v", v)
		}
	}
}

// checkBootServiceEmpty opens the boot service's store, which no
// Terraform run holds any more, and checks nothing is registered.
func checkBootServiceEmpty(t *testing.T, stateDir string) {
	t.Helper()
	st, err := store.Open(filepath.Join(stateDir, "metal.db"), store.Options{})
	if err != nil {
		t.Fatalf("opening the boot service's store: %v", err)
	}
	defer func() { _ = st.Close() }()
	machines, err := st.ListMachines()
	if err != nil {
		t.Fatal(err)
	}
	leases, err := st.ListLeases()
	if err != nil {
		t.Fatal(err)
	}
	images, err := st.ListImages()
	if err != nil {
		t.Fatal(err)
	}
	if len(machines)+len(leases)+len(images) != 0 {
		t.Errorf("the boot service still has %d machines, %d leases and %d images after destroy: %+v %+v %+v",
			len(machines), len(leases), len(images), machines, leases, images)
	}
}

func inRange(ip, first, last string) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	return netip.MustParseAddr(first).Compare(a) <= 0 && a.Compare(netip.MustParseAddr(last)) <= 0
}

// --- terraform --------------------------------------------------------------

type terraformCLI struct {
	t       *testing.T
	bin     string
	dir     string
	env     []string
	elapsed time.Duration
}

// newTerraform runs terraform in work with a CLI configuration of its own:
// this provider through dev_overrides (and a one-binary filesystem mirror,
// which `terraform init` needs to resolve it), hashicorp/aws from the
// mirror, nothing from the network.
func newTerraform(t *testing.T, tl tools, dir, work, providerBin string) *terraformCLI {
	t.Helper()
	platform := runtime.GOOS + "_" + runtime.GOARCH
	metalMirror := filepath.Join(dir, "metal-mirror")
	pkg := filepath.Join(metalMirror, "registry.terraform.io", "composable-metal", "metal", "0.0.1", platform)
	if err := os.MkdirAll(pkg, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(providerBin, filepath.Join(pkg, "terraform-provider-metal_v0.0.1")); err != nil {
		t.Fatal(err)
	}
	rc := filepath.Join(dir, "terraformrc")
	writeFile(t, rc, fmt.Sprintf(`provider_installation {
  dev_overrides {
    "registry.terraform.io/composable-metal/metal" = %q
  }
  filesystem_mirror {
    path    = %q
    include = ["registry.terraform.io/composable-metal/metal"]
  }
  filesystem_mirror {
    path    = %q
    include = ["registry.terraform.io/hashicorp/aws"]
  }
}
`, filepath.Dir(providerBin), metalMirror, tl.awsMirror))

	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "TF_") || strings.HasPrefix(k, "AWS_") || strings.HasPrefix(k, "METAL_") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env,
		"TF_CLI_CONFIG_FILE="+rc,
		"TF_IN_AUTOMATION=1",
		"CHECKPOINT_DISABLE=1",
		// moto takes any credentials; nothing may come from ~/.aws.
		"AWS_ACCESS_KEY_ID=test",
		"AWS_SECRET_ACCESS_KEY=test",
		"AWS_CONFIG_FILE="+filepath.Join(dir, "no-aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(dir, "no-aws-credentials"),
		"AWS_EC2_METADATA_DISABLED=true",
	)
	return &terraformCLI{t: t, bin: tl.terraform, dir: work, env: env}
}

// run runs a terraform command and fails the test unless it exits with
// wantExit; it returns stdout.
func (tf *terraformCLI) run(ctx context.Context, wantExit int, args ...string) string {
	tf.t.Helper()
	if args[0] != "state" { // state's subcommands take -no-color, state does not
		args = append(args[:1:1], append([]string{"-no-color"}, args[1:]...)...)
	}
	cmd := exec.CommandContext(ctx, tf.bin, args...)
	cmd.Dir, cmd.Env = tf.dir, tf.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	tf.elapsed += d
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			tf.t.Fatalf("terraform %s: %v", args[0], err)
		}
		code = ee.ExitCode()
	}
	tf.t.Logf("terraform %s: exit %d in %s", strings.Join(args, " "), code, d.Round(time.Millisecond))
	if code != wantExit {
		tf.t.Fatalf("terraform %s exited %d, want %d\nstdout:\n%s\nstderr:\n%s",
			strings.Join(args, " "), code, wantExit, tail(stdout.String(), 20000), tail(stderr.String(), 8000))
	}
	return stdout.String()
}

type tfPlan struct {
	ResourceChanges []struct {
		Address string   `json:"address"`
		Change  tfChange `json:"change"`
	} `json:"resource_changes"`
}

type tfChange struct {
	Actions      []string       `json:"actions"`
	AfterUnknown map[string]any `json:"after_unknown"`
}

func (tf *terraformCLI) showPlan(ctx context.Context, file string) tfPlan {
	tf.t.Helper()
	var p tfPlan
	if err := json.Unmarshal([]byte(tf.run(ctx, 0, "show", "-json", file)), &p); err != nil {
		tf.t.Fatal(err)
	}
	return p
}

// --- the simulator --------------------------------------------------------------

type simMachine struct {
	SystemID   string `json:"system_id"`
	PowerState string `json:"power_state"`
	Boots      []struct {
		Target      string `json:"target"`
		LeaseIP     string `json:"lease_ip"`
		Provisioned bool   `json:"provisioned"`
		Error       string `json:"error"`
	} `json:"boots"`
	Installed *struct {
		Kind      string            `json:"kind"`
		Hostname  string            `json:"hostname"`
		Kernel    string            `json:"kernel_sha256"`
		Initrd    string            `json:"initrd_sha256"`
		Addresses []string          `json:"addresses"`
		Files     map[string]string `json:"files"`
	} `json:"installed"`
}

// machines reads metal-bmcsim's report of its simulated machines.
func (s simulator) machines(ctx context.Context, t *testing.T) map[string]simMachine {
	t.Helper()
	pem, err := os.ReadFile(s.caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", s.caFile)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/simulator/machines", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(s.username, s.password)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /simulator/machines: %s", resp.Status)
	}
	var rep struct {
		Machines []simMachine `json:"machines"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		t.Fatal(err)
	}
	out := map[string]simMachine{}
	for _, m := range rep.Machines {
		out[m.SystemID] = m
	}
	return out
}

// --- files ----------------------------------------------------------------------

type artifact struct {
	path, sha256 string
}

func writeArtifact(t *testing.T, dir, name, content string) artifact {
	t.Helper()
	p := filepath.Join(dir, name)
	writeFile(t, p, content)
	sum := sha256.Sum256([]byte(content))
	return artifact{path: p, sha256: hex.EncodeToString(sum[:])}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, string(b)+"\n")
}

// copyExample copies the example's configuration (not any .terraform or
// state a person left there) into dst.
func copyExample(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(src, "*.tf"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no *.tf in %s: %v", src, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dst, filepath.Base(f)), string(b))
	}
}
