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

// StoredAPIKey is what authentication needs of a key (never its hash).
type StoredAPIKey struct {
	EntityID  uuid.UUID
	Scopes    []string
	ExpiresAt *time.Time
	RevokedAt *time.Time
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

// APIKeyForAuth looks a key up by id and keyed hash in the tenant of ctx's
// scope, which must be a pre-authentication scope (a tenant, no entity).
// The hash is compared inside the database; the stored one never leaves it.
// It returns ErrNotFound for an unknown key, a hash that does not match, or
// a scope with an entity.
func (db *DB) APIKeyForAuth(ctx context.Context, id uuid.UUID, hash []byte) (StoredAPIKey, error) {
	var k StoredAPIKey
	err := db.ReadRow(ctx, `SELECT entity_id, scopes, expires_at, revoked_at FROM bulkhead.auth_api_key($1, $2)`, []any{id, hash},
		&k.EntityID, &k.Scopes, &k.ExpiresAt, &k.RevokedAt)
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

// PasswordParams returns the parameters and salt of the stored password
// hash of the user with email, in the tenant of ctx's scope: the hash's PHC
// string without the hash ("$argon2id$v=19$m=..,t=..,p=..$<salt>"), which is
// what deriving a key from a candidate password needs. ctx's scope must be
// a pre-authentication scope (a tenant, no entity). It returns ErrNotFound
// for an unknown email, a user without a password, or a scope with an
// entity.
func (db *DB) PasswordParams(ctx context.Context, email string) (string, error) {
	var params string
	err := db.ReadRow(ctx, `SELECT p FROM bulkhead.auth_password_params($1) p WHERE p IS NOT NULL`, []any{email}, &params)
	return params, err
}

// CheckPassword returns the entity of the user with email if key (the
// base64 argon2id output derived under PasswordParams) equals the stored
// one. The comparison happens inside the database: the stored hash never
// leaves it. Same scope rule as PasswordParams. It returns ErrNotFound for
// an unknown email, a key that does not match, or a scope with an entity.
func (db *DB) CheckPassword(ctx context.Context, email, key string) (uuid.UUID, error) {
	var id uuid.UUID
	err := db.ReadRow(ctx, `SELECT e FROM bulkhead.auth_password_check($1, $2) e WHERE e IS NOT NULL`, []any{email, key}, &id)
	return id, err
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

// StoredRefreshToken is what a refresh needs of a token (never its hash).
type StoredRefreshToken struct {
	EntityID  uuid.UUID
	FamilyID  uuid.UUID
	ExpiresAt time.Time
	UsedAt    *time.Time
	RevokedAt *time.Time
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

// RefreshTokenForAuth looks a refresh token up by id and keyed hash in the
// tenant of ctx's scope, which must be a pre-authentication scope (a
// tenant, no entity). The hash is compared inside the database. It returns
// ErrNotFound for an unknown token, a hash that does not match, or a scope
// with an entity.
func (db *DB) RefreshTokenForAuth(ctx context.Context, id uuid.UUID, hash []byte) (StoredRefreshToken, error) {
	var t StoredRefreshToken
	err := db.ReadRow(ctx, `SELECT entity_id, family_id, expires_at, used_at, revoked_at FROM bulkhead.auth_refresh_token($1, $2)`, []any{id, hash},
		&t.EntityID, &t.FamilyID, &t.ExpiresAt, &t.UsedAt, &t.RevokedAt)
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
