package adopt

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// tlsDSN is the application's URL through px with TLS options opts.
func tlsDSN(px *Proxy, d *db, opts string) string {
	return fmt.Sprintf("postgres://%s:%s@%s/%s?%s", appRole, appPassword, px.Addr(), d.name, opts)
}

// upstreamTLS trusts the test CA for the cluster's certificate.
func upstreamTLS() *tls.Config {
	return &tls.Config{RootCAs: pki.roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

func proxyTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{pki.proxy}, MinVersion: tls.VersionTLS12}
}

// connectErr connects to dsn and returns the error, which must not be nil.
func connectErr(t *testing.T, dsn string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err == nil {
		c.Close(ctx)
		t.Fatalf("connected to %s", dsn)
	}
	return err
}

// TestProxyTLSBothLegs: with TLS towards the application (required) and
// towards the database, the application's connection is TLS to the proxy
// (verified against the proxy's certificate), its session on the server is
// TLS (pg_stat_ssl), it reads what it reads directly, a forgetful read is
// recorded as over plain text, and a cancel reaches the server. A client
// without TLS is refused, and so is one that binds SCRAM to its TLS
// connection (channel binding can't cross the proxy), each with a message
// saying what to change.
func TestProxyTLSBothLegs(t *testing.T) {
	ctx := context.Background()
	d, op, p := newReviewed(t)
	toShadow(t, op, p)
	px, _, stop := startProxyWith(t, d, ProxyOptions{Sample: 1, TLS: proxyTLS(), RequireTLS: true, Upstream: tcpAddr, UpstreamTLS: upstreamTLS()})
	dsn := tlsDSN(px, d, "sslmode=verify-full&sslrootcert="+pki.caFile+"&channel_binding=disable")
	app := mustConnect(t, dsn)
	if _, ok := app.PgConn().Conn().(*tls.Conn); !ok {
		t.Fatalf("the application's connection to the proxy is a %T, not TLS", app.PgConn().Conn())
	}
	var ssl bool
	if err := app.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil || !ssl {
		t.Fatalf("the proxy's session on the server: ssl = %v, %v; want TLS", ssl, err)
	}

	s1 := server(1)
	direct := mustConnect(t, d.appDSN())
	foreign := ids(t, op, "SELECT id FROM memories WHERE content = 'hello 7' AND server_id IS DISTINCT FROM $1", s1)
	if len(foreign) == 0 {
		t.Fatal("the fixture has no foreign rows to find")
	}
	for _, c := range []*pgx.Conn{app, direct} {
		if _, err := c.Exec(ctx, "SET app.current_tenant_id = '"+s1+"'"); err != nil {
			t.Fatal(err)
		}
	}
	q := "SELECT id FROM memories WHERE content = 'hello 7'"
	if got, want := ids(t, app, q), ids(t, direct, q); !slices.Equal(got, want) {
		t.Fatalf("through the proxy in TLS %d rows, directly %d", len(got), len(want))
	}

	// A cancel (pgx sends one when the context ends) reaches the server
	// through the proxy's TLS connection: the statement stops there.
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	start := time.Now()
	_, err := app.Exec(cctx, "SELECT pg_sleep(10) AS cancelled_through_tls")
	cancel()
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("a cancelled pg_sleep(10) through the proxy in TLS: %v after %s", err, time.Since(start))
	}
	sleeping := func() int64 {
		return count(t, op, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%cancelled_through_tls%' AND pid <> pg_backend_pid()")
	}
	for deadline := time.Now().Add(3 * time.Second); sleeping() != 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if sleeping() != 0 {
		t.Fatal("the cancelled statement still runs on the server")
	}

	if err := connectErr(t, tlsDSN(px, d, "sslmode=disable")); !strings.Contains(err.Error(), "TLS is required") {
		t.Fatalf("plain-text client: %v", err)
	}
	// pgx's default channel_binding is prefer: it binds when the server
	// offers it, which a server in TLS does.
	if err := connectErr(t, tlsDSN(px, d, "sslmode=verify-full&sslrootcert="+pki.caFile)); !strings.Contains(err.Error(), "channel_binding=disable") {
		t.Fatalf("client binding SCRAM to its TLS connection: %v", err)
	}

	stop()
	s := px.Stats()
	if s.Replayed < 2 || s.Hidden != int64(len(foreign)) {
		t.Fatalf("proxy in TLS: %+v, want the forgetful read's %d foreign rows recorded", s, len(foreign))
	}
}

// TestProxyTLSToTheApplicationOnly: the proxy beside the database (Unix
// socket, where the server offers no channel binding) and TLS towards the
// application: a client with libpq's defaults (channel_binding=prefer)
// connects in TLS, and TLS not being required, a plain-text one too.
func TestProxyTLSToTheApplicationOnly(t *testing.T) {
	ctx := context.Background()
	d, op, p := newReviewed(t)
	toShadow(t, op, p)
	px, _, _ := startProxyWith(t, d, ProxyOptions{Sample: 1, TLS: proxyTLS()})
	app := mustConnect(t, tlsDSN(px, d, "sslmode=verify-full&sslrootcert="+pki.caFile))
	if _, ok := app.PgConn().Conn().(*tls.Conn); !ok {
		t.Fatalf("the application's connection to the proxy is a %T, not TLS", app.PgConn().Conn())
	}
	var n int
	if err := app.QueryRow(ctx, "SELECT count(*) FROM servers").Scan(&n); err != nil || n == 0 {
		t.Fatalf("read through the proxy in TLS: %d rows, %v", n, err)
	}
	plain := mustConnect(t, tlsDSN(px, d, "sslmode=disable"))
	if _, ok := plain.PgConn().Conn().(*tls.Conn); ok {
		t.Fatal("sslmode=disable gave a TLS connection")
	}
}

// TestProxyUpstreamTLSNeverFallsBack: a database certificate the proxy
// doesn't trust, and a server that declines TLS (PostgreSQL on its Unix
// socket), end the connection before any start-up message reaches the
// server; options that can't work are refused by NewProxy.
func TestProxyUpstreamTLSNeverFallsBack(t *testing.T) {
	d, op, p := newReviewed(t)
	toShadow(t, op, p)
	untrusted := &tls.Config{RootCAs: x509.NewCertPool(), ServerName: "127.0.0.1"}
	px, _, _ := startProxyWith(t, d, ProxyOptions{Sample: 1, Upstream: tcpAddr, UpstreamTLS: untrusted})
	if err := connectErr(t, tlsDSN(px, d, "sslmode=disable")); !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("untrusted database certificate: %v", err)
	}
	if n := px.Stats().Connections; n != 0 {
		t.Fatalf("%d connections passed to a database whose certificate failed", n)
	}

	cfg, err := pgx.ParseConfig(d.appDSN())
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(cfg.Host, fmt.Sprintf(".s.PGSQL.%d", cfg.Port))
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := startTLS(context.Background(), c, upstreamTLS()); !errors.Is(err, errUpstreamNoTLS) {
		t.Fatalf("TLS asked of a server that declines: %v, want errUpstreamNoTLS", err)
	}

	for _, o := range []ProxyOptions{
		{Listen: "127.0.0.1:0", Upstream: tcpAddr, RequireTLS: true},
		{Listen: "127.0.0.1:0", Upstream: sock, UpstreamTLS: upstreamTLS()},
	} {
		if px, err := NewProxy(nil, o); err == nil {
			px.ln.Close()
			t.Fatalf("NewProxy(%+v) accepted", o)
		}
	}
}
