package provider

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/schema/validator"

	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

// endpointValidator checks a BMC endpoint at plan time without contacting it.
type endpointValidator struct{}

var _ validator.String = endpointValidator{}

func (endpointValidator) Description(context.Context) string {
	return "value must be https://host[:port] or https://host[:port]/redfish/v1/Systems/<id>"
}

func (v endpointValidator) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (endpointValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if _, err := engine.ParseEndpoint(req.ConfigValue.ValueString()); err != nil {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid BMC Endpoint",
			"Set `endpoint` to https://host[:port] (http:// only for simulators and labs), optionally followed by "+
				"/redfish/v1/Systems/<id>, with no credentials, query or fragment.\n\nOriginal Error: "+err.Error())
	}
}

// durationValidator accepts a positive Go duration string such as "2s".
type durationValidator struct{}

var _ validator.String = durationValidator{}

func (durationValidator) Description(context.Context) string {
	return `value must be a positive duration such as "500ms", "2s" or "1m"`
}

func (v durationValidator) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (durationValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	d, err := time.ParseDuration(req.ConfigValue.ValueString())
	if err != nil || d <= 0 {
		detail := fmt.Sprintf("%q is not a positive duration. Use a number with a unit, such as \"500ms\", \"2s\" or \"1m\".", req.ConfigValue.ValueString())
		if err != nil {
			detail += "\n\nOriginal Error: " + err.Error()
		}
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid Duration", detail)
	}
}

// ipv4Validator accepts a dotted-quad IPv4 address.
type ipv4Validator struct{}

var _ validator.String = ipv4Validator{}

func (ipv4Validator) Description(context.Context) string {
	return `value must be an IPv4 address such as "192.0.2.10"`
}

func (v ipv4Validator) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (ipv4Validator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if _, problem := parseIPv4(req.ConfigValue.ValueString()); problem != "" {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid IPv4 Address", problem)
	}
}

// parseIPv4 parses a dotted-quad IPv4 address; problem explains what is
// wrong, for a diagnostic, and is empty when the address is good.
func parseIPv4(s string) (addr netip.Addr, problem string) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Sprintf("%q is not an IP address. Use a dotted-quad IPv4 address such as \"192.0.2.10\".", s)
	}
	if !a.Is4() {
		return netip.Addr{}, fmt.Sprintf("%q is not an IPv4 address. The boot service speaks DHCPv4: use a dotted-quad address such as \"192.0.2.10\".", s)
	}
	return a, ""
}

// subnetValidator accepts an IPv4 network in CIDR notation without host bits.
type subnetValidator struct{}

var _ validator.String = subnetValidator{}

func (subnetValidator) Description(context.Context) string {
	return `value must be an IPv4 network in CIDR notation such as "192.0.2.0/24"`
}

func (v subnetValidator) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (subnetValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if _, problem := parseSubnet(req.ConfigValue.ValueString()); problem != "" {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid Subnet", problem)
	}
}

// parseSubnet parses an IPv4 network such as 192.0.2.0/24; problem
// explains what is wrong and is empty when the network is good.
func parseSubnet(s string) (prefix netip.Prefix, problem string) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Sprintf("%q is not a network in CIDR notation. Use an IPv4 network such as \"192.0.2.0/24\".", s)
	}
	if !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Sprintf("%q is not an IPv4 network. The boot service speaks DHCPv4: use a network such as \"192.0.2.0/24\".", s)
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Sprintf("%q has host bits set. Use the network address: %q.", s, p.Masked().String())
	}
	return p, ""
}

// hostPrefixValidator accepts an IPv4 address with its prefix length, such
// as 192.0.2.10/24 (a machine's static address).
type hostPrefixValidator struct{}

var _ validator.String = hostPrefixValidator{}

func (hostPrefixValidator) Description(context.Context) string {
	return `value must be an IPv4 address with its prefix length such as "192.0.2.10/24"`
}

func (v hostPrefixValidator) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}

func (hostPrefixValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	s := req.ConfigValue.ValueString()
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid IP Address",
			fmt.Sprintf("%q is not an IPv4 address with a prefix length. Write the address and the length of its "+
				"network's prefix, such as \"192.0.2.10/24\".", s))
	}
}

// listenValidator accepts host:port with a numeric port.
type listenValidator struct{}

var _ validator.String = listenValidator{}

func (listenValidator) Description(context.Context) string {
	return `value must be host:port such as "0.0.0.0:8080"`
}

func (v listenValidator) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (listenValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	s := req.ConfigValue.ValueString()
	host, port, err := net.SplitHostPort(s)
	if err == nil {
		var n int
		n, err = strconv.Atoi(port)
		if err == nil && (n < 0 || n > 65535) {
			err = errors.New("port out of range")
		}
		if err == nil && host != "" {
			if _, perr := netip.ParseAddr(host); perr != nil {
				err = errors.New("host is not an IP address")
			}
		}
	}
	if err != nil {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid Listen Address",
			fmt.Sprintf("%q is not an IP address and port. Use host:port such as \"0.0.0.0:8080\" (all addresses) or "+
				"\"192.0.2.1:8080\"; port 0 picks a free port.", s))
	}
}
