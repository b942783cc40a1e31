package probe

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Context says how the probe puts a tenant into a transaction: the
// convention the database's policies read.
type Context struct {
	// TenantSetting is the setting the policies read, entered with
	// set_config(name, value, true) (e.g. app.tenant_id). Ignored with Bulkhead.
	TenantSetting string
	// Bulkhead enters bulkhead's signed context: bulkhead.enter(token),
	// with a token signed by Key.
	Bulkhead bool
	Key      postgres.ContextKey
}

// Config says what to probe and how.
type Config struct {
	Context Context
	// Role is the role the probe acts as (SET LOCAL ROLE): the application's
	// runtime role. Empty: the connecting role acts. A role that bypasses
	// row-level security is refused: probing it proves nothing.
	Role string
	// Schemas limits the probe to these schemas (default: every non-system schema).
	Schemas []string
	// TenantColumn names the tenant column (default tenant_id);
	// TenantColumns overrides it per table ("schema.table" → column).
	TenantColumn  string
	TenantColumns map[string]string
	// TenantA and TenantB are the canary tenants (default: random values of
	// the tenant column's type). Give them when tables are partitioned by
	// tenant, so that the canaries have a partition.
	TenantA, TenantB string
	// ReadOnly writes nothing: READ ONLY transactions, no canaries.
	ReadOnly bool
	// AllowForgeableContext drops the finding that the runtime role can
	// set the tenant setting itself (inherent to a plain setting; bulkhead's
	// signed context is the fix).
	AllowForgeableContext bool
	// Progress, if set, is called before each table and at the end.
	Progress func(done, total int, table string)
}

// Finding is one leak the probe proved.
type Finding struct {
	Table    string `json:"table"`
	Class    string `json:"class"`
	Attacker string `json:"attacker"`
	Detail   string `json:"detail"`
	Repro    string `json:"repro"`
}

// TableResult is what happened on one table.
type TableResult struct {
	Table    string `json:"table"`
	Skipped  string `json:"skipped,omitempty"` // a tenant table that could not be probed, and why
	Note     string `json:"note,omitempty"`    // a table that is not a tenant table
	Attempts int    `json:"attempts"`
	// Inconclusive lists attempts cut short by lock_timeout or
	// statement_timeout: they prove nothing either way.
	Inconclusive []string      `json:"inconclusive,omitempty"`
	Duration     time.Duration `json:"duration_ns"`
}

// Report is the probe's result.
type Report struct {
	ReadOnly   bool          `json:"read_only"`
	Findings   []Finding     `json:"findings"`
	Tables     []TableResult `json:"tables"`
	Incomplete string        `json:"incomplete,omitempty"`
}

// Inconclusive returns the tables with attempts cut short by a timeout.
func (r *Report) Inconclusive() []TableResult {
	var out []TableResult
	for _, t := range r.Tables {
		if len(t.Inconclusive) > 0 {
			out = append(out, t)
		}
	}
	return out
}

// Skipped returns the tables that were not probed.
func (r *Report) Skipped() []TableResult {
	var out []TableResult
	for _, t := range r.Tables {
		if t.Skipped != "" {
			out = append(out, t)
		}
	}
	return out
}

// Errors the probe returns before probing anything.
var (
	ErrBypass    = errors.New("the acting role bypasses row-level security")
	ErrPrivilege = errors.New("not enough privilege")
)

// Attackers, in the order they run on each table.
const (
	tenantB    = "tenant-b"
	noContext  = "no-context"
	malformed  = "malformed"
	forged     = "forged"
	tenantA    = "tenant-a"
	classForge = "forgeable-context"
)

