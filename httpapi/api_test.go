package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/httpapi"
	"github.com/bulkhead-dev/bulkhead/internal/syncbuf"
	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

var update = flag.Bool("update", false, "rewrite golden files")

// tokens is the tests' authenticator: a bearer token names a scope set up
// by the test. (The real authenticators are JWT and API keys; this one
// keeps these tests about the HTTP layer and the database's isolation.)
type tokens map[string]bulkhead.Scope

func (tk tokens) Authenticate(r *http.Request) (bulkhead.Scope, error) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if s, found := tk[tok]; ok && found {
		return s, nil
	}
	return bulkhead.Scope{}, fmt.Errorf("%w: unknown token", bulkhead.ErrUnauthenticated)
}

type api struct {
	t    testing.TB
	srv  *httptest.Server
	demo postgres.Demo
	logs *syncbuf.Buffer
	know *testdb.Knowledge
	db   *testdb.Database // set by newAPI
}

func newAPI(t *testing.T) *api {
	t.Helper()
	d := testdb.New(t)
	demo, err := postgres.SeedDemo(bulkhead.AsMaintenance(context.Background(), "test"), d.DB, "")
	if err != nil {
		t.Fatal(err)
	}
	tk := tokens{}
	for _, tn := range []postgres.DemoTenant{demo.T1, demo.T2} {
		name := tn.Tenant.Name
		tk[name+"-alice"] = bulkhead.Scope{Tenant: tn.Tenant.ID, Entity: tn.Alice}
		tk[name+"-bob"] = bulkhead.Scope{Tenant: tn.Tenant.ID, Entity: tn.Bob}
		tk[name+"-charlie"] = bulkhead.Scope{Tenant: tn.Tenant.ID, Entity: tn.Charlie}
		tk[name+"-agent-for-alice"] = bulkhead.Scope{Tenant: tn.Tenant.ID, Entity: tn.Agent, ActingFor: tn.Alice}
	}
	logs := &syncbuf.Buffer{}
	know := testdb.NewKnowledge(t, d.DB, testdb.KnowledgeOptions{}, demo.T1.Tenant.ID, demo.T2.Tenant.ID)
	srv := httptest.NewServer(httpapi.NewServer(d.DB, slog.New(slog.NewJSONHandler(logs, nil)), nil, httpapi.Options{Auth: tk, MaxBody: 64 << 10, JWKS: []byte(`{"keys":[]}`), Knowledge: know.Service}))
	t.Cleanup(srv.Close)
	return &api{t: t, srv: srv, demo: demo, logs: logs, know: know, db: d}
}

