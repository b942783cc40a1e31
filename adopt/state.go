package adopt

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/bulkhead-dev/bulkhead/rls"
	"github.com/jackc/pgx/v5"
)

// Phase is where one table is in the adoption.
type Phase string

// The phases, in order.
const (
	PhaseOriginal   Phase = "original"
	PhaseBackfilled Phase = "backfilled"
	PhaseShadow     Phase = "shadow"
	PhaseEnforced   Phase = "enforced"
)

// StateSchema holds adopt's own state in the adopted database.
const StateSchema = "bulkhead_adopt"

// ErrPhase is wrapped when a step is run out of order.
var ErrPhase = errors.New("phase out of order")

// schemaSQL creates the state schema, idempotently. The runtime role can
// read the mode table (the shadow switch) but nobody but the operator
// writes anything here; violations are written by a SECURITY DEFINER
// trigger function.
func schemaSQL(p *Plan) ([]string, error) {
	ctxFns, err := rls.ContextFunctions(rlsConfig(p))
	if err != nil {
		return nil, fmt.Errorf("context functions: %w", err)
	}
	s := StateSchema
	stmts := []string{
		"CREATE SCHEMA IF NOT EXISTS " + s,
		"GRANT USAGE ON SCHEMA " + s + " TO PUBLIC",
		`CREATE TABLE IF NOT EXISTS ` + s + `.tables (
  rel text PRIMARY KEY,
  phase text NOT NULL CHECK (phase IN ('original','backfilled','shadow','enforced')),
  tenant_column text NOT NULL,
  added_column boolean NOT NULL DEFAULT false,
  original jsonb NOT NULL DEFAULT '{}',
  checksum_before text, checksum_after text,
  note text,
  updated_at timestamptz NOT NULL DEFAULT now())`,
		`CREATE TABLE IF NOT EXISTS ` + s + `.progress (
  rel text, rule text, last_key jsonb, rows bigint NOT NULL DEFAULT 0, done boolean NOT NULL DEFAULT false,
  PRIMARY KEY (rel, rule))`,
		// Keys of rows whose existing tenant column backfill filled: rollback
		// sets exactly these back to NULL.
		`CREATE TABLE IF NOT EXISTS ` + s + `.backfilled (rel text, key jsonb, PRIMARY KEY (rel, key))`,
		// With the value written, so that rollback leaves a tenant the
		// application changed since. Added after the table's first version:
		// keys recorded before it have none, and rollback clears them as
		// that version did.
		backfilledValSQL,
		// The same for owners backfill filled (kinds owned and private),
		// with the column, so rollback needs no plan to find it, and the
		// value written: rollback clears an owner only while it is still
		// that one.
		`CREATE TABLE IF NOT EXISTS ` + s + `.owner_backfilled (rel text, col text NOT NULL, key jsonb, val text NOT NULL, PRIMARY KEY (rel, key))`,
		`CREATE TABLE IF NOT EXISTS ` + s + `.history (at timestamptz NOT NULL DEFAULT clock_timestamp(), rel text, from_phase text, to_phase text, by_role text DEFAULT current_user)`,
		`CREATE TABLE IF NOT EXISTS ` + s + `.roles (name text PRIMARY KEY, created boolean NOT NULL)`,
		// What Keys added (kind index or fk) and the foreign key each fk
		// replaced (its definition, every name qualified), for rollback;
		// restored: the old key is back, not yet validated.
		`CREATE TABLE IF NOT EXISTS ` + s + `.keys (name text PRIMARY KEY, kind text NOT NULL CHECK (kind IN ('index', 'fk', 'restored')),
  rel text NOT NULL, parent text, replaced text, replaced_def text, validated boolean NOT NULL DEFAULT false)`,
		// The shadow switch, read once per statement by shadow_open.
		`CREATE TABLE IF NOT EXISTS ` + s + `.mode (rel oid PRIMARY KEY, shadow boolean NOT NULL)`,
		"GRANT SELECT ON " + s + ".mode TO PUBLIC",
		`CREATE TABLE IF NOT EXISTS ` + s + `.violation (
  at timestamptz NOT NULL DEFAULT clock_timestamp(), rel text NOT NULL, op text NOT NULL, tenant text NOT NULL,
  row_tenant text, fingerprint text NOT NULL, row_key text, weight bigint NOT NULL DEFAULT 1)`,
		// The entity in context when the violation was recorded (owned and
		// private tables; '' when none). Added after the table's first
		// version, so IF NOT EXISTS.
		`ALTER TABLE ` + s + `.violation ADD COLUMN IF NOT EXISTS entity text NOT NULL DEFAULT ''`,
		// Counts per (table, operation, tenant, fingerprint, entity);
		// approximate when a storm was sampled.
		`CREATE OR REPLACE VIEW ` + s + `.violation_count AS SELECT v.rel, v.op, v.tenant, v.fingerprint, sum(v.weight)::bigint AS n,
  min(v.at) AS first_at, max(v.at) AS last_at, bool_or(v.weight > 1) AS approximate, v.entity
  FROM ` + s + `.violation v GROUP BY v.rel, v.op, v.tenant, v.fingerprint, v.entity`,
		`CREATE INDEX IF NOT EXISTS violation_rel_at ON ` + s + `.violation (rel, at)`,
		`CREATE TABLE IF NOT EXISTS ` + s + `.settings (name text PRIMARY KEY, value text NOT NULL)`,
		`INSERT INTO ` + s + `.settings VALUES ('keys_per_transaction', '100'), ('storm_sample', '100') ON CONFLICT DO NOTHING`,
		// The switch: open (shadow) for the table, unless the statement runs
		// in a strict replay (bulkhead_adopt.strict = on). The setting can
		// only close the door, so a client forging it harms only itself.
		`CREATE OR REPLACE FUNCTION ` + s + `.shadow_open(r oid) RETURNS boolean
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $fn$ SELECT coalesce((SELECT m.shadow FROM ` + s + `.mode m WHERE m.rel OPERATOR(pg_catalog.=) r), false)
    AND coalesce(pg_catalog.current_setting('bulkhead_adopt.strict', true), '') OPERATOR(pg_catalog.<>) 'on' $fn$`,
		"GRANT EXECUTE ON FUNCTION " + s + ".shadow_open(oid) TO PUBLIC",
		// One violation, one append: exact up to keys_per_transaction per
		// (table, operation) in a transaction, each with its row key; past
		// that a storm is sampled, one row in storm_sample recorded with that
		// weight and no key (its count is then approximate, under by less
		// than storm_sample per transaction, and says so). Never the row's
		// contents. Nothing runs per clean row or per statement (an upsert of
		// one counter per violation was quadratic in a storm; a statement
		// trigger to flush a count cost every clean insert ~8 %). TG_ARGV:
		// tenant column, key columns.
		`CREATE OR REPLACE FUNCTION ` + s + `.record_violation() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $fn$
DECLARE
  v_name text := 'bulkhead_adopt.n_' || TG_RELID::text || '_' || lower(TG_OP);
  v_n bigint := coalesce(nullif(current_setting(v_name, true), ''), '0')::bigint + 1;
  v_cap bigint;
  v_every bigint;
  v_weight bigint := 1;
  v_row record;
  v_key text;
  v_row_tenant text;
  v_sql text;
  v_vals text[];
BEGIN
  PERFORM set_config(v_name, v_n::text, true);
  IF v_n = 1 THEN
    SELECT coalesce(max(st.value::bigint) FILTER (WHERE st.name = 'keys_per_transaction'), 100),
           coalesce(max(st.value::bigint) FILTER (WHERE st.name = 'storm_sample'), 100)
      INTO v_cap, v_every FROM ` + s + `.settings st;
    PERFORM set_config(v_name || '_cap', v_cap::text || ':' || v_every::text, true);
  ELSE
    v_cap := split_part(current_setting(v_name || '_cap'), ':', 1)::bigint;
    v_every := split_part(current_setting(v_name || '_cap'), ':', 2)::bigint;
  END IF;
  IF v_n > v_cap THEN
    IF (v_n - v_cap) % greatest(v_every, 1) <> 0 THEN
      RETURN NEW;
    END IF;
    v_weight := greatest(v_every, 1);
  ELSE
    IF TG_OP = 'DELETE' THEN v_row := OLD; ELSE v_row := NEW; END IF;
    -- Values become text through their types' output functions only
    -- (format's %s): never a cast, which the owner of a type may define
    -- and which would run here as the definer (to_jsonb and ::text would).
    SELECT string_agg(format('CASE WHEN ($1).%1$I IS NULL THEN NULL ELSE pg_catalog.format(''%%s'', ($1).%1$I) END', c), ', ')
      INTO v_sql FROM unnest(string_to_array(TG_ARGV[0] || ',' || TG_ARGV[1], ',')) c;
    EXECUTE 'SELECT ARRAY[' || v_sql || ']' INTO v_vals USING v_row;
    v_row_tenant := v_vals[1];
    v_key := array_to_string(v_vals[2:], ',');
  END IF;
  INSERT INTO ` + s + `.violation (rel, op, tenant, row_tenant, fingerprint, row_key, weight, entity)
    VALUES (TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, TG_OP, coalesce(current_setting('` + p.TenantSetting + `', true), ''),
      v_row_tenant, ` + s + `.fingerprint(), v_key, v_weight, coalesce(current_setting('` + p.entitySetting() + `', true), ''));
  -- NEW lets the row of the BEFORE INSERT trigger go on (triggerSQL); the
  -- AFTER triggers' return value is ignored.
  RETURN NEW;
END
$fn$`,
		// Only the operator attaches it to a table: EXECUTE is checked when
		// a trigger is created, not when it fires.
		"REVOKE EXECUTE ON FUNCTION " + s + ".record_violation() FROM PUBLIC",
		// The statement's fingerprint: its text with literals replaced, hashed.
		`CREATE OR REPLACE FUNCTION ` + s + `.fingerprint() RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  AS $fn$ SELECT pg_catalog.left(pg_catalog.md5(pg_catalog.regexp_replace(pg_catalog.current_query(), '''[^'']*''|\m[0-9]+\M', '?', 'g')), 16) $fn$`,
	}
	// current_tenant() and friends, read from the application's setting.
	for _, st := range ctxFns {
		// rls grants EXECUTE to its four roles; adopt's callers are any role
		// (the legacy application may still connect as the owner).
		if strings.HasPrefix(st, "GRANT EXECUTE") {
			fn := strings.TrimPrefix(st, "GRANT EXECUTE ON FUNCTION ")
			fn = fn[:strings.Index(fn, " TO ")]
			st = "GRANT EXECUTE ON FUNCTION " + fn + " TO PUBLIC"
		}
		stmts = append(stmts, st)
	}
	return stmts, nil
}

