package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/fieldcrypt"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// KeysetStore keeps tenants' wrapped keysets in bulkhead_keys, connected as
// the key service role: the runtime role can't read them at all. It
// implements fieldcrypt.Store and is safe for concurrent use.
type KeysetStore struct {
	pool *pgxpool.Pool
}

var _ fieldcrypt.Store = (*KeysetStore)(nil)

// OpenKeysetStore connects to dsn, which must log in as the key service role.
func OpenKeysetStore(ctx context.Context, dsn string) (*KeysetStore, error) {
	pool, err := newPool(ctx, dsn, Config{MaxConns: 4})
	if err != nil {
		return nil, fmt.Errorf("open key service pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect as the key service role: %w", err)
	}
	return &KeysetStore{pool: pool}, nil
}

// Close closes the pool.
func (s *KeysetStore) Close() { s.pool.Close() }

// Load implements fieldcrypt.Store.
func (s *KeysetStore) Load(ctx context.Context, tenant uuid.UUID) (fieldcrypt.Wrapped, error) {
	var w fieldcrypt.Wrapped
	err := s.pool.QueryRow(ctx, `SELECT aead, prf, kek_id, version FROM bulkhead_keys.keysets WHERE tenant_id = $1`, tenant).
		Scan(&w.AEAD, &w.PRF, &w.KEKID, &w.Version)
	if errors.Is(err, pgx.ErrNoRows) {
		return w, fieldcrypt.ErrNoKeyset
	}
	return w, err
}

// Save implements fieldcrypt.Store: an insert when prev is 0, otherwise a
// compare-and-swap on the version. It records the change in key_events.
// It refuses (fieldcrypt.ErrKEKChanged) a keyset wrapped by a KEK other
// than the recorded one: the check locks the kek_check row (FOR SHARE)
// until commit, so it is serialised with RecordKEK and no keyset wrapped
// by a KEK the database no longer records is ever stored.
func (s *KeysetStore) Save(ctx context.Context, tenant uuid.UUID, w fieldcrypt.Wrapped, prev int64) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var recorded string
		err := tx.QueryRow(ctx, `SELECT kek_id FROM bulkhead_keys.kek_check WHERE id = 1 FOR SHARE`).Scan(&recorded)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: no key-encryption key is recorded for this database", fieldcrypt.ErrKEKChanged)
		}
		if err != nil {
			return err
		}
		if recorded != w.KEKID {
			return fmt.Errorf("%w: keyset of tenant %s is wrapped by %s, the database records %s", fieldcrypt.ErrKEKChanged, tenant, w.KEKID, recorded)
		}
		var n int64
		action := "keyset.update"
		if prev == 0 {
			action = "keyset.create"
			ct, err := tx.Exec(ctx, `INSERT INTO bulkhead_keys.keysets (tenant_id, aead, prf, kek_id, version) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (tenant_id) DO NOTHING`, tenant, w.AEAD, w.PRF, w.KEKID, w.Version)
			if err != nil {
				return err
			}
			n = ct.RowsAffected()
		} else {
			ct, err := tx.Exec(ctx, `UPDATE bulkhead_keys.keysets SET aead = $2, prf = $3, kek_id = $4, version = $5, updated_at = now()
				WHERE tenant_id = $1 AND version = $6`, tenant, w.AEAD, w.PRF, w.KEKID, w.Version, prev)
			if err != nil {
				return err
			}
			n = ct.RowsAffected()
		}
		if n == 0 {
			return fmt.Errorf("%w: keyset of tenant %s changed concurrently", bulkhead.ErrConflict, tenant)
		}
		_, err = tx.Exec(ctx, `INSERT INTO bulkhead_keys.key_events (tenant_id, action, detail) VALUES ($1, $2, jsonb_build_object('version', $3::bigint, 'kek', $4::text))`,
			tenant, action, w.Version, w.KEKID)
		return err
	})
}

// Destroy implements fieldcrypt.Store: the keyset rows are deleted and the
// erasure recorded in key_events, which outlives the tenant.
func (s *KeysetStore) Destroy(ctx context.Context, tenant uuid.UUID, reason string) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		ct, err := tx.Exec(ctx, `DELETE FROM bulkhead_keys.keysets WHERE tenant_id = $1`, tenant)
		if err != nil {
			return err
		}
		if ct.RowsAffected() == 0 {
			return nil
		}
		_, err = tx.Exec(ctx, `INSERT INTO bulkhead_keys.key_events (tenant_id, action, detail) VALUES ($1, 'keyset.shred', jsonb_build_object('reason', $2::text))`, tenant, reason)
		return err
	})
}

