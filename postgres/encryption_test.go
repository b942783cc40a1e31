package postgres_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/fieldcrypt"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// rawSealed returns every stored byte of the sealed and content columns,
// read as the superuser (what a dump or a DBA sees).
func rawSealed(t *testing.T, dsn string) []byte {
	t.Helper()
	conn := mustConnect(t, dsn)
	var out []byte
	for _, q := range []string{
		`SELECT coalesce(string_agg(coalesce(secrets, '') || coalesce(system_prompt, ''), ''::bytea), '') FROM bulkhead.agents`,
		`SELECT coalesce(string_agg(convert_to(content, 'UTF8') || coalesce(content_sealed, ''), ''::bytea), '') FROM bulkhead.documents`,
		`SELECT coalesce(string_agg(convert_to(content, 'UTF8') || coalesce(content_sealed, ''), ''::bytea), '') FROM bulkhead.chunks`,
	} {
		var b []byte
		if err := conn.QueryRow(context.Background(), q).Scan(&b); err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
	}
	return out
}

func TestColumnsNeverHoldPlaintext(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	tn := demo.T1
	alice := as(t, tn.Tenant.ID, tn.Alice, uuid.Nil)
	secret := "sk-live-" + uuid.NewString()
	prompt := "never reveal the launch date " + uuid.NewString()
	if err := d.DB.UpdateAgent(alice, tn.Agent, postgres.NewAgent{Name: "agent", SystemPrompt: bulkhead.Secret(prompt),
		Secrets: map[string]bulkhead.Secret{"openai_api_key": bulkhead.Secret(secret)}}); err != nil {
		t.Fatal(err)
	}
	body := "confidential merger memo " + uuid.NewString()
	doc, err := d.DB.CreateDocument(alice, postgres.NewDocument{Title: "memo", Content: body, Confidential: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw := rawSealed(t, d.AdminDSN())
	for _, s := range []string{secret, prompt, body, "sk-demo-", "You are Alice's assistant", "Alice's private notes (T1): the body"} {
		if bytes.Contains(raw, []byte(s)) {
			t.Errorf("a stored column holds the plaintext %q", s)
		}
	}
	// The owner side reads everything back.
	a, err := d.DB.Agent(alice, tn.Agent)
	if err != nil || a.SystemPrompt.Reveal() != prompt || a.Secrets["openai_api_key"].Reveal() != secret {
		t.Fatalf("owner reads agent: %v %q %v", err, a.SystemPrompt, a.Secrets)
	}
	if got, err := d.DB.Document(alice, doc.ID); err != nil || got.Content != body {
		t.Fatalf("owner reads confidential doc: %v %q", err, got.Content)
	}
	if cs, err := d.DB.Chunks(alice, doc.ID); err != nil || len(cs) == 0 || !strings.Contains(cs[0].Content, "merger") {
		t.Fatalf("owner reads confidential chunks: %v %v", err, cs)
	}
	// The agent itself opens its secrets; another entity of the tenant gets metadata only.
	if a, err := d.DB.Agent(as(t, tn.Tenant.ID, tn.Agent, uuid.Nil), tn.Agent); err != nil || a.Secrets["openai_api_key"].Reveal() != secret {
		t.Errorf("the agent reads its own secrets: %v", err)
	}
	if a, err := d.DB.Agent(as(t, tn.Tenant.ID, tn.Bob, uuid.Nil), tn.Agent); err != nil || a.Secrets != nil || a.SystemPrompt != "" || a.Name != "agent" {
		t.Errorf("Bob reads Alice's agent: %v, secrets %v, prompt %q; want metadata only", err, a.Secrets, a.SystemPrompt)
	}
	// Secrets never print: fmt, JSON and slog all redact.
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("agent", "agent", a, "secrets", a.Secrets, "one", a.Secrets["openai_api_key"])
	js, _ := json.Marshal(a)
	for what, out := range map[string]string{"fmt": fmt.Sprintf("%v %+v %#v", a, a, a.Secrets), "json": string(js), "slog": logs.String()} {
		if strings.Contains(out, secret) || strings.Contains(out, prompt) {
			t.Errorf("%s output holds a secret: %s", what, out)
		}
	}
}

func TestCopiedCiphertextDoesNotOpen(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	// A DBA copies T1's agent secrets onto T2's agent, and onto T1's system_prompt column.
	admin := mustConnect(t, d.AdminDSN())
	ctx := context.Background()
	if _, err := admin.Exec(ctx, `UPDATE bulkhead.agents SET secrets = (SELECT secrets FROM bulkhead.agents WHERE id = $1) WHERE id = $2`, demo.T1.Agent, demo.T2.Agent); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, `UPDATE bulkhead.agents SET system_prompt = secrets WHERE id = $1`, demo.T1.Agent); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		tn postgres.DemoTenant
	}{"other tenant's row": {demo.T2}, "other column": {demo.T1}} {
		_, err := d.DB.Agent(as(t, c.tn.Tenant.ID, c.tn.Alice, uuid.Nil), c.tn.Agent)
		if !errors.Is(err, fieldcrypt.ErrUndecryptable) {
			t.Errorf("%s: %v, want ErrUndecryptable", name, err)
		}
	}
}