// rlsConfig maps a plan onto the policy generator's configuration: the
// helpers live in the state schema; the roles are the runtime role (the
// generator needs four names; adopt only uses the context functions and
// the layer-1, owned and private policies, so the others are the runtime
// role too).
// backfilledValSQL upgrades the backfilled table of a state schema from
// before it recorded values (schemaSQL, and undoBackfill, which may run on
// such a schema without installing this version's).
const backfilledValSQL = `ALTER TABLE ` + StateSchema + `.backfilled ADD COLUMN IF NOT EXISTS val text`

func rlsConfig(p *Plan) rls.Config {
	return rls.Config{Schema: StateSchema, Runtime: p.Runtime.Name, Maintenance: p.Runtime.Name, Owner: p.Runtime.Name, Definer: p.Runtime.Name,
		TenantSetting: p.TenantSetting, EntitySetting: p.entitySetting(), ActingForSetting: StateSchema + ".acting_for", TenantType: p.tenantType()}
}

// TableStatus is one table's recorded state.
type TableStatus struct {
	Table          string    `json:"table"`
	Phase          Phase     `json:"phase"`
	TenantColumn   string    `json:"tenant_column"`
	AddedColumn    bool      `json:"added_column"`
	ChecksumBefore string    `json:"checksum_before,omitempty"`
	ChecksumAfter  string    `json:"checksum_after,omitempty"`
	Note           string    `json:"note,omitempty"`
	UpdatedAt      time.Time `json:"updated_at"`
	// Keys are the table's foreign keys that adopt keys replaced by
	// tenant-carrying ones.
	Keys []KeyState `json:"keys,omitempty"`
}

