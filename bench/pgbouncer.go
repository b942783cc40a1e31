package bench

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bulkhead-dev/bulkhead/pgcluster"
	"github.com/bulkhead-dev/bulkhead/postgres"
)

// bouncer is a real PgBouncer (1.18+) in transaction mode in front of one
// database of a private cluster, knowing the runtime role. It can be
// killed and started again on the same port, for fault tests. (The test
// helper in internal/testdb starts the same configuration but can't be
// used outside tests, nor restarted.)
type bouncer struct {
	bin, dir string
	port     int
	attr     *syscall.SysProcAttr
	cmd      *exec.Cmd
	done     chan struct{}
}

// startBouncer writes the configuration into a new temporary directory and
// starts PgBouncer with a server pool of poolSize for database db. It
// fails, never skips, without a pgbouncer binary.
func startBouncer(cl *pgcluster.Cluster, creds postgres.Credentials, db string, poolSize int) (*bouncer, error) {
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/pgbouncer"); serr != nil {
			return nil, errors.New("pgbouncer not found: install it with apt-get install -y pgbouncer (scripts/deps.sh does)")
		}
		bin = "/usr/sbin/pgbouncer"
	}
	dir, err := os.MkdirTemp("", "bhsoak")
	if err != nil {
		return nil, err
	}
	b := &bouncer{bin: bin, dir: dir, attr: &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	b.port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	ini := fmt.Sprintf(`[databases]
%[1]s = host=%[2]s port=%[3]d dbname=%[1]s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %[4]d
unix_socket_dir =
auth_type = scram-sha-256
auth_file = %[5]s/userlist.txt
pool_mode = transaction
default_pool_size = %[6]d
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 1000
server_reset_query =
logfile = %[5]s/pgbouncer.log
pidfile = %[5]s/pgbouncer.pid
`, db, cl.SocketDir(), cl.Port(), b.port, dir, poolSize)
	userlist := fmt.Sprintf("%q %q\n", postgres.Runtime, creds.Runtime)
	for f, body := range map[string]string{"pgbouncer.ini": ini, "userlist.txt": userlist} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(body), 0o600); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	if os.Geteuid() == 0 { // pgbouncer refuses to run as root
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("running as root needs the postgres user to run pgbouncer: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		b.attr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		os.Chmod(dir, 0o755)
		for _, f := range []string{"", "pgbouncer.ini", "userlist.txt"} {
			os.Chown(filepath.Join(dir, f), uid, gid)
		}
	}
	if err := b.start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return b, nil
}

// DSN is the runtime role's DSN through PgBouncer.
func (b *bouncer) DSN(password, db string) string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", postgres.Runtime, password, b.port, db)
}

// start runs PgBouncer and waits until it accepts connections.
func (b *bouncer) start() error {
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
			return fmt.Errorf("pgbouncer exited: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			b.kill()
			return errors.New("pgbouncer did not start listening")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill sends SIGKILL and waits for the process to end: every client and
// server connection it held drops at once.
func (b *bouncer) kill() {
	if b.cmd == nil {
		return
	}
	b.cmd.Process.Kill()
	<-b.done
	b.cmd = nil
	os.Remove(filepath.Join(b.dir, "pgbouncer.pid"))
}

// restart starts PgBouncer again on the same port after kill.
func (b *bouncer) restart() error { return b.start() }

// stop ends PgBouncer (SIGTERM, then SIGKILL) and removes its directory.
func (b *bouncer) stop() {
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

// bouncerVersion is the first line of `pgbouncer --version`, or "PgBouncer".
func bouncerVersion(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "PgBouncer"
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}
