package postgres

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// Credentials are the passwords of bulkhead's login roles. They are
// generated at random on first use and kept in a 0600 file; they never
// appear in logs (String redacts).
type Credentials struct {
	Owner       string `json:"owner"`
	Runtime     string `json:"runtime"`
	Maintenance string `json:"maintenance"`
	KeyService  string `json:"key_service"`
}

// String redacts the passwords.
func (Credentials) String() string { return "Credentials{redacted}" }

// GoString redacts the passwords.
func (c Credentials) GoString() string { return c.String() }

// LoadOrCreateCredentials reads the credentials file at path, creating it
// with fresh random passwords (mode 0600) if it does not exist. A file that
// others can read is refused.
func LoadOrCreateCredentials(path string) (Credentials, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		c := Credentials{Owner: rand.Text(), Runtime: rand.Text(), Maintenance: rand.Text(), KeyService: rand.Text()}
		b, _ := json.MarshalIndent(c, "", "  ")
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return Credentials{}, fmt.Errorf("create credentials file %s: %w", path, err)
		}
		if _, err := f.Write(b); err != nil {
			f.Close()
			return Credentials{}, fmt.Errorf("write credentials file %s: %w", path, err)
		}
		return c, f.Close()
	}
	if err != nil {
		return Credentials{}, fmt.Errorf("read credentials file %s: %w", path, err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return Credentials{}, fmt.Errorf("credentials file %s is readable by others (mode %v): chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	var c Credentials
	if err := json.Unmarshal(b, &c); err != nil || c.Owner == "" || c.Runtime == "" || c.Maintenance == "" {
		return Credentials{}, fmt.Errorf("credentials file %s is malformed: remove it to generate new passwords (then run bulkhead migrate up)", path)
	}
	if c.KeyService == "" { // a file from before the key service existed
		c.KeyService = rand.Text()
		b, _ := json.MarshalIndent(c, "", "  ")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return Credentials{}, fmt.Errorf("update credentials file %s: %w", path, err)
		}
	}
	return c, nil
}
