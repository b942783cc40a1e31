package postgres

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Control-plane operations on tenants. They run through InMaintenance, so
// ctx must be marked with bulkhead.AsMaintenance; the runtime role can't
// write tenants at all.

var regionRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// CreateTenant creates a tenant and its keys, all or nothing (if its keys
// can't be provisioned the row is deleted again). region "" means
// "default".
// It returns a *bulkhead.ValidationError for a bad name or region and
// ErrNoMaintenance without a maintenance context.
func (db *DB) CreateTenant(ctx context.Context, name, region string) (bulkhead.Tenant, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 200 {
		return bulkhead.Tenant{}, bulkhead.Invalid("name", "1 to 200 characters")
	}
	if region == "" {
		region = "default"
	}
	if !regionRE.MatchString(region) {
		return bulkhead.Tenant{}, bulkhead.Invalid("region", "lower-case letters, digits and dashes")
	}
	t := bulkhead.Tenant{ID: uuid.New(), Name: name, Region: region}
	err := db.InMaintenance(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO bulkhead.tenants (id, name, region) VALUES ($1, $2, $3) RETURNING created_at`,
			t.ID, t.Name, t.Region).Scan(&t.CreatedAt); err != nil {
			return err
		}
		return auditMaintenance(ctx, tx, t.ID, "tenant.create", t.ID.String())
	})
	if err != nil {
		return bulkhead.Tenant{}, fmt.Errorf("create tenant: %w", err)
	}
	if db.keyring != nil {
		if err := db.keyring.Provision(ctx, t.ID); err != nil {
			// All or nothing: take the row (and any keyset) back.
			if _, derr := db.DeleteTenant(context.WithoutCancel(ctx), t.ID); derr != nil {
				return bulkhead.Tenant{}, fmt.Errorf("create tenant %s: provision keys: %w; undoing it failed too (finish with bulkhead tenant delete %s): %v", t.ID, err, t.ID, derr)
			}
			return bulkhead.Tenant{}, fmt.Errorf("create tenant (nothing kept): provision keys: %w", err)
		}
	}
	return t, nil
}

// ProvisionKeys creates a tenant's keysets if it has none (for tenants
// created before encryption was enabled). It is idempotent.
func (db *DB) ProvisionKeys(ctx context.Context, tenant uuid.UUID) error {
	if db.keyring == nil {
		return nil
	}
	return db.keyring.Provision(ctx, tenant)
}

// ListTenants lists every tenant (control plane).
func (db *DB) ListTenants(ctx context.Context) ([]bulkhead.Tenant, error) {
	var out []bulkhead.Tenant
	err := db.InMaintenance(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, name, region, created_at FROM bulkhead.tenants ORDER BY created_at, id`)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, scanTenant)
		return err
	})
	return out, err
}

