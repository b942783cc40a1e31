package adopt

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

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
	Table          string       `json:"table"`
	Rules          []RuleResult `json:"rules"`
	Uncovered      int64        `json:"uncovered"`
	UncoveredKeys  []string     `json:"uncovered_keys,omitempty"`
	ChecksumBefore string       `json:"checksum_before"` // every column but the tenant column
	ChecksumAfter  string       `json:"checksum_after"`
	Phase          Phase        `json:"phase"`
	RowsPerSec     float64      `json:"rows_per_sec"`
	Duration       string       `json:"duration"`
}

// ErrRule is wrapped when a rule matches no row or gives a row two tenants.
var ErrRule = errors.New("backfill rule refused")

// Backfill fills the tenant column of the named tables (all when empty)
// from the plan's rules and, when no row is left without a tenant, moves
// the table to PhaseBackfilled (a NOT NULL check, validated online, and the
// context as the column's default). Each batch is one transaction that
// also records its progress, so a killed run resumes where it stopped.
// Before writing anything it refuses (ErrRule) a rule that matches no row
// or any row two rules (or two parent rows) would give different tenants.
// Rows no rule covers are counted and listed, never guessed; the table
// then stays PhaseOriginal. It returns ErrPlan, ErrDatabase, ErrPhase or
// ErrRule (wrapped) for bad input, having changed nothing.
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
	// Refuse bad rules on every table before writing anything anywhere.
	for _, t := range tables {
		if err := precheckRules(ctx, conn, p, t, info[t.Name]); err != nil {
			return nil, fmt.Errorf("backfill %s: %w", t.Name, err)
		}
	}
	var out []BackfillResult
	for _, t := range tables {
		r, err := backfillTable(ctx, conn, p, t, info[t.Name], o)
		if err != nil {
			return out, fmt.Errorf("backfill %s: %w", t.Name, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func backfillTable(ctx context.Context, conn *pgx.Conn, p *Plan, t Table, ti tableInfo, o Options) (BackfillResult, error) {
	start := time.Now()
	res := BackfillResult{Table: t.Name}
	rel := qualified(p, t.Name)
	var phase Phase = PhaseOriginal
	exists, err := stateTableExists(ctx, conn, "tables")
	if err != nil {
		return res, err
	}
	if exists {
		if err := conn.QueryRow(ctx, "SELECT phase FROM "+StateSchema+".tables WHERE rel = $1", rel).Scan(&phase); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return res, err
		}
	}
	if phase != PhaseOriginal {
		res.Phase = phase
		return res, nil // already done: idempotent
	}
	before, err := checksum(ctx, conn, p, t.Name, t.TenantColumn)
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
		// A resumed run finds the column (and default) there already.
		var had bool
		var addedBefore bool
		if err := tx.QueryRow(ctx, "SELECT (original->>'had_default')::boolean, added_column FROM "+StateSchema+".tables WHERE rel = $1", rel).Scan(&had, &addedBefore); err != nil {
			return err
		}
		tt := t
		tt.AddColumn = added
		stmts := backfillPrepareSQL(p, tt, ti.hasDefault)
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s); err != nil {
				return fmt.Errorf("%s: %w", s, err)
			}
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	var addedCol bool
	if err := conn.QueryRow(ctx, "SELECT added_column FROM "+StateSchema+".tables WHERE rel = $1", rel).Scan(&addedCol); err != nil {
		return res, err
	}
	var total int64
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+qident(p.Schema, t.Name)).Scan(&total); err != nil {
		return res, err
	}
	var filled int64
	for _, r := range t.Backfill {
		n, err := runRule(ctx, conn, p, t, ti.pk, r, !addedCol, total, o)
		if err != nil {
			return res, fmt.Errorf("rule %s: %w", r.Name, err)
		}
		filled += n
		res.Rules = append(res.Rules, RuleResult{Rule: r.Name, Rows: n})
	}
	q := qident(p.Schema, t.Name)
	c := "t." + ident(t.TenantColumn)
	if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count(*), coalesce((SELECT array_agg(k) FROM (SELECT %s::text AS k FROM %s t WHERE %s IS NULL ORDER BY 1 LIMIT 10) x), '{}') FROM %s t WHERE %s IS NULL",
		keyJSON("t", ti.pk), q, c, q, c)).Scan(&res.Uncovered, &res.UncoveredKeys); err != nil {
		return res, fmt.Errorf("count uncovered rows: %w", err)
	}
	el := time.Since(start)
	res.Duration = el.Round(time.Millisecond).String()
	if el > 0 {
		res.RowsPerSec = float64(total) / el.Seconds()
	}
	if res.Uncovered > 0 {
		res.Phase = PhaseOriginal
		_, err := conn.Exec(ctx, "UPDATE "+StateSchema+".tables SET note = $2, updated_at = now() WHERE rel = $1", rel,
			fmt.Sprintf("backfill incomplete: %d rows no rule covers", res.Uncovered))
		return res, err
	}
	after, err := checksum(ctx, conn, p, t.Name, t.TenantColumn)
	if err != nil {
		return res, err
	}
	res.ChecksumAfter = after
	err = withTx(ctx, conn, o.LockTimeout, o.Retries, func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = $1::regclass AND conname = $2)",
			qident(p.Schema, t.Name), notNullName(t)).Scan(&exists); err != nil || exists {
			return err
		}
		_, err := tx.Exec(ctx, backfillFinishSQL(p, t)[0])
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
		return setPhase(ctx, tx, p, t.Name, PhaseOriginal, PhaseBackfilled)
	})
	if err != nil {
		return res, err
	}
	res.Phase = PhaseBackfilled
	return res, nil
}

