package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/bulkhead-dev/bulkhead/auth"
)

// idp is a small OpenID Provider for the tests: a real HTTP server (on
// loopback, so http is allowed) publishing a discovery document and a JWKS
// made with go-jose, and minting tokens with go-jose, an implementation
// independent of the golang-jwt that verifies them.
type idp struct {
	srv      *httptest.Server
	docIss   atomic.Pointer[string] // the "issuer" its discovery document claims; nil: its own URL
	jwksMode atomic.Int32           // 0 ok, 1 down (500), 2 slow (hangs until the client gives up)
	jwksHits atomic.Int64

	mu   sync.Mutex
	keys map[string]signingKey // kid -> key, published in the JWKS
}

type signingKey struct {
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

func newIdP(t *testing.T) *idp {
	t.Helper()
	p := &idp{keys: map[string]signingKey{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+auth.DiscoveryPath, func(w http.ResponseWriter, r *http.Request) {
		iss := p.srv.URL
		if s := p.docIss.Load(); s != nil {
			iss = *s
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"issuer": iss, "jwks_uri": p.srv.URL + "/jwks", "id_token_signing_alg_values_supported": []string{"RS256", "ES256"}})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		p.jwksHits.Add(1)
		switch p.jwksMode.Load() {
		case 1:
			http.Error(w, "down", http.StatusInternalServerError)
			return
		case 2:
			select {
			case <-r.Context().Done():
			case <-time.After(30 * time.Second):
			}
			return
		}
		p.mu.Lock()
		var set jose.JSONWebKeySet
		for kid, k := range p.keys {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.priv.Public(), KeyID: kid, Algorithm: string(k.alg), Use: "sig"})
		}
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(set)
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *idp) issuer() string { return p.srv.URL }

// addKey publishes a new key (RS256: RSA 2048, ES256: P-256) under kid.
func (p *idp) addKey(t *testing.T, kid string, alg jose.SignatureAlgorithm) {
	t.Helper()
	var priv crypto.Signer
	var err error
	switch alg {
	case jose.RS256:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		t.Fatalf("unsupported alg %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys[kid] = signingKey{alg: alg, priv: priv}
}

// retire stops publishing kid (its key still signs, for the tests).
func (p *idp) retire(kid string) (signingKey, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k, ok := p.keys[kid]
	delete(p.keys, kid)
	return k, ok
}

// mint signs a token with key kid for subject, audience "bulkhead",
// valid for ten minutes, with extra claims.
func (p *idp) mint(t *testing.T, kid, subject string, extra map[string]any) string {
	t.Helper()
	p.mu.Lock()
	k, ok := p.keys[kid]
	p.mu.Unlock()
	if !ok {
		t.Fatalf("no key %s", kid)
	}
	return mintWith(t, p.issuer(), k, kid, subject, extra)
}

func mintWith(t *testing.T, iss string, k signingKey, kid, subject string, extra map[string]any) string {
	t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: jose.JSONWebKey{Key: k.priv, KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	claims := map[string]any{"iss": iss, "sub": subject, "aud": "bulkhead", "iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
		"jti": rand.Text()} // every token distinct: no cached verification
	for k, v := range extra {
		claims[k] = v
	}
	tok, err := josejwt.Signed(sig).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// oidcEnv is a running bulkhead with two tenants and external issuers.
type oidcEnv struct {
	t          *testing.T
	dir        string
	s          *server
	a, b       string // tenant ids (acme, globex)
	shared     *idp   // a multi-tenant IdP, tenant in claim "org"; registered by acme only
	globexIdP  *idp   // globex's own IdP, fixed tenant globex
	liar       *idp   // its discovery document names another issuer
	unreached  *idp   // its JWKS is down
	superuser  string // DSN, for counting rows across tenants
	opToken    string
	httpClient *http.Client
}

func startOIDC(t *testing.T) *oidcEnv {
	e := &oidcEnv{t: t, dir: mustDataDir(t), shared: newIdP(t), globexIdP: newIdP(t), liar: newIdP(t), unreached: newIdP(t),
		httpClient: &http.Client{Timeout: 20 * time.Second}}
	e.shared.addKey(t, "r1", jose.RS256)
	e.shared.addKey(t, "e1", jose.ES256)
	e.globexIdP.addKey(t, "g1", jose.ES256)
	e.liar.addKey(t, "l1", jose.RS256)
	evil := "https://evil.example"
	e.liar.docIss.Store(&evil)
	e.unreached.addKey(t, "u1", jose.RS256)
	e.unreached.jwksMode.Store(1)

	mustRun(t, e.dir, "db", "start")
	id := func(args ...string) string {
		t.Helper()
		var v struct{ ID string }
		if err := json.Unmarshal([]byte(mustRun(t, e.dir, args...).stdout), &v); err != nil || v.ID == "" {
			t.Fatalf("bulkhead %s: %v", strings.Join(args, " "), err)
		}
		return v.ID
	}
	e.a, e.b = id("tenant", "create", "acme", "--json"), id("tenant", "create", "globex", "--json")

	// The issuer URL alone (and the audience): discovery finds the rest.
	cfg := map[string]any{"issuers": []map[string]any{
		{"issuer": e.shared.issuer(), "audience": "bulkhead", "tenant_claim": "org"},
		{"issuer": e.globexIdP.issuer(), "audience": "bulkhead", "tenant": e.b, "name_claim": "nickname"},
		{"issuer": e.liar.issuer(), "audience": "bulkhead", "tenant_claim": "org"},
		{"issuer": e.unreached.issuer(), "audience": "bulkhead", "tenant_claim": "org"},
	}}
	b, _ := json.Marshal(cfg)
	cfgFile := filepath.Join(e.dir, "issuers.json")
	if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// acme opts in to just-in-time entities from the shared IdP; globex
	// from its own. Globex does not register the shared IdP.
	mustRun(t, e.dir, "tenant", "issuer", "add", e.a, e.shared.issuer(), "--jit")
	mustRun(t, e.dir, "tenant", "issuer", "add", e.b, e.globexIdP.issuer(), "--jit")
	for _, iss := range []string{e.liar.issuer(), e.unreached.issuer()} {
		mustRun(t, e.dir, "tenant", "issuer", "add", e.a, iss, "--jit")
	}

	var info map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, e.dir, "db", "info", "--json").stdout), &info); err != nil {
		t.Fatal(err)
	}
	e.superuser = info["superuser_dsn"].(string)
	addr := freeAddr(t)
	e.s = startServe(t, e.dir, addr, nil, "--addr", addr, "--auth-config", cfgFile, "--rate-per-entity", "0", "--auth-failures-per-ip", "0")
	tok, err := os.ReadFile(filepath.Join(e.dir, "operator-token"))
	if err != nil {
		t.Fatal(err)
	}
	e.opToken = strings.TrimSpace(string(tok))
	return e
}

// call sends a request with a bearer token and returns status, headers and
// the decoded JSON body.
func (e *oidcEnv) call(tok, method, path, body string) (int, http.Header, map[string]any) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.s.base+path, strings.NewReader(body))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.httpClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(raw, &m)
	return resp.StatusCode, resp.Header, m
}

