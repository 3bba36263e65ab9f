package dhcp

import (
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// binding is a resolved answer for an address-carrying reply: the machine, the
// subnet it is on and the address it gets.
type binding struct {
	machine *Machine
	subnet  *subnet
	ip      netip.Addr // zero for INFORM
}

// buildAddressReply builds an OFFER or ACK of the authoritative server: the
// address, the subnet's parameters and the boot plan. Pure: no I/O.
func buildAddressReply(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, b binding, boot bootPlan) (*dhcpv4.DHCPv4, error) {
	s := b.subnet
	want := requestedOptions(req)
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ipOf(s.serverID))),
		dhcpv4.WithOption(dhcpv4.OptSubnetMask(s.mask)),
	}
	if b.ip.IsValid() {
		mods = append(mods, dhcpv4.WithYourIP(ipOf(b.ip)))
		mods = append(mods, leaseOptions(want, s.LeaseTime)...)
	}
	if mt == dhcpv4.MessageTypeAck {
		// RFC 2131 table 3: ciaddr of an ACK is the request's.
		mods = append(mods, dhcpv4.WithClientIP(req.ClientIPAddr))
	}
	if len(s.routers) > 0 {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRouter(s.routers...)))
	}
	if len(s.dns) > 0 {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDNS(s.dns...)))
	}
	if s.DomainName != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDomainName(s.DomainName)))
	}
	if b.machine != nil && b.machine.Hostname != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptHostName(b.machine.Hostname)))
	}
	if len(s.ntp) > 0 && want.has(dhcpv4.OptionNTPServers) {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptNTPServers(s.ntp...)))
	}
	if want.has(dhcpv4.OptionBroadcastAddress) {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptBroadcastAddress(ipOf(s.bcast))))
	}
	mods = append(mods, bootModifiers(req, want, boot)...)
	return dhcpv4.NewReplyFromRequest(req, mods...)
}

// optionSet is the parameter request list (option 55) of a request. RFC 2131
// 3.5: a client that sends none gets every parameter.
type optionSet struct {
	all   bool
	codes [256]bool
}

func requestedOptions(req *dhcpv4.DHCPv4) *optionSet {
	set := &optionSet{}
	prl := req.ParameterRequestList()
	if prl == nil {
		set.all = true
	}
	for _, c := range prl {
		set.codes[c.Code()] = true
	}
	return set
}

func (o *optionSet) has(c dhcpv4.OptionCode) bool { return o.all || o.codes[c.Code()] }

// leaseOptions are option 51, and 58/59 (T1 = 1/2, T2 = 7/8 of the lease)
// when requested.
func leaseOptions(want *optionSet, lease time.Duration) []dhcpv4.Modifier {
	mods := []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(lease))}
	if want.has(dhcpv4.OptionRenewTimeValue) {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(lease/2)))
	}
	if want.has(dhcpv4.OptionRebindingTimeValue) {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(lease/8*7)))
	}
	return mods
}

// buildProxyReply builds a proxyDHCP OFFER (port 67) or a boot-server ACK
// (port 4011): no address, only the server identifier and the boot plan.
// Pure: no I/O.
func buildProxyReply(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, serverID netip.Addr, boot bootPlan) (*dhcpv4.DHCPv4, error) {
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithYourIP(net.IPv4zero),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ipOf(serverID))),
	}
	if mt == dhcpv4.MessageTypeAck {
		mods = append(mods, dhcpv4.WithClientIP(req.ClientIPAddr))
	}
	mods = append(mods, bootModifiers(req, requestedOptions(req), boot)...)
	return dhcpv4.NewReplyFromRequest(req, mods...)
}

// buildNak builds a DHCPNAK. Relayed NAKs get the broadcast bit so the relay
// broadcasts them on the client's link (RFC 2131 4.3.2). Pure: no I/O.
func buildNak(req *dhcpv4.DHCPv4, serverID netip.Addr, why Reason) (*dhcpv4.DHCPv4, error) {
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ipOf(serverID))),
		dhcpv4.WithOption(dhcpv4.OptMessage(string(why))),
	}
	if addrOf(req.GatewayIPAddr).IsValid() {
		mods = append(mods, dhcpv4.WithBroadcast(true))
	}
	return dhcpv4.NewReplyFromRequest(req, mods...)
}
