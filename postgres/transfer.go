package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"slices"
	"strconv"
	"strings"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/postgres/migrations"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Tenant export and import (bulkhead tenant export / import): a tenant's
// rows read on the maintenance path in one snapshot, and written on another
// bulkhead in one transaction that verifies them before it commits.
//
// Rows travel as they are stored: sealed columns stay ciphertext (they
// open with the tenant's keysets, which travel in the same sealed archive
// and are re-wrapped by the target's KEK), generated columns are left out
// and recomputed. Each row is the jsonb object of its columns, rendered
// with TimeZone UTC and hex bytea, so both sides render the same row as
// the same text; a table's digest is SHA-256 over its rows' text, each
// followed by a newline, in primary-key order.

// transferSkipped are tenant tables an export leaves out, and why: their
// secrets are keyed hashes under the source server's key, which the target
// can't verify; users sign in again (passwords travel: they are argon2id
// hashes) and API keys are issued again.
var transferSkipped = map[string]string{
	"api_keys":       "API key hashes are keyed with the source server's secret",
	"refresh_tokens": "refresh token hashes are keyed with the source server's secret",
}

// TransferTable is one table of an export: its name, the tenant column,
// the columns carried (in table order, generated ones left out) and the
// primary key that orders its rows.
type TransferTable struct {
	Name         string   `json:"name"`
	TenantColumn string   `json:"tenant_column"`
	Columns      []string `json:"columns"`
	Key          []string `json:"key"`
}

// TableDigest is what an import checks a table against.
type TableDigest struct {
	Rows   int64  `json:"rows"`
	SHA256 string `json:"sha256"`
}

// SchemaVersion returns the newest migration this binary applies (every
// command migrates first, so it is the database's version too).
func SchemaVersion() (int64, error) {
	names, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil {
		return 0, err
	}
	var v int64
	for _, n := range names {
		d, _, ok := strings.Cut(n, "_")
		if !ok {
			continue
		}
		if x, err := strconv.ParseInt(d, 10, 64); err == nil && x > v {
			v = x
		}
	}
	if v == 0 {
		return 0, errors.New("no migrations embedded")
	}
	return v, nil
}

// TransferTables returns the tables an export carries, parents before
// children, read from this database's catalog. It fails closed: a table
// of the schema with a tenant_id column that the code neither exports nor
// skips on purpose is an error, so a new tenant table can't be left out of
// exports silently.
func (db *DB) TransferTables(ctx context.Context) ([]TransferTable, error) {
	var out []TransferTable
	err := db.InMaintenance(ctx, func(tx pgx.Tx) error {
		var err error
		out, err = transferTables(ctx, tx)
		return err
	})
	return out, err
}

func transferTables(ctx context.Context, tx pgx.Tx) ([]TransferTable, error) {
	rows, err := tx.Query(ctx, `SELECT c.relname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
		WHERE c.relnamespace = $1::regnamespace AND c.relkind = 'r' AND a.attname = 'tenant_id' AND NOT a.attisdropped`, Schema)
	if err != nil {
		return nil, err
	}
	inCatalog, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	var out []TransferTable
	for _, t := range Tables {
		inCatalog = slices.DeleteFunc(inCatalog, func(n string) bool { return n == t.Name })
		if _, skip := transferSkipped[t.Name]; skip {
			continue
		}
		tt := TransferTable{Name: t.Name, TenantColumn: t.TenantColumn}
		if tt.TenantColumn == "" {
			tt.TenantColumn = "tenant_id"
		}
		rows, err := tx.Query(ctx, `SELECT a.attname FROM pg_attribute a
			WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
			ORDER BY a.attnum`, Schema+"."+t.Name)
		if err != nil {
			return nil, err
		}
		if tt.Columns, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return nil, err
		}
		rows, err = tx.Query(ctx, `SELECT a.attname FROM pg_index i
			JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, ord) ON true
			JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
			WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY k.ord`, Schema+"."+t.Name)
		if err != nil {
			return nil, err
		}
		if tt.Key, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return nil, err
		}
		if len(tt.Columns) == 0 || len(tt.Key) == 0 {
			return nil, fmt.Errorf("export: table %s.%s has no columns or no primary key here", Schema, t.Name)
		}
		out = append(out, tt)
	}
	if len(inCatalog) > 0 {
		return nil, fmt.Errorf("export: tenant tables %s are not covered by export (postgres.Tables / transferSkipped): refusing to export an incomplete tenant", strings.Join(inCatalog, ", "))
	}
	return out, nil
}