// want asserts the status of a call and returns its body.
func (e *oidcEnv) want(status int, tok, method, path, body string) map[string]any {
	e.t.Helper()
	code, _, m := e.call(tok, method, path, body)
	if code != status {
		e.t.Fatalf("%s %s: %d %v, want %d\n%s", method, path, code, m, status, e.s.output())
	}
	return m
}

// count runs a count query as the superuser (across tenants).
func (e *oidcEnv) count(sql string) int {
	e.t.Helper()
	psql, err := exec.LookPath("psql")
	if err != nil {
		e.t.Fatal("psql not found: apt-get install -y postgresql-client")
	}
	out, err := exec.Command(psql, e.superuser, "-XAtc", sql).CombinedOutput()
	if err != nil {
		e.t.Fatalf("%s: %v\n%s", sql, err, out)
	}
	var n int
	fmt.Sscan(string(out), &n)
	return n
}

func (e *oidcEnv) entities(id string) int {
	return e.count("SELECT count(*) FROM bulkhead.entities WHERE id = '" + id + "'")
}

// failures reads bulkhead_auth_failures_total{reason} from /metrics.
func (e *oidcEnv) failures(reason string) int {
	e.t.Helper()
	_, body, err := e.s.get("/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	prefix := `bulkhead_auth_failures_total{reason="` + reason + `"} `
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, prefix); ok {
			var n int
			fmt.Sscan(v, &n)
			return n
		}
	}
	return 0
}

