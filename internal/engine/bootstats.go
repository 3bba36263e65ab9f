package engine

// BootStats is a snapshot of the boot service's protocol counters, for
// metrics. Counters only grow while the service runs.
type BootStats struct {
	// DHCPReceived and DHCPSent count packets by DHCP message type name
	// ("DISCOVER", "OFFER", ...).
	DHCPReceived map[string]uint64
	DHCPSent     map[string]uint64
	// DHCPDropped found the worker queue full; DHCPMalformed did not parse.
	DHCPDropped, DHCPMalformed uint64
	TFTPTransfers, TFTPErrors  uint64
	TFTPBytes                  uint64
	// HTTPBytes counts body bytes of scripts, artifacts and configs served.
	HTTPBytes uint64
}

// BootStats reports the boot service's counters; ok is false while it is
// not serving.
func (e *Embedded) BootStats() (stats BootStats, ok bool) {
	e.bootMu.Lock()
	svc := e.boot
	e.bootMu.Unlock()
	if svc == nil {
		return BootStats{}, false
	}
	svc.listenMu.Lock()
	defer svc.listenMu.Unlock()
	if !svc.listening {
		return BootStats{}, false
	}
	stats.HTTPBytes = svc.httpBytes.Load()
	if svc.dhcpSrv != nil {
		d := svc.dhcpSrv.Stats()
		stats.DHCPReceived, stats.DHCPSent = map[string]uint64{}, map[string]uint64{}
		for t, n := range d.Received {
			stats.DHCPReceived[t.String()] = n
		}
		for t, n := range d.Sent {
			stats.DHCPSent[t.String()] = n
		}
		stats.DHCPDropped, stats.DHCPMalformed = d.Dropped, d.Malformed
	}
	if svc.tftpSrv != nil {
		t := svc.tftpSrv.Stats()
		stats.TFTPTransfers, stats.TFTPErrors, stats.TFTPBytes = t.Transfers, t.Errors, t.Bytes
	}
	return stats, true
}
