package pgcluster

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Superuser is the name of the cluster's bootstrap superuser.
const Superuser = "postgres"

// defaultPort names the Unix socket (.s.PGSQL.5432) when no TCP port is asked for.
const defaultPort = 5432

// Config says where and how to run a cluster.
type Config struct {
	// DataDir holds everything: the cluster in DataDir/pg, its log in
	// DataDir/postgres.log and the superuser password in DataDir/superuser.password.
	DataDir string
	// Port, when not 0, makes postgres also listen on 127.0.0.1:Port.
	Port int
	// BinDir forces a PostgreSQL bin directory; empty means FindBinaries.
	BinDir string
	// Ephemeral trades durability for speed (fsync off): for throwaway test clusters.
	Ephemeral bool
	// Detach leaves the cluster running after this process exits (bulkhead db start).
	Detach bool
	// Settings are extra server settings (name -> value), e.g. shared_buffers.
	Settings map[string]string
	// TLSCert and TLSKey (PEM), when set, turn TLS on for TCP connections
	// (Port): they are written into DataDir, readable by the server's user
	// only. Unix-socket connections never use TLS. A cluster found running
	// keeps the TLS it was started with.
	TLSCert, TLSKey []byte
	// RunAs is the OS user that runs PostgreSQL when this process is root
	// (default "postgres"); PostgreSQL refuses to run as root.
	RunAs string
	// Logger receives progress messages; nil discards them.
	Logger *slog.Logger
}

// Cluster is a running PostgreSQL cluster. Its methods are safe for
// concurrent use; Stop may be called more than once.
type Cluster struct {
	bin      Binaries
	dataDir  string
	pgdata   string
	sockDir  string
	port     int
	password string
	cfg      Config // what Start was given: a supervised restart starts the same way
	log      *slog.Logger

	mu      sync.Mutex    // guards the fields below, which a supervised restart changes
	pid     int           // the postmaster's
	owned   bool          // this process started it and must stop it
	done    chan struct{} // closed when an owned postgres exits
	exitErr error         // cmd.Wait's result once done is closed
	sup     *supervisor   // nil unless Supervise runs
}

// Start returns a running cluster on cfg.DataDir: it reuses one already
// running there (and will not stop it), or initialises the data dir if
// needed and starts postgres. On any failure nothing is left running.
// Errors name the cause and the fix: ErrNoBinaries, a data dir of another
// major version, a data dir that is not writable, a port in use.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if (len(cfg.TLSCert) == 0) != (len(cfg.TLSKey) == 0) {
		return nil, errors.New("TLS needs both a certificate and its key")
	}
	c, err := prepare(cfg, true)
	if err != nil {
		return nil, err
	}
	c.cfg = cfg
	// Two processes starting the same data dir at once take turns: the
	// second finds the first's cluster running and reuses it.
	unlock, err := lockDir(ctx, c.dataDir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if pid, ok := c.runningPID(); ok {
		c.pid = pid
		if err := c.waitReady(ctx, nil, startLimit); err != nil {
			return nil, err
		}
		if cfg.Port != 0 && cfg.Port != c.port {
			return nil, fmt.Errorf("the PostgreSQL already running on %s listens on port %d, not the requested %d: stop it first (bulkhead db stop) or drop --pg-port", c.dataDir, c.port, cfg.Port)
		}
		c.log.Info("reusing running PostgreSQL", "data_dir", c.dataDir, "pid", c.pid)
		return c, nil
	}
	if err := checkPort(cfg.Port); err != nil { // before initdb: fail fast, leave nothing behind
		return nil, err
	}
	if err := c.initdb(ctx, cfg.Ephemeral); err != nil {
		return nil, err
	}
	if err := c.readPassword(); err != nil {
		return nil, err
	}
	if err := c.start(ctx, cfg, startLimit); err != nil {
		return nil, err
	}
	return c, nil
}

