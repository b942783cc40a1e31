package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/google/go-cmp/cmp"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// TestCVEChecks: each CVE check fires on the last affected minor release
// of an affected branch and stays silent on the fixed one (the version is
// the server's, overridden: the test server is patched).
func TestCVEChecks(t *testing.T) {
	db := newDatabase(t)
	cases := map[string][2]int{ // check -> {affected, fixed}
		"BH901": {110002, 110003},
		"BH902": {150002, 150003},
		"BH903": {150003, 150004},
		"BH904": {150006, 150007},
		"BH905": {160004, 160005},
		"BH906": {170000, 170001},
		"BH907": {150013, 150014},
	}
	if len(cases) != len(cves) {
		t.Fatalf("%d CVE cases for %d CVE checks", len(cases), len(cves))
	}
	for id, v := range cases {
		t.Run(id, func(t *testing.T) {
			for i, num := range v {
				rep := mustAudit(t, testdb.Cluster().SuperuserDSN(db), Options{serverVersion: num})
				fired := found(rep)[id]
				if (i == 0) != (len(fired) == 1) {
					t.Errorf("server %d: %s found %v", num, id, fired)
				}
			}
		})
	}
	// And the real server (15.18 here) is affected by none.
	rep := mustAudit(t, testdb.Cluster().SuperuserDSN(db), Options{})
	for id := range cases {
		if f := found(rep)[id]; len(f) > 0 {
			t.Errorf("%s fired on this server: %v", id, f)
		}
	}
}

func TestRuntimeRoleSuperuserOrBypassRLS(t *testing.T) {
	fixture(t) // roles
	db := newDatabase(t)
	for role, check := range map[string]string{"fx_super": "BH301", "fx_byp": "BH302"} {
		rep := mustAudit(t, testdb.Cluster().SuperuserDSN(db), Options{RuntimeRole: role})
		if diff := cmp.Diff([]string{"role " + role}, found(rep)[check]); diff != "" {
			t.Errorf("%s with runtime role %s (-want +got):\n%s", check, role, diff)
		}
	}
}

