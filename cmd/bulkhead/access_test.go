package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestTakingAccessAwayWithServeRunning (issue 12, finding 5) with real
// processes: serve runs; the CLI beside it, writing to the database
// directly, disables and re-enables an entity, revokes a leaked API key by
// its public part, ends the entity's sessions, disables the tenant and
// deletes the entity. Each change holds on the running server at the next
// request, and what it must not touch keeps working.
func TestTakingAccessAwayWithServeRunning(t *testing.T) {
	dir := mustDataDir(t)
	addr := freeAddr(t)
	s := startServe(t, dir, addr, nil, "--addr", addr)
	var tn struct{ ID string }
	if err := json.Unmarshal([]byte(mustRun(t, dir, "tenant", "create", "acme", "--json").stdout), &tn); err != nil {
		t.Fatal(err)
	}
	var dana, erin struct{ ID string }
	json.Unmarshal([]byte(mustRun(t, dir, "entity", "create", "Dana", "--tenant", tn.ID, "--email", "dana@example.com", "--json").stdout), &dana)
	json.Unmarshal([]byte(mustRun(t, dir, "entity", "create", "Erin", "--tenant", tn.ID, "--json").stdout), &erin)

	// The operator issues a reset token; Dana sets her password with it,
	// once.
	var reset struct{ Token string }
	if err := json.Unmarshal([]byte(mustRun(t, dir, "entity", "password-reset", dana.ID, "--tenant", tn.ID, "--json").stdout), &reset); err != nil || !strings.HasPrefix(reset.Token, "bhp_") {
		t.Fatalf("password-reset: %q %v", reset.Token, err)
	}
	redeem := `{"token":"` + reset.Token + `","new_password":"correct horse battery"}`
	if code, raw := api(t, s.base, "", "POST", "/v1/tenants/"+tn.ID+"/auth/password-reset", redeem); code != 204 {
		t.Fatalf("redeem: %d %s", code, raw)
	}
	if code, _ := api(t, s.base, "", "POST", "/v1/tenants/"+tn.ID+"/auth/password-reset", redeem); code != 401 {
		t.Errorf("redeem again: %d, want 401", code)
	}
	login := func() (string, int) {
		t.Helper()
		code, raw := api(t, s.base, "", "POST", "/v1/tenants/"+tn.ID+"/auth/login", `{"email":"dana@example.com","password":"correct horse battery"}`)
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		json.Unmarshal(raw, &tok)
		return tok.AccessToken, code
	}
	session, code := login()
	if code != 200 {
		t.Fatalf("login: %d", code)
	}
	minted := strings.TrimSpace(mustRun(t, dir, "token", "mint", "--tenant", tn.ID, "--entity", dana.ID).stdout)
	erinTok := strings.TrimSpace(mustRun(t, dir, "token", "mint", "--tenant", tn.ID, "--entity", erin.ID).stdout)
	var key struct{ Key, ID string }
	json.Unmarshal([]byte(mustRun(t, dir, "apikey", "create", "--tenant", tn.ID, "--entity", dana.ID, "--json").stdout), &key)

	creds := map[string]string{"session": session, "minted": minted, "key": key.Key}
	expect := func(step string, want map[string]int) {
		t.Helper()
		for name, cred := range creds {
			if code, raw := api(t, s.base, cred, "GET", "/v1/me", ""); code != want[name] {
				t.Errorf("%s: dana's %s: %d %s, want %d", step, name, code, raw, want[name])
			}
		}
		if code, _ := api(t, s.base, erinTok, "GET", "/v1/me", ""); code != want["erin"] {
			t.Errorf("%s: erin: %d, want %d", step, code, want["erin"])
		}
	}
	expect("start", map[string]int{"session": 200, "minted": 200, "key": 200, "erin": 200})

	mustRun(t, dir, "entity", "disable", dana.ID, "--tenant", tn.ID)
	expect("dana disabled", map[string]int{"session": 401, "minted": 401, "key": 401, "erin": 200})
	mustRun(t, dir, "entity", "enable", dana.ID, "--tenant", tn.ID)
	expect("dana enabled", map[string]int{"session": 200, "minted": 200, "key": 200, "erin": 200})

	// The leaked key, named by its public part only.
	pub := "bhk_" + strings.ReplaceAll(tn.ID, "-", "") + "_" + strings.ReplaceAll(key.ID, "-", "")
	if r := mustRun(t, dir, "apikey", "revoke", pub); !strings.Contains(r.stdout, "revoked API key "+key.ID) {
		t.Errorf("apikey revoke: %s", r)
	}
	expect("key revoked", map[string]int{"session": 200, "minted": 200, "key": 401, "erin": 200})
	if out := mustRun(t, dir, "apikey", "list", "--tenant", tn.ID, "--entity", dana.ID).stdout; !strings.Contains(out, key.ID) || strings.Contains(out, key.Key) {
		t.Errorf("apikey list: %s", out)
	}

	mustRun(t, dir, "entity", "revoke-sessions", dana.ID, "--tenant", tn.ID)
	expect("sessions revoked", map[string]int{"session": 401, "minted": 401, "key": 401, "erin": 200})
	if fresh, code := login(); code != 200 {
		t.Errorf("login after revoke-sessions: %d", code)
	} else {
		creds["fresh"] = fresh
	}

	mustRun(t, dir, "tenant", "disable", tn.ID)
	if _, code := login(); code != 401 {
		t.Errorf("login into the disabled tenant: %d, want 401", code)
	}
	expect("tenant disabled", map[string]int{"session": 401, "minted": 401, "key": 401, "fresh": 401, "erin": 401})
	mustRun(t, dir, "tenant", "enable", tn.ID)
	expect("tenant enabled", map[string]int{"session": 401, "minted": 401, "key": 401, "fresh": 200, "erin": 200})

	mustRun(t, dir, "entity", "delete", dana.ID, "--tenant", tn.ID)
	expect("dana deleted", map[string]int{"session": 401, "minted": 401, "key": 401, "fresh": 401, "erin": 200})
	if r := run(t, dir, nil, "entity", "delete", dana.ID, "--tenant", tn.ID); r.code == 0 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("deleting a deleted entity: %s, want a not-found failure", r)
	}
	for _, args := range [][]string{
		{"entity", "disable", "nope", "--tenant", tn.ID},
		{"entity", "disable", erin.ID},
		{"apikey", "revoke", "bhk_zz"},
		{"apikey", "revoke", key.ID},
		{"entity", "password-reset", erin.ID, "--tenant", tn.ID}, // no login
	} {
		if r := run(t, dir, nil, args...); r.code == 0 {
			t.Errorf("bulkhead %s: exit 0, want a failure: %s", strings.Join(args, " "), r)
		}
	}
	s.interrupt(t)
}
