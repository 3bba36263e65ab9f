package provider

import (
	"context"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	pschema "github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/composable-metal/terraform-provider-metal/internal/agent"
	"github.com/composable-metal/terraform-provider-metal/internal/bmcsim"
	"github.com/composable-metal/terraform-provider-metal/internal/daemon/daemontest"
)

// The acceptance tests here set IsUnitTest so they run without TF_ACC, in
// `make test` and CI: they need only the terraform CLI (TF_ACC_TERRAFORM_PATH)
// and start their own in-process BMC simulators on loopback.

// testServer builds every provider instance the tests run; TestMain shuts
// it down like main does.
var testServer = New("test", "")

func TestMain(m *testing.M) {
	// The roles tests run this binary as the machine's agent process.
	if os.Getenv(agentProcessEnv) == "1" {
		os.Exit(agent.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	code := m.Run()
	testServer.Shutdown()
	daemontest.Cleanup()
	os.Exit(code)
}

// protoV6ProviderFactories serves a fresh provider instance in-process.
func protoV6ProviderFactories() map[string]func() (tfprotov6.ProviderServer, error) {
	return map[string]func() (tfprotov6.ProviderServer, error){
		"metal": providerserver.NewProtocol6WithError(testServer.Factory()),
	}
}

// testBMC is a running simulator and what a configuration needs to reach it.
type testBMC struct {
	sim      *bmcsim.Simulator
	url      string
	ca       string
	username string
	password string
}

const (
	testUsername = "admin"
	testPassword = "sim-Passw0rd"
	// testPollInterval keeps power waits short against the simulator.
	testPollInterval = "50ms"
	// testPowerTransition makes power changes pass through PoweringOn/Off.
	testPowerTransition = 100 * time.Millisecond
)

// startBMC starts a TLS simulator that lives as long as the test.
func startBMC(t *testing.T, opts bmcsim.Options) testBMC {
	t.Helper()
	if opts.Username == "" {
		opts.Username = testUsername
	}
	if opts.Password == "" {
		opts.Password = testPassword
	}
	if opts.PowerTransition == 0 {
		opts.PowerTransition = testPowerTransition
	}
	sim := bmcsim.New(opts)
	url, ca, err := sim.StartTLS(t.Context())
	if err != nil {
		t.Fatalf("starting the BMC simulator: %v", err)
	}
	return testBMC{sim: sim, url: url, ca: string(ca), username: opts.Username, password: opts.Password}
}

// closedPort returns a loopback URL nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return "https://" + addr
}

// providerConfig is a provider block with a short poll interval plus extra
// attributes.
func providerConfig(extra string) string {
	return fmt.Sprintf(`
provider "metal" {
  poll_interval = %q
%s
}
`, testPollInterval, extra)
}

// machineConfig is a provider block and one metal_machine "test" whose bmc
// block carries the simulator's URL, credentials and CA; extra goes into the
// resource body.
func machineConfig(b testBMC, extra string) string {
	return machineConfigBMC(b, "", extra)
}

// machineConfigBMC is machineConfig with bmcExtra added to the bmc block.
func machineConfigBMC(b testBMC, bmcExtra, extra string) string {
	return providerConfig("") + machineBlock(b, bmcExtra, extra)
}

// machineBlock is metal_machine "test" alone (see machineConfigBMC).
func machineBlock(b testBMC, bmcExtra, extra string) string {
	return fmt.Sprintf(`
resource "metal_machine" "test" {
  bmc = {
    endpoint       = %q
    username       = %q
    password       = %q
    ca_certificate = %q
%s
  }
%s
}
`, b.url, b.username, b.password, b.ca, bmcExtra, extra)
}

// errorMatching matches diagnostic text that Terraform may have wrapped
// across lines (each prefixed with a box-drawing border): the words of each
// part must appear in order, parts in order.
func errorMatching(parts ...string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("(?s)")
	for i, p := range parts {
		if i > 0 {
			b.WriteString(".*")
		}
		for j, w := range strings.Fields(p) {
			if j > 0 {
				b.WriteString(`(?:\s|│)+`)
			}
			b.WriteString(regexp.QuoteMeta(w))
		}
	}
	return regexp.MustCompile(b.String())
}

// simPower asserts the simulator's ground-truth power state of a system.
func simPower(b testBMC, systemID, want string) func(*terraform.State) error {
	return func(*terraform.State) error {
		st, ok := b.sim.System(systemID)
		if !ok {
			return fmt.Errorf("system %q is not on the simulator", systemID)
		}
		if st.PowerState != want {
			return fmt.Errorf("system %q power state is %q, want %q", systemID, st.PowerState, want)
		}
		return nil
	}
}

// simResets asserts the last reset type a system received.
func simLastReset(b testBMC, systemID, want string) func(*terraform.State) error {
	return func(*terraform.State) error {
		st, ok := b.sim.System(systemID)
		if !ok {
			return fmt.Errorf("system %q is not on the simulator", systemID)
		}
		if len(st.Resets) == 0 || st.Resets[len(st.Resets)-1] != want {
			return fmt.Errorf("system %q resets are %v, want the last to be %q", systemID, st.Resets, want)
		}
		return nil
	}
}

func TestProviderSchemaValid(t *testing.T) {
	t.Parallel()
	s := providerSchemaV0()
	if diags := s.ValidateImplementation(t.Context()); diags.HasError() {
		t.Fatalf("provider schema: %v", diags)
	}
	var walk func(prefix string, attrs map[string]pschema.Attribute, blocks map[string]pschema.Block)
	walk = func(prefix string, attrs map[string]pschema.Attribute, blocks map[string]pschema.Block) {
		for name, a := range attrs {
			if a.GetMarkdownDescription() == "" {
				t.Errorf("provider attribute %q has no MarkdownDescription", prefix+name)
			}
		}
		for name, b := range blocks {
			if b.GetMarkdownDescription() == "" {
				t.Errorf("provider block %q has no MarkdownDescription", prefix+name)
			}
			if nb, ok := b.(pschema.SingleNestedBlock); ok {
				walk(prefix+name+".", nb.Attributes, nb.Blocks)
			}
		}
	}
	walk("", s.Attributes, s.Blocks)
}
