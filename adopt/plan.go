package adopt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/bulkhead-dev/bulkhead/rls"
	"github.com/google/uuid"
	"gopkg.in/yaml.v3"
)

// Kinds a table may have in a plan.
const (
	KindTenant = "tenant" // layer-1 isolation on the tenant column (rls.Tenant)
	// KindOwned: layer 1, and only the entity in the owner column writes
	// a row; every entity of the tenant reads it (rls.Owned).
	KindOwned = "owned"
	// KindPrivate: layer 1, and only the entity in the owner column reads
	// or writes a row (rls.Private).
	KindPrivate = "private"
	// KindRoom: layer 1, and only the entities that are members of the
	// row's room (RoomColumn), through the membership table the plan
	// declares (Membership), read the row; only its author (OwnerColumn), as
	// itself and a member of the room, writes it (rls.Member).
	KindRoom   = "room"
	KindGlobal = "global" // shared by every tenant: adopt leaves it alone
)

// layerTwo maps the plan's entity kinds onto the generator's.
var layerTwo = map[string]rls.Kind{KindOwned: rls.Owned, KindPrivate: rls.Private, KindRoom: rls.Member}

// kindList is every kind a plan may give a table, for messages.
const kindList = KindTenant + ", " + KindOwned + ", " + KindPrivate + ", " + KindRoom + " or " + KindGlobal

// entityKind reports whether t's kind is owned, private or room: its rows
// have an owner (OwnerColumn) as well as a tenant.
func (t Table) entityKind() bool {
	_, ok := layerTwo[t.Kind]
	return ok
}

// isolated reports whether adopt isolates t (every kind but global).
func (t Table) isolated() bool { return !t.Decide && (t.Kind == KindTenant || t.entityKind()) }

// Plan is the reviewed description of an adoption. It lives in the
// operator's repository; every phase reads it.
type Plan struct {
	Version int    `json:"version" yaml:"version"`
	Schema  string `json:"schema" yaml:"schema"` // the application's schema
	// TenantSetting is the setting the application puts the tenant in
	// (transaction-local), e.g. app.current_tenant_id.
	TenantSetting string `json:"tenant_setting" yaml:"tenant_setting"`
	// TenantType is the SQL type of every tenant column (and of the
	// context the policies compare them with): uuid (the default when
	// empty), text, bigint or integer. Inspect takes it from the columns.
	TenantType string `json:"tenant_type,omitempty" yaml:"tenant_type,omitempty"`
	// EntitySetting is the setting the application puts the acting entity
	// (a uuid) in, e.g. app.current_entity_id. Tables of kind owned or
	// private need it; their policies compare the owner column with it.
	EntitySetting string `json:"entity_setting,omitempty" yaml:"entity_setting,omitempty"`
	// SettingsSeen lists the context settings found in use (function
	// bodies, policies, role and database defaults).
	SettingsSeen []string    `json:"settings_seen,omitempty" yaml:"settings_seen,omitempty"`
	Runtime      RuntimeRole `json:"runtime_role" yaml:"runtime_role"`
	Tables       []Table     `json:"tables" yaml:"tables"`
}

// RuntimeRole is the role the application should connect as once enforced.
type RuntimeRole struct {
	Name string `json:"name" yaml:"name"`
	// Create: adopt creates it (NOLOGIN, NOSUPERUSER, NOBYPASSRLS) in the
	// shadow phase and drops it on rollback; the operator gives it LOGIN.
	Create bool `json:"create" yaml:"create"`
	// AppRole is the role the application connects as today, when known.
	AppRole string `json:"app_role,omitempty" yaml:"app_role,omitempty"`
	// Warning says what is wrong with how the application connects today.
	Warning string `json:"warning,omitempty" yaml:"warning,omitempty"`
}