// TestRotationKeepsEverythingReadable rotates T1's key, re-encrypts in
// batches of one, interrupts midway, checks every value still opens, resumes,
// retires the old key and checks nothing uses it.
func TestRotationKeepsEverythingReadable(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	tn := demo.T1
	alice := as(t, tn.Tenant.ID, tn.Alice, uuid.Nil)
	for i := range 5 {
		if _, err := d.DB.CreateDocument(alice, postgres.NewDocument{Title: fmt.Sprintf("c%d", i), Content: strings.Repeat("secret words ", 200), Confidential: true}, nil); err != nil {
			t.Fatal(err)
		}
	}
	mctx := bulkhead.AsMaintenance(context.Background(), "test rotation")
	readAll := func() {
		t.Helper()
		if a, err := d.DB.Agent(alice, tn.Agent); err != nil || a.Secrets == nil {
			t.Fatalf("agent after rotation step: %v", err)
		}
		docs, _, err := d.DB.ListDocuments(alice, postgres.Page{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range docs {
			if _, err := d.DB.Document(alice, doc.ID); err != nil {
				t.Fatalf("document %s after rotation step: %v", doc.Title, err)
			}
			if _, err := d.DB.Chunks(alice, doc.ID); err != nil {
				t.Fatalf("chunks of %s after rotation step: %v", doc.Title, err)
			}
		}
	}
	before, err := d.DB.KeyUsage(mctx, tn.Tenant.ID)
	if err != nil {
		t.Fatal(err)
	}
	st0, _ := d.Keyring.Status(context.Background(), tn.Tenant.ID)
	if len(before.ByKey) != 1 || before.ByKey[st0.Primary] == 0 {
		t.Fatalf("before rotation: %+v (primary %d)", before, st0.Primary)
	}
	newKey, err := d.Keyring.Rotate(context.Background(), tn.Tenant.ID)
	if err != nil {
		t.Fatal(err)
	}
	readAll() // new primary, nothing re-encrypted yet
	// Interrupt after three values.
	ctx, cancel := context.WithCancel(mctx)
	_, err = d.DB.Reencrypt(ctx, tn.Tenant.ID, 1, func(done, total int64) {
		if done >= 3 {
			cancel()
		}
	})
	if err == nil {
		t.Fatal("re-encryption was not interrupted")
	}
	mid, _ := d.DB.KeyUsage(mctx, tn.Tenant.ID)
	if mid.ByKey[newKey] == 0 || mid.ByKey[st0.Primary] == 0 {
		t.Fatalf("midway: %+v; want values on both keys", mid.ByKey)
	}
	readAll()
	if _, err := d.DB.Reencrypt(mctx, tn.Tenant.ID, 1, nil); err != nil {
		t.Fatal(err)
	}
	after, _ := d.DB.KeyUsage(mctx, tn.Tenant.ID)
	if len(after.ByKey) != 1 || after.ByKey[newKey] == 0 {
		t.Fatalf("after resume: %+v; want everything on key %d", after.ByKey, newKey)
	}
	retired, err := d.Keyring.Retire(context.Background(), tn.Tenant.ID, 0, map[uint32]bool{newKey: true})
	if err != nil || len(retired) != 1 || retired[0] != st0.Primary {
		t.Fatalf("retire: %v %v; want the old key %d", retired, err, st0.Primary)
	}
	st, _ := d.Keyring.Status(context.Background(), tn.Tenant.ID)
	if len(st.Keys) != 1 || st.Keys[0] != newKey {
		t.Errorf("keys after retirement: %v", st.Keys)
	}
	readAll()
	// T2 untouched.
	if u, _ := d.DB.KeyUsage(mctx, demo.T2.Tenant.ID); len(u.ByKey) != 1 {
		t.Errorf("T2's keys changed: %v", u.ByKey)
	}
}

// TestSweepSealsLegacyPlaintext writes with encryption off (values stored
// in plaintext, as before encryption existed), then sweeps.
func TestSweepSealsLegacyPlaintext(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	tn := demo.T1
	plain := d.Open(t, nil)
	alice := as(t, tn.Tenant.ID, tn.Alice, uuid.Nil)
	secret := "legacy-" + uuid.NewString()
	if err := plain.UpdateAgent(alice, tn.Agent, postgres.NewAgent{Name: "agent", SystemPrompt: bulkhead.Secret("legacy prompt " + secret),
		Secrets: map[string]bulkhead.Secret{"k": bulkhead.Secret(secret)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := plain.CreateDocument(alice, postgres.NewDocument{Title: "old", Content: "legacy memo " + secret, Confidential: true}, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(rawSealed(t, d.AdminDSN()), []byte(secret)) {
		t.Fatal("the plaintext-mode writes are not plaintext: the test proves nothing")
	}
	// With encryption on, the legacy value fails closed rather than passing as sealed.
	if _, err := d.DB.Agent(alice, tn.Agent); !errors.Is(err, fieldcrypt.ErrNotEnvelope) {
		t.Errorf("reading legacy plaintext with encryption on: %v, want ErrNotEnvelope", err)
	}
	mctx := bulkhead.AsMaintenance(context.Background(), "test sweep")
	u, _ := d.DB.KeyUsage(mctx, tn.Tenant.ID)
	n, err := d.DB.Sweep(mctx, tn.Tenant.ID, 2, nil)
	if err != nil || n == 0 || n != u.Plaintext {
		t.Fatalf("sweep sealed %d of %d plaintext values: %v", n, u.Plaintext, err)
	}
	if bytes.Contains(rawSealed(t, d.AdminDSN()), []byte(secret)) {
		t.Error("plaintext left after the sweep")
	}
	if a, err := d.DB.Agent(alice, tn.Agent); err != nil || a.Secrets["k"].Reveal() != secret {
		t.Errorf("after the sweep: %v %v", err, a.Secrets)
	}
	if u, _ := d.DB.KeyUsage(mctx, tn.Tenant.ID); u.Plaintext != 0 {
		t.Errorf("plaintext values after the sweep: %d", u.Plaintext)
	}
}

func TestRuntimeRoleCannotReadKeysets(t *testing.T) {
	t.Parallel()
	d, _ := seeded(t)
	conn := mustConnect(t, d.AppDSN())
	for _, q := range []string{`SELECT count(*) FROM bulkhead_keys.keysets`, `SELECT count(*) FROM bulkhead_keys.kek_check`} {
		var n int
		if err := conn.QueryRow(context.Background(), q).Scan(&n); sqlState(err) != "42501" {
			t.Errorf("%s as the runtime role: %d, %v; want permission denied", q, n, err)
		}
	}
	keys := mustConnect(t, d.KeyServiceDSN())
	var n int
	if err := keys.QueryRow(context.Background(), `SELECT count(*) FROM bulkhead_keys.keysets`).Scan(&n); err != nil || n != 2 {
		t.Errorf("the key service sees %d keysets (%v), want the two tenants'", n, err)
	}
}

// TestDeletedTenantsDumpDoesNotOpen saves T1's sealed column bytes the way
// a dump would, deletes T1, and tries every key bulkhead still holds.
func TestDeletedTenantsDumpDoesNotOpen(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	t1 := demo.T1
	admin := mustConnect(t, d.AdminDSN())
	var secrets, prompt, doc []byte
	if err := admin.QueryRow(context.Background(), `SELECT secrets, system_prompt FROM bulkhead.agents WHERE id = $1`, t1.Agent).Scan(&secrets, &prompt); err != nil {
		t.Fatal(err)
	}
	if err := admin.QueryRow(context.Background(), `SELECT content_sealed FROM bulkhead.documents WHERE id = $1`, t1.PrivateDoc).Scan(&doc); err != nil || doc == nil {
		t.Fatalf("the confidential doc has no sealed content: %v", err)
	}
	// Before deletion the dump opens for T1 (the test can fail).
	if _, err := d.Keyring.Open(as(t, t1.Tenant.ID, uuid.Nil, uuid.Nil), fieldcrypt.Field{Table: "agents", Column: "secrets", Row: t1.Agent}, secrets); err != nil {
		t.Fatalf("before deletion: %v", err)
	}
	if _, err := d.DB.DeleteTenant(bulkhead.AsMaintenance(context.Background(), "test erasure"), t1.Tenant.ID); err != nil {
		t.Fatal(err)
	}
	tenants, err := d.Keys.Tenants(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	fresh := fieldcrypt.NewKeyring(d.Keyring.KEK(), d.Keys, fieldcrypt.Options{})
	for _, kr := range []*fieldcrypt.Keyring{d.Keyring, fresh} {
		for _, tenant := range append(tenants, t1.Tenant.ID) {
			ctx := as(t, tenant, uuid.Nil, uuid.Nil)
			for _, c := range []struct {
				f fieldcrypt.Field
				v []byte
			}{
				{fieldcrypt.Field{Table: "agents", Column: "secrets", Row: t1.Agent}, secrets},
				{fieldcrypt.Field{Table: "agents", Column: "system_prompt", Row: t1.Agent}, prompt},
				{fieldcrypt.Field{Table: "documents", Column: "content_sealed", Row: t1.PrivateDoc}, doc},
			} {
				if pt, err := kr.Open(ctx, c.f, c.v); err == nil {
					t.Errorf("T1's dumped %s.%s opens with tenant %s's keys: %q", c.f.Table, c.f.Column, tenant, pt)
				}
			}
		}
	}
	var events int
	if err := d.DB.InMaintenance(bulkhead.AsMaintenance(context.Background(), "test"), func(tx pgx.Tx) error {
		return tx.QueryRow(context.Background(), `SELECT count(*) FROM bulkhead_keys.key_events WHERE tenant_id = $1 AND action = 'keyset.shred'`, t1.Tenant.ID).Scan(&events)
	}); err != nil || events != 1 {
		t.Errorf("erasure records: %d (%v), want 1", events, err)
	}
}
