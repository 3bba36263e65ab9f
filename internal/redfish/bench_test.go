package redfish_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"testing"

	"github.com/stmcginnis/gofish"

	"github.com/composable-metal/terraform-provider-metal/internal/bmcsim"
	"github.com/composable-metal/terraform-provider-metal/internal/redfish"
)

// BenchmarkRefresh reports the HTTP requests one metal_machine refresh costs
// (open session, read inventory, log out) per vendor shape: requests/op.
func BenchmarkRefresh(b *testing.B) {
	for _, vendor := range bmcsim.Vendors() {
		b.Run(string(vendor), func(b *testing.B) {
			cfg := benchSim(b, vendor)
			var total int64
			for b.Loop() {
				c, err := redfish.Open(context.Background(), cfg)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Inventory(); err != nil {
					b.Fatal(err)
				}
				_ = c.Close()
				total += c.Requests()
			}
			b.ReportMetric(float64(total)/float64(b.N), "requests/op")
		})
	}
}

// BenchmarkPowerAndBoot reports the requests of a one-time PXE override plus
// power-on (the provisioning start) per vendor shape.
func BenchmarkPowerAndBoot(b *testing.B) {
	for _, vendor := range bmcsim.Vendors() {
		b.Run(string(vendor), func(b *testing.B) {
			cfg := benchSim(b, vendor)
			var total int64
			for b.Loop() {
				c, err := redfish.Open(context.Background(), cfg)
				if err != nil {
					b.Fatal(err)
				}
				if err := c.BootOnceAndRestart(redfish.BootOverride{Target: redfish.BootPxe, Mode: redfish.BootModeUEFI}); err != nil {
					b.Fatal(err)
				}
				_ = c.Close()
				total += c.Requests()
				// Back to off for the next round, through a client not counted.
				b.StopTimer()
				reset, err := redfish.Open(context.Background(), cfg)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := reset.SetPower(redfish.PowerOff, redfish.PowerOptions{ForceOff: true}); err != nil {
					b.Fatal(err)
				}
				_ = reset.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(total)/float64(b.N), "requests/op")
		})
	}
}

func benchSim(b *testing.B, vendor bmcsim.Vendor) redfish.Config {
	b.Helper()
	sim := bmcsim.New(bmcsim.Options{Vendor: vendor})
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	url, ca, err := sim.StartTLS(ctx)
	if err != nil {
		b.Fatal(err)
	}
	cfg := redfish.Config{Endpoint: url, Username: "admin", Password: "password", CACertificate: string(ca)}
	c, err := redfish.Open(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	p, err := c.SystemPath()
	if err != nil {
		b.Fatal(err)
	}
	_ = c.Close()
	// Like a refresh: the system id is known from state.
	cfg.SystemID = p[len("/redfish/v1/Systems/"):]
	return cfg
}

// BenchmarkRefreshPlainGofish is the baseline: the same inventory read the
// way gofish is usually driven (dell/terraform-provider-redfish, scripts):
// connect (service root + session), walk Systems, list NICs, log out.
func BenchmarkRefreshPlainGofish(b *testing.B) {
	for _, vendor := range bmcsim.Vendors() {
		b.Run(string(vendor), func(b *testing.B) {
			sim := bmcsim.New(bmcsim.Options{Vendor: vendor})
			ctx, cancel := context.WithCancel(context.Background())
			b.Cleanup(cancel)
			url, ca, err := sim.StartTLS(ctx)
			if err != nil {
				b.Fatal(err)
			}
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(ca)
			hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
			sim.ResetRequests()
			for b.Loop() {
				c, err := gofish.ConnectContext(ctx, gofish.ClientConfig{Endpoint: url, Username: "admin", Password: "password", HTTPClient: hc})
				if err != nil {
					b.Fatal(err)
				}
				systems, err := c.Service.Systems()
				if err != nil || len(systems) != 1 {
					b.Fatalf("systems: %v %v", systems, err)
				}
				nics, err := systems[0].EthernetInterfaces()
				if err != nil || len(nics) == 0 {
					b.Fatalf("nics: %v %v", nics, err)
				}
				c.Logout()
			}
			b.ReportMetric(float64(len(sim.Requests()))/float64(b.N), "requests/op")
		})
	}
}
