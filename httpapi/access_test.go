package httpapi_test

import (
	"context"
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
	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/token"
	"github.com/google/uuid"
)

// routeAccess is who may call each route, written by hand and reviewed:
// it is not derived from the route table that drives the middleware, so a
// route declared with the wrong access there fails here. A new route fails
// TestRouteAccess until it is added below.
var routeAccess = map[string]string{
	"GET /healthz":               "public",
	"GET /readyz":                "public",
	"GET /openapi.json":          "public",
	"GET /.well-known/jwks.json": "public",

	"POST /v1/tenants/{tenant_id}/auth/register":       "public",
	"POST /v1/tenants/{tenant_id}/auth/login":          "public",
	"POST /v1/tenants/{tenant_id}/auth/refresh":        "public",
	"POST /v1/tenants/{tenant_id}/auth/logout":         "public",
	"POST /v1/tenants/{tenant_id}/auth/password-reset": "public",
	"POST /v1/me/password":                             "tenant",

	"POST /v1/api-keys":        "tenant",
	"GET /v1/api-keys":         "tenant",
	"DELETE /v1/api-keys/{id}": "tenant",
	"GET /v1/me":               "tenant",
	"GET /v1/entities":         "tenant",
	"GET /v1/entities/{id}":    "tenant",

	"POST /v1/agents":        "tenant",
	"GET /v1/agents":         "tenant",
	"GET /v1/agents/{id}":    "tenant",
	"PUT /v1/agents/{id}":    "tenant",
	"DELETE /v1/agents/{id}": "tenant",

	"POST /v1/delegations":        "tenant",
	"GET /v1/delegations":         "tenant",
	"DELETE /v1/delegations/{id}": "tenant",

	"POST /v1/worlds":     "tenant",
	"GET /v1/worlds/{id}": "tenant",

	"POST /v1/rooms":                                    "tenant",
	"GET /v1/rooms":                                     "tenant",
	"GET /v1/rooms/{id}":                                "tenant",
	"GET /v1/rooms/{id}/participants":                   "tenant",
	"POST /v1/rooms/{id}/participants":                  "tenant",
	"POST /v1/rooms/{id}/join":                          "tenant",
	"DELETE /v1/rooms/{id}/participants/{entity_id}":    "tenant",
	"GET /v1/rooms/{id}/messages":                       "tenant",
	"POST /v1/rooms/{id}/messages":                      "tenant",
	"GET /v1/rooms/{id}/stream":                         "tenant",
	"POST /v1/stream-tickets":                           "tenant",
	"POST /v1/message-servers":                          "tenant",
	"GET /v1/message-servers/{id}/agents":               "tenant",
	"POST /v1/message-servers/{id}/agents":              "tenant",
	"DELETE /v1/message-servers/{id}/agents/{agent_id}": "tenant",

	"POST /v1/documents":        "tenant",
	"GET /v1/documents":         "tenant",
	"GET /v1/documents/{id}":    "tenant",
	"DELETE /v1/documents/{id}": "tenant",
	"POST /v1/query":            "tenant",
	"POST /v1/answer":           "tenant",

	"GET /admin/v1/tenants":                                            "operator",
	"POST /admin/v1/tenants":                                           "operator",
	"DELETE /admin/v1/tenants/{id}":                                    "operator",
	"POST /admin/v1/tenants/{id}/provision":                            "operator",
	"POST /admin/v1/tenants/{id}/reconcile":                            "operator",
	"POST /admin/v1/tenants/{id}/reembed":                              "operator",
	"POST /admin/v1/tenants/{id}/entities":                             "operator",
	"POST /admin/v1/tenants/{id}/entities/{entity_id}/deactivate":      "operator",
	"POST /admin/v1/tenants/{id}/entities/{entity_id}/activate":        "operator",
	"GET /admin/v1/tenants/{id}/issuers":                               "operator",
	"POST /admin/v1/tenants/{id}/issuers":                              "operator",
	"POST /admin/v1/tenants/{id}/issuers/remove":                       "operator",
	"POST /admin/v1/tenants/{id}/disable":                              "operator",
	"POST /admin/v1/tenants/{id}/enable":                               "operator",
	"POST /admin/v1/tenants/{id}/entities/{entity_id}/disable":         "operator",
	"POST /admin/v1/tenants/{id}/entities/{entity_id}/enable":          "operator",
	"DELETE /admin/v1/tenants/{id}/entities/{entity_id}":               "operator",
	"POST /admin/v1/tenants/{id}/entities/{entity_id}/revoke-sessions": "operator",
	"GET /admin/v1/tenants/{id}/entities/{entity_id}/api-keys":         "operator",
	"POST /admin/v1/tenants/{id}/entities/{entity_id}/revoke-api-keys": "operator",
	"DELETE /admin/v1/tenants/{id}/api-keys/{key_id}":                  "operator",
	"POST /admin/v1/tenants/{id}/entities/{entity_id}/password-reset":  "operator",
}