// Table is one table's part of a plan.
type Table struct {
	Name string `json:"name" yaml:"name"`
	// Kind is KindTenant, KindOwned, KindPrivate, KindRoom or KindGlobal; empty
	// while Decide is set.
	Kind string `json:"kind,omitempty" yaml:"kind,omitempty"`
	// OwnerColumn (owned, private and room) holds the owning entity (for
	// room, the author), a uuid.
	OwnerColumn string `json:"owner_column,omitempty" yaml:"owner_column,omitempty"`
	// RoomColumn (room) holds the row's room.
	RoomColumn string `json:"room_column,omitempty" yaml:"room_column,omitempty"`
	// Membership (room) is the table that makes an entity a member of a
	// room. It must be a table of the plan isolated as tenant or owned
	// (every member row of the tenant readable by its entities).
	Membership *Membership `json:"membership,omitempty" yaml:"membership,omitempty"`
	// Decide marks a table Inspect could not classify: the operator sets
	// Kind and clears it.
	Decide       bool   `json:"decide,omitempty" yaml:"decide,omitempty"`
	TenantColumn string `json:"tenant_column,omitempty" yaml:"tenant_column,omitempty"`
	// AddColumn: the tenant column does not exist; backfill adds it.
	AddColumn bool `json:"add_column,omitempty" yaml:"add_column,omitempty"`
	// PrimaryKey as found (read-only information).
	PrimaryKey []string `json:"primary_key,omitempty" yaml:"primary_key,omitempty"`
	Backfill   []Rule   `json:"backfill,omitempty" yaml:"backfill,omitempty"`
	// OwnerBackfill (owned and private) fills a NULL owner column, after
	// Backfill has filled the tenant column. Rows no rule covers keep no
	// owner and are reported: once enforced nobody writes them (and, under
	// private, nobody reads them). Rule names are unique across both lists.
	OwnerBackfill []Rule `json:"owner_backfill,omitempty" yaml:"owner_backfill,omitempty"`
	// FireTriggers accepts that the table's own UPDATE triggers fire on the
	// updates of backfill and of rollback to original, run as the role
	// running adopt (an updated_at trigger moves every row filled, an audit
	// trigger logs each). Without it such a table is refused by both,
	// before they write anything.
	FireTriggers bool `json:"fire_triggers,omitempty" yaml:"fire_triggers,omitempty"`
	// Notes are Inspect's findings for the reviewer (keys and indexes to
	// make tenant-leading, layer-2 candidates, existing policies).
	Notes []string `json:"notes,omitempty" yaml:"notes,omitempty"`
}

// Membership names, for a table of kind room, the plan's table relating
// entities to rooms: a row (RoomColumn, EntityColumn) in a tenant makes the
// entity a member of the room there.
type Membership struct {
	Table        string `json:"table" yaml:"table"`
	RoomColumn   string `json:"room_column" yaml:"room_column"`
	EntityColumn string `json:"entity_column" yaml:"entity_column"`
}

// memberFunction is the name, in StateSchema, of the membership check the
// shadow recorder of room table t calls (roomFunctionSQL).
func memberFunction(t string) string { return "member_" + t }

// Rule fills the tenant column (in Backfill) or the owner column (in
// OwnerBackfill) of rows where it is NULL. Exactly one of Constant, Parent
// and Expression is set; Where narrows the rows.
type Rule struct {
	Name     string      `json:"name" yaml:"name"`
	Constant string      `json:"constant,omitempty" yaml:"constant,omitempty"`
	Parent   *ParentRule `json:"parent,omitempty" yaml:"parent,omitempty"`
	// Expression is SQL over the row, qualified as t (e.g.
	// "(SELECT w.server_id FROM worlds w WHERE w.id = t.world_id)").
	Expression string `json:"expression,omitempty" yaml:"expression,omitempty"`
	Where      string `json:"where,omitempty" yaml:"where,omitempty"`
}

// ParentRule takes the value from the row Column references in Table
// (through Table's Key, default "id"). A tenant rule copies the parent's
// TenantColumn (default the plan's tenant column of that table); an owner
// rule copies its OwnerColumn (default the plan's owner column of that
// table). Each rule sets only the field of its own list.
type ParentRule struct {
	Column       string `json:"column" yaml:"column"`
	Table        string `json:"table" yaml:"table"`
	Key          string `json:"key,omitempty" yaml:"key,omitempty"`
	TenantColumn string `json:"tenant_column,omitempty" yaml:"tenant_column,omitempty"`
	OwnerColumn  string `json:"owner_column,omitempty" yaml:"owner_column,omitempty"`
}

var identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)
var settingRE = regexp.MustCompile(`^[a-z_]+\.[a-z_]+$`)

