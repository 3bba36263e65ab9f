package bmcsim

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"time"
)

// Start serves plain HTTP on 127.0.0.1 with a random port until ctx ends and
// returns the base URL (e.g. "http://127.0.0.1:41234").
func (s *Simulator) Start(ctx context.Context) (string, error) {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go func() { _ = s.Serve(ctx, ln) }()
	return "http://" + ln.Addr().String(), nil
}

// StartTLS serves HTTPS on 127.0.0.1 with a random port until ctx ends, using
// a fresh self-signed certificate for 127.0.0.1, ::1 and localhost. It
// returns the base URL and the certificate in PEM form, to be trusted as a
// CA by clients.
func (s *Simulator) StartTLS(ctx context.Context) (string, []byte, error) {
	cert, caPEM, err := SelfSignedCert(24 * time.Hour)
	if err != nil {
		return "", nil, err
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	tln := tls.NewListener(ln, TLSConfig(cert))
	go func() { _ = s.Serve(ctx, tln) }()
	return "https://" + ln.Addr().String(), caPEM, nil
}

// TLSConfig is the server TLS configuration the simulator uses: HTTP/1.1
// only, as BMC web servers speak (and so DropNext can hijack connections).
func TLSConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"},
	}
}

// Serve serves on ln until ctx ends (then it returns nil) or the listener
// fails. The listener is closed on return.
func (s *Simulator) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		// No HTTP/2: BMCs speak HTTP/1.1.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		// TLS handshake failures etc. go to the simulator's logger.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
		}
		// Close (not Shutdown): in-flight requests, such as ones stalled by
		// SetLatency, must not keep the server alive after ctx ends.
		_ = srv.Close()
	}()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) || ctx.Err() != nil {
		return nil
	}
	return err
}

// SelfSignedCert creates an ECDSA P-256 certificate valid for validity that
// covers 127.0.0.1, ::1 and localhost and can act as its own CA. It returns
// the key pair and the certificate PEM.
func SelfSignedCert(validity time.Duration) (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "metal-bmcsim", Organization: []string{"metal-bmcsim"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("bmcsim: create certificate: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return cert, certPEM, nil
}
