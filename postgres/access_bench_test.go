package postgres_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// BenchmarkAccessCheck measures the per-request revocation check
// (bulkhead.access_check, sent in the same batch as the context): a
// one-row point read (Read) and a one-statement transaction (InScope), each
// without an Access in the context and with the three kinds of credential
// (a session, an API key, a session-less token). The check adds a statement
// to the batch, not a round trip.
func BenchmarkAccessCheck(b *testing.B) {
	d := testdb.New(b)
	demo, err := postgres.SeedDemo(bulkhead.AsMaintenance(context.Background(), "bench"), d.DB, "")
	if err != nil {
		b.Fatal(err)
	}
	// One connection, so that every case runs on the same warm session
	// (with several, the medians on a loaded 2-core machine also measured
	// which connection the pool handed out).
	db, err := postgres.Open(context.Background(), postgres.Config{AppDSN: d.AppDSN(), ContextKey: testdb.ContextKey(), MaxConns: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	t1 := demo.T1
	base, _ := bulkhead.WithScope(context.Background(), bulkhead.Scope{Tenant: t1.Tenant.ID, Entity: t1.Alice})
	family, key := uuid.New(), uuid.New()
	if err := db.InsertRefreshToken(base, uuid.New(), family, []byte("h"), time.Now().Add(time.Hour)); err != nil {
		b.Fatal(err)
	}
	if _, err := db.InsertAPIKey(base, key, "bench", []byte("k"), nil, nil); err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name string
		ctx  context.Context
	}{
		{"none", base},
		{"session", postgres.WithAccess(base, postgres.Access{Session: family})},
		{"apikey", postgres.WithAccess(base, postgres.Access{APIKey: key})},
		{"token", postgres.WithAccess(base, postgres.Access{IssuedAt: time.Now()})},
	}
	// paired: the cases interleaved within each iteration, so that load
	// from elsewhere on the machine hits them alike; the medians are
	// reported (µs per operation), the check's cost is their difference.
	b.Run("paired", func(b *testing.B) {
		durs := make([][]time.Duration, len(cases)*2)
		var separate []time.Duration // the same check as its own round trip, then the read
		for b.Loop() {
			start := time.Now()
			if err := db.CheckAccess(cases[1].ctx); err != nil {
				b.Fatal(err)
			}
			if _, err := db.Entity(base, t1.Bob); err != nil {
				b.Fatal(err)
			}
			separate = append(separate, time.Since(start))
			for i, c := range cases {
				start := time.Now()
				if _, err := db.Entity(c.ctx, t1.Bob); err != nil {
					b.Fatal(err)
				}
				durs[i] = append(durs[i], time.Since(start))
				start = time.Now()
				err := db.InScope(c.ctx, func(tx pgx.Tx) error {
					var n int
					return tx.QueryRow(c.ctx, `SELECT count(*) FROM bulkhead.rooms WHERE tenant_id = $1`, t1.Tenant.ID).Scan(&n)
				})
				if err != nil {
					b.Fatal(err)
				}
				durs[len(cases)+i] = append(durs[len(cases)+i], time.Since(start))
			}
		}
		for i, c := range cases {
			b.ReportMetric(median(durs[i]), "µs-read-"+c.name)
			b.ReportMetric(median(durs[len(cases)+i]), "µs-tx-"+c.name)
		}
		b.ReportMetric(median(separate), "µs-read-separate-check")
	})
	for _, c := range cases {
		b.Run("read/"+c.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := db.Entity(c.ctx, t1.Bob); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	for _, c := range cases {
		b.Run("tx/"+c.name, func(b *testing.B) {
			for b.Loop() {
				err := db.InScope(c.ctx, func(tx pgx.Tx) error {
					var n int
					return tx.QueryRow(c.ctx, `SELECT count(*) FROM bulkhead.rooms WHERE tenant_id = $1`, t1.Tenant.ID).Scan(&n)
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func median(ds []time.Duration) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return float64(s[len(s)/2].Microseconds())
}

// BenchmarkAccessCheckStatement is the check's cost in the database alone,
// on one connection: a batch entering the context and counting rooms, in
// an implicit and an explicit transaction, without and with
// bulkhead.access_check (a session-less token). The variants are
// interleaved; the medians are reported in µs.
func BenchmarkAccessCheckStatement(b *testing.B) {
	d := testdb.New(b)
	demo, err := postgres.SeedDemo(bulkhead.AsMaintenance(context.Background(), "bench"), d.DB, "")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	conn := testdb.MustConnect(b, d.AppDSN())
	key := testdb.ContextKey()
	s := bulkhead.Scope{Tenant: demo.T1.Tenant.ID, Entity: demo.T1.Alice}
	type variant struct {
		name            string
		explicit, check bool
	}
	variants := []variant{{"implicit-none", false, false}, {"implicit-check", false, true}, {"explicit-none", true, false}, {"explicit-check", true, true}}
	durs := make([][]time.Duration, len(variants))
	for b.Loop() {
		for i, v := range variants {
			start := time.Now()
			bt := &pgx.Batch{}
			if v.explicit {
				bt.Queue("BEGIN")
			}
			sql, args, _ := key.EnterSQL(s)
			bt.Queue(sql, args...)
			if v.check {
				bt.Queue(`SELECT bulkhead.access_check($1::uuid, $2::timestamptz, $3::uuid, $4::boolean)`, nil, time.Now(), nil, true)
			}
			bt.Queue(`SELECT count(*) FROM bulkhead.rooms`)
			if v.explicit {
				bt.Queue("COMMIT")
			}
			if err := conn.SendBatch(ctx, bt).Close(); err != nil {
				b.Fatal(err)
			}
			durs[i] = append(durs[i], time.Since(start))
		}
	}
	for i, v := range variants {
		b.ReportMetric(median(durs[i]), "µs-"+v.name)
	}
}
