package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/fieldcrypt"
	"github.com/google/uuid"
)

// SealedColumn is a column bulkhead stores sealed with the tenant's key.
type SealedColumn struct{ Table, Column string }

// SealedColumns lists every column bulkhead encrypts (the row id column is
// "id" in each table). Rotation, status and the sweep walk this list.
var SealedColumns = []SealedColumn{
	{"agents", "secrets"},       // map of provider keys and tokens, JSON, sealed
	{"agents", "system_prompt"}, // the agent's instructions
	{"documents", "content_sealed"},
	{"chunks", "content_sealed"},
}

// seal encrypts pt for (table, column, row) with the tenant in ctx; with
// no keyring configured (plaintext mode) it stores pt as is.
func (db *DB) seal(ctx context.Context, table, column string, row uuid.UUID, pt []byte) ([]byte, error) {
	if pt == nil {
		return nil, nil
	}
	if db.keyring == nil {
		return pt, nil
	}
	return db.keyring.Seal(ctx, fieldcrypt.Field{Table: table, Column: column, Row: row}, pt)
}

// open decrypts v sealed for (table, column, row) with the keys of the
// tenant in ctx's scope. A value that does not open (tampered, copied from
// another row, column or tenant) or plaintext where a sealed value is
// expected fails closed with bulkhead.ErrDamaged, counted and audited
// (reportDamaged); run bulkhead keys sweep to seal legacy plaintext.
func (db *DB) open(ctx context.Context, table, column string, row uuid.UUID, v []byte) ([]byte, error) {
	if v == nil {
		return nil, nil
	}
	if db.keyring == nil {
		if fieldcrypt.IsEnvelope(v) {
			return nil, fmt.Errorf("%s.%s of %s is sealed but no keyring is configured", table, column, row)
		}
		return v, nil
	}
	pt, err := db.keyring.Open(ctx, fieldcrypt.Field{Table: table, Column: column, Row: row}, v)
	if errors.Is(err, fieldcrypt.ErrUndecryptable) || errors.Is(err, fieldcrypt.ErrNotEnvelope) {
		return nil, db.reportDamaged(ctx, SealedColumn{table, column}, row, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s.%s of %s: %w", table, column, row, err)
	}
	return pt, nil
}

func encodeSecrets(m map[string]bulkhead.Secret) ([]byte, error) {
	if m == nil {
		return nil, nil
	}
	plain := make(map[string]string, len(m))
	for k, v := range m {
		plain[k] = v.Reveal()
	}
	return json.Marshal(plain)
}

func decodeSecrets(b []byte) (map[string]bulkhead.Secret, error) {
	if b == nil {
		return nil, nil
	}
	var plain map[string]string
	if err := json.Unmarshal(b, &plain); err != nil {
		return nil, fmt.Errorf("agent secrets are not a JSON object")
	}
	m := make(map[string]bulkhead.Secret, len(plain))
	for k, v := range plain {
		m[k] = bulkhead.Secret(v)
	}
	return m, nil
}
