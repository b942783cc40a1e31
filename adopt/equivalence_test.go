package adopt

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// appQueries are the legacy application's reads (with its own filter) and
// one that forgets it.
var appQueries = []string{
	"SELECT id, room_id, content FROM memories WHERE server_id = $1 AND room_id = $2 ORDER BY created_at DESC LIMIT 50",
	"SELECT r.id, r.name, w.name FROM rooms r JOIN worlds w ON w.id = r.world_id WHERE r.server_id = $1 AND $2::uuid IS NOT NULL",
	"SELECT p.entity_id, count(*) FROM participants p WHERE p.server_id = $1 AND p.room_id = $2 GROUP BY 1",
	"SELECT a.id, a.name FROM agents a JOIN message_server_agents m ON m.agent_id = a.id WHERE a.server_id = $1 AND $2::uuid IS NOT NULL",
}

const forgetfulQuery = "SELECT id, server_id FROM memories WHERE content = 'hello 7'"

func results(t testing.TB, conn *pgx.Conn, tenant, room string, rp *Replayer) (filtered []string, forgetful [][]string) {
	t.Helper()
	ctx := context.Background()
	err := appTx(ctx, conn, tenant, func(tx pgx.Tx) error {
		for _, q := range appQueries {
			rows, err := textRows(ctx, tx, q, tenant, room)
			if err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
			var lines []string
			for _, r := range rows {
				lines = append(lines, strings.Join(r, "|"))
			}
			sort.Strings(lines)
			filtered = append(filtered, strings.Join(lines, "\n"))
		}
		var err error
		forgetful, err = rp.Query(ctx, tx, forgetfulQuery)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return filtered, forgetful
}

// TestEquivalence: the application's filtered queries return the same rows
// with RLS off (original), in shadow and enforced; the forgetful one
// returns only the caller's rows once enforced, and shadow's replay
// recorded exactly the other rows it returned.
func TestEquivalence(t *testing.T) {
	ctx := context.Background()
	d := newDB(t)
	op := mustConnect(t, d.adminDSN())
	app := mustConnect(t, d.appDSN())
	p := reviewedPlan(t, op, d)
	tenants := []int{1, 4, 9, 16}
	type res struct {
		filtered  []string
		forgetful [][]string
	}
	run := func(rp *Replayer) map[int]res {
		out := map[int]res{}
		for _, s := range tenants {
			f, g := results(t, app, server(s), md5UUID(fmt.Sprintf("r%d.2", s)), rp)
			out[s] = res{f, g}
		}
		return out
	}
	off := run(nil)
	// Backfill gives the fixture's memories and participants with no
	// server_id their room's tenant: the application's filtered queries on
	// those two tables (0 and 2) then also return them, by design. The
	// equivalence that matters is shadow (RLS on, switch open) against
	// enforced, after backfill; the other queries are compared with RLS off.
	toShadow(t, op, p)
	pool, err := pgxpool.New(ctx, d.adminDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	rp := NewReplayer(pool, 1)
	shadow := run(rp)
	rp.Close()
	if err := Enforce(ctx, op, p, nil, EnforceOptions{}); err == nil {
		t.Fatal("enforce did not refuse after shadow recorded the forgetful reads")
	}
	if err := Enforce(ctx, op, p, nil, EnforceOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	on := run(nil)
	var foreign int64
	for _, s := range tenants {
		for i := range appQueries {
			if shadow[s].filtered[i] != on[s].filtered[i] {
				t.Errorf("tenant %d query %d: shadow and enforced differ:\n%s\n---\n%s", s, i, shadow[s].filtered[i], on[s].filtered[i])
			}
			if i != 0 && i != 2 && off[s].filtered[i] != on[s].filtered[i] {
				t.Errorf("tenant %d query %d: RLS off and on differ", s, i)
			}
		}
		var own int
		for _, r := range shadow[s].forgetful {
			if r[1] == server(s) {
				own++
			} else {
				foreign++
			}
		}
		if len(on[s].forgetful) != own {
			t.Errorf("tenant %d: enforced forgetful query returned %d rows, want its own %d", s, len(on[s].forgetful), own)
		}
		for _, r := range on[s].forgetful {
			if r[1] != server(s) {
				t.Errorf("tenant %d: enforced forgetful query returned a row of %s", s, r[1])
			}
		}
		if len(off[s].forgetful) != len(shadow[s].forgetful) {
			t.Errorf("tenant %d: forgetful query returned %d rows with RLS off, %d in shadow", s, len(off[s].forgetful), len(shadow[s].forgetful))
		}
	}
	if n := count(t, op, "SELECT coalesce(sum(n), 0) FROM bulkhead_adopt.violation_count WHERE rel = 'query'"); n != foreign {
		t.Errorf("shadow recorded %d hidden rows, the forgetful reads returned %d foreign rows", n, foreign)
	}
}
