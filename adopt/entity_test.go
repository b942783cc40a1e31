package adopt

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/audit"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// caller is who the legacy application says it is: the tenant and the
// entity in its settings ("" for unset).
type caller struct{ tenant, entity string }

// memRow is the test's model of one memory: its tenant and owner ("" for
// NULL), read as the superuser.
type memRow struct{ tenant, owner string }

// entityModel is the independent model of kinds owned and private: the
// rows, and who may read and write them. Nothing in it comes from the
// policies under test.
type entityModel struct {
	kind string
	rows map[string]memRow
	room map[string]string // memory id -> room id
}

func (m *entityModel) visible(c caller, r memRow) bool {
	if c.tenant == "" || r.tenant != c.tenant {
		return false
	}
	return m.kind == KindOwned || (c.entity != "" && r.owner == c.entity)
}

func (m *entityModel) writable(c caller, r memRow) bool {
	return c.tenant != "" && c.entity != "" && r.tenant == c.tenant && r.owner == c.entity
}

// inRoom returns the ids of room's memories that keep(row) accepts, sorted.
func (m *entityModel) inRoom(room string, keep func(memRow) bool) []string {
	var out []string
	for id, r := range m.rows {
		if m.room[id] == room && keep(r) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

func loadEntityModel(t *testing.T, op *pgx.Conn, kind string) *entityModel {
	t.Helper()
	m := &entityModel{kind: kind, rows: map[string]memRow{}, room: map[string]string{}}
	rows, err := op.Query(context.Background(), "SELECT id::text, server_id::text, coalesce(entity_id::text, ''), room_id::text FROM memories")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, room string
		var r memRow
		if err := rows.Scan(&id, &r.tenant, &r.owner, &room); err != nil {
			t.Fatal(err)
		}
		m.rows[id], m.room[id] = r, room
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

// entityTx runs fn as the legacy application with c in its settings.
func entityTx(ctx context.Context, conn *pgx.Conn, c caller, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT set_config('app.current_tenant_id', $1, true), set_config('app.current_entity_id', $2, true)", c.tenant, c.entity); err != nil {
			return err
		}
		return fn(tx)
	})
}

// TestEntityKinds adopts memories as kind owned (the author writes, the
// tenant reads) and as kind private (only the author reads or writes),
// with the owner in elizaOS's entity_id, and checks every statement shape
// against the model for five callers: two entities of one tenant, one of
// another, a tenant without an entity, and no context. In shadow nothing
// is blocked and exactly the rows strict mode would refuse or not reach
// are recorded, with their keys and the caller's entity (a replayed read
// records exactly the rows private hides); enforced, each statement does
// what the model says, no more; rollback goes back through shadow to the
// original catalog. Writes are tested without RETURNING and without a key
// filter, so the SELECT policy can't stand in for a broken write rule.
func TestEntityKinds(t *testing.T) {
	for _, kind := range []string{KindOwned, KindPrivate} {
		t.Run(kind, func(t *testing.T) { testEntityKind(t, kind) })
	}
}

