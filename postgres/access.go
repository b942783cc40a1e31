package postgres

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// Access describes the credential behind a scope, for the per-request
// revocation check (migration 00014, bulkhead.access_check). When a
// context carries one (WithAccess), every transaction InScope and Read open
// in that context first checks, in the same batch as the context itself
// (no extra round trip), that the tenant exists and is enabled and, with an
// entity, that the entity exists (unless RequireEntity is false) and is
// enabled, the session or API key is still live, and a token without
// either was issued at or after the entity's tokens_not_before. A refusal
// is bulkhead.ErrUnauthenticated, and nothing of the transaction runs.
//
// The zero Access checks the tenant and requires the entity's row.
type Access struct {
	// Session is the refresh-token family an access token was minted
	// with (its "sid"); uuid.Nil: none.
	Session uuid.UUID
	// APIKey is the id of the API key the request presented; uuid.Nil: none.
	APIKey uuid.UUID
	// IssuedAt is a token's "iat" (zero: unknown). It matters only for a
	// credential with neither Session nor APIKey.
	IssuedAt time.Time
	// ExternalEntity, for a principal of an external issuer, admits an
	// entity without a row (one that was never provisioned); a row that
	// exists is still checked.
	ExternalEntity bool
	// Fresh marks a credential verified by the flow itself just now (a
	// password at login, a live refresh token): tokens_not_before does not
	// apply to it.
	Fresh bool
}

// accessState is what a context carries: the access and whether a check
// of it has passed during this request.
type accessState struct {
	a       Access
	checked atomic.Bool
}

type accessKey struct{}

// WithAccess returns a copy of ctx whose scoped transactions check a
// (see Access). It is for authentication middleware and flows, next to
// bulkhead.WithScope.
func WithAccess(ctx context.Context, a Access) context.Context {
	return context.WithValue(ctx, accessKey{}, &accessState{a: a})
}

// AccessFrom returns the Access in ctx and whether there is one.
func AccessFrom(ctx context.Context) (Access, bool) {
	st, _ := ctx.Value(accessKey{}).(*accessState)
	if st == nil {
		return Access{}, false
	}
	return st.a, true
}

// AccessChecked reports whether a check of ctx's Access has passed in a
// transaction opened with ctx (or a context derived from it). A context
// without an Access reports false.
func AccessChecked(ctx context.Context) bool {
	st, _ := ctx.Value(accessKey{}).(*accessState)
	return st != nil && st.checked.Load()
}

// accessSQL runs the check; it raises SQLSTATE 28000 on refusal.
const accessSQL = "SELECT " + Schema + ".access_check($1::uuid, $2::timestamptz, $3::uuid, $4::boolean)"

// accessArgs returns the check's arguments (NULL for what is unknown).
func accessArgs(a Access) []any {
	args := []any{nil, nil, nil, !a.ExternalEntity}
	if a.Session != uuid.Nil {
		args[0] = a.Session
	}
	switch {
	case a.Fresh:
		args[1] = pgtype.Timestamptz{InfinityModifier: pgtype.Infinity, Valid: true}
	case !a.IssuedAt.IsZero():
		args[1] = a.IssuedAt
	}
	if a.APIKey != uuid.Nil {
		args[2] = a.APIKey
	}
	return args
}

// queueAccess queues the check if ctx carries an Access, and returns the
// state to mark once it passed (nil without one).
func queueAccess(ctx context.Context, b *pgx.Batch) *accessState {
	st, _ := ctx.Value(accessKey{}).(*accessState)
	if st == nil {
		return nil
	}
	b.Queue(accessSQL, accessArgs(st.a)...)
	return st
}

// CheckAccess runs the access check of ctx on its own (one round trip), for
// requests that answer without opening a transaction. It returns
// bulkhead.ErrUnauthenticated if ctx has no scope or no Access, or the
// check refuses.
func (db *DB) CheckAccess(ctx context.Context) error {
	if _, ok := AccessFrom(ctx); !ok {
		return fmt.Errorf("%w: no access to check", bulkhead.ErrUnauthenticated)
	}
	return db.Read(ctx, func(pgx.Rows) error { return nil }, "SELECT")
}

// Control-plane operations (the maintenance path, audited): taking access
// away and giving it back. Each takes effect on every server at the next
// transaction of any request, since the check reads the database.

// SetTenantDisabled disables (or re-enables) every credential of a tenant.
// It returns ErrNotFound for an unknown tenant.
func (db *DB) SetTenantDisabled(ctx context.Context, tenant uuid.UUID, disabled bool) error {
	action := "tenant.enable"
	if disabled {
		action = "tenant.disable"
	}
	return db.InMaintenance(ctx, func(tx pgx.Tx) error {
		if err := mustAffect(tx.Exec(ctx, `UPDATE bulkhead.tenants SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) END WHERE id = $1`, tenant, disabled)); err != nil {
			return err
		}
		return auditMaintenance(ctx, tx, tenant, action, tenant.String())
	})
}