// Run probes every tenant table of the database conn is connected to. It
// returns an error only when it can't start (bad configuration, a role
// that bypasses RLS, missing privileges); everything found, skipped or
// cut short by ctx's deadline is in the Report. Nothing is committed.
func Run(ctx context.Context, conn *pgx.Conn, cfg Config) (*Report, error) {
	p := &prober{conn: conn, cfg: cfg, rep: &Report{ReadOnly: cfg.ReadOnly, Findings: []Finding{}}, tenants: map[string][2]string{}}
	if cfg.TenantColumn == "" {
		p.cfg.TenantColumn = "tenant_id"
	}
	if !cfg.Context.Bulkhead && cfg.Context.TenantSetting == "" {
		return nil, errors.New("say how to enter a tenant's context: a tenant setting (e.g. app.tenant_id) or bulkhead's signed context")
	}
	if cfg.Context.Bulkhead && cfg.Context.Key.IsZero() {
		return nil, errors.New("bulkhead's signed context needs the database's context key")
	}
	if err := p.checkRoles(ctx); err != nil {
		return nil, err
	}
	var tables []*table
	err := pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) (err error) {
		tables, err = discover(ctx, tx, cfg.Schemas, func(schema, name string) string {
			if c, ok := cfg.TenantColumns[schema+"."+name]; ok {
				return c
			}
			return p.cfg.TenantColumn
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(tables) == 0 {
		return nil, fmt.Errorf("no tables to probe in schemas %v", cfg.Schemas)
	}
	p.byOID = map[uint32]*table{}
	for _, t := range tables {
		p.byOID[t.oid] = t
	}
	for i, t := range tables {
		if cfg.Progress != nil {
			cfg.Progress(i, len(tables), t.display())
		}
		if ctx.Err() != nil {
			p.rep.Incomplete = fmt.Sprintf("stopped after %d of %d tables (%v)", i, len(tables), context.Cause(ctx))
			for _, rest := range tables[i:] {
				p.rep.Tables = append(p.rep.Tables, TableResult{Table: rest.display(), Skipped: "not reached before the deadline"})
			}
			break
		}
		res := TableResult{Table: t.display()}
		start := time.Now()
		switch {
		case t.tenantCol == "" && !t.rls:
			res.Note = fmt.Sprintf("no tenant column %q and no row-level security: not a tenant table", p.tenantColFor(t))
		case t.tenantCol == "":
			res.Skipped = fmt.Sprintf("row-level security but no tenant column %q: give its tenant column (--tenant-column, or --tenant-column-for %s=COLUMN)", p.tenantColFor(t), t.schema+"."+t.name)
		default:
			if err := p.probeTable(ctx, t, &res); err != nil {
				if ctx.Err() != nil {
					res.Skipped = "cut short by the deadline: " + err.Error()
				} else {
					res.Skipped = err.Error()
				}
			}
		}
		res.Duration = time.Since(start)
		p.rep.Tables = append(p.rep.Tables, res)
	}
	if cfg.Progress != nil {
		cfg.Progress(len(tables), len(tables), "")
	}
	return p.rep, nil
}

type prober struct {
	conn    *pgx.Conn
	cfg     Config
	rep     *Report
	byOID   map[uint32]*table
	bypass  bool                 // the connecting role bypasses RLS: it writes the canaries
	actor   string               // the acting role's name
	tenants map[string][2]string // canary tenants A and B by column base type
	forgery bool                 // the forgeable-context finding is made
}

func (p *prober) tenantColFor(t *table) string {
	if c, ok := p.cfg.TenantColumns[t.schema+"."+t.name]; ok {
		return c
	}
	return p.cfg.TenantColumn
}

// checkRoles refuses an acting role that bypasses RLS and finds out who
// writes the canaries.
func (p *prober) checkRoles(ctx context.Context) error {
	var user string
	var super, bypass bool
	err := p.conn.QueryRow(ctx, "SELECT current_user, rolsuper, rolbypassrls FROM pg_catalog.pg_roles WHERE rolname = current_user").Scan(&user, &super, &bypass)
	if err != nil {
		return fmt.Errorf("look up the connecting role: %w", err)
	}
	p.bypass = super || bypass
	p.actor = user
	if p.cfg.Role != "" {
		var rsuper, rbypass bool
		err := p.conn.QueryRow(ctx, "SELECT rolsuper, rolbypassrls FROM pg_catalog.pg_roles WHERE rolname = $1", p.cfg.Role).Scan(&rsuper, &rbypass)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("role %q does not exist", p.cfg.Role)
		}
		if err != nil {
			return fmt.Errorf("look up role %q: %w", p.cfg.Role, err)
		}
		if rsuper || rbypass {
			return fmt.Errorf("%w: %s is SUPERUSER or BYPASSRLS; give the application's runtime role", ErrBypass, p.cfg.Role)
		}
		err = pgx.BeginFunc(ctx, p.conn, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "SET LOCAL ROLE "+pgx.Identifier{p.cfg.Role}.Sanitize())
			return err
		})
		if err != nil {
			return fmt.Errorf("%w: %s can't SET ROLE %s (%v): connect as a superuser or a member of it", ErrPrivilege, user, p.cfg.Role, err)
		}
		p.actor = p.cfg.Role
	} else if p.bypass {
		return fmt.Errorf("%w: %s is SUPERUSER or BYPASSRLS; connect as the application's runtime role or give --role", ErrBypass, user)
	}
	if !p.cfg.ReadOnly && !p.bypass && p.cfg.Context.Bulkhead {
		return fmt.Errorf("%w: bulkhead's signed context takes one context per transaction, so the canaries are written by the connecting role past row-level security: connect as a superuser (or BYPASSRLS role) and give --role, or use --read-only", ErrPrivilege)
	}
	return nil
}

