package adopt

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bulkhead-dev/bulkhead/rls"
	"github.com/jackc/pgx/v5"
)

// Options tune the phases.
type Options struct {
	BatchSize   int           // rows per backfill batch (key range); default 5000
	LockTimeout time.Duration // per transaction; default 2s
	Retries     int           // lock timeouts and deadlocks retried per step; default 5
	// Progress, when set, is called after each backfill batch.
	Progress func(table, rule string, done, total int64, rowsPerSec float64)
}

func (o Options) withDefaults() Options {
	if o.BatchSize <= 0 {
		o.BatchSize = 5000
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = 2 * time.Second
	}
	if o.Retries <= 0 {
		o.Retries = 5
	}
	return o
}

// RuleResult is what one rule filled.
type RuleResult struct {
	Rule string `json:"rule"`
	Rows int64  `json:"rows"`
}

// BackfillResult is one table's backfill.
type BackfillResult struct {
	Table         string       `json:"table"`
	Rules         []RuleResult `json:"rules"`
	Uncovered     int64        `json:"uncovered"`
	UncoveredKeys []string     `json:"uncovered_keys,omitempty"`
	// OwnerRules, OwnerUncovered: the same for the owner column (kinds
	// owned and private). Rows without an owner don't hold the table back.
	OwnerRules         []RuleResult `json:"owner_rules,omitempty"`
	OwnerUncovered     int64        `json:"owner_uncovered,omitempty"`
	OwnerUncoveredKeys []string     `json:"owner_uncovered_keys,omitempty"`
	// Checksums cover every column but the tenant column and, for kinds
	// owned and private, the owner column.
	ChecksumBefore string  `json:"checksum_before"`
	ChecksumAfter  string  `json:"checksum_after"`
	Phase          Phase   `json:"phase"`
	RowsPerSec     float64 `json:"rows_per_sec"`
	Duration       string  `json:"duration"`
}

// timed sets the run's duration since start and its rate over total rows.
func (r *BackfillResult) timed(start time.Time, total int64) {
	el := time.Since(start)
	r.Duration = el.Round(time.Millisecond).String()
	if el > 0 {
		r.RowsPerSec = float64(total) / el.Seconds()
	}
}

// ErrRule is wrapped when a rule matches no row or gives a row two tenants
// (or two owners).
var ErrRule = errors.New("backfill rule refused")

// fillTarget is the column a list of rules fills: the tenant column (the
// table's backfill rules) or, for kinds owned and private, the owner
// column (its owner_backfill rules).
type fillTarget struct {
	column string
	owner  bool
	rules  []Rule
}

func tenantTarget(t Table) fillTarget {
	return fillTarget{column: t.TenantColumn, rules: t.Backfill}
}

func ownerTarget(t Table) fillTarget {
	return fillTarget{column: t.OwnerColumn, owner: true, rules: t.OwnerBackfill}
}

// what names the filled value in messages; aWhat with its article.
func (g fillTarget) what() string {
	if g.owner {
		return "owner"
	}
	return "tenant"
}

func (g fillTarget) aWhat() string {
	if g.owner {
		return "an owner"
	}
	return "a tenant"
}

// planType is the filled column's type as the plan spells it: an owner
// is an entity, a uuid.
func (g fillTarget) planType(p *Plan) string {
	if g.owner {
		return "uuid"
	}
	return p.tenantType()
}

// parentColumn is the parent's column a parent rule copies: the rule's
// own, else the plan's tenant (or owner) column of the parent table.
func (g fillTarget) parentColumn(p *Plan, pr *ParentRule) string {
	col := pr.TenantColumn
	if g.owner {
		col = pr.OwnerColumn
	}
	if pt, ok := p.Table(pr.Table); col == "" && ok {
		col = pt.TenantColumn
		if g.owner {
			col = pt.OwnerColumn
		}
	}
	return col
}

