package main

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/jackc/pgx/v5"
)

// Issue 17, scenario 2, continued: bulkhead killed (SIGKILL) in the middle
// of a KEK rotation, a re-embedding and a tenant import. Each kill point is
// found deterministically: the test serves the dependency the command is
// waiting on (a Vault transit key, an embeddings endpoint), holds the
// request once the database shows the command has made progress, and kills
// the command while it waits.

// fakeVault is a HashiCorp Vault transit engine over TLS (one AES-GCM key)
// for KEK URIs hcvault://HOST/transit/keys/kek. hold, when set, is asked
// before each encryption: if it says so the request waits until release
// is closed (and then fails).
type fakeVault struct {
	srv     *httptest.Server
	env     []string // for the bulkhead processes: trust its certificate, a token
	uri     string
	mu      sync.Mutex
	hold    func() bool
	release chan struct{}
}

func startFakeVault(t *testing.T) *fakeVault {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	v := &fakeVault{release: make(chan struct{})}
	v.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Plaintext, Ciphertext, Context string }
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		ad, _ := base64.StdEncoding.DecodeString(req.Context)
		data := map[string]string{}
		switch r.URL.Path {
		case "/v1/transit/encrypt/kek":
			v.mu.Lock()
			hold := v.hold
			v.mu.Unlock()
			if hold != nil && hold() {
				<-v.release
				http.Error(w, "released", 503)
				return
			}
			pt, _ := base64.StdEncoding.DecodeString(req.Plaintext)
			nonce := make([]byte, gcm.NonceSize())
			rand.Read(nonce)
			data["ciphertext"] = "vault:v1:" + base64.StdEncoding.EncodeToString(gcm.Seal(nonce, nonce, pt, ad))
		case "/v1/transit/decrypt/kek":
			raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(req.Ciphertext, "vault:v1:"))
			if err != nil || len(raw) < gcm.NonceSize() {
				http.Error(w, "bad ciphertext", 400)
				return
			}
			pt, err := gcm.Open(nil, raw[:gcm.NonceSize()], raw[gcm.NonceSize():], ad)
			if err != nil {
				http.Error(w, "does not decrypt", 400)
				return
			}
			data["plaintext"] = base64.StdEncoding.EncodeToString(pt)
		default:
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"data": data})
	}))
	t.Cleanup(func() {
		v.unhold()
		v.srv.Close()
	})
	ca := filepath.Join(t.TempDir(), "vault-ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: v.srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	v.env = []string{"SSL_CERT_FILE=" + ca, "VAULT_TOKEN=test-token"}
	v.uri = "hcvault://" + strings.TrimPrefix(v.srv.URL, "https://") + "/transit/keys/kek"
	return v
}

func (v *fakeVault) setHold(f func() bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.hold = f
}

// unhold lets held and later requests through (idempotent).
func (v *fakeVault) unhold() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.hold = nil
	select {
	case <-v.release:
	default:
		close(v.release)
	}
}

