package adopt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// previous is the phase before ph.
func previous(ph Phase) Phase {
	switch ph {
	case PhaseEnforced:
		return PhaseShadow
	case PhaseShadow:
		return PhaseBackfilled
	}
	return PhaseOriginal
}

func rank(ph Phase) int {
	switch ph {
	case PhaseBackfilled:
		return 1
	case PhaseShadow:
		return 2
	case PhaseEnforced:
		return 3
	}
	return 0
}

// Rollback moves each named table (all when empty) back: one phase when to
// is empty, else step by step down to phase to. Each step is one
// transaction that also records the phase, except undoing a backfill of an
// existing column, which sets the keys backfill filled back to NULL in
// batches: the table is Original from the first of them, with a note
// saying the rollback is in progress, so that no step taking a backfilled
// table takes it; run again, Rollback finishes the job. Every table's move
// is checked (its phase, the target, triggers that would fire) before any
// table takes a step. Data adopt didn't write is not touched. A runtime
// role adopt created is dropped once no table needs it, unless it can log
// in or is connected (then it is kept and reported in the returned notes).
func Rollback(ctx context.Context, conn *pgx.Conn, p *Plan, names []string, to Phase, o Options) ([]string, error) {
	o = o.withDefaults()
	if to != "" && to != PhaseOriginal && to != PhaseBackfilled && to != PhaseShadow {
		return nil, fmt.Errorf("%w: rollback --to %q: want original, backfilled or shadow", ErrPhase, to)
	}
	tables, err := pick(p, names)
	if err != nil {
		return nil, err
	}
	// Every table's move is settled, and refused, before any table takes a
	// step.
	sts, err := Status(ctx, conn, p)
	if err != nil {
		return nil, err
	}
	final := map[string]Phase{} // every table's phase once the run is over
	byName := map[string]TableStatus{}
	for _, st := range sts {
		final[st.Table], byName[st.Table] = st.Phase, st
	}
	type move struct {
		t           Table
		cur, target Phase
	}
	var moves []move
	for _, t := range tables {
		st := byName[t.Name]
		m := move{t: t, cur: st.Phase, target: to}
		if m.target == "" {
			m.target = previous(m.cur)
		}
		switch {
		case m.cur == PhaseOriginal && st.UpdatedAt.IsZero():
			if to == "" {
				return nil, fmt.Errorf("%w: %s is original: nothing to roll back", ErrPhase, t.Name)
			}
			continue
		case m.cur == PhaseOriginal:
			// A backfill that stopped short (rows no rule covers, or killed),
			// or a rollback that did, leaves the table original with state:
			// the added column, the default, values filled so far. Undo those.
			m.target = PhaseOriginal
		case rank(m.target) > rank(m.cur):
			return nil, fmt.Errorf("%w: %s is %s, can't roll back to %s", ErrPhase, t.Name, m.cur, m.target)
		}
		// Undoing a backfill updates rows: refused when the table's own
		// triggers would fire.
		if m.target == PhaseOriginal {
			if err := refuseTriggers(ctx, conn, p, t); err != nil {
				return nil, err
			}
		}
		moves = append(moves, m)
		final[t.Name] = m.target
	}
	if err := keepMemberships(p, final); err != nil {
		return nil, err
	}
	// Room tables step back before the membership tables they read.
	slices.SortStableFunc(moves, func(a, b move) int { return roomFirst(a.t, b.t) })
	var notes []string
	for _, m := range moves {
		if m.cur == PhaseOriginal {
			if err := undoBackfill(ctx, conn, p, m.t, PhaseOriginal, o); err != nil {
				return notes, fmt.Errorf("rollback %s's partial backfill: %w", m.t.Name, err)
			}
			continue
		}
		for cur := m.cur; rank(cur) > rank(m.target); cur = previous(cur) {
			if err := stepBack(ctx, conn, p, m.t, cur, o); err != nil {
				return notes, fmt.Errorf("rollback %s from %s: %w", m.t.Name, cur, err)
			}
		}
	}
	n, err := dropRoleIfUnused(ctx, conn, p)
	if n != "" {
		notes = append(notes, n)
	}
	return notes, err
}

