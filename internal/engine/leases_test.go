package engine_test

import (
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/boot/dhcp"
	"github.com/composable-metal/terraform-provider-metal/internal/engine"
	"github.com/composable-metal/terraform-provider-metal/internal/store"
)

func TestDHCPLeaseStoreRoundTrip(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "state.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ls := engine.DHCPLeaseStore(st)
	ctx := t.Context()
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	if err := ls.Put(ctx, dhcp.Lease{MAC: mac, IP: netip.MustParseAddr("198.18.1.1"), Expires: exp}); err != nil {
		t.Fatal(err)
	}
	// Moving the MAC to another address replaces its lease.
	if err := ls.Put(ctx, dhcp.Lease{MAC: mac, IP: netip.MustParseAddr("198.18.1.2"), Expires: exp}); err != nil {
		t.Fatal(err)
	}
	got, err := ls.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].MAC.String() != mac.String() || got[0].IP != netip.MustParseAddr("198.18.1.2") || !got[0].Expires.Equal(exp) {
		t.Fatalf("List = %+v", got)
	}
	if err := ls.Delete(ctx, mac); err != nil {
		t.Fatal(err)
	}
	if err := ls.Delete(ctx, mac); err != nil {
		t.Fatalf("deleting a missing lease: %v", err)
	}
	if got, _ := ls.List(ctx); len(got) != 0 {
		t.Fatalf("after Delete, List = %+v", got)
	}
}
