package testdb

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
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead/postgres"
)

// PgBouncerEnv names the environment variable that runs a test package's
// servers through PgBouncer: when it is "1", Main starts a real PgBouncer
// 1.18+ in transaction mode in front of the package's cluster, and every
// DB that New and Database.Open return connects through it (runtime and
// maintenance roles) with pgx's "exec" query mode, as the README advises
// for PgBouncer before 1.21. Migrations, superuser and role-specific
// connections (AppDSN, OwnerDSN...) stay direct. CI runs the HTTP suite
// both ways.
const PgBouncerEnv = "BULKHEAD_TEST_PGBOUNCER"

// bouncerPort is the package-wide PgBouncer's port (0: not started).
var bouncerPort int

// ThroughPgBouncer reports whether this test binary's DBs go through
// PgBouncer (see PgBouncerEnv).
func ThroughPgBouncer() bool { return bouncerPort != 0 }

// PgBouncer starts a real PgBouncer in transaction mode in front of the
// package's cluster, for database name, with a server pool of poolSize,
// and returns the runtime role's DSN through it. It is stopped when t ends.
// The test fails (never skips) if PgBouncer is not installed.
func PgBouncer(t testing.TB, name string, poolSize int) string {
	t.Helper()
	port, stop, err := startPgBouncer(name, poolSize)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return bouncerDSN(port, postgres.Runtime, creds.Runtime, name)
}

func bouncerDSN(port int, role, password, db string) string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", role, password, port, db)
}

// startPgBouncer starts PgBouncer for database name ("*": every database,
// PgBouncer's fallback entry), knowing the runtime and maintenance roles.
// It fails, never skips, without a pgbouncer binary.
func startPgBouncer(name string, poolSize int) (port int, stop func(), err error) {
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/pgbouncer"); serr != nil {
			return 0, nil, errors.New("pgbouncer not found: install it with apt-get install -y pgbouncer (make test and scripts/deps.sh do)")
		}
		bin = "/usr/sbin/pgbouncer"
	}
	dir, err := os.MkdirTemp("", "bhb")
	if err != nil {
		return 0, nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	if port, err = freePort(); err != nil {
		cleanup()
		return 0, nil, err
	}
	target := fmt.Sprintf("host=%s port=%d", cluster.SocketDir(), cluster.Port())
	if name != "*" {
		target += " dbname=" + name
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
max_client_conn = 500
server_reset_query =
logfile = %[4]s/pgbouncer.log
pidfile = %[4]s/pgbouncer.pid
`, name, target, port, dir, poolSize)
	userlist := fmt.Sprintf("%q %q\n%q %q\n", postgres.Runtime, creds.Runtime, postgres.Maintenance, creds.Maintenance)
	for f, body := range map[string]string{"pgbouncer.ini": ini, "userlist.txt": userlist} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(body), 0o600); err != nil {
			cleanup()
			return 0, nil, err
		}
	}
	cmd := exec.Command(bin, filepath.Join(dir, "pgbouncer.ini"))
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() == 0 { // pgbouncer refuses to run as root
		u, err := user.Lookup("postgres")
		if err != nil {
			cleanup()
			return 0, nil, fmt.Errorf("running as root needs the postgres user to run pgbouncer: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		attr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		os.Chmod(dir, 0o755)
		for _, f := range []string{"", "pgbouncer.ini", "userlist.txt"} {
			os.Chown(filepath.Join(dir, f), uid, gid)
		}
	}
	cmd.SysProcAttr = attr
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
		cleanup()
		return 0, nil, fmt.Errorf("start pgbouncer: %w", err)
	}
	stop = func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		cleanup()
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return port, stop, nil
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
			cleanup()
			return 0, nil, fmt.Errorf("pgbouncer exited: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			stop()
			return 0, nil, errors.New("pgbouncer did not start listening")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