// tenantValues returns canary tenants A and B for a tenant column of c's type.
func (p *prober) tenantValues(c column) (string, string) {
	if v, ok := p.tenants[c.base]; ok {
		return v[0], v[1]
	}
	a, b := p.cfg.TenantA, p.cfg.TenantB
	if a == "" || b == "" {
		switch c.base {
		case "uuid":
			a, b = randUUID(), randUUID()
		case "int2":
			a, b = "32001", "32002"
		case "int4", "int8", "numeric":
			a, b = randInt(), randInt()
		default:
			a, b = "bhprobe-a-"+randHex(4), "bhprobe-b-"+randHex(4)
		}
	}
	p.tenants[c.base] = [2]string{a, b}
	return a, b
}

// session is one attacker's transaction on one table.
type session struct {
	p        *prober
	tx       pgx.Tx
	t        *table
	attacker string
	a, b     string  // tenant values
	canaries builder // what was written
	ctxSQL   string  // how the attacker's context was entered, for reproductions
	attempts int
	// inconclusive: attempts stopped by a timeout, as "attacker: sql: error"
	inconclusive []string
}

func (p *prober) probeTable(ctx context.Context, t *table, res *TableResult) error {
	tc, _ := t.column(t.tenantCol)
	a, b := p.tenantValues(tc)
	attackers := []string{tenantB, noContext, malformed, forged, tenantA}
	if p.cfg.ReadOnly {
		attackers = []string{tenantB, noContext, malformed, forged}
	}
	updCol, err := p.updatableColumn(ctx, t)
	if err != nil {
		return err
	}
	for _, who := range attackers {
		if who == forged && !p.cfg.Context.Bulkhead && (p.forgery || p.cfg.AllowForgeableContext) {
			continue // a plain setting is forgeable everywhere: reported once
		}
		s := &session{p: p, t: t, attacker: who, a: a, b: b}
		err := s.run(ctx, updCol)
		res.Attempts += s.attempts
		res.Inconclusive = append(res.Inconclusive, s.inconclusive...)
		if err != nil {
			return err
		}
	}
	return nil
}

// updatableColumn returns a column the acting role may UPDATE ("" if none).
func (p *prober) updatableColumn(ctx context.Context, t *table) (string, error) {
	for _, c := range t.columns {
		if c.generated || c.identity {
			continue
		}
		var ok bool
		if err := p.conn.QueryRow(ctx, "SELECT has_column_privilege($1, $2::oid, $3, 'UPDATE')", p.actor, t.oid, c.name).Scan(&ok); err != nil {
			return "", fmt.Errorf("privileges of %s on %s: %w", p.actor, t.display(), err)
		}
		if ok {
			return c.name, nil
		}
	}
	return "", nil
}

// canaries is what one session wrote.
type canaries struct {
	a, aFresh, bFresh, b row
	aParent, bParent     map[string]row // per foreign key without the tenant column
}

func (s *session) run(ctx context.Context, updCol string) error {
	opts := pgx.TxOptions{}
	if s.p.cfg.ReadOnly {
		opts.AccessMode = pgx.ReadOnly
	}
	tx, err := s.p.conn.BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	s.tx = tx
	defer tx.Rollback(context.WithoutCancel(ctx)) // always: nothing is ever committed
	// Never wait long behind the application's locks, nor hold a scan
	// forever: the probe's own writes lock rows until the rollback.
	if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '2s'; SET LOCAL statement_timeout = '60s'"); err != nil {
		return err
	}
	var cs canaries
	if !s.p.cfg.ReadOnly {
		if !s.p.bypass {
			if err := s.setRole(ctx); err != nil {
				return err
			}
		}
		if cs, err = s.writeCanaries(ctx); err != nil {
			return err
		}
	}
	if s.p.bypass {
		if err := s.setRole(ctx); err != nil {
			return err
		}
	}
	if err := s.enter(ctx); err != nil {
		return err
	}
	if s.p.cfg.ReadOnly {
		return s.readOnlyAttacks(ctx)
	}
	switch s.attacker {
	case tenantA:
		return s.moves(ctx, cs)
	case tenantB:
		if err := s.reads(ctx, cs.a, updCol); err != nil {
			return err
		}
		return s.writes(ctx, cs)
	}
	return s.reads(ctx, cs.a, updCol)
}