// Attach returns the cluster running on cfg.DataDir without starting one.
// It returns ErrNotRunning if none is.
func Attach(cfg Config) (*Cluster, error) {
	c, err := Inspect(cfg)
	if err != nil {
		return nil, err
	}
	if !c.Running() {
		return nil, fmt.Errorf("%w on %s (start it with: bulkhead db start)", ErrNotRunning, c.dataDir)
	}
	return c, c.waitReady(context.Background(), nil, startLimit)
}

// Inspect describes the cluster on cfg.DataDir, running or not, without
// starting, initialising or creating anything.
func Inspect(cfg Config) (*Cluster, error) {
	c, err := prepare(cfg, false)
	if err != nil {
		return nil, err
	}
	if pid, ok := c.runningPID(); ok {
		c.pid = pid
	}
	return c, nil
}

// Running reports whether a postgres runs on the data dir now.
func (c *Cluster) Running() bool {
	_, _, _, ok := c.livePostmaster()
	return ok
}

// Initialised reports whether the data dir holds a cluster.
func (c *Cluster) Initialised() bool {
	_, err := os.Stat(filepath.Join(c.pgdata, "PG_VERSION"))
	return err == nil
}

// ErrNotRunning means no cluster runs on the data dir.
var ErrNotRunning = errors.New("no PostgreSQL is running")