// KeyState is one foreign key adopt keys replaced.
type KeyState struct {
	Replaced    string `json:"replaced"`    // the application's key
	Replacement string `json:"replacement"` // adopt's, carrying the tenant
	Validated   bool   `json:"validated"`   // false: it refuses new rows, old ones not yet checked
}

// Status returns every tenant table of the plan with its phase; a table
// with no recorded state is PhaseOriginal. It only reads.
func Status(ctx context.Context, conn *pgx.Conn, p *Plan) ([]TableStatus, error) {
	exists, err := stateTableExists(ctx, conn, "tables")
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	keys, err := keyStates(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	var out []TableStatus
	for _, t := range p.TenantTables() {
		st := TableStatus{Table: t.Name, Phase: PhaseOriginal, TenantColumn: t.TenantColumn}
		if exists {
			var before, after, note *string
			err := conn.QueryRow(ctx, "SELECT phase, tenant_column, added_column, checksum_before, checksum_after, note, updated_at FROM "+StateSchema+".tables WHERE rel = $1",
				qualified(p, t.Name)).Scan(&st.Phase, &st.TenantColumn, &st.AddedColumn, &before, &after, &note, &st.UpdatedAt)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return nil, fmt.Errorf("status of %s: %w", t.Name, err)
			}
			st.ChecksumBefore, st.ChecksumAfter, st.Note = deref(before), deref(after), deref(note)
			st.Keys = keys[qualified(p, t.Name)]
		}
		out = append(out, st)
	}
	return out, nil
}