// rowSQL selects a table's rows of one tenant as canonical jsonb text, in
// primary-key order.
func (t TransferTable) rowSQL() string {
	var pairs, key []string
	for _, c := range t.Columns {
		pairs = append(pairs, quoteLiteral(c)+", t."+pgx.Identifier{c}.Sanitize())
	}
	for _, c := range t.Key {
		key = append(key, "t."+pgx.Identifier{c}.Sanitize())
	}
	return fmt.Sprintf("SELECT jsonb_build_object(%s)::text FROM %s t WHERE t.%s = $1 ORDER BY %s",
		strings.Join(pairs, ", "), pgx.Identifier{Schema, t.Name}.Sanitize(), pgx.Identifier{t.TenantColumn}.Sanitize(), strings.Join(key, ", "))
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// canonical makes both sides render rows alike, for the transaction.
const canonical = `SELECT set_config('TimeZone', 'UTC', true), set_config('bytea_output', 'hex', true), set_config('DateStyle', 'ISO, MDY', true), set_config('extra_float_digits', '1', true)`

// scanTable calls emit with batches of t's rows of tenant and returns the
// table's digest.
func scanTable(ctx context.Context, tx pgx.Tx, t TransferTable, tenant uuid.UUID, batch int, emit func([]json.RawMessage) error) (TableDigest, error) {
	rows, err := tx.Query(ctx, t.rowSQL(), tenant)
	if err != nil {
		return TableDigest{}, fmt.Errorf("read %s: %w", t.Name, err)
	}
	defer rows.Close()
	var h hash.Hash = sha256.New()
	var d TableDigest
	var buf []json.RawMessage
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return TableDigest{}, err
		}
		h.Write([]byte(s))
		h.Write([]byte{'\n'})
		d.Rows++
		if emit != nil {
			buf = append(buf, json.RawMessage(s))
			if len(buf) == batch {
				if err := emit(buf); err != nil {
					return TableDigest{}, err
				}
				buf = nil
			}
		}
	}
	if err := rows.Err(); err != nil {
		return TableDigest{}, fmt.Errorf("read %s: %w", t.Name, err)
	}
	if len(buf) > 0 {
		if err := emit(buf); err != nil {
			return TableDigest{}, err
		}
	}
	d.SHA256 = hex.EncodeToString(h.Sum(nil))
	return d, nil
}

