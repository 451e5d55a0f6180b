package main

// Security headers on API and UI answers (CSP without unsafe-inline and
// with frame-ancestors, nosniff, referrer policy), HSTS only over TLS (the
// real binary with a self-signed certificate made here), and CORS closed: a
// cross-origin preflight gets no Access-Control-Allow-Origin.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/internal/dbtest"
)

func checkSecurityHeaders(t *testing.T, what string, h http.Header, tlsOn bool) {
	t.Helper()
	csp := h.Get("Content-Security-Policy")
	if csp == "" || strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") || !strings.Contains(csp, "frame-ancestors") {
		t.Errorf("%s: CSP %q", what, csp)
	}
	if h.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("%s: X-Content-Type-Options %q", what, h.Get("X-Content-Type-Options"))
	}
	if h.Get("Referrer-Policy") == "" {
		t.Errorf("%s: no Referrer-Policy", what)
	}
	if hsts := h.Get("Strict-Transport-Security"); (hsts != "") != tlsOn {
		t.Errorf("%s: HSTS %q with TLS %v", what, hsts, tlsOn)
	}
	if h.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("%s: CORS header %q", what, h.Get("Access-Control-Allow-Origin"))
	}
}

func TestSecurityHeadersAndClosedCORS(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	doc := ts.as(t, auth.RoleDoctor, facCounty)
	for _, path := range []string{"/api/v1/facilities", "/api/v1/nothing", "/healthz", "/", "/login", "/api/openapi.json"} {
		for _, tok := range []token{doc, {}} {
			resp, _ := ts.raw(t, "GET", path, tok, "", nil)
			checkSecurityHeaders(t, "GET "+path, resp.Header, false)
		}
	}
	for _, path := range []string{"/api/v1/auth/login", "/api/v1/referrals", "/api/v1/bills/1/settle"} {
		req, _ := http.NewRequest("OPTIONS", ts.URL+path, nil)
		req.Header.Set("Origin", "https://evil.example")
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
		resp, err := ts.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for k := range resp.Header {
			if strings.HasPrefix(strings.ToLower(k), "access-control-") {
				t.Errorf("preflight %s: %s: %s", path, k, resp.Header.Get(k))
			}
		}
	}
}

// selfSigned writes a certificate and key for 127.0.0.1 into dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "qinba-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestTLSServesHSTS(t *testing.T) {
	t.Parallel()
	bin := qinbaBinary(t)
	url := dbtest.NewURL(t)
	certFile, keyFile, roots := selfSigned(t, t.TempDir())
	srv := startServerProc(t, bin, nil, "serve", "--addr", "127.0.0.1:0", "--database-url", url, "--tls-cert", certFile, "--tls-key", keyFile)
	if !strings.HasPrefix(srv.Base, "https://") {
		t.Fatalf("base %q", srv.Base)
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	for _, path := range []string{"/healthz", "/api/v1/facilities", "/"} {
		resp, err := c.Get(srv.Base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		checkSecurityHeaders(t, "TLS GET "+path, resp.Header, true)
	}
}