// SetEntityDisabled disables (or re-enables) an entity: while disabled
// none of its tokens, sessions or API keys authenticates, and it can't log
// in or refresh. Re-enabling restores the sessions and keys that were not
// revoked meanwhile. It returns ErrNotFound.
func (db *DB) SetEntityDisabled(ctx context.Context, tenant, entity uuid.UUID, disabled bool) error {
	action := "entity.enable"
	if disabled {
		action = "entity.disable"
	}
	return db.InMaintenance(ctx, func(tx pgx.Tx) error {
		if err := mustAffect(tx.Exec(ctx, `UPDATE bulkhead.entities SET disabled_at = CASE WHEN $3 THEN coalesce(disabled_at, now()) END WHERE tenant_id = $1 AND id = $2`, tenant, entity, disabled)); err != nil {
			return err
		}
		return auditMaintenance(ctx, tx, tenant, action, entity.String())
	})
}

// DeleteEntity deletes an entity and, by cascade, everything it owns or
// wrote (its login, keys, tokens, agents, worlds, memberships, memories,
// documents and their chunks). Vectors of deleted chunks stay in the
// tenant's collection until the next reconcile; retrieval drops hits whose
// chunk is gone. It returns ErrNotFound.
func (db *DB) DeleteEntity(ctx context.Context, tenant, entity uuid.UUID) error {
	return db.InMaintenance(ctx, func(tx pgx.Tx) error {
		if err := mustAffect(tx.Exec(ctx, `DELETE FROM bulkhead.entities WHERE tenant_id = $1 AND id = $2`, tenant, entity)); err != nil {
			return err
		}
		return auditMaintenance(ctx, tx, tenant, "entity.delete", entity.String())
	})
}

// RevokeEntitySessions ends every session of an entity: its refresh tokens
// are revoked (so are the access tokens minted with them) and access
// tokens without a session issued until now are refused. API keys are not
// touched (RevokeEntityAPIKeys). It returns the number of refresh tokens
// revoked, and ErrNotFound for an unknown entity.
func (db *DB) RevokeEntitySessions(ctx context.Context, tenant, entity uuid.UUID) (int64, error) {
	var n int64
	err := db.InMaintenance(ctx, func(tx pgx.Tx) error {
		if err := mustAffect(tx.Exec(ctx, `UPDATE bulkhead.entities SET tokens_not_before = now() WHERE tenant_id = $1 AND id = $2`, tenant, entity)); err != nil {
			return err
		}
		ct, err := tx.Exec(ctx, `UPDATE bulkhead.refresh_tokens SET revoked_at = now() WHERE tenant_id = $1 AND entity_id = $2 AND revoked_at IS NULL`, tenant, entity)
		if err != nil {
			return err
		}
		n = ct.RowsAffected()
		return auditMaintenance(ctx, tx, tenant, "entity.revoke_sessions", entity.String())
	})
	return n, err
}

// RevokeEntityAPIKeys revokes every API key of an entity and returns how
// many were live. It returns ErrNotFound for an unknown entity.
func (db *DB) RevokeEntityAPIKeys(ctx context.Context, tenant, entity uuid.UUID) (int64, error) {
	var n int64
	err := db.InMaintenance(ctx, func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM bulkhead.entities WHERE tenant_id = $1 AND id = $2)`, tenant, entity).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			return bulkhead.ErrNotFound
		}
		ct, err := tx.Exec(ctx, `UPDATE bulkhead.api_keys SET revoked_at = now() WHERE tenant_id = $1 AND entity_id = $2 AND revoked_at IS NULL`, tenant, entity)
		if err != nil {
			return err
		}
		n = ct.RowsAffected()
		return auditMaintenance(ctx, tx, tenant, "entity.revoke_api_keys", entity.String())
	})
	return n, err
}

// RevokeTenantAPIKey revokes one API key of a tenant by id, whoever holds
// it (an operator answering a leak). It returns ErrNotFound for a key that
// does not exist in the tenant; revoking a revoked key succeeds.
func (db *DB) RevokeTenantAPIKey(ctx context.Context, tenant, key uuid.UUID) error {
	return db.InMaintenance(ctx, func(tx pgx.Tx) error {
		if err := mustAffect(tx.Exec(ctx, `UPDATE bulkhead.api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE tenant_id = $1 AND id = $2`, tenant, key)); err != nil {
			return err
		}
		return auditMaintenance(ctx, tx, tenant, "api_key.revoke", key.String())
	})
}

// EntityAPIKeys lists an entity's API keys (never their secrets), for the
// operator. It returns ErrNotFound for an unknown entity.
func (db *DB) EntityAPIKeys(ctx context.Context, tenant, entity uuid.UUID) ([]APIKey, error) {
	out := []APIKey{}
	err := db.InMaintenance(ctx, func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM bulkhead.entities WHERE tenant_id = $1 AND id = $2)`, tenant, entity).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			return bulkhead.ErrNotFound
		}
		rows, err := tx.Query(ctx, `SELECT id, entity_id, name, scopes, expires_at, revoked_at, created_at FROM bulkhead.api_keys WHERE tenant_id = $1 AND entity_id = $2 ORDER BY created_at, id`, tenant, entity)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (APIKey, error) {
			var k APIKey
			return k, r.Scan(&k.ID, &k.EntityID, &k.Name, &k.Scopes, &k.ExpiresAt, &k.RevokedAt, &k.CreatedAt)
		})
		return err
	})
	return out, err
}

