package adopt

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrViolations is wrapped when Enforce refuses because shadow recorded
// violations in the window.
var ErrViolations = errors.New("shadow recorded violations")

// Shadow installs the shadow policy on the named Backfilled tables (all
// when empty): RLS enabled and forced, a permissive policy whose strict arm
// is the generator's layer 1 and whose other arm is the table's switch
// (open), the write recorder, and DML grants for the runtime role, which it
// creates (NOLOGIN) when the plan says so. Nothing is blocked. One
// transaction per table, phase recorded in it; a Shadow table is skipped.
func Shadow(ctx context.Context, conn *pgx.Conn, p *Plan, names []string, o Options) error {
	o = o.withDefaults()
	var info map[string]tableInfo
	var tables []Table
	err := withTx(ctx, conn, o.LockTimeout, o.Retries, func(tx pgx.Tx) error {
		var err error
		if info, tables, err = check(ctx, tx, p, names); err != nil {
			return err
		}
		if err := requirePhase(ctx, tx, p, tables, PhaseBackfilled, PhaseShadow); err != nil {
			return err
		}
		if err := requireMemberships(ctx, tx, p, tables); err != nil {
			return err
		}
		// The helpers and the recorder as this version writes them: a
		// database backfilled by an earlier one gets them replaced.
		if err := installState(ctx, tx, p); err != nil {
			return err
		}
		return ensureRole(ctx, tx, p)
	})
	if err != nil {
		return err
	}
	// Membership tables first: a room table's policies read them as the
	// runtime role, which gets SELECT on them at their own step.
	slices.SortStableFunc(tables, func(a, b Table) int { return -roomFirst(a, b) })
	for _, t := range tables {
		// Counted before the step's transaction, whose DDL holds the table
		// ACCESS EXCLUSIVE: a scan there would stop the application.
		ownerless, err := countOwnerless(ctx, conn, p, t)
		if err != nil {
			return fmt.Errorf("shadow %s: %w", t.Name, err)
		}
		err = withTx(ctx, conn, o.LockTimeout, o.Retries, func(tx pgx.Tx) error {
			ph, err := phaseOf(ctx, tx, p, t.Name)
			if err != nil || ph == PhaseShadow {
				return err
			}
			if ph != PhaseBackfilled {
				return fmt.Errorf("%w: %s is %s, shadow needs %s", ErrPhase, t.Name, ph, PhaseBackfilled)
			}
			q := qident(p.Schema, t.Name)
			grant, err := missingPrivileges(ctx, tx, p.Runtime.Name, q)
			if err != nil {
				return err
			}
			// What rollback restores: RLS flags, and the privileges shadow
			// grants the runtime role, which rollback revokes (those it
			// already held, on the table or on any column, are left as
			// they are: never widened, never lost).
			// And the shape of the policies installed, which enforce and
			// rollback compare with the plan's (samePolicies).
			if _, err := tx.Exec(ctx, `UPDATE `+StateSchema+`.tables SET original = original || (SELECT jsonb_build_object(
    'rls', c.relrowsecurity, 'force', c.relforcerowsecurity, 'granted_privileges', to_jsonb($3::text[]), 'shape', $4::text)
  FROM pg_class c WHERE c.oid = $2::regclass) WHERE rel = $1`, qualified(p, t.Name), q, grant, p.shape(t)); err != nil {
				return fmt.Errorf("record original state: %w", err)
			}
			ep, err := Effective(ctx, tx, p)
			if err != nil {
				return err
			}
			stmts, err := shadowSQL(ep, t, info[t.Name].pk, grant)
			if err != nil {
				return err
			}
			for _, s := range stmts {
				if _, err := tx.Exec(ctx, s); err != nil {
					return fmt.Errorf("%s: %w", s, err)
				}
			}
			if err := noteOwnerless(ctx, tx, p, t, ownerless); err != nil {
				return err
			}
			return setPhase(ctx, tx, p, t.Name, PhaseBackfilled, PhaseShadow)
		})
		if err != nil {
			return fmt.Errorf("shadow %s: %w", t.Name, err)
		}
	}
	return nil
}

