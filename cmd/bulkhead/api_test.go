package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestAPIWalkthrough is the README's walk-through against the real binary:
// create two tenants and an entity in each, mint tokens, post and read a
// message, and see the other tenant get 404 and no token get 401.
func TestAPIWalkthrough(t *testing.T) {
	dir := mustDataDir(t)
	addr := freeAddr(t)
	s := startServe(t, dir, addr, nil, "--addr", addr)
	id := func(args ...string) string {
		t.Helper()
		var v struct{ ID string }
		if err := json.Unmarshal([]byte(mustRun(t, dir, args...).stdout), &v); err != nil || v.ID == "" {
			t.Fatalf("bulkhead %s: %v", strings.Join(args, " "), err)
		}
		return v.ID
	}
	t1, t2 := id("tenant", "create", "acme", "--json"), id("tenant", "create", "globex", "--json")
	alice, bob := id("entity", "create", "alice", "--tenant", t1, "--json"), id("entity", "create", "bob", "--tenant", t2, "--json")
	ta := strings.TrimSpace(mustRun(t, dir, "token", "mint", "--tenant", t1, "--entity", alice).stdout)
	tb := strings.TrimSpace(mustRun(t, dir, "token", "mint", "--tenant", t2, "--entity", bob).stdout)
	if r := run(t, dir, nil, "token", "mint", "--tenant", t2, "--entity", alice); r.code == 0 {
		t.Errorf("minted a token for Alice in the wrong tenant: %s", r)
	}
	call := func(tok, method, path, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, s.base+path, strings.NewReader(body))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var m map[string]any
		json.Unmarshal(raw, &m)
		return resp.StatusCode, m
	}
	code, w := call(ta, "POST", "/v1/worlds", `{"name":"hq"}`)
	if code != 201 {
		t.Fatalf("create world: %d %v", code, w)
	}
	code, room := call(ta, "POST", "/v1/rooms", `{"world_id":"`+w["id"].(string)+`","name":"general"}`)
	if code != 201 {
		t.Fatalf("create room: %d %v", code, room)
	}
	path := "/v1/rooms/" + room["id"].(string) + "/messages"
	if code, m := call(ta, "POST", path, `{"content":"hello from acme"}`); code != 201 || m["author_id"] != alice {
		t.Fatalf("post: %d %v", code, m)
	}
	if code, m := call(ta, "GET", path, ""); code != 200 || !bytes.Contains(mustJSON(m), []byte("hello from acme")) {
		t.Errorf("owner reads: %d %v", code, m)
	}
	if code, _ := call(tb, "GET", path, ""); code != 404 {
		t.Errorf("the other tenant reads: %d, want 404", code)
	}
	if code, _ := call("", "GET", path, ""); code != 401 {
		t.Errorf("no token: %d, want 401", code)
	}
	if code, _ := call(ta[:len(ta)-3]+"xyz", "GET", path, ""); code != 401 {
		t.Errorf("tampered token: %d, want 401", code)
	}
	// Knowledge: the same question, near-identical documents, each tenant
	// gets its own passages only (README walk-through, second part).
	for _, c := range []struct{ tok, text string }{{ta, "Acme refunds take 30 days."}, {tb, "Globex refunds take 60 days."}} {
		if code, m := call(c.tok, "POST", "/v1/documents", `{"title":"refunds","content":"`+c.text+`","visibility":"tenant"}`); code != 201 || m["chunks"] != float64(1) {
			t.Fatalf("ingest: %d %v", code, m)
		}
	}
	for _, c := range []struct{ tok, own, other string }{{ta, "Acme", "Globex"}, {tb, "Globex", "Acme"}} {
		for _, ep := range []string{"/v1/query", "/v1/answer"} {
			code, m := call(c.tok, "POST", ep, `{"query":"how long do refunds take?"}`)
			body := string(mustJSON(m))
			if code != 200 || !strings.Contains(body, c.own) || strings.Contains(body, c.other) {
				t.Errorf("%s as %s: %d %s", ep, c.own, code, body)
			}
		}
	}
	// The CLI reaches the running server's control plane for the vectors.
	if r := mustRun(t, dir, "tenant", "reconcile", t1); !strings.Contains(r.stdout, `"chunks": 1`) {
		t.Errorf("tenant reconcile through the running server: %s", r.stdout)
	}
	resp, err := http.Get(s.base + "/.well-known/jwks.json")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("jwks: %v %v", resp, err)
	}
	resp.Body.Close()
	s.interrupt(t)
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
