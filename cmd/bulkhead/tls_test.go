package main

import (
	"context"
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

	"github.com/bulkhead-dev/bulkhead/internal/syncbuf"
)

// selfSigned writes a fresh self-signed certificate for 127.0.0.1 and its
// key (mode 0600) to cert and key, replacing them atomically.
func selfSigned(t *testing.T, cert, key string) *x509.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "bulkhead test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	write := func(path string, b []byte) {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))
	write(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestServeTLS runs the binary with --tls-cert/--tls-key: it serves HTTPS
// with the certificate (plain HTTP is refused), the CLI reaches its
// control plane over TLS, a renewed certificate is served without a
// restart, a broken renewal keeps the last good one, and a key others can
// read stops serve from starting (issue 12, item 7).
func TestServeTLS(t *testing.T) {
	dir := mustDataDir(t)
	certDir := t.TempDir()
	cert, key := filepath.Join(certDir, "tls.crt"), filepath.Join(certDir, "tls.key")
	a := selfSigned(t, cert, key)

	addr := freeAddr(t)
	stderr := &syncbuf.Buffer{}
	cmd := command(context.Background(), dir, nil, "serve", "--addr", addr, "--tls-cert", cert, "--tls-key", key)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })

	// served asks for /readyz trusting only c, and returns the status and
	// the certificate the server presented.
	served := func(c *x509.Certificate) (int, *x509.Certificate, error) {
		pool := x509.NewCertPool()
		pool.AddCert(c)
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		resp, err := hc.Get("https://" + addr + "/readyz")
		if err != nil {
			return 0, nil, err
		}
		resp.Body.Close()
		return resp.StatusCode, resp.TLS.PeerCertificates[0], nil
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if code, got, err := served(a); err == nil && code == 200 && got.Equal(a) {
			break
		}
		select {
		case <-done:
			t.Fatalf("serve exited:\n%s", stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no HTTPS /readyz within 60 s:\n%s", stderr.String())
		}
	}
	if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP answered 200 on the TLS port")
		}
	}

	// The CLI's control plane (serve holds the vector store) over TLS,
	// pinned to the certificate file.
	if r := run(t, dir, nil, "tenant", "create", "acme", "--json"); r.code != 0 || !strings.Contains(r.stdout, `"id"`) {
		t.Fatalf("tenant create through the TLS control plane: %s", r)
	}

	// Renewal: the new pair is served without a restart.
	b := selfSigned(t, cert, key)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if code, got, err := served(b); err == nil && code == 200 && got.Equal(b) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the renewed certificate was not served within 20 s:\n%s", stderr.String())
		}
	}
	if _, _, err := served(a); err == nil {
		t.Error("a client trusting only the old certificate still connects")
	}

	// A broken renewal: logged, and the last good pair stays.
	if err := os.WriteFile(cert, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(stderr.String(), "TLS certificate not reloaded"); time.Sleep(100 * time.Millisecond) {
		served(b) // a handshake triggers the check
		if time.Now().After(deadline) {
			t.Fatalf("the broken certificate was not reported within 20 s:\n%s", stderr.String())
		}
	}
	if code, got, err := served(b); err != nil || code != 200 || !got.Equal(b) {
		t.Fatalf("after a broken renewal: %d, %v", code, err)
	}

	// A key others can read: serve refuses to start.
	selfSigned(t, cert, key)
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	r := run(t, mustDataDir(t), nil, "serve", "--addr", freeAddr(t), "--tls-cert", cert, "--tls-key", key)
	if r.code == 0 || !strings.Contains(r.stderr, "chmod 600") {
		t.Errorf("serve with a 0644 key: %s, want a refusal naming chmod 600", r)
	}
}
