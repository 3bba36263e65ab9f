package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/engine"
)

// Client is the daemon's API as an engine.Engine.
type Client struct {
	cfg  Config
	log  *slog.Logger
	base *url.URL
	hc   *http.Client
	// pollWait is the long-poll of an operation.
	pollWait time.Duration

	verMu    sync.Mutex
	verified bool
}

var _ engine.Engine = (*Client)(nil)

// NewClient checks cfg (not the daemon: that happens at first use) and
// returns a client.
func NewClient(cfg Config) (*Client, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("boot service endpoint %q is not https://host:port", cfg.Endpoint)
	}
	if u.Scheme == "http" && u.Hostname() != "localhost" && !strings.HasPrefix(u.Hostname(), "127.") && u.Hostname() != "::1" {
		return nil, fmt.Errorf("boot service endpoint %q: use https (plain http is for loopback only, the token would cross the network in clear)", cfg.Endpoint)
	}
	if cfg.Token == "" {
		return nil, errors.New("the boot service token is empty: set boot_service.token or METAL_BOOT_SERVICE_TOKEN")
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case cfg.TLSFingerprint != "" && cfg.CACertificate != "":
		return nil, errors.New("set either ca_certificate or tls_fingerprint, not both")
	case cfg.TLSFingerprint != "":
		want, err := ParseFingerprint(cfg.TLSFingerprint)
		if err != nil {
			return nil, err
		}
		// The pin replaces chain and name verification.
		tlsCfg.InsecureSkipVerify = true
		tlsCfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return &FingerprintError{Expected: want, Got: "(no certificate)"}
			}
			if got := Fingerprint(raw[0]); got != want {
				return &FingerprintError{Expected: want, Got: got}
			}
			return nil
		}
	case cfg.CACertificate != "":
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(cfg.CACertificate)) {
			return nil, errors.New("ca_certificate holds no PEM certificate")
		}
		tlsCfg.RootCAs = pool
	}
	tr, ok := http.DefaultTransport.(*http.Transport)
	if !ok {
		tr = &http.Transport{}
	}
	tr = tr.Clone()
	tr.TLSClientConfig = tlsCfg
	tr.Proxy = http.ProxyFromEnvironment
	return &Client{cfg: cfg, log: log, base: u, hc: &http.Client{Transport: tr}, pollWait: 25 * time.Second}, nil
}

// Fingerprint is the hex SHA-256 of a DER certificate.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// ParseFingerprint normalises a hex SHA-256 (colons and case allowed).
func ParseFingerprint(s string) (string, error) {
	f := strings.ToLower(strings.NewReplacer(":", "", " ", "").Replace(s))
	if b, err := hex.DecodeString(f); err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("tls_fingerprint %q is not a SHA-256 in hex (64 hex digits, as printed by the daemon at start)", s)
	}
	return f, nil
}

// Close releases idle connections.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

func (c *Client) apiVersion() int {
	if c.cfg.apiVersion != 0 {
		return c.cfg.apiVersion
	}
	return APIVersion
}

// negotiate checks the daemon's API version once (a failure is retried on
// the next call).
func (c *Client) negotiate(ctx context.Context) error {
	c.verMu.Lock()
	defer c.verMu.Unlock()
	if c.verified {
		return nil
	}
	var v versionInfo
	if err := c.roundTrip(ctx, http.MethodGet, "/v1/version", nil, &v); err != nil {
		return err
	}
	if v.APIVersion != c.apiVersion() {
		return &VersionError{ClientAPI: c.apiVersion(), ServerAPI: v.APIVersion, ServerVersion: v.Server}
	}
	c.verified = true
	return nil
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	if err := c.negotiate(ctx); err != nil {
		return err
	}
	return c.roundTrip(ctx, method, path, in, out)
}

// roundTrip sends one request and decodes the answer or the error.
func (c *Client) roundTrip(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	p, query, _ := strings.Cut(path, "?")
	u := c.base.JoinPath(p)
	u.RawQuery = query
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.transportError(ctx, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%w: reading the answer from %s: %w", ErrDaemonUnreachable, c.cfg.Endpoint, err)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		return fmt.Errorf("%w: %s answered 401: the token is wrong, was rotated or was revoked; create one on the daemon's host with `terraform-provider-metal token create --state-dir <dir> <name>`", ErrInvalidToken, c.cfg.Endpoint)
	}
	if resp.StatusCode >= 300 {
		var eb errorBody
		if json.Unmarshal(b, &eb) == nil && eb.Error != nil {
			return decodeError(eb.Error)
		}
		return fmt.Errorf("the boot service at %s answered %s to %s %s (is this the metal daemon?)", c.cfg.Endpoint, resp.Status, method, path)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decoding the answer of %s %s: %w", method, path, err)
	}
	return nil
}