// do sends a request as token (none if "") and returns status and body.
func (a *api) do(token, method, path string, body any) (int, map[string]any, string) {
	a.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, a.srv.URL+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.client().Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(raw, &m)
	if resp.StatusCode >= 400 && resp.Header.Get("Content-Type") != "application/problem+json" {
		a.t.Errorf("%s %s: %d with Content-Type %q, want problem+json", method, path, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return resp.StatusCode, m, string(raw)
}

func TestEveryResourceIsIsolated(t *testing.T) {
	a := newAPI(t)
	t1 := a.demo.T1
	cases := []struct {
		path            string
		owner, outsider string // the outsider is in the same tenant
	}{
		{"/v1/rooms/" + t1.Room1.String(), "T1-alice", "T1-charlie"},
		{"/v1/rooms/" + t1.Room1.String() + "/messages", "T1-bob", "T1-charlie"},
		{"/v1/rooms/" + t1.Room1.String() + "/participants", "T1-alice", "T1-charlie"},
		{"/v1/worlds/" + t1.World1.String(), "T1-alice", "T1-charlie"},
		{"/v1/documents/" + t1.PrivateDoc.String(), "T1-alice", "T1-bob"},
		{"/v1/documents/" + t1.RoomDoc.String(), "T1-bob", "T1-charlie"},
	}
	for _, c := range cases {
		if code, _, body := a.do(c.owner, "GET", c.path, nil); code != 200 {
			t.Errorf("owner %s GET %s: %d %s", c.owner, c.path, code, body)
		}
		if code, _, _ := a.do(c.outsider, "GET", c.path, nil); code != 404 {
			t.Errorf("same-tenant outsider %s GET %s: %d, want 404", c.outsider, c.path, code)
		}
		for _, other := range []string{"T2-alice", "T2-bob", "T2-charlie"} {
			if code, _, _ := a.do(other, "GET", c.path, nil); code != 404 {
				t.Errorf("other tenant %s GET %s: %d, want 404", other, c.path, code)
			}
		}
		if code, _, _ := a.do("", "GET", c.path, nil); code != 401 {
			t.Errorf("no credentials GET %s: %d, want 401", c.path, code)
		}
	}
	// Lists never show the other tenant's rows.
	for _, path := range []string{"/v1/rooms", "/v1/documents", "/v1/agents", "/v1/entities"} {
		_, m, _ := a.do("T2-bob", "GET", path, nil)
		raw, _ := json.Marshal(m)
		for _, id := range []uuid.UUID{t1.Room1, t1.Room2, t1.TenantDoc, t1.Agent, t1.Alice, t1.Bob} {
			if bytes.Contains(raw, []byte(id.String())) {
				t.Errorf("T2 lists %s and sees T1's %s", path, id)
			}
		}
		if items, _ := m["items"].([]any); len(items) == 0 {
			t.Errorf("T2 Bob's %s is empty: the owner side must see its own", path)
		}
	}
	// Writes into another tenant's rooms and as someone else are refused.
	if code, _, _ := a.do("T2-bob", "POST", "/v1/rooms/"+t1.Room1.String()+"/messages", map[string]any{"content": "hi"}); code != 403 && code != 404 {
		t.Errorf("T2 posts into T1's room: %d", code)
	}
	if code, _, _ := a.do("T1-charlie", "POST", "/v1/rooms/"+t1.Room1.String()+"/messages", map[string]any{"content": "hi"}); code != 403 {
		t.Errorf("Charlie posts into room1: %d, want 403", code)
	}
	if code, _, _ := a.do("T1-bob", "POST", "/v1/rooms/"+t1.Room1.String()+"/messages", map[string]any{"content": "hi"}); code != 201 {
		t.Errorf("Bob posts into room1: %d", code)
	}
	if code, _, _ := a.do("T1-charlie", "POST", "/v1/rooms/"+t1.Room1.String()+"/join", nil); code != 403 {
		t.Errorf("Charlie self-joins closed room1: %d, want 403", code)
	}
	// The agent acting for Alice, under her documents:read delegation, reads
	// her private doc but can't write as her: scopes are enforced in SQL.
	if code, _, _ := a.do("T1-agent-for-alice", "GET", "/v1/documents/"+t1.PrivateDoc.String(), nil); code != 200 {
		t.Errorf("agent under delegation reads Alice's private doc: %d", code)
	}
	if code, m, _ := a.do("T1-agent-for-alice", "POST", "/v1/rooms/"+t1.Room1.String()+"/messages", map[string]any{"content": "for Alice", "as_principal": true}); code == 201 {
		t.Errorf("agent posts as Alice under a documents:read delegation: %d %v, want a refusal", code, m)
	}
	// With memories:read and memories:write granted by Alice, it may.
	if code, m, _ := a.do("T1-alice", "POST", "/v1/delegations", map[string]any{"agent_id": t1.Agent, "scopes": []string{"memories:read", "memories:write"}}); code != 201 {
		t.Fatalf("Alice grants memories scopes: %d %v", code, m)
	}
	if code, m, _ := a.do("T1-agent-for-alice", "POST", "/v1/rooms/"+t1.Room1.String()+"/messages", map[string]any{"content": "for Alice", "as_principal": true}); code != 201 || m["author_id"] != t1.Alice.String() {
		t.Errorf("agent posts as Alice under a memories delegation: %d %v", code, m)
	}
}

func TestAgentSecretsAreWriteOnly(t *testing.T) {
	a := newAPI(t)
	secret := "sk-live-" + uuid.NewString()
	code, m, body := a.do("T1-alice", "POST", "/v1/agents", map[string]any{"name": "writer", "system_prompt": "prompt " + secret, "secrets": map[string]string{"openai": secret}})
	if code != 201 || strings.Contains(body, secret) {
		t.Fatalf("create agent: %d %s", code, body)
	}
	id, _ := m["id"].(string)
	for _, tok := range []string{"T1-alice", "T1-bob"} {
		code, _, body := a.do(tok, "GET", "/v1/agents/"+id, nil)
		if code != 200 || strings.Contains(body, secret) {
			t.Errorf("%s GET agent: %d %s", tok, code, body)
		}
		if tok == "T1-alice" && !strings.Contains(body, `"secret_names":["openai"]`) {
			t.Errorf("owner does not see which secrets are set: %s", body)
		}
	}
	if _, _, body := a.do("T1-alice", "GET", "/v1/agents", nil); strings.Contains(body, secret) {
		t.Error("the agent list leaks a secret")
	}
	if code, _, _ := a.do("T1-bob", "PUT", "/v1/agents/"+id, map[string]any{"name": "hijack"}); code != 404 {
		t.Errorf("Bob replaces Alice's agent: %d, want 404", code)
	}
	if code, _, _ := a.do("T2-alice", "DELETE", "/v1/agents/"+id, nil); code != 404 {
		t.Errorf("T2 deletes T1's agent: %d, want 404", code)
	}
	if strings.Contains(a.logs.String(), secret) {
		t.Error("the server's logs hold a secret")
	}
}

func TestBadInputIsA4xx(t *testing.T) {
	a := newAPI(t)
	room := "/v1/rooms/" + a.demo.T1.Room1.String() + "/messages"
	cases := []struct {
		name, method, path string
		body               any
		want               int
	}{
		{"unknown field", "POST", room, `{"content":"x","tenant_id":"` + a.demo.T2.Tenant.ID.String() + `"}`, 400},
		{"wrong type", "POST", room, `{"content":42}`, 400},
		{"not JSON", "POST", room, `{"content":`, 400},
		{"trailing data", "POST", room, `{"content":"a"}{"content":"b"}`, 400},
		{"empty content", "POST", room, `{"content":""}`, 400},
		{"oversized body", "POST", room, `{"content":"` + strings.Repeat("x", 70<<10) + `"}`, 413},
		{"bad UUID in path", "GET", "/v1/rooms/not-a-uuid", nil, 400},
		{"bad cursor", "GET", "/v1/rooms?cursor=not-base64!", nil, 400},
		{"truncated cursor", "GET", "/v1/rooms?cursor=AAAA", nil, 400},
		{"bad limit", "GET", "/v1/rooms?limit=0", nil, 400},
		{"huge limit", "GET", "/v1/rooms?limit=100000", nil, 400},
		{"unknown route", "GET", "/v1/nothing", nil, 404},
		{"wrong method", "PATCH", "/v1/rooms", nil, 405},
	}
	for _, c := range cases {
		code, m, body := a.do("T1-bob", c.method, c.path, c.body)
		if code != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, code, body, c.want)
		}
		if code >= 500 || (code >= 400 && m["title"] == nil) {
			t.Errorf("%s: %d without a problem body: %s", c.name, code, body)
		}
		if strings.Contains(body, "SQLSTATE") || strings.Contains(body, "ERROR") || strings.Contains(body, "policy") || strings.Contains(body, ".go:") {
			t.Errorf("%s: error body carries internals: %s", c.name, body)
		}
	}
	// A scope never comes from the body: the unknown tenant_id above was refused, not honoured.
}

