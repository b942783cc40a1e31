package adopt

import (
	"context"
	"errors"
	"fmt"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// SignedTenantSetting is the tenant setting of bulkhead's signed context.
// The bulkhead_context extension (pgext/, preloaded by the server) defines
// it superuser-only; any other role gets it only through
// bulkhead.enter(token), with a token signed by the context key
// (docs/SECURITY.md, "Unforgeable context").
const SignedTenantSetting = "bulkhead.tenant_id"

// SignedEntitySetting is the entity setting of bulkhead's signed context,
// set, like the tenant, only by bulkhead.enter(token). Once hardened, the
// owned and private tables' policies read it instead of the plan's
// entity_setting.
const SignedEntitySetting = "bulkhead.entity_id"

// How an adopted database's policies read the tenant.
const (
	// ContextLegacy: the plan's tenant_setting, which any role can SET.
	ContextLegacy = "legacy"
	// ContextSigned: SignedTenantSetting, which only a signed token sets.
	ContextSigned = "signed"
)

// contextRow is the state schema's settings row that Harden writes: present
// (value ContextSigned) means signed, absent legacy.
const contextRow = "context"

// ErrContextModule is wrapped when the server can't verify a signed
// context: bulkhead_context isn't preloaded, or its key isn't the one
// given.
var ErrContextModule = errors.New("signed context unavailable")

// ContextMode returns ContextSigned or ContextLegacy: how the policies,
// column defaults and shadow recorder of p's tables read the tenant. A
// plan whose tenant_setting is already SignedTenantSetting is signed from
// the start. It only reads.
func ContextMode(ctx context.Context, q rowQuerier, p *Plan) (string, error) {
	if p.TenantSetting == SignedTenantSetting {
		return ContextSigned, nil
	}
	ok, err := stateTableExists(ctx, q, "settings")
	if err != nil || !ok {
		return ContextLegacy, err
	}
	// FOR SHARE: a step that reads the mode holds it until it commits, so
	// Harden (EXCLUSIVE on the table) never switches between the read and
	// the DDL the step writes with it.
	var n int
	err = q.QueryRow(ctx, "SELECT count(*) FROM (SELECT 1 FROM "+StateSchema+".settings WHERE name = $1 FOR SHARE) s", contextRow).Scan(&n)
	if err != nil {
		return "", fmt.Errorf("read context mode: %w", err)
	}
	if n > 0 {
		return ContextSigned, nil
	}
	return ContextLegacy, nil
}

// Effective is p as the database runs it: its tenant_setting replaced by
// SignedTenantSetting once Harden ran. Every step that writes SQL reading
// the tenant (the context functions, the shadow recorder's triggers) takes
// its setting from here, in the transaction that writes it, so no later
// step undoes Harden. (Replays call current_tenant() and
// current_entity() instead: see contextInReplay.)
func Effective(ctx context.Context, q rowQuerier, p *Plan) (*Plan, error) {
	mode, err := ContextMode(ctx, q, p)
	if err != nil || mode == ContextLegacy {
		return p, err
	}
	cp := *p
	cp.TenantSetting = SignedTenantSetting
	if p.EntitySetting != "" {
		cp.EntitySetting = SignedEntitySetting
	}
	return &cp, nil
}

// HardenOptions tune Harden.
type HardenOptions struct {
	Options
	// Prepare stops before the switch: the extension is installed and the
	// key proven, so the application can start entering signed contexts
	// (bulkhead.enter exists from then on); a later Harden switches.
	Prepare bool
}

// Harden makes the tenant context of the adopted database unforgeable (and
// the entity context, for a plan with an entity_setting). The
// application's setting (the plan's tenant_setting) is a placeholder any
// SQL on its connection can SET to another tenant; after Harden the context
// functions, and so every policy and column default of every phase, and
// the shadow recorder, read SignedTenantSetting instead, which only a token
// signed with the context key can set (bulkhead.enter, one context per
// transaction). The legacy setting then opens nothing.
//
// The application must enter signed contexts first (postgres.ContextKey
// EnterSQL, or the token format in docs/ADOPT.md), keeping its own SET
// until Harden has run; an application that doesn't sees nothing after it
// (fail closed) until it does or Unharden runs. Harden with Prepare makes
// bulkhead.enter available for that without switching anything.
//
// In one transaction: the state is installed if missing; the
// bulkhead_context extension is created if missing (and its schema's
// USAGE granted to PUBLIC: enter's only power is what a signature grants);
// a token for a random tenant signed with key is entered as the runtime
// role, proving that the server verifies with the same key; the mode is
// recorded, the context functions and the triggers of every shadow table
// are rewritten; then, with the legacy setting naming another tenant, the
// context function must answer the signed one. Any failure changes
// nothing. It needs a uuid tenant (the token carries one) and a server
// that preloads bulkhead_context. It reports whether it switched: false
// when already hardened, or with Prepare.
func Harden(ctx context.Context, conn *pgx.Conn, p *Plan, key postgres.ContextKey, ho HardenOptions) (bool, error) {
	o := ho.Options.withDefaults()
	if p.tenantType() != "uuid" {
		return false, fmt.Errorf("%w: harden: the signed context carries a uuid tenant; this plan's tenant_type is %s", ErrPlan, p.tenantType())
	}
	if key.IsZero() {
		return false, fmt.Errorf("%w: harden needs the context key the server verifies with (--context-key-file)", ErrContextModule)
	}
	if err := requireContextModule(ctx, conn); err != nil {
		return false, err
	}
	changed := false
	err := withTx(ctx, conn, o.LockTimeout, o.Retries, func(tx pgx.Tx) error {
		changed = false
		if err := installState(ctx, tx, p); err != nil {
			return err
		}
		mode, err := lockedMode(ctx, tx, p)
		if err != nil || mode == ContextSigned {
			return err
		}
		if err := ensureContextExtension(ctx, tx); err != nil {
			return err
		}
		probe := bulkhead.Scope{Tenant: uuid.New(), Entity: uuid.New()}
		if err := proveKey(ctx, tx, p, key, probe); err != nil {
			return err
		}
		if ho.Prepare {
			return nil
		}
		if err := switchContext(ctx, tx, p, ContextSigned); err != nil {
			return err
		}
		// The proof that the switch took: with the legacy settings naming
		// another tenant and entity, the context functions answer the
		// signed ones.
		var got, gotEntity *uuid.UUID
		if _, err := tx.Exec(ctx, "SELECT pg_catalog.set_config($1, $2, true), pg_catalog.set_config($3, $4, true)",
			p.TenantSetting, uuid.NewString(), p.entitySetting(), uuid.NewString()); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, "SELECT "+StateSchema+".current_tenant(), "+StateSchema+".current_entity()").Scan(&got, &gotEntity); err != nil {
			return fmt.Errorf("check the switch: %w", err)
		}
		if got == nil || *got != probe.Tenant {
			return fmt.Errorf("check the switch: current_tenant() answered %v with the legacy setting forged, want the signed %v", got, probe.Tenant)
		}
		if p.EntitySetting != "" && (gotEntity == nil || *gotEntity != probe.Entity) {
			return fmt.Errorf("check the switch: current_entity() answered %v with the legacy setting forged, want the signed %v", gotEntity, probe.Entity)
		}
		changed = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("harden: %w", err)
	}
	return changed, nil
}

// Unharden is Harden undone: the policies read the plan's tenant_setting
// again (forgeable, as before Harden). The extension stays, so that an
// application entering signed contexts keeps working; drop it once
// nothing calls bulkhead.enter. It reports false when not hardened.
func Unharden(ctx context.Context, conn *pgx.Conn, p *Plan, o Options) (bool, error) {
	o = o.withDefaults()
	if p.TenantSetting == SignedTenantSetting {
		return false, fmt.Errorf("%w: the plan's tenant_setting is %s itself: there is no legacy setting to go back to", ErrPlan, SignedTenantSetting)
	}
	changed := false
	err := withTx(ctx, conn, o.LockTimeout, o.Retries, func(tx pgx.Tx) error {
		changed = false
		ok, err := stateTableExists(ctx, tx, "settings")
		if err != nil || !ok {
			return err
		}
		mode, err := lockedMode(ctx, tx, p)
		if err != nil || mode == ContextLegacy {
			return err
		}
		if err := switchContext(ctx, tx, p, ContextLegacy); err != nil {
			return err
		}
		changed = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("harden --undo: %w", err)
	}
	return changed, nil
}

// lockedMode locks the settings table EXCLUSIVE in tx (steps reading the
// mode hold it FOR SHARE until they commit: see ContextMode) and returns
// the mode.
func lockedMode(ctx context.Context, tx pgx.Tx, p *Plan) (string, error) {
	if _, err := tx.Exec(ctx, "LOCK TABLE "+StateSchema+".settings IN EXCLUSIVE MODE"); err != nil {
		return "", err
	}
	return ContextMode(ctx, tx, p)
}

// switchContext records mode and rewrites what reads the tenant: the
// context functions (and so every policy and default, which call them)
// and the recorder triggers of the plan's shadow tables. tx holds the
// settings table EXCLUSIVE.
func switchContext(ctx context.Context, tx pgx.Tx, p *Plan, mode string) error {
	var err error
	if mode == ContextSigned {
		_, err = tx.Exec(ctx, "INSERT INTO "+StateSchema+".settings VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value", contextRow, mode)
	} else {
		_, err = tx.Exec(ctx, "DELETE FROM "+StateSchema+".settings WHERE name = $1", contextRow)
	}
	if err != nil {
		return fmt.Errorf("record context mode: %w", err)
	}
	if err := installState(ctx, tx, p); err != nil {
		return err
	}
	ep, err := Effective(ctx, tx, p)
	if err != nil {
		return err
	}
	for _, t := range p.TenantTables() {
		ph, err := phaseOf(ctx, tx, p, t.Name)
		if err != nil {
			return err
		}
		if ph != PhaseShadow {
			continue
		}
		// The recorder is rebuilt from the plan: refused when the plan's
		// entry no longer has the shape shadow installed.
		if err := samePolicies(ctx, tx, p, t); err != nil {
			return err
		}
		pk, err := primaryKey(ctx, tx, qident(p.Schema, t.Name))
		if err != nil {
			return err
		}
		if err := execAll(ctx, tx, append(dropTriggerSQL(ep, t), triggerSQL(ep, t, pk)...)); err != nil {
			return err
		}
	}
	from, to := ContextLegacy, mode
	if mode == ContextLegacy {
		from = ContextSigned
	}
	_, err = tx.Exec(ctx, "INSERT INTO "+StateSchema+".history (rel, from_phase, to_phase) VALUES ('(context)', $1, $2)", from+" context", to+" context")
	return err
}

// requireContextModule checks that the server defines the signed tenant
// setting superuser-only, which only a preloaded bulkhead_context does.
func requireContextModule(ctx context.Context, conn *pgx.Conn) error {
	var sctx *string
	err := conn.QueryRow(ctx, "SELECT (SELECT s.context FROM pg_catalog.pg_settings s WHERE s.name = $1)", SignedTenantSetting).Scan(&sctx)
	if err != nil {
		return fmt.Errorf("read the server's settings: %w", err)
	}
	if sctx == nil || *sctx != "superuser" {
		return fmt.Errorf("%w: this server does not load bulkhead_context (%s is %s, not superuser-only): build and install pgext/ (scripts/deps.sh does), add bulkhead_context to shared_preload_libraries, set bulkhead.context_key_file to a file holding the context key (64 hex digits, readable by the server only), restart PostgreSQL",
			ErrContextModule, SignedTenantSetting, describeSettingContext(sctx))
	}
	return nil
}

func describeSettingContext(s *string) string {
	if s == nil {
		return "undefined"
	}
	return "of context " + *s
}

// ensureContextExtension creates bulkhead_context in this database when
// missing. Its schema's USAGE goes to PUBLIC then: enter() grants nothing
// a valid signature doesn't. An extension already there is left as it is
// (proveKey shows whether the runtime role can use it).
func ensureContextExtension(ctx context.Context, tx pgx.Tx) error {
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'bulkhead_context')").Scan(&exists); err != nil || exists {
		return err
	}
	if _, err := tx.Exec(ctx, "CREATE EXTENSION bulkhead_context"); err != nil {
		return fmt.Errorf("%w: CREATE EXTENSION bulkhead_context: %v", ErrContextModule, err)
	}
	_, err := tx.Exec(ctx, "GRANT USAGE ON SCHEMA bulkhead TO PUBLIC")
	return err
}