// TestBadInput: clear errors or notes, never a panic, never a write.
func TestBadInput(t *testing.T) {
	ctx := context.Background()
	fixture(t)
	t.Run("unknown runtime role", func(t *testing.T) {
		conn := testdb.MustConnect(t, testdb.Cluster().SuperuserDSN("postgres"))
		_, err := Run(ctx, conn, Options{RuntimeRole: "No_Such_Role"})
		if err == nil || !strings.Contains(err.Error(), `runtime role "No_Such_Role" does not exist`) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("exclude", func(t *testing.T) {
		db := fixture(t)
		rep := mustAudit(t, testdb.Cluster().SuperuserDSN(db), Options{RuntimeRole: "fx_app", Exclude: []string{"BH802", "BH208"}})
		got := found(rep)
		if len(got["BH802"]) > 0 || len(got["BH208"]) > 0 || len(got["BH801"]) == 0 || len(rep.Skipped) != 2 || rep.Incomplete() {
			t.Errorf("excluded checks ran or the audit is incomplete: %+v", rep.Skipped)
		}
		conn := testdb.MustConnect(t, testdb.Cluster().SuperuserDSN(db))
		if _, err := Run(ctx, conn, Options{Exclude: []string{"BH999"}}); err == nil || !strings.Contains(err.Error(), "BH999: no such check") {
			t.Errorf("unknown id: %v", err)
		}
	})
	t.Run("no runtime role", func(t *testing.T) {
		rep := mustAudit(t, testdb.Cluster().SuperuserDSN(newDatabase(t)), Options{})
		n := 0
		for _, c := range Checks {
			if c.Runtime {
				n++
			}
		}
		if len(rep.Skipped) != n || rep.Incomplete() {
			t.Errorf("skipped %d (incomplete %v), want the %d runtime checks, not incomplete: %+v", len(rep.Skipped), rep.Incomplete(), n, rep.Skipped)
		}
	})
	t.Run("no tenant column", func(t *testing.T) {
		db := newDatabase(t)
		admin := testdb.MustConnect(t, testdb.Cluster().SuperuserDSN(db))
		if _, err := admin.Exec(ctx, `CREATE TABLE plain (id int PRIMARY KEY)`); err != nil {
			t.Fatal(err)
		}
		rep := mustAudit(t, testdb.Cluster().SuperuserDSN(db), Options{TenantColumn: "org_id"})
		if len(rep.TenantTables) != 0 || len(rep.Findings) != 0 || !strings.Contains(strings.Join(rep.Notes, "\n"), `no table has a column named "org_id"`) {
			t.Errorf("report: %+v", rep)
		}
	})
	t.Run("role without catalog access", func(t *testing.T) {
		db := newDatabase(t)
		admin := testdb.MustConnect(t, testdb.Cluster().SuperuserDSN(db))
		if _, err := admin.Exec(ctx, `REVOKE SELECT ON pg_catalog.pg_policy FROM PUBLIC; REVOKE SELECT ON pg_catalog.pg_trigger FROM PUBLIC`); err != nil {
			t.Fatal(err)
		}
		rep := mustAudit(t, testdb.Cluster().DSN("fx_reader", "fx", db), Options{RuntimeRole: "fx_app"})
		if !rep.Incomplete() {
			t.Fatalf("not incomplete: %+v", rep.Skipped)
		}
		skipped := map[string]bool{}
		for _, s := range rep.Skipped {
			skipped[s.Check] = true
			if !s.Privilege || !strings.Contains(s.Reason, "permission denied") {
				t.Errorf("%s: %s", s.Check, s.Reason)
			}
		}
		for _, id := range []string{"BH104", "BH201", "BH208", "BH604", "BH605"} {
			if !skipped[id] {
				t.Errorf("%s ran without pg_policy/pg_trigger", id)
			}
		}
		if skipped["BH301"] || skipped["BH503"] {
			t.Errorf("checks that need neither were skipped")
		}
	})
	t.Run("never writes", func(t *testing.T) {
		db := fixture(t)
		admin := testdb.MustConnect(t, testdb.Cluster().SuperuserDSN(db))
		sum := func() string {
			var s string
			err := admin.QueryRow(ctx, `SELECT md5(concat(
				(SELECT string_agg(c.oid || c.relname || c.relowner || c.relrowsecurity || c.relforcerowsecurity || coalesce(c.relacl::text, ''), ',' ORDER BY c.oid) FROM pg_class c),
				(SELECT string_agg(p.oid || p.polname || coalesce(p.polqual::text, ''), ',' ORDER BY p.oid) FROM pg_policy p),
				(SELECT string_agg(f.oid || f.proname || f.prosrc || coalesce(f.proacl::text, ''), ',' ORDER BY f.oid) FROM pg_proc f),
				(SELECT string_agg(r.rolname || r.rolsuper || r.rolbypassrls, ',' ORDER BY r.oid) FROM pg_roles r)))`).Scan(&s)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		before := sum()
		mustAudit(t, testdb.Cluster().SuperuserDSN(db), Options{RuntimeRole: "fx_app"})
		if after := sum(); after != before {
			t.Error("the catalog changed during the audit")
		}
	})
}

// TestSARIF: the SARIF log validates against the official SARIF 2.1.0
// schema (testdata/sarif-schema-2.1.0.json, from the OASIS sarif-spec
// repository), names the migration line that created each object when
// --migrations is given, and keeps its fingerprints from run to run.
func TestSARIF(t *testing.T) {
	db := fixture(t)
	opts := Options{RuntimeRole: "fx_app", Migrations: "testdata"}
	rep := mustAudit(t, testdb.Cluster().SuperuserDSN(db), opts)
	var buf bytes.Buffer
	if err := WriteSARIF(&buf, rep, "test"); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("testdata/sarif-schema-2.1.0.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	schemaDoc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("sarif-schema-2.1.0.json", schemaDoc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("sarif-schema-2.1.0.json")
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(inst); err != nil {
		t.Fatalf("SARIF does not validate: %v", err)
	}
	// A broken log must not validate (the validator is live).
	var broken map[string]any
	json.Unmarshal(buf.Bytes(), &broken)
	broken["version"] = "2.0.0"
	bb, _ := json.Marshal(broken)
	binst, _ := jsonschema.UnmarshalJSON(bytes.NewReader(bb))
	if sch.Validate(binst) == nil {
		t.Error("a log with version 2.0.0 validated")
	}

	var log struct {
		Runs []struct {
			Tool struct {
				Driver struct {
					Rules []struct {
						ID         string         `json:"id"`
						Properties map[string]any `json:"properties"`
					} `json:"rules"`
				} `json:"driver"`
			} `json:"tool"`
			Results []struct {
				RuleID    string `json:"ruleId"`
				Locations []struct {
					Physical struct {
						Artifact struct {
							URI string `json:"uri"`
						} `json:"artifactLocation"`
						Region struct {
							StartLine int `json:"startLine"`
						} `json:"region"`
					} `json:"physicalLocation"`
					Logical []struct {
						FQN string `json:"fullyQualifiedName"`
					} `json:"logicalLocations"`
				} `json:"locations"`
				Fingerprints map[string]string `json:"partialFingerprints"`
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal(buf.Bytes(), &log); err != nil {
		t.Fatal(err)
	}
	run := log.Runs[0]
	if len(run.Tool.Driver.Rules) != len(Checks) {
		t.Errorf("%d rules for %d checks", len(run.Tool.Driver.Rules), len(Checks))
	}
	for _, r := range run.Tool.Driver.Rules {
		if s, _ := r.Properties["security-severity"].(string); s == "" {
			t.Errorf("rule %s has no security-severity", r.ID)
		}
	}
	lines := strings.Split(fixtureSQL, "\n")
	seen := map[string]bool{}
	located := 0
	for _, res := range run.Results {
		loc := res.Locations[0]
		fp := res.Fingerprints["bulkheadAudit/v1"]
		if fp == "" || seen[fp] {
			t.Errorf("%s %s: fingerprint %q missing or repeated", res.RuleID, loc.Logical[0].FQN, fp)
		}
		seen[fp] = true
		if res.RuleID == "BH208" {
			if loc.Logical[0].FQN != "app.messages.member" || loc.Physical.Artifact.URI != "testdata/fixture.sql" ||
				!strings.HasPrefix(lines[loc.Physical.Region.StartLine-1], "CREATE POLICY member ON app.messages USING") {
				t.Errorf("BH208 located at %+v", loc)
			}
		}
		if loc.Physical.Artifact.URI == "testdata/fixture.sql" {
			located++
		}
	}
	if located < len(run.Results)*3/4 {
		t.Errorf("only %d of %d results located in the fixture", located, len(run.Results))
	}
	// Stable fingerprints: a second run gives the same set.
	rep2 := mustAudit(t, testdb.Cluster().SuperuserDSN(db), opts)
	for _, f := range rep2.Findings {
		if !seen[Fingerprint(f)] {
			t.Errorf("fingerprint of %s %s changed", f.Check, f.Object)
		}
	}
}

// TestCVE20244317UnfixedCatalog: on fixed binaries, a database whose
// pg_stats_ext still has the old definition (a cluster initialised before
// the fix, without fix-CVE-2024-4317.sql) is still affected: BH904 fires
// there and nowhere else.
func TestCVE20244317UnfixedCatalog(t *testing.T) {
	ctx := context.Background()
	db := newDatabase(t)
	admin := testdb.MustConnect(t, testdb.Cluster().SuperuserDSN(db))
	for _, v := range []string{"pg_stats_ext", "pg_stats_ext_exprs"} {
		var def string
		if err := admin.QueryRow(ctx, "SELECT pg_get_viewdef($1::regclass)", "pg_catalog."+v).Scan(&def); err != nil {
			t.Fatal(err)
		}
		old := strings.Replace(def, "pg_has_role(c.relowner, 'USAGE'::text) AND", "", 1)
		if old == def {
			t.Fatalf("%s: no owner filter to remove in %s", v, def)
		}
		if _, err := admin.Exec(ctx, "SET allow_system_table_mods = on; CREATE OR REPLACE VIEW pg_catalog."+v+" AS "+old); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff([]string{"server PostgreSQL " + mustAudit(t, testdb.Cluster().SuperuserDSN(db), Options{}).Server}, found(mustAudit(t, testdb.Cluster().SuperuserDSN(db), Options{}))["BH904"]); diff != "" {
		t.Errorf("BH904 on an unfixed catalog (-want +got):\n%s", diff)
	}
	if f := found(mustAudit(t, testdb.Cluster().SuperuserDSN(newDatabase(t)), Options{}))["BH904"]; len(f) > 0 {
		t.Errorf("BH904 on a fixed catalog: %v", f)
	}
}
