package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Credential storage for package auth. Only hashes are stored. Look-ups
// made before the caller has an entity (login, API key, refresh) go
// through the allow-listed AuthFunctions in the tenant's scope; everything
// else runs in the entity's own scope under row-level security.

// APIKey describes a stored API key (never its secret).
type APIKey struct {
	ID        uuid.UUID  `json:"id"`
	EntityID  uuid.UUID  `json:"entity_id"`
	Name      string     `json:"name"`
	Scopes    []string   `json:"scopes"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
}

// StoredAPIKey is what authentication needs of a key.
type StoredAPIKey struct {
	EntityID   uuid.UUID
	SecretHash []byte
	Scopes     []string
	ExpiresAt  *time.Time
	RevokedAt  *time.Time
}

// InsertAPIKey stores a key for the calling entity.
func (db *DB) InsertAPIKey(ctx context.Context, id uuid.UUID, name string, hash []byte, scopes []string, expiresAt *time.Time) (APIKey, error) {
	s, err := entityScope(ctx)
	if err != nil {
		return APIKey{}, err
	}
	if err := validName("name", name); err != nil {
		return APIKey{}, err
	}
	if scopes == nil {
		scopes = []string{}
	}
	k := APIKey{ID: id, EntityID: s.Entity, Name: name, Scopes: scopes, ExpiresAt: expiresAt}
	err = db.InScope(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `INSERT INTO bulkhead.api_keys (tenant_id, id, entity_id, name, secret_hash, scopes, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING created_at`, s.Tenant, id, s.Entity, name, hash, scopes, expiresAt).Scan(&k.CreatedAt)
	})
	return k, err
}

// APIKeyForAuth looks a key up by id in the tenant of ctx's scope (no
// entity needed). It returns ErrNotFound.
func (db *DB) APIKeyForAuth(ctx context.Context, id uuid.UUID) (StoredAPIKey, error) {
	var k StoredAPIKey
	err := db.ReadRow(ctx, `SELECT entity_id, secret_hash, scopes, expires_at, revoked_at FROM bulkhead.auth_api_key($1)`, []any{id},
		&k.EntityID, &k.SecretHash, &k.Scopes, &k.ExpiresAt, &k.RevokedAt)
	return k, err
}

// ListAPIKeys lists the calling entity's keys.
func (db *DB) ListAPIKeys(ctx context.Context) ([]APIKey, error) {
	s, err := entityScope(ctx)
	if err != nil {
		return nil, err
	}
	var out []APIKey
	err = db.Read(ctx, func(rows pgx.Rows) error {
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (APIKey, error) {
			var k APIKey
			return k, r.Scan(&k.ID, &k.EntityID, &k.Name, &k.Scopes, &k.ExpiresAt, &k.RevokedAt, &k.CreatedAt)
		})
		return err
	}, `SELECT id, entity_id, name, scopes, expires_at, revoked_at, created_at FROM bulkhead.api_keys WHERE tenant_id = $1 ORDER BY created_at, id`, s.Tenant)
	return out, err
}

// RevokeAPIKey revokes one of the calling entity's keys. It returns ErrNotFound.
func (db *DB) RevokeAPIKey(ctx context.Context, id uuid.UUID) error {
	s, err := entityScope(ctx)
	if err != nil {
		return err
	}
	return db.InScope(ctx, func(tx pgx.Tx) error {
		return mustAffect(tx.Exec(ctx, `UPDATE bulkhead.api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE tenant_id = $1 AND id = $2`, s.Tenant, id))
	})
}

// UserByEmail returns the entity and password hash of a user of the
// tenant in ctx's scope. It returns ErrNotFound.
func (db *DB) UserByEmail(ctx context.Context, email string) (uuid.UUID, string, error) {
	var id uuid.UUID
	var hash *string
	if err := db.ReadRow(ctx, `SELECT entity_id, password_hash FROM bulkhead.auth_user_by_email($1)`, []any{email}, &id, &hash); err != nil {
		return uuid.Nil, "", err
	}
	if hash == nil {
		return id, "", nil
	}
	return id, *hash, nil
}

// ErrRegistrationClosed means the tenant does not allow self-registration.
var ErrRegistrationClosed = fmt.Errorf("%w: registration is closed for this tenant", bulkhead.ErrForbidden)

// RegisterUser creates a user entity with a login in the tenant of ctx's
// scope, if the tenant allows self-registration. It returns ErrConflict for
// a taken email and ErrRegistrationClosed.
func (db *DB) RegisterUser(ctx context.Context, email, name, hash string) (uuid.UUID, error) {
	if err := validName("name", name); err != nil {
		return uuid.Nil, err
	}
	var id *uuid.UUID
	err := db.InScope(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT bulkhead.auth_register($1, $2, $3)`, email, name, hash).Scan(&id)
	})
	if err != nil {
		return uuid.Nil, err
	}
	if id == nil {
		return uuid.Nil, ErrRegistrationClosed
	}
	return *id, nil
}

