package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writePEM writes a fresh self-signed certificate (usable as CA, server and
// client certificate for 127.0.0.1) and its key; it returns both paths and
// the certificate.
func writePEM(t *testing.T, dir, name string) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, DNSNames: []string{"localhost"}}
	tmpl.IPAddresses = append(tmpl.IPAddresses, []byte{127, 0, 0, 1})
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ = x509.ParseCertificate(der)
	return certFile, keyFile, cert
}

// TestClientMutualTLS: a configuration from Client verifies a server signed
// by the CA file and presents the client certificate a server requires;
// without the CA the server is refused for its certificate.
func TestClientMutualTLS(t *testing.T) {
	dir := t.TempDir()
	srvCert, srvKey, _ := writePEM(t, dir, "server")
	cliCert, cliKey, cli := writePEM(t, dir, "client")
	pair, err := tls.LoadX509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	clients := x509.NewCertPool()
	clients.AddCert(cli)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clients}
	srv.StartTLS()
	defer srv.Close()
	get := func(f Files) (string, error) {
		cfg, err := Client(f)
		if err != nil {
			t.Fatal(err)
		}
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: time.Minute}
		defer c.CloseIdleConnections()
		resp, err := c.Get(srv.URL)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if got, err := get(Files{CA: srvCert, Cert: cliCert, Key: cliKey}); err != nil || got != "client" {
		t.Fatalf("mutual TLS: got %q, %v; want the server to see the client certificate", got, err)
	}
	if _, err := get(Files{Cert: cliCert, Key: cliKey}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("server outside the system roots accepted without its CA: %v", err)
	}
}

// TestClientErrorsNameTheFile: each bad input is refused with the file named.
func TestClientErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	cert, _, _ := writePEM(t, dir, "c")
	for _, c := range []struct {
		f    Files
		want string
	}{
		{Files{CA: filepath.Join(dir, "missing.pem")}, "CA " + filepath.Join(dir, "missing.pem")},
		{Files{CA: notPEM}, "CA " + notPEM + ": no PEM certificate found"},
		{Files{Cert: cert}, `client certificate "` + cert + `" / key ""`},
	} {
		if _, err := Client(c.f); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Client(%+v) = %v, want an error containing %q", c.f, err, c.want)
		}
	}
}