// keepMemberships refuses a rollback that would leave a room table in
// shadow or enforced while its membership table is below shadow: the room
// table's policies and recorder read the membership table as the runtime
// role, which holds SELECT on it only from its shadow step on.
func keepMemberships(p *Plan, final map[string]Phase) error {
	var errs []error
	for _, t := range p.TenantTables() {
		mt, ok := p.membershipOf(t)
		if ok && rank(final[t.Name]) >= rank(PhaseShadow) && rank(final[mt.Name]) < rank(PhaseShadow) {
			errs = append(errs, fmt.Errorf("%s would be %s while %s, the membership table its policies read, is %s: roll %s back to %s first, or in the same run", t.Name, final[t.Name], mt.Name, final[mt.Name], t.Name, PhaseBackfilled))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrPhase, errors.Join(errs...))
	}
	return nil
}

// roomFirst orders room tables before the others (a membership table is
// never a room table).
func roomFirst(a, b Table) int {
	isRoom := func(t Table) int {
		if t.Kind == KindRoom {
			return 0
		}
		return 1
	}
	return isRoom(a) - isRoom(b)
}

func stepBack(ctx context.Context, conn *pgx.Conn, p *Plan, t Table, from Phase, o Options) error {
	q := qident(p.Schema, t.Name)
	rel := qualified(p, t.Name)
	switch from {
	case PhaseEnforced:
		pk, err := primaryKey(ctx, conn, q)
		if err != nil {
			return err
		}
		return withTx(ctx, conn, o.LockTimeout, o.Retries, func(tx pgx.Tx) error {
			if err := expectPhase(ctx, tx, p, t, PhaseEnforced); err != nil {
				return err
			}
			// The recorder comes back as this version writes it.
			if err := installState(ctx, tx, p); err != nil {
				return err
			}
			ep, err := Effective(ctx, tx, p)
			if err != nil {
				return err
			}
			if err := samePolicies(ctx, tx, p, t); err != nil {
				return err
			}
			stmts, err := unenforceSQL(ep, t, pk)
			if err != nil {
				return err
			}
			if err := execAll(ctx, tx, stmts); err != nil {
				return err
			}
			return setPhase(ctx, tx, p, t.Name, PhaseEnforced, PhaseShadow)
		})
	case PhaseShadow:
		return withTx(ctx, conn, o.LockTimeout, o.Retries, func(tx pgx.Tx) error {
			if err := expectPhase(ctx, tx, p, t, PhaseShadow); err != nil {
				return err
			}
			var orig struct {
				RLS   bool `json:"rls"`
				Force bool `json:"force"`
				// Granted is what shadow granted. An earlier version
				// recorded none, but the role's table-level privileges
				// before it (Privs): those are restored.
				Granted *[]string `json:"granted_privileges"`
				Privs   []string  `json:"runtime_privileges"`
			}
			var raw []byte
			if err := tx.QueryRow(ctx, "SELECT original FROM "+StateSchema+".tables WHERE rel = $1", rel).Scan(&raw); err != nil {
				return err
			}
			if err := json.Unmarshal(raw, &orig); err != nil {
				return fmt.Errorf("read original state: %w", err)
			}
			stmts := dropTriggerSQL(p, t)
			for _, name := range policyNames {
				stmts = append(stmts, fmt.Sprintf("DROP POLICY IF EXISTS %s ON %s", name, q))
			}
			stmts = append(stmts, closeSwitchSQL(q))
			switch {
			case orig.Granted != nil && len(*orig.Granted) > 0:
				stmts = append(stmts, fmt.Sprintf("REVOKE %s ON %s FROM %s", strings.Join(*orig.Granted, ", "), q, ident(p.Runtime.Name)))
			case orig.Granted == nil:
				stmts = append(stmts, fmt.Sprintf("REVOKE ALL ON %s FROM %s", q, ident(p.Runtime.Name)))
				if len(orig.Privs) > 0 {
					stmts = append(stmts, fmt.Sprintf("GRANT %s ON %s TO %s", strings.Join(orig.Privs, ", "), q, ident(p.Runtime.Name)))
				}
			}
			if !orig.Force {
				stmts = append(stmts, "ALTER TABLE "+q+" NO FORCE ROW LEVEL SECURITY")
			}
			if !orig.RLS {
				stmts = append(stmts, "ALTER TABLE "+q+" DISABLE ROW LEVEL SECURITY")
			}
			if err := execAll(ctx, tx, stmts); err != nil {
				return err
			}
			// The shadow step's note (rows without an owner) is shadow's.
			if _, err := tx.Exec(ctx, "UPDATE "+StateSchema+".tables SET note = NULL WHERE rel = $1", rel); err != nil {
				return err
			}
			return setPhase(ctx, tx, p, t.Name, PhaseShadow, PhaseBackfilled)
		})
	case PhaseBackfilled:
		return undoBackfill(ctx, conn, p, t, PhaseBackfilled, o)
	}
	return fmt.Errorf("%w: nothing to roll back from %s", ErrPhase, from)
}

