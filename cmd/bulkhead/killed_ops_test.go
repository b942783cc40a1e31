package main

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead/internal/syncbuf"
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
func tenantWithDocs(t *testing.T, dir, base, name string, n int) (tenant, user, tok string, docs map[string]string) {
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
	user = idOf(mustRun(t, dir, "entity", "create", "owner", "--tenant", tenant, "--json"))
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
	return tenant, user, tok, docs
}

// TestKEKRotationKilledMidway: keys rotate-kek moves five tenants' keysets
// from the local KEK file to a Vault transit key. The rotation and the
// server beside it are killed (SIGKILL) once the database shows some
// keysets re-wrapped and others not: afterwards every keyset is wrapped by
// the old or the new KEK (none lost, none half-written). Resumed with only
// the new KEK configured, the rest fail without change and the error names
// the way out; serve with the old KEK refuses to start. Running the same
// command again (old KEK configured) re-wraps exactly the rest and reports
// no failure, and with the new KEK alone every tenant's confidential
// documents open.
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
		_, _, tok, docs := tenantWithDocs(t, dir, s.base, fmt.Sprintf("tenant%d", i), 2)
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
	var rotErr syncbuf.Buffer
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

	// Resumed with only the new KEK configured, the keysets still under
	// the old one can't be opened: they fail, nothing changes, and the
	// error says to run with the previous KEK. A server started now with
	// the old KEK refuses to start.
	newOnly := append([]string{"BULKHEAD_KEK_URI=" + vault.uri}, vault.env...)
	r := run(t, dir, newOnly, "keys", "rotate-kek", "--to-uri", vault.uri)
	if r.code == 0 || !strings.Contains(r.stdout, fmt.Sprintf("0 keysets re-wrapped, %d already were, %d failed", newN, oldN)) || !strings.Contains(r.stderr, "with the previous KEK configured") {
		t.Errorf("keys rotate-kek resumed with the new KEK only: want %d failures and a pointer to the previous KEK\n%s", oldN, r)
	}
	if n, err := db.count(byKEK, vault.uri); err != nil || n != newN {
		t.Fatalf("the failed resume changed the keysets: %d under the new KEK, was %d (%v)", n, newN, err)
	}
	if r := run(t, dir, vault.env, "serve", "--addr", addr); r.code == 0 || !strings.Contains(r.stderr, "key-encryption key") {
		t.Errorf("serve with the old KEK mid-rotation: %s", r)
	}

	// The same command again (the old KEK still configured) finishes: it
	// re-wraps exactly the rest, skips the others, fails none.
	r = run(t, dir, vault.env, "keys", "rotate-kek", "--to-uri", vault.uri)
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

// heldEmbeddings is fakeEmbeddings (8 dimensions, hashed words) whose
// requests can be held: while hold() says so, a request signals arrived
// (once) and waits until unhold.
type heldEmbeddings struct {
	url     string
	mu      sync.Mutex
	hold    func() bool
	arrived chan struct{}
	once    sync.Once
	release chan struct{}
	calls   int
	texts   int // embedded and answered
}

// embedded returns how many texts the endpoint has answered.
func (e *heldEmbeddings) embedded() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.texts
}

func startHeldEmbeddings(t *testing.T) *heldEmbeddings {
	t.Helper()
	e := &heldEmbeddings{arrived: make(chan struct{}), release: make(chan struct{})}
	inner := strings.TrimSuffix(fakeEmbeddings(t), "/v1")
	target, err := http.NewRequest("GET", inner, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.calls++
		hold := e.hold
		e.mu.Unlock()
		if hold != nil && hold() {
			e.once.Do(func() { close(e.arrived) })
			<-e.release
			http.Error(w, "released", 503)
			return
		}
		body, _ := io.ReadAll(r.Body)
		var in struct{ Input []string }
		json.Unmarshal(body, &in)
		req, _ := http.NewRequest(r.Method, target.URL.String()+r.URL.Path, bytes.NewReader(body))
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), 502)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
		e.mu.Lock()
		e.texts += len(in.Input)
		e.mu.Unlock()
	}))
	t.Cleanup(func() {
		e.unhold()
		srv.Close()
	})
	e.url = srv.URL + "/v1"
	return e
}

func (e *heldEmbeddings) setHold(f func() bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.hold = f
}

func (e *heldEmbeddings) unhold() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.hold = nil
	select {
	case <-e.release:
	default:
		close(e.release)
	}
}

// killAt starts cmd (its output going to out), waits until point is closed, kills cmd with SIGKILL
// and waits for it; it fails the test if cmd ends first or the point does
// not come within a minute.
func killAt(t *testing.T, cmd *exec.Cmd, out *syncbuf.Buffer, point <-chan struct{}) string {
	t.Helper()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-point:
	case <-done:
		t.Fatalf("%s ended before the kill point:\n%s", strings.Join(cmd.Args, " "), out.String())
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("%s: no kill point within a minute:\n%s", strings.Join(cmd.Args, " "), out.String())
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
	return out.String()
}