// keyStates reads, by table, the foreign keys that adopt keys replaced
// (none when the keys table doesn't exist yet).
func keyStates(ctx context.Context, conn *pgx.Conn) (map[string][]KeyState, error) {
	if ok, err := stateTableExists(ctx, conn, "keys"); err != nil || !ok {
		return nil, err
	}
	rows, err := conn.Query(ctx, "SELECT rel, replaced, name, validated FROM "+StateSchema+".keys WHERE kind = 'fk' ORDER BY rel, replaced")
	if err != nil {
		return nil, err
	}
	out := map[string][]KeyState{}
	var rel string
	var k KeyState
	_, err = pgx.ForEachRow(rows, []any{&rel, &k.Replaced, &k.Replacement, &k.Validated}, func() error {
		out[rel] = append(out[rel], k)
		return nil
	})
	return out, err
}

// rowQuerier is a connection, a pool or a transaction (an alias, so that
// exported functions taking one show what they need).
type rowQuerier = interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}

// stateTableExists reports whether table (of the state schema) exists:
// a database adopt never touched, or touched before the table was added,
// has none.
func stateTableExists(ctx context.Context, q rowQuerier, table string) (bool, error) {
	var exists bool
	err := q.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", StateSchema+"."+table).Scan(&exists)
	return exists, err
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// phaseOf reads one table's phase inside tx, locking its state row. It
// reads the context mode first (ContextMode: FOR SHARE on the settings
// row, which Harden locks EXCLUSIVE), so every transaction takes the two in
// one order, the settings before any phase row, as Harden does: a step and
// Harden wait for each other, never deadlock.
func phaseOf(ctx context.Context, tx pgx.Tx, p *Plan, table string) (Phase, error) {
	if _, err := ContextMode(ctx, tx, p); err != nil {
		return "", err
	}
	var ph Phase
	err := tx.QueryRow(ctx, "SELECT phase FROM "+StateSchema+".tables WHERE rel = $1 FOR UPDATE", qualified(p, table)).Scan(&ph)
	if errors.Is(err, pgx.ErrNoRows) {
		return PhaseOriginal, nil
	}
	if err != nil {
		return "", fmt.Errorf("read phase of %s: %w", table, err)
	}
	return ph, nil
}

// setPhase records a transition inside tx (with the change it describes).
func setPhase(ctx context.Context, tx pgx.Tx, p *Plan, table string, from, to Phase) error {
	_, err := tx.Exec(ctx, "UPDATE "+StateSchema+".tables SET phase = $2, updated_at = now() WHERE rel = $1", qualified(p, table), to)
	if err == nil {
		_, err = tx.Exec(ctx, "INSERT INTO "+StateSchema+".history (rel, from_phase, to_phase) VALUES ($1, $2, $3)", qualified(p, table), from, to)
	}
	if err != nil {
		return fmt.Errorf("record phase %s of %s: %w", to, table, err)
	}
	return nil
}

// qualified is "schema.table" as recorded in the state tables.
func qualified(p *Plan, table string) string { return p.Schema + "." + table }

// qident quotes a (schema, name) pair as an SQL name.
func qident(parts ...string) string {
	q := make([]string, len(parts))
	for i, p := range parts {
		q[i] = ident(p)
	}
	return strings.Join(q, ".")
}

// ident is the one way adopt writes a name: bare when it is a plain
// lower-case identifier that isn't a keyword, double-quoted otherwise.
func ident(name string) string {
	if plainRE.MatchString(name) && !reserved[name] {
		return name
	}
	return pgx.Identifier{name}.Sanitize()
}

var plainRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

var reserved = map[string]bool{"user": true, "order": true, "group": true, "table": true, "select": true, "where": true,
	"from": true, "to": true, "all": true, "end": true, "check": true, "default": true, "limit": true, "offset": true}

// lit quotes a string literal.
func lit(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// installState creates the state schema and helpers (idempotent) in tx.
// The helpers read the tenant from the setting in effect (see Harden).
func installState(ctx context.Context, tx pgx.Tx, p *Plan) error {
	p, err := Effective(ctx, tx, p)
	if err != nil {
		return err
	}
	stmts, err := schemaSQL(p)
	if err != nil {
		return err
	}
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return fmt.Errorf("install %s schema: %w", StateSchema, err)
		}
	}
	return nil
}