// proveKey enters a token for probe signed with key, as the runtime role
// when the operator may become it (else as the operator), and checks that
// the server set the signed tenant: the server verifies with key, and the
// role may call enter. The role is reset afterwards; the context stays
// for the rest of tx (one per transaction).
func proveKey(ctx context.Context, tx pgx.Tx, p *Plan, key postgres.ContextKey, probe bulkhead.Scope) error {
	var member bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1) AND pg_catalog.pg_has_role(current_user, $1, 'MEMBER')",
		p.Runtime.Name).Scan(&member); err != nil {
		return err
	}
	if member {
		if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+ident(p.Runtime.Name)); err != nil {
			return err
		}
	}
	sql, args, err := key.EnterSQL(probe)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("%w: enter a context signed with the given key: %v (is bulkhead.context_key_file the same key, and the clocks within seconds?)", ErrContextModule, err)
	}
	var got string
	if err := tx.QueryRow(ctx, "SELECT pg_catalog.current_setting($1)", SignedTenantSetting).Scan(&got); err != nil {
		return err
	}
	if got != probe.Tenant.String() {
		return fmt.Errorf("%w: after enter, %s is %q, want %s", ErrContextModule, SignedTenantSetting, got, probe.Tenant)
	}
	if member {
		if _, err := tx.Exec(ctx, "RESET ROLE"); err != nil {
			return err
		}
	}
	return nil
}
