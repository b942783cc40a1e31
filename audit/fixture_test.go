package audit

import (
	"context"
	_ "embed"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/google/go-cmp/cmp"
)

//go:embed testdata/fixture.sql
var fixtureSQL string

// fixtureRoles are cluster-wide, created once per test binary.
const fixtureRoles = `
DO $$
DECLARE r text[];
BEGIN
  FOREACH r SLICE 1 IN ARRAY ARRAY[
    ['fx_owner', 'NOLOGIN'], ['fx_app', 'LOGIN PASSWORD ''fx'' NOINHERIT CREATEROLE'], ['fx_shared', 'NOLOGIN'],
    ['fx_bypass', 'NOLOGIN BYPASSRLS'], ['fx_other', 'LOGIN PASSWORD ''fx'''], ['fx_super', 'LOGIN SUPERUSER PASSWORD ''fx'''],
    ['fx_byp', 'LOGIN BYPASSRLS PASSWORD ''fx'''], ['fx_reader', 'LOGIN PASSWORD ''fx''']]
  LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r[1]) THEN
      EXECUTE format('CREATE ROLE %I %s', r[1], r[2]);
    END IF;
  END LOOP;
END $$;
GRANT fx_shared, fx_bypass TO fx_app;`

var (
	rolesOnce sync.Once
	rolesErr  error
	fxCount   atomic.Int64
)

// newDatabase creates an empty database owned by the superuser, dropped
// when t ends, and returns its name.
func newDatabase(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	admin := testdb.MustConnect(t, testdb.Cluster().SuperuserDSN("postgres"))
	name := fmt.Sprintf("fx%d_%d", os.Getpid(), fxCount.Add(1))
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE template0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c := testdb.MustConnect(t, testdb.Cluster().SuperuserDSN("postgres"))
		c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return name
}