// recordSQL keeps the keys of the rows in u (the batch's update) and the
// value written, so that rollback sets exactly these back to NULL, and
// only while they still hold that value: a tenant or owner the
// application changed since is its own.
func (g fillTarget) recordSQL(rel string, pk []string) string {
	if g.owner {
		return fmt.Sprintf("INSERT INTO %s.owner_backfilled SELECT %s, %s, %s, u.bh_value FROM u ON CONFLICT DO NOTHING RETURNING 1", StateSchema, lit(rel), lit(g.column), keyJSON("u", pk))
	}
	return fmt.Sprintf("INSERT INTO %s.backfilled (rel, key, val) SELECT %s, %s, u.bh_value FROM u ON CONFLICT DO NOTHING RETURNING 1", StateSchema, lit(rel), keyJSON("u", pk))
}

// checksumExcept is what backfill may change, which its checksums leave
// out: the tenant column and, for kinds owned and private, the owner.
func checksumExcept(t Table) []string {
	if t.entityKind() {
		return []string{t.TenantColumn, t.OwnerColumn}
	}
	return []string{t.TenantColumn}
}

// Backfill fills the tenant column of the named tables (all when empty)
// from the plan's rules and, when no row is left without a tenant, moves
// the table to PhaseBackfilled (a NOT NULL check, validated online, and the
// context as the column's default). Tables of kind owned or private then
// have their NULL owners filled from their owner rules, also in a table
// already backfilled (owner rules may come later); rows no owner rule
// covers are reported, and the table's status says how many. Each batch
// is one transaction that checks the table's phase and records its
// progress, so a killed run resumes where it stopped and a concurrent
// phase change stops it. Before writing anything it refuses (ErrRule) a
// rule that matches no row or any row two rules (or two parent rows) would
// give different values. Owner rules are checked again once the table's
// tenants are filled, since an owner rule may read the tenant: refused
// then, the tenants stay filled (resumable) and no owner is written. Rows
// no tenant rule covers are counted and listed, never guessed; the table
// then stays PhaseOriginal. It returns ErrPlan, ErrDatabase, ErrPhase or
// ErrRule (wrapped) for bad input, having changed nothing unless said.
func Backfill(ctx context.Context, conn *pgx.Conn, p *Plan, names []string, o Options) ([]BackfillResult, error) {
	o = o.withDefaults()
	var tables []Table
	var info map[string]tableInfo
	err := withTx(ctx, conn, o.LockTimeout, o.Retries, func(tx pgx.Tx) error {
		var err error
		info, tables, err = check(ctx, tx, p, names)
		return err
	})
	if err != nil {
		return nil, err
	}
	// Refuse bad rules on every table before writing anything anywhere. A
	// table already backfilled is judged only by the owner rules it has
	// still to run: finished rules are history, not re-read (a rule that
	// no longer parses, or a table grown large, doesn't stop a re-run).
	states := make([]fillState, len(tables))
	for i, t := range tables {
		ti := info[t.Name]
		st, err := readFillState(ctx, conn, p, t)
		if err != nil {
			return nil, fmt.Errorf("backfill %s: %w", t.Name, err)
		}
		states[i] = st
		if st.phase == PhaseOriginal || len(st.pending) > 0 {
			if err := refuseTriggers(ctx, conn, p, t); err != nil {
				return nil, fmt.Errorf("backfill %s: %w", t.Name, err)
			}
		}
		switch {
		case st.phase == PhaseOriginal:
			if err := precheckRules(ctx, conn, p, t, tenantTarget(t), ti.pk, ti.hasColumn, true); err != nil {
				return nil, fmt.Errorf("backfill %s: %w", t.Name, err)
			}
			// An owner rule may read a tenant still to be filled: here it
			// must select rows, and give them values once the tenants are.
			if err := precheckRules(ctx, conn, p, t, ownerTarget(t), ti.pk, true, false); err != nil {
				return nil, fmt.Errorf("backfill %s: %w", t.Name, err)
			}
		case len(st.pending) == 0:
		case st.phase != PhaseBackfilled:
			// The shadow recorder and the strict policies would judge the
			// operator's updates; the owners are settled before shadow.
			return nil, fmt.Errorf("backfill %s: %w: %s is %s: owner rules (%s) run on a table that is original or backfilled: roll it back to backfilled first",
				t.Name, ErrPhase, t.Name, st.phase, strings.Join(st.pending, ", "))
		default:
			if err := precheckRules(ctx, conn, p, t, ownerTarget(t), ti.pk, true, true); err != nil {
				return nil, fmt.Errorf("backfill %s: %w", t.Name, err)
			}
		}
	}
	var out []BackfillResult
	for i, t := range tables {
		r, err := backfillLocked(ctx, conn, p, t, info[t.Name], states[i], o)
		if err != nil {
			return out, fmt.Errorf("backfill %s: %w", t.Name, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// backfillLocked is backfillTable under t's run lock (lockRun).
func backfillLocked(ctx context.Context, conn *pgx.Conn, p *Plan, t Table, ti tableInfo, st fillState, o Options) (BackfillResult, error) {
	unlock, err := lockRun(ctx, conn, p, t)
	if err != nil {
		return BackfillResult{Table: t.Name}, err
	}
	defer unlock()
	// The state was read (and judged) before the tables ahead of this one
	// were filled: another run may have moved it since.
	now, err := readFillState(ctx, conn, p, t)
	if err != nil {
		return BackfillResult{Table: t.Name}, err
	}
	if now.phase != st.phase || !slices.Equal(now.pending, st.pending) {
		return BackfillResult{Table: t.Name}, fmt.Errorf("%w: %s moved to %s while this run was on other tables (another run?): run backfill again", ErrPhase, t.Name, now.phase)
	}
	return backfillTable(ctx, conn, p, t, ti, st, o)
}

// fillState is where a table's backfill stands: its phase and, past
// PhaseOriginal, the owner rules not yet finished.
type fillState struct {
	phase   Phase
	pending []string
}

// readFillState reads t's fillState (PhaseOriginal when adopt has no state
// yet).
func readFillState(ctx context.Context, conn *pgx.Conn, p *Plan, t Table) (fillState, error) {
	st := fillState{phase: PhaseOriginal}
	exists, err := stateTableExists(ctx, conn, "tables")
	if err != nil || !exists {
		return st, err
	}
	rel := qualified(p, t.Name)
	if err := conn.QueryRow(ctx, "SELECT phase FROM "+StateSchema+".tables WHERE rel = $1", rel).Scan(&st.phase); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return st, err
	}
	if st.phase != PhaseOriginal {
		st.pending, err = pendingRules(ctx, conn, rel, t.OwnerBackfill)
	}
	return st, err
}

// backfillTable fills t from state st (read by Backfill, which refused
// the cases it can't run): a table already backfilled gets its pending
// owner rules, one further on is left as it is.
func backfillTable(ctx context.Context, conn *pgx.Conn, p *Plan, t Table, ti tableInfo, st fillState, o Options) (BackfillResult, error) {
	start := time.Now()
	res := BackfillResult{Table: t.Name}
	rel := qualified(p, t.Name)
	switch {
	case st.phase == PhaseOriginal:
	case len(st.pending) > 0:
		// Backfill refused pending rules on a table past backfilled; the
		// phase is checked again under lock by every batch.
		return backfillOwners(ctx, conn, p, t, ti, o)
	default:
		res.Phase = st.phase
		return res, nil // already done: idempotent
	}
	before, err := checksum(ctx, conn, p, t.Name, checksumExcept(t)...)
	if err != nil {
		return res, err
	}
	res.ChecksumBefore = before
	added := t.AddColumn && !ti.hasColumn
	err = withTx(ctx, conn, o.LockTimeout, o.Retries, func(tx pgx.Tx) error {
		if err := installState(ctx, tx, p); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+StateSchema+`.tables (rel, phase, tenant_column, added_column, original, checksum_before)
  VALUES ($1, 'original', $2, $3, jsonb_build_object('had_default', $4::boolean, 'not_null', $6::boolean), $5) ON CONFLICT (rel) DO NOTHING`,
			rel, t.TenantColumn, added, ti.hasDefault, before, ti.notNull); err != nil {
			return fmt.Errorf("record state: %w", err)
		}
		tt := t
		tt.AddColumn = added
		for _, s := range backfillPrepareSQL(p, tt, ti.hasDefault) {
			if _, err := tx.Exec(ctx, s); err != nil {
				return fmt.Errorf("%s: %w", s, err)
			}
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	// A resumed run finds the column (and default) there already: whether
	// backfill added it is what the first run recorded.
	var addedCol bool
	if err := conn.QueryRow(ctx, "SELECT added_column FROM "+StateSchema+".tables WHERE rel = $1", rel).Scan(&addedCol); err != nil {
		return res, err
	}
	var total int64
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+qident(p.Schema, t.Name)).Scan(&total); err != nil {
		return res, err
	}
	res.Rules, err = runRules(ctx, conn, p, t, tenantTarget(t), PhaseOriginal, ti.pk, !addedCol, total, o)
	if err != nil {
		return res, err
	}
	if res.OwnerRules, err = fillOwners(ctx, conn, p, t, PhaseOriginal, ti.pk, total, o); err != nil {
		return res, err
	}
	if res.Uncovered, res.UncoveredKeys, err = countNull(ctx, conn, p, t.Name, ti.pk, t.TenantColumn); err != nil {
		return res, err
	}
	if t.entityKind() {
		if res.OwnerUncovered, res.OwnerUncoveredKeys, err = countNull(ctx, conn, p, t.Name, ti.pk, t.OwnerColumn); err != nil {
			return res, err
		}
	}
	res.timed(start, total)
	if res.Uncovered > 0 {
		res.Phase = PhaseOriginal
		_, err := conn.Exec(ctx, "UPDATE "+StateSchema+".tables SET note = $2, updated_at = now() WHERE rel = $1", rel,
			fmt.Sprintf("backfill incomplete: %d rows no rule covers", res.Uncovered))
		return res, err
	}
	after, err := checksum(ctx, conn, p, t.Name, checksumExcept(t)...)
	if err != nil {
		return res, err
	}
	res.ChecksumAfter = after
	err = withTx(ctx, conn, o.LockTimeout, o.Retries, func(tx pgx.Tx) error {
		if err := expectPhase(ctx, tx, p, t, PhaseOriginal); err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = $1::regclass AND conname = $2)",
			qident(p.Schema, t.Name), notNullName(t)).Scan(&exists); err != nil || exists {
			return err
		}
		// From here a row without a tenant is refused, while the table is
		// still original: the note says so until the phase moves (a run
		// killed now is finished by running backfill again, or undone by
		// rollback, which drops the check).
		_, err := tx.Exec(ctx, backfillFinishSQL(p, t)[0])
		if err == nil {
			_, err = tx.Exec(ctx, "UPDATE "+StateSchema+".tables SET note = $2 WHERE rel = $1", rel,
				"backfill finishing: rows without "+t.TenantColumn+" are refused from now on; run backfill again if it stopped here")
		}
		return err
	})
	if err != nil {
		return res, fmt.Errorf("add NOT NULL check: %w", err)
	}
	err = withTx(ctx, conn, o.LockTimeout, o.Retries, func(tx pgx.Tx) error {
		ph, err := phaseOf(ctx, tx, p, t.Name)
		if err != nil {
			return err
		}
		if ph != PhaseOriginal {
			return fmt.Errorf("%w: %s is %s (another run?)", ErrPhase, t.Name, ph)
		}
		// VALIDATE scans under a lock that lets reads and writes go on; the
		// NOT VALID constraint was added in its own short transaction.
		if _, err := tx.Exec(ctx, backfillFinishSQL(p, t)[1]); err != nil {
			return fmt.Errorf("validate: %w", err)
		}
		// The validated check lets SET NOT NULL skip its scan; then the
		// check is redundant.
		if !ti.notNull {
			if err := execAll(ctx, tx, []string{
				fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s SET NOT NULL", qident(p.Schema, t.Name), ident(t.TenantColumn)),
				fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT %s", qident(p.Schema, t.Name), ident(notNullName(t))),
			}); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, "UPDATE "+StateSchema+".tables SET checksum_after = $2, note = NULL WHERE rel = $1", rel, after); err != nil {
			return err
		}
		if err := noteOwnerless(ctx, tx, p, t, res.OwnerUncovered); err != nil {
			return err
		}
		return setPhase(ctx, tx, p, t.Name, PhaseOriginal, PhaseBackfilled)
	})
	if err != nil {
		return res, err
	}
	res.Phase = PhaseBackfilled
	return res, nil
}

// pendingRules returns the names of rules not finished on rel (no
// progress, or progress not done).
func pendingRules(ctx context.Context, conn *pgx.Conn, rel string, rules []Rule) ([]string, error) {
	var names []string
	for _, r := range rules {
		names = append(names, r.Name)
	}
	if len(names) == 0 {
		return nil, nil
	}
	var pending []string
	err := conn.QueryRow(ctx, "SELECT coalesce(array_agg(n ORDER BY o), '{}') FROM unnest($2::text[]) WITH ORDINALITY u(n, o) WHERE NOT EXISTS (SELECT 1 FROM "+StateSchema+
		".progress g WHERE g.rel = $1 AND g.rule = u.n AND g.done)", rel, names).Scan(&pending)
	if err != nil {
		return nil, fmt.Errorf("read progress: %w", err)
	}
	return pending, nil
}

// backfillOwners runs the owner rules of a table already backfilled: the
// tenant column is filled and NOT NULL, and nothing else changes.
func backfillOwners(ctx context.Context, conn *pgx.Conn, p *Plan, t Table, ti tableInfo, o Options) (BackfillResult, error) {
	start := time.Now()
	res := BackfillResult{Table: t.Name, Phase: PhaseBackfilled}
	var err error
	if res.ChecksumBefore, err = checksum(ctx, conn, p, t.Name, checksumExcept(t)...); err != nil {
		return res, err
	}
	var total int64
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+qident(p.Schema, t.Name)).Scan(&total); err != nil {
		return res, err
	}
	if res.OwnerRules, err = fillOwners(ctx, conn, p, t, PhaseBackfilled, ti.pk, total, o); err != nil {
		return res, err
	}
	if res.OwnerUncovered, res.OwnerUncoveredKeys, err = countNull(ctx, conn, p, t.Name, ti.pk, t.OwnerColumn); err != nil {
		return res, err
	}
	if res.ChecksumAfter, err = checksum(ctx, conn, p, t.Name, checksumExcept(t)...); err != nil {
		return res, err
	}
	res.timed(start, total)
	err = withTx(ctx, conn, o.LockTimeout, o.Retries, func(tx pgx.Tx) error {
		if err := expectPhase(ctx, tx, p, t, PhaseBackfilled); err != nil {
			return err
		}
		return noteOwnerless(ctx, tx, p, t, res.OwnerUncovered)
	})
	return res, err
}

// fillOwners runs t's owner rules (kinds owned and private), once its
// tenants are filled: an owner rule may read the tenant, so the rules are
// checked again first. The table stays in phase (see runRule).
func fillOwners(ctx context.Context, conn *pgx.Conn, p *Plan, t Table, phase Phase, pk []string, total int64, o Options) ([]RuleResult, error) {
	g := ownerTarget(t)
	if !t.entityKind() || len(g.rules) == 0 {
		return nil, nil
	}
	if err := precheckRules(ctx, conn, p, t, g, pk, true, true); err != nil {
		return nil, err
	}
	return runRules(ctx, conn, p, t, g, phase, pk, true, total, o)
}

// runRules runs g's rules in order, t in phase (see runRule).
func runRules(ctx context.Context, conn *pgx.Conn, p *Plan, t Table, g fillTarget, phase Phase, pk []string, record bool, total int64, o Options) ([]RuleResult, error) {
	var out []RuleResult
	for _, r := range g.rules {
		n, err := runRule(ctx, conn, p, t, g, phase, pk, r, record, total, o)
		if err != nil {
			return out, fmt.Errorf("rule %s: %w", r.Name, err)
		}
		out = append(out, RuleResult{Rule: r.Name, Rows: n})
	}
	return out, nil
}

// countNull counts table's rows whose column is NULL, with the first ten
// keys.
func countNull(ctx context.Context, conn *pgx.Conn, p *Plan, table string, pk []string, column string) (int64, []string, error) {
	q := qident(p.Schema, table)
	c := "t." + ident(column)
	var n int64
	var keys []string
	if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count(*), coalesce((SELECT array_agg(k) FROM (SELECT %s::text AS k FROM %s t WHERE %s IS NULL ORDER BY 1 LIMIT 10) x), '{}') FROM %s t WHERE %s IS NULL",
		keyJSON("t", pk), q, c, q, c)).Scan(&n, &keys); err != nil {
		return 0, nil, fmt.Errorf("count rows without a %s: %w", column, err)
	}
	return n, keys, nil
}