// undoBackfill restores the foreign keys Keys replaced, drops the NOT NULL
// check, sets the tenants and owners backfill filled back to NULL
// (batched), restores the default and drops an added column. from is
// Backfilled, or Original for a backfill that stopped short or a rollback
// that did. Its first transaction moves the table to Original (with a
// note saying a rollback is in progress) and forgets backfill's progress:
// from then on the table is no longer backfilled (it may hold NULLs), so
// shadow and keys refuse it, a rollback run again finishes the job, and a
// backfill run again runs its rules afresh. It holds the table's run lock
// (lockRun) throughout. Rollback has refused a table whose triggers would
// fire.
func undoBackfill(ctx context.Context, conn *pgx.Conn, p *Plan, t Table, from Phase, o Options) error {
	q := qident(p.Schema, t.Name)
	rel := qualified(p, t.Name)
	unlock, err := lockRun(ctx, conn, p, t)
	if err != nil {
		return err
	}
	defer unlock()
	// Tenant-carrying keys need the tenant column: the application's own
	// keys come back first.
	if err := undoKeysOf(ctx, conn, p, t, o); err != nil {
		return fmt.Errorf("restore foreign keys: %w", err)
	}
	var added, hadDefault, notNull bool
	err = withTx(ctx, conn, o.LockTimeout, o.Retries, func(tx pgx.Tx) error {
		if err := expectPhase(ctx, tx, p, t, from); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, "SELECT added_column, coalesce((original->>'had_default')::boolean, false), coalesce((original->>'not_null')::boolean, false) FROM "+StateSchema+".tables WHERE rel = $1",
			rel).Scan(&added, &hadDefault, &notNull); err != nil {
			return err
		}
		stmts := []string{fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT IF EXISTS %s", q, ident(notNullName(t)))}
		if !added && !notNull {
			stmts = append(stmts, fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s DROP NOT NULL", q, ident(t.TenantColumn)))
		}
		stmts = append(stmts,
			fmt.Sprintf("DELETE FROM %s.progress WHERE rel = %s", StateSchema, lit(rel)),
			fmt.Sprintf("UPDATE %s.tables SET note = %s WHERE rel = %s", StateSchema, lit(rollingBackNote), lit(rel)))
		if err := execAll(ctx, tx, stmts); err != nil {
			return err
		}
		if from == PhaseOriginal {
			return nil
		}
		return setPhase(ctx, tx, p, t.Name, from, PhaseOriginal)
	})
	if err != nil {
		return err
	}
	pk, err := primaryKey(ctx, conn, q)
	if err != nil {
		return err
	}
	if !added {
		// A state schema from before backfill recorded values has no val
		// column: add it (its keys then have none, and are cleared).
		err := withTx(ctx, conn, o.LockTimeout, o.Retries, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, backfilledValSQL)
			return err
		})
		if err != nil {
			return err
		}
		if err := restoreNull(ctx, conn, t.Name, q, rel, pk, "backfilled", t.TenantColumn, o); err != nil {
			return fmt.Errorf("restore NULL tenants: %w", err)
		}
	}
	owners, err := stateTableExists(ctx, conn, "owner_backfilled")
	if err != nil {
		return err
	}
	if owners {
		var ownerCols []string
		if err := conn.QueryRow(ctx, "SELECT coalesce(array_agg(DISTINCT col), '{}') FROM "+StateSchema+".owner_backfilled WHERE rel = $1", rel).Scan(&ownerCols); err != nil {
			return err
		}
		for _, c := range ownerCols {
			if err := restoreNull(ctx, conn, t.Name, q, rel, pk, "owner_backfilled", c, o); err != nil {
				return fmt.Errorf("restore NULL owners: %w", err)
			}
		}
	}
	return withTx(ctx, conn, o.LockTimeout, o.Retries, func(tx pgx.Tx) error {
		if err := expectPhase(ctx, tx, p, t, PhaseOriginal); err != nil {
			return err
		}
		var stmts []string
		if added {
			stmts = append(stmts, fmt.Sprintf("ALTER TABLE %s DROP COLUMN IF EXISTS %s", q, ident(t.TenantColumn)))
		} else if !hadDefault {
			stmts = append(stmts, fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s DROP DEFAULT", q, ident(t.TenantColumn)))
		}
		stmts = append(stmts,
			fmt.Sprintf("DELETE FROM %s.progress WHERE rel = %s", StateSchema, lit(rel)),
			fmt.Sprintf("DELETE FROM %s.backfilled WHERE rel = %s", StateSchema, lit(rel)))
		if owners {
			stmts = append(stmts, fmt.Sprintf("DELETE FROM %s.owner_backfilled WHERE rel = %s", StateSchema, lit(rel)))
		}
		if err := execAll(ctx, tx, stmts); err != nil {
			return err
		}
		// Original is the absence of state: a later backfill starts afresh.
		_, err := tx.Exec(ctx, "DELETE FROM "+StateSchema+".tables WHERE rel = $1", rel)
		return err
	})
}

