// Package redfish is the BMC client every resource shares. It wraps gofish
// with explicit session open/close, bounded retries, typed errors, request
// counting and idempotent power and boot operations.
package redfish

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stmcginnis/gofish/schemas"
)

const (
	sessionsPath    = "/redfish/v1/SessionService/Sessions"
	serviceRootPath = "/redfish/v1/"
)

// Config says how to reach and authenticate to one BMC.
type Config struct {
	// Endpoint is https://host[:port], optionally with /redfish/v1/Systems/<id>.
	Endpoint string
	Username string
	Password string
	// SystemID picks a system on a multi-system BMC; it overrides an id in Endpoint.
	SystemID string
	// Insecure skips TLS verification. Only for labs: an explicit opt-in.
	Insecure bool
	// CACertificate is a PEM bundle trusted for this BMC instead of the system roots.
	CACertificate string

	Logger *slog.Logger
	Retry  RetryPolicy
	// RequestTimeout bounds one HTTP attempt (default 60s).
	RequestTimeout time.Duration
	// PollInterval is how often state is re-read while waiting (default 2s).
	PollInterval time.Duration
	// HTTPClient replaces the built transport (tests).
	HTTPClient *http.Client
}

// RetryPolicy bounds retries of 429, 503 and dropped connections.
type RetryPolicy struct {
	MaxAttempts int           // total attempts including the first (default 4)
	BaseDelay   time.Duration // first backoff ceiling (default 250ms)
	MaxDelay    time.Duration // backoff ceiling and Retry-After cap (default 5s)
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = 4
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = 250 * time.Millisecond
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = 5 * time.Second
	}
	return p
}

// backoff is "full jitter": a random delay below an exponentially growing ceiling.
func (p RetryPolicy) backoff(attempt int) time.Duration {
	ceiling := p.BaseDelay << min(attempt, 16)
	if ceiling <= 0 || ceiling > p.MaxDelay {
		ceiling = p.MaxDelay
	}
	return time.Duration(rand.Int64N(int64(ceiling) + 1))
}

// Client is an authenticated connection to one BMC. It implements gofish's
// schemas.Client so gofish's typed objects work over it. A Client is bound
// to a context (WithContext returns a view with another) and is safe for
// concurrent use.
type Client struct {
	ctx context.Context
	s   *shared
}

type shared struct {
	cfg      Config
	endpoint Endpoint
	http     *http.Client
	log      *slog.Logger
	retry    RetryPolicy
	requests atomic.Int64

	quirks *quirks

	mu         sync.Mutex
	token      string
	sessionURI string
	basic      bool
	closed     bool
}

// Open connects and authenticates. It creates a session at the
// spec-mandated URI without fetching the service root first, and falls back
// to basic auth when the BMC has no SessionService.
func Open(ctx context.Context, cfg Config) (*Client, error) {
	ep, err := ParseEndpoint(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	if cfg.SystemID == "" {
		cfg.SystemID = ep.SystemID
	}
	if cfg.Username == "" {
		return nil, &opError{kind: ErrUnauthorized, msg: "no BMC username given"}
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc, err = newHTTPClient(cfg)
		if err != nil {
			return nil, err
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 2 * time.Second
	}
	c := &Client{ctx: ctx, s: &shared{
		cfg:      cfg,
		endpoint: ep,
		http:     hc,
		log:      log.With("bmc", ep.Host),
		retry:    cfg.Retry.withDefaults(),
		quirks:   quirksFor(ep.BaseURL),
	}}
	if err := c.login(); err != nil {
		return nil, err
	}
	return c, nil
}

func newHTTPClient(cfg Config) (*http.Client, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case cfg.Insecure:
		tlsCfg.InsecureSkipVerify = true //nolint:gosec // explicit user opt-in, documented as lab-only
	case strings.TrimSpace(cfg.CACertificate) != "":
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(cfg.CACertificate)) {
			return nil, &opError{kind: ErrTLS, msg: "ca_certificate holds no PEM certificate"}
		}
		tlsCfg.RootCAs = pool
	}
	timeout := cfg.RequestTimeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       30 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{Transport: tr, Timeout: timeout, CheckRedirect: func(*http.Request, []*http.Request) error {
		// A redirect would replay credentials to wherever it points.
		return http.ErrUseLastResponse
	}}, nil
}

