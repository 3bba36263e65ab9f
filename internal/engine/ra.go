package engine

import (
	"context"

	"github.com/composable-metal/terraform-provider-metal/internal/boot/ra"
)

// routerAdvertisements opens the IPv6 Router Advertisement responder on
// the provisioning interface when BootConfig.RouterAdvertisements allows
// (see there). It returns nil when the responder is off or, by default,
// when it cannot start (logged: boots then only lose time).
func (s *bootService) routerAdvertisements() (*ra.Responder, error) {
	want := s.cfg.RouterAdvertisements
	if s.cfg.Interface == "" || (want != nil && !*want) {
		return nil, nil
	}
	conn, ifi, err := ra.Listen(s.cfg.Interface)
	if err == nil {
		var r *ra.Responder
		r, err = ra.New(ra.Config{Conn: conn, MAC: ifi.HardwareAddr, IfIndex: ifi.Index, Logger: s.log.With("subsystem", "ra")})
		if err == nil {
			return r, nil
		}
		_ = conn.Close()
	}
	if want != nil {
		return nil, err
	}
	s.log.Warn("not answering IPv6 router solicitations: iPXE waits ~16s for them on every boot; set boot_service.router_advertisements = false to silence this", "interface", s.cfg.Interface, "error", err.Error())
	return nil, nil
}

// serveRA runs the responder until ctx ends. A failure stops only the
// responder, never the boot service.
func (s *bootService) serveRA(ctx context.Context, r *ra.Responder) {
	if err := r.Serve(ctx); err != nil {
		s.log.Warn("the IPv6 router advertisement responder stopped", "error", err.Error())
	}
}
