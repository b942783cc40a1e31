// Package pgbouncer runs a real PgBouncer (1.18 or later) in transaction
// mode in front of a PostgreSQL cluster, for tests and benchmarks: the one
// way bulkhead's tests, `bulkhead bench soak` and the fault benchmarks
// start it. The process runs as the postgres user when this process is
// root (PgBouncer refuses root), dies with the thread that started it, and
// can be killed and started again on the same port.
package pgbouncer

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Config says what PgBouncer fronts and whom it lets in.
type Config struct {
	// Host and Port reach the cluster (Host may be a socket directory).
	Host string
	Port int
	// Database is the one database served, or "*" for every database
	// (PgBouncer's fallback entry).
	Database string
	// Users maps each role allowed to connect to its password.
	Users map[string]string
	// PoolSize is the server connections per database and user.
	PoolSize int
	// MaxClientConn bounds client connections (default 1000).
	MaxClientConn int
}

// Bouncer is a running (or killed) PgBouncer.
type Bouncer struct {
	bin, dir string
	port     int
	attr     *syscall.SysProcAttr
	cmd      *exec.Cmd
	done     chan struct{}
}

// Binary returns the path of the pgbouncer binary, or an error saying how
// to install it.
func Binary() (string, error) {
	if bin, err := exec.LookPath("pgbouncer"); err == nil {
		return bin, nil
	}
	if _, err := os.Stat("/usr/sbin/pgbouncer"); err == nil {
		return "/usr/sbin/pgbouncer", nil
	}
	return "", errors.New("pgbouncer not found: install it with apt-get install -y pgbouncer (scripts/deps.sh does)")
}

// Start writes the configuration into a new temporary directory, starts
// PgBouncer and waits until it accepts connections. It fails, never skips,
// without a pgbouncer binary.
func Start(cfg Config) (*Bouncer, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	if cfg.MaxClientConn == 0 {
		cfg.MaxClientConn = 1000
	}
	dir, err := os.MkdirTemp("", "bhbouncer")
	if err != nil {
		return nil, err
	}
	b := &Bouncer{bin: bin, dir: dir, attr: &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}}
	if err := b.configure(cfg); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := b.start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return b, nil
}

// configure picks a free port and writes pgbouncer.ini and userlist.txt.
func (b *Bouncer) configure(cfg Config) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	b.port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	target := fmt.Sprintf("host=%s port=%d", cfg.Host, cfg.Port)
	if cfg.Database != "*" {
		target += " dbname=" + cfg.Database
	}
	ini := fmt.Sprintf(`[databases]
%[1]s = %[2]s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %[3]d
unix_socket_dir =
auth_type = scram-sha-256
auth_file = %[4]s/userlist.txt
pool_mode = transaction
default_pool_size = %[5]d
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = %[6]d
server_reset_query =
logfile = %[4]s/pgbouncer.log
pidfile = %[4]s/pgbouncer.pid
`, cfg.Database, target, b.port, b.dir, cfg.PoolSize, cfg.MaxClientConn)
	roles := make([]string, 0, len(cfg.Users))
	for r := range cfg.Users {
		roles = append(roles, r)
	}
	sort.Strings(roles)
	var userlist strings.Builder
	for _, r := range roles {
		fmt.Fprintf(&userlist, "%q %q\n", r, cfg.Users[r])
	}
	for f, body := range map[string]string{"pgbouncer.ini": ini, "userlist.txt": userlist.String()} {
		if err := os.WriteFile(filepath.Join(b.dir, f), []byte(body), 0o600); err != nil {
			return err
		}
	}
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("running as root needs the postgres user to run pgbouncer: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	b.attr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	if err := os.Chmod(b.dir, 0o755); err != nil {
		return err
	}
	for _, f := range []string{"", "pgbouncer.ini", "userlist.txt"} {
		if err := os.Chown(filepath.Join(b.dir, f), uid, gid); err != nil {
			return err
		}
	}
	return nil
}

// Port is the TCP port PgBouncer listens on (127.0.0.1).
func (b *Bouncer) Port() int { return b.port }

// DSN is role's connection string for database db through PgBouncer.
func (b *Bouncer) DSN(role, password, db string) string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", role, password, b.port, db)
}

// Version is the first line of `pgbouncer --version`, or "PgBouncer".
func (b *Bouncer) Version() string {
	out, err := exec.Command(b.bin, "--version").Output()
	if err != nil {
		return "PgBouncer"
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}

// start runs PgBouncer and waits until it accepts connections.
func (b *Bouncer) start() error {
	cmd := exec.Command(b.bin, filepath.Join(b.dir, "pgbouncer.ini"))
	cmd.SysProcAttr = b.attr
	started := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread() // Pdeathsig follows the starting thread
		if err := cmd.Start(); err != nil {
			started <- err
			close(done)
			return
		}
		started <- nil
		cmd.Wait()
		close(done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start pgbouncer: %w", err)
	}
	b.cmd, b.done = cmd, done
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", b.port), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(b.dir, "pgbouncer.log"))
			b.cmd = nil
			return fmt.Errorf("pgbouncer exited: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			b.Kill()
			return errors.New("pgbouncer did not start listening")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill sends SIGKILL and waits for the process to end: every client and
// server connection it held drops at once.
func (b *Bouncer) Kill() {
	if b.cmd == nil {
		return
	}
	b.cmd.Process.Kill()
	<-b.done
	b.cmd = nil
	os.Remove(filepath.Join(b.dir, "pgbouncer.pid"))
}

// Restart starts PgBouncer again, on the same port, after Kill.
func (b *Bouncer) Restart() error { return b.start() }

// Stop ends PgBouncer (SIGTERM, then SIGKILL after 5 s) and removes its
// directory.
func (b *Bouncer) Stop() {
	if b.cmd != nil {
		b.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-b.done:
		case <-time.After(5 * time.Second):
			b.cmd.Process.Kill()
			<-b.done
		}
		b.cmd = nil
	}
	os.RemoveAll(b.dir)
}