// SetOpenRegistration lets anyone register in tenant (control plane).
func (db *DB) SetOpenRegistration(ctx context.Context, tenant uuid.UUID, open bool) error {
	return db.InMaintenance(ctx, func(tx pgx.Tx) error {
		return mustAffect(tx.Exec(ctx, `UPDATE bulkhead.tenants SET open_registration = $2 WHERE id = $1`, tenant, open))
	})
}

// StoredRefreshToken is what a refresh needs of a token.
type StoredRefreshToken struct {
	EntityID   uuid.UUID
	FamilyID   uuid.UUID
	SecretHash []byte
	ExpiresAt  time.Time
	UsedAt     *time.Time
	RevokedAt  *time.Time
}

// InsertRefreshToken stores a refresh token of the calling entity.
func (db *DB) InsertRefreshToken(ctx context.Context, id, family uuid.UUID, hash []byte, expiresAt time.Time) error {
	s, err := entityScope(ctx)
	if err != nil {
		return err
	}
	return db.InScope(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO bulkhead.refresh_tokens (tenant_id, id, entity_id, family_id, secret_hash, expires_at) VALUES ($1, $2, $3, $4, $5, $6)`,
			s.Tenant, id, s.Entity, family, hash, expiresAt)
		return err
	})
}

// RefreshTokenForAuth looks a refresh token up by id in the tenant of
// ctx's scope. It returns ErrNotFound.
func (db *DB) RefreshTokenForAuth(ctx context.Context, id uuid.UUID) (StoredRefreshToken, error) {
	var t StoredRefreshToken
	err := db.ReadRow(ctx, `SELECT entity_id, family_id, secret_hash, expires_at, used_at, revoked_at FROM bulkhead.auth_refresh_token($1)`, []any{id},
		&t.EntityID, &t.FamilyID, &t.SecretHash, &t.ExpiresAt, &t.UsedAt, &t.RevokedAt)
	return t, err
}

// ErrTokenSpent means a refresh token was already used or revoked.
var ErrTokenSpent = errors.New("refresh token already used or revoked")

// RotateRefreshToken marks old as used and stores its successor, in one
// transaction, in the calling entity's scope. If old was already used or
// revoked it returns ErrTokenSpent and stores nothing.
func (db *DB) RotateRefreshToken(ctx context.Context, old, next, family uuid.UUID, hash []byte, expiresAt time.Time) error {
	s, err := entityScope(ctx)
	if err != nil {
		return err
	}
	return db.InScope(ctx, func(tx pgx.Tx) error {
		ct, err := tx.Exec(ctx, `UPDATE bulkhead.refresh_tokens SET used_at = now() WHERE tenant_id = $1 AND id = $2 AND used_at IS NULL AND revoked_at IS NULL`, s.Tenant, old)
		if err != nil {
			return err
		}
		if ct.RowsAffected() == 0 {
			return ErrTokenSpent
		}
		_, err = tx.Exec(ctx, `INSERT INTO bulkhead.refresh_tokens (tenant_id, id, entity_id, family_id, secret_hash, expires_at) VALUES ($1, $2, $3, $4, $5, $6)`,
			s.Tenant, next, s.Entity, family, hash, expiresAt)
		return err
	})
}

// RevokeRefreshFamily revokes every token of a family of the calling entity.
func (db *DB) RevokeRefreshFamily(ctx context.Context, family uuid.UUID) error {
	s, err := entityScope(ctx)
	if err != nil {
		return err
	}
	return db.InScope(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE bulkhead.refresh_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE tenant_id = $1 AND family_id = $2`, s.Tenant, family)
		return err
	})
}
