package redfish

import (
	"errors"
	"strings"
	"testing"
)

func TestParseEndpoint(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		in       string
		base     string
		systemID string
		wantErr  string
	}{
		"https host":          {in: "https://bmc.example", base: "https://bmc.example"},
		"https host and port": {in: "https://10.0.0.5:8443/", base: "https://10.0.0.5:8443"},
		"ipv6":                {in: "https://[fd00::5]:443", base: "https://[fd00::5]:443"},
		"service root path":   {in: "https://bmc/redfish/v1/", base: "https://bmc"},
		"system path":         {in: "https://bmc/redfish/v1/Systems/System.Embedded.1", base: "https://bmc", systemID: "System.Embedded.1"},
		"escaped system id":   {in: "https://bmc/redfish/v1/Systems/node%201", base: "https://bmc", systemID: "node 1"},
		"plain http for labs": {in: "http://127.0.0.1:8000", base: "http://127.0.0.1:8000"},
		"no scheme":           {in: "bmc.example:443", wantErr: "no scheme"},
		"bad scheme":          {in: "ftp://bmc", wantErr: `scheme "ftp"`},
		"empty":               {in: "  ", wantErr: "empty"},
		"no host":             {in: "https:///redfish/v1", wantErr: "no host"},
		"credentials in URL":  {in: "https://root:calvin@bmc", wantErr: "credentials do not belong"},
		"query":               {in: "https://bmc/?x=1", wantErr: "query"},
		"other path":          {in: "https://bmc/api/v2", wantErr: "not a Redfish system path"},
		"nested system path":  {in: "https://bmc/redfish/v1/Systems/1/Bios", wantErr: "no single system"},
		"bad port":            {in: "https://bmc:99999", wantErr: "port"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ep, err := ParseEndpoint(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrInvalidEndpoint) {
					t.Fatalf("ParseEndpoint(%q) error = %v, want one containing %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseEndpoint(%q): %v", tc.in, err)
			}
			if ep.BaseURL != tc.base || ep.SystemID != tc.systemID {
				t.Fatalf("ParseEndpoint(%q) = %+v, want base %q system %q", tc.in, ep, tc.base, tc.systemID)
			}
		})
	}
}