// ErrPlan is wrapped by every error about the plan's content.
var ErrPlan = errors.New("invalid plan")

// Validate checks the plan's shape (not the database: see Check). A table
// still marked Decide is an error: nothing runs on a half-reviewed plan.
func (p *Plan) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if p.Version != 1 {
		bad("version %d: want 1", p.Version)
	}
	if !identRE.MatchString(p.Schema) {
		bad("schema %q is not a plain lower-case identifier", p.Schema)
	}
	if !settingRE.MatchString(p.TenantSetting) {
		bad("tenant_setting %q must look like prefix.name", p.TenantSetting)
	}
	if p.EntitySetting != "" && (!settingRE.MatchString(p.EntitySetting) || p.EntitySetting == p.TenantSetting) {
		bad("entity_setting %q must look like prefix.name and differ from tenant_setting", p.EntitySetting)
	}
	if !identRE.MatchString(p.Runtime.Name) {
		bad("runtime_role.name %q is not a plain lower-case identifier", p.Runtime.Name)
	}
	if _, ok := rls.CatalogType(p.tenantType()); !ok {
		bad("tenant_type %q: want one of %s", p.TenantType, strings.Join(rls.TenantTypes(), ", "))
	}
	seen := map[string]bool{}
	for _, t := range p.Tables {
		if seen[t.Name] {
			bad("table %s listed twice", t.Name)
		}
		seen[t.Name] = true
		if !identRE.MatchString(t.Name) {
			bad("table %q is not a plain lower-case identifier", t.Name)
			continue
		}
		if t.Decide {
			bad("table %s is marked decide: set kind (%s) and remove decide", t.Name, kindList)
			continue
		}
		switch t.Kind {
		case KindGlobal:
			continue
		case KindTenant:
			if t.OwnerColumn != "" {
				bad("table %s: owner_column is for kinds %s, %s and %s", t.Name, KindOwned, KindPrivate, KindRoom)
			}
		case KindOwned, KindPrivate, KindRoom:
			if !identRE.MatchString(t.OwnerColumn) {
				bad("table %s: kind %s needs owner_column, a plain lower-case identifier (got %q)", t.Name, t.Kind, t.OwnerColumn)
			}
			if !settingRE.MatchString(p.EntitySetting) {
				bad("table %s: kind %s needs the plan's entity_setting (like app.current_entity_id), got %q", t.Name, t.Kind, p.EntitySetting)
			}
			if p.tenantType() != "uuid" {
				bad("table %s: kind %s needs tenant_type uuid (the generator's entity kinds compare uuids), not %s", t.Name, t.Kind, p.tenantType())
			}
		default:
			bad("table %s: kind %q: want %s", t.Name, t.Kind, kindList)
			continue
		}
		if t.Kind == KindRoom {
			errs = append(errs, p.validateRoom(t)...)
		} else if t.RoomColumn != "" || t.Membership != nil {
			bad("table %s: room_column and membership are for kind %s", t.Name, KindRoom)
		}
		if !identRE.MatchString(t.TenantColumn) {
			bad("table %s: tenant_column %q is not a plain lower-case identifier", t.Name, t.TenantColumn)
		}
		if len(t.OwnerBackfill) > 0 && !t.entityKind() {
			bad("table %s: owner_backfill is for kinds %s, %s and %s", t.Name, KindOwned, KindPrivate, KindRoom)
		}
		names := map[string]bool{}
		for _, g := range []fillTarget{tenantTarget(t), ownerTarget(t)} {
			for _, r := range g.rules {
				if names[r.Name] {
					bad("table %s: rule name %s used twice (names are unique across backfill and owner_backfill)", t.Name, r.Name)
				}
				names[r.Name] = true
				if err := r.validate(g); err != nil {
					bad("table %s: %v", t.Name, err)
				} else if typ := g.planType(p); r.Constant != "" && !validTenant(typ, r.Constant) {
					bad("table %s: rule %s: constant %q is not a %s", t.Name, r.Name, r.Constant, typ)
				}
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrPlan, errors.Join(errs...))
	}
	return nil
}