// rollingBackNote is the status note of a table whose rollback to
// original has begun and not finished.
const rollingBackNote = "rollback to original in progress: run adopt rollback --to original again to finish it, or backfill to fill it again"

// lockRun takes t's run lock: a session-level advisory lock held by the
// steps that span many transactions (a table's backfill, and undoing it),
// so that two of them never work on one table at once; the second is
// refused (ErrPhase). The returned function releases it; a killed run's
// session ends, and with it the lock.
func lockRun(ctx context.Context, conn *pgx.Conn, p *Plan, t Table) (func(), error) {
	key := "bulkhead_adopt run " + qualified(p, t.Name)
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", key).Scan(&ok); err != nil {
		return nil, fmt.Errorf("lock %s: %w", t.Name, err)
	}
	if !ok {
		return nil, fmt.Errorf("%w: another adopt run (backfill or rollback) is working on %s: wait for it to end", ErrPhase, t.Name)
	}
	return func() {
		// Best effort: if the session is gone, so is its lock.
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(hashtextextended($1, 0))", key)
	}, nil
}

// restoreNull sets column back to NULL in the rows of q (table, state rel) whose
// keys the state table record holds, while the column still holds the
// value backfill wrote (a tenant key recorded before values were has
// none, and is cleared), deleting the records as it goes: in batches,
// each one transaction, so a killed rollback resumes.
func restoreNull(ctx context.Context, conn *pgx.Conn, table, q, rel string, pk []string, record, column string, o Options) error {
	// The recorded key is a jsonb object of the primary key columns.
	match := make([]string, len(pk), len(pk)+1)
	for i, c := range pk {
		match[i] = fmt.Sprintf("t.%s = (SELECT j.%s FROM jsonb_populate_record(NULL::%s, b.key) j)", ident(c), ident(c), q)
	}
	col := ""
	if record == "owner_backfilled" {
		col = " AND col = " + lit(column)
	}
	match = append(match, fmt.Sprintf("(b.val IS NULL OR t.%s::text = b.val)", ident(column)))
	batch := fmt.Sprintf(`WITH b AS (DELETE FROM %[1]s.%[2]s WHERE ctid = ANY(ARRAY(SELECT ctid FROM %[1]s.%[2]s WHERE rel = $1%[3]s LIMIT $2)) RETURNING key, val),
u AS (UPDATE %[4]s t SET %[5]s = NULL FROM b WHERE %[6]s RETURNING 1)
SELECT (SELECT count(*) FROM b)`, StateSchema, record, col, q, ident(column), strings.Join(match, " AND "))
	var total, done int64
	if o.Progress != nil {
		if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s.%s WHERE rel = $1%s", StateSchema, record, col), rel).Scan(&total); err != nil {
			return err
		}
	}
	start := time.Now()
	for {
		var n int64
		err := withTx(ctx, conn, o.LockTimeout, o.Retries, func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, batch, rel, o.BatchSize).Scan(&n)
		})
		if err != nil || n == 0 {
			return err
		}
		if done += n; o.Progress != nil {
			o.Progress(table, "restore "+column, done, total, float64(done)/time.Since(start).Seconds())
		}
	}
}

