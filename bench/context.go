package bench

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/pgcluster"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/jackc/pgx/v5"
)

// ContextCost is what entering the signed context costs a one-statement
// read, measured in one run on the copy without policies (so the query's
// own cost is the same on every side): the read alone, the read after the
// plain set_config statement bulkhead used to send (forgeable; sent here on
// settings of another prefix, which cost the same), and the read after
// bulkhead.enter(token), Go-side signing included. Each side is one batch,
// one round trip, one implicit transaction.
type ContextCost struct {
	None, SetConfig, Signed time.Duration // medians
	// OldRLS and NewRLS are the RLS point read (policies on) with the old
	// context (plain settings, set_config) and with enter(token), on two
	// copies of the same data: the whole change under RLS, same run.
	OldRLS, NewRLS time.Duration
	// EnterServer is the mean time PostgreSQL spent inside bulkhead.enter
	// per call (pg_stat_user_functions, track_functions = all): the HMAC
	// check and setting the three settings, without network or parsing.
	EnterServer time.Duration
}

// The old-context reference database and its plain settings.
const (
	oldContextDB = "bench_rls_oldctx"
	oldTenant    = "bench.tenant_id"
	oldEntity    = "bench.entity_id"
	oldActingFor = "bench.acting_for"
)

// RLSRatio is NewRLS over OldRLS.
func (c ContextCost) RLSRatio() float64 { return float64(c.NewRLS) / float64(c.OldRLS) }

// Ratio is the signed side over the set_config side.
func (c ContextCost) Ratio() float64 { return float64(c.Signed) / float64(c.SetConfig) }

func measureContext(ctx context.Context, cl *pgcluster.Cluster, dsn, database, rlsDSN, oldDSN string, key postgres.ContextKey, samples []sample, ops int) (ContextCost, error) {
	admin, err := pgx.Connect(ctx, cl.SuperuserDSN(database))
	if err != nil {
		return ContextCost{}, err
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{database}.Sanitize()+" SET track_functions = 'all'"); err != nil {
		return ContextCost{}, err
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return ContextCost{}, err
	}
	defer conn.Close(ctx)
	const read = `SELECT content FROM bulkhead.memories m WHERE m.tenant_id = $1 AND m.id = $2`
	const setConfig = `SELECT set_config('` + oldTenant + `', $1, true), set_config('` + oldEntity + `', $2, true), set_config('` + oldActingFor + `', $3, true)`
	connNew, err := pgx.Connect(ctx, rlsDSN)
	if err != nil {
		return ContextCost{}, err
	}
	defer connNew.Close(ctx)
	connOld, err := pgx.Connect(ctx, oldDSN)
	if err != nil {
		return ContextCost{}, err
	}
	defer connOld.Close(ctx)
	type side struct {
		conn  *pgx.Conn
		batch func(s sample) *pgx.Batch
	}
	batches := []func(s sample) *pgx.Batch{
		func(s sample) *pgx.Batch { return &pgx.Batch{} },
		func(s sample) *pgx.Batch {
			b := &pgx.Batch{}
			b.Queue(setConfig, s.tenant.String(), s.member.String(), "")
			return b
		},
		func(s sample) *pgx.Batch {
			b := &pgx.Batch{}
			sql, args, _ := key.EnterSQL(bulkhead.Scope{Tenant: s.tenant, Entity: s.member})
			b.Queue(sql, args...)
			return b
		},
	}
	// Every side has its own connection, and the order is shuffled on every
	// round: each measurement wakes a different backend from the last one,
	// alike for all sides.
	conn1, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return ContextCost{}, err
	}
	defer conn1.Close(ctx)
	conn2, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return ContextCost{}, err
	}
	defer conn2.Close(ctx)
	sides := []side{{conn, batches[0]}, {conn1, batches[1]}, {conn2, batches[2]}, {connOld, batches[1]}, {connNew, batches[2]}}
	run := func(i int, s sample) error {
		sd := sides[i]
		b := sd.batch(s)
		found := false
		b.Queue(read, s.tenant, s.memory).Query(func(rows pgx.Rows) error {
			found = rows.Next()
			rows.Close()
			return rows.Err()
		})
		if err := sd.conn.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("context cost: memory not found")
		}
		return nil
	}
	got := make([][]time.Duration, len(sides))
	rnd := mrand.New(mrand.NewPCG(3, 4))
	// Warm-up touches every sample on every side: the old-context copy is
	// otherwise cold in shared buffers while the others were warmed by the
	// main measurements.
	warm := max(200, len(samples))
	for i := range warm + ops {
		s := samples[i%len(samples)]
		for _, side := range rnd.Perm(len(sides)) {
			t0 := time.Now()
			if err := run(side, s); err != nil {
				return ContextCost{}, err
			}
			if i >= warm {
				got[side] = append(got[side], time.Since(t0))
			}
		}
	}
	res := ContextCost{None: pct(got[0], 50), SetConfig: pct(got[1], 50), Signed: pct(got[2], 50), OldRLS: pct(got[3], 50), NewRLS: pct(got[4], 50)}
	// The backends report their function statistics when they end.
	conn.Close(ctx)
	conn1.Close(ctx)
	conn2.Close(ctx)
	for range 100 {
		var calls int64
		var total float64 // ms
		err := admin.QueryRow(ctx, `SELECT coalesce(sum(calls), 0), coalesce(sum(total_time), 0) FROM pg_stat_user_functions WHERE schemaname = 'bulkhead' AND funcname = 'enter'`).Scan(&calls, &total)
		if err != nil {
			return ContextCost{}, err
		}
		if calls >= int64(ops) {
			res.EnterServer = time.Duration(total * float64(time.Millisecond) / float64(calls))
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return res, nil
}
