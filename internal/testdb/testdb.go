// Package testdb gives each test package one throwaway PostgreSQL cluster
// (started by pgcluster from the local binaries, fsync off) and each test
// its own database cloned from a migrated template, reached as the runtime
// role exactly as the server reaches it.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }
//
// If PostgreSQL can't be started the test binary fails (never skips) with
// a message saying how to install it.
package testdb

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead/fieldcrypt"
	"github.com/bulkhead-dev/bulkhead/pgcluster"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/jackc/pgx/v5"
)

// Template is the name of the migrated template database.
const Template = "bh_template"

var (
	cluster *pgcluster.Cluster
	creds   postgres.Credentials
	kek     *fieldcrypt.KEK
	ctxKey  postgres.ContextKey
	counter atomic.Int64
)

// ContextKey returns the key the package's cluster verifies transaction
// contexts with (see postgres.ContextKey.EnterSQL for raw connections).
func ContextKey() postgres.ContextKey { return ctxKey }

// KEK returns the package's local key-encryption key.
func KEK() *fieldcrypt.KEK { return kek }

// Main starts the package's cluster, prepares the template, runs the tests
// and stops the cluster, whatever happens. It returns the exit code.
func Main(m *testing.M) int {
	dir, err := os.MkdirTemp("", "bh")
	if err != nil {
		fmt.Fprintln(os.Stderr, "testdb:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755) // PostgreSQL runs as another user when the tests run as root
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cluster, err = pgcluster.Start(ctx, pgcluster.Config{DataDir: dir, Ephemeral: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "testdb: cannot start PostgreSQL for the tests:", err)
		return 1
	}
	defer cluster.Stop()
	raw, err := cluster.ContextKey()
	if err == nil {
		ctxKey, err = postgres.NewContextKey(raw)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testdb:", err)
		return 1
	}
	creds = postgres.Credentials{Owner: "owner-pw", Runtime: "runtime-pw", Maintenance: "maint-pw", KeyService: "keys-pw"}
	if kek, _, err = fieldcrypt.LocalKEK(filepath.Join(dir, "kek.json"), true); err != nil {
		fmt.Fprintln(os.Stderr, "testdb:", err)
		return 1
	}
	if err := BuildTemplate(ctx, Template); err != nil {
		fmt.Fprintln(os.Stderr, "testdb:", err)
		return 1
	}
	if os.Getenv(PgBouncerEnv) == "1" {
		port, stop, err := startPgBouncer("*", 20)
		if err != nil {
			fmt.Fprintf(os.Stderr, "testdb: %s=1 needs PgBouncer: %v\n", PgBouncerEnv, err)
			return 1
		}
		defer stop()
		bouncerPort = port
	}
	return m.Run()
}

// Cluster returns the package's cluster.
func Cluster() *pgcluster.Cluster { return cluster }

// Credentials returns the role passwords of the package's cluster.
func Credentials() postgres.Credentials { return creds }

// BuildTemplate bootstraps roles and a database named name and migrates it.
func BuildTemplate(ctx context.Context, name string) error {
	if err := postgres.Bootstrap(ctx, cluster.SuperuserDSN("postgres"), name, creds, true); err != nil {
		return err
	}
	m, err := postgres.NewMigrator(cluster.DSN(postgres.Owner, creds.Owner, name), nil)
	if err != nil {
		return err
	}
	defer m.Close()
	m.UseAdmin(cluster.SuperuserDSN("postgres"))
	_, err = m.Up(ctx)
	return err
}

// Database is one test's database.
type Database struct {
	Name    string
	DB      *postgres.DB // runtime + maintenance pools, sealing with Keyring
	Keys    *postgres.KeysetStore
	Keyring *fieldcrypt.Keyring
}

// AdminDSN connects as the bootstrap superuser.
func (d *Database) AdminDSN() string { return cluster.SuperuserDSN(d.Name) }

// OwnerDSN connects as the owner role.
func (d *Database) OwnerDSN() string { return cluster.DSN(postgres.Owner, creds.Owner, d.Name) }

// AppDSN connects as the runtime role.
func (d *Database) AppDSN() string { return cluster.DSN(postgres.Runtime, creds.Runtime, d.Name) }

// KeyServiceDSN connects as the key service role.
func (d *Database) KeyServiceDSN() string {
	return cluster.DSN(postgres.KeyService, creds.KeyService, d.Name)
}

// Open opens another DB on d (the server's pools) with the given keyring
// (nil: plaintext mode), closed when t ends. Under PgBouncerEnv both pools
// go through PgBouncer in transaction mode with the "exec" query mode.
func (d *Database) Open(t testing.TB, kr *fieldcrypt.Keyring) *postgres.DB {
	t.Helper()
	cfg := postgres.Config{AppDSN: d.AppDSN(), MaintenanceDSN: d.MaintenanceDSN(), Keyring: kr, ContextKey: ctxKey}
	if bouncerPort != 0 {
		cfg.AppDSN = bouncerDSN(bouncerPort, postgres.Runtime, creds.Runtime, d.Name)
		cfg.MaintenanceDSN = bouncerDSN(bouncerPort, postgres.Maintenance, creds.Maintenance, d.Name)
		cfg.QueryExecMode = "exec"
	}
	db, err := postgres.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

// MaintenanceDSN connects as the maintenance role.
func (d *Database) MaintenanceDSN() string {
	return cluster.DSN(postgres.Maintenance, creds.Maintenance, d.Name)
}

// New clones the template into a fresh database for t, opens the server's
// pools on it and drops it when t ends.
func New(t testing.TB) *Database {
	t.Helper()
	return NewFrom(t, Template)
}

// NewFrom is New with another template.
func NewFrom(t testing.TB, template string) *Database {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("t%d_%d", os.Getpid(), counter.Add(1))
	admin := MustConnect(t, cluster.SuperuserDSN("postgres"))
	if _, err := admin.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s OWNER %s", name, template, postgres.Owner)); err != nil {
		t.Fatalf("clone %s: %v", template, err)
	}
	if err := postgres.PrepareDatabase(ctx, cluster.SuperuserDSN("postgres"), name); err != nil {
		t.Fatal(err)
	}
	d := &Database{Name: name}
	t.Cleanup(func() {
		admin.Exec(context.Background(), fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", name))
	})
	keys, err := postgres.OpenKeysetStore(ctx, d.KeyServiceDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(keys.Close)
	if err := keys.CheckKEK(ctx, kek); err != nil {
		t.Fatal(err)
	}
	d.Keys = keys
	d.Keyring = fieldcrypt.NewKeyring(kek, keys, fieldcrypt.Options{})
	d.DB = d.Open(t, d.Keyring)
	return d
}

// MustConnect opens one connection with dsn, closed when t ends.
func MustConnect(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}