func (s *session) setRole(ctx context.Context) error {
	if s.p.cfg.Role == "" {
		return nil
	}
	_, err := s.tx.Exec(ctx, "SET LOCAL ROLE "+pgx.Identifier{s.p.cfg.Role}.Sanitize())
	return err
}

// setTenant enters tenant through the configured convention (settings:
// set_config; bulkhead: a signed token).
func (s *session) setTenant(ctx context.Context, tenant string) (string, error) {
	if s.p.cfg.Context.Bulkhead {
		id, err := uuid.Parse(tenant)
		if err != nil {
			return "", fmt.Errorf("tenant %q is not a uuid: bulkhead's context names tenants by uuid", tenant)
		}
		sql, args, err := s.p.cfg.Context.Key.EnterSQL(bulkhead.Scope{Tenant: id})
		if err != nil {
			return "", err
		}
		if _, err := s.tx.Exec(ctx, sql, args...); err != nil {
			return "", fmt.Errorf("enter tenant %s's context: %w", tenant, err)
		}
		return fmt.Sprintf("SELECT %s.enter(:token_signed_for_tenant_%s)", postgres.Schema, tenant), nil
	}
	sql := fmt.Sprintf("SELECT set_config('%s', '%s', true)", strings.ReplaceAll(s.p.cfg.Context.TenantSetting, "'", "''"), strings.ReplaceAll(tenant, "'", "''"))
	if _, err := s.tx.Exec(ctx, sql); err != nil {
		return "", fmt.Errorf("set %s: %w", s.p.cfg.Context.TenantSetting, err)
	}
	return sql, nil
}

func (s *session) writeCanaries(ctx context.Context) (canaries, error) {
	var cs canaries
	current := ""
	s.canaries = builder{byOID: s.p.byOID, exists: map[string]bool{}, write: func(ctx context.Context, tenant, sql string) error {
		if !s.p.bypass && tenant != current {
			if _, err := s.setTenant(ctx, tenant); err != nil {
				return err
			}
			current = tenant
		}
		_, err := s.tx.Exec(ctx, sql)
		if err != nil && !s.p.bypass {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == "42501" {
				err = fmt.Errorf("%w (tenant %s's own context may not write this row; connect as a role that bypasses row-level security and give --role, so the canaries are written past it)", err, tenant)
			}
		}
		return err
	}}
	b := &s.canaries
	var err error
	t := s.t
	if cs.a, err = b.build(ctx, t, s.a, row{}, true, 0); err != nil {
		return cs, err
	}
	switch s.attacker {
	case tenantB:
		if cs.aFresh, err = b.build(ctx, t, s.a, row{}, false, 0); err != nil {
			return cs, err
		}
		if cs.bFresh, err = b.build(ctx, t, s.b, row{}, false, 0); err != nil {
			return cs, err
		}
	case tenantA:
		if cs.b, err = b.build(ctx, t, s.b, row{}, true, 0); err != nil {
			return cs, err
		}
	}
	if s.attacker == tenantA || s.attacker == tenantB {
		cs.aParent, cs.bParent = map[string]row{}, map[string]row{}
		for _, f := range t.fks {
			parent := s.p.byOID[f.refOID]
			if !t.fkWithoutTenant(f) || parent == nil || parent.tenantCol == "" {
				continue
			}
			if cs.aParent[f.name], err = b.build(ctx, parent, s.a, row{}, true, 1); err != nil {
				return cs, err
			}
			if cs.bParent[f.name], err = b.build(ctx, parent, s.b, row{}, true, 1); err != nil {
				return cs, err
			}
		}
	}
	return cs, nil
}