// TestTenantImportKilledMidway: a tenant (a room with messages,
// confidential and plain documents) is exported on A and imported on B
// with --reembed; the import is killed (SIGKILL) while it waits on B's
// embedding model, that is after the rows and the keys were committed and
// before any vector was stored. What it left on B is a disabled tenant
// that a token of its user does not open; running the same import again replaces it and
// succeeds, and on B every exported message and document opens, retrieval
// finds the documents, and the tenant has one keyset, one tenant key and
// one collection.
func TestTenantImportKilledMidway(t *testing.T) {
	dirA, dirB := mustDataDir(t), mustDataDir(t)
	addrA := freeAddr(t)
	sA := startServe(t, dirA, addrA, nil, "--addr", addrA, "--rate-per-entity", "0")
	tenant, user, tokA, docs := tenantWithDocs(t, dirA, sA.base, "acme", 4)
	code, raw := api(t, sA.base, tokA, "POST", "/v1/documents", `{"title":"plain","content":"the initech merger plan in plain text"}`)
	var plain struct{ ID string }
	if code != 201 || json.Unmarshal(raw, &plain) != nil {
		t.Fatalf("POST /v1/documents: %d %s", code, raw)
	}
	docs[plain.ID] = "the initech merger plan in plain text"
	code, raw = api(t, sA.base, tokA, "POST", "/v1/worlds", `{"name":"hq"}`)
	var world, room struct{ ID string }
	if code != 201 || json.Unmarshal(raw, &world) != nil {
		t.Fatalf("POST /v1/worlds: %d %s", code, raw)
	}
	code, raw = api(t, sA.base, tokA, "POST", "/v1/rooms", `{"world_id":"`+world.ID+`","name":"board"}`)
	if code != 201 || json.Unmarshal(raw, &room) != nil {
		t.Fatalf("POST /v1/rooms: %d %s", code, raw)
	}
	messages := "/v1/rooms/" + room.ID + "/messages"
	for i := range 3 {
		if code, raw := api(t, sA.base, tokA, "POST", messages, fmt.Sprintf(`{"content":"board message %d"}`, i)); code != 201 {
			t.Fatalf("POST %s: %d %s", messages, code, raw)
		}
	}
	_, history := api(t, sA.base, tokA, "GET", messages, "")
	sA.interrupt(t)

	// B embeds with a model A does not run: the import re-embeds.
	emb := startHeldEmbeddings(t)
	envB := []string{"BULKHEAD_EMBEDDER=openai", "BULKHEAD_OPENAI_BASE_URL=" + emb.url, "BULKHEAD_EMBEDDING_MODEL=fake8", "BULKHEAD_EMBEDDING_DIM=8"}
	pubB := filepath.Join(t.TempDir(), "b.pub")
	mustRun(t, dirB, "tenant", "import-key", "--out", pubB)
	archive := filepath.Join(t.TempDir(), "acme.bhx")
	mustRun(t, dirA, "tenant", "export", tenant, "--to", pubB, "--out", archive)

	emb.setHold(func() bool { return true })
	out := killAt(t, command(context.Background(), dirB, envB, "tenant", "import", archive, "--reembed"), &syncbuf.Buffer{}, emb.arrived)
	emb.unhold()
	assertNoProcesses(t, dirB)
	t.Logf("import killed while waiting on the embedding model; it had printed: %q", lastLine(out))

	// What the kill left: the rows and keys, disabled (no credential
	// opens it), marked as an unfinished import.
	mustRun(t, dirB, "db", "start")
	conn := superuser(t, dirB)
	var disabled bool
	var keysets, completes int
	if err := conn.QueryRow(context.Background(), `SELECT disabled_at IS NOT NULL,
		(SELECT count(*) FROM bulkhead_keys.keysets WHERE tenant_id = $1),
		(SELECT count(*) FROM bulkhead.audit_log WHERE tenant_id = $1 AND action = 'tenant.import' AND target = 'complete')
		FROM bulkhead.tenants WHERE id = $1`, tenant).Scan(&disabled, &keysets, &completes); err != nil {
		t.Fatalf("the tenant's rows on B after the kill: %v", err)
	}
	if !disabled || completes != 0 {
		t.Fatalf("after the kill the tenant on B: disabled %v, %d 'complete' import records; want a disabled, unfinished import", disabled, completes)
	}
	t.Logf("the kill left the tenant's rows disabled on B, with %d keysets", keysets)
	conn.Close(context.Background())
	mustRun(t, dirB, "db", "stop")
	// Served meanwhile, nothing of it opens: a token of its user is refused.
	addrB := freeAddr(t)
	sB := startServe(t, dirB, addrB, envB, "--addr", addrB)
	if r := run(t, dirB, envB, "token", "mint", "--tenant", tenant, "--entity", user); r.code == 0 {
		if code, raw := api(t, sB.base, strings.TrimSpace(r.stdout), "GET", messages, ""); code != 401 {
			t.Errorf("the half-imported tenant's messages with a token of its user: %d %s, want 401", code, raw)
		}
		t.Log("a token minted for the half-imported tenant's user is refused (401)")
	} else {
		t.Logf("token mint for the half-imported tenant refused: %s", lastLine(r.stderr))
	}
	sB.interrupt(t)

	// The same import again replaces what was left and finishes.
	r := run(t, dirB, envB, "tenant", "import", archive, "--reembed")
	var sum struct {
		Replaced   bool `json:"replaced_unfinished_import"`
		Reembedded struct{ Chunks, Added int }
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &sum) != nil || !sum.Replaced || sum.Reembedded.Added == 0 || sum.Reembedded.Added != sum.Reembedded.Chunks {
		t.Fatalf("import again after the kill: %+v\n%s", sum, r)
	}
	if r := run(t, dirB, envB, "tenant", "import", archive, "--reembed"); r.code == 0 || !strings.Contains(r.stderr, "already exists") {
		t.Errorf("a third import of the now complete tenant: %s", r)
	}

	// B serves the whole tenant.
	sB = startServe(t, dirB, addrB, envB, "--addr", addrB)
	tokB := strings.TrimSpace(mustRun(t, dirB, "token", "mint", "--tenant", tenant, "--entity", user).stdout)
	if code, got := api(t, sB.base, tokB, "GET", messages, ""); code != 200 || string(got) != string(history) {
		t.Errorf("room history on B: %d\n%s\nwant (A):\n%s", code, got, history)
	}
	if n := readAll(t, sB.base, tokB, docs); n != 0 {
		t.Errorf("%d of %d exported documents do not open on B", n, len(docs))
	}
	if code, q := api(t, sB.base, tokB, "POST", "/v1/query", `{"query":"initech merger plan"}`); code != 200 || !strings.Contains(string(q), plain.ID) {
		t.Errorf("retrieval on B: %d %s", code, q)
	}
	sB.interrupt(t)
	mustRun(t, dirB, "db", "start")
	conn = superuser(t, dirB)
	if err := conn.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM bulkhead_keys.keysets WHERE tenant_id = $1),
		(SELECT count(*) FROM bulkhead.audit_log WHERE tenant_id = $1 AND action = 'tenant.import' AND target = 'complete')`, tenant).Scan(&keysets, &completes); err != nil {
		t.Fatal(err)
	}
	conn.Close(context.Background())
	mustRun(t, dirB, "db", "stop")
	keyFiles, _ := filepath.Glob(filepath.Join(dirB, "tenant-keys", tenant+"*"))
	colls := generations(t, dirB, tenant)
	if keysets != 1 || completes != 1 || len(keyFiles) != 1 || len(colls) != 1 {
		t.Errorf("on B the tenant has %d keysets, %d completed imports, tenant key files %v, collections %v; want 1 of each", keysets, completes, keyFiles, colls)
	}
}

// generations lists the collection generations the embedded vector store
// holds on disk for tenant (its files are TENANT.gN.log and TENANT.gN.vec).
func generations(t *testing.T, dir, tenant string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "vectors", "default", tenant+".*"))
	if err != nil {
		t.Fatal(err)
	}
	var gens []string
	for _, f := range files {
		g := strings.Split(strings.TrimPrefix(filepath.Base(f), tenant+"."), ".")[0]
		if !slices.Contains(gens, g) {
			gens = append(gens, g)
		}
	}
	slices.Sort(gens)
	return gens
}

// knowledgeOf returns the tenant's current collection generation and
// embedding model as its row records them (starting and stopping dir's
// cluster around the query).
func knowledgeOf(t *testing.T, dir, tenant string) (gen int, model string) {
	t.Helper()
	mustRun(t, dir, "db", "start")
	conn := superuser(t, dir)
	if err := conn.QueryRow(context.Background(), `SELECT vector_generation, coalesce(embedding_model, '') FROM bulkhead.tenants WHERE id = $1`, tenant).Scan(&gen, &model); err != nil {
		t.Fatal(err)
	}
	conn.Close(context.Background())
	mustRun(t, dir, "db", "stop")
	return gen, model
}

// TestReembedKilledMidway: a tenant with 70 documents is re-embedded from
// the built-in model to another one (an OpenAI-compatible endpoint the
// test serves). tenant reembed is killed (SIGKILL) twice: first while
// building the new generation, once the endpoint has embedded a whole
// page of chunks (so the new generation holds some points, not all); then,
// run again, after it switched the tenant to the new generation and before
// it dropped the old one. After each kill the tenant's row names one
// generation and its model, that generation holds exactly one point per
// chunk (tenant reconcile adds and removes nothing), and queries find every
// probed document; the only other collection on disk is the neighbouring
// generation Reembed itself drops when run again. Run a third time, it
// converges: one generation, the new model, nothing to reconcile.
func TestReembedKilledMidway(t *testing.T) {
	dir := mustDataDir(t)
	emb := startHeldEmbeddings(t)
	env := []string{"BULKHEAD_OPENAI_BASE_URL=" + emb.url, "BULKHEAD_EMBEDDING_MODEL=fake8", "BULKHEAD_EMBEDDING_DIM=8"}
	addr := freeAddr(t)
	s := startServe(t, dir, addr, env, "--addr", addr, "--rate-per-entity", "0")
	tenant, _, tok, _ := tenantWithDocs(t, dir, s.base, "acme", 0)
	const docs = 70               // more than one reconcile page (64 chunks)
	probes := map[string]string{} // codeword -> document id
	for i := range docs {
		word := fmt.Sprintf("zq%dx", i)
		code, raw := api(t, s.base, tok, "POST", "/v1/documents", fmt.Sprintf(`{"title":"note %d","content":"note %d: the codeword is %s"}`, i, i, word))
		var d struct{ ID string }
		if code != 201 || json.Unmarshal(raw, &d) != nil {
			t.Fatalf("POST /v1/documents: %d %s", code, raw)
		}
		if i%10 == 3 {
			probes[word] = d.ID
		}
	}
	s.interrupt(t)

	// answers checks that queries find every probed document.
	answers := func(when string) {
		t.Helper()
		s := startServe(t, dir, addr, env, "--addr", addr, "--rate-per-entity", "0")
		for word, id := range probes {
			if code, raw := api(t, s.base, tok, "POST", "/v1/query", `{"query":"`+word+`"}`); code != 200 || !strings.Contains(string(raw), id) {
				t.Errorf("%s: query %q: %d %s", when, word, code, raw)
			}
		}
		s.interrupt(t)
	}
	// converged checks the tenant's row and what is on disk, and that the
	// current generation holds one point per chunk.
	converged := func(when string, wantGen int, wantModel string, wantOnDisk ...string) {
		t.Helper()
		if gen, model := knowledgeOf(t, dir, tenant); gen != wantGen || model != wantModel {
			t.Errorf("%s: the tenant is at generation %d, model %q; want %d, %q", when, gen, model, wantGen, wantModel)
		}
		if g := generations(t, dir, tenant); !slices.Equal(g, wantOnDisk) {
			t.Errorf("%s: generations on disk %v, want %v", when, g, wantOnDisk)
		}
		var rec struct{ Chunks, Added, Removed int }
		r := run(t, dir, env, "tenant", "reconcile", tenant)
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &rec) != nil || rec.Chunks < docs || rec.Added != 0 || rec.Removed != 0 {
			t.Errorf("%s: tenant reconcile: %+v (want nothing added or removed over %d+ chunks)\n%s", when, rec, docs, r)
		}
	}
	reembed := func() *exec.Cmd {
		return command(context.Background(), dir, env, "tenant", "reembed", tenant, "--model", "openai:fake8")
	}

	// Kill 1: building generation 2, after a page of chunks was embedded
	// (and stored: the next page's request comes after the store).
	emb.setHold(func() bool { return emb.embedded() >= 64 })
	out := killAt(t, reembed(), &syncbuf.Buffer{}, emb.arrived)
	emb.unhold()
	assertNoProcesses(t, dir)
	t.Logf("kill 1 after %d texts embedded for generation 2; reembed had printed: %q", emb.embedded(), lastLine(out))
	converged("killed while building", 1, "local-lexical-v1", "g1", "g2")
	answers("killed while building")

	// Kill 2: the same command again, killed once it says it switched.
	var buf syncbuf.Buffer
	switched := make(chan struct{})
	stop := make(chan struct{})
	go func() {
		for !strings.Contains(buf.String(), "knowledge collection switched") {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
		close(switched)
	}()
	out = killAt(t, reembed(), &buf, switched)
	close(stop)
	assertNoProcesses(t, dir)
	t.Logf("kill 2 after the switch; reembed had printed: %q", lastLine(out))
	converged("killed after the switch", 2, "openai:fake8", "g1", "g2")
	answers("killed after the switch")

	// Run again to the end: one generation left.
	if r := run(t, dir, env, "tenant", "reembed", tenant, "--model", "openai:fake8"); r.code != 0 {
		t.Fatalf("tenant reembed after two kills: %s", r)
	}
	converged("re-run to the end", 3, "openai:fake8", "g3")
	answers("re-run to the end")
	assertNoProcesses(t, dir)
}
