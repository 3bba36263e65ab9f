package api

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

func TestBootCollectorExportsProtocolCounters(t *testing.T) {
	t.Parallel()
	serving := false
	reg := prometheus.NewRegistry()
	reg.MustRegister(newBootCollector(func() (engine.BootStats, bool) {
		return engine.BootStats{
			DHCPReceived: map[string]uint64{"DISCOVER": 3, "REQUEST": 2},
			DHCPSent:     map[string]uint64{"OFFER": 3, "ACK": 2},
			TFTPBytes:    4096, TFTPTransfers: 1, HTTPBytes: 1 << 20,
		}, serving
	}))

	families, err := reg.Gather()
	if err != nil || len(families) != 0 {
		t.Fatalf("a boot service that is not serving exports nothing, got %d families (%v)", len(families), err)
	}

	serving = true
	families, err = reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += "{" + l.GetValue() + "}"
			}
			got[key] = m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{
		"metal_dhcp_packets_received_total{DISCOVER}": 3,
		"metal_dhcp_packets_received_total{REQUEST}":  2,
		"metal_dhcp_packets_sent_total{ACK}":          2,
		"metal_tftp_bytes_total":                      4096,
		"metal_http_boot_bytes_total":                 1 << 20,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}