// superuser connects to dir's running cluster as the superuser.
func superuser(t *testing.T, dir string) *pgx.Conn {
	t.Helper()
	var info struct {
		SuperuserDSN string `json:"superuser_dsn"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, dir, "db", "info", "--json").stdout), &info); err != nil || info.SuperuserDSN == "" {
		t.Fatalf("db info: %v", err)
	}
	conn := testdb.MustConnect(t, info.SuperuserDSN)
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// lockedConn is a connection the test and a fake dependency's handler
// share.
type lockedConn struct {
	mu   sync.Mutex
	conn *pgx.Conn
}

func (c *lockedConn) count(sql string, args ...any) (n int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	err = c.conn.QueryRow(context.Background(), sql, args...).Scan(&n)
	return n, err
}

// tenantWithDocs creates a tenant with a user through the running server
// and posts n confidential documents as that user; it returns the user's
// token and the documents (id -> content).
func tenantWithDocs(t *testing.T, dir, base, name string, n int) (tenant, tok string, docs map[string]string) {
	t.Helper()
	idOf := func(r result) string {
		t.Helper()
		var v struct{ ID string }
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.ID == "" {
			t.Fatalf("%s", r)
		}
		return v.ID
	}
	tenant = idOf(mustRun(t, dir, "tenant", "create", name, "--json"))
	user := idOf(mustRun(t, dir, "entity", "create", "owner", "--tenant", tenant, "--json"))
	tok = strings.TrimSpace(mustRun(t, dir, "token", "mint", "--tenant", tenant, "--entity", user).stdout)
	docs = map[string]string{}
	for i := range n {
		content := fmt.Sprintf("%s confidential report %d about the quarterly figures of %s", name, i, name)
		code, raw := api(t, base, tok, "POST", "/v1/documents", string(mustJSON(map[string]any{"title": fmt.Sprintf("%s %d", name, i), "content": content, "confidential": true})))
		var d struct{ ID string }
		if code != 201 || json.Unmarshal(raw, &d) != nil {
			t.Fatalf("POST /v1/documents: %d %s", code, raw)
		}
		docs[d.ID] = content
	}
	return tenant, tok, docs
}

// TestKEKRotationKilledMidway: keys rotate-kek moves five tenants' keysets
// from the local KEK file to a Vault transit key. The rotation and the
// server beside it are killed (SIGKILL) once the database shows some
// keysets re-wrapped and others not: afterwards every keyset is wrapped by
// the old or the new KEK (none lost, none half-written), running the same
// command again re-wraps exactly the rest and reports no failure, and with
// the new KEK alone every tenant's confidential documents open.
func TestKEKRotationKilledMidway(t *testing.T) {
	dir := mustDataDir(t)
	vault := startFakeVault(t)
	addr := freeAddr(t)
	s := startServe(t, dir, addr, vault.env, "--addr", addr, "--rate-per-entity", "0")
	type owner struct {
		tok  string
		docs map[string]string
	}
	var owners []owner
	for i := range 5 {
		_, tok, docs := tenantWithDocs(t, dir, s.base, fmt.Sprintf("tenant%d", i), 2)
		owners = append(owners, owner{tok, docs})
	}
	db := &lockedConn{conn: superuser(t, dir)}
	const byKEK = `SELECT count(*) FROM bulkhead_keys.keysets WHERE kek_id = $1`
	total, err := db.count(`SELECT count(*) FROM bulkhead_keys.keysets`)
	if err != nil || total != 5 {
		t.Fatalf("%d keysets before the rotation (%v), want 5", total, err)
	}
	var oldKEK string
	db.mu.Lock()
	err = db.conn.QueryRow(context.Background(), `SELECT kek_id FROM bulkhead_keys.kek_check`).Scan(&oldKEK)
	db.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}

	// Hold the first wrap under the new KEK that comes after at least one
	// keyset was saved under it (the first encryption is RecordKEK's check
	// value, before any keyset).
	killPoint := make(chan struct{})
	var once sync.Once
	vault.setHold(func() bool {
		n, err := db.count(byKEK, vault.uri)
		if err != nil || n == 0 || n == total {
			return false
		}
		once.Do(func() { close(killPoint) })
		return true
	})
	rot := command(context.Background(), dir, vault.env, "keys", "rotate-kek", "--to-uri", vault.uri)
	var rotErr syncBuffer
	rot.Stdout, rot.Stderr = &rotErr, &rotErr
	if err := rot.Start(); err != nil {
		t.Fatal(err)
	}
	rotDone := make(chan struct{})
	go func() { rot.Wait(); close(rotDone) }()
	select {
	case <-killPoint:
	case <-rotDone:
		t.Fatalf("keys rotate-kek ended before the kill point:\n%s", rotErr.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("keys rotate-kek: no kill point within a minute:\n%s", rotErr.String())
	}
	rot.Process.Signal(syscall.SIGKILL)
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-rotDone
	<-s.done
	vault.unhold()
	assertNoProcesses(t, dir)

	// Every keyset is wrapped by one KEK or the other; some by each.
	mustRun(t, dir, "db", "start") // the cluster died with serve
	db = &lockedConn{conn: superuser(t, dir)}
	newN, err1 := db.count(byKEK, vault.uri)
	oldN, err2 := db.count(byKEK, oldKEK)
	if err1 != nil || err2 != nil || newN+oldN != total || newN == 0 || oldN == 0 {
		t.Fatalf("after the kill: %d keysets under the new KEK, %d under the old, %d in all (%v %v); want some of each, none lost", newN, oldN, total, err1, err2)
	}
	t.Logf("killed with %d of %d keysets re-wrapped; rotate-kek said: %q", newN, total, lastLine(rotErr.String()))

	// The same command again (the old KEK still configured) finishes: it
	// re-wraps exactly the rest, skips the others, fails none.
	r := run(t, dir, vault.env, "keys", "rotate-kek", "--to-uri", vault.uri)
	want := fmt.Sprintf("%d keysets re-wrapped, %d already were, 0 failed", oldN, newN)
	if r.code != 0 || !strings.Contains(r.stdout, want) {
		t.Fatalf("keys rotate-kek again: want %q\n%s", want, r)
	}
	if n, err := db.count(byKEK, vault.uri); err != nil || n != total {
		t.Fatalf("after the resumed rotation %d of %d keysets are under the new KEK (%v)", n, total, err)
	}
	mustRun(t, dir, "db", "stop")

	// Only the new KEK from now on: every sealed value opens.
	env := append([]string{"BULKHEAD_KEK_URI=" + vault.uri}, vault.env...)
	s = startServe(t, dir, addr, env, "--addr", addr)
	for _, o := range owners {
		if n := readAll(t, s.base, o.tok, o.docs); n != 0 {
			t.Errorf("%d of %d confidential documents do not open under the new KEK", n, len(o.docs))
		}
	}
	s.interrupt(t)
	assertNoProcesses(t, dir)
}
