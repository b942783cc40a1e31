package httpapi_test

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/auth"
	"github.com/bulkhead-dev/bulkhead/httpapi"
	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/token"
)

// accountsAPI is a server with bulkhead's own accounts, tokens and API keys.
func accountsAPI(t *testing.T, limits httpapi.RateLimits) (*api, *auth.Accounts, *postgres.DB) {
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
	srv := httptest.NewServer(httpapi.NewServer(d.DB, slog.New(slog.DiscardHandler), nil, httpapi.Options{
		Auth: auth.NewAuthenticator(v, "bulkhead").WithAPIKeys(accts), Accounts: accts, Limits: limits, JWKS: signer.JWKS()}))
	t.Cleanup(srv.Close)
	return &api{t: t, srv: srv, demo: demo}, accts, d.DB
}

func TestAccounts(t *testing.T) {
	a, accts, db := accountsAPI(t, httpapi.RateLimits{})
	t1, t2 := a.demo.T1.Tenant.ID.String(), a.demo.T2.Tenant.ID.String()
	base := "/v1/tenants/" + t1 + "/auth/"
	creds := map[string]any{"email": "dana@example.com", "name": "Dana", "password": "correct horse battery"}
	if code, _, _ := a.do("", "POST", base+"register", creds); code != 403 {
		t.Errorf("register while the tenant is closed: %d, want 403", code)
	}
	if err := db.SetOpenRegistration(bulkhead.AsMaintenance(context.Background(), "test"), a.demo.T1.Tenant.ID, true); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second, a duplicate, answers the same
		if code, _, body := a.do("", "POST", base+"register", creds); code != 202 {
			t.Fatalf("register: %d %s", code, body)
		}
	}
	if code, _, _ := a.do("", "POST", base+"register", map[string]any{"email": "x@example.com", "name": "X", "password": "short"}); code != 400 {
		t.Errorf("short password: %d, want 400", code)
	}
	login := map[string]any{"email": "dana@example.com", "password": "correct horse battery"}
	code, tok, body := a.do("", "POST", base+"login", login)
	if code != 200 || tok["access_token"] == nil || tok["refresh_token"] == nil {
		t.Fatalf("login: %d %s", code, body)
	}
	for name, c := range map[string]map[string]any{
		"wrong password": {"email": "dana@example.com", "password": "wrong horse battery"},
		"unknown email":  {"email": "nobody@example.com", "password": "correct horse battery"},
	} {
		if code, m, _ := a.do("", "POST", base+"login", c); code != 401 || m["access_token"] != nil {
			t.Errorf("%s: %d", name, code)
		}
	}
	// The same email and password against the other tenant: no such account there.
	if code, _, _ := a.do("", "POST", "/v1/tenants/"+t2+"/auth/login", login); code != 401 {
		t.Errorf("T1's account in T2: %d, want 401", code)
	}
	access := tok["access_token"].(string)
	if code, me, _ := a.do(access, "GET", "/v1/me", nil); code != 200 || me["entity"].(map[string]any)["name"] != "Dana" {
		t.Errorf("me with the access token: %d %v", code, me)
	}

	// Refresh rotates; reusing the spent token after the grace window revokes the family.
	accts.Grace = 0
	r1 := tok["refresh_token"].(string)
	code, tok2, _ := a.do("", "POST", base+"refresh", map[string]any{"refresh_token": r1})
	if code != 200 || tok2["refresh_token"] == r1 {
		t.Fatalf("refresh: %d %v", code, tok2)
	}
	r2 := tok2["refresh_token"].(string)
	time.Sleep(5 * time.Millisecond)
	if code, _, _ := a.do("", "POST", base+"refresh", map[string]any{"refresh_token": r1}); code != 401 {
		t.Errorf("reusing a spent refresh token: %d, want 401", code)
	}
	if code, _, _ := a.do("", "POST", base+"refresh", map[string]any{"refresh_token": r2}); code != 401 {
		t.Errorf("the family after reuse: %d, want 401 (revoked)", code)
	}
	// Within the grace window a second use is refused but the family lives.
	accts.Grace = time.Hour
	_, tok3, _ := a.do("", "POST", base+"login", login)
	r3 := tok3["refresh_token"].(string)
	_, tok4, _ := a.do("", "POST", base+"refresh", map[string]any{"refresh_token": r3})
	if code, _, _ := a.do("", "POST", base+"refresh", map[string]any{"refresh_token": r3}); code != 401 {
		t.Errorf("concurrent reuse within grace: %d, want 401", code)
	}
	r4 := tok4["refresh_token"].(string)
	code, tok5, _ := a.do("", "POST", base+"refresh", map[string]any{"refresh_token": r4})
	if code != 200 {
		t.Errorf("the family after a reuse within grace: %d, want 200", code)
	}
	// A refresh token is bound to its tenant's path; logout revokes the family.
	r5 := tok5["refresh_token"].(string)
	if code, _, _ := a.do("", "POST", "/v1/tenants/"+t2+"/auth/refresh", map[string]any{"refresh_token": r5}); code != 401 {
		t.Errorf("T1's refresh token under T2: %d", code)
	}
	if code, _, _ := a.do("", "POST", base+"logout", map[string]any{"refresh_token": r5}); code != 204 {
		t.Errorf("logout: %d", code)
	}
	if code, _, _ := a.do("", "POST", base+"refresh", map[string]any{"refresh_token": r5}); code != 401 {
		t.Errorf("refresh after logout: %d, want 401", code)
	}
}