func testEntityKind(t *testing.T, kind string) {
	ctx := context.Background()
	d, op, p := newReviewed(t)
	setKind(p, "memories", kind, "entity_id")
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := Backfill(ctx, op, p, nil, Options{}); err != nil {
		t.Fatal(err)
	}
	s1, s2 := server(1), server(2)
	e11, e12, e21 := md5UUID("e1.1"), md5UUID("e1.2"), md5UUID("e2.1")
	room := md5UUID("r1.1")
	// A memory nobody owns: owned lets the tenant read it and nobody
	// write it; private hides it from everyone.
	if _, err := op.Exec(ctx, "INSERT INTO memories (id, server_id, room_id, entity_id, type, content) VALUES (gen_random_uuid(), $1, $2, NULL, 'message', 'orphan')", s1, room); err != nil {
		t.Fatal(err)
	}
	if err := Shadow(ctx, op, p, nil, Options{}); err != nil {
		t.Fatal(err)
	}
	// Every violation of a statement with its key: no sampling here.
	if _, err := op.Exec(ctx, "UPDATE bulkhead_adopt.settings SET value = '1000000' WHERE name = 'keys_per_transaction'"); err != nil {
		t.Fatal(err)
	}
	m := loadEntityModel(t, op, kind)
	// Status counts the rows without an owner, as the model does.
	ownerless := 0
	for _, r := range m.rows {
		if r.owner == "" {
			ownerless++
		}
	}
	st, err := Status(ctx, op, p)
	if err != nil {
		t.Fatal(err)
	}
	want, note := fmt.Sprintf("%d rows have no entity_id", ownerless), "(no status)"
	for _, ts := range st {
		if ts.Table == "memories" {
			note = ts.Note
		}
	}
	if !strings.HasPrefix(note, want) {
		t.Errorf("status of memories: note %q, want one starting %q", note, want)
	}
	app := mustConnect(t, d.appDSN())
	callers := []caller{{s1, e11}, {s1, e12}, {s2, e21}, {s1, ""}, {"", ""}}

	// The model is not trivial: e1.1 owns some of the room's rows.
	if own := m.inRoom(room, func(r memRow) bool { return m.writable(callers[0], r) }); len(own) == 0 {
		t.Fatalf("model: e1.1 owns no memory of room r1.1")
	}

	recordedAll := func(t *testing.T, c caller, rel string) ([]string, int64) {
		t.Helper()
		return takeViolations(t, op, c, rel)
	}
	// recorded is recordedAll for writes, every one with its key.
	recorded := func(t *testing.T, c caller, rel string) []string {
		t.Helper()
		keys, total := recordedAll(t, c, rel)
		if total != int64(len(keys)) {
			t.Errorf("%d violations recorded without their key: the record was sampled", total-int64(len(keys)))
		}
		return keys
	}

	pool, err := pgxpool.New(ctx, d.adminDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	for _, phase := range []Phase{PhaseShadow, PhaseEnforced} {
		if phase == PhaseEnforced {
			if err := Enforce(ctx, op, p, nil, EnforceOptions{Force: true}); err != nil {
				t.Fatal(err)
			}
			if err := Verify(ctx, op, p, nil); err != nil {
				t.Fatal(err)
			}
			// The audit follows the owned and private policies to the
			// entity setting, which is forgeable until adopt harden, and
			// finds nothing else in them.
			rep, err := audit.Run(ctx, op, audit.Options{RuntimeRole: p.Runtime.Name, TenantColumn: "server_id"})
			if err != nil {
				t.Fatal(err)
			}
			entitySettingFound := false
			for _, f := range rep.Findings {
				if f.Check == "BH802" && f.Object.Name == p.EntitySetting {
					entitySettingFound = true
				}
				if f.Object.Name == "memories" || strings.HasPrefix(f.Object.Name, "bulkhead_adopt_") {
					t.Errorf("audit: %s %s: %s", f.Check, f.Object.Name, f.Detail)
				}
			}
			if !entitySettingFound {
				t.Errorf("audit: BH802 does not name %s", p.EntitySetting)
			}
		}
		shadow := phase == PhaseShadow
		for ci, c := range callers {
			name := fmt.Sprintf("%s/caller%d", phase, ci)

			// A read that forgets both filters.
			rp := NewReplayer(pool, 1)
			var got []string
			err := entityTx(ctx, app, c, func(tx pgx.Tx) error {
				rows, err := rp.Query(ctx, tx, "SELECT id FROM memories WHERE room_id = $1", room)
				for _, r := range rows {
					got = append(got, r[0])
				}
				return err
			})
			rp.Close()
			if err != nil {
				t.Fatalf("%s: read: %v", name, err)
			}
			slices.Sort(got)
			all := m.inRoom(room, func(memRow) bool { return true })
			vis := m.inRoom(room, func(r memRow) bool { return m.visible(c, r) })
			hidden := m.inRoom(room, func(r memRow) bool { return !m.visible(c, r) })
			want := vis
			if shadow {
				want = all
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s: read %d rows, the model says %d", name, len(got), len(want))
			}
			if shadow {
				// A replay keeps the first 100 keys, and the count.
				keys, total := recordedAll(t, c, "query")
				if total != int64(len(hidden)) || len(keys) != min(100, len(hidden)) {
					t.Errorf("%s: the replayed read recorded %d rows (%d keys), the model hides %d", name, total, len(keys), len(hidden))
				}
				for _, k := range keys {
					if _, ok := slices.BinarySearch(hidden, k); !ok {
						t.Errorf("%s: the replay recorded %s, which the model shows the caller", name, k)
					}
				}
			}

			// INSERT, no RETURNING: a row of s1 owned by e1.1.
			newID := uuid.NewString()
			nr := memRow{s1, e11}
			err = entityTx(ctx, app, c, func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, "INSERT INTO memories (id, server_id, room_id, entity_id, type, content) VALUES ($1, $2, $3, $4, 'message', 'new')", newID, s1, room, e11)
				return err
			})
			checkWrite(t, name+": insert", shadow, m.writable(c, nr), err)
			if err == nil {
				m.rows[newID], m.room[newID] = nr, room
			}
			if shadow {
				want := []string{}
				if !m.writable(c, nr) {
					want = []string{newID}
				}
				if keys := recorded(t, c, "public.memories"); !slices.Equal(append([]string{}, keys...), want) {
					t.Errorf("%s: insert recorded %v, want %v", name, keys, want)
				}
			}

			// INSERT ... SELECT: copies of e1.1's messages of the room
			// that the caller can read.
			src := m.inRoom(room, func(r memRow) bool { return r.owner == e11 && (shadow || m.visible(c, r)) })
			copies := min(2, len(src))
			var copyIDs []string
			err = entityTx(ctx, app, c, func(tx pgx.Tx) error {
				rows, err := tx.Query(ctx, "SELECT gen_random_uuid()::text FROM generate_series(1, $1)", copies)
				if err != nil {
					return err
				}
				if copyIDs, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
					return err
				}
				tag, err := tx.Exec(ctx, `INSERT INTO memories (id, server_id, room_id, entity_id, type, content)
  SELECT n.id::uuid, m.server_id, m.room_id, m.entity_id, 'copy', m.content
  FROM (SELECT server_id, room_id, entity_id, content, row_number() OVER (ORDER BY id) AS i FROM memories WHERE room_id = $1 AND entity_id = $2) m
  JOIN unnest($3::text[]) WITH ORDINALITY n(id, i) ON n.i = m.i`, room, e11, copyIDs)
				if err == nil && tag.RowsAffected() != int64(copies) {
					return fmt.Errorf("copied %d rows, the model says %d", tag.RowsAffected(), copies)
				}
				return err
			})
			checkWrite(t, name+": insert select", shadow, copies == 0 || m.writable(c, nr), err)
			if err == nil {
				for _, id := range copyIDs {
					m.rows[id], m.room[id] = nr, room
				}
			}
			if shadow {
				var want []string
				if !m.writable(c, nr) {
					want = slices.Sorted(slices.Values(copyIDs))
				}
				if keys := recorded(t, c, "public.memories"); !slices.Equal(keys, want) {
					t.Errorf("%s: insert select recorded %d keys, want %d", name, len(keys), len(want))
				}
			}

			// UPDATE of the whole room, no RETURNING, no key.
			canUpd := m.inRoom(room, func(r memRow) bool { return m.writable(c, r) })
			notUpd := m.inRoom(room, func(r memRow) bool { return !m.writable(c, r) })
			var n int64
			err = entityTx(ctx, app, c, func(tx pgx.Tx) error {
				tag, err := tx.Exec(ctx, "UPDATE memories SET content = content || '.' WHERE room_id = $1", room)
				n = tag.RowsAffected()
				return err
			})
			wantN := int64(len(canUpd))
			if shadow {
				wantN = int64(len(canUpd) + len(notUpd))
			}
			if err != nil || n != wantN {
				t.Errorf("%s: update of the room: %d rows (%v), the model says %d", name, n, err, wantN)
			}
			if shadow {
				if keys := recorded(t, c, "public.memories"); !slices.Equal(keys, notUpd) {
					t.Errorf("%s: update recorded %d keys, the model says %d", name, len(keys), len(notUpd))
				}
			}

			// UPDATE handing a row of e1.1's to e1.2: its owner may
			// reach it (USING) but not give it away (WITH CHECK).
			mine := m.inRoom(room, func(r memRow) bool { return r.owner == e11 && r.tenant == s1 })[0]
			err = entityTx(ctx, app, c, func(tx pgx.Tx) error {
				tag, err := tx.Exec(ctx, "UPDATE memories SET entity_id = $2 WHERE id = $1", mine, e12)
				n = tag.RowsAffected()
				return err
			})
			switch {
			case shadow:
				if err != nil || n != 1 {
					t.Errorf("%s: hand-over in shadow: %d rows, %v", name, n, err)
				}
				if keys := recorded(t, c, "public.memories"); !slices.Equal(keys, []string{mine}) {
					t.Errorf("%s: hand-over recorded %v, want [%s]", name, keys, mine)
				}
				m.rows[mine] = memRow{s1, e12}
				// Back to e1.1 as the superuser, then drop what the
				// recorder made of that (the superuser has no context).
				if _, err := op.Exec(ctx, "UPDATE memories SET entity_id = $2 WHERE id = $1", mine, e11); err != nil {
					t.Fatal(err)
				}
				if _, err := op.Exec(ctx, "DELETE FROM bulkhead_adopt.violation"); err != nil {
					t.Fatal(err)
				}
				m.rows[mine] = memRow{s1, e11}
			case m.writable(c, m.rows[mine]):
				if sqlState(err) != "42501" {
					t.Errorf("%s: the owner gave its row away: %d rows, %v (want 42501)", name, n, err)
				}
			default:
				if err != nil || n != 0 {
					t.Errorf("%s: a non-owner's hand-over: %d rows, %v (want 0, no error)", name, n, err)
				}
			}

			// DELETE by ids: one row each of e1.1, e1.2 and e2.1.
			pickOne := func(owner string) string {
				for id, r := range m.rows {
					if r.owner == owner {
						return id
					}
				}
				t.Fatalf("model: no row of %s left", owner)
				return ""
			}
			ids := []string{pickOne(e11), pickOne(e12), pickOne(e21)}
			slices.Sort(ids)
			var del, kept []string
			for _, id := range ids {
				if shadow || m.writable(c, m.rows[id]) {
					del = append(del, id)
				}
				if !m.writable(c, m.rows[id]) {
					kept = append(kept, id)
				}
			}
			err = entityTx(ctx, app, c, func(tx pgx.Tx) error {
				tag, err := tx.Exec(ctx, "DELETE FROM memories WHERE id = ANY($1::uuid[])", ids)
				n = tag.RowsAffected()
				return err
			})
			if err != nil || n != int64(len(del)) {
				t.Errorf("%s: delete: %d rows (%v), the model says %d", name, n, err, len(del))
			}
			for _, id := range del {
				delete(m.rows, id)
			}
			if shadow {
				if keys := recorded(t, c, "public.memories"); !slices.Equal(keys, kept) {
					t.Errorf("%s: delete recorded %v, the model says %v", name, keys, kept)
				}
			}
			// The database and the model agree on every row.
			var dbRows int64
			if err := op.QueryRow(ctx, "SELECT count(*) FROM memories").Scan(&dbRows); err != nil || dbRows != int64(len(m.rows)) {
				t.Fatalf("%s: %d memories in the database (%v), %d in the model", name, dbRows, err, len(m.rows))
			}
		}
	}

	// A kind changed after shadow: enforce and rollback refuse, nothing
	// changes.
	other := *p
	other.Tables = slices.Clone(p.Tables)
	for i := range other.Tables {
		if other.Tables[i].Name == "memories" {
			other.Tables[i].Kind = KindTenant
			other.Tables[i].OwnerColumn = ""
		}
	}
	if _, err := Rollback(ctx, op, &other, []string{"memories"}, PhaseShadow, Options{}); !errors.Is(err, ErrPhase) {
		t.Fatalf("rollback with the kind changed to tenant: %v, want ErrPhase", err)
	}
	if err := Verify(ctx, op, p, nil); err != nil {
		t.Fatalf("after the refused rollback: %v", err)
	}

	// Back to shadow: a non-owner's write goes through again, recorded.
	if _, err := Rollback(ctx, op, p, nil, PhaseShadow, Options{}); err != nil {
		t.Fatal(err)
	}
	err = entityTx(ctx, app, callers[1], func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE memories SET content = 'e1.2 was here' WHERE room_id = $1 AND entity_id = $2", room, e11)
		return err
	})
	if err != nil {
		t.Fatalf("shadow again: %v", err)
	}
	if keys := recorded(t, callers[1], "public.memories"); len(keys) != len(m.inRoom(room, func(r memRow) bool { return r.owner == e11 })) || len(keys) == 0 {
		t.Errorf("shadow again recorded %d keys", len(keys))
	}
	if _, err := Rollback(ctx, op, p, nil, PhaseOriginal, Options{}); err != nil {
		t.Fatal(err)
	}
	assertOriginalCatalog(t, op, d)
}

