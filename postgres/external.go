package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// External identity (migration 00013): which external token issuers a
// tenant has registered, just-in-time entities and deactivation.

// MaxIssuerLength bounds an issuer identifier (an "iss" value, usually a URL).
const MaxIssuerLength = 2048

// maxIssuersPerTenant bounds a tenant's registered issuers.
const maxIssuersPerTenant = 100

// TenantIssuer is an external issuer registered by a tenant: its tokens
// may name the tenant (through the issuer's tenant claim).
type TenantIssuer struct {
	Issuer string `json:"issuer"`
	// JIT lets the first valid token of an unknown subject create its
	// entity (kind user).
	JIT     bool      `json:"jit"`
	AddedAt time.Time `json:"added_at"`
}

func validIssuer(iss string) error {
	if iss == "" || len(iss) > MaxIssuerLength || !utf8.ValidString(iss) || strings.ContainsAny(iss, "\x00\r\n") {
		return bulkhead.Invalid("issuer", fmt.Sprintf("1 to %d bytes of UTF-8 without NUL or line breaks", MaxIssuerLength))
	}
	return nil
}

// AddTenantIssuer registers issuer with tenant, or changes its JIT setting
// if it is registered already (control plane; recorded in audit_log). It
// returns ErrInvalid, ErrNotFound (no such tenant) or ErrNoMaintenance.
func (db *DB) AddTenantIssuer(ctx context.Context, tenant uuid.UUID, issuer string, jit bool) (TenantIssuer, error) {
	if err := validIssuer(issuer); err != nil {
		return TenantIssuer{}, err
	}
	ti := TenantIssuer{Issuer: issuer, JIT: jit}
	err := db.InMaintenance(ctx, func(tx pgx.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM jsonb_object_keys((SELECT issuers FROM bulkhead.tenants WHERE id = $1 FOR UPDATE) - $2::text)`,
			tenant, issuer).Scan(&n); err != nil {
			return err
		}
		if n >= maxIssuersPerTenant {
			return bulkhead.Invalid("issuer", fmt.Sprintf("a tenant registers at most %d issuers", maxIssuersPerTenant))
		}
		if err := tx.QueryRow(ctx, `UPDATE bulkhead.tenants
			SET issuers = issuers || jsonb_build_object($2::text, jsonb_build_object('jit', $3::boolean, 'added_at', now()))
			WHERE id = $1 RETURNING now()`, tenant, issuer, jit).Scan(&ti.AddedAt); err != nil {
			return err
		}
		return auditMaintenance(ctx, tx, tenant, "tenant.issuer_add", issuer)
	})
	if err != nil {
		return TenantIssuer{}, fmt.Errorf("add issuer to tenant %s: %w", tenant, err)
	}
	return ti, nil
}

// RemoveTenantIssuer unregisters issuer from tenant (control plane;
// recorded in audit_log): from then on its tokens can no longer name the
// tenant, and it creates no entities there. Entities it created stay. It
// returns ErrNotFound when the tenant or the registration is missing.
func (db *DB) RemoveTenantIssuer(ctx context.Context, tenant uuid.UUID, issuer string) error {
	err := db.InMaintenance(ctx, func(tx pgx.Tx) error {
		if err := mustAffect(tx.Exec(ctx, `UPDATE bulkhead.tenants SET issuers = issuers - $2::text WHERE id = $1 AND issuers ? $2::text`, tenant, issuer)); err != nil {
			return err
		}
		return auditMaintenance(ctx, tx, tenant, "tenant.issuer_remove", issuer)
	})
	if err != nil {
		return fmt.Errorf("remove issuer from tenant %s: %w", tenant, err)
	}
	return nil
}

// TenantIssuers lists the issuers tenant registered, by issuer (control
// plane). It returns ErrNotFound when there is no such tenant.
func (db *DB) TenantIssuers(ctx context.Context, tenant uuid.UUID) ([]TenantIssuer, error) {
	var raw []byte
	err := db.InMaintenance(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT issuers FROM bulkhead.tenants WHERE id = $1`, tenant).Scan(&raw)
	})
	if err != nil {
		return nil, fmt.Errorf("issuers of tenant %s: %w", tenant, err)
	}
	var m map[string]struct {
		JIT     bool      `json:"jit"`
		AddedAt time.Time `json:"added_at"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("issuers of tenant %s: %w", tenant, err)
	}
	out := make([]TenantIssuer, 0, len(m))
	for iss, v := range m {
		out = append(out, TenantIssuer{Issuer: iss, JIT: v.JIT, AddedAt: v.AddedAt})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Issuer < out[j].Issuer })
	return out, nil
}

// ExternalEntity is a control-plane pre-link of an external subject: the
// entity is created with the id the subject's tokens will name
// (auth.EntityID(issuer, subject)).
type ExternalEntity struct {
	ID      uuid.UUID
	Kind    bulkhead.EntityKind
	Name    string
	Email   string // optional, kept in the entity's metadata
	Issuer  string
	Subject string
}

// LinkEntity creates an entity for an external subject with its
// deterministic id (control plane; recorded in audit_log). It returns
// ErrInvalid, ErrConflict when that subject already has its entity, or
// ErrNotFound when there is no such tenant.
func (db *DB) LinkEntity(ctx context.Context, tenant uuid.UUID, x ExternalEntity) (bulkhead.Entity, error) {
	if err := validEntity(x.Kind, x.Name); err != nil {
		return bulkhead.Entity{}, err
	}
	if err := validIssuer(x.Issuer); err != nil {
		return bulkhead.Entity{}, err
	}
	if x.Subject == "" || len(x.Subject) > 255 || !utf8.ValidString(x.Subject) {
		return bulkhead.Entity{}, bulkhead.Invalid("subject", "1 to 255 bytes of UTF-8")
	}
	if len(x.Email) > 320 {
		return bulkhead.Entity{}, bulkhead.Invalid("email", "at most 320 bytes")
	}
	if x.ID == uuid.Nil {
		return bulkhead.Entity{}, bulkhead.Invalid("id", "required")
	}
	e := bulkhead.Entity{ID: x.ID, Kind: x.Kind, Name: x.Name}
	meta := map[string]string{"issuer": x.Issuer}
	if x.Email != "" {
		meta["email"] = x.Email
	}
	err := db.InMaintenance(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO bulkhead.entities (tenant_id, id, kind, name, metadata) VALUES ($1, $2, $3, $4, $5) RETURNING created_at`,
			tenant, e.ID, e.Kind, e.Name, meta).Scan(&e.CreatedAt); err != nil {
			return err
		}
		return auditMaintenance(ctx, tx, tenant, "entity.link", e.ID.String())
	})
	if err != nil {
		return bulkhead.Entity{}, fmt.Errorf("link entity: %w", err)
	}
	return e, nil
}

