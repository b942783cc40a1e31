package adopt

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/audit"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// roomRow is the test's model of one memory: tenant, author ("" for NULL)
// and room, read as the superuser.
type roomRow struct{ tenant, owner, room string }

// roomModel is the independent model of kind room: the memories, the
// membership (participants) and who may read and write which memory.
// Nothing in it comes from the policies under test.
type roomModel struct {
	rows    map[string]roomRow
	members map[[3]string]bool // tenant, room, entity
}

func (m *roomModel) visible(c caller, r roomRow) bool {
	return c.tenant != "" && c.entity != "" && r.tenant == c.tenant && m.members[[3]string{c.tenant, r.room, c.entity}]
}

func (m *roomModel) writable(c caller, r roomRow) bool {
	return m.visible(c, r) && r.owner == c.entity
}

// ids returns the ids of the memories in rooms that keep accepts, sorted.
func (m *roomModel) ids(rooms []string, keep func(roomRow) bool) []string {
	var out []string
	for id, r := range m.rows {
		if slices.Contains(rooms, r.room) && keep(r) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

func loadRoomModel(t *testing.T, op *pgx.Conn) *roomModel {
	t.Helper()
	ctx := context.Background()
	m := &roomModel{rows: map[string]roomRow{}, members: map[[3]string]bool{}}
	rows, err := op.Query(ctx, "SELECT id::text, server_id::text, coalesce(entity_id::text, ''), room_id::text FROM memories")
	if err != nil {
		t.Fatal(err)
	}
	var id string
	var r roomRow
	if _, err := pgx.ForEachRow(rows, []any{&id, &r.tenant, &r.owner, &r.room}, func() error { m.rows[id] = r; return nil }); err != nil {
		t.Fatal(err)
	}
	rows, err = op.Query(ctx, "SELECT server_id::text, room_id::text, entity_id::text FROM participants")
	if err != nil {
		t.Fatal(err)
	}
	var k [3]string
	if _, err := pgx.ForEachRow(rows, []any{&k[0], &k[1], &k[2]}, func() error { m.members[k] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	return m
}

// roomPlan adopts memories as kind room over participants, authors in
// entity_id.
func roomPlan(p *Plan) {
	setKind(p, "memories", KindRoom, "entity_id")
	for i := range p.Tables {
		if p.Tables[i].Name == "memories" {
			p.Tables[i].RoomColumn = "room_id"
			p.Tables[i].Membership = &Membership{Table: "participants", RoomColumn: "room_id", EntityColumn: "entity_id"}
		}
	}
}

// takeViolations deletes and returns the keys shadow recorded for rel
// (sorted) and their total weight, checking that each was recorded under
// c's tenant and entity.
func takeViolations(t *testing.T, op *pgx.Conn, c caller, rel string) ([]string, int64) {
	t.Helper()
	rows, err := op.Query(context.Background(), "DELETE FROM bulkhead_adopt.violation WHERE rel = $1 RETURNING row_key, tenant, entity, weight", rel)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	var total int64
	var k *string
	var tenant, ent string
	var w int64
	_, err = pgx.ForEachRow(rows, []any{&k, &tenant, &ent, &w}, func() error {
		total += w
		if k != nil {
			keys = append(keys, *k)
		}
		if ent != c.entity || tenant != c.tenant {
			t.Errorf("violation recorded under tenant %q, entity %q, want the caller's %q, %q", tenant, ent, c.tenant, c.entity)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	return keys, total
}

// TestRoomKind adopts elizaOS's memories as kind room: a memory is read by
// the members of its room (participants) and written only by its author,
// as itself and a member of the room. Six callers: a member of both rooms
// under test who authors memories there, an entity of the same tenant that
// is a member of only the second room, one that is a member of none, an
// entity of another tenant, a tenant without an entity, and no context.
// They run as the runtime role (whose SELECT on participants comes from
// participants' own shadow step), every statement shape in shadow and
// enforced: a read that forgets every filter (replayed in shadow), an
// INSERT without RETURNING as the caller's own entity into a room (so the
// membership arm of WITH CHECK is tested apart from the author's), an
// UPDATE of two whole rooms without a key filter, an UPDATE moving one of
// the author's rows into a room it is not a member of, an INSERT ... ON
// CONFLICT DO NOTHING proposing that row there (refused by strict mode
// though nothing is written), and a DELETE by ids. In shadow every statement succeeds and exactly the model's refused
// rows are recorded; enforced, each affects exactly the model's rows. The
// audit finds nothing in the policies; a plan that turns memories private
// after shadow (same policy names) is refused by enforce; rollback goes
// back to the original catalog.
func TestRoomKind(t *testing.T) {
	ctx := context.Background()
	d, op, p := newReviewed(t)
	roomPlan(p)
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	s1, s2 := server(1), server(2)
	e11, e12, e14, e21 := md5UUID("e1.1"), md5UUID("e1.2"), md5UUID("e1.4"), md5UUID("e2.1")
	r11, r12, r13 := md5UUID("r1.1"), md5UUID("r1.2"), md5UUID("r1.3")
	rooms := []string{r11, r12}
	// e1.2 leaves r1.1, e1.1 leaves r1.3; e1.4 was never a participant.
	if _, err := op.Exec(ctx, "DELETE FROM participants WHERE (room_id, entity_id) IN (($1, $2), ($3, $4))", r11, e12, r13, e11); err != nil {
		t.Fatal(err)
	}
	// A memory of r1.1 nobody wrote: its members read it, nobody writes it.
	if _, err := op.Exec(ctx, "INSERT INTO memories (id, server_id, room_id, entity_id, type, content) VALUES (gen_random_uuid(), $1, $2, NULL, 'message', 'orphan')", s1, r11); err != nil {
		t.Fatal(err)
	}
	if _, err := Backfill(ctx, op, p, nil, Options{}); err != nil {
		t.Fatal(err)
	}
	if err := Shadow(ctx, op, p, nil, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := op.Exec(ctx, "UPDATE bulkhead_adopt.settings SET value = '1000000' WHERE name = 'keys_per_transaction'"); err != nil {
		t.Fatal(err)
	}
	if _, err := op.Exec(ctx, fmt.Sprintf("ALTER ROLE %s LOGIN PASSWORD 'rt-pw'", d.runtime())); err != nil {
		t.Fatal(err)
	}
	rt := mustConnect(t, cluster.DSN(d.runtime(), "rt-pw", d.name))
	m := loadRoomModel(t, op)
	callers := []caller{{s1, e11}, {s1, e12}, {s1, e14}, {s2, e21}, {s1, ""}, {"", ""}}
	// The model is not trivial: e1.1 reads and writes in both rooms, e1.2
	// reads only r1.2, e1.4 nothing.
	for _, c := range []struct {
		c         caller
		see, none []string
	}{{callers[0], rooms, nil}, {callers[1], []string{r12}, []string{r11}}, {callers[2], nil, rooms}} {
		for _, r := range c.see {
			if len(m.ids([]string{r}, func(x roomRow) bool { return m.visible(c.c, x) })) == 0 {
				t.Fatalf("model: %s sees nothing of room %s", c.c.entity, r)
			}
		}
		for _, r := range c.none {
			if len(m.ids([]string{r}, func(x roomRow) bool { return m.visible(c.c, x) })) != 0 {
				t.Fatalf("model: %s sees room %s", c.c.entity, r)
			}
		}
	}
	pool, err := pgxpool.New(ctx, d.adminDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	const rel = "public.memories"

	for _, phase := range []Phase{PhaseShadow, PhaseEnforced} {
		shadow := phase == PhaseShadow
		if !shadow {
			if err := Enforce(ctx, op, p, nil, EnforceOptions{Force: true}); err != nil {
				t.Fatal(err)
			}
			if err := Verify(ctx, op, p, nil); err != nil {
				t.Fatal(err)
			}
			rep, err := audit.Run(ctx, op, audit.Options{RuntimeRole: p.Runtime.Name, TenantColumn: "server_id"})
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range rep.Findings {
				if f.Object.Name == "memories" || f.Object.Name == "participants" || strings.HasPrefix(f.Object.Name, "bulkhead_adopt_") || strings.HasPrefix(f.Object.Name, "member_") {
					t.Errorf("audit: %s %s: %s", f.Check, f.Object.Name, f.Detail)
				}
			}
		}
		for ci, c := range callers {
			name := fmt.Sprintf("%s/caller%d", phase, ci)

			// A read that forgets every filter but the rooms.
			rp := NewReplayer(pool, 1)
			var got []string
			err := entityTx(ctx, rt, c, func(tx pgx.Tx) error {
				rows, err := rp.Query(ctx, tx, "SELECT id FROM memories WHERE room_id = ANY($1::uuid[])", rooms)
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
			want := m.ids(rooms, func(r roomRow) bool { return shadow || m.visible(c, r) })
			if !slices.Equal(got, want) {
				t.Errorf("%s: read %d rows, the model says %d", name, len(got), len(want))
			}
			if shadow {
				hidden := m.ids(rooms, func(r roomRow) bool { return !m.visible(c, r) })
				keys, total := takeViolations(t, op, c, "query")
				if total != int64(len(hidden)) || len(keys) != min(100, len(hidden)) {
					t.Errorf("%s: the replayed read recorded %d rows (%d keys), the model hides %d", name, total, len(keys), len(hidden))
				}
				for _, k := range keys {
					if _, ok := slices.BinarySearch(hidden, k); !ok {
						t.Errorf("%s: the replay recorded %s, which the model shows the caller", name, k)
					}
				}
			}

			// INSERT, no RETURNING: the caller's own entity as author,
			// into r1.1 (e1.2 is not a member there, e1.1 is).
			for _, room := range rooms {
				newID := uuid.NewString()
				nr := roomRow{c.tenant, c.entity, room}
				if c.tenant == "" {
					nr.tenant = s1
				}
				err = entityTx(ctx, rt, c, func(tx pgx.Tx) error {
					_, err := tx.Exec(ctx, "INSERT INTO memories (id, server_id, room_id, entity_id, type, content) VALUES ($1, $2, $3, NULLIF($4, '')::uuid, 'message', 'new')", newID, nr.tenant, room, c.entity)
					return err
				})
				checkWrite(t, name+": insert into "+room, shadow, m.writable(c, nr), err)
				if err == nil {
					m.rows[newID] = nr
				}
				if shadow {
					want := []string(nil)
					if !m.writable(c, nr) {
						want = []string{newID}
					}
					if keys, _ := takeViolations(t, op, c, rel); !slices.Equal(keys, want) {
						t.Errorf("%s: insert into %s recorded %v, want %v", name, room, keys, want)
					}
				}
			}

			// UPDATE of both rooms, no RETURNING, no key.
			canUpd := m.ids(rooms, func(r roomRow) bool { return m.writable(c, r) })
			notUpd := m.ids(rooms, func(r roomRow) bool { return !m.writable(c, r) })
			var n int64
			err = entityTx(ctx, rt, c, func(tx pgx.Tx) error {
				tag, err := tx.Exec(ctx, "UPDATE memories SET content = content || '.' WHERE room_id = ANY($1::uuid[])", rooms)
				n = tag.RowsAffected()
				return err
			})
			wantN := int64(len(canUpd))
			if shadow {
				wantN += int64(len(notUpd))
			}
			if err != nil || n != wantN {
				t.Errorf("%s: update of the rooms: %d rows (%v), the model says %d", name, n, err, wantN)
			}
			if shadow {
				if keys, _ := takeViolations(t, op, c, rel); !slices.Equal(keys, notUpd) {
					t.Errorf("%s: update recorded %d keys, the model says %d", name, len(keys), len(notUpd))
				}
			}

			// UPDATE moving one of e1.1's rows of r1.1 into r1.3, where
			// e1.1 is not a member: its author reaches it (USING) but may
			// not put it there (WITH CHECK).
			mine := m.ids([]string{r11}, func(r roomRow) bool { return r.owner == e11 && r.tenant == s1 })[0]
			err = entityTx(ctx, rt, c, func(tx pgx.Tx) error {
				tag, err := tx.Exec(ctx, "UPDATE memories SET room_id = $2 WHERE id = $1", mine, r13)
				n = tag.RowsAffected()
				return err
			})
			switch {
			case shadow:
				if err != nil || n != 1 {
					t.Errorf("%s: move in shadow: %d rows, %v", name, n, err)
				}
				if keys, _ := takeViolations(t, op, c, rel); !slices.Equal(keys, []string{mine}) {
					t.Errorf("%s: move recorded %v, want [%s]", name, keys, mine)
				}
				if _, err := op.Exec(ctx, "UPDATE memories SET room_id = $2 WHERE id = $1", mine, r11); err != nil {
					t.Fatal(err)
				}
				if _, err := op.Exec(ctx, "DELETE FROM bulkhead_adopt.violation"); err != nil {
					t.Fatal(err)
				}
			case m.writable(c, m.rows[mine]):
				if sqlState(err) != "42501" {
					t.Errorf("%s: the author moved its row into a room it is not a member of: %d rows, %v (want 42501)", name, n, err)
				}
			default:
				if err != nil || n != 0 {
					t.Errorf("%s: a move by another: %d rows, %v (want 0, no error)", name, n, err)
				}
			}

			// INSERT ... ON CONFLICT DO NOTHING proposing e1.1's existing
			// row in r1.3: nothing is written, but strict mode checks the
			// proposed row first and refuses it, for every caller (e1.1 is
			// not a member of r1.3; the others aren't its author).
			err = entityTx(ctx, rt, c, func(tx pgx.Tx) error {
				tag, err := tx.Exec(ctx, "INSERT INTO memories (id, server_id, room_id, entity_id, type, content) VALUES ($1, $2, $3, $4, 'message', 'upsert') ON CONFLICT (id) DO NOTHING", mine, s1, r13, e11)
				n = tag.RowsAffected()
				return err
			})
			if shadow {
				if err != nil || n != 0 {
					t.Errorf("%s: upsert in shadow: %d rows, %v (want 0, no error)", name, n, err)
				}
				if keys, _ := takeViolations(t, op, c, rel); !slices.Equal(keys, []string{mine}) {
					t.Errorf("%s: upsert recorded %v, want [%s]", name, keys, mine)
				}
			} else if sqlState(err) != "42501" {
				t.Errorf("%s: upsert of a row strict mode refuses: %d rows, %v (want 42501)", name, n, err)
			}

			// DELETE by ids: one row each of e1.1 (r1.1), e1.2 (r1.2) and
			// e2.1.
			pickOne := func(owner, room string) string {
				for id, r := range m.rows {
					if r.owner == owner && (room == "" || r.room == room) {
						return id
					}
				}
				t.Fatalf("model: no row of %s left in %q", owner, room)
				return ""
			}
			ids := []string{pickOne(e11, r11), pickOne(e12, r12), pickOne(e21, "")}
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
			err = entityTx(ctx, rt, c, func(tx pgx.Tx) error {
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
				if keys, _ := takeViolations(t, op, c, rel); !slices.Equal(keys, kept) {
					t.Errorf("%s: delete recorded %v, the model says %v", name, keys, kept)
				}
			}
			if n := count(t, op, "SELECT count(*) FROM memories"); n != int64(len(m.rows)) {
				t.Fatalf("%s: %d memories in the database, %d in the model", name, n, len(m.rows))
			}
		}
	}

	// Private has the same policy names as room: enforce and rollback
	// still refuse a plan changed after shadow.
	other := *p
	other.Tables = slices.Clone(p.Tables)
	for i := range other.Tables {
		if other.Tables[i].Name == "memories" {
			other.Tables[i].Kind, other.Tables[i].RoomColumn, other.Tables[i].Membership = KindPrivate, "", nil
		}
	}
	if _, err := Rollback(ctx, op, &other, []string{"memories"}, PhaseShadow, Options{}); !errors.Is(err, ErrPhase) {
		t.Fatalf("rollback with the kind changed to private: %v, want ErrPhase", err)
	}
	if _, err := Rollback(ctx, op, p, []string{"memories"}, PhaseShadow, Options{}); err != nil {
		t.Fatal(err)
	}
	if err := Enforce(ctx, op, &other, []string{"memories"}, EnforceOptions{Force: true}); !errors.Is(err, ErrPhase) {
		t.Fatalf("enforce with the kind changed to private: %v, want ErrPhase", err)
	}
	// So is one whose membership table compares another tenant column.
	moved := *p
	moved.Tables = slices.Clone(p.Tables)
	for i := range moved.Tables {
		if moved.Tables[i].Name == "participants" {
			moved.Tables[i].TenantColumn = "id"
		}
	}
	if err := Enforce(ctx, op, &moved, []string{"memories"}, EnforceOptions{Force: true}); !errors.Is(err, ErrPhase) {
		t.Fatalf("enforce with the membership's tenant column changed: %v, want ErrPhase", err)
	}
	// A runtime role that can log in, or is connected, is kept.
	rt.Close(ctx)
	if _, err := op.Exec(ctx, fmt.Sprintf("ALTER ROLE %s NOLOGIN", d.runtime())); err != nil {
		t.Fatal(err)
	}
	if _, err := Rollback(ctx, op, p, nil, PhaseOriginal, Options{}); err != nil {
		t.Fatal(err)
	}
	assertOriginalCatalog(t, op, d)
	if n := count(t, op, "SELECT count(*) FROM pg_proc WHERE proname LIKE 'member\\_%' AND pronamespace::regnamespace::text = 'bulkhead_adopt'"); n != 0 {
		t.Errorf("rollback left %d membership functions", n)
	}
}

// TestRoomKindNeedsItsMembership: a room table's policies read its
// membership table as the runtime role, which holds SELECT on it from that
// table's shadow step on. Shadow refuses the room table alone while the
// membership table is below shadow, and steps both when both are named
// (the membership table first, whatever the order: with it locked, the
// room table is left as it was); rollback refuses to take the membership
// table below shadow while the room table stays, and takes both back when
// both are named (the room table first: with it locked, the membership
// table stays).
func TestRoomKindNeedsItsMembership(t *testing.T) {
	ctx := context.Background()
	d, op, p := newReviewed(t)
	roomPlan(p)
	if _, err := Backfill(ctx, op, p, nil, Options{}); err != nil {
		t.Fatal(err)
	}
	if err := Shadow(ctx, op, p, []string{"memories"}, Options{}); !errors.Is(err, ErrPhase) || !strings.Contains(err.Error(), "participants") {
		t.Fatalf("shadow of memories alone: %v, want ErrPhase naming participants", err)
	}
	if ph := phases(t, op, p); ph["memories"] != PhaseBackfilled || ph["participants"] != PhaseBackfilled {
		t.Fatalf("after the refused shadow: %v", ph)
	}
	// held runs fn while another session holds table locked: a step on it
	// gives up after its retries.
	short := Options{LockTimeout: 50 * time.Millisecond, Retries: 1}
	held := func(table string, fn func() error) error {
		lk := mustConnect(t, d.adminDSN())
		defer lk.Close(ctx)
		tx, err := lk.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, "LOCK TABLE "+table+" IN ACCESS SHARE MODE"); err != nil {
			t.Fatal(err)
		}
		return fn()
	}
	// Named room table first, membership table locked: the membership
	// table steps first, fails, and the room table is left as it was.
	if err := held("participants", func() error { return Shadow(ctx, op, p, []string{"memories", "participants"}, short) }); err == nil {
		t.Fatal("shadow with participants locked succeeded")
	}
	if ph := phases(t, op, p); ph["memories"] != PhaseBackfilled {
		t.Fatalf("memories went to shadow before participants: %v", ph)
	}
	if err := Shadow(ctx, op, p, []string{"memories", "participants"}, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Rollback(ctx, op, p, []string{"participants"}, "", Options{}); !errors.Is(err, ErrPhase) || !strings.Contains(err.Error(), "memories") {
		t.Fatalf("rollback of participants alone: %v, want ErrPhase naming memories", err)
	}
	if ph := phases(t, op, p); ph["memories"] != PhaseShadow || ph["participants"] != PhaseShadow {
		t.Fatalf("after the refused rollback: %v", ph)
	}
	// Named membership table first, room table locked: the room table
	// steps back first, fails, and the membership table stays.
	if err := held("memories", func() error {
		_, err := Rollback(ctx, op, p, []string{"participants", "memories"}, PhaseBackfilled, short)
		return err
	}); err == nil {
		t.Fatal("rollback with memories locked succeeded")
	}
	if ph := phases(t, op, p); ph["participants"] != PhaseShadow {
		t.Fatalf("participants rolled back before memories: %v", ph)
	}
	if _, err := Rollback(ctx, op, p, []string{"participants", "memories"}, PhaseBackfilled, Options{}); err != nil {
		t.Fatal(err)
	}
	if ph := phases(t, op, p); ph["memories"] != PhaseBackfilled || ph["participants"] != PhaseBackfilled {
		t.Fatalf("after the rollback of both: %v", ph)
	}
}

// TestRoomKindHardened: once adopt harden has run, a room table's reads
// follow the signed entity's membership, not the application's entity
// setting, enforced and in shadow (where the recorder's membership check
// takes the signed context too).
func TestRoomKindHardened(t *testing.T) {
	ctx := context.Background()
	d, op, p := newReviewed(t)
	roomPlan(p)
	toShadow(t, op, p)
	if err := Enforce(ctx, op, p, nil, EnforceOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	key := contextKey(t)
	if changed, err := Harden(ctx, op, p, key, HardenOptions{}); err != nil || !changed {
		t.Fatalf("harden: %v, %v", changed, err)
	}
	app := mustConnect(t, d.appDSN())
	s1, e11, e14 := server(1), md5UUID("e1.1"), md5UUID("e1.4")
	r11 := md5UUID("r1.1")
	inRoom := count(t, op, "SELECT count(*) FROM memories WHERE room_id = $1", r11)
	if inRoom == 0 || count(t, op, "SELECT count(*) FROM participants WHERE room_id = $1 AND entity_id = $2", r11, e11) != 1 ||
		count(t, op, "SELECT count(*) FROM participants WHERE entity_id = $1", e14) != 0 {
		t.Fatal("fixture: want memories in r1.1, e1.1 a participant of it and e1.4 of nothing")
	}
	// run runs sql with signed entered (nil: none) and the legacy settings
	// naming s1 and e1.1, and returns the rows it counted or affected.
	run := func(signed *uuid.UUID, sql string, args ...any) (int64, error) {
		var n int64
		err := pgx.BeginFunc(ctx, app, func(tx pgx.Tx) error {
			if signed != nil {
				q, a, err := key.EnterSQL(bulkhead.Scope{Tenant: uuid.MustParse(s1), Entity: *signed})
				if err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, q, a...); err != nil {
					return err
				}
			}
			if _, err := tx.Exec(ctx, "SELECT set_config('app.current_tenant_id', $1, true), set_config('app.current_entity_id', $2, true)", s1, e11); err != nil {
				return err
			}
			if strings.HasPrefix(sql, "SELECT") {
				return tx.QueryRow(ctx, sql, args...).Scan(&n)
			}
			tag, err := tx.Exec(ctx, sql, args...)
			n = tag.RowsAffected()
			return err
		})
		return n, err
	}
	read := "SELECT count(*) FROM memories WHERE room_id = $1"
	a, b := uuid.MustParse(e11), uuid.MustParse(e14)
	if n, err := run(nil, read, r11); err != nil || n != 0 {
		t.Errorf("legacy settings only: %d rows, %v (want 0)", n, err)
	}
	if n, err := run(&b, read, r11); err != nil || n != 0 {
		t.Errorf("signed for e1.4, legacy e1.1: %d rows, %v (want 0)", n, err)
	}
	if n, err := run(&a, read, r11); err != nil || n != inRoom {
		t.Errorf("signed for e1.1: %d rows, %v (want %d)", n, err, inRoom)
	}
	// Back in shadow: e1.4 (signed) writing as itself into r1.1 is
	// recorded under e1.4; e1.1 doing the same is not recorded.
	if _, err := Rollback(ctx, op, p, []string{"memories"}, PhaseShadow, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := op.Exec(ctx, "DELETE FROM bulkhead_adopt.violation"); err != nil {
		t.Fatal(err)
	}
	ins := "INSERT INTO memories (id, server_id, room_id, entity_id, type, content) VALUES (gen_random_uuid(), $1, $2, $3, 'message', 'signed')"
	if _, err := run(&b, ins, s1, r11, e14); err != nil {
		t.Fatalf("shadow, signed e1.4: %v (nothing blocked)", err)
	}
	if n := count(t, op, "SELECT count(*) FROM bulkhead_adopt.violation WHERE rel = 'public.memories' AND entity = $1", e14); n != 1 {
		t.Errorf("shadow recorded %d writes of the signed non-member e1.4, want 1", n)
	}
	if _, err := run(&a, ins, s1, r11, e11); err != nil {
		t.Fatalf("shadow, signed e1.1: %v", err)
	}
	if n := count(t, op, "SELECT count(*) FROM bulkhead_adopt.violation WHERE rel = 'public.memories' AND entity <> $1", e14); n != 0 {
		t.Errorf("shadow recorded %d writes of the signed member", n)
	}
	// Undoing harden rebuilds the recorder from the plan: refused when the
	// plan's entry changed since shadow (private would record no
	// membership), and the context stays signed.
	other := *p
	other.Tables = slices.Clone(p.Tables)
	for i := range other.Tables {
		if other.Tables[i].Name == "memories" {
			other.Tables[i].Kind, other.Tables[i].RoomColumn, other.Tables[i].Membership = KindPrivate, "", nil
		}
	}
	if _, err := Unharden(ctx, op, &other, Options{}); !errors.Is(err, ErrPhase) {
		t.Fatalf("harden --undo with memories changed to private: %v, want ErrPhase", err)
	}
	if mode, err := ContextMode(ctx, op, p); err != nil || mode == ContextLegacy {
		t.Errorf("after the refused undo: context %q, %v", mode, err)
	}
}
