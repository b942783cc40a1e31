package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/fieldcrypt"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
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

// seal encrypts pt for (table, column, row) with the tenant in ctx,
// recording in u the keyset version it sealed with; with no keyring
// configured (plaintext mode) it stores pt as is.
func (db *DB) seal(ctx context.Context, u *keyUse, table, column string, row uuid.UUID, pt []byte) ([]byte, error) {
	if pt == nil {
		return nil, nil
	}
	if db.keyring == nil {
		return pt, nil
	}
	out, v, err := db.keyring.SealAt(ctx, fieldcrypt.Field{Table: table, Column: column, Row: row}, pt)
	if err != nil {
		return nil, err
	}
	u.add(v)
	return out, nil
}

// keyUse records the oldest keyset version a write sealed values with, so
// that the write's transaction can check it against the version the
// database publishes (tenants.key_version) before it commits.
//
// Why this is enough to lose no data during a rotation (DB.RotateKeys):
// the check is the write transaction's last statement, after the writes,
// in READ COMMITTED (a fresh snapshot). A writer that still sees the old
// version wrote, and so took its transaction id, before the new version
// was published; the rotation waits for every transaction older than the
// publication to end before it re-encrypts and retires keys, so that
// writer's values are committed (and re-encrypted) or rolled back. A writer
// that sees the new version with an older cached keyset rolls back, reloads
// the keys and seals again.
type keyUse struct {
	tenant  uuid.UUID
	version int64 // 0: nothing sealed
}

func (u *keyUse) add(v int64) {
	if u.version == 0 || v < u.version {
		u.version = v
	}
}

// errStaleKeys: values were sealed with a cached keyset older than the
// one the database publishes; the write is rolled back and done again.
var errStaleKeys = errors.New("sealed with a cached keyset older than the published one")

// queue appends the version check to b, whose other statements are the
// writes; b must end the work of its transaction.
func (u *keyUse) queue(b *pgx.Batch) {
	if u.version == 0 {
		return
	}
	b.Queue(`SELECT key_version FROM bulkhead.tenants WHERE id = $1`, u.tenant).QueryRow(u.compare)
}

// check runs the version check on tx, after the writes.
func (u *keyUse) check(ctx context.Context, tx pgx.Tx) error {
	if u.version == 0 {
		return nil
	}
	return u.compare(tx.QueryRow(ctx, `SELECT key_version FROM bulkhead.tenants WHERE id = $1`, u.tenant))
}

func (u *keyUse) compare(r pgx.Row) error {
	var published int64
	if err := r.Scan(&published); err != nil {
		return fmt.Errorf("read the tenant's published key version: %w", err)
	}
	if published > u.version {
		return errStaleKeys
	}
	return nil
}

// withFreshKeys runs write, which seals values recording them in the
// keyUse it gets and checks it in its transaction; when the check finds
// the cached keys stale, it drops them and runs write again (a few times).
func (db *DB) withFreshKeys(tenant uuid.UUID, write func(u *keyUse) error) error {
	for attempt := 0; ; attempt++ {
		err := write(&keyUse{tenant: tenant})
		if !errors.Is(err, errStaleKeys) || db.keyring == nil || attempt >= 4 {
			return err
		}
		db.keyring.Invalidate(tenant)
	}
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
