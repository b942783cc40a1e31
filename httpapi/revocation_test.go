package httpapi_test

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/auth"
	"github.com/bulkhead-dev/bulkhead/httpapi"
	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/token"
	"github.com/coder/websocket"
	"github.com/google/uuid"
)

// accessEnv is a server with bulkhead's own accounts, tokens, API keys and
// the control plane, as serve runs it.
type accessEnv struct {
	*api
	accts  *auth.Accounts
	db     *postgres.DB
	d      *testdb.Database
	signer *token.Signer
	op     string
	t1, t2 string // tenant ids
}

func newAccessEnv(t *testing.T) *accessEnv {
	t.Helper()
	d := testdb.New(t)
	demo, err := postgres.SeedDemo(bulkhead.AsMaintenance(context.Background(), "test"), d.DB, "")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := token.LoadOrCreate(filepath.Join(t.TempDir(), "key.json"), "bulkhead")
	if err != nil {
		t.Fatal(err)
	}
	pepper := make([]byte, 32)
	rand.Read(pepper)
	accts, err := auth.NewAccounts(d.DB, signer, auth.NewHasher(2), pepper)
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(context.Background(), []auth.IssuerConfig{{Issuer: "bulkhead", JWKS: signer.JWKS(), Algorithms: []string{"EdDSA"}, Audience: token.Audience, TenantClaim: token.TenantClaim}}, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	op := "operator-" + uuid.NewString()
	srv := httptest.NewServer(httpapi.NewServer(d.DB, slog.New(slog.DiscardHandler), nil, httpapi.Options{
		Auth: auth.NewAuthenticator(v, "bulkhead").WithAPIKeys(accts), Accounts: accts, JWKS: signer.JWKS(), OperatorToken: bulkhead.Secret(op)}))
	t.Cleanup(srv.Close)
	return &accessEnv{api: &api{t: t, srv: srv, demo: demo, db: d}, accts: accts, db: d.DB, d: d, signer: signer, op: op,
		t1: demo.T1.Tenant.ID.String(), t2: demo.T2.Tenant.ID.String()}
}

// user provisions a user with a login in tenant through the control plane
// and sets its first password with a reset token, as an operator would.
func (e *accessEnv) user(tenant, name, password string) string {
	e.t.Helper()
	code, m, body := e.do(e.op, "POST", "/admin/v1/tenants/"+tenant+"/entities", map[string]any{"name": name, "email": strings.ToLower(name) + "@example.com"})
	if code != 201 {
		e.t.Fatalf("create %s: %d %s", name, code, body)
	}
	id := m["id"].(string)
	tok := e.resetToken(tenant, id)
	if code, _, body := e.do("", "POST", "/v1/tenants/"+tenant+"/auth/password-reset", map[string]any{"token": tok, "new_password": password}); code != 204 {
		e.t.Fatalf("first password of %s: %d %s", name, code, body)
	}
	return id
}

func (e *accessEnv) resetToken(tenant, entity string) string {
	e.t.Helper()
	code, m, body := e.do(e.op, "POST", "/admin/v1/tenants/"+tenant+"/entities/"+entity+"/password-reset", nil)
	if code != 201 {
		e.t.Fatalf("issue a reset token: %d %s", code, body)
	}
	return m["token"].(string)
}

// login returns the access and refresh tokens.
func (e *accessEnv) login(tenant, email, password string) (string, string, int) {
	e.t.Helper()
	code, m, _ := e.do("", "POST", "/v1/tenants/"+tenant+"/auth/login", map[string]any{"email": email, "password": password})
	if code != 200 {
		return "", "", code
	}
	return m["access_token"].(string), m["refresh_token"].(string), code
}

// status is the status of GET path with credential.
func (e *accessEnv) status(cred, path string) int {
	e.t.Helper()
	code, _, _ := e.do(cred, "GET", path, nil)
	return code
}

func (e *accessEnv) admin(method, path string, want int) {
	e.t.Helper()
	if code, _, body := e.do(e.op, method, path, nil); code != want {
		e.t.Fatalf("%s %s: %d %s, want %d", method, path, code, body, want)
	}
}

// TestLogoutEndsTheAccessToken: the access token minted with a session
// dies with the session, on its next request; other sessions live on.
func TestLogoutEndsTheAccessToken(t *testing.T) {
	e := newAccessEnv(t)
	e.user(e.t1, "Dana", "correct horse battery")
	access, refresh, code := e.login(e.t1, "dana@example.com", "correct horse battery")
	if code != 200 {
		t.Fatalf("login: %d", code)
	}
	other, _, _ := e.login(e.t1, "dana@example.com", "correct horse battery")
	for _, tok := range []string{access, other} {
		if code := e.status(tok, "/v1/me"); code != 200 {
			t.Fatalf("before logout: %d", code)
		}
	}
	if code, _, _ := e.do("", "POST", "/v1/tenants/"+e.t1+"/auth/logout", map[string]any{"refresh_token": refresh}); code != 204 {
		t.Fatalf("logout: %d", code)
	}
	if code := e.status(access, "/v1/me"); code != 401 {
		t.Errorf("the logged-out session's access token: %d, want 401", code)
	}
	if code := e.status(access, "/v1/entities"); code != 401 {
		t.Errorf("the logged-out session's access token on a list: %d, want 401", code)
	}
	if code := e.status(other, "/v1/me"); code != 200 {
		t.Errorf("another session of the same user after the logout: %d, want 200", code)
	}
	// A refresh keeps the session: the new access token works, and dies
	// with the session too.
	_, refresh2, _ := e.login(e.t1, "dana@example.com", "correct horse battery")
	code, m, _ := e.do("", "POST", "/v1/tenants/"+e.t1+"/auth/refresh", map[string]any{"refresh_token": refresh2})
	if code != 200 {
		t.Fatalf("refresh: %d", code)
	}
	if code := e.status(m["access_token"].(string), "/v1/me"); code != 200 {
		t.Errorf("a refreshed access token: %d", code)
	}
	e.do("", "POST", "/v1/tenants/"+e.t1+"/auth/logout", map[string]any{"refresh_token": m["refresh_token"]})
	if code := e.status(m["access_token"].(string), "/v1/me"); code != 401 {
		t.Errorf("a refreshed access token after logout: %d, want 401", code)
	}
}

// TestDeletedTenantTokenIs401: a deleted tenant's JWT gets 401, not 200
// with empty lists; the other tenant's is untouched.
func TestDeletedTenantTokenIs401(t *testing.T) {
	e := newAccessEnv(t)
	t1Alice, _, _ := e.signer.Mint(e.demo.T1.Tenant.ID, e.demo.T1.Alice, time.Hour)
	t2Bob, _, _ := e.signer.Mint(e.demo.T2.Tenant.ID, e.demo.T2.Bob, time.Hour)
	for _, tok := range []string{t1Alice, t2Bob} {
		code, m, _ := e.do(tok, "GET", "/v1/entities", nil)
		if items, _ := m["items"].([]any); code != 200 || len(items) == 0 {
			t.Fatalf("before the delete: %d %v", code, m)
		}
	}
	e.admin("DELETE", "/admin/v1/tenants/"+e.t1, 204)
	for _, path := range []string{"/v1/entities", "/v1/rooms", "/v1/documents", "/v1/me", "/v1/api-keys"} {
		if code := e.status(t1Alice, path); code != 401 {
			t.Errorf("the deleted tenant's token GET %s: %d, want 401", path, code)
		}
		if code := e.status(t2Bob, path); code != 200 {
			t.Errorf("T2's token GET %s: %d, want 200", path, code)
		}
	}
	if code, _, _ := e.do(t1Alice, "POST", "/v1/worlds", map[string]any{"name": "after"}); code != 401 {
		t.Errorf("the deleted tenant's token writes: %d, want 401", code)
	}
}

// TestTakingAccessAway drives each control-plane operation and checks the
// credentials it must stop and those it must not.
func TestTakingAccessAway(t *testing.T) {
	e := newAccessEnv(t)
	dana := e.user(e.t1, "Dana", "correct horse battery")
	session, refresh, _ := e.login(e.t1, "dana@example.com", "correct horse battery")
	danaID := uuid.MustParse(dana)
	minted, _, _ := e.signer.Mint(e.demo.T1.Tenant.ID, danaID, time.Hour)
	bob, _, _ := e.signer.Mint(e.demo.T1.Tenant.ID, e.demo.T1.Bob, time.Hour)
	t2Bob, _, _ := e.signer.Mint(e.demo.T2.Tenant.ID, e.demo.T2.Bob, time.Hour)
	code, m, body := e.do(session, "POST", "/v1/api-keys", map[string]any{"name": "laptop"})
	if code != 201 {
		t.Fatalf("create a key: %d %s", code, body)
	}
	key, keyID := m["key"].(string), m["id"].(string)
	_, m, _ = e.do(session, "POST", "/v1/api-keys", map[string]any{"name": "ci"})
	key2 := m["key"].(string)
	all := map[string]string{"session": session, "minted": minted, "key": key, "key2": key2}
	expect := func(step string, want map[string]int) {
		t.Helper()
		for name, tok := range all {
			if code := e.status(tok, "/v1/me"); code != want[name] {
				t.Errorf("%s: dana's %s: %d, want %d", step, name, code, want[name])
			}
		}
		for name, tok := range map[string]string{"T1 bob": bob, "T2 bob": t2Bob} {
			if code := e.status(tok, "/v1/me"); code != 200 {
				t.Errorf("%s: %s: %d, want 200", step, name, code)
			}
		}
	}
	expect("start", map[string]int{"session": 200, "minted": 200, "key": 200, "key2": 200})

	base := "/admin/v1/tenants/" + e.t1 + "/entities/" + dana
	e.admin("POST", base+"/disable", 204)
	expect("disabled", map[string]int{"session": 401, "minted": 401, "key": 401, "key2": 401})
	if _, _, code := e.login(e.t1, "dana@example.com", "correct horse battery"); code != 401 {
		t.Errorf("a disabled entity logs in: %d, want 401", code)
	}
	if code, _, _ := e.do("", "POST", "/v1/tenants/"+e.t1+"/auth/refresh", map[string]any{"refresh_token": refresh}); code != 401 {
		t.Errorf("a disabled entity refreshes: %d, want 401", code)
	}
	e.admin("POST", base+"/enable", 204)
	expect("re-enabled", map[string]int{"session": 200, "minted": 200, "key": 200, "key2": 200})

	// Revoke-sessions: sessions and earlier tokens end, keys stay; a new
	// login works.
	code, m, _ = e.do(e.op, "POST", base+"/revoke-sessions", nil)
	if code != 200 || m["revoked"].(float64) < 1 {
		t.Fatalf("revoke-sessions: %d %v", code, m)
	}
	expect("sessions revoked", map[string]int{"session": 401, "minted": 401, "key": 200, "key2": 200})
	if code, _, _ := e.do("", "POST", "/v1/tenants/"+e.t1+"/auth/refresh", map[string]any{"refresh_token": refresh}); code != 401 {
		t.Errorf("a revoked session refreshes: %d, want 401", code)
	}
	fresh, _, code := e.login(e.t1, "dana@example.com", "correct horse battery")
	if code != 200 || e.status(fresh, "/v1/me") != 200 {
		t.Errorf("a login after revoke-sessions: %d", code)
	}
	if remint, _, _ := e.signer.Mint(e.demo.T1.Tenant.ID, danaID, time.Hour); e.status(remint, "/v1/me") != 200 {
		t.Error("a token minted after revoke-sessions is refused")
	}

	// One key revoked by id (the leaked one), then all of them.
	e.admin("DELETE", "/admin/v1/tenants/"+e.t1+"/api-keys/"+keyID, 204)
	e.admin("DELETE", "/admin/v1/tenants/"+e.t1+"/api-keys/"+keyID, 204) // idempotent
	expect("one key revoked", map[string]int{"session": 401, "minted": 401, "key": 401, "key2": 200})
	e.admin("DELETE", "/admin/v1/tenants/"+e.t2+"/api-keys/"+keyID, 404) // not T2's
	code, m, _ = e.do(e.op, "POST", base+"/revoke-api-keys", nil)
	if code != 200 || m["revoked"].(float64) != 1 {
		t.Errorf("revoke-api-keys: %d %v", code, m)
	}
	expect("all keys revoked", map[string]int{"session": 401, "minted": 401, "key": 401, "key2": 401})
	code, m, body = e.do(e.op, "GET", base+"/api-keys", nil)
	if items, _ := m["items"].([]any); code != 200 || len(items) != 2 || strings.Contains(body, key[len(key)-52:]) {
		t.Errorf("list dana's keys: %d %s", code, body)
	}
	for _, it := range m["items"].([]any) {
		if it.(map[string]any)["revoked_at"] == nil {
			t.Errorf("a key not marked revoked: %v", it)
		}
	}

	// The tenant, disabled and re-enabled.
	e.admin("POST", "/admin/v1/tenants/"+e.t1+"/disable", 204)
	if code := e.status(fresh, "/v1/me"); code != 401 {
		t.Errorf("a disabled tenant's session: %d, want 401", code)
	}
	if code := e.status(bob, "/v1/me"); code != 401 {
		t.Errorf("a disabled tenant's minted token: %d, want 401", code)
	}
	if code := e.status(t2Bob, "/v1/me"); code != 200 {
		t.Errorf("T2 while T1 is disabled: %d, want 200", code)
	}
	if _, _, code := e.login(e.t1, "dana@example.com", "correct horse battery"); code != 401 {
		t.Errorf("login into a disabled tenant: %d, want 401", code)
	}
	e.admin("POST", "/admin/v1/tenants/"+e.t1+"/enable", 204)
	if code := e.status(fresh, "/v1/me"); code != 200 {
		t.Errorf("the session after the tenant is re-enabled: %d, want 200", code)
	}

	// Delete: gone for good.
	e.admin("DELETE", base, 204)
	if code := e.status(fresh, "/v1/me"); code != 401 {
		t.Errorf("a deleted entity's session: %d, want 401", code)
	}
	if _, _, code := e.login(e.t1, "dana@example.com", "correct horse battery"); code != 401 {
		t.Errorf("a deleted entity logs in: %d, want 401", code)
	}
	e.admin("DELETE", base, 404)
	if code := e.status(bob, "/v1/me"); code != 200 {
		t.Errorf("bob after dana's deletion: %d", code)
	}
}

// TestAccessAdminInput: the control plane refuses bad input with problems
// and takes only the operator token.
func TestAccessAdminInput(t *testing.T) {
	e := newAccessEnv(t)
	alice := e.demo.T1.Alice.String()
	base := "/admin/v1/tenants/" + e.t1 + "/entities/"
	for _, c := range []struct {
		cred, method, path string
		body               any
		want               int
	}{
		{e.op, "POST", base + "not-a-uuid/disable", nil, 400},
		{e.op, "POST", "/admin/v1/tenants/nope/entities/" + alice + "/disable", nil, 400},
		{e.op, "POST", base + uuid.NewString() + "/disable", nil, 404},
		{e.op, "POST", "/admin/v1/tenants/" + uuid.NewString() + "/disable", nil, 404},
		{e.op, "POST", "/admin/v1/tenants/" + e.t2 + "/entities/" + alice + "/disable", nil, 404},
		{e.op, "POST", base + uuid.NewString() + "/revoke-sessions", nil, 404},
		{e.op, "GET", base + uuid.NewString() + "/api-keys", nil, 404},
		{e.op, "POST", base + e.demo.T1.Agent.String() + "/password-reset", nil, 404}, // no login
		{e.op, "POST", base + alice + "/password-reset", map[string]any{"ttl_seconds": -1}, 400},
		{e.op, "POST", base + alice + "/password-reset", map[string]any{"ttl_seconds": 5}, 400},
		{e.op, "POST", base + alice + "/password-reset", map[string]any{"ttl_seconds": 1 << 40}, 400},
		{e.op, "POST", base + alice + "/password-reset", `{"ttl_seconds": "soon"}`, 400},
		{"", "POST", base + alice + "/disable", nil, 401},
		{e.op + "x", "POST", base + alice + "/disable", nil, 401},
		{"", "POST", "/v1/tenants/" + e.t1 + "/auth/password-reset", map[string]any{"token": "bhp_x", "new_password": "correct horse battery"}, 401},
		{"", "POST", "/v1/tenants/" + e.t1 + "/auth/password-reset", map[string]any{"token": "bhp_x"}, 400},
	} {
		code, _, body := e.do(c.cred, c.method, c.path, c.body)
		if code != c.want {
			t.Errorf("%s %s %v: %d %s, want %d", c.method, c.path, c.body, code, body, c.want)
		}
	}
	// A tenant's token is no operator credential.
	tok, _, _ := e.signer.Mint(e.demo.T1.Tenant.ID, e.demo.T1.Alice, time.Hour)
	if code, _, _ := e.do(tok, "POST", base+alice+"/disable", nil); code != 401 {
		t.Errorf("a tenant token on the control plane: %d, want 401", code)
	}
	if code := e.status(tok, "/v1/me"); code != 200 {
		t.Errorf("alice after the refused attempts: %d, want 200", code)
	}
}

// TestPasswordReset: single use (two concurrent redemptions: exactly one
// wins), expiring, replaced by a newer one, bound to its tenant, refused
// for a disabled entity, stored only as a keyed hash; redeeming ends the
// user's sessions.
func TestPasswordReset(t *testing.T) {
	e := newAccessEnv(t)
	ctx := context.Background()
	dana := e.user(e.t1, "Dana", "correct horse battery")
	tenant := e.demo.T1.Tenant.ID
	danaID := uuid.MustParse(dana)
	oldSession, _, _ := e.login(e.t1, "dana@example.com", "correct horse battery")

	tok := e.resetToken(e.t1, dana)
	// Stored only as a hash: the secret part appears nowhere in the row.
	admin := testdb.MustConnect(t, e.d.AdminDSN())
	var stored []byte
	if err := admin.QueryRow(ctx, `SELECT reset_hash FROM bulkhead.users WHERE id = $1`, danaID).Scan(&stored); err != nil || len(stored) != 32 {
		t.Fatalf("stored reset hash: %x %v", stored, err)
	}
	if strings.Contains(string(stored), tok[len(tok)-52:]) {
		t.Error("the reset token is stored in clear")
	}

	// Two concurrent redemptions: exactly one succeeds.
	passwords := []string{"first horse battery", "second horse battery"}
	errs := make([]error, 2)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 2 {
		wg.Go(func() {
			<-start
			errs[i] = e.accts.RedeemPasswordReset(ctx, tenant, tok, passwords[i])
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner == -1:
			winner = i
		case err == nil:
			t.Fatal("both concurrent redemptions succeeded")
		case !errors.Is(err, bulkhead.ErrUnauthenticated):
			t.Errorf("the losing redemption: %v, want ErrUnauthenticated", err)
		}
	}
	if winner == -1 {
		t.Fatalf("no redemption succeeded: %v", errs)
	}
	if _, _, code := e.login(e.t1, "dana@example.com", passwords[winner]); code != 200 {
		t.Errorf("the winner's password: %d", code)
	}
	if _, _, code := e.login(e.t1, "dana@example.com", passwords[1-winner]); code != 401 {
		t.Errorf("the loser's password: %d, want 401", code)
	}
	if _, _, code := e.login(e.t1, "dana@example.com", "correct horse battery"); code != 401 {
		t.Errorf("the old password: %d, want 401", code)
	}
	if code := e.status(oldSession, "/v1/me"); code != 401 {
		t.Errorf("a session from before the reset: %d, want 401", code)
	}
	redeem := func(tenant, tok, pw string) int {
		t.Helper()
		code, _, _ := e.do("", "POST", "/v1/tenants/"+tenant+"/auth/password-reset", map[string]any{"token": tok, "new_password": pw})
		return code
	}
	if code := redeem(e.t1, tok, "third horse battery"); code != 401 {
		t.Errorf("a spent token again: %d, want 401", code)
	}

	// A bad new password leaves the token unspent; another tenant's path
	// refuses it; then it works.
	tok = e.resetToken(e.t1, dana)
	if code := redeem(e.t1, tok, "short"); code != 400 {
		t.Errorf("a short new password: %d, want 400", code)
	}
	if code := redeem(e.t2, tok, "fourth horse battery"); code != 401 {
		t.Errorf("T1's token under T2: %d, want 401", code)
	}
	alt := "A"
	if tok[len(tok)-1] == 'A' {
		alt = "B"
	}
	if code := redeem(e.t1, tok[:len(tok)-1]+alt, "fourth horse battery"); code != 401 {
		t.Errorf("a tampered token: %d, want 401", code)
	}
	if code := redeem(e.t1, tok, "fourth horse battery"); code != 204 {
		t.Errorf("the token after the refusals: %d, want 204", code)
	}

	// A newer token replaces the older one.
	older := e.resetToken(e.t1, dana)
	newer := e.resetToken(e.t1, dana)
	if code := redeem(e.t1, older, "fifth horse battery"); code != 401 {
		t.Errorf("a replaced token: %d, want 401", code)
	}
	if code := redeem(e.t1, newer, "fifth horse battery"); code != 204 {
		t.Errorf("the newer token: %d, want 204", code)
	}

	// Expired.
	tok = e.resetToken(e.t1, dana)
	if _, err := admin.Exec(ctx, `UPDATE bulkhead.users SET reset_expires_at = now() - interval '1 second' WHERE id = $1`, danaID); err != nil {
		t.Fatal(err)
	}
	if code := redeem(e.t1, tok, "sixth horse battery"); code != 401 {
		t.Errorf("an expired token: %d, want 401", code)
	}

	// Disabled: none issued, an earlier one refused; re-enabled, it works.
	tok = e.resetToken(e.t1, dana)
	e.admin("POST", "/admin/v1/tenants/"+e.t1+"/entities/"+dana+"/disable", 204)
	if code, _, _ := e.do(e.op, "POST", "/admin/v1/tenants/"+e.t1+"/entities/"+dana+"/password-reset", nil); code != 403 {
		t.Errorf("issue for a disabled entity: %d, want 403", code)
	}
	if code := redeem(e.t1, tok, "seventh horse battery"); code != 401 {
		t.Errorf("redeem for a disabled entity: %d, want 401", code)
	}
	e.admin("POST", "/admin/v1/tenants/"+e.t1+"/entities/"+dana+"/enable", 204)
	if code := redeem(e.t1, tok, "seventh horse battery"); code != 204 {
		t.Errorf("redeem after re-enabling: %d, want 204", code)
	}
	if _, _, code := e.login(e.t1, "dana@example.com", "seventh horse battery"); code != 200 {
		t.Errorf("login with the last password: %d", code)
	}
}

// TestPasswordChange: the current password is required; a change ends
// every session and answers with a new one.
func TestPasswordChange(t *testing.T) {
	e := newAccessEnv(t)
	dana := e.user(e.t1, "Dana", "correct horse battery")
	access, refresh, _ := e.login(e.t1, "dana@example.com", "correct horse battery")
	other, _, _ := e.login(e.t1, "dana@example.com", "correct horse battery")
	change := func(cred, current, next string) (int, map[string]any) {
		t.Helper()
		code, m, _ := e.do(cred, "POST", "/v1/me/password", map[string]any{"current_password": current, "new_password": next})
		return code, m
	}
	if code, _ := change(access, "wrong horse battery", "new horse battery"); code != 401 {
		t.Errorf("a wrong current password: %d, want 401", code)
	}
	if code, _ := change(access, "correct horse battery", "short"); code != 400 {
		t.Errorf("a short new password: %d, want 400", code)
	}
	if code := e.status(access, "/v1/me"); code != 200 {
		t.Fatalf("the session after refused changes: %d", code)
	}
	if code, _ := change("", "correct horse battery", "new horse battery"); code != 401 {
		t.Errorf("without credentials: %d, want 401", code)
	}
	code, m := change(access, "correct horse battery", "new horse battery")
	if code != 200 || m["access_token"] == nil {
		t.Fatalf("change: %d %v", code, m)
	}
	for name, tok := range map[string]string{"this session": access, "another session": other} {
		if code := e.status(tok, "/v1/me"); code != 401 {
			t.Errorf("%s after the change: %d, want 401", name, code)
		}
	}
	if code, _, _ := e.do("", "POST", "/v1/tenants/"+e.t1+"/auth/refresh", map[string]any{"refresh_token": refresh}); code != 401 {
		t.Errorf("an old refresh token: %d, want 401", code)
	}
	if code := e.status(m["access_token"].(string), "/v1/me"); code != 200 {
		t.Errorf("the new session: %d, want 200", code)
	}
	if _, _, code := e.login(e.t1, "dana@example.com", "correct horse battery"); code != 401 {
		t.Errorf("the old password: %d, want 401", code)
	}
	if _, _, code := e.login(e.t1, "dana@example.com", "new horse battery"); code != 200 {
		t.Errorf("the new password: %d, want 200", code)
	}
	// An entity without a password, and an agent acting for dana, can't.
	bob, _, _ := e.signer.Mint(e.demo.T1.Tenant.ID, e.demo.T1.Bob, time.Hour)
	if code, _ := change(bob, "anything at all", "new horse battery"); code != 401 {
		t.Errorf("an entity without a password: %d, want 401", code)
	}
	agent, _ := bulkhead.WithScope(context.Background(), bulkhead.Scope{Tenant: e.demo.T1.Tenant.ID, Entity: e.demo.T1.Agent, ActingFor: uuid.MustParse(dana)})
	if _, err := e.accts.ChangePassword(agent, "new horse battery", "agent horse battery"); !errors.Is(err, bulkhead.ErrForbidden) {
		t.Errorf("an agent changes the password of its principal: %v, want ErrForbidden", err)
	}
}

// TestEveryScopedRouteChecksAccess: a disabled entity's valid token gets
// 401 from every authenticated route of the OpenAPI document, whether or
// not the handler reaches the database; re-enabled, none answers 401.
func TestEveryScopedRouteChecksAccess(t *testing.T) {
	e := newAccessEnv(t)
	t1 := e.demo.T1
	tok, _, _ := e.signer.Mint(t1.Tenant.ID, t1.Alice, time.Hour)
	_, doc, _ := e.do("", "GET", "/openapi.json", nil)
	type call struct{ method, path string }
	var calls []call
	repl := strings.NewReplacer("{id}", t1.Room1.String(), "{entity_id}", t1.Bob.String(), "{agent_id}", t1.Agent.String())
	for pattern, item := range doc["paths"].(map[string]any) {
		if !strings.HasPrefix(pattern, "/v1/") || strings.HasPrefix(pattern, "/v1/tenants/") {
			continue
		}
		for method := range item.(map[string]any) {
			calls = append(calls, call{strings.ToUpper(method), repl.Replace(pattern)})
		}
	}
	if len(calls) < 30 {
		t.Fatalf("only %d authenticated routes found", len(calls))
	}
	run := func(disabled bool) {
		for _, c := range calls {
			var body any
			if c.method == "POST" || c.method == "PUT" {
				body = map[string]any{}
			}
			code, _, raw := e.do(tok, c.method, c.path, body)
			if disabled && code != 401 {
				t.Errorf("disabled: %s %s: %d %s, want 401", c.method, c.path, code, raw)
			}
			if !disabled && code == 401 {
				t.Errorf("enabled: %s %s: 401 %s", c.method, c.path, raw)
			}
		}
	}
	base := "/admin/v1/tenants/" + e.t1 + "/entities/" + t1.Alice.String()
	e.admin("POST", base+"/disable", 204)
	run(true)
	e.admin("POST", base+"/enable", 204)
	run(false)
}

// TestStreamClosesWhenTheEntityIsDisabled: a live stream ends (1008) at
// the next re-check once its entity is disabled, a ticket issued before
// is refused after, and another participant's stream goes on.
func TestStreamClosesWhenTheEntityIsDisabled(t *testing.T) {
	e := newStreamEnv(t, httpapi.StreamOptions{Recheck: 100 * time.Millisecond}, nil)
	t1 := e.demo.T1
	m := bulkhead.AsMaintenance(context.Background(), "test")
	bob := e.mustDial(t1.Room1, "T1-bob", "", "")
	alice := e.mustDial(t1.Room1, "T1-alice", "", "")
	ticket := e.ticket("T1-bob", t1.Room1)
	if err := e.db.SetEntityDisabled(m, t1.Tenant.ID, t1.Bob, true); err != nil {
		t.Fatal(err)
	}
	expectClose(t, bob, websocket.StatusPolicyViolation)
	e.refused("a ticket issued before the entity was disabled", 401, t1.Room1, "", ticket, appOrigin)
	e.refused("the disabled entity's header token", 401, t1.Room1, "T1-bob", "", "")
	sent := e.post("T1-alice", t1.Room1, "after Bob was disabled")
	if got := next(t, alice); got.ID != sent.ID {
		t.Errorf("alice's stream got %v, want %v", got.ID, sent.ID)
	}
	if err := e.db.SetEntityDisabled(m, t1.Tenant.ID, t1.Bob, false); err != nil {
		t.Fatal(err)
	}
	e.mustDial(t1.Room1, "T1-bob", "", "")
}