// validateRoom checks a room table's room column and membership: the
// membership table must be another table of the plan, so that its tenant
// column is known and the runtime role gets SELECT on it by its own shadow
// step, isolated as tenant or owned: not room (policies reading each other
// could recurse), not private (its policies would hide from a member the
// membership rows another entity owns, and shadow, whose switch shows them,
// would then record less than strict mode refuses).
func (p *Plan) validateRoom(t Table) []error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if !identRE.MatchString(t.RoomColumn) {
		bad("table %s: kind %s needs room_column, a plain lower-case identifier (got %q)", t.Name, KindRoom, t.RoomColumn)
	}
	if len(memberFunction(t.Name)) > 63 {
		bad("table %s: kind %s takes a table name of at most %d characters (adopt names a function after it)", t.Name, KindRoom, 63-len(memberFunction("")))
	}
	m := t.Membership
	if m == nil {
		bad("table %s: kind %s needs membership: {table, room_column, entity_column}", t.Name, KindRoom)
		return errs
	}
	for what, v := range map[string]string{"table": m.Table, "room_column": m.RoomColumn, "entity_column": m.EntityColumn} {
		if !identRE.MatchString(v) {
			bad("table %s: membership %s %q is not a plain lower-case identifier", t.Name, what, v)
		}
	}
	mt, ok := p.Table(m.Table)
	switch {
	case m.Table == t.Name:
		bad("table %s: its membership table can't be itself", t.Name)
	case !ok:
		bad("table %s: membership table %s is not in the plan: add it (kind %s or %s)", t.Name, m.Table, KindTenant, KindOwned)
	case mt.Decide || !(mt.Kind == KindTenant || mt.Kind == KindOwned):
		bad("table %s: membership table %s must be isolated as %s or %s, not %q", t.Name, m.Table, KindTenant, KindOwned, mt.Kind)
	}
	return errs
}

// membershipOf is room table t's membership table in the plan.
func (p *Plan) membershipOf(t Table) (Table, bool) {
	if t.Kind != KindRoom || t.Membership == nil {
		return Table{}, false
	}
	return p.Table(t.Membership.Table)
}

// entitySetting is EntitySetting, or, for a plan without entity kinds, a
// setting of adopt's own that nothing sets (current_entity() is then NULL).
func (p *Plan) entitySetting() string {
	if p.EntitySetting == "" {
		return StateSchema + ".entity_id"
	}
	return p.EntitySetting
}

// tenantType is TenantType with its default.
func (p *Plan) tenantType() string {
	if p.TenantType == "" {
		return "uuid"
	}
	return p.TenantType
}

// catalogType is the tenant type's name in pg_catalog (the plan is valid).
func (p *Plan) catalogType() string {
	name, _ := rls.CatalogType(p.tenantType())
	return name
}

// validTenant reports whether v is a value of the tenant type typ, as
// PostgreSQL's input function for it would take it.
func validTenant(typ, v string) bool {
	switch typ {
	case "uuid":
		_, err := uuid.Parse(v)
		return err == nil && len(v) == 36
	case "bigint":
		_, err := strconv.ParseInt(v, 10, 64)
		return err == nil
	case "integer":
		_, err := strconv.ParseInt(v, 10, 32)
		return err == nil
	}
	return !strings.ContainsRune(v, 0) // text: anything PostgreSQL can store
}

func (r Rule) validate(g fillTarget) error {
	if !identRE.MatchString(r.Name) {
		return fmt.Errorf("rule name %q is not a plain lower-case identifier", r.Name)
	}
	n := 0
	if r.Constant != "" {
		n++
	}
	if r.Parent != nil {
		n++
		for what, v := range map[string]string{"column": r.Parent.Column, "table": r.Parent.Table} {
			if !identRE.MatchString(v) {
				return fmt.Errorf("rule %s: parent %s %q is not a plain identifier", r.Name, what, v)
			}
		}
		for what, v := range map[string]string{"key": r.Parent.Key, "tenant_column": r.Parent.TenantColumn, "owner_column": r.Parent.OwnerColumn} {
			if v != "" && !identRE.MatchString(v) {
				return fmt.Errorf("rule %s: parent %s %q is not a plain identifier", r.Name, what, v)
			}
		}
		if g.owner && r.Parent.TenantColumn != "" {
			return fmt.Errorf("rule %s: an owner rule copies the parent's owner_column, not its tenant_column", r.Name)
		}
		if !g.owner && r.Parent.OwnerColumn != "" {
			return fmt.Errorf("rule %s: a tenant rule copies the parent's tenant_column, not its owner_column", r.Name)
		}
	}
	if r.Expression != "" {
		n++
	}
	if n != 1 {
		return fmt.Errorf("rule %s: set exactly one of constant, parent, expression", r.Name)
	}
	return nil
}

