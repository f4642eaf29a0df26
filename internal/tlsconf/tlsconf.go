// Package tlsconf builds the TLS client configurations shadowcube dials
// with: to NATS (internal/natsx) and from the tap to its upstream
// (publisher). One function, so both verify servers the same way.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// Files names the PEM files of a client configuration. All are optional:
// without CA the system roots verify the server; Cert and Key, given
// together, present a client certificate (mutual TLS).
type Files struct {
	CA   string // CA bundle that verifies the server
	Cert string // client certificate
	Key  string // client key
}

// Client returns a TLS 1.2+ client configuration from f. Errors name the file
// at fault.
func Client(f Files) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, fmt.Errorf("CA %s: %w", f.CA, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA %s: no PEM certificate found", f.CA)
		}
		cfg.RootCAs = pool
	}
	if f.Cert != "" || f.Key != "" {
		cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("client certificate %q / key %q: %w", f.Cert, f.Key, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