// dmlPrivileges are the privileges the runtime role needs on a table
// (what shadow grants when it has none of them).
var dmlPrivileges = []string{"SELECT", "INSERT", "UPDATE", "DELETE"}

// missingPrivileges returns the dmlPrivileges role holds neither on table
// q nor on any of its columns: shadow grants only those, so a role whose
// SELECT was confined to some columns stays confined.
func missingPrivileges(ctx context.Context, tx pgx.Tx, role, q string) ([]string, error) {
	var out []string
	err := tx.QueryRow(ctx, `SELECT coalesce(array_agg(pr ORDER BY o), '{}') FROM unnest($3::text[]) WITH ORDINALITY u(pr, o)
  WHERE NOT CASE WHEN pr = 'DELETE' THEN has_table_privilege($1, $2::regclass, pr) ELSE has_any_column_privilege($1, $2::regclass, pr) END`,
		role, q, dmlPrivileges).Scan(&out)
	if err != nil {
		return nil, fmt.Errorf("read privileges of %s: %w", role, err)
	}
	return out, nil
}

// countOwnerless counts t's rows without an owner (kinds owned and
// private; 0 for the others).
func countOwnerless(ctx context.Context, conn *pgx.Conn, p *Plan, t Table) (int64, error) {
	if !t.entityKind() {
		return 0, nil
	}
	var n int64
	if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s WHERE %s IS NULL", qident(p.Schema, t.Name), ident(t.OwnerColumn))).Scan(&n); err != nil {
		return 0, fmt.Errorf("count rows without an owner: %w", err)
	}
	return n, nil
}

// noteOwnerless records in t's status that n of its rows have no owner:
// once enforced nobody writes them, and under private nobody reads them.
// The plan's owner_backfill rules fill owners; these are what is left.
func noteOwnerless(ctx context.Context, tx pgx.Tx, p *Plan, t Table, n int64) error {
	if !t.entityKind() {
		return nil
	}
	var note *string
	if n > 0 {
		s := fmt.Sprintf("%d rows have no %s: once enforced nobody writes them", n, t.OwnerColumn)
		if t.Kind == KindPrivate {
			s += " or reads them"
		}
		note = &s
	}
	_, err := tx.Exec(ctx, "UPDATE "+StateSchema+".tables SET note = $2 WHERE rel = $1", qualified(p, t.Name), note)
	return err
}

// ensureRole creates the runtime role when the plan asks for it and
// records whether adopt created it (rollback drops only a role it made).
func ensureRole(ctx context.Context, tx pgx.Tx, p *Plan) error {
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", p.Runtime.Name).Scan(&exists); err != nil {
		return fmt.Errorf("read roles: %w", err)
	}
	if !exists && !p.Runtime.Create {
		return fmt.Errorf("%w: runtime role %s does not exist and the plan says create: false", ErrDatabase, p.Runtime.Name)
	}
	created := false
	if !exists {
		r := ident(p.Runtime.Name)
		if _, err := tx.Exec(ctx, "CREATE ROLE "+r+" NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"); err != nil {
			if sqlState(err) == "42501" {
				return fmt.Errorf("%w: this role may not create roles (needs CREATEROLE): create %s yourself and set create: false", ErrDatabase, p.Runtime.Name)
			}
			return fmt.Errorf("create role %s: %w", p.Runtime.Name, err)
		}
		created = true
	}
	if _, err := tx.Exec(ctx, "INSERT INTO "+StateSchema+".roles VALUES ($1, $2) ON CONFLICT (name) DO NOTHING", p.Runtime.Name, created); err != nil {
		return fmt.Errorf("record role: %w", err)
	}
	var super, bypass bool
	if err := tx.QueryRow(ctx, "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1", p.Runtime.Name).Scan(&super, &bypass); err != nil {
		return err
	}
	if super || bypass {
		return fmt.Errorf("%w: runtime role %s is a superuser or BYPASSRLS: policies would never apply to it", ErrDatabase, p.Runtime.Name)
	}
	if created {
		if _, err := tx.Exec(ctx, fmt.Sprintf("GRANT USAGE ON SCHEMA %s TO %s", ident(p.Schema), ident(p.Runtime.Name))); err != nil {
			return fmt.Errorf("grant schema usage: %w", err)
		}
	}
	return nil
}

