package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/rls"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Entity returns an entity of the caller's tenant (the directory is
// tenant-wide). It returns ErrUnauthenticated or ErrNotFound.
func (db *DB) Entity(ctx context.Context, id uuid.UUID) (bulkhead.Entity, error) {
	s, err := scopeFrom(ctx)
	if err != nil {
		return bulkhead.Entity{}, err
	}
	var e bulkhead.Entity
	err = db.ReadRow(ctx, `SELECT id, kind, name, created_at FROM bulkhead.entities WHERE tenant_id = $1 AND id = $2`,
		[]any{s.Tenant, id}, &e.ID, &e.Kind, &e.Name, &e.CreatedAt)
	return e, err
}

// ListEntities pages through the caller's tenant's directory by id.
func (db *DB) ListEntities(ctx context.Context, p Page) ([]bulkhead.Entity, string, error) {
	return listByID(ctx, db, p, `SELECT id, kind, name, created_at FROM bulkhead.entities WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3`,
		func(r pgx.CollectableRow) (bulkhead.Entity, error) {
			var e bulkhead.Entity
			return e, r.Scan(&e.ID, &e.Kind, &e.Name, &e.CreatedAt)
		}, func(e bulkhead.Entity) uuid.UUID { return e.ID })
}

// RenameSelf changes the calling entity's own name (the database refuses
// any other row). It returns ErrUnauthenticated, ErrInvalid or ErrNotFound.
func (db *DB) RenameSelf(ctx context.Context, name string) error {
	s, err := scopeFrom(ctx)
	if err != nil {
		return err
	}
	if n := len(strings.TrimSpace(name)); n == 0 || len(name) > 200 {
		return bulkhead.Invalid("name", "1 to 200 characters")
	}
	return db.InScope(ctx, func(tx pgx.Tx) error {
		return mustAffect(tx.Exec(ctx, `UPDATE bulkhead.entities SET name = $3 WHERE tenant_id = $1 AND id = $2`, s.Tenant, s.Entity, name))
	})
}

// NewAgent is the input of CreateAgent and UpdateAgent. SystemPrompt and
// Secrets are sealed with the tenant's key before they leave the process.
type NewAgent struct {
	Name         string
	Bio          string
	Settings     json.RawMessage
	SystemPrompt bulkhead.Secret
	Secrets      map[string]bulkhead.Secret
}

// sealAgent seals an agent's system prompt and secrets, bound to its row.
func (db *DB) sealAgent(ctx context.Context, u *keyUse, id uuid.UUID, in NewAgent) (prompt, secrets []byte, err error) {
	if in.SystemPrompt != "" {
		if prompt, err = db.seal(ctx, u, "agents", "system_prompt", id, []byte(in.SystemPrompt.Reveal())); err != nil {
			return nil, nil, err
		}
	}
	plain, err := encodeSecrets(in.Secrets)
	if err != nil {
		return nil, nil, err
	}
	secrets, err = db.seal(ctx, u, "agents", "secrets", id, plain)
	return prompt, secrets, err
}

// CreateAgent creates an agent owned by the calling entity: its entity row
// and its agent row, in one transaction.
// It returns ErrUnauthenticated (no entity in scope) or ErrInvalid.
func (db *DB) CreateAgent(ctx context.Context, in NewAgent) (bulkhead.Agent, error) {
	s, err := entityScope(ctx)
	if err != nil {
		return bulkhead.Agent{}, err
	}
	if err := validEntity(bulkhead.KindAgent, in.Name); err != nil {
		return bulkhead.Agent{}, err
	}
	if in.Settings == nil {
		in.Settings = json.RawMessage(`{}`)
	}
	if !json.Valid(in.Settings) {
		return bulkhead.Agent{}, bulkhead.Invalid("settings", "not JSON")
	}
	a := bulkhead.Agent{ID: uuid.New(), OwnerID: s.Entity, Name: in.Name, Bio: in.Bio, Settings: in.Settings, SystemPrompt: in.SystemPrompt, Secrets: in.Secrets}
	err = db.withFreshKeys(s.Tenant, func(u *keyUse) error {
		prompt, secrets, err := db.sealAgent(ctx, u, a.ID, in)
		if err != nil {
			return err
		}
		return db.InScope(ctx, func(tx pgx.Tx) error {
			b := &pgx.Batch{}
			b.Queue(`INSERT INTO bulkhead.entities (tenant_id, id, kind, name) VALUES ($1, $2, 'agent', $3)`, s.Tenant, a.ID, a.Name)
			b.Queue(`INSERT INTO bulkhead.agents (tenant_id, id, owner_id, name, bio, settings, system_prompt, secrets)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING created_at, updated_at`,
				s.Tenant, a.ID, a.OwnerID, a.Name, a.Bio, a.Settings, prompt, secrets).QueryRow(func(r pgx.Row) error {
				return r.Scan(&a.CreatedAt, &a.UpdatedAt)
			})
			u.queue(b) // last: after the writes (see keyUse)
			return tx.SendBatch(ctx, b).Close()
		})
	})
	if err != nil {
		return bulkhead.Agent{}, fmt.Errorf("create agent: %w", err)
	}
	return a, nil
}