// ExportTenantRows reads every row of tenant in tables (from
// TransferTables) in one REPEATABLE READ, READ ONLY transaction on the
// maintenance path (a consistent snapshot; the runtime role and RLS are
// not involved), calling emit with batches of at most batch rows per
// table, in table order, and returns each table's digest. It returns
// bulkhead.ErrNotFound if the tenant does not exist.
func (db *DB) ExportTenantRows(ctx context.Context, tenant uuid.UUID, tables []TransferTable, batch int, emit func(table string, rows []json.RawMessage) error) (map[string]TableDigest, error) {
	out := map[string]TableDigest{}
	err := db.inMaintenance(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, canonical); err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM bulkhead.tenants WHERE id = $1)`, tenant).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			return fmt.Errorf("tenant %s: %w", tenant, bulkhead.ErrNotFound)
		}
		for _, t := range tables {
			d, err := scanTable(ctx, tx, t, tenant, batch, func(rows []json.RawMessage) error { return emit(t.Name, rows) })
			if err != nil {
				return err
			}
			out[t.Name] = d
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("export tenant %s: %w", tenant, err)
	}
	return out, nil
}

// AuditTransfer records an export or import of tenant in its audit_log on
// the maintenance path (action "tenant.export" / "tenant.import").
func (db *DB) AuditTransfer(ctx context.Context, tenant uuid.UUID, action, target string) error {
	return db.InMaintenance(ctx, func(tx pgx.Tx) error { return auditMaintenance(ctx, tx, tenant, action, target) })
}

// ImportRows is what ImportTenantRows's fill calls with each batch of an
// archive's rows, in table order.
type ImportRows func(table string, rows []json.RawMessage) error

// ImportTenantRows writes an exported tenant in one maintenance transaction
// and commits only if it verifies:
//
//   - the tenant must not exist here (an error wrapping
//     bulkhead.ErrConflict otherwise);
//   - the archive's tables must be exactly those this database exports,
//     each with a subset of its columns (only the column lists come from
//     the archive; tenant columns and keys are this database's); rows are
//     inserted only for tenant (a row naming another tenant is refused:
//     the insert keeps only rows of tenant and the count must match);
//   - after fill has inserted everything and returned the archive's
//     digests, every table's row count and digest, recomputed here from
//     the inserted rows, must equal them.
//
// The tenant row is committed disabled (disabled_at set, if the archive
// had it enabled) so that no credential works until FinishImport; pending
// reports whether this set it. Any error rolls everything back. ctx must
// be marked with bulkhead.AsMaintenance (ErrNoMaintenance otherwise).
func (db *DB) ImportTenantRows(ctx context.Context, tenant uuid.UUID, archived []TransferTable, fill func(insert ImportRows) (map[string]TableDigest, error)) (pending bool, err error) {
	tables := slices.Clone(archived)
	err = db.InMaintenance(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, canonical); err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM bulkhead.tenants WHERE id = $1)`, tenant).Scan(&exists); err != nil {
			return err
		}
		if exists {
			return fmt.Errorf("tenant %s already exists on this bulkhead (delete it first, or import elsewhere): %w", tenant, bulkhead.ErrConflict)
		}
		here, err := transferTables(ctx, tx)
		if err != nil {
			return err
		}
		// The archive says which columns it carries, nothing else: the
		// tables, their tenant columns and keys are this database's, so an
		// archive can't name its own tenant column to slip rows past the
		// tenant filter below.
		byName := map[string]TransferTable{}
		for _, h := range here {
			byName[h.Name] = h
		}
		if len(here) != len(tables) {
			return fmt.Errorf("the archive has %d tables, this bulkhead exports %d", len(tables), len(here))
		}
		seen := map[string]bool{}
		for i, t := range tables {
			h, ok := byName[t.Name]
			if !ok || seen[t.Name] {
				return fmt.Errorf("the archive's table %q is not one this bulkhead imports, or is listed twice", t.Name)
			}
			seen[t.Name] = true
			for _, c := range t.Columns {
				if !slices.Contains(h.Columns, c) {
					return fmt.Errorf("the archive's table %s has column %s, which this bulkhead lacks: archive from a newer bulkhead?", t.Name, c)
				}
			}
			tables[i] = TransferTable{Name: h.Name, TenantColumn: h.TenantColumn, Columns: t.Columns, Key: h.Key}
		}
		next := 0
		insert := func(table string, rows []json.RawMessage) error {
			for next < len(tables) && tables[next].Name != table {
				next++
			}
			if next == len(tables) {
				return fmt.Errorf("archive rows of table %q out of order or unknown", table)
			}
			return insertRows(ctx, tx, tables[next], tenant, rows)
		}
		want, err := fill(insert)
		if err != nil {
			return err
		}
		for _, t := range tables {
			got, err := scanTable(ctx, tx, t, tenant, 0, nil)
			if err != nil {
				return err
			}
			if w, ok := want[t.Name]; !ok || got != w {
				return fmt.Errorf("table %s does not verify after import: archive says %d rows, sha256 %.16s; imported %d rows, sha256 %.16s (nothing imported)", t.Name, w.Rows, w.SHA256, got.Rows, got.SHA256)
			}
		}
		if len(want) != len(tables) {
			return fmt.Errorf("the archive's checksums name %d tables, it has %d (nothing imported)", len(want), len(tables))
		}
		ct, err := tx.Exec(ctx, `UPDATE bulkhead.tenants SET disabled_at = now() WHERE id = $1 AND disabled_at IS NULL`, tenant)
		if err != nil {
			return err
		}
		pending = ct.RowsAffected() == 1
		return auditMaintenance(ctx, tx, tenant, "tenant.import", "rows verified")
	})
	if err != nil {
		return false, fmt.Errorf("import tenant %s: %w", tenant, err)
	}
	return pending, nil
}

