package rls_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/bulkhead-dev/bulkhead/rls"
)

var native = rls.Config{
	Schema: "bulkhead", Runtime: "rt", Maintenance: "maint", Owner: "owner", Definer: "definer",
	TenantSetting: "bulkhead.tenant_id", EntitySetting: "bulkhead.entity_id", ActingForSetting: "bulkhead.acting_for",
	NativeMembership: true,
}

// TestNativeMembership: with NativeMembership, member_rooms and
// can_author are invoker SQL calls to the C functions, their PL/pgSQL
// bodies become the definers member_rooms_delegated and
// can_author_delegated, the allow-list and the self-check's bodies follow,
// and Remove drops all four; without it, nothing of that.
func TestNativeMembership(t *testing.T) {
	stmts, err := rls.Generate(native, nil)
	if err != nil {
		t.Fatal(err)
	}
	sql := strings.Join(stmts, ";\n")
	for _, want := range []string{
		"CREATE OR REPLACE FUNCTION bulkhead.member_rooms_delegated(scope text) RETURNS uuid[]\n  LANGUAGE plpgsql STABLE SECURITY DEFINER",
		"ALTER FUNCTION bulkhead.member_rooms_delegated(text) OWNER TO definer",
		"AS $fn$ SELECT bulkhead.member_rooms_native(scope) $fn$",
		"ALTER FUNCTION bulkhead.member_rooms(text) OWNER TO owner",
		"GRANT EXECUTE ON FUNCTION bulkhead.member_rooms(text) TO rt, maint, owner, definer",
		"GRANT EXECUTE ON FUNCTION bulkhead.member_rooms_delegated(text) TO rt, maint, owner, definer",
		"CREATE OR REPLACE FUNCTION bulkhead.can_author_delegated(room uuid, author uuid, scope text) RETURNS boolean\n  LANGUAGE plpgsql STABLE SECURITY DEFINER",
		"ALTER FUNCTION bulkhead.can_author_delegated(uuid, uuid, text) OWNER TO definer",
		"AS $fn$ SELECT bulkhead.can_author_native(room, author, scope) $fn$",
		"ALTER FUNCTION bulkhead.can_author(uuid, uuid, text) OWNER TO owner",
		"GRANT EXECUTE ON FUNCTION bulkhead.can_author(uuid, uuid, text) TO rt, maint, owner, definer",
		"GRANT EXECUTE ON FUNCTION bulkhead.can_author_delegated(uuid, uuid, text) TO rt, maint, owner, definer",
	} {
		if !strings.Contains(sql, want) {
			t.Errorf("native: missing %q", want)
		}
	}
	if strings.Contains(sql, "FUNCTION bulkhead.member_rooms(scope text) RETURNS uuid[]\n  LANGUAGE plpgsql") {
		t.Error("native: member_rooms is still the PL/pgSQL definer")
	}
	if strings.Contains(sql, "FUNCTION bulkhead.can_author(room uuid, author uuid, scope text) RETURNS boolean\n  LANGUAGE plpgsql") {
		t.Error("native: can_author is still the PL/pgSQL definer")
	}
	defs := native.DefinerFunctions()
	for _, n := range []string{"member_rooms", "can_author"} {
		if slices.Contains(defs, n) || !slices.Contains(defs, n+"_delegated") {
			t.Errorf("native allow-list %v: want %s_delegated, not %[2]s", defs, n)
		}
	}
	bodies := rls.FunctionBodies(native)
	if bodies["member_rooms_native(text)"] != "bulkhead_member_rooms_native" || !strings.Contains(bodies["member_rooms(text)"], "member_rooms_native(scope)") {
		t.Errorf("native bodies: member_rooms %q, member_rooms_native %q", bodies["member_rooms(text)"], bodies["member_rooms_native(text)"])
	}
	if bodies["can_author_native(uuid,uuid,text)"] != "bulkhead_can_author_native" || !strings.Contains(bodies["can_author(uuid,uuid,text)"], "can_author_native(room, author, scope)") ||
		!strings.Contains(bodies["can_author_delegated(uuid,uuid,text)"], "current_actors(scope)") {
		t.Errorf("native bodies: can_author %q, can_author_native %q, can_author_delegated %q", bodies["can_author(uuid,uuid,text)"], bodies["can_author_native(uuid,uuid,text)"], bodies["can_author_delegated(uuid,uuid,text)"])
	}
	down, err := rls.Remove(native, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"DROP FUNCTION IF EXISTS bulkhead.member_rooms_delegated(text)", "DROP FUNCTION IF EXISTS bulkhead.member_rooms(text)",
		"DROP FUNCTION IF EXISTS bulkhead.can_author_delegated(uuid, uuid, text)", "DROP FUNCTION IF EXISTS bulkhead.can_author(uuid, uuid, text)"} {
		if !slices.Contains(down, want) {
			t.Errorf("native Remove: missing %q", want)
		}
	}

	plain := native
	plain.NativeMembership = false
	stmts, err = rls.Generate(plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	sql = strings.Join(stmts, ";\n")
	if strings.Contains(sql, "_native") || strings.Contains(sql, "_delegated") {
		t.Error("without NativeMembership the C function or the delegated helper appears")
	}
	if defs := plain.DefinerFunctions(); !slices.Contains(defs, "member_rooms") || slices.Contains(defs, "member_rooms_delegated") ||
		!slices.Contains(defs, "can_author") || slices.Contains(defs, "can_author_delegated") {
		t.Errorf("plain allow-list %v: want member_rooms and can_author, not their _delegated", defs)
	}
	if _, ok := rls.FunctionBodies(plain)["can_author_native(uuid,uuid,text)"]; ok {
		t.Error("plain bodies name can_author's C function")
	}
	if _, ok := rls.FunctionBodies(plain)["member_rooms_native(text)"]; ok {
		t.Error("plain bodies name the C function")
	}
}

// TestNativeMembershipNeedsTheExtensionsNames: the C function reads the
// bulkhead schema's participants and the bulkhead.* settings, so any
// other schema or setting is refused.
func TestNativeMembershipNeedsTheExtensionsNames(t *testing.T) {
	for name, change := range map[string]func(*rls.Config){
		"schema":     func(c *rls.Config) { c.Schema = "app" },
		"tenant":     func(c *rls.Config) { c.TenantSetting = "app.tenant_id" },
		"entity":     func(c *rls.Config) { c.EntitySetting = "app.entity_id" },
		"acting for": func(c *rls.Config) { c.ActingForSetting = "app.acting_for" },
	} {
		c := native
		change(&c)
		if _, err := rls.Generate(c, nil); err == nil || !strings.Contains(err.Error(), "NativeMembership") {
			t.Errorf("%s changed: %v, want NativeMembership refused", name, err)
		}
		c.NativeMembership = false
		if _, err := rls.Generate(c, nil); err != nil {
			t.Errorf("%s changed without NativeMembership: %v", name, err)
		}
	}
}