func prepare(cfg Config, create bool) (*Cluster, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("pgcluster: empty data dir")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bin, err := FindBinaries(cfg.BinDir)
	if err != nil {
		return nil, err
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
	}
	if create {
		if err := ensureWritable(dataDir); err != nil {
			return nil, err
		}
	}
	c := &Cluster{
		bin:     bin,
		dataDir: dataDir,
		pgdata:  filepath.Join(dataDir, "pg"),
		port:    cfg.Port,
		log:     log,
	}
	if c.port == 0 {
		c.port = defaultPort
	}
	c.sockDir = socketDir(c.pgdata)
	if err := c.checkVersion(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(c.pgdata, "PG_VERSION")); err == nil {
		if err := c.readPassword(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func ensureWritable(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("data dir %s is not usable: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".write-test-*")
	if err != nil {
		return fmt.Errorf("data dir %s is not writable: %w", dir, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// socketDir keeps the socket path under the kernel's ~107-byte limit: the
// cluster dir when it is short enough, else a short directory derived from it.
func socketDir(pgdata string) string {
	if len(pgdata)+len("/.s.PGSQL.65535.lock") < 100 {
		return pgdata
	}
	sum := sha256.Sum256([]byte(pgdata))
	return filepath.Join(os.TempDir(), "bulkhead-"+hex.EncodeToString(sum[:8]))
}

func (c *Cluster) checkVersion() error {
	b, err := os.ReadFile(filepath.Join(c.pgdata, "PG_VERSION"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", filepath.Join(c.pgdata, "PG_VERSION"), err)
	}
	v := strings.TrimSpace(string(b))
	if v != strconv.Itoa(c.bin.Major) {
		return fmt.Errorf("data dir %s was created by PostgreSQL %s but the installed server is PostgreSQL %d (%s): "+
			"use a different --data-dir, install PostgreSQL %s, or upgrade the cluster with pg_upgrade", c.dataDir, v, c.bin.Major, c.bin.Dir, v)
	}
	return nil
}

// runAs returns the credential to run PostgreSQL with: nil unless root.
func runAs(name string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	if name == "" {
		name = "postgres"
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL must run as an unprivileged user, but user %q does not exist: "+
			"install PostgreSQL (apt-get install -y postgresql creates it) or set the user to run it as: %w", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func (c *Cluster) initdb(ctx context.Context, ephemeral bool) error {
	if _, err := os.Stat(filepath.Join(c.pgdata, "PG_VERSION")); err == nil {
		return nil
	}
	if entries, err := os.ReadDir(c.pgdata); err == nil && len(entries) > 0 {
		return fmt.Errorf("%s exists, is not empty and is not a PostgreSQL data dir: move it away or choose another --data-dir", c.pgdata)
	}
	cred, err := runAs("")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.pgdata, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", c.pgdata, err)
	}
	password := rand.Text()
	pwFile := filepath.Join(c.dataDir, ".initdb-pw")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", pwFile, err)
	}
	defer os.Remove(pwFile)
	if cred != nil {
		for _, p := range []string{c.pgdata, pwFile} {
			if err := os.Chown(p, int(cred.Uid), int(cred.Gid)); err != nil {
				return fmt.Errorf("chown %s: %w", p, err)
			}
		}
		if err := reachable(c.pgdata, cred); err != nil {
			return err
		}
	}
	args := []string{"-D", c.pgdata, "-U", Superuser, "--auth=scram-sha-256", "--pwfile=" + pwFile,
		"--encoding=UTF8", "--locale=C", "--no-instructions"}
	if ephemeral {
		args = append(args, "--no-sync")
	}
	c.log.Info("initialising PostgreSQL cluster", "data_dir", c.pgdata, "version", c.bin.Major)
	cmd := exec.CommandContext(ctx, c.bin.Path("initdb"), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	cmd.Dir = "/"
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(c.pgdata)
		if ctx.Err() != nil {
			// Killed on purpose: its output (cut short, with the errors of
			// the interrupted bootstrap backend) would only mislead.
			return fmt.Errorf("initdb %s interrupted: %w", c.pgdata, ctx.Err())
		}
		return fmt.Errorf("initdb %s: %w\n%s", c.pgdata, err, out)
	}
	// The password file is written last: its presence marks a complete initdb.
	if err := os.WriteFile(c.passwordFile(), []byte(password), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", c.passwordFile(), err)
	}
	return nil
}

// reachable checks that the unprivileged user can traverse every parent of dir.
func reachable(dir string, cred *syscall.Credential) error {
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		m := fi.Mode().Perm()
		ok := m&0o001 != 0 || (st.Uid == cred.Uid && m&0o100 != 0) || (st.Gid == cred.Gid && m&0o010 != 0)
		if !ok {
			return fmt.Errorf("PostgreSQL runs as uid %d, which cannot enter %s (mode %v): choose a --data-dir it can reach (e.g. under /var/lib or /tmp) or chmod o+x %s", cred.Uid, d, m, d)
		}
		if d == "/" {
			return nil
		}
	}
}

func (c *Cluster) passwordFile() string { return filepath.Join(c.dataDir, "superuser.password") }

func (c *Cluster) readPassword() error {
	b, err := os.ReadFile(c.passwordFile())
	if err != nil {
		return fmt.Errorf("the superuser password of %s is unreadable (%v): the data dir is incomplete; remove %s to start afresh", c.dataDir, err, c.pgdata)
	}
	if fi, err := os.Stat(c.passwordFile()); err != nil || fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s is accessible to others: chmod 600 %s", c.passwordFile(), c.passwordFile())
	}
	c.password = strings.TrimSpace(string(b))
	return nil
}

// start starts postgres and waits at most limit for it to be ready.
func (c *Cluster) start(ctx context.Context, cfg Config, limit time.Duration) error {
	cred, err := runAs(cfg.RunAs)
	if err != nil {
		return err
	}
	if err := checkPort(cfg.Port); err != nil {
		return err
	}
	if c.sockDir != c.pgdata {
		if err := c.makeSocketDir(cred); err != nil {
			return err
		}
	}
	c.removeStalePID()
	if err := c.checkContextExtension(); err != nil {
		return err
	}
	if err := c.ensureContextKey(cred); err != nil {
		return err
	}

	listen := ""
	if cfg.Port != 0 {
		listen = "127.0.0.1"
	}
	args := []string{"-D", c.pgdata, "-k", c.sockDir, "-p", strconv.Itoa(c.port),
		"-c", "listen_addresses=" + listen, "-c", "unix_socket_permissions=0700"}
	if cfg.Ephemeral {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	// The server log keeps no row values: no DETAIL (a duplicate key's
	// "Key (email)=(…)"), no failing statement, no bind parameters. It
	// outlives the rows (a deleted tenant's e-mail addresses would stay in
	// it). Settings can override these for debugging.
	// Crash recovery first flushes every file of the data dir; one
	// syncfs(2) per file system does it in a fraction of the time on
	// Linux (≥ 5.8 reports its I/O errors; PostgreSQL ≥ 14 has the
	// setting). Settings can override it.
	if runtime.GOOS == "linux" && c.bin.Major >= 14 {
		args = append(args, "-c", "recovery_init_sync_method=syncfs")
	}
	tlsArgs, err := c.writeTLS(cfg, cred)
	if err != nil {
		return err
	}
	args = append(args, tlsArgs...)
	args = append(args, "-c", "log_error_verbosity=terse", "-c", "log_min_error_statement=panic",
		"-c", "log_parameter_max_length=0", "-c", "log_parameter_max_length_on_error=0")
	preload := ContextExtension
	for k, v := range cfg.Settings {
		if k == "shared_preload_libraries" {
			preload += "," + v
			continue
		}
		args = append(args, "-c", k+"="+v)
	}
	args = append(args, "-c", "shared_preload_libraries="+preload)
	logPath := filepath.Join(c.dataDir, "postgres.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open %s: %w", logPath, err)
	}
	defer logFile.Close()
	logStart, _ := logFile.Seek(0, 2)

	cmd := exec.Command(c.bin.Path("postgres"), args...)
	cmd.Stdout, cmd.Stderr, cmd.Dir = logFile, logFile, "/"
	attr := &syscall.SysProcAttr{Credential: cred}
	if cfg.Detach {
		attr.Setsid = true
	} else {
		// Its own process group keeps a terminal's Ctrl-C away from postgres:
		// this process decides how it stops. The parent-death signal covers
		// the case where this process dies without running Stop.
		attr.Setpgid = true
		attr.Pdeathsig = syscall.SIGINT
	}
	cmd.SysProcAttr = attr

	started := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		// Pdeathsig fires when the starting thread exits: keep this goroutine's
		// thread locked and alive until postgres exits.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			close(done)
			return
		}
		started <- nil
		err := cmd.Wait()
		c.mu.Lock()
		if c.done == done {
			c.exitErr = err
		}
		c.mu.Unlock()
		close(done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	c.mu.Lock()
	c.pid, c.done, c.exitErr, c.owned = cmd.Process.Pid, done, nil, !cfg.Detach
	c.mu.Unlock()
	if err := c.waitReady(ctx, done, limit); err != nil {
		c.kill()
		return fmt.Errorf("%w\n%s", err, tail(logPath, logStart))
	}
	c.log.Info("PostgreSQL started", "data_dir", c.dataDir, "pid", cmd.Process.Pid, "socket_dir", c.sockDir, "version", c.bin.Major)
	return nil
}

// makeSocketDir creates the short socket directory of a long data dir. Its
// name is predictable and its parent (the temp dir) writable by everyone, so
// an existing entry is used only if it is a real directory owned by this
// user or the PostgreSQL user: following a planted symlink, root would hand
// the link's target to the PostgreSQL user.
func (c *Cluster) makeSocketDir(cred *syscall.Credential) error {
	if err := os.Mkdir(c.sockDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("socket dir %s: %w", c.sockDir, err)
	}
	fi, err := os.Lstat(c.sockDir)
	if err != nil {
		return fmt.Errorf("socket dir %s: %w", c.sockDir, err)
	}
	uid := fi.Sys().(*syscall.Stat_t).Uid
	if !fi.IsDir() || (uid != uint32(os.Geteuid()) && (cred == nil || uid != cred.Uid)) {
		return fmt.Errorf("socket dir %s exists but is not a directory owned by this user or the PostgreSQL user (mode %v, uid %d): remove it, or use a shorter --data-dir", c.sockDir, fi.Mode(), uid)
	}
	if cred != nil {
		if err := os.Lchown(c.sockDir, int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("chown %s: %w", c.sockDir, err)
		}
	}
	return nil
}

// removeStalePID removes a postmaster.pid whose process is gone, and the
// socket's lock file a killed postmaster leaves beside it. PostgreSQL
// itself refuses to start while the pid in either file is a live process,
// and a killed postmaster whose parent died too stays a zombie (alive to
// kill(pid, 0)) until init reaps it, or its pid is reused: either would
// keep the cluster down. Both files are this cluster's alone (the socket
// dir is the cluster dir or derived from its path), and the caller holds
// the data dir's lock.
func (c *Cluster) removeStalePID() {
	if _, _, _, ok := c.livePostmaster(); ok {
		return
	}
	p := filepath.Join(c.pgdata, "postmaster.pid")
	if _, err := os.Stat(p); err == nil {
		c.log.Warn("removing stale postmaster.pid", "path", p)
		os.Remove(p)
	}
	lock := c.socketPath() + ".lock"
	if _, err := os.Stat(lock); err == nil {
		c.log.Warn("removing stale socket lock file", "path", lock)
		os.Remove(lock)
	}
}

// runningPID reads postmaster.pid and reports whether that process is a
// live postgres; it takes the port and socket dir that file records. Only
// for a Cluster not yet shared (Start, Inspect): it writes c.
func (c *Cluster) runningPID() (int, bool) {
	pid, port, sockDir, ok := c.livePostmaster()
	if !ok {
		return 0, false
	}
	if port != 0 {
		c.port = port
	}
	if sockDir != "" {
		c.sockDir = sockDir
	}
	return pid, true
}

// livePostmaster reads postmaster.pid and reports whether that process is
// a live postgres running in this cluster, with the port and socket dir
// the file records (0 and "" when it records none). It changes nothing.
func (c *Cluster) livePostmaster() (pid, port int, sockDir string, ok bool) {
	lines := c.pidLines()
	if len(lines) < 1 {
		return 0, 0, "", false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || pid <= 0 {
		return 0, 0, "", false
	}
	if !isPostgres(pid) || !inDir(pid, c.pgdata) {
		return 0, 0, "", false
	}
	if len(lines) >= 5 {
		port, _ = strconv.Atoi(strings.TrimSpace(lines[3]))
		sockDir = strings.TrimSpace(lines[4])
	}
	return pid, port, sockDir, true
}

func (c *Cluster) pidLines() []string {
	b, err := os.ReadFile(filepath.Join(c.pgdata, "postmaster.pid"))
	if err != nil {
		return nil
	}
	return strings.Split(string(b), "\n")
}

// isPostgres reports whether pid is a live (not exited, not zombie)
// postgres process. It reads the kernel's command name and state from
// /proc/<pid>/stat rather than the command line: an exiting process has
// already lost its command line while it still holds its sockets and
// shared memory, and would otherwise count as gone too early.
func isPostgres(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open || end+2 >= len(s) {
		return false
	}
	comm, state := s[open+1:end], s[end+2]
	if state == 'Z' || state == 'X' {
		return false
	}
	return comm == "postgres" || comm == "postmaster"
}

// inDir reports whether pid runs in dir (a postmaster's working directory
// is its data dir). After a crash and a reboot, the pid in a stale
// postmaster.pid can belong to another cluster's postgres, which must be
// neither reused nor stopped. When /proc does not say, the pid file is
// trusted, as postgres itself does.
func inDir(pid int, dir string) bool {
	cwd, err := os.Stat(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return true
	}
	d, err := os.Stat(dir)
	if err != nil {
		return true
	}
	return os.SameFile(cwd, d)
}

// startLimit bounds a start by Start: initdb's fresh cluster or a short
// crash recovery. A supervised restart waits longer (recoveryLimit).
const startLimit = 60 * time.Second

// waitReady waits until postmaster.pid says "ready", postgres exits (done
// closed), limit passes or ctx ends.
func (c *Cluster) waitReady(ctx context.Context, done <-chan struct{}, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if lines := c.pidLines(); len(lines) >= 8 && strings.TrimSpace(lines[7]) == "ready" {
			if _, err := os.Stat(c.socketPath()); err == nil {
				return nil
			}
		}
		select {
		case <-done:
			return errors.New("postgres exited during start-up; its log follows")
		case <-ctx.Done():
			return fmt.Errorf("postgres did not become ready: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

func (c *Cluster) socketPath() string {
	return filepath.Join(c.sockDir, ".s.PGSQL."+strconv.Itoa(c.port))
}

// Stop stops the cluster if this process started it attached; a reused or
// detached cluster is left running. It waits for postgres to exit: a fast
// shutdown first, then immediate, then SIGKILL.
//
// A running supervisor (Supervise) is stopped first, so nothing restarts
// postgres behind Stop's back.
func (c *Cluster) Stop() error {
	c.stopSupervisor()
	pid, done, owned := c.current()
	if !owned {
		return nil
	}
	return c.stopPID(pid, done)
}

// Shutdown stops the cluster whoever started it (bulkhead db stop).
func (c *Cluster) Shutdown() error {
	c.stopSupervisor()
	pid, done, owned := c.current()
	if owned {
		return c.stopPID(pid, done)
	}
	return c.stopPID(pid, nil)
}

// current returns the postmaster's pid, the channel closed when it exits
// (nil unless this process started it) and whether this process owns it.
func (c *Cluster) current() (int, chan struct{}, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pid, c.done, c.owned
}

func (c *Cluster) stopPID(pid int, done <-chan struct{}) error {
	if pid <= 0 {
		return nil
	}
	exited := func() bool {
		if done != nil {
			select {
			case <-done:
				return true
			default:
				return false
			}
		}
		return !isPostgres(pid)
	}
	for _, step := range []struct {
		sig  syscall.Signal
		wait time.Duration
	}{{syscall.SIGINT, 30 * time.Second}, {syscall.SIGQUIT, 10 * time.Second}, {syscall.SIGKILL, 10 * time.Second}} {
		if exited() {
			return nil
		}
		syscall.Kill(pid, step.sig)
		deadline := time.Now().Add(step.wait)
		for time.Now().Before(deadline) {
			if exited() {
				c.log.Info("PostgreSQL stopped", "data_dir", c.dataDir, "pid", pid)
				return nil
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return fmt.Errorf("postgres (pid %d) did not stop", pid)
}

func (c *Cluster) kill() {
	pid, done, _ := c.current()
	syscall.Kill(pid, syscall.SIGKILL)
	if done != nil {
		<-done
	}
}

// PID returns the postmaster's process id (a supervised restart changes it).
func (c *Cluster) PID() int {
	pid, _, _ := c.current()
	return pid
}

// DataDir returns the absolute data dir.
func (c *Cluster) DataDir() string { return c.dataDir }

// SocketDir returns the directory holding the Unix socket.
func (c *Cluster) SocketDir() string { return c.sockDir }

// Port returns the port number (also the socket's suffix).
func (c *Cluster) Port() int { return c.port }

// Major returns the PostgreSQL major version of the binaries.
func (c *Cluster) Major() int { return c.bin.Major }

// Binaries returns the binaries the cluster runs on.
func (c *Cluster) Binaries() Binaries { return c.bin }

// Owned reports whether this process started the cluster and will stop it.
func (c *Cluster) Owned() bool {
	_, _, owned := c.current()
	return owned
}

// DSN returns a connection URL over the Unix socket for user and database.
func (c *Cluster) DSN(user, password, database string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(user, password), Path: "/" + database}
	q := url.Values{}
	q.Set("host", c.sockDir)
	q.Set("port", strconv.Itoa(c.port))
	q.Set("sslmode", "disable")
	u.RawQuery = q.Encode()
	return u.String()
}

// SuperuserDSN returns the bootstrap superuser's connection URL for database.
func (c *Cluster) SuperuserDSN(database string) string {
	return c.DSN(Superuser, c.password, database)
}

func tail(path string, from int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	f.Seek(from, 0)
	var lines []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		lines = append(lines, s.Text())
	}
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

// checkPort fails when a TCP port was asked for and can't be listened on.
func checkPort(port int) error {
	if port == 0 {
		return nil
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("port %d on 127.0.0.1 is in use or not allowed: choose another with --pg-port: %w", port, err)
	}
	return l.Close()
}

// lockDir takes an exclusive lock on dataDir/.lock, waiting until ctx ends.
func lockDir(ctx context.Context, dataDir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dataDir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data dir %s: %w", dataDir, err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock data dir %s: %w", dataDir, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock data dir %s: another bulkhead is starting it: %w", dataDir, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