// storedPhase reads table's recorded phase without locking it: original
// when nothing is recorded (exists: whether the state table exists).
func storedPhase(ctx context.Context, tx pgx.Tx, p *Plan, table string, exists bool) (Phase, error) {
	ph := PhaseOriginal // no state schema yet: every table is original
	if exists {
		err := tx.QueryRow(ctx, "SELECT phase FROM "+StateSchema+".tables WHERE rel = $1", qualified(p, table)).Scan(&ph)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return "", fmt.Errorf("read phase of %s: %w", table, err)
		}
	}
	return ph, nil
}

// requireMemberships fails with ErrPhase when a room table among tables
// reads a membership table that is neither shadow or enforced already nor
// among tables (Shadow then steps it first): the runtime role gets SELECT
// on a table at its shadow step, and the room table's policies need it.
func requireMemberships(ctx context.Context, tx pgx.Tx, p *Plan, tables []Table) error {
	exists, err := stateTableExists(ctx, tx, "tables")
	if err != nil {
		return fmt.Errorf("read state: %w", err)
	}
	in := map[string]bool{}
	for _, t := range tables {
		in[t.Name] = true
	}
	var errs []error
	for _, t := range tables {
		mt, ok := p.membershipOf(t)
		if !ok || in[mt.Name] {
			continue
		}
		ph, err := storedPhase(ctx, tx, p, mt.Name, exists)
		if err != nil {
			return err
		}
		if rank(ph) < rank(PhaseShadow) {
			errs = append(errs, fmt.Errorf("%s reads its membership table %s in its policies, and %s is %s: shadow %s first, or both together", t.Name, mt.Name, mt.Name, ph, mt.Name))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrPhase, errors.Join(errs...))
	}
	return nil
}

// requirePhase fails with ErrPhase when a table is in neither want nor done.
func requirePhase(ctx context.Context, tx pgx.Tx, p *Plan, tables []Table, want, done Phase) error {
	exists, err := stateTableExists(ctx, tx, "tables")
	if err != nil {
		return fmt.Errorf("read state: %w", err)
	}
	var errs []error
	for _, t := range tables {
		ph, err := storedPhase(ctx, tx, p, t.Name, exists)
		if err != nil {
			return err
		}
		if ph != want && ph != done {
			errs = append(errs, fmt.Errorf("%s is %s: run %s first", t.Name, ph, nextStep(ph)))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrPhase, errors.Join(errs...))
	}
	return nil
}

func nextStep(ph Phase) string {
	switch ph {
	case PhaseOriginal:
		return "adopt backfill"
	case PhaseBackfilled:
		return "adopt shadow"
	case PhaseShadow:
		return "adopt enforce"
	}
	return "adopt rollback"
}

// EnforceOptions tune Enforce.
type EnforceOptions struct {
	Options
	// Window: violations recorded this recently block enforcement.
	Window time.Duration
	// Force enforces despite violations.
	Force bool
}