// keyJSON is a row's primary key as a jsonb object (what progress and the
// recorded keys hold). Each value is its type's output (format's %s),
// never a cast to json, which the owner of a column's type may define and
// which would run as the operator; jsonb_populate_record reads it back
// through the type's input function.
func keyJSON(alias string, pk []string) string {
	parts := make([]string, len(pk))
	for i, c := range pk {
		parts[i] = lit(c) + ", pg_catalog.format('%s', " + alias + "." + ident(c) + ")"
	}
	return "jsonb_build_object(" + strings.Join(parts, ", ") + ")"
}

func cols(alias string, pk []string) string {
	parts := make([]string, len(pk))
	for i, c := range pk {
		parts[i] = alias + "." + ident(c)
	}
	return strings.Join(parts, ", ")
}

// ruleValue is the value a rule of g gives row t (NULL when it gives none).
func ruleValue(p *Plan, g fillTarget, r Rule) string {
	switch {
	case r.Constant != "":
		typ, _ := rls.CatalogType(g.planType(p))
		return lit(r.Constant) + "::pg_catalog." + typ
	case r.Parent != nil:
		return fmt.Sprintf("(SELECT bh_p.%s FROM %s bh_p WHERE bh_p.%s = t.%s)", ident(g.parentColumn(p, r.Parent)), qident(p.Schema, r.Parent.Table), ident(r.Parent.key()), ident(r.Parent.Column))
	}
	return "(" + r.Expression + ")"
}

