package provider

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"

	"github.com/composable-metal/terraform-provider-metal/internal/bmcsim"
	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

func TestAddFieldFlattensAndResolves(t *testing.T) {
	t.Parallel()
	fields := map[string]any{}
	bmc := engine.BMC{Endpoint: "https://bmc", Username: "admin", Password: "hunter2", SystemID: "1"}
	addField(fields, "", slog.Any("bmc", bmc))
	addField(fields, "op.", slog.Group("req", slog.String("method", "GET"), slog.Int("status", 200)))
	addField(fields, "", slog.Any("error", context.DeadlineExceeded))
	want := map[string]any{
		"bmc.endpoint": "https://bmc", "bmc.system_id": "1",
		"op.req.method": "GET", "op.req.status": int64(200),
		"error": "context deadline exceeded",
	}
	for k, v := range want {
		if fields[k] != v {
			t.Errorf("field %q = %#v, want %#v", k, fields[k], v)
		}
	}
	for k, v := range fields {
		if s, ok := v.(string); ok && strings.Contains(s, "hunter2") {
			t.Errorf("field %q carries the password", k)
		}
	}
}

// TestAccMachine_logsHaveNoSecrets runs create, refresh and destroy with
// TRACE logging of both the Terraform CLI and the in-process provider to one
// file, then checks that neither the BMC password nor any session token the
// BMC issued appears in it.
func TestAccMachine_logsHaveNoSecrets(t *testing.T) {
	// Not parallel: the log settings are process environment.
	const password = "Tr0ub4dor-and-3-must-not-leak"
	logFile := filepath.Join(t.TempDir(), "terraform.log")
	// terraform-plugin-testing routes the CLI's log (TF_ACC_LOG_PATH, level
	// TF_ACC_LOG) and the in-process provider's tflog sink (TF_ACC_LOG_PATH,
	// which forces TRACE, else TF_LOG_PATH with level TF_LOG) to this file.
	t.Setenv("TF_LOG", "TRACE")
	t.Setenv("TF_ACC_LOG", "TRACE")
	t.Setenv("TF_LOG_PATH", logFile)
	t.Setenv("TF_ACC_LOG_PATH", logFile)

	b := startBMC(t, bmcsim.Options{Password: password, Systems: []bmcsim.SystemSpec{testSystem("node1", false)}})
	resource.UnitTest(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6ProviderFactories(),
		CheckDestroy:             simPower(b, "node1", "Off"),
		Steps: []resource.TestStep{
			{Config: machineConfig(b, ""), Check: simPower(b, "node1", "On")},
			{RefreshState: true},
			{Config: machineConfig(b, `  power_state = "off"`)},
		},
	})

	raw, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatalf("reading the log: %v", err)
	}
	// terraform-plugin-testing logs each step's configuration, which holds
	// the password as the test wrote it; that is the harness, not Terraform
	// or the provider, so those blocks are left out of the check.
	log, harnessBlocks := withoutHarnessConfig(string(raw))
	if harnessBlocks == 0 {
		t.Fatal("found no test-configuration block of terraform-plugin-testing to leave out; has its log format changed?")
	}
	// Guard against passing vacuously: the file must hold the provider's own
	// BMC traffic from the redfish subsystem and the CLI's trace output.
	for _, marker := range []string{"metal.redfish: BMC request", "Terraform version:", "[TRACE]"} {
		if !strings.Contains(log, marker) {
			t.Fatalf("the log file (%d bytes) has no %q line; logging is not reaching it", len(log), marker)
		}
	}
	tokens := b.sim.IssuedTokens()
	if len(tokens) == 0 {
		t.Fatal("the simulator issued no session tokens")
	}
	if strings.Contains(log, password) {
		t.Errorf("the log contains the BMC password (line %q)", lineWith(log, password))
	}
	for _, tok := range tokens {
		if strings.Contains(log, tok) {
			t.Errorf("the log contains session token %q (line %q)", tok, lineWith(log, tok))
		}
	}
}

// withoutHarnessConfig drops the multi-line "Setting Terraform configuration"
// entries of terraform-plugin-testing's sdk.helper_resource logger.
func withoutHarnessConfig(log string) (string, int) {
	var b strings.Builder
	skipping, blocks := false, 0
	for line := range strings.SplitSeq(log, "\n") {
		startsEntry := len(line) > 20 && line[4] == '-' && line[10] == 'T'
		switch {
		case strings.Contains(line, "sdk.helper_resource: Setting Terraform configuration"):
			skipping = true
			blocks++
			continue
		case skipping && !startsEntry:
			continue
		}
		skipping = false
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String(), blocks
}

func lineWith(text, needle string) string {
	for line := range strings.SplitSeq(text, "\n") {
		if strings.Contains(line, needle) {
			if len(line) > 300 {
				line = line[:300] + "…"
			}
			return line
		}
	}
	return ""
}