// WithContext returns a view of c whose requests use ctx.
func (c *Client) WithContext(ctx context.Context) *Client {
	return &Client{ctx: ctx, s: c.s}
}

// Endpoint is the parsed address this client talks to.
func (c *Client) Endpoint() Endpoint { return c.s.endpoint }

// Requests counts HTTP requests made so far, retries and login included.
func (c *Client) Requests() int64 { return c.s.requests.Load() }

// UsesBasicAuth reports whether the BMC lacked a SessionService.
func (c *Client) UsesBasicAuth() bool {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return c.s.basic
}

// Close logs the session out. It runs even when c's context is already
// cancelled, bounded by a short timeout of its own, so sessions do not leak
// on the BMC.
func (c *Client) Close() error {
	c.s.mu.Lock()
	uri, closed := c.s.sessionURI, c.s.closed
	c.s.closed = true
	c.s.mu.Unlock()
	if closed || uri == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), 10*time.Second)
	defer cancel()
	resp, err := c.WithContext(ctx).send(http.MethodDelete, uri, nil, nil, sendOpts{noRelogin: true})
	if resp != nil {
		drain(resp)
	}
	c.s.mu.Lock()
	c.s.token, c.s.sessionURI = "", ""
	c.s.mu.Unlock()
	if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrUnauthorized) {
		return fmt.Errorf("logging out of the BMC session: %w", err)
	}
	return nil
}

// login creates a session, discovering the sessions URI or falling back to
// basic auth when the fixed URI is not served.
func (c *Client) login() error {
	err := c.createSession(sessionsPath)
	if err == nil || (!errors.Is(err, ErrNotFound) && !errors.Is(err, ErrUnsupported)) {
		return err
	}
	root, rerr := c.serviceRoot()
	if rerr != nil {
		return rerr
	}
	if root.Links.Sessions.ODataID != "" && strings.TrimRight(root.Links.Sessions.ODataID, "/") != sessionsPath {
		return c.createSession(root.Links.Sessions.ODataID)
	}
	c.s.log.DebugContext(c.ctx, "BMC has no SessionService; using basic auth")
	c.s.mu.Lock()
	c.s.basic = true
	c.s.mu.Unlock()
	// Prove the credentials now so a wrong password fails at open, not later.
	resp, err := c.send(http.MethodGet, systemsPath, nil, nil, sendOpts{noRelogin: true})
	if err != nil {
		return err
	}
	drain(resp)
	return nil
}

type serviceRoot struct {
	Links struct {
		Sessions struct {
			ODataID string `json:"@odata.id"`
		} `json:"Sessions"`
	} `json:"Links"`
	ProtocolFeaturesSupported struct {
		ExpandQuery struct {
			ExpandAll bool `json:"ExpandAll"`
			Levels    bool `json:"Levels"`
			MaxLevels int  `json:"MaxLevels"`
			NoLinks   bool `json:"NoLinks"`
		} `json:"ExpandQuery"`
	} `json:"ProtocolFeaturesSupported"`
}

func (c *Client) serviceRoot() (*serviceRoot, error) {
	resp, err := c.send(http.MethodGet, serviceRootPath, nil, nil, sendOpts{noAuth: true})
	if err != nil {
		return nil, err
	}
	defer drain(resp)
	var root serviceRoot
	if err := json.NewDecoder(resp.Body).Decode(&root); err != nil {
		return nil, fmt.Errorf("decoding the BMC service root: %w", err)
	}
	return &root, nil
}

func (c *Client) createSession(uri string) error {
	body, err := json.Marshal(map[string]string{"UserName": c.s.cfg.Username, "Password": c.s.cfg.Password})
	if err != nil {
		return err
	}
	resp, err := c.send(http.MethodPost, uri, body, nil, sendOpts{noAuth: true, noRelogin: true})
	if err != nil {
		return err
	}
	defer drain(resp)
	token := resp.Header.Get("X-Auth-Token")
	if token == "" {
		return &opError{kind: ErrUnsupported, msg: "the BMC created a session but returned no X-Auth-Token"}
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		var s struct {
			ODataID string `json:"@odata.id"`
		}
		if json.NewDecoder(resp.Body).Decode(&s) == nil {
			loc = s.ODataID
		}
	}
	if u, err := url.Parse(loc); err == nil && u.IsAbs() {
		loc = u.RequestURI()
	}
	c.s.mu.Lock()
	c.s.token, c.s.sessionURI, c.s.basic = token, loc, false
	c.s.mu.Unlock()
	return nil
}