// ruleRows is SELECT key, value for every row the rule would fill. A
// parent rule joins (rather than a scalar sub-query), so a parent key
// matching two rows shows up as two values.
func ruleRows(p *Plan, t Table, g fillTarget, pk []string, r Rule, colExists bool) string {
	q := qident(p.Schema, t.Name)
	cond := "true"
	if colExists {
		cond = "t." + ident(g.column) + " IS NULL"
	}
	if r.Where != "" {
		cond += " AND (" + r.Where + ")"
	}
	if r.Parent != nil {
		return fmt.Sprintf("SELECT %s AS k, bh_p.%s AS v FROM %s t JOIN %s bh_p ON bh_p.%s = t.%s WHERE %s", keyJSON("t", pk), ident(g.parentColumn(p, r.Parent)), q,
			qident(p.Schema, r.Parent.Table), ident(r.Parent.key()), ident(r.Parent.Column), cond)
	}
	return fmt.Sprintf("SELECT %s AS k, %s AS v FROM %s t WHERE %s", keyJSON("t", pk), ruleValue(p, g, r), q, cond)
}

// precheckRules refuses, before any write, rows given two different values
// and a rule of g matching no row (on a first run): selecting no row, or,
// when valuesKnown, giving none a value (an owner rule may give values
// only once the tenants it reads are filled).
func precheckRules(ctx context.Context, conn *pgx.Conn, p *Plan, t Table, g fillTarget, pk []string, colExists, valuesKnown bool) error {
	if len(g.rules) == 0 {
		return nil
	}
	var parts []string
	var errs []error
	for _, r := range g.rules {
		sub := ruleRows(p, t, g, pk, r, colExists)
		parts = append(parts, sub)
		var started bool
		if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL AND EXISTS (SELECT 1 FROM "+StateSchema+".progress WHERE rel = $2 AND rule = $3)",
			StateSchema+".progress", qualified(p, t.Name), r.Name).Scan(&started); err != nil {
			// The state schema may not exist yet: the to_regclass guard is
			// evaluated first only by luck, so retry without it.
			started = false
		}
		if started {
			continue
		}
		matched := "SELECT count(*) FROM (" + sub + ") x"
		if valuesKnown {
			matched += " WHERE x.v IS NOT NULL"
		}
		var n int64
		if err := conn.QueryRow(ctx, matched).Scan(&n); err != nil {
			return fmt.Errorf("%w: rule %s: %w", ErrRule, r.Name, err)
		}
		if n == 0 {
			errs = append(errs, fmt.Errorf("rule %s (%s) matches no row without %s", r.Name, ruleText(r), g.aWhat()))
		}
	}
	var n int64
	var keys []string
	err := conn.QueryRow(ctx, `SELECT count(*), coalesce((array_agg(k::text ORDER BY k::text))[1:5], '{}') FROM (SELECT x.k FROM (`+strings.Join(parts, " UNION ALL ")+
		`) x WHERE x.v IS NOT NULL GROUP BY x.k HAVING count(DISTINCT x.v) > 1) y`).Scan(&n, &keys)
	if err != nil {
		return fmt.Errorf("%w: check rules: %w", ErrRule, err)
	}
	if n > 0 {
		errs = append(errs, fmt.Errorf("%d rows would get two different %ss from the rules (e.g. %s): make the rules disjoint", n, g.what(), strings.Join(keys, ", ")))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrRule, errors.Join(errs...))
	}
	return nil
}

