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

// TestNativeMembership: with NativeMembership, member_rooms is an
// invoker SQL call to the C function, its PL/pgSQL body becomes the
// definer member_rooms_delegated, the allow-list and the self-check's
// bodies follow, and Remove drops both; without it, nothing of that.
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
	} {
		if !strings.Contains(sql, want) {
			t.Errorf("native: missing %q", want)
		}
	}
	if strings.Contains(sql, "FUNCTION bulkhead.member_rooms(scope text) RETURNS uuid[]\n  LANGUAGE plpgsql") {
		t.Error("native: member_rooms is still the PL/pgSQL definer")
	}
	defs := native.DefinerFunctions()
	if slices.Contains(defs, "member_rooms") || !slices.Contains(defs, "member_rooms_delegated") {
		t.Errorf("native allow-list %v: want member_rooms_delegated, not member_rooms", defs)
	}
	bodies := rls.FunctionBodies(native)
	if bodies["member_rooms_native(text)"] != "bulkhead_member_rooms_native" || !strings.Contains(bodies["member_rooms(text)"], "member_rooms_native(scope)") {
		t.Errorf("native bodies: member_rooms %q, member_rooms_native %q", bodies["member_rooms(text)"], bodies["member_rooms_native(text)"])
	}
	down, err := rls.Remove(native, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"DROP FUNCTION IF EXISTS bulkhead.member_rooms_delegated(text)", "DROP FUNCTION IF EXISTS bulkhead.member_rooms(text)"} {
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
	if strings.Contains(sql, "member_rooms_native") || strings.Contains(sql, "member_rooms_delegated") {
		t.Error("without NativeMembership the C function or the delegated helper appears")
	}
	if defs := plain.DefinerFunctions(); !slices.Contains(defs, "member_rooms") || slices.Contains(defs, "member_rooms_delegated") {
		t.Errorf("plain allow-list %v: want member_rooms, not member_rooms_delegated", defs)
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