// fixture builds the fixture schema in a new database and returns its name.
func fixture(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	rolesOnce.Do(func() {
		admin, err := pgxConnect(testdb.Cluster().SuperuserDSN("postgres"))
		if err != nil {
			rolesErr = err
			return
		}
		defer admin.Close(ctx)
		if _, err = admin.Exec(ctx, fixtureRoles); err != nil {
			rolesErr = err
			return
		}
		// BH803: a context setting in the server's configuration
		// (ALTER SYSTEM refuses placeholders, the configuration file
		// doesn't): postgresql.auto.conf gets one more line.
		if _, err = admin.Exec(ctx, setRegionSQL); err != nil {
			rolesErr = err
			return
		}
		if _, err = admin.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
			rolesErr = err
			return
		}
		for i := 0; i < 50; i++ {
			var src string
			c, err := pgxConnect(testdb.Cluster().SuperuserDSN("postgres"))
			if err == nil {
				c.QueryRow(ctx, "SELECT coalesce(current_setting('app.region', true), '')").Scan(&src)
				c.Close(ctx)
			}
			if src == "eu" {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		rolesErr = fmt.Errorf("app.region never reached the configuration")
	})
	if rolesErr != nil {
		t.Fatal(rolesErr)
	}
	name := newDatabase(t)
	conn := testdb.MustConnect(t, testdb.Cluster().SuperuserDSN(name))
	if _, err := conn.Exec(ctx, fixtureSQL); err != nil {
		t.Fatalf("fixture: %v", err)
	}
	return name
}

// fixtureExpect is, for every check, exactly the objects it must find in
// the fixture (audited with runtime role fx_app). A check absent from the
// map must find nothing there.
var fixtureExpect = map[string][]string{
	"BH101": {"table app.no_rls", "table Mixed Schema.Tenant Docs"},
	"BH102": {"table app.not_forced"},
	"BH103": {"table app.runtime_owned_unforced"},
	"BH104": {"table app.no_policy"},
	"BH105": {"table app.policy_off"},
	"BH106": {"table app.events_b"},
	"BH107": {"table app.no_policy", "table app.restrictive_only"},
	"BH108": {"table app.restrictive_only"},
	"BH109": {"table app.nullable_tenant"},
	"BH110": {"policy app.always_true.open", "policy app.entity_permissive.owner_sees"},
	"BH201": {"policy app.always_true.open"},
	"BH202": {"policy app.always_true.open", "policy app.write_any.ins_any"},
	"BH203": {"table app.entity_permissive", "table app.write_any"},
	"BH204": {"policy app.per_row.tenant_isolation"},
	"BH205": {"policy app.volatile_pol.tenant_isolation"},
	"BH206": {"policy app.no_missing_ok.tenant_isolation"},
	"BH207": {"policy app.cast_direct.tenant_isolation"},
	"BH208": {"policy app.messages.member"},
	"BH209": {"policy app.admin_bypass.tenant_or_admin", "policy app.messages.member"},
	"BH210": {"policy app.in_sub.member"},
	"BH211": {"policy app.fail_open.tenant_isolation"},
	"BH303": {"table app.runtime_owned", "table app.runtime_owned_unforced"},
	"BH304": {"table app.shared_owned"},
	"BH305": {"role fx_bypass"},
	"BH306": {"role fx_app"},
	"BH307": {"function app.app_owned_fn()", "relation app.app_notes"},
	"BH308": {"table app.super_owned"},
	"BH401": {"table app.runtime_owned", "table app.runtime_owned_unforced", "table app.truncatable"},
	"BH402": {"table app.runtime_owned", "table app.runtime_owned_unforced", "table app.triggerable"},
	"BH403": {"table app.referenceable", "table app.runtime_owned", "table app.runtime_owned_unforced"},
	"BH404": {"table app.public_read"},
	"BH405": {"schema scratch"},
	"BH406": {"table app.regrant"},
	"BH407": {"table app.serial_ids"},
	"BH501": {"function app.helper_pinned()"},
	"BH502": {"function app.member_rooms_unq()"},
	"BH503": {"function app.definer_nopath()"},
	"BH504": {"function app.member_rooms_unq()"},
	"BH505": {"function app.definer_public()"},
	"BH506": {"function app.messages_for(user_id uuid)"},
	"BH507": {"function app.leaky_eq(a text, b text)"},
	"BH508": {"function app.set_role_session()", "function app.set_tenant_session(t uuid)"},
	"BH509": {"function app.definer_bypass()"},
	"BH601": {"view app.all_docs"},
	"BH602": {"view app.mv_good"},
	"BH603": {"rule app.ruled.copy_ins"},
	"BH604": {"trigger app.trig_foreign.capture"},
	"BH605": {"trigger app.notified.notify_change"},
	"BH606": {"publication app.published.fx_pub"},
	"BH607": {"foreign table app.remote"},
	"BH701": {"index app.global_ids.global_ids_pkey", "index app.unique_email.unique_email_email_key"},
	"BH702": {"constraint app.fk_no_tenant.fk_no_tenant_ref_fkey"},
	"BH703": {"table app.global_ids", "table app.unindexed"},
	"BH704": {"index app.searchable.searchable_gin"},
	"BH705": {"table app.nullable_tenant"},
	"BH801": {"setting app.tenant_id@database=%DB%"},
	"BH802": {"setting app.entity_id", "setting app.region", "setting app.tenant_id"},
	"BH803": {"setting app.region"},
}

func found(rep *Report) map[string][]string {
	got := map[string][]string{}
	for _, f := range rep.Findings {
		got[f.Check] = append(got[f.Check], f.Object.Kind+" "+f.Object.String())
	}
	for _, v := range got {
		sort.Strings(v)
	}
	return got
}

// TestEveryCheckFiresOnItsFixture: on the fixture every check finds
// exactly its objects (and the near misses next to them stay silent); on
// bulkhead's own database (TestBulkheadIsClean) every check stays silent.
func TestEveryCheckFiresOnItsFixture(t *testing.T) {
	db := fixture(t)
	rep := mustAudit(t, testdb.Cluster().SuperuserDSN(db), Options{RuntimeRole: "fx_app"})
	if len(rep.Skipped) != 0 {
		t.Errorf("skipped: %+v", rep.Skipped)
	}
	got := found(rep)
	for _, c := range Checks {
		t.Run(c.ID+"_"+c.Name, func(t *testing.T) {
			var want []string
			for _, w := range fixtureExpect[c.ID] {
				if w == "setting app.tenant_id@database=%DB%" {
					w = "setting app.tenant_id@database=" + db
				}
				want = append(want, w)
			}
			sort.Strings(want)
			if diff := cmp.Diff(want, got[c.ID]); diff != "" {
				t.Errorf("%s objects (-want +got):\n%s", c.ID, diff)
			}
		})
	}
	for _, f := range rep.Findings {
		if f.Check == "BH208" && !strings.Contains(f.Detail, "(p.room_id = p.room_id)") {
			t.Errorf("BH208 does not name the captured column: %s", f.Detail)
		}
		if f.Check == "BH101" && f.Object.Schema == "Mixed Schema" && !strings.Contains(f.Fix, `ALTER TABLE "Mixed Schema"."Tenant Docs" ENABLE`) {
			t.Errorf("mixed-case names are not quoted in the fix: %s", f.Fix)
		}
	}
	fired := 0
	for _, c := range Checks {
		if len(got[c.ID]) > 0 {
			fired++
		}
	}
	t.Logf("%d of %d checks fired on the fixture (the CVE checks are tested by TestCVEChecks)", fired, len(Checks))
	if t.Failed() {
		t.Log(text(rep))
	}
}

const setRegionSQL = `DO $$
DECLARE lines text[];
BEGIN
  IF pg_catalog.pg_read_file('postgresql.auto.conf') NOT LIKE '%app.region%' THEN
    lines := string_to_array(rtrim(pg_catalog.pg_read_file('postgresql.auto.conf'), E'\n'), E'\n') || ARRAY['app.region = ''eu'''];
    EXECUTE format('COPY (SELECT unnest(%L::text[])) TO %L', lines, current_setting('data_directory') || '/postgresql.auto.conf');
  END IF;
END $$`