// runRule applies one rule of g batch by batch over primary-key ranges,
// resuming after the last committed batch. record keeps the keys it fills
// (an existing column) so that rollback can set them back to NULL. Each
// batch locks t's state row and refuses (ErrPhase) unless t is in phase,
// so a phase change by another run (shadow of a table whose owners are
// being filled) waits for the batch and stops the rule after it.
func runRule(ctx context.Context, conn *pgx.Conn, p *Plan, t Table, g fillTarget, phase Phase, pk []string, r Rule, record bool, total int64, o Options) (int64, error) {
	rel := qualified(p, t.Name)
	q := qident(p.Schema, t.Name)
	if _, err := conn.Exec(ctx, "INSERT INTO "+StateSchema+".progress (rel, rule) VALUES ($1, $2) ON CONFLICT DO NOTHING", rel, r.Name); err != nil {
		return 0, fmt.Errorf("record progress: %w", err)
	}
	var filled int64
	var done bool
	if err := conn.QueryRow(ctx, "SELECT rows, done FROM "+StateSchema+".progress WHERE rel = $1 AND rule = $2", rel, r.Name).Scan(&filled, &done); err != nil {
		return 0, err
	}
	if done {
		return filled, nil
	}
	cond := "t." + ident(g.column) + " IS NULL"
	if r.Where != "" {
		cond += " AND (" + r.Where + ")"
	}
	join := make([]string, len(pk))
	for i, c := range pk {
		join[i] = "t." + ident(c) + " = r." + ident(c)
	}
	rec := "SELECT 1 WHERE false"
	if record {
		rec = g.recordSQL(rel, pk)
	}
	val := ruleValue(p, g, r)
	batch := fmt.Sprintf(`WITH r AS (
  SELECT %[1]s FROM %[2]s t
  WHERE $1::jsonb IS NULL OR (%[1]s) > (SELECT %[3]s FROM jsonb_populate_record(NULL::%[2]s, $1::jsonb) j)
  ORDER BY %[1]s LIMIT $2),
u AS (UPDATE %[2]s t SET %[4]s = %[5]s FROM r WHERE %[6]s AND %[7]s AND %[5]s IS NOT NULL RETURNING %[8]s),
b AS (%[9]s)
SELECT (SELECT %[10]s FROM r ORDER BY %[11]s LIMIT 1), (SELECT count(*) FROM u), (SELECT count(*) FROM r)`,
		cols("t", pk), q, cols("j", pk), ident(g.column), val, strings.Join(join, " AND "), cond, cols("t", pk)+", t."+ident(g.column)+"::text AS bh_value", rec,
		keyJSON("r", pk), descCols("r", pk))
	start := time.Now()
	var scanned int64
	for {
		var n, seen int64
		err := withTx(ctx, conn, o.LockTimeout, o.Retries, func(tx pgx.Tx) error {
			if err := expectPhase(ctx, tx, p, t, phase); err != nil {
				return err
			}
			var last []byte
			if err := tx.QueryRow(ctx, "SELECT last_key FROM "+StateSchema+".progress WHERE rel = $1 AND rule = $2 FOR UPDATE", rel, r.Name).Scan(&last); err != nil {
				return err
			}
			var next []byte
			var lastArg any
			if last != nil {
				lastArg = string(last)
			}
			if err := tx.QueryRow(ctx, batch, lastArg, o.BatchSize).Scan(&next, &n, &seen); err != nil {
				return fmt.Errorf("batch: %w", err)
			}
			if seen == 0 {
				_, err := tx.Exec(ctx, "UPDATE "+StateSchema+".progress SET done = true WHERE rel = $1 AND rule = $2", rel, r.Name)
				return err
			}
			_, err := tx.Exec(ctx, "UPDATE "+StateSchema+".progress SET last_key = $3, rows = rows + $4 WHERE rel = $1 AND rule = $2", rel, r.Name, string(next), n)
			return err
		})
		if err != nil {
			return filled, err
		}
		if seen == 0 {
			return filled, nil
		}
		filled += n
		scanned += seen
		if o.Progress != nil {
			o.Progress(t.Name, r.Name, scanned, total, float64(scanned)/time.Since(start).Seconds())
		}
		if err := ctx.Err(); err != nil {
			return filled, fmt.Errorf("interrupted (resumable): %w", err)
		}
	}
}