func (c *Client) transportError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ferr *FingerprintError
	if errors.As(err, &ferr) {
		return ferr
	}
	var uerr x509.UnknownAuthorityError
	var herr x509.HostnameError
	var cerr x509.CertificateInvalidError
	var verr *tls.CertificateVerificationError
	if errors.As(err, &uerr) || errors.As(err, &herr) || errors.As(err, &cerr) || errors.As(err, &verr) {
		return fmt.Errorf("%w: %s: %w (set boot_service.ca_certificate to the CA that signed it, or pin it with tls_fingerprint as printed by the daemon at start)", ErrDaemonTLS, c.cfg.Endpoint, err)
	}
	return fmt.Errorf("%w: %s: %w (is `terraform-provider-metal serve` running there, and reachable from where Terraform runs?)", ErrDaemonUnreachable, c.cfg.Endpoint, err)
}

// timeout is what is left of ctx's deadline, for the daemon to bound the
// operation by (0: the daemon's default).
func timeout(ctx context.Context) Duration {
	if d, ok := ctx.Deadline(); ok {
		return Duration(time.Until(d))
	}
	return 0
}

// operation starts a long-running operation and waits for its end,
// reconnecting as needed: the daemon runs it whether or not we listen.
func (c *Client) operation(ctx context.Context, path string, in, out any) error {
	var acc acceptedResponse
	if err := c.do(ctx, http.MethodPost, path, in, &acc); err != nil {
		return err
	}
	return c.Wait(ctx, acc.Operation, out)
}

// Wait long-polls operation id until it ends and decodes its result into
// out (or returns its error).
func (c *Client) Wait(ctx context.Context, id string, out any) error {
	backoff := 250 * time.Millisecond
	for {
		var op operationResponse
		pctx, cancel := context.WithTimeout(ctx, c.pollWait+30*time.Second)
		err := c.roundTrip(pctx, http.MethodGet, "/v1/operations/"+url.PathEscape(id)+"?wait="+c.pollWait.String(), nil, &op)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("waiting for operation %s on the boot service: %w", id, ctx.Err())
			}
			if errors.Is(err, ErrDaemonUnreachable) {
				// The daemon restarts or the network blips: it keeps running
				// the operation, so ask again.
				c.log.Warn("the boot service is unreachable while waiting for an operation; retrying", "operation", id, "error", err.Error())
				select {
				case <-time.After(backoff):
				case <-ctx.Done():
					return fmt.Errorf("waiting for operation %s: %w (last error: %w)", id, ctx.Err(), err)
				}
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			return err
		}
		backoff = 250 * time.Millisecond
		switch op.State {
		case "succeeded":
			if out != nil && len(op.Result) > 0 {
				return json.Unmarshal(op.Result, out)
			}
			return nil
		case "failed", "canceled":
			if op.Error == nil {
				return fmt.Errorf("operation %s %s", id, op.State)
			}
			return decodeError(op.Error)
		}
	}
}