// keyJSON is a row's primary key as a jsonb object (what progress and the
// recorded keys hold).
func keyJSON(alias string, pk []string) string {
	parts := make([]string, len(pk))
	for i, c := range pk {
		parts[i] = lit(c) + ", " + alias + "." + ident(c)
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

// ruleValue is the tenant a rule gives row t (NULL when it gives none).
func ruleValue(p *Plan, r Rule) string {
	switch {
	case r.Constant != "":
		return lit(r.Constant) + "::pg_catalog." + p.catalogType()
	case r.Parent != nil:
		pcol := r.Parent.TenantColumn
		if pt, ok := p.Table(r.Parent.Table); pcol == "" && ok {
			pcol = pt.TenantColumn
		}
		return fmt.Sprintf("(SELECT bh_p.%s FROM %s bh_p WHERE bh_p.%s = t.%s)", ident(pcol), qident(p.Schema, r.Parent.Table), ident(r.Parent.key()), ident(r.Parent.Column))
	}
	return "(" + r.Expression + ")"
}

// ruleRows is SELECT key, tenant for every row the rule would fill. A
// parent rule joins (rather than a scalar sub-query), so a parent key
// matching two rows shows up as two tenants.
func ruleRows(p *Plan, t Table, pk []string, r Rule, colExists bool) string {
	q := qident(p.Schema, t.Name)
	cond := "true"
	if colExists {
		cond = "t." + ident(t.TenantColumn) + " IS NULL"
	}
	if r.Where != "" {
		cond += " AND (" + r.Where + ")"
	}
	if r.Parent != nil {
		pcol := r.Parent.TenantColumn
		if pt, ok := p.Table(r.Parent.Table); pcol == "" && ok {
			pcol = pt.TenantColumn
		}
		return fmt.Sprintf("SELECT %s AS k, bh_p.%s AS v FROM %s t JOIN %s bh_p ON bh_p.%s = t.%s WHERE %s", keyJSON("t", pk), ident(pcol), q,
			qident(p.Schema, r.Parent.Table), ident(r.Parent.key()), ident(r.Parent.Column), cond)
	}
	return fmt.Sprintf("SELECT %s AS k, %s AS v FROM %s t WHERE %s", keyJSON("t", pk), ruleValue(p, r), q, cond)
}

// precheckRules refuses, before any write, a rule matching no row (on a
// first run) and rows given two different tenants.
func precheckRules(ctx context.Context, conn *pgx.Conn, p *Plan, t Table, ti tableInfo) error {
	if len(t.Backfill) == 0 {
		return nil
	}
	var parts []string
	var errs []error
	for _, r := range t.Backfill {
		sub := ruleRows(p, t, ti.pk, r, ti.hasColumn)
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
		var n int64
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM ("+sub+") x WHERE x.v IS NOT NULL").Scan(&n); err != nil {
			return fmt.Errorf("%w: rule %s: %w", ErrRule, r.Name, err)
		}
		if n == 0 {
			errs = append(errs, fmt.Errorf("rule %s (%s) matches no row without a tenant", r.Name, ruleText(r)))
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
		errs = append(errs, fmt.Errorf("%d rows would get two different tenants from the rules (e.g. %s): make the rules disjoint", n, strings.Join(keys, ", ")))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrRule, errors.Join(errs...))
	}
	return nil
}

// runRule applies one rule batch by batch over primary-key ranges,
// resuming after the last committed batch. record keeps the keys it fills
// (an existing column) so that rollback can set them back to NULL.
func runRule(ctx context.Context, conn *pgx.Conn, p *Plan, t Table, pk []string, r Rule, record bool, total int64, o Options) (int64, error) {
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
	cond := "t." + ident(t.TenantColumn) + " IS NULL"
	if r.Where != "" {
		cond += " AND (" + r.Where + ")"
	}
	join := make([]string, len(pk))
	for i, c := range pk {
		join[i] = "t." + ident(c) + " = r." + ident(c)
	}
	rec := "SELECT 1 WHERE false"
	if record {
		rec = fmt.Sprintf("INSERT INTO %s.backfilled SELECT %s, %s FROM u ON CONFLICT DO NOTHING RETURNING 1", StateSchema, lit(rel), keyJSON("u", pk))
	}
	val := ruleValue(p, r)
	batch := fmt.Sprintf(`WITH r AS (
  SELECT %[1]s FROM %[2]s t
  WHERE $1::jsonb IS NULL OR (%[1]s) > (SELECT %[3]s FROM jsonb_populate_record(NULL::%[2]s, $1::jsonb) j)
  ORDER BY %[1]s LIMIT $2),
u AS (UPDATE %[2]s t SET %[4]s = %[5]s FROM r WHERE %[6]s AND %[7]s AND %[5]s IS NOT NULL RETURNING %[8]s),
b AS (%[9]s)
SELECT (SELECT %[10]s FROM r ORDER BY %[11]s LIMIT 1), (SELECT count(*) FROM u), (SELECT count(*) FROM r)`,
		cols("t", pk), q, cols("j", pk), ident(t.TenantColumn), val, strings.Join(join, " AND "), cond, cols("t", pk), rec,
		keyJSON("r", pk), descCols("r", pk))
	start := time.Now()
	var scanned int64
	for {
		var n, seen int64
		err := withTx(ctx, conn, o.LockTimeout, o.Retries, func(tx pgx.Tx) error {
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
// column but except (the tenant column, which backfill changes).
func checksum(ctx context.Context, conn *pgx.Conn, p *Plan, table, except string) (string, error) {
	var names []string
	err := conn.QueryRow(ctx, `SELECT coalesce(array_agg(a.attname::text ORDER BY a.attnum), '{}') FROM pg_attribute a
  WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attname <> $2`, qident(p.Schema, table), except).Scan(&names)
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
	return checksum(ctx, conn, p, table, "")
}