// descCols is "r.a DESC, r.b DESC".
func descCols(alias string, pk []string) string {
	parts := make([]string, len(pk))
	for i, c := range pk {
		parts[i] = alias + "." + ident(c) + " DESC"
	}
	return strings.Join(parts, ", ")
}

// checksum is count and an order-independent sum of row hashes over every
// column but except (what backfill changes: see checksumExcept).
func checksum(ctx context.Context, conn *pgx.Conn, p *Plan, table string, except ...string) (string, error) {
	var names []string
	err := conn.QueryRow(ctx, `SELECT coalesce(array_agg(a.attname::text ORDER BY a.attnum), '{}') FROM pg_attribute a
  WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attname <> ALL($2)`, qident(p.Schema, table), except).Scan(&names)
	if err != nil {
		return "", fmt.Errorf("checksum %s: %w", table, err)
	}
	var sum string
	err = conn.QueryRow(ctx, fmt.Sprintf("SELECT count(*)::text || ':' || coalesce(sum(hashtextextended(ROW(%s)::text, 0)::numeric), 0)::text FROM %s t",
		cols("t", names), qident(p.Schema, table))).Scan(&sum)
	if err != nil {
		return "", fmt.Errorf("checksum %s: %w", table, err)
	}
	return sum, nil
}

// Checksum is the checksum of every column of table (see Backfill).
func Checksum(ctx context.Context, conn *pgx.Conn, p *Plan, table string) (string, error) {
	return checksum(ctx, conn, p, table)
}
