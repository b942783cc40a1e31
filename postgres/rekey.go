package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

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
// writer. It returns how many values it re-sealed.
func (db *DB) Reencrypt(ctx context.Context, tenant uuid.UUID, batch int, progress Progress) (int64, error) {
	if db.keyring == nil {
		return 0, errors.New("re-encryption needs a keyring")
	}
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
	}, primary, func(sctx context.Context, c SealedColumn, id uuid.UUID, old []byte) ([]byte, error) {
		pt, err := db.keyring.Open(sctx, fieldcrypt.Field{Table: c.Table, Column: c.Column, Row: id}, old)
		if err != nil {
			return nil, err
		}
		return db.keyring.Seal(sctx, fieldcrypt.Field{Table: c.Table, Column: c.Column, Row: id}, pt)
	})
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
	}, nil, func(sctx context.Context, c SealedColumn, id uuid.UUID, old []byte) ([]byte, error) {
		return db.keyring.Seal(sctx, fieldcrypt.Field{Table: c.Table, Column: c.Column, Row: id}, old)
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
			err := db.InMaintenance(ctx, func(tx pgx.Tx) error {
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
					sealed, err := db.keyring.Seal(sctx, fieldcrypt.Field{Table: q.table, Column: "content_sealed", Row: it.id}, []byte(it.text))
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
				return nil
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
// reseal(value), one transaction per batch.
func (db *DB) resealLoop(ctx context.Context, tenant uuid.UUID, batch int, total int64, progress Progress,
	where func(SealedColumn) string, arg []byte, reseal func(context.Context, SealedColumn, uuid.UUID, []byte) ([]byte, error)) (int64, error) {
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
	for _, c := range SealedColumns {
		for {
			changed := 0
			err := db.InMaintenance(ctx, func(tx pgx.Tx) error {
				rows, err := tx.Query(ctx, fmt.Sprintf(`SELECT id, %[1]s FROM bulkhead.%[2]s WHERE tenant_id = $1 AND %[1]s IS NOT NULL AND `+where(c)+` ORDER BY id LIMIT $2`,
					c.Column, c.Table), tenant, batch, arg)
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
					sealed, err := reseal(sctx, c, it.id, it.old)
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
				return nil
			})
			if err != nil {
				return done, err
			}
			done += int64(changed)
			if progress != nil {
				progress(done, total)
			}
			if changed == 0 {
				break
			}
		}
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
