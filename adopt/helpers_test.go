package adopt

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"slices"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/jackc/pgx/v5"
)

func md5UUID(s string) string {
	h := md5.Sum([]byte(s))
	x := hex.EncodeToString(h[:])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

var timeZero = time.Time{}

// contextKey is the key the test cluster's bulkhead_context verifies with.
func contextKey(t testing.TB) postgres.ContextKey {
	t.Helper()
	raw, err := cluster.ContextKey()
	if err != nil {
		t.Fatal(err)
	}
	key, err := postgres.NewContextKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// setKind makes table of p kind (owned or private) with its owner in
// owner, and gives p the entity setting the tests' application uses.
func setKind(p *Plan, table, kind, owner string) {
	for i := range p.Tables {
		if p.Tables[i].Name == table {
			p.Tables[i].Kind, p.Tables[i].OwnerColumn = kind, owner
		}
	}
	p.EntitySetting = "app.current_entity_id"
}

// ownedWithoutOwners makes p adopt memories as kind owned over entity_id
// and clears the owner of the memories where holds (SQL over memories).
func ownedWithoutOwners(t testing.TB, op *pgx.Conn, p *Plan, where string) {
	t.Helper()
	setKind(p, "memories", KindOwned, "entity_id")
	if _, err := op.Exec(context.Background(), "UPDATE memories SET entity_id = NULL WHERE "+where); err != nil {
		t.Fatal(err)
	}
}

// planWith is a validated copy of p (p is left as it is) with edit applied
// to the table named (none when empty) and extra tables appended.
func planWith(t testing.TB, p *Plan, name string, edit func(*Table), extra ...Table) *Plan {
	t.Helper()
	q := *p
	q.Tables = append(slices.Clone(p.Tables), extra...)
	for i := range q.Tables {
		if q.Tables[i].Name == name {
			edit(&q.Tables[i])
		}
	}
	if err := q.Validate(); err != nil {
		t.Fatal(err)
	}
	return &q
}

// killedAfter is a context cancelled (the process killed, as far as
// backfill can tell) once n batches of batchSize rows that match ran, and
// the options that count them.
func killedAfter(n, batchSize int, match func(table, rule string) bool) (context.Context, Options) {
	ctx, kill := context.WithCancel(context.Background())
	batches := 0
	return ctx, Options{BatchSize: batchSize, Progress: func(table, rule string, done, total int64, rps float64) {
		if match(table, rule) {
			if batches++; batches == n {
				kill()
			}
		}
	}}
}