const agentCols = `id, owner_id, name, bio, settings, created_at, updated_at`

func scanAgent(r pgx.CollectableRow) (bulkhead.Agent, error) {
	var a bulkhead.Agent
	return a, r.Scan(&a.ID, &a.OwnerID, &a.Name, &a.Bio, &a.Settings, &a.CreatedAt, &a.UpdatedAt)
}

// Agent returns an agent of the caller's tenant. Its system prompt and
// secrets are opened only for its owner and the agent itself; others get
// the metadata. It returns ErrNotFound, or an error when a sealed value
// does not open (tampered, or its key shredded).
func (db *DB) Agent(ctx context.Context, id uuid.UUID) (bulkhead.Agent, error) {
	s, err := scopeFrom(ctx)
	if err != nil {
		return bulkhead.Agent{}, err
	}
	var a bulkhead.Agent
	var prompt, secrets []byte
	err = db.ReadRow(ctx, `SELECT `+agentCols+`, system_prompt, secrets FROM bulkhead.agents WHERE tenant_id = $1 AND id = $2`, []any{s.Tenant, id},
		&a.ID, &a.OwnerID, &a.Name, &a.Bio, &a.Settings, &a.CreatedAt, &a.UpdatedAt, &prompt, &secrets)
	if err != nil || (s.Entity != a.OwnerID && s.Entity != a.ID) {
		return a, err
	}
	p, err := db.open(ctx, "agents", "system_prompt", a.ID, prompt)
	if err != nil {
		return bulkhead.Agent{}, err
	}
	a.SystemPrompt = bulkhead.Secret(p)
	plain, err := db.open(ctx, "agents", "secrets", a.ID, secrets)
	if err != nil {
		return bulkhead.Agent{}, err
	}
	a.Secrets, err = decodeSecrets(plain)
	return a, err
}

// ListAgents pages through the tenant's agents by id.
func (db *DB) ListAgents(ctx context.Context, p Page) ([]bulkhead.Agent, string, error) {
	return listByID(ctx, db, p, `SELECT `+agentCols+` FROM bulkhead.agents WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3`,
		scanAgent, func(a bulkhead.Agent) uuid.UUID { return a.ID })
}

// UpdateAgent replaces an agent's editable fields; only its owner may.
// It returns ErrNotFound when the agent is missing, hidden or not the caller's.
func (db *DB) UpdateAgent(ctx context.Context, id uuid.UUID, in NewAgent) error {
	s, err := scopeFrom(ctx)
	if err != nil {
		return err
	}
	if err := validEntity(bulkhead.KindAgent, in.Name); err != nil {
		return err
	}
	if in.Settings == nil {
		in.Settings = json.RawMessage(`{}`)
	}
	return db.withFreshKeys(s.Tenant, func(u *keyUse) error {
		prompt, secrets, err := db.sealAgent(ctx, u, id, in)
		if err != nil {
			return err
		}
		return db.InScope(ctx, func(tx pgx.Tx) error {
			b := &pgx.Batch{}
			b.Queue(`UPDATE bulkhead.agents SET name = $3, bio = $4, settings = $5, system_prompt = $6, secrets = $7, updated_at = now()
			WHERE tenant_id = $1 AND id = $2`, s.Tenant, id, in.Name, in.Bio, in.Settings, prompt, secrets).Exec(func(ct pgconn.CommandTag) error {
				return mustAffect(ct, nil)
			})
			u.queue(b) // last: after the writes (see keyUse)
			return tx.SendBatch(ctx, b).Close()
		})
	})
}

