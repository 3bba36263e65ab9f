package redfish

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

const systemsPath = "/redfish/v1/Systems"

// Endpoint is a parsed BMC address: the service's base URL and, when the
// address named one, the system id.
type Endpoint struct {
	// BaseURL is scheme://host[:port] with no path.
	BaseURL string
	// Host is host[:port], used as the key for per-BMC locks.
	Host     string
	SystemID string
}

// ParseEndpoint accepts https://host[:port] or
// https://host[:port]/redfish/v1/Systems/<id>. http is allowed for labs and
// simulators; anything else is rejected with an explanation.
func ParseEndpoint(raw string) (Endpoint, error) {
	raw = strings.TrimSpace(raw)
	bad := func(why string) (Endpoint, error) {
		return Endpoint{}, &opError{kind: ErrInvalidEndpoint, msg: fmt.Sprintf("invalid BMC endpoint %q: %s; expected https://host[:port] or https://host[:port]/redfish/v1/Systems/<id>", raw, why)}
	}
	if raw == "" {
		return bad("it is empty")
	}
	if !strings.Contains(raw, "://") {
		return bad("it has no scheme")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return bad("it does not parse as a URL")
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return bad(fmt.Sprintf("scheme %q is not http or https", u.Scheme))
	}
	if u.Hostname() == "" {
		return bad("it has no host")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return bad(fmt.Sprintf("port %q is not valid", p))
		}
	}
	if u.User != nil {
		return bad("credentials do not belong in the URL; use username and password")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return bad("it has a query or fragment")
	}
	ep := Endpoint{BaseURL: u.Scheme + "://" + u.Host, Host: u.Host}
	path := strings.TrimRight(u.Path, "/")
	switch {
	case path == "" || path == "/redfish/v1" || path == "/redfish":
	case strings.HasPrefix(path, systemsPath+"/"):
		id := strings.TrimPrefix(path, systemsPath+"/")
		if id == "" || strings.Contains(id, "/") {
			return bad("the path names no single system")
		}
		unescaped, err := url.PathUnescape(id)
		if err != nil {
			return bad("the system id is not valid")
		}
		ep.SystemID = unescaped
	default:
		return bad(fmt.Sprintf("path %q is not a Redfish system path", u.Path))
	}
	return ep, nil
}

// systemPath is the spec-mandated URI of a system in the Systems collection.
func systemPath(id string) string {
	return systemsPath + "/" + url.PathEscape(id)
}
