package daemon

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Files of the generated certificate in state_dir.
const (
	selfSignedCert = "api-tls.crt"
	selfSignedKey  = "api-tls.key"
)

// loadCertificate returns the configured certificate, or the self-signed
// one kept in stateDir (generated on first start).
func loadCertificate(c *Config, hosts []string) (tls.Certificate, bool, error) {
	if c.TLS.Cert != "" {
		cert, err := tls.LoadX509KeyPair(c.TLS.Cert, c.TLS.Key)
		if err != nil {
			return cert, false, fmt.Errorf("loading tls.cert/tls.key: %w", err)
		}
		return cert, false, nil
	}
	certPath, keyPath := filepath.Join(c.StateDir, selfSignedCert), filepath.Join(c.StateDir, selfSignedKey)
	if cert, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		return cert, true, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return cert, true, fmt.Errorf("loading the generated certificate (delete %s and %s to make a new one): %w", certPath, keyPath, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, true, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "metal boot service"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range append([]string{"localhost", "127.0.0.1", "::1"}, hosts...) {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, true, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, true, err
	}
	if err := os.MkdirAll(c.StateDir, 0o700); err != nil {
		return tls.Certificate{}, true, err
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return tls.Certificate{}, true, err
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return tls.Certificate{}, true, err
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	return cert, true, err
}
