package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// certReloader serves the certificate pair in certFile and keyFile and
// picks up a renewed pair without a restart: at most once a second, on a
// handshake, it compares both files' size and modification time (symlink
// swaps, as Kubernetes secret volumes do, included) and loads the new
// pair. A pair that fails to load is logged and the last good one kept.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string
	checked time.Time
}

// newCertReloader loads the pair once; a missing, unreadable or mismatched
// pair, or a key file other users can read, is an error.
func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	stamp, err := r.stat()
	if err != nil {
		return nil, err
	}
	if err := r.load(stamp); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *certReloader) stat() (string, error) {
	c, err := os.Stat(r.certFile)
	if err != nil {
		return "", fmt.Errorf("TLS certificate: %w", err)
	}
	k, err := os.Stat(r.keyFile)
	if err != nil {
		return "", fmt.Errorf("TLS key: %w", err)
	}
	if k.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("TLS key %s is accessible to others (mode %v): chmod 600 %s", r.keyFile, k.Mode().Perm(), r.keyFile)
	}
	return fmt.Sprint(c.Size(), c.ModTime().UnixNano(), k.Size(), k.ModTime().UnixNano()), nil
}

func (r *certReloader) load(stamp string) error {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("TLS certificate %s and key %s: %w", r.certFile, r.keyFile, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("TLS certificate %s: %w", r.certFile, err)
		}
	}
	r.cert, r.stamp = &cert, stamp
	return nil
}

// getCertificate is tls.Config.GetCertificate.
func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) < time.Second {
		return r.cert, nil
	}
	r.checked = time.Now()
	stamp, err := r.stat()
	if err == nil && stamp != r.stamp {
		err = r.load(stamp)
		if err == nil {
			r.log.Info("TLS certificate reloaded", "cert", r.certFile, "not_after", r.cert.Leaf.NotAfter)
		}
	}
	if err != nil {
		r.log.Error("TLS certificate not reloaded; serving the last good one", "err", err)
	}
	return r.cert, nil
}

// tlsConfig is the server's TLS configuration: TLS 1.2 at least, Go's
// default cipher suites, the reloading certificate.
func (r *certReloader) tlsConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.getCertificate}
}

// pinnedTLS is the CLI's client configuration for the local control plane
// of a server that serves TLS: it trusts exactly the certificate currently
// in certFile (the server's own), whatever names it carries, so a
// self-signed certificate or one issued for the public name works on the
// loopback address too.
func pinnedTLS(certFile string) (*tls.Config, error) {
	pair, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("the server's TLS certificate: %w", err)
	}
	want, err := firstCertificate(pair)
	if err != nil {
		return nil, fmt.Errorf("the server's TLS certificate %s: %w", certFile, err)
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verification is the pin below, not a CA and a name.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || !cs.PeerCertificates[0].Equal(want) {
				return errors.New("the server presented another certificate than its --tls-cert file holds")
			}
			return nil
		},
	}, nil
}

func firstCertificate(pemBytes []byte) (*x509.Certificate, error) {
	for {
		var block *pem.Block
		block, pemBytes = pem.Decode(pemBytes)
		if block == nil {
			return nil, errors.New("no PEM certificate")
		}
		if block.Type == "CERTIFICATE" {
			return x509.ParseCertificate(block.Bytes)
		}
	}
}

// absPath is p made absolute (the CLI reading serve.json may run in
// another directory); p itself if that fails.
func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