type sendOpts struct {
	noAuth    bool
	noRelogin bool
	// nonIdempotent requests are not replayed after an ambiguous transport
	// failure (the BMC may have acted on them).
	nonIdempotent bool
}

// send performs one logical request: retries on 429/503/dropped
// connections with jittered backoff, one re-login on 401, typed errors.
// The caller closes the response body.
func (c *Client) send(method, path string, body []byte, headers map[string]string, o sendOpts) (*http.Response, error) {
	relogged := false
	for attempt := 0; ; attempt++ {
		resp, err := c.once(method, path, body, headers, o.noAuth)
		if err != nil {
			if ctxErr := c.ctx.Err(); ctxErr != nil {
				return nil, &opError{kind: ErrTimeout, msg: fmt.Sprintf("%s %s", method, pathOnly(path)), err: ctxErr}
			}
			if isTLSError(err) {
				return nil, &opError{kind: ErrTLS, msg: fmt.Sprintf("the certificate of %s is not trusted (set ca_certificate to the BMC's CA, or insecure = true for a lab)", c.s.endpoint.Host), err: err}
			}
			retryable := isDialError(err) || (!o.nonIdempotent && isDropped(err))
			if retryable && attempt+1 < c.s.retry.MaxAttempts {
				if werr := c.wait(c.s.retry.backoff(attempt)); werr != nil {
					return nil, werr
				}
				continue
			}
			return nil, &opError{kind: ErrUnreachable, msg: fmt.Sprintf("cannot reach the BMC at %s", c.s.endpoint.BaseURL), err: scrubURLError(err)}
		}
		switch {
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
			if attempt+1 < c.s.retry.MaxAttempts {
				delay := c.s.retry.backoff(attempt)
				if ra := retryAfter(resp.Header.Get("Retry-After")); ra >= 0 {
					delay = min(ra, c.s.retry.MaxDelay)
				}
				drain(resp)
				c.s.log.DebugContext(c.ctx, "BMC busy; retrying", "method", method, "path", pathOnly(path), "status", resp.StatusCode, "attempt", attempt+1, "delay", delay)
				if werr := c.wait(delay); werr != nil {
					return nil, werr
				}
				continue
			}
		case resp.StatusCode == http.StatusUnauthorized && !o.noAuth && !o.noRelogin && !relogged && c.hasSession():
			// The session expired or was dropped by the BMC: log in again once.
			drain(resp)
			relogged = true
			c.s.log.DebugContext(c.ctx, "BMC session rejected; logging in again")
			if err := c.createSession(c.sessionsURI()); err != nil {
				return nil, err
			}
			attempt--
			continue
		}
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			return resp, nil
		}
		payload, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		drain(resp)
		serr := &StatusError{Method: method, Path: pathOnly(path), Status: resp.StatusCode}
		var body *schemas.Error
		if errors.As(schemas.ConstructError(resp.StatusCode, payload), &body) {
			serr.Body = body
		}
		return nil, serr
	}
}

func (c *Client) hasSession() bool {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return c.s.token != ""
}

func (c *Client) sessionsURI() string {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if i := strings.LastIndex(c.s.sessionURI, "/"); i > 0 {
		return c.s.sessionURI[:i]
	}
	return sessionsPath
}

