package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/fieldcrypt"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Key maintenance: usage per key, re-encryption after rotation, and the
// sweep of legacy plaintext. All of it is cross-tenant work on the
// maintenance path (ctx must carry bulkhead.AsMaintenance); values are
// opened and sealed with the keys of the tenant being processed, which the
// code names explicitly in a scope.

// envelopeSQL is true for a value that has the sealed-envelope header.
const envelopeSQL = `substring(%[1]s from 1 for 5) = '\x0062680101'::bytea`

// KeyUsage counts a tenant's sealed values per key id, and its values
// still in plaintext where a sealed one belongs.
type KeyUsage struct {
	ByKey     map[uint32]int64
	Plaintext int64
}

// KeyUsage reads a tenant's sealed columns (maintenance path).
func (db *DB) KeyUsage(ctx context.Context, tenant uuid.UUID) (KeyUsage, error) {
	u := KeyUsage{ByKey: map[uint32]int64{}}
	err := db.InMaintenance(ctx, func(tx pgx.Tx) error {
		for _, c := range SealedColumns {
			rows, err := tx.Query(ctx, fmt.Sprintf(`SELECT CASE WHEN `+envelopeSQL+` THEN substring(%[1]s from 6 for 4) END AS key, count(*)
				FROM bulkhead.%[2]s WHERE tenant_id = $1 AND %[1]s IS NOT NULL GROUP BY 1`, c.Column, c.Table), tenant)
			if err != nil {
				return err
			}
			for rows.Next() {
				var key []byte
				var n int64
				if err := rows.Scan(&key, &n); err != nil {
					return err
				}
				if key == nil {
					u.Plaintext += n
				} else {
					u.ByKey[binary.BigEndian.Uint32(key)] += n
				}
			}
			if err := rows.Err(); err != nil {
				return err
			}
		}
		// Confidential documents written before encryption hold plaintext in content.
		var n int64
		if err := tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM bulkhead.documents WHERE tenant_id = $1 AND confidential AND content_sealed IS NULL AND content <> '')
			+ (SELECT count(*) FROM bulkhead.chunks c JOIN bulkhead.documents d ON d.tenant_id = c.tenant_id AND d.id = c.document_id
			   WHERE c.tenant_id = $1 AND d.confidential AND c.content_sealed IS NULL AND c.content <> '')`, tenant).Scan(&n); err != nil {
			return err
		}
		u.Plaintext += n
		return nil
	})
	return u, err
}

// Progress reports work done out of total.
type Progress func(done, total int64)

// Reencrypt re-seals, in batches of batch values, every sealed value of
// tenant that is not under its primary key. Each batch is one transaction
// and each row is updated only if it still holds the value read, so it can
// be interrupted and run again (it resumes where it stopped) and races no
// writer. A value that does not open (its key is gone) is skipped and
// counted in the returned *UnreadableError, after every other value is
// done; the keys of skipped values are kept. It returns how many values it
// re-sealed.
//
// Run alone it re-encrypts what is committed; DB.RotateKeys first makes
// sure no writer can still be sealing under the old key.
func (db *DB) Reencrypt(ctx context.Context, tenant uuid.UUID, batch int, progress Progress) (int64, error) {
	if db.keyring == nil {
		return 0, errors.New("re-encryption needs a keyring")
	}
	db.keyring.Invalidate(tenant) // seal with the stored primary, not a cached one
	st, err := db.keyring.Status(ctx, tenant)
	if err != nil {
		return 0, err
	}
	usage, err := db.KeyUsage(ctx, tenant)
	if err != nil {
		return 0, err
	}
	var total int64
	for id, n := range usage.ByKey {
		if id != st.Primary {
			total += n
		}
	}
	primary := binary.BigEndian.AppendUint32(nil, st.Primary)
	return db.resealLoop(ctx, tenant, batch, total, progress, func(c SealedColumn) string {
		return fmt.Sprintf(envelopeSQL+` AND substring(%[1]s from 6 for 4) <> $3`, c.Column)
	}, primary, func(sctx context.Context, u *keyUse, c SealedColumn, id uuid.UUID, old []byte) ([]byte, error) {
		f := fieldcrypt.Field{Table: c.Table, Column: c.Column, Row: id}
		pt, err := db.keyring.Open(sctx, f, old)
		if err != nil {
			return nil, err
		}
		out, v, err := db.keyring.SealAt(sctx, f, pt)
		if err != nil {
			return nil, err
		}
		if k, _ := fieldcrypt.KeyID(out); k != st.Primary {
			// Another rotation of this tenant made a newer key primary:
			// re-sealing to it here would select the row again forever.
			return nil, fmt.Errorf("%w: tenant %s's primary key changed during re-encryption; run it again", bulkhead.ErrConflict, tenant)
		}
		u.add(v)
		return out, nil
	})
}

// UnreadableError lists sealed values that do not open with the tenant's
// keys (their key was retired or shredded, or they were tampered with).
// Re-encryption skips them; they stay as they are.
type UnreadableError struct {
	Tenant uuid.UUID
	Values []string // table.column of row id
}

func (e *UnreadableError) Error() string {
	return fmt.Sprintf("tenant %s: %d sealed values do not open with its keys (left as they are): %s", e.Tenant, len(e.Values), strings.Join(e.Values, ", "))
}

// RotateResult is what RotateKeys did.
type RotateResult struct {
	Primary     uint32   `json:"primary_key"`
	Reencrypted int64    `json:"reencrypted"`
	Retired     []uint32 `json:"retired_keys"`
}

// RotateKeys rotates a tenant's field key while any number of servers keep
// reading and writing (maintenance path):
//
//  1. unless resume, a new key is added to the keyset and made primary;
//  2. the keyset's version is published in tenants.key_version; from then
//     on every write of a sealed value whose cached keyset is older rolls
//     back, reloads and seals again with the new key (see keyUse);
//  3. it waits for every transaction older than the publication to end, so
//     no value sealed under the old key can still be committed later;
//  4. every value not under the primary key is re-encrypted (resumable;
//     values that do not open are skipped, reported, and keep their key);
//  5. it publishes and waits again, counts the keys values use and retires
//     the others, only if the keyset has not changed since it counted.
//
// Servers open values sealed under any key still in the keyset, and reload
// the keyset once when a value names a key they don't have. It returns
// *UnreadableError (after finishing everything else) when values did not
// open, and bulkhead.ErrConflict when another rotation of the same tenant
// ran at the same time (run it again).
func (db *DB) RotateKeys(ctx context.Context, tenant uuid.UUID, resume bool, batch int, progress Progress) (RotateResult, error) {
	var res RotateResult
	if db.keyring == nil {
		return res, errors.New("key rotation needs a keyring")
	}
	if err := db.keyring.Provision(ctx, tenant); err != nil {
		return res, err
	}
	if !resume {
		if _, err := db.keyring.Rotate(ctx, tenant); err != nil {
			return res, err
		}
	}
	if _, err := db.publishKeys(ctx, tenant); err != nil {
		return res, err
	}
	n, rerr := db.Reencrypt(ctx, tenant, batch, progress)
	res.Reencrypted = n
	var unreadable *UnreadableError
	if rerr != nil && !errors.As(rerr, &unreadable) {
		return res, rerr
	}
	version, err := db.publishKeys(ctx, tenant)
	if err != nil {
		return res, err
	}
	u, err := db.KeyUsage(ctx, tenant)
	if err != nil {
		return res, err
	}
	inUse := map[uint32]bool{}
	for id, n := range u.ByKey {
		inUse[id] = n > 0
	}
	if res.Retired, err = db.keyring.Retire(ctx, tenant, version, inUse); err != nil {
		return res, err
	}
	st, err := db.keyring.Status(ctx, tenant)
	if err != nil {
		return res, err
	}
	res.Primary = st.Primary
	if unreadable != nil {
		return res, unreadable
	}
	return res, nil
}

// publishKeys publishes the tenant's current keyset version in
// tenants.key_version, then waits until every transaction that was running
// when it was published has ended (see keyUse). It returns the version.
func (db *DB) publishKeys(ctx context.Context, tenant uuid.UUID) (int64, error) {
	st, err := db.keyring.Status(ctx, tenant)
	if err != nil {
		return 0, err
	}
	err = db.InMaintenance(ctx, func(tx pgx.Tx) error {
		ct, err := tx.Exec(ctx, `UPDATE bulkhead.tenants SET key_version = greatest(key_version, $2) WHERE id = $1`, tenant, st.Version)
		if err != nil {
			return err
		}
		if ct.RowsAffected() == 0 {
			return fmt.Errorf("tenant %s: %w", tenant, bulkhead.ErrNotFound)
		}
		return auditMaintenance(ctx, tx, tenant, "keys.publish", fmt.Sprint(st.Version))
	})
	if err != nil {
		return 0, fmt.Errorf("publish tenant %s's key version: %w", tenant, err)
	}
	return st.Version, db.waitForOlderTransactions(ctx)
}

// waitForOlderTransactions returns once every transaction that holds a
// transaction id assigned before the call has ended (committed or rolled
// back), like CREATE INDEX CONCURRENTLY waits for older transactions. A
// long transaction elsewhere in the cluster delays it; ctx bounds it.
func (db *DB) waitForOlderTransactions(ctx context.Context) error {
	var mark string
	// A fresh transaction id, taken after the caller's commit: any writer
	// that read the old version had its id before it.
	if err := db.maint.QueryRow(ctx, `SELECT pg_current_xact_id()::text`).Scan(&mark); err != nil {
		return fmt.Errorf("wait for older transactions: %w", err)
	}
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 500*time.Millisecond) {
		var done bool
		if err := db.maint.QueryRow(ctx, `SELECT pg_snapshot_xmin(pg_current_snapshot()) > $1::text::xid8`, mark).Scan(&done); err != nil {
			return fmt.Errorf("wait for older transactions: %w", err)
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for older transactions: %w", ctx.Err())
		case <-time.After(wait):
		}
	}
}

// Sweep seals every value of tenant that is still plaintext where a sealed
// one belongs (written before encryption was enabled), including the text
// of confidential documents and their chunks, in resumable batches. It
// provisions the tenant's keys first if it has none.
func (db *DB) Sweep(ctx context.Context, tenant uuid.UUID, batch int, progress Progress) (int64, error) {
	if db.keyring == nil {
		return 0, errors.New("the sweep needs a keyring")
	}
	if err := db.keyring.Provision(ctx, tenant); err != nil {
		return 0, err
	}
	usage, err := db.KeyUsage(ctx, tenant)
	if err != nil {
		return 0, err
	}
	n, err := db.resealLoop(ctx, tenant, batch, usage.Plaintext, progress, func(c SealedColumn) string {
		return fmt.Sprintf(`NOT (`+envelopeSQL+`) AND $3::bytea IS NULL`, c.Column)
	}, nil, func(sctx context.Context, u *keyUse, c SealedColumn, id uuid.UUID, old []byte) ([]byte, error) {
		return db.seal(sctx, u, c.Table, c.Column, id, old)
	})
	if err != nil {
		return n, err
	}
	// Confidential text kept in the plain column moves into content_sealed.
	sctx, err := bulkhead.WithScope(ctx, bulkhead.Scope{Tenant: tenant})
	if err != nil {
		return n, err
	}
	for _, q := range []struct{ table, sel string }{
		{"documents", `SELECT id, content FROM bulkhead.documents WHERE tenant_id = $1 AND confidential AND content_sealed IS NULL AND content <> '' LIMIT $2`},
		{"chunks", `SELECT c.id, c.content FROM bulkhead.chunks c JOIN bulkhead.documents d ON d.tenant_id = c.tenant_id AND d.id = c.document_id
			WHERE c.tenant_id = $1 AND d.confidential AND c.content_sealed IS NULL AND c.content <> '' LIMIT $2`},
	} {
		for {
			moved := 0
			err := db.withFreshKeys(tenant, func(u *keyUse) error {
				moved = 0
				return db.InMaintenance(ctx, func(tx pgx.Tx) error {
					rows, err := tx.Query(ctx, q.sel, tenant, batch)
					if err != nil {
						return err
					}
					items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (idText, error) {
						var it idText
						return it, r.Scan(&it.id, &it.text)
					})
					if err != nil {
						return err
					}
					for _, it := range items {
						sealed, err := db.seal(sctx, u, q.table, "content_sealed", it.id, []byte(it.text))
						if err != nil {
							return err
						}
						ct, err := tx.Exec(ctx, `UPDATE bulkhead.`+q.table+` SET content = '', content_sealed = $3 WHERE tenant_id = $1 AND id = $2 AND content = $4 AND content_sealed IS NULL`,
							tenant, it.id, sealed, it.text)
						if err != nil {
							return err
						}
						moved += int(ct.RowsAffected())
					}
					return u.check(ctx, tx)
				})
			})
			if err != nil {
				return n, err
			}
			n += int64(moved)
			if progress != nil {
				progress(n, usage.Plaintext)
			}
			if moved == 0 {
				break
			}
		}
	}
	return n, nil
}

// resealLoop walks SealedColumns, selecting batches of rows of tenant
// matching where(column) (with $3 = arg) and replacing each value by
// reseal(value), one transaction per batch that checks the keys it sealed
// with are current (see keyUse). A value reseal can't open
// (fieldcrypt.ErrUndecryptable) is skipped and reported at the end in an
// *UnreadableError.
func (db *DB) resealLoop(ctx context.Context, tenant uuid.UUID, batch int, total int64, progress Progress,
	where func(SealedColumn) string, arg []byte, reseal func(context.Context, *keyUse, SealedColumn, uuid.UUID, []byte) ([]byte, error)) (int64, error) {
	if batch <= 0 {
		batch = 200
	}
	sctx, err := bulkhead.WithScope(ctx, bulkhead.Scope{Tenant: tenant})
	if err != nil {
		return 0, err
	}
	var done int64
	if progress != nil {
		progress(0, total)
	}
	unreadable := &UnreadableError{Tenant: tenant}
	for _, c := range SealedColumns {
		skip := []uuid.UUID{}
		for {
			changed, skipped := 0, 0
			err := db.withFreshKeys(tenant, func(u *keyUse) error {
				changed, skipped = 0, 0
				return db.InMaintenance(ctx, func(tx pgx.Tx) error {
					rows, err := tx.Query(ctx, fmt.Sprintf(`SELECT id, %[1]s FROM bulkhead.%[2]s WHERE tenant_id = $1 AND %[1]s IS NOT NULL AND `+where(c)+
						` AND id <> ALL($4) ORDER BY id LIMIT $2`, c.Column, c.Table), tenant, batch, arg, skip)
					if err != nil {
						return err
					}
					items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (idValue, error) {
						var it idValue
						return it, r.Scan(&it.id, &it.old)
					})
					if err != nil {
						return err
					}
					for _, it := range items {
						sealed, err := reseal(sctx, u, c, it.id, it.old)
						if errors.Is(err, fieldcrypt.ErrUndecryptable) {
							skip = append(skip, it.id)
							unreadable.Values = append(unreadable.Values, fmt.Sprintf("%s.%s of %s", c.Table, c.Column, it.id))
							skipped++
							continue
						}
						if err != nil {
							return fmt.Errorf("%s.%s of %s: %w", c.Table, c.Column, it.id, err)
						}
						ct, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE bulkhead.%[2]s SET %[1]s = $3 WHERE tenant_id = $1 AND id = $2 AND %[1]s = $4`, c.Column, c.Table),
							tenant, it.id, sealed, it.old)
						if err != nil {
							return err
						}
						changed += int(ct.RowsAffected())
					}
					return u.check(ctx, tx)
				})
			})
			if err != nil {
				return done, err
			}
			done += int64(changed)
			if progress != nil {
				progress(done, total)
			}
			if changed == 0 && skipped == 0 {
				break
			}
		}
	}
	if len(unreadable.Values) > 0 {
		return done, unreadable
	}
	return done, nil
}

type idText struct {
	id   uuid.UUID
	text string
}

type idValue struct {
	id  uuid.UUID
	old []byte
}