// DeleteAgent deletes an agent; only its owner may. It returns ErrNotFound.
func (db *DB) DeleteAgent(ctx context.Context, id uuid.UUID) error {
	s, err := scopeFrom(ctx)
	if err != nil {
		return err
	}
	return db.InScope(ctx, func(tx pgx.Tx) error {
		return mustAffect(tx.Exec(ctx, `DELETE FROM bulkhead.agents WHERE tenant_id = $1 AND id = $2`, s.Tenant, id))
	})
}

// GrantDelegation lets agent act for the calling entity (the principal)
// with scopes until expiresAt (nil: until revoked). Scopes are enforced by
// the policies, per table and command: each is one of rls.Scopes(Tables)
// ("memories:read", "memories:write", "documents:read", "rooms:read"); a
// delegation without scopes grants nothing.
// It returns ErrInvalid for an unknown scope and ErrNotFound when the agent
// is missing or hidden.
func (db *DB) GrantDelegation(ctx context.Context, agent uuid.UUID, scopes []string, expiresAt *time.Time) (bulkhead.Delegation, error) {
	s, err := entityScope(ctx)
	if err != nil {
		return bulkhead.Delegation{}, err
	}
	known := rls.Scopes(Tables)
	for _, sc := range scopes {
		if !slices.Contains(known, sc) {
			return bulkhead.Delegation{}, bulkhead.Invalid("scopes", fmt.Sprintf("unknown scope %q: each is one of %s", sc, strings.Join(known, ", ")))
		}
	}
	if scopes == nil {
		scopes = []string{}
	}
	d := bulkhead.Delegation{ID: uuid.New(), AgentID: agent, PrincipalID: s.Entity, Scopes: scopes, ExpiresAt: expiresAt}
	err = db.InScope(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `INSERT INTO bulkhead.delegations (tenant_id, id, agent_id, principal_id, scopes, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at`, s.Tenant, d.ID, d.AgentID, d.PrincipalID, d.Scopes, d.ExpiresAt).Scan(&d.CreatedAt)
	})
	if err != nil {
		return bulkhead.Delegation{}, fmt.Errorf("grant delegation: %w", err)
	}
	return d, nil
}

// RevokeDelegation revokes a delegation now; the principal or the agent's
// owner may. It returns ErrNotFound.
func (db *DB) RevokeDelegation(ctx context.Context, id uuid.UUID) error {
	return db.endDelegation(ctx, id, "revoked_at")
}

// ExpireDelegation sets a delegation's expiry to now. It returns ErrNotFound.
func (db *DB) ExpireDelegation(ctx context.Context, id uuid.UUID) error {
	return db.endDelegation(ctx, id, "expires_at")
}

func (db *DB) endDelegation(ctx context.Context, id uuid.UUID, column string) error {
	s, err := scopeFrom(ctx)
	if err != nil {
		return err
	}
	q := `UPDATE bulkhead.delegations SET revoked_at = coalesce(revoked_at, now()) WHERE tenant_id = $1 AND id = $2`
	if column == "expires_at" {
		q = `UPDATE bulkhead.delegations SET expires_at = now() WHERE tenant_id = $1 AND id = $2`
	}
	return db.InScope(ctx, func(tx pgx.Tx) error { return mustAffect(tx.Exec(ctx, q, s.Tenant, id)) })
}

// ListDelegations lists the delegations the caller can see (as agent,
// principal or the agent's owner), newest first.
func (db *DB) ListDelegations(ctx context.Context) ([]bulkhead.Delegation, error) {
	s, err := scopeFrom(ctx)
	if err != nil {
		return nil, err
	}
	var out []bulkhead.Delegation
	err = db.Read(ctx, func(rows pgx.Rows) error {
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (bulkhead.Delegation, error) {
			var d bulkhead.Delegation
			return d, r.Scan(&d.ID, &d.AgentID, &d.PrincipalID, &d.Scopes, &d.ExpiresAt, &d.RevokedAt, &d.CreatedAt)
		})
		return err
	}, `SELECT id, agent_id, principal_id, scopes, expires_at, revoked_at, created_at FROM bulkhead.delegations
		WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC LIMIT 500`, s.Tenant)
	return out, err
}

// mustAffect turns "no row affected" into ErrNotFound: the row is missing,
// hidden by row-level security, or not the caller's to change.
func mustAffect(ct interface{ RowsAffected() int64 }, err error) error {
	if err != nil {
		return err
	}
	if ct.RowsAffected() == 0 {
		return bulkhead.ErrNotFound
	}
	return nil
}