// TestRouteAccess checks the served mux against routeAccess: every
// documented route is in the table and every table entry is served; with
// no credentials only public routes answer anything but 401; a tenant's
// token is refused on every operator route, the operator token on every
// tenant route; and with the right credential every route is reached (the
// answer is not the mux's own 404/405 nor a 401).
func TestRouteAccess(t *testing.T) {
	d := testdb.New(t)
	demo, err := postgres.SeedDemo(bulkhead.AsMaintenance(context.Background(), "test"), d.DB, "")
	if err != nil {
		t.Fatal(err)
	}
	op := "operator-" + uuid.NewString()
	tk := tokens{"alice": {Tenant: demo.T1.Tenant.ID, Entity: demo.T1.Alice}}
	signer, err := token.LoadOrCreate(filepath.Join(t.TempDir(), "key.json"), "bulkhead")
	if err != nil {
		t.Fatal(err)
	}
	accts, err := auth.NewAccounts(d.DB, signer, auth.NewHasher(2), make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.NewServer(d.DB, slog.New(slog.DiscardHandler), nil, httpapi.Options{
		Auth: tk, Accounts: accts, OperatorToken: bulkhead.Secret(op), JWKS: signer.JWKS()}))
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	var keys []string
	for k := range routeAccess {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for k := range documented {
		if _, ok := routeAccess[k]; !ok {
			t.Errorf("%s is served but not in routeAccess: decide who may call it and add it", k)
		}
	}

	// send returns the status, the problem type, and whether the refusal
	// came from authentication (401 with a WWW-Authenticate challenge; a
	// handler's own 401, such as a wrong password, has none).
	type answer struct {
		code    int
		typ     string
		refused bool
	}
	send := func(method, path, token string) answer {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader("{}"))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var p struct {
			Type string `json:"type"`
		}
		json.NewDecoder(resp.Body).Decode(&p)
		return answer{resp.StatusCode, p.Type, resp.StatusCode == 401 && resp.Header.Get("WWW-Authenticate") != ""}
	}
	// reached: not refused by authentication, and not the mux's answer for
	// a route it doesn't have (type about:blank).
	reached := func(a answer) bool {
		return !a.refused && !((a.code == 404 || a.code == 405) && a.typ == "about:blank")
	}
	for _, k := range keys {
		method, path, _ := strings.Cut(k, " ")
		if !documented[k] {
			t.Errorf("%s is in routeAccess but not documented", k)
		}
		concrete := strings.NewReplacer("{id}", uuid.NewString(), "{entity_id}", uuid.NewString(),
			"{agent_id}", uuid.NewString(), "{tenant_id}", demo.T1.Tenant.ID.String()).Replace(path)
		none := send(method, concrete, "")
		switch routeAccess[k] {
		case "public":
			if !reached(none) {
				t.Errorf("public %s without credentials: %+v", k, none)
			}
		case "tenant":
			if !none.refused {
				t.Errorf("tenant route %s without credentials: %+v, want 401", k, none)
			}
			if a := send(method, concrete, op); !a.refused {
				t.Errorf("tenant route %s with the operator token: %+v, want 401", k, a)
			}
			if a := send(method, concrete, "alice"); !reached(a) {
				t.Errorf("tenant route %s with a tenant token: %+v, want it reached", k, a)
			}
		case "operator":
			if !none.refused {
				t.Errorf("operator route %s without credentials: %+v, want 401", k, none)
			}
			if a := send(method, concrete, "alice"); !a.refused {
				t.Errorf("operator route %s with a tenant token: %+v, want 401", k, a)
			}
			if a := send(method, concrete, op); !reached(a) {
				t.Errorf("operator route %s with the operator token: %+v, want it reached", k, a)
			}
		default:
			t.Errorf("%s: unknown access %q", k, routeAccess[k])
		}
	}
}