func (c *Client) once(method, path string, body []byte, headers map[string]string, noAuth bool) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(c.ctx, method, c.s.endpoint.BaseURL+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("OData-Version", "4.0")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		if k != "" {
			req.Header.Set(k, v)
		}
	}
	if !noAuth {
		c.s.mu.Lock()
		token, basic := c.s.token, c.s.basic
		c.s.mu.Unlock()
		switch {
		case token != "":
			req.Header.Set("X-Auth-Token", token)
		case basic:
			req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(c.s.cfg.Username+":"+c.s.cfg.Password)))
		}
	}
	c.s.requests.Add(1)
	start := time.Now()
	resp, err := c.s.http.Do(req)
	if err != nil {
		c.s.log.DebugContext(c.ctx, "BMC request failed", "method", method, "path", pathOnly(path), "error", scrubURLError(err).Error())
		return nil, err
	}
	c.s.log.DebugContext(c.ctx, "BMC request", "method", method, "path", pathOnly(path), "status", resp.StatusCode, "duration", time.Since(start))
	return resp, nil
}

func (c *Client) wait(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-c.ctx.Done():
		return &opError{kind: ErrTimeout, msg: "waiting to retry a BMC request", err: c.ctx.Err()}
	}
}

func retryAfter(v string) time.Duration {
	if v == "" {
		return -1
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return -1
}

func isTLSError(err error) bool {
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var certInvalid x509.CertificateInvalidError
	var verifyErr *tls.CertificateVerificationError
	return errors.As(err, &unknownAuth) || errors.As(err, &hostErr) || errors.As(err, &certInvalid) || errors.As(err, &verifyErr)
}

// isDialError means the request never left: always safe to retry.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// isDropped means the connection died mid-request.
func isDropped(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// scrubURLError drops the URL from net/http errors; it is already in our
// message and a query string could carry data we do not want in logs.
func scrubURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func pathOnly(p string) string {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		return p[:i]
	}
	return p
}

func drain(resp *http.Response) {
	if resp == nil || resp.Body == nil {
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
}

// --- schemas.Client, so gofish's typed objects run over this client ---

var _ schemas.Client = (*Client)(nil)

func (c *Client) GetSettings() schemas.ClientSettings { return schemas.ClientSettings{} }

func (c *Client) Get(url string) (*http.Response, error) { return c.GetWithHeaders(url, nil) }

func (c *Client) GetWithHeaders(url string, h map[string]string) (*http.Response, error) {
	return c.send(http.MethodGet, url, nil, h, sendOpts{})
}

func (c *Client) Post(url string, payload any) (*http.Response, error) {
	return c.PostWithHeaders(url, payload, nil)
}

func (c *Client) PostWithHeaders(url string, payload any, h map[string]string) (*http.Response, error) {
	return c.sendJSON(http.MethodPost, url, payload, h, sendOpts{nonIdempotent: strings.Contains(url, "/Actions/")})
}

func (c *Client) PostMultipart(url string, payload map[string]io.Reader) (*http.Response, error) {
	return c.PostMultipartWithHeaders(url, payload, nil)
}

func (c *Client) PostMultipartWithHeaders(string, map[string]io.Reader, map[string]string) (*http.Response, error) {
	return nil, &opError{kind: ErrUnsupported, msg: "multipart uploads are not used by this provider"}
}

func (c *Client) Patch(url string, payload any) (*http.Response, error) {
	return c.PatchWithHeaders(url, payload, nil)
}

func (c *Client) PatchWithHeaders(url string, payload any, h map[string]string) (*http.Response, error) {
	return c.sendJSON(http.MethodPatch, url, payload, h, sendOpts{})
}

func (c *Client) Put(url string, payload any) (*http.Response, error) {
	return c.PutWithHeaders(url, payload, nil)
}

func (c *Client) PutWithHeaders(url string, payload any, h map[string]string) (*http.Response, error) {
	return c.sendJSON(http.MethodPut, url, payload, h, sendOpts{})
}

func (c *Client) Delete(url string) (*http.Response, error) { return c.DeleteWithHeaders(url, nil) }

func (c *Client) DeleteWithHeaders(url string, h map[string]string) (*http.Response, error) {
	return c.send(http.MethodDelete, url, nil, h, sendOpts{})
}

func (c *Client) sendJSON(method, url string, payload any, h map[string]string, o sendOpts) (*http.Response, error) {
	var body []byte
	if payload != nil {
		var err error
		if body, err = json.Marshal(payload); err != nil {
			return nil, err
		}
	}
	return c.send(method, url, body, h, o)
}