// enter puts the attacker's context into the transaction.
func (s *session) enter(ctx context.Context) error {
	var err error
	switch s.attacker {
	case tenantB:
		s.ctxSQL, err = s.setTenant(ctx, s.b)
	case tenantA:
		s.ctxSQL, err = s.setTenant(ctx, s.a)
	case noContext:
		if !s.p.bypass && !s.p.cfg.ReadOnly && !s.p.cfg.Context.Bulkhead {
			// The canaries were written through the setting: empty it, as a
			// pooled connection after an earlier transaction has it.
			s.ctxSQL = fmt.Sprintf("SELECT set_config('%s', '', true)", s.p.cfg.Context.TenantSetting)
			_, err = s.tx.Exec(ctx, s.ctxSQL)
		} else {
			s.ctxSQL = "-- no context"
		}
	case malformed:
		if s.p.cfg.Context.Bulkhead {
			s.ctxSQL = fmt.Sprintf(`SELECT %s.enter('\x01deadbeef'::bytea)`, postgres.Schema)
			if ok := s.accepted(ctx, s.ctxSQL); ok {
				s.find("malformed-context-accepted", "a malformed context token was accepted", s.ctxSQL)
			}
		} else {
			s.ctxSQL = fmt.Sprintf("SELECT set_config('%s', 'bhprobe-not-a-tenant', true)", s.p.cfg.Context.TenantSetting)
			s.accepted(ctx, s.ctxSQL)
		}
	case forged:
		if s.p.cfg.Context.Bulkhead {
			return s.forgeBulkhead(ctx)
		}
		s.ctxSQL, err = s.setTenant(ctx, s.a)
	}
	return err
}

// forgeBulkhead tries to enter tenant A without bulkhead's key: a token
// signed with another key, and the context settings set directly.
func (s *session) forgeBulkhead(ctx context.Context) error {
	raw := make([]byte, 32)
	rand.Read(raw)
	other, _ := postgres.NewContextKey(raw)
	id, err := uuid.Parse(s.a)
	if err != nil {
		return err
	}
	sql, args, err := other.EnterSQL(bulkhead.Scope{Tenant: id})
	if err != nil {
		return err
	}
	if s.acceptedArgs(ctx, sql, args) {
		s.ctxSQL = fmt.Sprintf("SELECT %s.enter(:token_for_tenant_%s_signed_with_another_key)", postgres.Schema, s.a)
		s.find("forged-token-accepted", "a context token signed with another key was accepted", s.ctxSQL)
		return nil
	}
	s.ctxSQL = fmt.Sprintf("SELECT set_config('%s', '%s', true)", postgres.TenantSetting, s.a)
	if s.accepted(ctx, s.ctxSQL) {
		s.find(classForge, "the runtime role can set "+postgres.TenantSetting+" itself", s.ctxSQL)
	}
	return nil
}

// accepted runs sql in a savepoint and reports whether it succeeded; a
// success is kept, a failure rolled back.
func (s *session) accepted(ctx context.Context, sql string) bool {
	return s.acceptedArgs(ctx, sql, nil)
}

func (s *session) acceptedArgs(ctx context.Context, sql string, args []any) bool {
	s.attempts++
	if _, err := s.tx.Exec(ctx, "SAVEPOINT bh_enter"); err != nil {
		return false
	}
	if _, err := s.tx.Exec(ctx, sql, args...); err != nil {
		s.tx.Exec(ctx, "ROLLBACK TO SAVEPOINT bh_enter")
		return false
	}
	return true
}

// find records a finding with a one-line reproduction around stmt.
func (s *session) find(class, detail, stmt string) {
	var b strings.Builder
	b.WriteString("BEGIN")
	if s.p.cfg.ReadOnly {
		b.WriteString(" READ ONLY")
	}
	b.WriteString("; ")
	for _, c := range s.canaries.stmts {
		b.WriteString(c + "; ")
	}
	if s.p.cfg.Role != "" {
		b.WriteString("SET LOCAL ROLE " + pgx.Identifier{s.p.cfg.Role}.Sanitize() + "; ")
	}
	if s.ctxSQL != "" && s.ctxSQL != stmt {
		b.WriteString(s.ctxSQL + "; ")
	}
	b.WriteString(stmt + "; ROLLBACK;")
	table := s.t.display()
	if class == classForge {
		if s.p.forgery {
			return
		}
		s.p.forgery = true
		table = "(database)"
	}
	s.p.rep.Findings = append(s.p.rep.Findings, Finding{Table: table, Class: class, Attacker: s.attacker, Detail: detail, Repro: b.String()})
}
