package main

import (
	"bytes"
	"context"
	"encoding/json"
	"hash/fnv"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkhead-dev/bulkhead/fieldcrypt"
	"github.com/bulkhead-dev/bulkhead/internal/testdb"
)

// TestTenantExportImportRoundTrip (issue 12 item 5): two bulkheads, each
// with its own cluster, KEK and tenant key directory. A tenant with a
// user, a world, a room, messages and a confidential document (chunks,
// vectors) is exported on A to B's recipient key and imported on B. On B
// its owner reads the same messages, the confidential document opens to
// the same plaintext and retrieval finds it; B's other tenant sees none of
// it. The archive holds no plaintext; a tampered, truncated or foreign
// archive is refused with nothing imported; importing twice is refused.
func TestTenantExportImportRoundTrip(t *testing.T) {
	dirA, dirB := mustDataDir(t), mustDataDir(t)
	idOf := func(r result) string {
		t.Helper()
		var v struct{ ID string }
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.ID == "" {
			t.Fatalf("%s", r)
		}
		return v.ID
	}
	call := func(base, tok, method, path, body string, want int) map[string]any {
		t.Helper()
		code, raw := api(t, base, tok, method, path, body)
		if code != want {
			t.Fatalf("%s %s: %d %s, want %d", method, path, code, raw, want)
		}
		var m map[string]any
		json.Unmarshal(raw, &m)
		return m
	}
	const secret = "Acme acquires Initech for 42 million: confidential merger terms"
	const message = "the board meets on thursday about the initech deal"

	// A: the tenant to move.
	addrA := freeAddr(t)
	sA := startServe(t, dirA, addrA, nil, "--addr", addrA)
	tenant := idOf(mustRun(t, dirA, "tenant", "create", "acme", "--json"))
	alice := idOf(mustRun(t, dirA, "entity", "create", "alice", "--tenant", tenant, "--email", "alice@acme.test", "--json"))
	tokA := strings.TrimSpace(mustRun(t, dirA, "token", "mint", "--tenant", tenant, "--entity", alice).stdout)
	world := call(sA.base, tokA, "POST", "/v1/worlds", `{"name":"hq"}`, 201)
	room := call(sA.base, tokA, "POST", "/v1/rooms", `{"world_id":"`+world["id"].(string)+`","name":"board"}`, 201)
	messages := "/v1/rooms/" + room["id"].(string) + "/messages"
	call(sA.base, tokA, "POST", messages, `{"content":"`+message+`"}`, 201)
	doc := call(sA.base, tokA, "POST", "/v1/documents", string(mustJSON(map[string]any{"title": "merger", "content": secret, "confidential": true})), 201)
	docPath := "/v1/documents/" + doc["id"].(string)
	historyA := string(mustJSON(call(sA.base, tokA, "GET", messages, "", 200)))
	queryA := string(mustJSON(call(sA.base, tokA, "POST", "/v1/query", `{"query":"initech merger terms"}`, 200)))
	if !strings.Contains(queryA, doc["id"].(string)) {
		t.Fatalf("retrieval on A does not find the document: %s", queryA)
	}
	sA.interrupt(t)

	// B: its recipient key, and a tenant of its own.
	pubB := filepath.Join(t.TempDir(), "b.pub")
	mustRun(t, dirB, "tenant", "import-key", "--out", pubB)
	if fi, err := os.Stat(filepath.Join(dirB, "import-key.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("B's import key: %v %v", fi, err)
	}
	pubA := filepath.Join(t.TempDir(), "a.pub")
	mustRun(t, dirA, "tenant", "import-key", "--out", pubA)
	other := idOf(mustRun(t, dirB, "tenant", "create", "globex", "--json"))
	bob := idOf(mustRun(t, dirB, "entity", "create", "bob", "--tenant", other, "--json"))

	// Export on A to B's key.
	work := t.TempDir()
	archive := filepath.Join(work, "acme.bhx")
	exp := mustRun(t, dirA, "tenant", "export", tenant, "--to", pubB, "--out", archive)
	var expSum struct {
		ArchiveSHA256 string `json:"archive_sha256"`
		Points        int
		Tables        map[string]struct{ Rows int }
	}
	// The summary is the JSON object on stderr, among log lines.
	if err := json.NewDecoder(strings.NewReader(exp.stderr[strings.Index(exp.stderr, "\n{")+1:])).Decode(&expSum); err != nil || expSum.ArchiveSHA256 == "" {
		t.Fatalf("export summary: %v %s", err, exp)
	}
	if expSum.Points == 0 || expSum.Tables["memories"].Rows != 1 || expSum.Tables["documents"].Rows != 1 || expSum.Tables["chunks"].Rows == 0 {
		t.Errorf("export summary: %+v", expSum)
	}
	a, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	for _, plain := range []string{secret, "Initech", message, "alice@acme.test", "board"} {
		if bytes.Contains(a, []byte(plain)) {
			t.Errorf("the archive holds %q in clear", plain)
		}
	}
	// Opened with B's import key, the payload carries the plaintext
	// columns (the message) but the confidential document only as the
	// ciphertext it is stored as.
	payload := openArchive(t, dirB, archive)
	if !bytes.Contains(payload, []byte(message)) || bytes.Contains(payload, []byte(secret)) || bytes.Contains(payload, []byte("Initech")) {
		t.Errorf("opened payload: holds the message %v, holds the confidential text %v", bytes.Contains(payload, []byte(message)), bytes.Contains(payload, []byte("Initech")))
	}

	// Bad archives on B: refused, nothing imported.
	refused := func(path, want string) {
		t.Helper()
		r := run(t, dirB, nil, "tenant", "import", path)
		if r.code == 0 || !strings.Contains(r.stderr, want) {
			t.Errorf("import %s: want refusal mentioning %q: %s", filepath.Base(path), want, r)
		}
		t.Logf("%s: %s", filepath.Base(path), lastLine(r.stderr))
		if l := mustRun(t, dirB, "tenant", "list").stdout; strings.Contains(l, tenant) {
			t.Fatalf("after a refused import, B lists the tenant:\n%s", l)
		}
	}
	bad := func(name string, b []byte) string {
		p := filepath.Join(work, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flipped := bytes.Clone(a)
	flipped[len(a)/2] ^= 1
	refused(bad("tampered.bhx", flipped), "tampered")
	refused(bad("truncated.bhx", a[:len(a)-200]), "does not open")
	refused(bad("garbage.bhx", []byte("hello")), "not a bulkhead tenant archive")
	refused(filepath.Join(work, "missing.bhx"), "no such file")
	foreign := filepath.Join(work, "to-a.bhx")
	mustRun(t, dirA, "tenant", "export", tenant, "--to", pubA, "--out", foreign)
	refused(foreign, "encrypted to recipient key")

	// The import.
	imp := mustRun(t, dirB, "tenant", "import", archive)
	var impSum struct {
		ArchiveSHA256 string `json:"archive_sha256"`
		Points        int
	}
	if err := json.Unmarshal([]byte(imp.stdout), &impSum); err != nil || impSum.ArchiveSHA256 != expSum.ArchiveSHA256 || impSum.Points != expSum.Points {
		t.Errorf("import summary %+v (%v), export %+v", impSum, err, expSum)
	}
	if r := run(t, dirB, nil, "tenant", "import", archive); r.code == 0 || !strings.Contains(r.stderr, "already exists") {
		t.Errorf("second import: %s", r)
	}
	if l := lineMentioning(mustRun(t, dirB, "keys", "status").stdout, tenant); !strings.Contains(l, "tenant-key") {
		t.Errorf("keys status on B: %q", l)
	}
	if _, err := os.Stat(filepath.Join(dirB, "tenant-keys", tenant+".key")); err != nil {
		t.Errorf("B has no tenant key for the imported tenant: %v", err)
	}

	// B serves it: the owner sees everything, the other tenant nothing.
	addrB := freeAddr(t)
	sB := startServe(t, dirB, addrB, nil, "--addr", addrB)
	tokB := strings.TrimSpace(mustRun(t, dirB, "token", "mint", "--tenant", tenant, "--entity", alice).stdout)
	tokOther := strings.TrimSpace(mustRun(t, dirB, "token", "mint", "--tenant", other, "--entity", bob).stdout)
	if got := string(mustJSON(call(sB.base, tokB, "GET", messages, "", 200))); got != historyA {
		t.Errorf("room history on B:\n%s\nwant (A):\n%s", got, historyA)
	}
	if d := call(sB.base, tokB, "GET", docPath, "", 200); d["content"] != secret {
		t.Errorf("confidential document on B: %v", d)
	}
	if q := string(mustJSON(call(sB.base, tokB, "POST", "/v1/query", `{"query":"initech merger terms"}`, 200))); !strings.Contains(q, doc["id"].(string)) {
		t.Errorf("retrieval on B does not find the document: %s", q)
	}
	call(sB.base, tokOther, "GET", docPath, "", 404)
	call(sB.base, tokOther, "GET", messages, "", 404)
	if q := string(mustJSON(call(sB.base, tokOther, "POST", "/v1/query", `{"query":"initech merger terms"}`, 200))); strings.Contains(q, doc["id"].(string)) || strings.Contains(q, "Initech") {
		t.Errorf("B's other tenant retrieves the imported tenant's document: %s", q)
	}
	if strings.Contains(sB.output(), secret) {
		t.Error("B's log holds the confidential plaintext")
	}

	// Both operations are in the tenant's audit log on B (the export's
	// record travelled with the rows).
	var info struct {
		SuperuserDSN string `json:"superuser_dsn"`
	}
	json.Unmarshal([]byte(mustRun(t, dirB, "db", "info", "--json").stdout), &info)
	conn := testdb.MustConnect(t, info.SuperuserDSN)
	defer conn.Close(context.Background())
	var exports, imports int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE action = 'tenant.export'), count(*) FILTER (WHERE action = 'tenant.import')
		FROM bulkhead.audit_log WHERE tenant_id = $1`, tenant).Scan(&exports, &imports); err != nil {
		t.Fatal(err)
	}
	if exports < 1 || imports != 2 {
		t.Errorf("audit log on B: %d tenant.export, %d tenant.import (want >= 1 and 2)", exports, imports)
	}
	sB.interrupt(t)
}

// fakeEmbeddings is an OpenAI-compatible embeddings endpoint: 8
// dimensions, a bag of words hashed into them (texts that share words are
// similar).
func fakeEmbeddings(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Input []string }
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		type item struct {
			Index     int       `json:"index"`
			Embedding []float32 `json:"embedding"`
		}
		var out struct {
			Data []item `json:"data"`
		}
		for i, text := range req.Input {
			v := make([]float32, 8)
			v[0] = 0.01
			for _, word := range strings.Fields(strings.ToLower(text)) {
				h := fnv.New32a()
				h.Write([]byte(strings.Trim(word, ".,:")))
				v[h.Sum32()%8]++
			}
			out.Data = append(out.Data, item{Index: i, Embedding: v})
		}
		json.NewEncoder(w).Encode(out)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/v1"
}

// TestTenantImportAcrossEmbeddingModels: A embeds with a model B does not
// run. Importing its vectors on B is refused, nothing imported; with
// --reembed the chunks (confidential ones opened with the imported keys)
// are embedded again with B's model, and retrieval on B finds the
// document.
func TestTenantImportAcrossEmbeddingModels(t *testing.T) {
	dirA, dirB := mustDataDir(t), mustDataDir(t)
	envA := []string{"BULKHEAD_EMBEDDER=openai", "BULKHEAD_OPENAI_BASE_URL=" + fakeEmbeddings(t), "BULKHEAD_EMBEDDING_MODEL=fake8", "BULKHEAD_EMBEDDING_DIM=8"}
	runA := func(args ...string) result {
		t.Helper()
		r := run(t, dirA, envA, args...)
		if r.code != 0 {
			t.Fatalf("bulkhead %s: %s", strings.Join(args, " "), r)
		}
		return r
	}
	idOf := func(r result) string {
		t.Helper()
		var v struct{ ID string }
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.ID == "" {
			t.Fatalf("%s", r)
		}
		return v.ID
	}
	const secret = "Acme acquires Initech for 42 million: confidential merger terms"
	addrA := freeAddr(t)
	sA := startServe(t, dirA, addrA, envA, "--addr", addrA)
	tenant := idOf(runA("tenant", "create", "acme", "--json"))
	alice := idOf(runA("entity", "create", "alice", "--tenant", tenant, "--json"))
	tok := strings.TrimSpace(runA("token", "mint", "--tenant", tenant, "--entity", alice).stdout)
	code, raw := api(t, sA.base, tok, "POST", "/v1/documents", string(mustJSON(map[string]any{"title": "merger", "content": secret, "confidential": true})))
	if code != 201 {
		t.Fatalf("POST /v1/documents: %d %s", code, raw)
	}
	var doc struct{ ID string }
	json.Unmarshal(raw, &doc)
	sA.interrupt(t)

	pubB := filepath.Join(t.TempDir(), "b.pub")
	mustRun(t, dirB, "tenant", "import-key", "--out", pubB)
	archive := filepath.Join(t.TempDir(), "acme.bhx")
	runA("tenant", "export", tenant, "--to", pubB, "--out", archive)

	r := run(t, dirB, nil, "tenant", "import", archive)
	if r.code == 0 || !strings.Contains(r.stderr, "openai:fake8") || !strings.Contains(r.stderr, "--reembed") {
		t.Errorf("import of another model's vectors: %s", r)
	}
	if l := mustRun(t, dirB, "tenant", "list").stdout; strings.Contains(l, tenant) {
		t.Fatalf("refused import left the tenant on B:\n%s", l)
	}
	imp := mustRun(t, dirB, "tenant", "import", archive, "--reembed")
	var sum struct {
		Model      string
		Reembedded struct{ Chunks, Added int }
	}
	if err := json.Unmarshal([]byte(imp.stdout), &sum); err != nil || sum.Reembedded.Added == 0 || sum.Reembedded.Added != sum.Reembedded.Chunks {
		t.Errorf("import --reembed summary: %v %s", err, imp.stdout)
	}
	addrB := freeAddr(t)
	sB := startServe(t, dirB, addrB, nil, "--addr", addrB)
	tokB := strings.TrimSpace(mustRun(t, dirB, "token", "mint", "--tenant", tenant, "--entity", alice).stdout)
	code, raw = api(t, sB.base, tokB, "GET", "/v1/documents/"+doc.ID, "")
	var d struct{ Content string }
	json.Unmarshal(raw, &d)
	if code != 200 || d.Content != secret {
		t.Errorf("document on B: %d %s", code, raw)
	}
	code, raw = api(t, sB.base, tokB, "POST", "/v1/query", `{"query":"initech merger terms"}`)
	if code != 200 || !strings.Contains(string(raw), doc.ID) {
		t.Errorf("retrieval on B after re-embedding: %d %s", code, raw)
	}
	sB.interrupt(t)
}

// TestTenantImportRefusesForgedArchives: the recipient key is public, so
// anyone can seal an archive to it. Archives forged from a real one (its
// payload re-sealed with changes) are refused with nothing imported: rows
// that name an existing tenant of B under a new tenant id (an attempt to
// write into another tenant), a newer schema, a missing end record, a row
// changed behind its table's digest, a digest changed behind its rows.
// The real archive then imports.
func TestTenantImportRefusesForgedArchives(t *testing.T) {
	dir := mustDataDir(t)
	pub := filepath.Join(t.TempDir(), "b.pub")
	mustRun(t, dir, "tenant", "import-key", "--out", pub)
	idOf := func(r result) string {
		t.Helper()
		var v struct{ ID string }
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.ID == "" {
			t.Fatalf("%s", r)
		}
		return v.ID
	}
	moved := idOf(mustRun(t, dir, "tenant", "create", "globex", "--json"))
	bystander := idOf(mustRun(t, dir, "tenant", "create", "initech", "--json"))
	bob := idOf(mustRun(t, dir, "entity", "create", "bob", "--tenant", moved, "--email", "bob@globex.test", "--json"))
	work := t.TempDir()
	real := filepath.Join(work, "globex.bhx")
	mustRun(t, dir, "tenant", "export", moved, "--to", pub, "--out", real)
	mustRun(t, dir, "tenant", "delete", moved)

	// Open it as the target would (the test holds B's KEK).
	payload := openArchive(t, dir, real)
	to, err := fieldcrypt.ParseRecipientPublic(mustReadFile(t, pub))
	if err != nil {
		t.Fatal(err)
	}
	forge := func(name string, edit func(string) string) string {
		t.Helper()
		var buf bytes.Buffer
		w, err := fieldcrypt.SealArchive(&buf, to)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(edit(string(payload))))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(work, name)
		if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const usersDigest = `"users":{"rows":1,"sha256":"`
	lines := strings.Split(strings.TrimSuffix(string(payload), "\n"), "\n")
	cases := []struct {
		name, want string
		edit       func(string) string
	}{
		// The tenant row and manifest stay the imported tenant's; every
		// other row names the bystander.
		{"into-another-tenant", "rows of table entities name another tenant", func(s string) string {
			return strings.ReplaceAll(s, `"tenant_id":"`+moved+`"`, `"tenant_id":"`+bystander+`"`)
		}},
		// The manifest names the entities' tenant column "id", and the
		// entity row has the bystander as tenant_id and the imported
		// tenant as id: a filter on the archive's column would let it in.
		{"own-tenant-column", "rows of table entities name another tenant", func(s string) string {
			s = strings.Replace(s, `{"name":"entities","tenant_column":"tenant_id"`, `{"name":"entities","tenant_column":"id"`, 1)
			var out []string
			for _, l := range strings.Split(s, "\n") {
				if strings.HasPrefix(l, `{"k":"rows","table":"entities"`) {
					l = strings.Replace(l, `"id":"`+bob+`"`, `"id":"`+moved+`"`, 1)
					l = strings.Replace(l, `"tenant_id":"`+moved+`"`, `"tenant_id":"`+bystander+`"`, 1)
				}
				out = append(out, l)
			}
			return strings.Join(out, "\n")
		}},
		{"newer-schema", "upgrade bulkhead here first", func(s string) string {
			return strings.Replace(s, `"schema_version":`, `"schema_version":99999,"x":`, 1)
		}},
		{"no-end", "without its end record", func(string) string {
			return strings.Join(lines[:len(lines)-1], "\n") + "\n"
		}},
		{"row-changed", "table users does not verify", func(s string) string {
			return strings.Replace(s, `"bob@globex.test"`, `"eve@globex.test"`, 1)
		}},
		{"digest-changed", "table users does not verify", func(s string) string {
			// Flip the first hex digit: writing a constant would leave a
			// digest that already starts with it unchanged (1 in 16).
			i := strings.Index(s, usersDigest) + len(usersDigest)
			flipped := "0"
			if s[i] == '0' {
				flipped = "1"
			}
			return s[:i] + flipped + s[i+1:]
		}},
	}
	for _, c := range cases {
		r := run(t, dir, nil, "tenant", "import", forge(c.name+".bhx", c.edit))
		if r.code == 0 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%s: want a refusal mentioning %q: %s", c.name, c.want, r)
		}
		t.Logf("%s: %s", c.name, lastLine(r.stderr))
	}
	if l := mustRun(t, dir, "tenant", "list").stdout; strings.Contains(l, moved) || strings.Count(l, "\n") != 2 {
		t.Fatalf("after forged imports, B lists:\n%s", l)
	}
	// Nothing of them is on B; the real archive imports.
	mustRun(t, dir, "tenant", "import", real)
	var info struct {
		SuperuserDSN string `json:"superuser_dsn"`
	}
	json.Unmarshal([]byte(mustRun(t, dir, "db", "info", "--json").stdout), &info)
	mustRun(t, dir, "db", "start")
	conn := testdb.MustConnect(t, info.SuperuserDSN)
	defer conn.Close(context.Background())
	var tenants, movedEntities, bystanderEntities int
	if err := conn.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM bulkhead.tenants),
		(SELECT count(*) FROM bulkhead.entities WHERE tenant_id = $1), (SELECT count(*) FROM bulkhead.entities WHERE tenant_id = $2)`,
		moved, bystander).Scan(&tenants, &movedEntities, &bystanderEntities); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "tenant-keys"))
	if tenants != 2 || movedEntities != 1 || bystanderEntities != 0 || len(ents) != 2 {
		t.Errorf("after the real import: %d tenants, %d entities of the imported tenant, %d of the other, %d tenant key files (want 2, 1, 0, 2)", tenants, movedEntities, bystanderEntities, len(ents))
	}
}

// lastLine returns the last non-empty line of s (the CLI's error).
// TestTenantImportUndoneWhenVectorsFail: a tenant whose region the target
// serves no vector backend for passes verification and its rows commit
// (disabled), then storing its vectors fails: the import deletes it again
// (rows, keys, tenant key file) and says so.
func TestTenantImportUndoneWhenVectorsFail(t *testing.T) {
	dirA, dirB := mustDataDir(t), mustDataDir(t)
	envA := []string{"BULKHEAD_VECTOR_REGION=default=embedded,eu=embedded"}
	runA := func(args ...string) result {
		t.Helper()
		r := run(t, dirA, envA, args...)
		if r.code != 0 {
			t.Fatalf("bulkhead %s: %s", strings.Join(args, " "), r)
		}
		return r
	}
	var v struct{ ID string }
	json.Unmarshal([]byte(runA("tenant", "create", "eurocorp", "--region", "eu", "--json").stdout), &v)
	tenant := v.ID
	runA("entity", "create", "alice", "--tenant", tenant, "--email", "alice@eurocorp.test")
	pubB := filepath.Join(t.TempDir(), "b.pub")
	mustRun(t, dirB, "tenant", "import-key", "--out", pubB)
	archive := filepath.Join(t.TempDir(), "eu.bhx")
	runA("tenant", "export", tenant, "--to", pubB, "--out", archive)

	r := run(t, dirB, nil, "tenant", "import", archive)
	if r.code == 0 || !strings.Contains(r.stderr, "nothing kept") {
		t.Errorf("import into a bulkhead without the tenant's region: %s", r)
	}
	t.Logf("refused: %s", lastLine(r.stderr))
	if l := mustRun(t, dirB, "tenant", "list").stdout; strings.Contains(l, tenant) {
		t.Errorf("the undone tenant is still listed on B:\n%s", l)
	}
	if st := mustRun(t, dirB, "keys", "status").stdout; strings.Contains(st, tenant) {
		t.Errorf("the undone tenant still has keys on B:\n%s", st)
	}
	if _, err := os.Stat(filepath.Join(dirB, "tenant-keys", tenant+".key")); !os.IsNotExist(err) {
		t.Errorf("the undone tenant's key file: %v", err)
	}
}

// openArchive opens an archive with the import key of the bulkhead in
// dataDir (the test reads its KEK file) and returns the payload.
func openArchive(t *testing.T, dataDir, path string) []byte {
	t.Helper()
	kek, _, err := fieldcrypt.LocalKEK(filepath.Join(dataDir, "kek.json"), false)
	if err != nil {
		t.Fatal(err)
	}
	rcpt, _, _, err := fieldcrypt.LoadOrCreateImportKey(filepath.Join(dataDir, "import-key.json"), kek)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pr, err := fieldcrypt.OpenArchive(f, rcpt)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := io.ReadAll(pr)
	if err != nil {
		t.Fatal(err)
	}
	return payload
}

func mustReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