// Enforce makes the named shadow-phase tables (all when empty) strict: one
// ALTER POLICY per table (the generator's layer 1), switch closed,
// recorder dropped, phase recorded, in one transaction per table. It
// refuses (ErrViolations) while shadow recorded violations for a table in
// the window, unless Force. Run Verify (and the auditor) afterwards.
func Enforce(ctx context.Context, conn *pgx.Conn, p *Plan, names []string, o EnforceOptions) error {
	o.Options = o.Options.withDefaults()
	if o.Window <= 0 {
		o.Window = time.Hour
	}
	var tables []Table
	err := withTx(ctx, conn, o.LockTimeout, o.Retries, func(tx pgx.Tx) error {
		var err error
		if _, tables, err = check(ctx, tx, p, names); err != nil {
			return err
		}
		if err := requirePhase(ctx, tx, p, tables, PhaseShadow, PhaseEnforced); err != nil {
			return err
		}
		if o.Force {
			return nil
		}
		var errs []error
		for _, t := range tables {
			var n int64
			// Replayed reads are recorded per statement, not per table:
			// any of them in the window blocks every table.
			if err := tx.QueryRow(ctx, "SELECT coalesce(sum(n), 0) FROM "+StateSchema+".violation_count WHERE rel IN ($1, 'query') AND last_at > now() - $2::interval",
				qualified(p, t.Name), o.Window.String()).Scan(&n); err != nil {
				return fmt.Errorf("read violations: %w", err)
			}
			if n > 0 {
				errs = append(errs, fmt.Errorf("%s: %d violations in the last %s (adopt report shows them; --force to enforce anyway)", t.Name, n, o.Window))
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("%w: %w", ErrViolations, errors.Join(errs...))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, t := range tables {
		err := withTx(ctx, conn, o.LockTimeout, o.Retries, func(tx pgx.Tx) error {
			ph, err := phaseOf(ctx, tx, p, t.Name)
			if err != nil || ph == PhaseEnforced {
				return err
			}
			if err := samePolicies(ctx, tx, p, t); err != nil {
				return err
			}
			stmts, err := enforceSQL(p, t)
			if err != nil {
				return err
			}
			for _, s := range stmts {
				if _, err := tx.Exec(ctx, s); err != nil {
					return fmt.Errorf("%s: %w", s, err)
				}
			}
			return setPhase(ctx, tx, p, t.Name, PhaseShadow, PhaseEnforced)
		})
		if err != nil {
			return fmt.Errorf("enforce %s: %w", t.Name, err)
		}
	}
	return nil
}

// Verify checks that every named PhaseEnforced table (all when empty) is
// strict: RLS enabled and forced, exactly the policies the plan's kind
// implies (adopt's layer-1 policy the only permissive one) with no shadow
// switch in any, no recorder trigger, switch closed, and the runtime role
// neither owner, superuser nor BYPASSRLS.
func Verify(ctx context.Context, conn *pgx.Conn, p *Plan, names []string) error {
	tables, err := pick(p, names)
	if err != nil {
		return err
	}
	var errs []error
	for _, t := range tables {
		var ph Phase
		if err := conn.QueryRow(ctx, "SELECT phase FROM "+StateSchema+".tables WHERE rel = $1", qualified(p, t.Name)).Scan(&ph); err != nil || ph != PhaseEnforced {
			continue
		}
		wantNames, err := kindPolicyNames(p, t)
		if err != nil {
			return err
		}
		var rlsOn, force, ownerIsRuntime, shadowArm bool
		var policies []string
		var permissive, triggers, modes int
		err = conn.QueryRow(ctx, `SELECT c.relrowsecurity, c.relforcerowsecurity, pg_has_role($2, c.relowner, 'USAGE'),
    coalesce((SELECT array_agg(p.polname::text ORDER BY p.polname) FROM pg_policy p WHERE p.polrelid = c.oid), '{}'),
    (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid AND p.polpermissive AND p.polname <> $3),
    coalesce((SELECT bool_or(coalesce(pg_get_expr(p.polqual, p.polrelid), '') || coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '') LIKE '%shadow_open%') FROM pg_policy p WHERE p.polrelid = c.oid), false),
    (SELECT count(*) FROM pg_trigger g WHERE g.tgrelid = c.oid AND g.tgname LIKE 'bulkhead_adopt_%'),
    (SELECT count(*) FROM `+StateSchema+`.mode m WHERE m.rel = c.oid)
  FROM pg_class c WHERE c.oid = $1::regclass`, qident(p.Schema, t.Name), p.Runtime.Name, PolicyName).Scan(&rlsOn, &force, &ownerIsRuntime, &policies, &permissive, &shadowArm, &triggers, &modes)
		if err != nil {
			return fmt.Errorf("verify %s: %w", t.Name, err)
		}
		switch {
		case !rlsOn || !force:
			errs = append(errs, fmt.Errorf("%s: row-level security enabled=%v forced=%v", t.Name, rlsOn, force))
		case !slices.Equal(policies, wantNames) || permissive != 0 || shadowArm:
			errs = append(errs, fmt.Errorf("%s: want exactly the strict policies %v (only %s permissive), found %v (%d other permissive, shadow arm %v)", t.Name, wantNames, PolicyName, policies, permissive, shadowArm))
		case triggers != 0 || modes != 0:
			errs = append(errs, fmt.Errorf("%s: shadow recorder or switch still present", t.Name))
		case ownerIsRuntime:
			errs = append(errs, fmt.Errorf("%s: the runtime role %s is (a member of) the owner", t.Name, p.Runtime.Name))
		}
	}
	var super, bypass bool
	if err := conn.QueryRow(ctx, "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1", p.Runtime.Name).Scan(&super, &bypass); err == nil && (super || bypass) {
		errs = append(errs, fmt.Errorf("runtime role %s bypasses row-level security", p.Runtime.Name))
	}
	return errors.Join(errs...)
}

// samePolicies refuses when adopt's policies on t are not the ones the
// plan's kind implies (the kind was changed after shadow): ALTER POLICY
// would fail on a missing one, or leave another behind.
func samePolicies(ctx context.Context, tx pgx.Tx, p *Plan, t Table) error {
	wantNames, err := kindPolicyNames(p, t)
	if err != nil {
		return err
	}
	var have []string
	if err := tx.QueryRow(ctx, `SELECT coalesce(array_agg(polname::text ORDER BY polname), '{}') FROM pg_policy WHERE polrelid = $1::regclass AND polname = ANY($2)`,
		qident(p.Schema, t.Name), policyNames).Scan(&have); err != nil {
		return fmt.Errorf("read policies of %s: %w", t.Name, err)
	}
	if !slices.Equal(have, wantNames) {
		return fmt.Errorf("%w: %s has adopt's policies %v, but kind %s needs %v: the plan's kind changed after shadow; put the old kind back, roll the table back to %s, then change the kind and run shadow again", ErrPhase, t.Name, have, t.Kind, wantNames, PhaseBackfilled)
	}
	// The same names can carry other rules (private and room; another
	// owner or room column): the shape shadow recorded must be the plan's.
	// State written before shapes were recorded has none.
	var shape *string
	if err := tx.QueryRow(ctx, "SELECT original->>'shape' FROM "+StateSchema+".tables WHERE rel = $1", qualified(p, t.Name)).Scan(&shape); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("read state of %s: %w", t.Name, err)
	}
	if shape != nil && *shape != p.shape(t) {
		return fmt.Errorf("%w: %s went to shadow as %q, but the plan now says %q: put the old entry back, roll the table back to %s, then change it and run shadow again", ErrPhase, t.Name, *shape, p.shape(t), PhaseBackfilled)
	}
	return nil
}

// shape describes the policies t's plan entry implies: its kind, the
// columns its rules read and, for a room table, its membership (the
// membership table's tenant column included, which the rules compare too).
func (p *Plan) shape(t Table) string {
	s := t.Kind + " tenant " + t.TenantColumn
	if t.entityKind() {
		s += " owner " + t.OwnerColumn
	}
	if mt, ok := p.membershipOf(t); ok {
		m := t.Membership
		s += fmt.Sprintf(" room %s members %s(%s, %s) tenant %s", t.RoomColumn, m.Table, m.RoomColumn, m.EntityColumn, mt.TenantColumn)
	}
	return s
}

// kindPolicyNames is the names of the policies t's kind implies, sorted.
func kindPolicyNames(p *Plan, t Table) ([]string, error) {
	ps, err := strictPolicies(p, t)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ps))
	for i, pol := range ps {
		names[i] = pol.Name
	}
	slices.Sort(names)
	return names, nil
}