// refused asserts a 401 problem whose body says nothing about why, with
// the reason counted in /metrics and logged.
func (e *oidcEnv) refused(tok, path, reason string) {
	e.t.Helper()
	before := e.failures(reason)
	code, h, m := e.call(tok, "GET", path, "")
	if code != 401 || !strings.HasPrefix(h.Get("Content-Type"), "application/problem+json") {
		e.t.Fatalf("GET %s: %d %v, want a 401 problem (%s)", path, code, m, reason)
	}
	if b, _ := json.Marshal(m); strings.Contains(string(b), reason) || strings.Contains(string(b), "issuer") {
		e.t.Errorf("the 401 body tells the reason: %s", b)
	}
	if after := e.failures(reason); after != before+1 {
		e.t.Errorf("bulkhead_auth_failures_total{reason=%q}: %d -> %d, want +1", reason, before, after)
	}
	if !strings.Contains(e.s.stdout.String()+e.s.stderr.String(), reason) {
		e.t.Errorf("the server's log does not name the reason %s", reason)
	}
}

// TestOIDCWalkthrough is the README's external-identity example through the
// real binary: a provider's token in (issuer URL alone in issuers.json,
// RS256 and ES256, discovery, just-in-time entity), a world and a room out;
// then every refusal next to its rightful success.
func TestOIDCWalkthrough(t *testing.T) {
	e := startOIDC(t)
	alice := e.shared.mint(t, "r1", "alice", map[string]any{"org": e.a, "name": "Alice", "email": "alice@acme.example"})
	aliceID := auth.EntityID(e.shared.issuer(), "alice").String()

	// README: the provider's token reaches /v1/me and makes a world and a room.
	me := e.want(200, alice, "GET", "/v1/me", "")
	if b, _ := json.Marshal(me); !strings.Contains(string(b), aliceID) || !strings.Contains(string(b), e.a) {
		t.Fatalf("/v1/me: %s, want entity %s in tenant %s", b, aliceID, e.a)
	}
	w := e.want(201, alice, "POST", "/v1/worlds", `{"name":"hq"}`)
	room := e.want(201, alice, "POST", "/v1/rooms", `{"world_id":"`+w["id"].(string)+`","name":"general"}`)
	msg := e.want(201, alice, "POST", "/v1/rooms/"+room["id"].(string)+"/messages", `{"content":"hello from an external identity"}`)
	if msg["author_id"] != aliceID {
		t.Errorf("message author %v, want %s", msg["author_id"], aliceID)
	}
	if got := e.want(200, alice, "GET", "/v1/entities/"+aliceID, ""); got["name"] != "Alice" || got["kind"] != "user" {
		t.Errorf("the just-in-time entity: %v", got)
	}
	if n := e.count("SELECT count(*) FROM bulkhead.audit_log WHERE action = 'entity.jit_create' AND target = '" + aliceID + "'"); n != 1 {
		t.Errorf("%d audit records of the creation, want 1", n)
	}
	// ES256 from the same provider.
	e.want(200, e.shared.mint(t, "e1", "alice", map[string]any{"org": e.a}), "GET", "/v1/me", "")

	func() { // binding
		// The shared IdP is registered by acme, not by globex: the same
		// user naming globex is refused, and nothing is created there.
		e.refused(e.shared.mint(t, "r1", "alice", map[string]any{"org": e.b, "name": "Alice"}), "/v1/me", auth.ReasonIssuerNotBound)
		e.refused(e.shared.mint(t, "r1", "mallory", map[string]any{"org": e.b, "name": "Mallory"}), "/v1/me", auth.ReasonIssuerNotBound)
		if n := e.count("SELECT count(*) FROM bulkhead.entities WHERE tenant_id = '" + e.b + "'"); n != 0 {
			t.Errorf("%d entities in globex after refused tokens, want 0", n)
		}
		// Globex's own IdP (fixed tenant, ES256, name from "nickname"):
		// its users reach globex, whatever tenant a claim names.
		bob := e.globexIdP.mint(t, "g1", "bob", map[string]any{"nickname": "Bobby", "org": e.a})
		me := e.want(200, bob, "GET", "/v1/me", "")
		if b, _ := json.Marshal(me); !strings.Contains(string(b), e.b) || strings.Contains(string(b), e.a) {
			t.Errorf("globex IdP token: /v1/me %s, want tenant %s only", b, e.b)
		}
		bobID := auth.EntityID(e.globexIdP.issuer(), "bob").String()
		if got := e.want(200, bob, "GET", "/v1/entities/"+bobID, ""); got["name"] != "Bobby" {
			t.Errorf("name from the configured claim: %v", got)
		}
		// Alice's world is not visible to globex.
		e.want(404, bob, "GET", "/v1/worlds/"+w["id"].(string), "")
		// Unregistering takes the binding back, registering gives it back.
		code, _, _ := e.adminPOST("/admin/v1/tenants/"+e.a+"/issuers/remove", `{"issuer":"`+e.shared.issuer()+`"}`)
		if code != 204 {
			t.Fatalf("issuer remove: %d", code)
		}
		e.refused(alice, "/v1/me", auth.ReasonIssuerNotBound) // even a token verified (and cached) before
		code, _, _ = e.adminPOST("/admin/v1/tenants/"+e.a+"/issuers", `{"issuer":"`+e.shared.issuer()+`","jit":true}`)
		if code != 200 {
			t.Fatalf("issuer add: %d", code)
		}
		e.want(200, alice, "GET", "/v1/me", "")
		if out := mustRun(t, e.dir, "tenant", "issuer", "list", e.a).stdout; !strings.Contains(out, e.shared.issuer()) || !strings.Contains(out, "true") {
			t.Errorf("tenant issuer list: %s", out)
		}
	}()

	func() { // concurrent first requests
		carol := e.shared.mint(t, "r1", "carol", map[string]any{"org": e.a, "name": "Carol"})
		carolID := auth.EntityID(e.shared.issuer(), "carol").String()
		const n = 24
		var wg sync.WaitGroup
		codes := make([]int, n)
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				req, _ := http.NewRequest("GET", e.s.base+"/v1/me", nil)
				req.Header.Set("Authorization", "Bearer "+carol)
				resp, err := e.httpClient.Do(req)
				if err != nil {
					return
				}
				resp.Body.Close()
				codes[i] = resp.StatusCode
			}()
		}
		close(start)
		wg.Wait()
		for i, c := range codes {
			if c != 200 {
				t.Errorf("request %d: %d", i, c)
			}
		}
		if got, audits := e.entities(carolID), e.count("SELECT count(*) FROM bulkhead.audit_log WHERE action = 'entity.jit_create' AND target = '"+carolID+"'"); got != 1 || audits != 1 {
			t.Errorf("%d concurrent first requests: %d entities, %d audit records; want 1 and 1", n, got, audits)
		}
	}()

	func() { // claim mapping
		long := strings.Repeat("n", 10<<10)
		for _, c := range []struct {
			sub, name, reason string
		}{
			{"empty-name", "", auth.ReasonBadNameClaim},
			{"blank-name", "   ", auth.ReasonBadNameClaim},
			{"long-name", long[:5000], auth.ReasonBadNameClaim}, // fits in a token, too long for a name
			{"huge-name", long, auth.ReasonTooLarge},            // 10 kB: the token itself is too large
		} {
			e.refused(e.shared.mint(t, "r1", c.sub, map[string]any{"org": e.a, "name": c.name}), "/v1/me", c.reason)
			if n := e.entities(auth.EntityID(e.shared.issuer(), c.sub).String()); n != 0 {
				t.Errorf("%s: %d entities created", c.sub, n)
			}
		}
		// The rightful success: a name of 200 characters.
		e.want(200, e.shared.mint(t, "r1", "max-name", map[string]any{"org": e.a, "name": long[:200]}), "GET", "/v1/me", "")
	}()

	func() { // pre-link without opt-in
		mustRun(t, e.dir, "tenant", "issuer", "add", e.a, e.shared.issuer()) // jit off
		dave := e.shared.mint(t, "r1", "dave", map[string]any{"org": e.a, "name": "Dave"})
		daveID := auth.EntityID(e.shared.issuer(), "dave").String()
		e.refused(dave, "/v1/me", auth.ReasonUnknownEntity)
		if n := e.entities(daveID); n != 0 {
			t.Fatalf("without opt-in, %d entities created", n)
		}
		var linked struct{ ID string }
		json.Unmarshal([]byte(mustRun(t, e.dir, "entity", "create", "Dave", "--tenant", e.a, "--issuer", e.shared.issuer(), "--subject", "dave", "--json").stdout), &linked)
		if linked.ID != daveID {
			t.Fatalf("entity create --issuer --subject made %s, want %s", linked.ID, daveID)
		}
		e.want(200, dave, "GET", "/v1/me", "")
		// The admin API pre-links too.
		code, _, m := e.adminPOST("/admin/v1/tenants/"+e.a+"/entities", `{"name":"Erin","issuer":"`+e.shared.issuer()+`","subject":"erin"}`)
		if code != 201 || m["id"] != auth.EntityID(e.shared.issuer(), "erin").String() {
			t.Fatalf("admin pre-link: %d %v", code, m)
		}
		e.want(200, e.shared.mint(t, "r1", "erin", map[string]any{"org": e.a}), "GET", "/v1/me", "")
		mustRun(t, e.dir, "tenant", "issuer", "add", e.a, e.shared.issuer(), "--jit")
	}()

	func() { // deactivation
		e.want(200, alice, "GET", "/v1/me", "") // cached verification
		mustRun(t, e.dir, "entity", "deactivate", aliceID, "--tenant", e.a)
		e.refused(alice, "/v1/me", auth.ReasonDeactivated)
		e.refused(e.shared.mint(t, "e1", "alice", map[string]any{"org": e.a}), "/v1/me", auth.ReasonDeactivated)
		code, _, _ := e.adminPOST("/admin/v1/tenants/"+e.a+"/entities/"+aliceID+"/activate", "")
		if code != 204 {
			t.Fatalf("activate: %d", code)
		}
		e.want(200, alice, "GET", "/v1/me", "")
	}()

	func() { // key rotation
		old, _ := e.shared.retire("r1")
		e.shared.addKey(t, "r2", jose.RS256)
		// A token with the new key: fetched on the unknown kid, no restart.
		e.want(200, e.shared.mint(t, "r2", "alice", map[string]any{"org": e.a}), "GET", "/v1/me", "")
		// The retired key no longer verifies.
		e.refused(mintWith(t, e.shared.issuer(), old, "r1", "alice", map[string]any{"org": e.a}), "/v1/me", auth.ReasonUnknownKID)
	}()

	func() { // JWKS slow or down
		// Keys known: a hanging JWKS costs nothing.
		e.shared.jwksMode.Store(2)
		defer e.shared.jwksMode.Store(0)
		start := time.Now()
		e.want(200, e.shared.mint(t, "e1", "alice", map[string]any{"org": e.a}), "GET", "/v1/me", "")
		if el := time.Since(start); el > 3*time.Second {
			t.Errorf("a cached key waited %s", el)
		}
		// No key ever known (JWKS down since start): 503 with Retry-After,
		// a problem that names nothing.
		code, h, m := e.call(e.unreached.mint(t, "u1", "u", map[string]any{"org": e.a}), "GET", "/v1/me", "")
		if code != 503 || h.Get("Retry-After") == "" || !strings.HasPrefix(h.Get("Content-Type"), "application/problem+json") {
			t.Errorf("JWKS down: %d %v %v, want a 503 problem with Retry-After", code, h, m)
		}
		// Its failed fetches (the first one, the unknown-kid refetch) are
		// counted for the operator, by reason: it answers 500.
		_, body, err := e.s.get("/metrics")
		if err != nil {
			t.Fatal(err)
		}
		if n := metric(body, `bulkhead_dependency_failures_total{dependency="jwks",reason="status"}`); n < 1 {
			t.Errorf("failed JWKS fetches counted %v, want at least 1", n)
		}
	}()

	func() { // discovery refused
		// The liar's document names another issuer: never used, its JWKS
		// never fetched, its tokens unavailable (503) rather than trusted.
		code, _, m := e.call(e.liar.mint(t, "l1", "x", map[string]any{"org": e.a}), "GET", "/v1/me", "")
		if code != 503 {
			t.Errorf("token of an issuer whose discovery was refused: %d %v, want 503", code, m)
		}
		if n := e.liar.jwksHits.Load(); n != 0 {
			t.Errorf("the refused document's jwks_uri got %d requests", n)
		}
		if !strings.Contains(e.s.stdout.String()+e.s.stderr.String(), "discovery document names another issuer") {
			t.Errorf("the server's log does not say why discovery was refused")
		}
		// A stranger's token: unknown issuer, 401.
		stranger := newIdP(t)
		stranger.addKey(t, "s1", jose.RS256)
		e.refused(stranger.mint(t, "s1", "alice", map[string]any{"org": e.a}), "/v1/me", auth.ReasonUnknownIssuer)
	}()
	e.s.interrupt(t)

	// Configuration: an issuer URL alone must be https (http only to
	// loopback); serve refuses to start and says so.
	cfg := filepath.Join(e.dir, "plain.json")
	os.WriteFile(cfg, []byte(`{"issuers":[{"issuer":"http://idp.example.com","audience":"bulkhead"}]}`), 0o600)
	if r := run(t, e.dir, nil, "serve", "--addr", freeAddr(t), "--auth-config", cfg); r.code == 0 || !strings.Contains(r.stderr, "must be https") {
		t.Errorf("serve with a plain-http remote issuer: %s", r)
	}
}

func (e *oidcEnv) adminPOST(path, body string) (int, http.Header, map[string]any) {
	e.t.Helper()
	return e.call(e.opToken, "POST", path, body)
}