func TestAPIKeys(t *testing.T) {
	a, accts, _ := accountsAPI(t, httpapi.RateLimits{})
	alice := a.demo.T1.As(context.Background(), a.demo.T1.Alice)
	key, _, err := accts.CreateAPIKey(alice, "ci", []string{"read"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := accts.CreateAPIKey(alice, "bad", []string{"admin"}, 0); err == nil {
		t.Error("a key with an unknown scope was created")
	}
	get := func(header, value string) int {
		req, _ := http.NewRequest("GET", a.srv.URL+"/v1/rooms/"+a.demo.T1.Room1.String(), nil)
		req.Header.Set(header, value)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("X-API-Key", key); code != 200 {
		t.Errorf("X-API-Key: %d", code)
	}
	if code := get("Authorization", "Bearer "+key); code != 200 {
		t.Errorf("Bearer key: %d", code)
	}
	tampered := key[:len(key)-1] + map[bool]string{true: "B", false: "A"}[key[len(key)-1] == 'A']
	if code := get("X-API-Key", tampered); code != 401 {
		t.Errorf("tampered key: %d", code)
	}
	// A read-only key can't write.
	if code, _, _ := a.do(key, "POST", "/v1/rooms/"+a.demo.T1.Room1.String()+"/messages", map[string]any{"content": "x"}); code != 401 {
		t.Errorf("read-only key posts: %d, want 401", code)
	}
	// Listing shows the key without its secret; revoking ends it.
	_, m, body := a.do(key, "GET", "/v1/api-keys", nil)
	items, _ := m["items"].([]any)
	if len(items) != 2 || containsStr(body, key[len(key)-52:]) { // the demo's key and this one
		t.Errorf("list keys: %s", body)
	}
	id := ""
	for _, it := range items {
		if it.(map[string]any)["name"] == "ci" {
			id = it.(map[string]any)["id"].(string)
		}
	}
	writer, _, err := accts.CreateAPIKey(alice, "writer", []string{"read", "write"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if code, _, _ := a.do(writer, "DELETE", "/v1/api-keys/"+id, nil); code != 204 {
		t.Errorf("revoke: %d", code)
	}
	if code := get("X-API-Key", key); code != 401 {
		t.Errorf("revoked key: %d, want 401", code)
	}
}

func TestLoginRateLimits(t *testing.T) {
	a, _, _ := accountsAPI(t, httpapi.RateLimits{AuthPerAccount: 0.01, AuthPerAccountBurst: 3, AuthPerIP: 0.01, AuthPerIPBurst: 10})
	base := "/v1/tenants/" + a.demo.T1.Tenant.ID.String() + "/auth/login"
	for i := range 3 {
		if code, _, _ := a.do("", "POST", base, map[string]any{"email": "alice@x.example", "password": "guess-number-" + string(rune('a'+i))}); code != 401 {
			t.Fatalf("attempt %d: %d", i, code)
		}
	}
	req, _ := http.NewRequest("POST", a.srv.URL+base, stringsReader(`{"email":"ALICE@x.example","password":"guess"}`))
	req.Header.Set("X-Forwarded-For", "203.0.113.50")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("fourth attempt on the account (other case, spoofed header): %d, want 429 with Retry-After", resp.StatusCode)
	}
	// Another account from the same IP still gets its chance (until the IP limit).
	if code, _, _ := a.do("", "POST", base, map[string]any{"email": "bob@x.example", "password": "guess"}); code != 401 {
		t.Errorf("another account: %d, want 401", code)
	}
}