// TenantByID returns one tenant (control plane). It returns ErrNotFound.
func (db *DB) TenantByID(ctx context.Context, id uuid.UUID) (bulkhead.Tenant, error) {
	var t bulkhead.Tenant
	err := db.InMaintenance(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, name, region, created_at FROM bulkhead.tenants WHERE id = $1`, id)
		if err != nil {
			return err
		}
		t, err = pgx.CollectExactlyOneRow(rows, scanTenant)
		return err
	})
	return t, err
}

// DeleteTenant crypto-shreds a tenant and removes its data. First its key
// material is destroyed (fieldcrypt.Keyring.Shred): its tenant key file in
// the tenant key directory (removed, directory fsynced), then its keysets
// in the database (recorded in bulkhead_keys.key_events), so the tenant's
// sealed values stop opening even if what follows fails; then the tenant
// row goes and, through the cascading foreign keys, every row of its data,
// in one transaction. It is idempotent and resumable: deleting a tenant
// that is gone is not an error; deleted reports whether a tenant row was
// removed.
//
// What holds for copies made before: for a tenant whose keysets are
// wrapped by its tenant key (keys status: "tenant-key"; every tenant
// created with a tenant key directory, and tenants moved by keys
// migrate-erasure), a backup or dump of the database taken earlier holds
// its rows and wrapped keysets, but restored with the same KEK and tenant
// key directory its sealed values do not open (fieldcrypt.ErrNoKeyset).
// That fails if a copy of the tenant's key file survives (a backup of the
// tenant key directory), and for plaintext columns, which a dump holds in
// clear. For a tenant still on "kek", or a dump taken before it was
// migrated, the dump opens with the KEK it was wrapped by; see
// docs/SECURITY.md and docs/OPERATIONS.md.
func (db *DB) DeleteTenant(ctx context.Context, id uuid.UUID) (deleted bool, err error) {
	if db.keyring != nil {
		m, _ := bulkhead.MaintenanceFrom(ctx)
		if err := db.keyring.Shred(ctx, id, m.Reason); err != nil {
			return false, err
		}
	}
	err = db.InMaintenance(ctx, func(tx pgx.Tx) error {
		ct, err := tx.Exec(ctx, `DELETE FROM bulkhead.tenants WHERE id = $1`, id)
		deleted = ct.RowsAffected() == 1
		return err
	})
	if err != nil {
		return false, fmt.Errorf("delete tenant %s: %w", id, err)
	}
	return deleted, nil
}

// CreateEntity creates an entity in a tenant (control plane: provisioning
// users and external principals). For a user, email may be set to create
// its login identity too.
func (db *DB) CreateEntity(ctx context.Context, tenant uuid.UUID, kind bulkhead.EntityKind, name, email string) (bulkhead.Entity, error) {
	if err := validEntity(kind, name); err != nil {
		return bulkhead.Entity{}, err
	}
	e := bulkhead.Entity{ID: uuid.New(), Kind: kind, Name: name}
	err := db.InMaintenance(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO bulkhead.entities (tenant_id, id, kind, name) VALUES ($1, $2, $3, $4) RETURNING created_at`,
			tenant, e.ID, e.Kind, e.Name).Scan(&e.CreatedAt); err != nil {
			return err
		}
		if email != "" {
			if _, err := tx.Exec(ctx, `INSERT INTO bulkhead.users (tenant_id, id, email) VALUES ($1, $2, $3)`, tenant, e.ID, email); err != nil {
				return err
			}
		}
		return auditMaintenance(ctx, tx, tenant, "entity.create", e.ID.String())
	})
	if err != nil {
		return bulkhead.Entity{}, fmt.Errorf("create entity: %w", err)
	}
	return e, nil
}

func validEntity(kind bulkhead.EntityKind, name string) error {
	switch kind {
	case bulkhead.KindUser, bulkhead.KindAgent, bulkhead.KindExternal:
	default:
		return bulkhead.Invalid("kind", "user, agent or external")
	}
	if n := len(strings.TrimSpace(name)); n == 0 || len(name) > 200 {
		return bulkhead.Invalid("name", "1 to 200 characters")
	}
	return nil
}

func auditMaintenance(ctx context.Context, tx pgx.Tx, tenant uuid.UUID, action, target string) error {
	m, _ := bulkhead.MaintenanceFrom(ctx)
	_, err := tx.Exec(ctx, `INSERT INTO bulkhead.audit_log (tenant_id, action, target, detail) VALUES ($1, $2, $3, jsonb_build_object('reason', $4::text, 'path', 'maintenance'))`,
		tenant, action, target, m.Reason)
	return err
}

func scanTenant(row pgx.CollectableRow) (bulkhead.Tenant, error) {
	var t bulkhead.Tenant
	err := row.Scan(&t.ID, &t.Name, &t.Region, &t.CreatedAt)
	return t, err
}

// CurrentTenant returns the caller's own tenant: the only row of tenants
// the runtime role can see. It returns ErrUnauthenticated or ErrNotFound.
func (db *DB) CurrentTenant(ctx context.Context) (bulkhead.Tenant, error) {
	s, err := scopeFrom(ctx)
	if err != nil {
		return bulkhead.Tenant{}, err
	}
	var t bulkhead.Tenant
	err = db.ReadRow(ctx, `SELECT id, name, region, created_at FROM bulkhead.tenants WHERE id = $1`, []any{s.Tenant}, &t.ID, &t.Name, &t.Region, &t.CreatedAt)
	return t, err
}