// TenantTables returns the tables adopt isolates: every kind but global.
func (p *Plan) TenantTables() []Table {
	var out []Table
	for _, t := range p.Tables {
		if t.isolated() {
			out = append(out, t)
		}
	}
	return out
}

// Table returns the plan's table called name.
func (p *Plan) Table(name string) (Table, bool) {
	for _, t := range p.Tables {
		if t.Name == name {
			return t, true
		}
	}
	return Table{}, false
}

// Load reads a plan file, YAML or JSON by extension (.json is JSON,
// anything else YAML), and validates it. Unknown fields are errors.
func Load(path string) (*Plan, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read plan: %w", err)
	}
	p := &Plan{}
	if strings.EqualFold(filepath.Ext(path), ".json") {
		d := json.NewDecoder(bytes.NewReader(b))
		d.DisallowUnknownFields()
		err = d.Decode(p)
	} else {
		d := yaml.NewDecoder(bytes.NewReader(b))
		d.KnownFields(true)
		err = d.Decode(p)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: parse %s: %w", ErrPlan, path, err)
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("plan %s: %w", path, err)
	}
	return p, nil
}

// Encode writes the plan as JSON (json true) or as YAML with comments that
// explain each field to the reviewer.
func (p *Plan) Encode(json_ bool) ([]byte, error) {
	if json_ {
		b, err := json.MarshalIndent(p, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("encode plan: %w", err)
		}
		return append(b, '\n'), nil
	}
	var n yaml.Node
	if err := n.Encode(p); err != nil {
		return nil, fmt.Errorf("encode plan: %w", err)
	}
	comment(&n, "version", "bulkhead adopt plan: review every table, then run backfill, shadow, enforce.")
	comment(&n, "schema", "the application's schema")
	comment(&n, "tenant_setting", "the transaction-local setting the application puts the tenant in")
	comment(&n, "tenant_type", "the SQL type of every tenant column and of the setting's value: uuid, text, bigint or integer.\nA setting that is not one fails the statement (no rows, no write), in shadow mode too.")
	comment(&n, "runtime_role", "the role the application must connect as once enforced: it owns nothing and bypasses nothing.\nRLS does not apply to a table's owner unless FORCE is on; adopt forces it, but an owner can\nturn it off again: switch the application's connection to this role (ALTER ROLE ... LOGIN PASSWORD ...).")
	comment(&n, "entity_setting", "the transaction-local setting the application puts the acting entity (a uuid) in;\ntables of kind owned, private or room compare their owner_column with it")
	comment(&n, "tables", "kind: tenant (isolated by tenant_column), owned (tenant, and only the entity in owner_column writes a row),\nprivate (tenant, and only the entity in owner_column reads or writes a row),\nroom (tenant, and only members of the row's room_column read it, through membership: {table, room_column, entity_column},\nanother table of the plan; only its author, owner_column, writes it, as a member) or global (shared, untouched).\ndecide: true marks a table adopt could not classify: choose a kind and delete the line.\nbackfill rules fill a NULL tenant column: constant, parent (through a key) or expression (SQL over t);\nowner_backfill rules (owned, private, room) fill a NULL owner_column the same way, once the tenants are filled.")
	var buf bytes.Buffer
	e := yaml.NewEncoder(&buf)
	e.SetIndent(2)
	if err := e.Encode(&n); err != nil {
		return nil, fmt.Errorf("encode plan: %w", err)
	}
	return buf.Bytes(), nil
}

// comment sets the head comment of a top-level key of a document node.
func comment(doc *yaml.Node, key, text string) {
	m := doc
	if m.Kind == yaml.DocumentNode && len(m.Content) > 0 {
		m = m.Content[0]
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i].HeadComment = text
		}
	}
}
