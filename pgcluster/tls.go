package pgcluster

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// TLS file names in the cluster directory (next to the superuser's password).
const (
	tlsCertFile = "server.crt"
	tlsKeyFile  = "server.key"
)

// writeTLS writes cfg's certificate and key into the cluster directory,
// readable by the server's user only (PostgreSQL refuses a key that its
// group or others can read), and returns the settings that turn TLS on;
// nothing without a certificate (Start has checked both are given).
func (c *Cluster) writeTLS(cfg Config, cred *syscall.Credential) ([]string, error) {
	if len(cfg.TLSCert) == 0 {
		return nil, nil
	}
	var args []string
	for _, f := range []struct {
		name, setting string
		pem           []byte
	}{{tlsCertFile, "ssl_cert_file", cfg.TLSCert}, {tlsKeyFile, "ssl_key_file", cfg.TLSKey}} {
		path := filepath.Join(c.dataDir, f.name)
		os.Remove(path) // a previous start's: rewritten with this one's
		err := os.WriteFile(path, f.pem, 0o600)
		if err == nil && cred != nil {
			err = os.Chown(path, int(cred.Uid), int(cred.Gid))
		}
		if err != nil {
			return nil, fmt.Errorf("write %s: %w", path, err)
		}
		args = append(args, "-c", f.setting+"="+path)
	}
	return append(args, "-c", "ssl=on"), nil
}