// TestOpenAPI keeps the served document equal to the golden file and
// checks every documented route is served and guarded as documented.
func TestOpenAPI(t *testing.T) {
	a, _, _ := accountsAPI(t, httpapi.RateLimits{})
	resp, err := http.Get(a.srv.URL + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var doc map[string]any
	if err := json.Unmarshal(got, &doc); err != nil {
		t.Fatal(err)
	}
	pretty, _ := json.MarshalIndent(doc, "", "  ")
	// Compared before anything is rewritten: -update never makes a change
	// pass unseen. (TestOpenAPIDocumentIsValid validates the document itself.)
	golden := "testdata/openapi.json"
	want, err := os.ReadFile(golden)
	if err != nil && !*update {
		t.Fatalf("%v (run go test ./httpapi -run OpenAPI -update)", err)
	}
	if diff := cmp.Diff(string(want), string(pretty)+"\n"); diff != "" {
		if *update {
			if err := os.WriteFile(golden, append(pretty, '\n'), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Errorf("rewrote %s; review this difference (-old +new) and run again without -update:\n%s", golden, diff)
		} else {
			t.Errorf("the OpenAPI document changed (-golden +served); review it and run go test ./httpapi -run OpenAPI -update:\n%s", diff)
		}
	}
	for path, item := range doc["paths"].(map[string]any) {
		concrete := strings.NewReplacer("{id}", uuid.NewString(), "{entity_id}", uuid.NewString(), "{agent_id}", uuid.NewString(), "{tenant_id}", uuid.NewString()).Replace(path)
		for method, op := range item.(map[string]any) {
			code, _, _ := a.do("", strings.ToUpper(method), concrete, nil)
			_, secured := op.(map[string]any)["security"]
			if secured && code != 401 {
				t.Errorf("%s %s without credentials: %d, want 401", method, path, code)
			}
			if !secured && (code == 404 || code == 405) {
				t.Errorf("%s %s is documented but not served: %d", method, path, code)
			}
		}
	}
}

func TestMetricsRequestIDsAndAccessLogs(t *testing.T) {
	a := newAPI(t)
	a.do("T1-bob", "GET", "/v1/rooms/"+a.demo.T1.Room1.String(), nil)
	a.do("not-a-token", "GET", "/v1/rooms", nil)
	req, _ := http.NewRequest("GET", a.srv.URL+"/v1/me", nil)
	req.Header.Set("Authorization", "Bearer T1-alice")
	req.Header.Set("X-Request-Id", "trace-0123456789")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("X-Request-Id") != "trace-0123456789" {
		t.Errorf("request id not echoed: %q", resp.Header.Get("X-Request-Id"))
	}
	resp, err = http.Get(a.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`bulkhead_http_requests_total{code="200",method="GET",route="GET /v1/rooms/{id}"} 1`,
		`bulkhead_auth_failures_total{reason="rejected"} 1`,
		`bulkhead_db_pool_connections`,
		`bulkhead_keyset_cache_hits_total`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(string(body), a.demo.T1.Room1.String()) {
		t.Error("/metrics carries an id")
	}
	logs := a.logs.String()
	if !strings.Contains(logs, `"request_id":"trace-0123456789"`) || !strings.Contains(logs, `"route":"GET /v1/me"`) {
		t.Errorf("access log lacks the request: %s", logs)
	}
	for _, secret := range []string{"T1-alice", "T1-bob", "not-a-token", "Bearer"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs hold the credential %q", secret)
		}
	}
}

func TestRateLimits(t *testing.T) {
	d := testdb.New(t)
	demo, err := postgres.SeedDemo(bulkhead.AsMaintenance(context.Background(), "test"), d.DB, "")
	if err != nil {
		t.Fatal(err)
	}
	tk := tokens{"alice": {Tenant: demo.T1.Tenant.ID, Entity: demo.T1.Alice}, "bob": {Tenant: demo.T1.Tenant.ID, Entity: demo.T1.Bob}}
	srv := httptest.NewServer(httpapi.NewServer(d.DB, slog.New(slog.DiscardHandler), nil, httpapi.Options{Auth: tk,
		Limits: httpapi.RateLimits{PerEntity: 0.01, PerEntityBurst: 3, AuthFailuresPerIP: 0.01, AuthFailuresPerIPBurst: 2}}))
	defer srv.Close()
	get := func(tok string, xff string) (int, string) {
		req, _ := http.NewRequest("GET", srv.URL+"/v1/rooms", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	for i := range 3 {
		if code, _ := get("alice", ""); code != 200 {
			t.Fatalf("alice request %d: %d", i, code)
		}
	}
	if code, retry := get("alice", ""); code != 429 || retry == "" {
		t.Errorf("alice over her limit: %d, Retry-After %q; want 429 with Retry-After", code, retry)
	}
	if code, _ := get("bob", ""); code != 200 {
		t.Errorf("bob is limited by alice's use: %d", code)
	}
	// Failed authentications from one IP: after the burst, even a valid token waits,
	// and a spoofed X-Forwarded-For (the peer is no trusted proxy) does not help.
	for i := range 2 {
		if code, _ := get("wrong", fmt.Sprintf("198.51.100.%d", i)); code != 401 {
			t.Fatalf("bad token %d: %d", i, code)
		}
	}
	if code, retry := get("bob", "198.51.100.77"); code != 429 || retry == "" {
		t.Errorf("after the IP's failures (loopback, spoofed header): %d %q, want 429", code, retry)
	}
}

func TestAdminNeedsTheOperatorToken(t *testing.T) {
	d := testdb.New(t)
	demo, err := postgres.SeedDemo(bulkhead.AsMaintenance(context.Background(), "test"), d.DB, "")
	if err != nil {
		t.Fatal(err)
	}
	op := "operator-" + uuid.NewString()
	tk := tokens{"alice": {Tenant: demo.T1.Tenant.ID, Entity: demo.T1.Alice}}
	srv := httptest.NewServer(httpapi.NewServer(d.DB, slog.New(slog.DiscardHandler), nil, httpapi.Options{Auth: tk, OperatorToken: bulkhead.Secret(op)}))
	defer srv.Close()
	a := &api{t: t, srv: srv, demo: demo}
	for _, tok := range []string{"", "alice", op + "x", strings.ToUpper(op)} {
		if code, _, _ := a.do(tok, "GET", "/admin/v1/tenants", nil); code != 401 {
			t.Errorf("admin list with %q: %d, want 401", tok, code)
		}
	}
	code, m, _ := a.do(op, "POST", "/admin/v1/tenants", map[string]any{"name": "initech", "region": "eu-west"})
	if code != 201 || m["region"] != "eu-west" {
		t.Fatalf("create tenant: %d %v", code, m)
	}
	id := m["id"].(string)
	if code, m, _ := a.do(op, "POST", "/admin/v1/tenants/"+id+"/entities", map[string]any{"name": "milton"}); code != 201 || m["kind"] != "user" {
		t.Errorf("create entity: %d %v", code, m)
	}
	if code, m, _ := a.do(op, "GET", "/admin/v1/tenants", nil); code != 200 || len(m["items"].([]any)) != 3 {
		t.Errorf("list tenants: %d %v", code, m)
	}
	// Idempotent, and truthful: the second time there is nothing to delete.
	for _, want := range []int{204, 404} {
		if code, _, _ := a.do(op, "DELETE", "/admin/v1/tenants/"+id, nil); code != want {
			t.Errorf("delete tenant: %d, want %d", code, want)
		}
	}
	// A tenant credential never reaches the control plane, and the operator
	// token is no tenant credential either.
	if code, _, _ := a.do(op, "GET", "/v1/rooms", nil); code != 401 {
		t.Errorf("operator token on /v1: %d, want 401", code)
	}
}

func containsStr(s, sub string) bool { return strings.Contains(s, sub) }

func stringsReader(s string) io.Reader { return strings.NewReader(s) }
