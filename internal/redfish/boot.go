package redfish

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
)

// BootTarget is a Redfish BootSourceOverrideTarget we drive.
type BootTarget string

const (
	BootPxe      BootTarget = "Pxe"
	BootHdd      BootTarget = "Hdd"
	BootUefiHttp BootTarget = "UefiHttp"
)

// BootMode is a BootSourceOverrideMode.
type BootMode string

const (
	BootModeUEFI   BootMode = "UEFI"
	BootModeLegacy BootMode = "Legacy"
)

// BootOverride is a one-time boot request. An empty Mode leaves the mode alone.
type BootOverride struct {
	Target BootTarget
	Mode   BootMode
}

// SetBootOnce sets a one-time boot override. It never trusts the read-back of
// BootSourceOverrideEnabled: some BMCs (Supermicro) report Continuous forever.
func (c *Client) SetBootOnce(o BootOverride) error {
	p, err := c.SystemPath()
	if err != nil {
		return err
	}
	snap, err := c.fetchSystem(p, "")
	if err != nil {
		return err
	}
	return c.setBootOnce(p, snap, o)
}

// BootOnceAndRestart sets the override and then restarts (or powers on) the
// system so it boots from it now, in one session and one system read.
func (c *Client) BootOnceAndRestart(o BootOverride) error {
	p, err := c.SystemPath()
	if err != nil {
		return err
	}
	snap, err := c.fetchSystem(p, "")
	if err != nil {
		return err
	}
	if err := c.setBootOnce(p, snap, o); err != nil {
		return err
	}
	return c.restart(p, snap)
}

func (c *Client) setBootOnce(p string, snap *snapshot, o BootOverride) error {
	if allowed := snap.doc.Boot.AllowedTargets; len(allowed) > 0 && !slices.Contains(allowed, string(o.Target)) {
		return &opError{kind: ErrUnsupported, msg: fmt.Sprintf("system %s cannot boot from %s; it allows %v", snap.doc.ID, o.Target, allowed)}
	}
	minimal := map[string]any{"BootSourceOverrideTarget": o.Target, "BootSourceOverrideEnabled": "Once"}
	withMode := o.Mode != "" && !c.s.quirks.minimalBoot.Load()
	var err error
	if withMode {
		err = c.patchBoot(p, snap, map[string]any{"BootSourceOverrideTarget": o.Target, "BootSourceOverrideEnabled": "Once", "BootSourceOverrideMode": o.Mode})
	}
	var se *StatusError
	if !withMode || (errors.As(err, &se) && se.Status == http.StatusBadRequest) {
		if withMode {
			// Some BMCs refuse BootSourceOverrideMode in the same PATCH (Dell
			// 17G, HPE DL160 Gen10): retry with the minimal payload and
			// remember it for this BMC.
			c.s.log.DebugContext(c.ctx, "BMC refused the full boot override; retrying with a minimal payload", "status", se.Status)
			c.s.quirks.minimalBoot.Store(true)
		}
		err = c.patchBoot(p, snap, minimal)
	}
	if err != nil {
		return fmt.Errorf("setting a one-time %s boot on system %s: %w", o.Target, snap.doc.ID, err)
	}
	return nil
}

// patchBoot sends If-Match when the BMC gave an ETag (Supermicro requires
// it). A 412 gets one retry with a fresh ETag and one without If-Match,
// for BMCs that reject the header (iDRAC10); a 428 fetches an ETag.
func (c *Client) patchBoot(p string, snap *snapshot, boot map[string]any) error {
	payload := map[string]any{"Boot": boot}
	etag := snap.etag
	for attempt := 0; attempt < 3; attempt++ {
		var h map[string]string
		if etag != "" {
			h = map[string]string{"If-Match": etag}
		}
		resp, err := c.sendJSON(http.MethodPatch, p, payload, h, sendOpts{})
		if err == nil {
			drain(resp)
			// The PATCH changed the resource, so its ETag is stale: drop it
			// or the Reset that follows is refused with 412.
			snap.etag = ""
			snap.sys.SetETag("")
			return nil
		}
		var se *StatusError
		if !errors.As(err, &se) {
			return err
		}
		switch {
		case se.Status == http.StatusPreconditionFailed && etag != "" && attempt == 0,
			se.Status == http.StatusPreconditionRequired && etag == "":
			fresh, ferr := c.fetchSystem(p, "")
			if ferr != nil {
				return err
			}
			etag = fresh.etag
		case se.Status == http.StatusPreconditionFailed && etag != "":
			etag = ""
		default:
			return err
		}
	}
	return &opError{kind: ErrUnsupported, msg: "the BMC kept refusing the boot override precondition"}
}
