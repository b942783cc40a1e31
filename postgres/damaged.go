package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/fieldcrypt"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Damaged stored data: a sealed value that does not open, or plaintext
// where a sealed value belongs. bulkhead never returns any of it. A direct
// read of such a value fails with bulkhead.ErrDamaged; lists and retrieval
// leave the item out and go on, so one tampered row can't deny service to
// everyone who reads past it. Either way the event is counted
// (DamagedValues, exported as a Prometheus counter), logged, and written
// to the tenant's audit_log as action "damaged_value".

// DamagedValues returns how many damaged values this DB has met in column
// since it was opened. It is safe for concurrent use.
func (db *DB) DamagedValues(c SealedColumn) uint64 {
	if n := db.damaged[c]; n != nil {
		return n.Load()
	}
	return 0
}

// reportDamaged records that column of row, read in ctx's scope, is
// damaged (cause says how), and returns the error wrapping
// bulkhead.ErrDamaged for the caller. Failing to write the audit entry is
// logged, never returned: the read fails closed either way.
func (db *DB) reportDamaged(ctx context.Context, c SealedColumn, row uuid.UUID, cause error) error {
	if n := db.damaged[c]; n != nil {
		n.Add(1)
	}
	err := fmt.Errorf("%w: %s.%s of %s: %w", bulkhead.ErrDamaged, c.Table, c.Column, row, cause)
	db.log.WarnContext(ctx, "damaged stored value", "table", c.Table, "column", c.Column, "row", row, "err", cause)
	if s, ok := bulkhead.ScopeFrom(ctx); ok {
		var actor *uuid.UUID
		if s.Entity != uuid.Nil {
			actor = &s.Entity
		}
		aerr := db.InScope(ctx, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO bulkhead.audit_log (tenant_id, actor_id, action, target, detail)
				VALUES ($1, $2, 'damaged_value', $3, jsonb_build_object('table', $4::text, 'column', $5::text, 'row', $6::uuid, 'reason', $7::text))`,
				s.Tenant, actor, c.Table+"/"+row.String(), c.Table, c.Column, row, damageReason(cause))
			return err
		})
		if aerr != nil {
			db.log.ErrorContext(ctx, "audit a damaged stored value", "table", c.Table, "row", row, "err", aerr)
		}
	}
	return err
}

// errPlaintextInSealedColumn: a confidential row without its sealed value
// (its text, if any, sits in the plaintext column, where it must not be
// served from).
var errPlaintextInSealedColumn = errors.New("confidential, but the sealed value is missing")

func damageReason(err error) string {
	switch {
	case errors.Is(err, errPlaintextInSealedColumn):
		return "sealed value missing"
	case errors.Is(err, fieldcrypt.ErrNotEnvelope):
		return "not a sealed value"
	default:
		return "does not open"
	}
}
