package httpapi_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/auth"
	"github.com/bulkhead-dev/bulkhead/httpapi"
	"github.com/bulkhead-dev/bulkhead/internal/syncbuf"
	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/token"
)

// fullAPI is a server with every optional part switched on (test tokens for
// /v1, bulkhead's own accounts and API keys, the operator token, the
// knowledge layer), so that every route reaches PostgreSQL.
func fullAPI(t testing.TB) (*api, string) {
	t.Helper()
	d := testdb.New(t)
	ctx := bulkhead.AsMaintenance(context.Background(), "test")
	demo, err := postgres.SeedDemo(ctx, d.DB, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.DB.SetOpenRegistration(ctx, demo.T1.Tenant.ID, true); err != nil {
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
	tk := tokens{"T1-alice": {Tenant: demo.T1.Tenant.ID, Entity: demo.T1.Alice}}
	know := testdb.NewKnowledge(t, d.DB, testdb.KnowledgeOptions{}, demo.T1.Tenant.ID, demo.T2.Tenant.ID)
	const op = "operator-token-for-the-input-tests"
	logs := &syncbuf.Buffer{}
	srv := httptest.NewServer(httpapi.NewServer(d.DB, slog.New(slog.NewJSONHandler(logs, nil)), nil, httpapi.Options{
		Auth: tk, Accounts: accts, OperatorToken: op, Knowledge: know.Service, JWKS: signer.JWKS(), MaxBody: 64 << 10}))
	t.Cleanup(srv.Close)
	return &api{t: t, srv: srv, demo: demo, logs: logs, know: know}, op
}

// bodyRoute is one body-taking route with a concrete path, the token that
// reaches its handler, and a body its handler accepts.
type bodyRoute struct {
	method, pattern, path, token string
	body                         map[string]any
}

// bodyRoutes returns every route the OpenAPI document lists with a request
// body, each with a sample body. A new body-taking route without a sample
// here fails the test, so none escapes the input tests and the fuzzer.
func bodyRoutes(t testing.TB, a *api, operatorToken string) []bodyRoute {
	t.Helper()
	t1 := a.demo.T1
	samples := map[string]map[string]any{
		"POST /v1/tenants/{tenant_id}/auth/register":                      {"email": "dana@example.com", "name": "Dana", "password": "correct horse battery"},
		"POST /v1/tenants/{tenant_id}/auth/login":                         {"email": "dana@example.com", "password": "correct horse battery"},
		"POST /v1/tenants/{tenant_id}/auth/refresh":                       {"refresh_token": "not-a-token"},
		"POST /v1/tenants/{tenant_id}/auth/logout":                        {"refresh_token": "not-a-token"},
		"POST /v1/api-keys":                                               {"name": "ci", "scopes": []any{"read"}, "ttl_seconds": 60},
		"POST /v1/agents":                                                 {"name": "writer", "bio": "writes", "settings": map[string]any{"model": "m", "tags": []any{"a"}}, "system_prompt": "be brief", "secrets": map[string]any{"openai": "sk-1"}},
		"PUT /v1/agents/{id}":                                             {"name": "writer", "bio": "writes", "settings": map[string]any{"model": "m"}, "system_prompt": "be brief", "secrets": map[string]any{"openai": "sk-1"}},
		"POST /v1/delegations":                                            {"agent_id": t1.Agent.String(), "scopes": []any{"documents:read"}},
		"POST /v1/worlds":                                                 {"name": "atlas"},
		"POST /v1/rooms":                                                  {"world_id": t1.World1.String(), "name": "lobby", "open": true, "channel_id": "lobby"},
		"POST /v1/rooms/{id}/participants":                                {"entity_id": t1.Charlie.String(), "role": "member"},
		"POST /v1/rooms/{id}/messages":                                    {"content": "hello", "kind": "message"},
		"POST /v1/stream-tickets":                                         {"room_id": t1.Room1.String()},
		"POST /v1/message-servers":                                        {"platform": "discord", "external_id": "guild-1", "name": "guild"},
		"POST /v1/message-servers/{id}/agents":                            {"agent_id": t1.Agent.String()},
		"POST /v1/documents":                                              {"title": "notes", "content": "the quarterly plan", "visibility": "tenant"},
		"POST /v1/query":                                                  {"query": "quarterly plan", "k": 3},
		"POST /v1/answer":                                                 {"query": "quarterly plan", "k": 3},
		"POST /admin/v1/tenants":                                          {"name": "initech", "region": "default"},
		"POST /admin/v1/tenants/{id}/reembed":                             {"model": "local"},
		"POST /admin/v1/tenants/{id}/entities":                            {"name": "milton", "kind": "user", "email": "milton@example.com"},
		"POST /admin/v1/tenants/{id}/issuers":                             {"issuer": "https://idp.example.com/", "jit": true},
		"POST /admin/v1/tenants/{id}/issuers/remove":                      {"issuer": "https://idp.example.com/"},
		"POST /v1/tenants/{tenant_id}/auth/password-reset":                {"token": "not-a-token", "new_password": "correct horse battery"},
		"POST /v1/me/password":                                            {"current_password": "correct horse battery", "new_password": "correct horse stapler"},
		"POST /admin/v1/tenants/{id}/entities/{entity_id}/password-reset": {"ttl_seconds": 600},
	}
	ids := map[string]string{
		"/v1/tenants/{tenant_id}/": t1.Tenant.ID.String(), "/v1/agents/{id}": t1.Agent.String(), "/v1/rooms/{id}/": t1.Room1.String(),
		"/v1/message-servers/{id}/": t1.Server.String(), "/admin/v1/tenants/{id}/": t1.Tenant.ID.String(),
	}
	_, doc, _ := a.do("", "GET", "/openapi.json", nil)
	var out []bodyRoute
	for pattern, item := range doc["paths"].(map[string]any) {
		for method, op := range item.(map[string]any) {
			if _, ok := op.(map[string]any)["requestBody"]; !ok {
				continue
			}
			key := strings.ToUpper(method) + " " + pattern
			body, ok := samples[key]
			if !ok {
				t.Fatalf("%s takes a body but has no sample in bodyRoutes: add one", key)
			}
			path := pattern
			for prefix, id := range ids {
				if strings.HasPrefix(pattern, prefix) {
					path = strings.NewReplacer("{tenant_id}", id, "{id}", id, "{entity_id}", t1.Alice.String()).Replace(pattern)
				}
			}
			r := bodyRoute{method: strings.ToUpper(method), pattern: pattern, path: path, body: body, token: "T1-alice"}
			switch {
			case strings.HasPrefix(pattern, "/admin/"):
				r.token = operatorToken
			case strings.HasPrefix(pattern, "/v1/tenants/"):
				r.token = ""
			}
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].method+out[i].pattern < out[j].method+out[j].pattern })
	return out
}

// send posts a raw body and returns the status and the decoded problem.
func (a *api) send(r bodyRoute, body []byte) (int, httpapi.Problem, string) {
	a.t.Helper()
	req, _ := http.NewRequest(r.method, a.srv.URL+r.path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	resp, err := a.client().Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var p httpapi.Problem
	json.Unmarshal(raw, &p)
	return resp.StatusCode, p, string(raw)
}

// badStrings are the values no PostgreSQL text or jsonb column can hold
// (an unpaired surrogate escape is written as is: the decoder would turn
// it into U+FFFD, jsonb refuses it).
var badStrings = map[string]string{"NUL": "a\x00b", "invalid UTF-8": "a\xff\xfeb", "unpaired surrogate": `a\ud800b`}

// withString returns body with the string at field (top level, or the
// first string inside it) replaced by s, as raw JSON (so invalid UTF-8
// survives the encoding).
func withString(t testing.TB, body map[string]any, field, s string) []byte {
	t.Helper()
	const marker = "\x01MARK\x01"
	var put func(v any) (any, bool)
	put = func(v any) (any, bool) {
		switch x := v.(type) {
		case string:
			return marker, true
		case []any:
			for i := range x {
				if nv, ok := put(x[i]); ok {
					y := append([]any{}, x...)
					y[i] = nv
					return y, true
				}
			}
		case map[string]any:
			for k, e := range x {
				if nv, ok := put(e); ok {
					y := map[string]any{}
					for k2, e2 := range x {
						y[k2] = e2
					}
					y[k] = nv
					return y, true
				}
			}
		}
		return v, false
	}
	b := map[string]any{}
	for k, v := range body {
		b[k] = v
	}
	nv, ok := put(body[field])
	if !ok {
		return nil
	}
	b[field] = nv
	raw, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	quoted, _ := json.Marshal(marker)
	// Write s's bytes as they are: NUL as the escape \u0000, anything else raw
	// (including escapes already in s).
	return bytes.Replace(raw, quoted, []byte(`"`+strings.ReplaceAll(s, "\x00", `\u0000`)+`"`), 1)
}

// TestNoStringPostgreSQLRefusesIsA500 sends, on every body-taking route, a
// NUL (\u0000) and invalid UTF-8 in each string field (nested ones too,
// agent settings and secrets included): each is a 400 problem naming the
// field, never a 500 from PostgreSQL's 22021/22P05.
func TestNoStringPostgreSQLRefusesIsA500(t *testing.T) {
	a, op := fullAPI(t)
	routes := bodyRoutes(t, a, op)
	for _, r := range routes {
		fields := make([]string, 0, len(r.body))
		for f := range r.body {
			fields = append(fields, f)
		}
		sort.Strings(fields)
		for _, f := range fields {
			for name, s := range badStrings {
				body := withString(t, r.body, f, s)
				if body == nil {
					continue // no string in this field
				}
				code, p, raw := a.send(r, body)
				if code != 400 || len(p.Problems) == 0 || p.Problems[0].Field != f {
					t.Errorf("%s %s with %s in %s: %d %s, want 400 naming %q", r.method, r.pattern, name, f, code, raw, f)
				}
			}
		}
	}
}

// FuzzAPI sends fuzzed bodies to every body-taking route of a real server
// over real HTTP, through decoding, validation and PostgreSQL: no request
// may get a 5xx, and every 4xx is a problem. The seeds are each route's
// sample body, and that body with NUL and invalid UTF-8 in each field.
func FuzzAPI(f *testing.F) {
	a, op := fullAPI(f)
	routes := bodyRoutes(f, a, op)
	for i, r := range routes {
		ok, _ := json.Marshal(r.body)
		f.Add(uint8(i), ok)
		for field := range r.body {
			for _, s := range badStrings {
				if b := withString(f, r.body, field, s); b != nil {
					f.Add(uint8(i), b)
				}
			}
		}
	}
	f.Add(uint8(0), []byte(`{"email":"\ud800@example.com","name":"\udc00","password":"correct horse battery"}`))
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		r := routes[int(route)%len(routes)]
		a := &api{t: t, srv: a.srv, demo: a.demo, logs: a.logs}
		code, p, raw := a.send(r, body)
		if code >= 500 {
			t.Fatalf("%s %s with body %q: %d %s", r.method, r.pattern, body, code, raw)
		}
		if code >= 400 && p.Status != code {
			t.Fatalf("%s %s with body %q: %d without a problem body: %s", r.method, r.pattern, body, code, raw)
		}
	})
}