// SetEntityActive deactivates (active false) or reactivates an entity
// (control plane; recorded in audit_log). A deactivated entity's external
// tokens are refused even while unexpired. It returns ErrNotFound.
func (db *DB) SetEntityActive(ctx context.Context, tenant, entity uuid.UUID, active bool) error {
	q := `UPDATE bulkhead.entities SET deactivated_at = coalesce(deactivated_at, now()) WHERE tenant_id = $1 AND id = $2`
	action := "entity.deactivate"
	if active {
		q = `UPDATE bulkhead.entities SET deactivated_at = NULL WHERE tenant_id = $1 AND id = $2`
		action = "entity.reactivate"
	}
	err := db.InMaintenance(ctx, func(tx pgx.Tx) error {
		if err := mustAffect(tx.Exec(ctx, q, tenant, entity)); err != nil {
			return err
		}
		return auditMaintenance(ctx, tx, tenant, action, entity.String())
	})
	if err != nil {
		return fmt.Errorf("%s %s: %w", action, entity, err)
	}
	return nil
}

// ExternalLogin is what ResolveExternal needs of a verified external token.
type ExternalLogin struct {
	Issuer string
	// Bound is true when the server's configuration binds the issuer to the
	// tenant in scope (a fixed-tenant issuer); false makes the tenant's own
	// registration of the issuer required.
	Bound  bool
	Entity uuid.UUID // auth.EntityID(issuer, subject)
	// Name and Email are the mapped claims; "" when absent or unusable
	// (then no entity is created and nothing is updated).
	Name, Email string
	// ClaimsRefresh is the least time between two updates of an entity's
	// name and email from its claims.
	ClaimsRefresh time.Duration
}

// ExternalStatus is the outcome of ResolveExternal.
type ExternalStatus string

// ResolveExternal outcomes (see migration 00013).
const (
	ExternalUnbound     ExternalStatus = "unbound"
	ExternalUnknown     ExternalStatus = "unknown"
	ExternalBadName     ExternalStatus = "bad_name"
	ExternalDeactivated ExternalStatus = "deactivated"
	ExternalCreated     ExternalStatus = "created"
	ExternalUpdated     ExternalStatus = "updated"
	ExternalOK          ExternalStatus = "ok"
)

// Usable reports whether the login may proceed as its entity.
func (s ExternalStatus) Usable() bool {
	return s == ExternalCreated || s == ExternalUpdated || s == ExternalOK
}

// ResolveExternal turns a verified external login into an entity of the
// tenant of ctx's scope, which must be a pre-authentication scope (a
// tenant, no entity): it checks the issuer's binding, creates the entity
// just in time when the tenant opted in (race-safe, audited), refreshes its
// name and email from the claims (at most once per ClaimsRefresh) and
// reports a deactivated entity. It returns ErrUnauthenticated for a scope
// that is not a pre-authentication one, or a database error.
func (db *DB) ResolveExternal(ctx context.Context, l ExternalLogin) (ExternalStatus, error) {
	s, err := scopeFrom(ctx)
	if err != nil {
		return "", err
	}
	if s.Entity != uuid.Nil || s.ActingFor != uuid.Nil {
		return "", fmt.Errorf("%w: resolve external login: not a pre-authentication scope", bulkhead.ErrUnauthenticated)
	}
	var name, email *string
	if l.Name != "" {
		name = &l.Name
	}
	if l.Email != "" {
		email = &l.Email
	}
	var st *string
	err = db.InScope(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT bulkhead.auth_external($1, $2, $3, $4, $5, $6)`,
			l.Issuer, l.Bound, l.Entity, name, email, l.ClaimsRefresh).Scan(&st)
	})
	if err != nil {
		return "", fmt.Errorf("resolve external login: %w", err)
	}
	if st == nil {
		return "", fmt.Errorf("%w: resolve external login: not a pre-authentication scope", bulkhead.ErrUnauthenticated)
	}
	return ExternalStatus(*st), nil
}