func insertRows(ctx context.Context, tx pgx.Tx, t TransferTable, tenant uuid.UUID, rows []json.RawMessage) error {
	if len(rows) == 0 {
		return nil
	}
	cols := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cols[i] = pgx.Identifier{c}.Sanitize()
	}
	list := strings.Join(cols, ", ")
	arr, err := json.Marshal(rows)
	if err != nil {
		return err
	}
	sql := fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM jsonb_populate_recordset(NULL::%s, $1::jsonb) r WHERE r.%s = $2",
		pgx.Identifier{Schema, t.Name}.Sanitize(), list, list, pgx.Identifier{Schema, t.Name}.Sanitize(), pgx.Identifier{t.TenantColumn}.Sanitize())
	ct, err := tx.Exec(ctx, sql, string(arr), tenant)
	if err != nil {
		return fmt.Errorf("insert into %s: %w", t.Name, err)
	}
	if ct.RowsAffected() != int64(len(rows)) {
		return fmt.Errorf("archive rows of table %s name another tenant than %s: refused (nothing imported)", t.Name, tenant)
	}
	return nil
}

// UnfinishedImport reports whether tenant is what an import interrupted
// after its rows committed left behind (the process killed, the machine
// down, its undo never run): the tenant is disabled and its newest
// "tenant.import" audit record is the "rows verified" that
// ImportTenantRows writes, not FinishImport's "complete". Such a tenant
// was never live here (no credential worked: it was disabled throughout);
// it may lack its keys or vectors. A tenant that does not exist is not
// one (false, nil). ctx must be marked with bulkhead.AsMaintenance.
//
// The audit rows an archive carries are imported with it, so an archive
// can make the tenant it brings look unfinished: that only lets a later
// import of the same tenant id replace that disabled tenant.
func (db *DB) UnfinishedImport(ctx context.Context, tenant uuid.UUID) (bool, error) {
	var unfinished bool
	err := db.InMaintenance(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT t.disabled_at IS NOT NULL AND coalesce((SELECT a.target FROM bulkhead.audit_log a
				WHERE a.tenant_id = t.id AND a.action = 'tenant.import' ORDER BY a.at DESC LIMIT 1) = 'rows verified', false)
			FROM bulkhead.tenants t WHERE t.id = $1`, tenant).Scan(&unfinished)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		return err
	})
	if err != nil {
		return false, fmt.Errorf("unfinished import of tenant %s: %w", tenant, err)
	}
	return unfinished, nil
}

// FinishImport makes an imported tenant live: it clears the disabled_at
// that ImportTenantRows set (pending) and records it in the audit log.
func (db *DB) FinishImport(ctx context.Context, tenant uuid.UUID, pending bool) error {
	return db.InMaintenance(ctx, func(tx pgx.Tx) error {
		if pending {
			if _, err := tx.Exec(ctx, `UPDATE bulkhead.tenants SET disabled_at = NULL WHERE id = $1`, tenant); err != nil {
				return err
			}
		}
		return auditMaintenance(ctx, tx, tenant, "tenant.import", "complete")
	})
}