// withTx runs fn in one transaction with a lock_timeout, so that DDL waits
// briefly for a busy table and gives up (rolling everything back) instead
// of queueing the application's queries behind it. It retries up to
// retries times when the transaction lost its locks (retryable).
func withTx(ctx context.Context, conn *pgx.Conn, lockTimeout time.Duration, retries int, fn func(pgx.Tx) error) error {
	var err error
	for attempt := 0; attempt <= retries; attempt++ {
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			// In a deadlock with the application, the backend whose
			// deadlock_timeout ends first checks, finds it and aborts its
			// own transaction: make that adopt's step, which is retried,
			// rather than the application's request. deadlock_timeout is
			// superuser-only (PGC_SUSET): an operator that owns the tables
			// without being one keeps the server's. One statement, one
			// round trip per step. Keys are recorded as their types'
			// output (keyJSON) and read back by their input functions: the
			// output settings are pinned, so a key written under one
			// DateStyle is read back under the same.
			if _, err := tx.Exec(ctx, `SELECT pg_catalog.set_config('lock_timeout', $1, true),
  pg_catalog.set_config('DateStyle', 'ISO, MDY', true), pg_catalog.set_config('IntervalStyle', 'postgres', true),
  pg_catalog.set_config('extra_float_digits', '3', true),
  (SELECT pg_catalog.set_config('deadlock_timeout', '100ms', true) FROM pg_catalog.pg_roles WHERE rolname = current_user AND rolsuper)`,
				fmt.Sprintf("%dms", lockTimeout.Milliseconds())); err != nil {
				return err
			}
			return fn(tx)
		})
		if !retryable(err) {
			return err
		}
		time.Sleep(time.Duration(attempt+1) * 50 * time.Millisecond)
	}
	return fmt.Errorf("gave up after %d lock timeouts or deadlocks: %w", retries+1, err)
}

// retryable reports whether err is a step that lost a lock, rolled back
// whole: a lock timeout (a busy table), or a deadlock with the
// application's transactions, which a step's DDL can meet when the
// application writes the same two tables in the other order (PostgreSQL
// aborts the step, the transaction waiting longest).
func retryable(err error) bool {
	s := sqlState(err)
	return s == "55P03" || s == "40P01" // lock_not_available, deadlock_detected
}
