package pgcluster_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkhead-dev/bulkhead/pgcluster"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// TestLogKeepsNoRowValues: a duplicate registration (a unique e-mail,
// inserted twice, as a parameter and as a literal) is logged as an error,
// and the log holds neither the address nor the statement (issue 12,
// finding 7).
func TestLogKeepsNoRowValues(t *testing.T) {
	c := mustStart(t, pgcluster.Config{DataDir: mustDataDir(t)})
	conn := mustConnect(t, c)
	ctx := context.Background()
	mustExec(t, conn, `CREATE TABLE users (email text UNIQUE)`)
	email := "victim-" + uuid.NewString()[:8] + "@example.com"
	if _, err := conn.Exec(ctx, `INSERT INTO users VALUES ($1)`, email); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO users VALUES ($1)`, email); err == nil {
		t.Fatal("the duplicate was accepted")
	}
	if _, err := conn.Exec(ctx, `INSERT INTO users VALUES ('`+email+`')`, pgx.QueryExecModeSimpleProtocol); err == nil {
		t.Fatal("the duplicate was accepted")
	}
	log, err := os.ReadFile(filepath.Join(c.DataDir(), "postgres.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "duplicate key value violates unique constraint") {
		t.Fatalf("the log lacks the error itself (is it the right file?):\n%s", log)
	}
	for _, leak := range []string{email, "victim-", "INSERT INTO users"} {
		if strings.Contains(string(log), leak) {
			t.Errorf("the log holds %q", leak)
		}
	}
}

// TestPasswordFileMustBePrivate: a superuser.password others can read
// stops the cluster from starting (docs/SECURITY.md, "Secrets bulkhead
// keeps on disk").
func TestPasswordFileMustBePrivate(t *testing.T) {
	dir := mustDataDir(t)
	c := mustStart(t, pgcluster.Config{DataDir: dir})
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(dir, "superuser.password")
	if err := os.Chmod(pw, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := pgcluster.Start(context.Background(), pgcluster.Config{DataDir: dir, Ephemeral: true}); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("start with a 0644 password file: %v, want a refusal naming chmod 600", err)
	}
	if err := os.Chmod(pw, 0o600); err != nil {
		t.Fatal(err)
	}
	mustConnect(t, mustStart(t, pgcluster.Config{DataDir: dir}))
}