// dropRoleIfUnused drops the runtime role adopt created once no table is
// in shadow or enforced, unless it can log in or has sessions (the
// application may be using it): then it is kept and a note says so.
func dropRoleIfUnused(ctx context.Context, conn *pgx.Conn, p *Plan) (string, error) {
	var created, inUse, login bool
	var sessions int
	err := conn.QueryRow(ctx, `SELECT r.created,
    EXISTS (SELECT 1 FROM `+StateSchema+`.tables t WHERE t.phase IN ('shadow', 'enforced')),
    coalesce((SELECT rolcanlogin FROM pg_roles WHERE rolname = r.name), false),
    (SELECT count(*) FROM pg_stat_activity WHERE usename = r.name)
  FROM `+StateSchema+`.roles r WHERE r.name = $1`, p.Runtime.Name).Scan(&created, &inUse, &login, &sessions)
	if errors.Is(err, pgx.ErrNoRows) || sqlState(err) == "42P01" {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read runtime role: %w", err)
	}
	if !created || inUse {
		return "", nil
	}
	if login || sessions > 0 {
		return fmt.Sprintf("runtime role %s kept: it can log in or is connected (drop it once the application no longer uses it)", p.Runtime.Name), nil
	}
	r := ident(p.Runtime.Name)
	return "", pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		return execAll(ctx, tx, []string{
			fmt.Sprintf("REVOKE USAGE ON SCHEMA %s FROM %s", ident(p.Schema), r),
			"DROP ROLE " + r,
			fmt.Sprintf("DELETE FROM %s.roles WHERE name = %s", StateSchema, lit(p.Runtime.Name)),
		})
	})
}

func expectPhase(ctx context.Context, tx pgx.Tx, p *Plan, t Table, want Phase) error {
	ph, err := phaseOf(ctx, tx, p, t.Name)
	if err != nil {
		return err
	}
	if ph != want {
		return fmt.Errorf("%w: %s is %s, expected %s (another run?)", ErrPhase, t.Name, ph, want)
	}
	return nil
}

func execAll(ctx context.Context, tx pgx.Tx, stmts []string) error {
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

func primaryKey(ctx context.Context, conn rowQuerier, q string) ([]string, error) {
	var pk []string
	err := conn.QueryRow(ctx, `SELECT coalesce(array(SELECT a.attname FROM pg_index i, unnest(i.indkey) WITH ORDINALITY k(n, o), pg_attribute a
  WHERE i.indrelid = $1::regclass AND i.indisprimary AND a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.o)::text[], '{}')`, q).Scan(&pk)
	if err != nil {
		return nil, fmt.Errorf("read primary key of %s: %w", q, err)
	}
	if len(pk) == 0 {
		return nil, fmt.Errorf("%w: %s has no primary key", ErrDatabase, q)
	}
	return pk, nil
}
