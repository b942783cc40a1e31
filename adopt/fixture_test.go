package adopt

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead/pgcluster"
	"github.com/jackc/pgx/v5"
)

// The legacy fixture, modeled on elizaOS: a server_id tenant column on most
// tables (servers are elizaOS's tenants), agents, entities, worlds, rooms,
// participants, memories, the message_servers / message_server_agents
// junction (no server_id at all), some participants and memories with no
// server_id, and a log table without a primary key. The application role
// "eliza" owns everything and filters by server_id itself.

var (
	cluster *pgcluster.Cluster
	counter atomic.Int64
)

const (
	fixtureTemplate = "adopt_fixture"
	appRole         = "eliza"
	appPassword     = "eliza-pw"
	fixtureServers  = 20
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "bha")
	if err != nil {
		fmt.Fprintln(os.Stderr, "adopt tests:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// TLS on TCP, for the proxy's TLS tests (proxy_tls_test.go); the other
	// tests connect through the Unix socket.
	if pki, err = newPKI(dir); err != nil {
		fmt.Fprintln(os.Stderr, "adopt tests: certificates:", err)
		return 1
	}
	port, err := freeTCPPort()
	if err != nil {
		fmt.Fprintln(os.Stderr, "adopt tests:", err)
		return 1
	}
	tcpAddr = fmt.Sprintf("127.0.0.1:%d", port)
	cluster, err = pgcluster.Start(ctx, pgcluster.Config{DataDir: dir, Ephemeral: true, Port: port, TLSCert: pki.serverCert, TLSKey: pki.serverKey})
	if err != nil {
		fmt.Fprintln(os.Stderr, "adopt tests: cannot start PostgreSQL (install postgresql, see FACTS.md):", err)
		return 1
	}
	defer cluster.Stop()
	if err := buildFixture(ctx, fixtureTemplate, 200); err != nil {
		fmt.Fprintln(os.Stderr, "adopt tests: fixture:", err)
		return 1
	}
	return m.Run()
}

// buildFixture creates database name holding the legacy schema with
// perRoom memories in each of the 100 rooms (20 servers x 5 rooms).
func buildFixture(ctx context.Context, name string, perRoom int) error {
	admin, err := pgx.Connect(ctx, cluster.SuperuserDSN("postgres"))
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	admin.Exec(ctx, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", appRole, appPassword))
	if _, err := admin.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s OWNER %s", name, appRole)); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, cluster.DSN(appRole, appPassword, name))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return loadFixture(ctx, conn, fixtureServers, perRoom)
}

// loadFixture runs testdata/elizaos_fixture.sql with servers and perRoom.
func loadFixture(ctx context.Context, conn *pgx.Conn, servers, perRoom int) error {
	b, err := os.ReadFile("testdata/elizaos_fixture.sql")
	if err != nil {
		return err
	}
	_, err = conn.Exec(ctx, strings.ReplaceAll(strings.ReplaceAll(string(b), ":S", fmt.Sprint(servers)), ":M", fmt.Sprint(perRoom)))
	return err
}

// server is the i-th fixture server's id (1-based).
func server(i int) string { return md5UUID(fmt.Sprintf("s%d", i)) }

// db is one test's copy of the fixture.
type db struct {
	name string
}

func newDB(t testing.TB) *db {
	t.Helper()
	return newDBFrom(t, fixtureTemplate)
}

func newDBFrom(t testing.TB, template string) *db {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("a%d_%d", os.Getpid(), counter.Add(1))
	admin := mustConnect(t, cluster.SuperuserDSN("postgres"))
	if _, err := admin.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s OWNER %s", name, template, appRole)); err != nil {
		t.Fatalf("clone fixture: %v", err)
	}
	t.Cleanup(func() {
		admin.Exec(context.Background(), fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", name))
		admin.Exec(context.Background(), fmt.Sprintf("DROP ROLE IF EXISTS rt_%s", name))
	})
	return &db{name: name}
}

func (d *db) adminDSN() string { return cluster.SuperuserDSN(d.name) }
func (d *db) appDSN() string   { return cluster.DSN(appRole, appPassword, d.name) }
func (d *db) runtime() string  { return "rt_" + d.name }

func mustConnect(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// newReviewed is a fresh copy of the fixture, the operator's connection
// to it and the reviewed plan: where most tests start.
func newReviewed(t testing.TB) (*db, *pgx.Conn, *Plan) {
	t.Helper()
	d := newDB(t)
	op := mustConnect(t, d.adminDSN())
	return d, op, reviewedPlan(t, op, d)
}

// reviewedPlan is what an operator makes of Inspect's proposal for the
// fixture: the decisions Inspect left open, made explicitly.
func reviewedPlan(t testing.TB, conn *pgx.Conn, d *db) *Plan {
	t.Helper()
	p, err := Inspect(context.Background(), conn, InspectOptions{RuntimeRole: d.runtime()})
	if err != nil {
		t.Fatal(err)
	}
	for i := range p.Tables {
		tb := &p.Tables[i]
		switch tb.Name {
		case "servers", "message_servers", "logs":
			tb.Kind, tb.Decide, tb.Backfill = KindGlobal, false, nil
		case "participants", "memories":
			tb.Kind, tb.Decide = KindTenant, false
			tb.Backfill = []Rule{{Name: "from_room", Parent: &ParentRule{Column: "room_id", Table: "rooms"}}}
		}
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	return p
}