// BootConfig is the daemon's boot service configuration (without state_dir
// and ipxe_dir). It also checks the connection, the token and the version.
func (c *Client) BootConfig(ctx context.Context) (*engine.BootConfig, error) {
	var out engine.BootConfig
	if err := c.do(ctx, http.MethodGet, "/v1/boot-service", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) Systems(ctx context.Context, bmc engine.BMC) ([]engine.SystemSummary, error) {
	var out []engine.SystemSummary
	return out, c.do(ctx, http.MethodPost, "/v1/systems", bmcRequest{BMC: bmc}, &out)
}

func (c *Client) Machine(ctx context.Context, bmc engine.BMC) (*engine.Inventory, error) {
	var out engine.Inventory
	if err := c.do(ctx, http.MethodPost, "/v1/machine", bmcRequest{BMC: bmc}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) SetPower(ctx context.Context, bmc engine.BMC, want engine.PowerState, opts engine.PowerOptions) (*engine.Inventory, error) {
	var out engine.Inventory
	if err := c.operation(ctx, "/v1/power", powerRequest{BMC: bmc, Want: want, Options: opts, Timeout: timeout(ctx)}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) BootOnce(ctx context.Context, bmc engine.BMC, override engine.BootOverride) error {
	return c.do(ctx, http.MethodPost, "/v1/boot-once", bootOnceRequest{BMC: bmc, Override: override}, nil)
}

func (c *Client) BIOS(ctx context.Context, bmc engine.BMC) (*engine.BIOS, error) {
	var out engine.BIOS
	if err := c.do(ctx, http.MethodPost, "/v1/bios", bmcRequest{BMC: bmc}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) ApplyBIOS(ctx context.Context, bmc engine.BMC, profile engine.BIOSProfile) (*engine.BIOSResult, error) {
	var out engine.BIOSResult
	if err := c.operation(ctx, "/v1/bios/apply", biosApplyRequest{BMC: bmc, Profile: profile, Timeout: timeout(ctx)}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) Storage(ctx context.Context, bmc engine.BMC) ([]engine.StorageController, error) {
	var out []engine.StorageController
	if err := c.do(ctx, http.MethodPost, "/v1/storage", bmcRequest{BMC: bmc}, &out); err != nil {
		return nil, err
	}
	return out, nil
}

func (c *Client) CreateVolume(ctx context.Context, bmc engine.BMC, spec engine.VolumeSpec) (*engine.Volume, error) {
	var out engine.Volume
	if err := c.operation(ctx, "/v1/volumes", volumeRequest{BMC: bmc, Spec: spec, Timeout: timeout(ctx)}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) DeleteVolume(ctx context.Context, bmc engine.BMC, storageID, volumeID string) error {
	return c.operation(ctx, "/v1/volumes/delete", volumeDeleteRequest{BMC: bmc, StorageID: storageID, VolumeID: volumeID, Timeout: timeout(ctx)}, nil)
}

func (c *Client) EnsureImage(ctx context.Context, spec engine.ImageSpec) (*engine.ImageInfo, error) {
	var out engine.ImageInfo
	if err := c.do(ctx, http.MethodPut, "/v1/images/"+url.PathEscape(spec.Name), spec, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) Image(ctx context.Context, name string) (*engine.ImageInfo, error) {
	var out engine.ImageInfo
	if err := c.do(ctx, http.MethodGet, "/v1/images/"+url.PathEscape(name), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) DeleteImage(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/images/"+url.PathEscape(name), nil, nil)
}

func (c *Client) Render(ctx context.Context, bmc engine.BMC, macs []string, spec engine.ProvisionSpec) (*engine.Rendered, error) {
	var out engine.Rendered
	if err := c.do(ctx, http.MethodPost, "/v1/render", renderRequest{BMC: bmc, MACs: macs, Spec: spec}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) Provision(ctx context.Context, bmc engine.BMC, spec engine.ProvisionSpec) (*engine.ProvisionResult, error) {
	var out engine.ProvisionResult
	if err := c.operation(ctx, "/v1/provision", provisionRequest{BMC: bmc, Spec: spec, Timeout: timeout(ctx)}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) Deprovision(ctx context.Context, bmc engine.BMC, image string, wipe bool) error {
	return c.operation(ctx, "/v1/deprovision", deprovisionRequest{BMC: bmc, Image: image, Wipe: wipe, Timeout: timeout(ctx)}, nil)
}

func (c *Client) Timeline(ctx context.Context, bmc engine.BMC) ([]engine.TimelineEvent, error) {
	var out []engine.TimelineEvent
	return out, c.do(ctx, http.MethodPost, "/v1/timeline", bmcRequest{BMC: bmc}, &out)
}

func (c *Client) Discovered(ctx context.Context) ([]engine.DiscoveredMachine, error) {
	var out []engine.DiscoveredMachine
	return out, c.do(ctx, http.MethodGet, "/v1/discovered", nil, &out)
}

func (c *Client) PutRole(ctx context.Context, role engine.Role) (*engine.RoleInfo, error) {
	var out engine.RoleInfo
	if err := c.do(ctx, http.MethodPut, "/v1/roles/"+url.PathEscape(role.Name), role, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) Role(ctx context.Context, name string) (*engine.RoleInfo, error) {
	var out engine.RoleInfo
	if err := c.do(ctx, http.MethodGet, "/v1/roles/"+url.PathEscape(name), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) DeleteRole(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/roles/"+url.PathEscape(name), nil, nil)
}

func (c *Client) ApplyRoles(ctx context.Context, bmc engine.BMC, sel engine.RoleSelection) (*engine.RoleStatus, error) {
	var out engine.RoleStatus
	if err := c.operation(ctx, "/v1/roles/apply", rolesApplyRequest{BMC: bmc, Selection: sel, Timeout: timeout(ctx)}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) RoleStatus(ctx context.Context, bmc engine.BMC) (*engine.RoleStatus, error) {
	var out engine.RoleStatus
	if err := c.do(ctx, http.MethodPost, "/v1/roles/status", bmcRequest{BMC: bmc}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) CheckRole(ctx context.Context, role engine.Role) error {
	return c.do(ctx, http.MethodPost, "/v1/roles-check/role", role, nil)
}

func (c *Client) CheckRoles(ctx context.Context, sel engine.RoleSelection, facts engine.RoleFacts) error {
	return c.do(ctx, http.MethodPost, "/v1/roles-check/machine", rolesCheckRequest{Selection: sel, Facts: facts}, nil)
}
