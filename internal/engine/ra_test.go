package engine_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

// An interface the responder cannot open: by default the boot service
// starts anyway (RAs only save time); asked for explicitly, it is an error.
func TestRouterAdvertisementsStartFailure(t *testing.T) {
	t.Parallel()
	on, off := true, false
	for _, c := range []struct {
		name    string
		want    *bool
		wantErr bool
	}{{"default", nil, false}, {"explicit", &on, true}, {"off", &off, false}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := engine.NewEmbedded(engine.Config{Boot: &engine.BootConfig{
				Address: netip.MustParseAddr("127.0.0.1"), Interface: "metal-nosuch0", HTTPListen: "127.0.0.1:0",
				StateDir: t.TempDir(), DHCP: engine.DHCPConfig{Mode: engine.DHCPOff}, RouterAdvertisements: c.want,
			}})
			defer func() { _ = e.Close() }()
			err := e.ServeBoot()
			if c.wantErr {
				if err == nil || !strings.Contains(err.Error(), "metal-nosuch0") {
					t.Fatalf("want an error naming the interface, got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("the boot service did not start: %v", err)
			}
		})
	}
}