// checkWrite checks a write's outcome: in shadow it always succeeds; once
// enforced it succeeds when the model allows it and fails with 42501 when
// not.
func checkWrite(t *testing.T, name string, shadow, allowed bool, err error) {
	t.Helper()
	switch {
	case shadow || allowed:
		if err != nil {
			t.Errorf("%s: %v, the model allows it", name, err)
		}
	case sqlState(err) != "42501":
		t.Errorf("%s: %v, the model refuses it (want 42501)", name, err)
	}
}

// TestEntityKindsHardened: once adopt harden has run, an owned table's
// writes follow the signed entity, not the application's entity setting:
// the legacy settings open nothing, a context signed for another entity of
// the same tenant writes none of e1.1's rows whatever the legacy setting
// says, one signed for e1.1 writes them, and SET of the signed entity
// setting is refused. Shadow's recorder reads the signed entity too.
func TestEntityKindsHardened(t *testing.T) {
	ctx := context.Background()
	d, op, p := newReviewed(t)
	setKind(p, "memories", KindOwned, "entity_id")
	toShadow(t, op, p)
	if err := Enforce(ctx, op, p, []string{"memories"}, EnforceOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	key := contextKey(t)
	if changed, err := Harden(ctx, op, p, key, HardenOptions{}); err != nil || !changed {
		t.Fatalf("harden: %v, %v", changed, err)
	}
	app := mustConnect(t, d.appDSN())
	s1, e11, e12 := server(1), md5UUID("e1.1"), md5UUID("e1.2")
	room := md5UUID("r1.1")
	owned := count(t, op, "SELECT count(*) FROM memories WHERE room_id = $1 AND entity_id = $2", room, e11)
	if owned == 0 {
		t.Fatal("fixture: e1.1 owns no memory of room r1.1")
	}
	// write updates e1.1's memories of the room with signed entered (nil:
	// none) and the legacy settings naming s1 and e1.1.
	write := func(signed *bulkhead.Scope) (int64, error) {
		var n int64
		err := pgx.BeginFunc(ctx, app, func(tx pgx.Tx) error {
			if signed != nil {
				sql, args, err := key.EnterSQL(*signed)
				if err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, sql, args...); err != nil {
					return err
				}
			}
			if _, err := tx.Exec(ctx, "SELECT set_config('app.current_tenant_id', $1, true), set_config('app.current_entity_id', $2, true)", s1, e11); err != nil {
				return err
			}
			tag, err := tx.Exec(ctx, "UPDATE memories SET content = content || '.' WHERE room_id = $1 AND entity_id = $2", room, e11)
			n = tag.RowsAffected()
			return err
		})
		return n, err
	}
	if n, err := write(nil); err != nil || n != 0 {
		t.Errorf("legacy settings only: %d rows, %v (want 0)", n, err)
	}
	if n, err := write(&bulkhead.Scope{Tenant: uuid.MustParse(s1), Entity: uuid.MustParse(e12)}); err != nil || n != 0 {
		t.Errorf("signed for e1.2, legacy e1.1: %d rows, %v (want 0)", n, err)
	}
	if n, err := write(&bulkhead.Scope{Tenant: uuid.MustParse(s1), Entity: uuid.MustParse(e11)}); err != nil || n != owned {
		t.Errorf("signed for e1.1: %d rows, %v (want %d)", n, err, owned)
	}
	err := pgx.BeginFunc(ctx, app, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "SELECT set_config($1, $2, true)", SignedEntitySetting, e11)
		return err
	})
	if sqlState(err) != "42501" {
		t.Errorf("SET %s by the application: %v, want 42501", SignedEntitySetting, err)
	}
	// Back in shadow the recorder reads the signed entity: a write by
	// e1.2 (signed) of e1.1's rows is recorded under e1.2.
	if _, err := Rollback(ctx, op, p, []string{"memories"}, PhaseShadow, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := op.Exec(ctx, "DELETE FROM bulkhead_adopt.violation"); err != nil {
		t.Fatal(err)
	}
	if n, err := write(&bulkhead.Scope{Tenant: uuid.MustParse(s1), Entity: uuid.MustParse(e12)}); err != nil || n != owned {
		t.Fatalf("shadow, signed for e1.2: %d rows, %v (want %d: nothing blocked)", n, err, owned)
	}
	if n := count(t, op, "SELECT count(*) FROM bulkhead_adopt.violation WHERE rel = 'public.memories' AND entity = $1", e12); n != owned {
		t.Errorf("shadow recorded %d writes under the signed e1.2, want %d", n, owned)
	}
	if n, err := write(&bulkhead.Scope{Tenant: uuid.MustParse(s1), Entity: uuid.MustParse(e11)}); err != nil || n != owned {
		t.Fatalf("shadow, signed for e1.1: %d rows, %v", n, err)
	}
	if n := count(t, op, "SELECT count(*) FROM bulkhead_adopt.violation WHERE rel = 'public.memories' AND entity <> $1", e12); n != 0 {
		t.Errorf("shadow recorded %d writes of the signed owner", n)
	}
}
