package api

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

// bootStatser is an engine that runs the boot service itself (the embedded
// one inside the daemon).
type bootStatser interface {
	BootStats() (engine.BootStats, bool)
}

// bootCollector exports the boot service's protocol counters at scrape time.
type bootCollector struct {
	stats                                func() (engine.BootStats, bool)
	dhcpReceived, dhcpSent               *prometheus.Desc
	dhcpDropped, dhcpMalformed           *prometheus.Desc
	tftpTransfers, tftpErrors, tftpBytes *prometheus.Desc
	httpBytes                            *prometheus.Desc
}

func newBootCollector(stats func() (engine.BootStats, bool)) *bootCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &bootCollector{
		stats:         stats,
		dhcpReceived:  d("metal_dhcp_packets_received_total", "DHCP packets received, by message type.", "type"),
		dhcpSent:      d("metal_dhcp_packets_sent_total", "DHCP replies sent, by message type.", "type"),
		dhcpDropped:   d("metal_dhcp_packets_dropped_total", "DHCP packets dropped because every worker was busy."),
		dhcpMalformed: d("metal_dhcp_packets_malformed_total", "DHCP packets that did not parse."),
		tftpTransfers: d("metal_tftp_transfers_total", "TFTP transfers completed."),
		tftpErrors:    d("metal_tftp_errors_total", "TFTP transfers failed or refused."),
		tftpBytes:     d("metal_tftp_bytes_total", "File bytes sent over TFTP."),
		httpBytes:     d("metal_http_boot_bytes_total", "Bytes of scripts, kernels, initrds, images and configs served over HTTP."),
	}
}

func (c *bootCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.dhcpReceived, c.dhcpSent, c.dhcpDropped, c.dhcpMalformed, c.tftpTransfers, c.tftpErrors, c.tftpBytes, c.httpBytes} {
		ch <- d
	}
}

func (c *bootCollector) Collect(ch chan<- prometheus.Metric) {
	s, ok := c.stats()
	if !ok {
		return
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for t, n := range s.DHCPReceived {
		counter(c.dhcpReceived, n, t)
	}
	for t, n := range s.DHCPSent {
		counter(c.dhcpSent, n, t)
	}
	counter(c.dhcpDropped, s.DHCPDropped)
	counter(c.dhcpMalformed, s.DHCPMalformed)
	counter(c.tftpTransfers, s.TFTPTransfers)
	counter(c.tftpErrors, s.TFTPErrors)
	counter(c.tftpBytes, s.TFTPBytes)
	counter(c.httpBytes, s.HTTPBytes)
}