// SetPasswordReset stores the keyed hash of a user's password reset token
// and its expiry, replacing any earlier one (control plane). It returns
// ErrNotFound for an entity without a login (no users row) and
// ErrForbidden for a disabled tenant or entity.
func (db *DB) SetPasswordReset(ctx context.Context, tenant, entity uuid.UUID, hash []byte, expiresAt time.Time) error {
	return db.InMaintenance(ctx, func(tx pgx.Tx) error {
		var disabled bool
		err := tx.QueryRow(ctx, `SELECT tn.disabled_at IS NOT NULL OR en.disabled_at IS NOT NULL FROM bulkhead.users u
			JOIN bulkhead.entities en ON en.tenant_id = u.tenant_id AND en.id = u.id
			JOIN bulkhead.tenants tn ON tn.id = u.tenant_id
			WHERE u.tenant_id = $1 AND u.id = $2 FOR UPDATE OF u`, tenant, entity).Scan(&disabled)
		if err != nil {
			return err
		}
		if disabled {
			return fmt.Errorf("%w: the tenant or entity is disabled", bulkhead.ErrForbidden)
		}
		if _, err := tx.Exec(ctx, `UPDATE bulkhead.users SET reset_hash = $3, reset_expires_at = $4 WHERE tenant_id = $1 AND id = $2`, tenant, entity, hash, expiresAt); err != nil {
			return err
		}
		return auditMaintenance(ctx, tx, tenant, "entity.password_reset_issued", entity.String())
	})
}

// RedeemPasswordReset sets a new password (newHash) with a reset token of
// the user entity (its keyed hash), in the tenant of ctx's
// pre-authentication scope (a tenant, no entity): single use, refused once
// expired, race-safe. The entity's refresh tokens are revoked and its
// earlier session-less tokens refused. It returns ErrNotFound when the
// token is unknown, spent, expired or the entity or tenant is disabled.
func (db *DB) RedeemPasswordReset(ctx context.Context, entity uuid.UUID, hash []byte, newHash string) error {
	var id *uuid.UUID
	err := db.InScope(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT bulkhead.auth_password_reset($1, $2, $3)`, entity, hash, newHash).Scan(&id)
	})
	if err != nil {
		return err
	}
	if id == nil {
		return bulkhead.ErrNotFound
	}
	return nil
}

// OwnPasswordParams returns the parameters and salt of the calling
// entity's password hash (PasswordParams' format), read under its own
// row-level security; only the parameters leave the database. It returns
// ErrNotFound for an entity without a password.
func (db *DB) OwnPasswordParams(ctx context.Context) (string, error) {
	s, err := entityScope(ctx)
	if err != nil {
		return "", err
	}
	var params string
	err = db.ReadRow(ctx, `SELECT regexp_replace(u.password_hash, '\$[^$]*$', '') FROM bulkhead.users u WHERE u.tenant_id = $1 AND u.id = $2 AND u.password_hash IS NOT NULL`,
		[]any{s.Tenant, s.Entity}, &params)
	return params, err
}

// ChangeOwnPassword replaces the calling entity's password hash with
// newHash if key (derived from the current password under
// OwnPasswordParams) matches the stored one; the comparison happens in the
// database. The entity's refresh tokens are revoked and its earlier
// session-less tokens refused. It returns ErrNotFound when the key does not
// match (or there is no password, or the scope acts for someone).
func (db *DB) ChangeOwnPassword(ctx context.Context, key, newHash string) error {
	if _, err := entityScope(ctx); err != nil {
		return err
	}
	var ok bool
	err := db.InScope(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT bulkhead.auth_password_change($1, $2)`, key, newHash).Scan(&ok)
	})
	if err != nil {
		return err
	}
	if !ok {
		return bulkhead.ErrNotFound
	}
	return nil
}