// Tenants implements fieldcrypt.Store.
func (s *KeysetStore) Tenants(ctx context.Context) ([]uuid.UUID, error) {
	rows, err := s.pool.Query(ctx, `SELECT tenant_id FROM bulkhead_keys.keysets ORDER BY tenant_id`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
}

// ErrWrongKEK means the key-encryption key is not the one that wrapped this
// database's keysets.
var ErrWrongKEK = errors.New("wrong key-encryption key")

// CheckKEK verifies that kek is the one this database's keysets are
// wrapped with, recording its check value on first use. It returns
// ErrWrongKEK (with the ids, never key material) on a mismatch, and
// fieldcrypt.ErrKMSUnavailable when the KEK's KMS can't be asked.
func (s *KeysetStore) CheckKEK(ctx context.Context, kek *fieldcrypt.KEK) error {
	var id string
	var check []byte
	err := s.pool.QueryRow(ctx, `SELECT kek_id, check_value FROM bulkhead_keys.kek_check WHERE id = 1`).Scan(&id, &check)
	if errors.Is(err, pgx.ErrNoRows) {
		var n int
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM bulkhead_keys.keysets`).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%w: %d tenants have keysets but no KEK check is recorded", ErrWrongKEK, n)
		}
		// First use: record this KEK unless another process just recorded
		// its own (two replicas with different new key files), then verify.
		check, err := kek.CheckValue()
		if err != nil {
			return fmt.Errorf("record key-encryption key check: %w", err)
		}
		if _, err := s.pool.Exec(ctx, `INSERT INTO bulkhead_keys.kek_check (id, kek_id, check_value) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING`, kek.ID(), check); err != nil {
			return err
		}
		return s.CheckKEK(ctx, kek)
	}
	if err != nil {
		return err
	}
	if id != kek.ID() {
		return fmt.Errorf("%w: this database's keysets are wrapped by %s, the configured key is %s", ErrWrongKEK, id, kek.ID())
	}
	if err := kek.Check(check); errors.Is(err, fieldcrypt.ErrKMSUnavailable) {
		return fmt.Errorf("check key-encryption key: %w", err)
	} else if err != nil {
		return fmt.Errorf("%w: this database's keysets are wrapped by %s, the configured key is %s (%v)", ErrWrongKEK, id, kek.ID(), err)
	}
	return nil
}

// RecordedKEK implements fieldcrypt.Store: the id of the KEK recorded for
// this database, if any.
func (s *KeysetStore) RecordedKEK(ctx context.Context) (string, bool, error) {
	id, _, _, ok, err := s.RecordedKEKRef(ctx)
	return id, ok, err
}

// RecordedKEKRef returns the recorded KEK's id, where to find it (a file
// path or KMS URI; "" if not recorded) and its check value.
func (s *KeysetStore) RecordedKEKRef(ctx context.Context) (id, ref string, check []byte, ok bool, err error) {
	var r *string
	err = s.pool.QueryRow(ctx, `SELECT kek_id, kek_ref, check_value FROM bulkhead_keys.kek_check WHERE id = 1`).Scan(&id, &r, &check)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", "", nil, false, nil
	}
	if err != nil {
		return "", "", nil, false, err
	}
	if r != nil {
		ref = *r
	}
	return id, ref, check, true, nil
}

// RecordKEK implements fieldcrypt.Store: kek becomes the database's
// key-encryption key (keys rotate-kek records it before re-wrapping), with
// ref saying where processes find it. Updating the row waits for every
// Save in progress (they hold it FOR SHARE), and every later Save must be
// wrapped by kek.
func (s *KeysetStore) RecordKEK(ctx context.Context, kek *fieldcrypt.KEK, ref string) error {
	check, err := kek.CheckValue()
	if err != nil {
		return err
	}
	var r *string
	if ref != "" {
		r = &ref
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO bulkhead_keys.kek_check (id, kek_id, check_value, kek_ref) VALUES (1, $1, $2, $3)
		ON CONFLICT (id) DO UPDATE SET kek_id = excluded.kek_id, check_value = excluded.check_value, kek_ref = excluded.kek_ref, updated_at = now()`, kek.ID(), check, r)
	return err
}
