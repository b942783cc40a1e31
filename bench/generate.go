package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/jackc/pgx/v5"
)

// generate fills the database with cfg.Tenants tenants of 10 users, one
// world and 10 rooms each (5 participants per room), cfg.Memories memories
// spread evenly over the rooms, and, in the first tenant, one extra room
// with cfg.BigRoom participants. It runs as the superuser, in bulk SQL.
func generate(ctx context.Context, conn *pgx.Conn, cfg Config, res *Result) error {
	perRoom := max(1, cfg.Memories/(cfg.Tenants*10))
	steps := []struct{ what, sql string }{
		{"tenants", fmt.Sprintf(`CREATE TEMP TABLE bt AS SELECT gen_random_uuid() AS id, g AS n FROM generate_series(1, %d) g;
			INSERT INTO bulkhead.tenants (id, name) SELECT id, 'bench-' || n FROM bt`, cfg.Tenants)},
		{"entities", `CREATE TEMP TABLE be AS SELECT bt.id AS tenant_id, gen_random_uuid() AS id, e AS n FROM bt, generate_series(1, 10) e;
			INSERT INTO bulkhead.entities (tenant_id, id, kind, name) SELECT tenant_id, id, 'user', 'user ' || n FROM be`},
		{"worlds", `CREATE TEMP TABLE bw AS SELECT tenant_id, gen_random_uuid() AS id, id AS owner FROM be WHERE n = 1;
			INSERT INTO bulkhead.worlds (tenant_id, id, owner_id, name) SELECT tenant_id, id, owner, 'world' FROM bw`},
		{"rooms", `CREATE TEMP TABLE br AS SELECT bw.tenant_id, gen_random_uuid() AS id, bw.id AS world, r AS n FROM bw, generate_series(1, 10) r;
			INSERT INTO bulkhead.rooms (tenant_id, id, world_id, name) SELECT tenant_id, id, world, 'room ' || n FROM br`},
		{"participants", `INSERT INTO bulkhead.participants (tenant_id, room_id, entity_id, role)
			SELECT br.tenant_id, br.id, be.id, CASE WHEN be.n = br.n THEN 'owner' ELSE 'member' END
			FROM br JOIN be ON be.tenant_id = br.tenant_id AND (be.n - br.n + 10) % 10 < 5`},
		{"memories", fmt.Sprintf(`INSERT INTO bulkhead.memories (tenant_id, id, room_id, author_id, content, created_at)
			SELECT br.tenant_id, gen_random_uuid(), br.id, be.id, 'message ' || k || ': the quick brown fox jumps over the lazy dog', now() - k * interval '1 second'
			FROM br JOIN be ON be.tenant_id = br.tenant_id AND be.n = br.n, generate_series(1, %d) k`, perRoom)},
		{"big room", fmt.Sprintf(`CREATE TEMP TABLE bb AS SELECT (SELECT id FROM bt WHERE n = 1) AS tenant_id, gen_random_uuid() AS id, g AS n FROM generate_series(1, %d) g;
			INSERT INTO bulkhead.entities (tenant_id, id, kind, name) SELECT tenant_id, id, 'external', 'guest ' || n FROM bb;
			INSERT INTO bulkhead.rooms (tenant_id, id, world_id, name)
				SELECT bw.tenant_id, '00000000-0000-4000-8000-00000000b16b', bw.id, 'big room' FROM bw WHERE bw.tenant_id = (SELECT id FROM bt WHERE n = 1);
			INSERT INTO bulkhead.participants (tenant_id, room_id, entity_id) SELECT tenant_id, '00000000-0000-4000-8000-00000000b16b', id FROM bb`, cfg.BigRoom)},
		{"analyze", `ANALYZE`},
	}
	for _, s := range steps {
		t0 := time.Now()
		if _, err := conn.Exec(ctx, s.sql); err != nil {
			return fmt.Errorf("generate %s: %w", s.what, err)
		}
		fmt.Fprintf(cfg.Progress, "  %-12s %8s\n", s.what, time.Since(t0).Round(time.Millisecond))
	}
	for _, t := range postgres.Tables {
		var n int64
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM bulkhead."+t.Name).Scan(&n); err != nil {
			return err
		}
		res.Rows[t.Name] = n
	}
	return nil
}

// loadSamples picks (tenant, room, member) triples to query as, and the
// big room with one of its members.
func loadSamples(ctx context.Context, conn *pgx.Conn) ([]sample, sample, error) {
	rows, err := conn.Query(ctx, `SELECT p.tenant_id, p.room_id, p.entity_id,
		(SELECT m.id FROM bulkhead.memories m WHERE m.tenant_id = p.tenant_id AND m.room_id = p.room_id ORDER BY random() LIMIT 1)
		FROM bulkhead.participants p WHERE p.role = 'owner' ORDER BY random() LIMIT 2000`)
	if err != nil {
		return nil, sample{}, err
	}
	var out []sample
	for rows.Next() {
		var s sample
		if err := rows.Scan(&s.tenant, &s.room, &s.member, &s.memory); err != nil {
			return nil, sample{}, err
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, sample{}, err
	}
	var big sample
	err = conn.QueryRow(ctx, `SELECT tenant_id, room_id, entity_id FROM bulkhead.participants
		WHERE room_id = '00000000-0000-4000-8000-00000000b16b' ORDER BY entity_id DESC LIMIT 1`).Scan(&big.tenant, &big.room, &big.member)
	return out, big, err
}
