package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/fieldcrypt"
	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Issue 12, finding 1: a server's cached keys must not outlive a rotation
// made by another process. "server" is a DB with its own keyring (its own
// cache, as a running bulkhead serve has); the rotation runs through d.DB,
// as the CLI beside it does.

// TestStaleServerSealsWithTheNewKey: the server caches the old key, the
// CLI rotates fully (re-encrypts and retires the old key), then the server
// writes. Before the fix it sealed with the retired key: a fresh process
// (a restart) could not open the value.
func TestStaleServerSealsWithTheNewKey(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	tn := demo.T1
	server := d.Open(t, fieldcrypt.NewKeyring(testdb.KEK(), d.Keys, fieldcrypt.Options{}))
	reader := d.Open(t, fieldcrypt.NewKeyring(testdb.KEK(), d.Keys, fieldcrypt.Options{}))
	alice := as(t, tn.Tenant.ID, tn.Alice, uuid.Nil)
	before, err := server.CreateDocument(alice, postgres.NewDocument{Title: "before", Content: "written before the rotation", Confidential: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reader.Document(alice, before.ID); err != nil { // caches the old key
		t.Fatal(err)
	}
	old, _ := d.Keyring.Status(context.Background(), tn.Tenant.ID)
	mctx := bulkhead.AsMaintenance(context.Background(), "test rotation")
	res, err := d.DB.RotateKeys(mctx, tn.Tenant.ID, false, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Retired) != 1 || res.Retired[0] != old.Primary || res.Primary == old.Primary {
		t.Fatalf("rotation: %+v, want key %d retired", res, old.Primary)
	}
	// The stale server writes: its cache still holds only the retired key.
	after, err := server.CreateDocument(alice, postgres.NewDocument{Title: "after", Content: "written after the rotation", Confidential: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	u, err := d.DB.KeyUsage(mctx, tn.Tenant.ID)
	if err != nil {
		t.Fatal(err)
	}
	for id, n := range u.ByKey {
		if id != res.Primary && n > 0 {
			t.Errorf("%d values sealed under key %d, which is not the primary %d", n, id, res.Primary)
		}
	}
	// The stale reader opens the re-encrypted value (it reloads once on a
	// key it doesn't have), and a fresh process opens everything.
	if got, err := reader.Document(alice, before.ID); err != nil || got.Content != "written before the rotation" {
		t.Errorf("stale reader, re-encrypted document: %q %v", got.Content, err)
	}
	fresh := d.Open(t, fieldcrypt.NewKeyring(testdb.KEK(), d.Keys, fieldcrypt.Options{}))
	for _, id := range []uuid.UUID{before.ID, after.ID} {
		if _, err := fresh.Document(alice, id); err != nil {
			t.Errorf("after a restart, document %s: %v", id, err)
		}
		if _, err := fresh.Chunks(alice, id); err != nil {
			t.Errorf("after a restart, chunks of %s: %v", id, err)
		}
	}
	// Agents (an UPDATE, no foreign-key check) follow the same rule.
	if err := server.UpdateAgent(alice, tn.Agent, postgres.NewAgent{Name: "agent", SystemPrompt: "p", Secrets: map[string]bulkhead.Secret{"k": "v"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.DB.RotateKeys(mctx, tn.Tenant.ID, false, 10, nil); err != nil {
		t.Fatal(err)
	}
	if err := server.UpdateAgent(alice, tn.Agent, postgres.NewAgent{Name: "agent", SystemPrompt: "p2", Secrets: map[string]bulkhead.Secret{"k": "v2"}}); err != nil {
		t.Fatal(err)
	}
	if a, err := fresh.Agent(alice, tn.Agent); err != nil || a.Secrets["k"].Reveal() != "v2" {
		t.Errorf("after a restart, the agent written by the stale server: %v", err)
	}
}

// TestRotationUnderConcurrentWriters rotates a tenant's key three times
// while writers on two "servers" store confidential documents and agents,
// then opens every acknowledged value in a fresh process. It also requires
// every old key to be retired: before the fix, either a retired key had
// sealed new values (unreadable after a restart) or values kept the old key
// alive.
func TestRotationUnderConcurrentWriters(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	tn := demo.T1
	servers := []*postgres.DB{
		d.Open(t, fieldcrypt.NewKeyring(testdb.KEK(), d.Keys, fieldcrypt.Options{})),
		d.Open(t, fieldcrypt.NewKeyring(testdb.KEK(), d.Keys, fieldcrypt.Options{})),
	}
	alice := as(t, tn.Tenant.ID, tn.Alice, uuid.Nil)
	var (
		mu      sync.Mutex
		written = map[uuid.UUID]string{}
		stop    atomic.Bool
		wg      sync.WaitGroup
		errs    = make(chan error, 8)
		// Writers pause at limit documents: each rotation re-encrypts every
		// value written before it, so unbounded writers on a loaded machine
		// (the race detector, a full parallel suite) outran the rotations.
		// 600 is far more than a rotation's batch, so writes and rotations
		// still interleave; the limit grows after the rotations.
		limit atomic.Int64
	)
	limit.Store(600)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := servers[w%2]
			for i := 0; !stop.Load(); i++ {
				mu.Lock()
				n := len(written)
				mu.Unlock()
				if int64(n) >= limit.Load() {
					time.Sleep(time.Millisecond)
					continue
				}
				text := fmt.Sprintf("writer %d document %d", w, i)
				doc, err := s.CreateDocument(alice, postgres.NewDocument{Title: text, Content: text, Confidential: true}, nil)
				if err != nil {
					errs <- fmt.Errorf("writer %d: %w", w, err)
					return
				}
				mu.Lock()
				written[doc.ID] = text
				mu.Unlock()
			}
		}()
	}
	// A bound, not a timing assertion: with writers sealing under a
	// retired key (the bug) re-encryption never catches up.
	mctx, cancel := context.WithTimeout(bulkhead.AsMaintenance(context.Background(), "test rotation"), 2*time.Minute)
	defer cancel()
	var last postgres.RotateResult
	for range 3 {
		res, err := d.DB.RotateKeys(mctx, tn.Tenant.ID, false, 5, nil)
		if err != nil {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("rotation under writers: %v", err)
		}
		last = res
	}
	// Keep writing a little after the last rotation, with caches as they are.
	mu.Lock()
	target := len(written) + 20
	mu.Unlock()
	limit.Store(int64(target))
	for {
		mu.Lock()
		n := len(written)
		mu.Unlock()
		if n >= target || len(errs) > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	fresh := d.Open(t, fieldcrypt.NewKeyring(testdb.KEK(), d.Keys, fieldcrypt.Options{}))
	unreadable := 0
	for id, text := range written {
		if got, err := fresh.Document(alice, id); err != nil || got.Content != text {
			unreadable++
			if unreadable < 5 {
				t.Errorf("document %s after a restart: %q %v", id, got.Content, err)
			}
		}
	}
	t.Logf("%d values written during rotation, %d unreadable", len(written), unreadable)
	if unreadable > 0 {
		t.Errorf("%d of %d acknowledged documents do not open after the rotations", unreadable, len(written))
	}
	st, err := d.Keyring.Status(context.Background(), tn.Tenant.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Values written after the last rotation's retirement may only use the primary.
	u, _ := d.DB.KeyUsage(mctx, tn.Tenant.ID)
	for id, n := range u.ByKey {
		if id != st.Primary {
			t.Errorf("%d values under key %d, not the primary %d (keys %v)", n, id, st.Primary, st.Keys)
		}
	}
	if st.Primary != last.Primary {
		t.Errorf("primary %d, want the last rotation's %d", st.Primary, last.Primary)
	}
}

// TestRotateResumeSkipsUnreadable: a value that no longer opens does not
// stop the rotation for good; it is reported, left alone, its key kept,
// and every other value is re-encrypted.
func TestRotateResumeSkipsUnreadable(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	tn := demo.T1
	alice := as(t, tn.Tenant.ID, tn.Alice, uuid.Nil)
	for i := range 3 {
		if _, err := d.DB.CreateDocument(alice, postgres.NewDocument{Title: fmt.Sprint(i), Content: "secret", Confidential: true}, nil); err != nil {
			t.Fatal(err)
		}
	}
	admin := mustConnect(t, d.AdminDSN())
	// Damage one sealed value (its last byte: the GCM tag).
	if _, err := admin.Exec(context.Background(), `UPDATE bulkhead.documents SET content_sealed = overlay(content_sealed placing '\xff'::bytea from length(content_sealed) for 1) WHERE id = $1`, tn.PrivateDoc); err != nil {
		t.Fatal(err)
	}
	old, _ := d.Keyring.Status(context.Background(), tn.Tenant.ID)
	mctx := bulkhead.AsMaintenance(context.Background(), "test rotation")
	for _, resume := range []bool{false, true} {
		res, err := d.DB.RotateKeys(mctx, tn.Tenant.ID, resume, 1, nil)
		var ue *postgres.UnreadableError
		if !errors.As(err, &ue) || len(ue.Values) != 1 {
			t.Fatalf("resume=%v: %+v %v, want one unreadable value reported", resume, res, err)
		}
		st, _ := d.Keyring.Status(context.Background(), tn.Tenant.ID)
		u, _ := d.DB.KeyUsage(mctx, tn.Tenant.ID)
		if u.ByKey[old.Primary] != 1 || len(st.Keys) != 2 {
			t.Fatalf("resume=%v: usage %v, keys %v: want only the damaged value left on the old key, which is kept", resume, u.ByKey, st.Keys)
		}
	}
}

// Issue 12, finding 2: KEK rotation while servers run.

// TestRewrapWhileServing: a server holding the old KEK keeps working
// while the CLI rotates the KEK; a tenant it creates afterwards gets keys
// wrapped by the new KEK (before the fix: by the old one, which the
// database no longer recorded, so nothing could open it after a restart
// with the new KEK). A corrupt keyset fails only its tenant.
func TestRewrapWhileServing(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	next, _, err := fieldcrypt.LocalKEK(filepath.Join(t.TempDir(), "next.json"), true)
	if err != nil {
		t.Fatal(err)
	}
	loads := 0
	serverKeys := fieldcrypt.NewKeyring(testdb.KEK(), d.Keys, fieldcrypt.Options{LoadKEK: func(ctx context.Context, id string) (*fieldcrypt.KEK, error) {
		loads++
		if id != next.ID() {
			return nil, fmt.Errorf("unknown KEK %s", id)
		}
		return next, nil
	}})
	server := d.Open(t, serverKeys)
	mctx := bulkhead.AsMaintenance(context.Background(), "test kek rotation")
	alice := as(t, demo.T1.Tenant.ID, demo.T1.Alice, uuid.Nil)
	if _, err := server.Document(alice, demo.T1.PrivateDoc); err != nil {
		t.Fatal(err)
	}
	// A third tenant whose keyset is corrupt.
	broken, err := d.DB.CreateTenant(mctx, "broken", "")
	if err != nil {
		t.Fatal(err)
	}
	keys := mustConnect(t, d.KeyServiceDSN())
	if _, err := keys.Exec(context.Background(), `UPDATE bulkhead_keys.keysets SET aead = 'garbage' WHERE tenant_id = $1`, broken.ID); err != nil {
		t.Fatal(err)
	}
	rep, err := d.Keyring.Rewrap(context.Background(), next, "unused", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Failed) != 1 || rep.Failed[broken.ID] == nil || rep.Rewrapped != 2 {
		t.Fatalf("rewrap: %+v, want T1 and T2 re-wrapped and only the broken tenant failed", rep)
	}
	// The server, still configured with the old KEK, creates a tenant and
	// writes a confidential document in it.
	created, err := server.CreateTenant(mctx, "created during rotation", "")
	if err != nil {
		t.Fatal(err)
	}
	e, err := server.CreateEntity(mctx, created.ID, bulkhead.KindUser, "eve", "")
	if err != nil {
		t.Fatal(err)
	}
	eve := as(t, created.ID, e.ID, uuid.Nil)
	doc, err := server.CreateDocument(eve, postgres.NewDocument{Title: "t", Content: "sealed during KEK rotation", Confidential: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if loads != 1 {
		t.Errorf("the server loaded the new KEK %d times, want once", loads)
	}
	// Restart with only the new KEK: everything opens.
	restarted := d.Open(t, fieldcrypt.NewKeyring(next, d.Keys, fieldcrypt.Options{}))
	if got, err := restarted.Document(eve, doc.ID); err != nil || got.Content != "sealed during KEK rotation" {
		t.Errorf("the new tenant's document after a restart with the new KEK: %q %v", got.Content, err)
	}
	for _, tn := range []postgres.DemoTenant{demo.T1, demo.T2} {
		if _, err := restarted.Document(as(t, tn.Tenant.ID, tn.Alice, uuid.Nil), tn.PrivateDoc); err != nil {
			t.Errorf("tenant %s after a restart with the new KEK: %v", tn.Tenant.Name, err)
		}
	}
	// Status and rotation fail only for the broken tenant.
	for _, tn := range []uuid.UUID{demo.T1.Tenant.ID, demo.T2.Tenant.ID, created.ID} {
		if _, err := d.DB.RotateKeys(mctx, tn, false, 10, nil); err != nil {
			t.Errorf("rotate tenant %s: %v", tn, err)
		}
	}
	if _, err := d.DB.RotateKeys(mctx, broken.ID, false, 10, nil); err == nil {
		t.Error("rotating the broken tenant's keys succeeded")
	}
}

// TestRotationWaitsForWritersInFlight: a writer has sealed under the old
// key and passed the version check (the rotation was not published yet)
// but not committed. The rotation must not re-encrypt and retire before
// that transaction ends, or the value commits under a retired key.
func TestRotationWaitsForWritersInFlight(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	tn := demo.T1
	serverKeys := fieldcrypt.NewKeyring(testdb.KEK(), d.Keys, fieldcrypt.Options{})
	server := d.Open(t, serverKeys)
	alice := as(t, tn.Tenant.ID, tn.Alice, uuid.Nil)
	id := uuid.New()
	sealed, version, err := serverKeys.SealAt(alice, fieldcrypt.Field{Table: "documents", Column: "content_sealed", Row: id}, []byte("in flight"))
	if err != nil {
		t.Fatal(err)
	}
	checked, commit, written := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		written <- server.InScope(alice, func(tx pgx.Tx) error {
			if _, err := tx.Exec(alice, `INSERT INTO bulkhead.documents (tenant_id, id, owner_id, visibility, title, content, content_sealed, confidential)
				VALUES ($1, $2, $3, 'private', 'in flight', '', $4, true)`, tn.Tenant.ID, id, tn.Alice, sealed); err != nil {
				return err
			}
			var published int64
			if err := tx.QueryRow(alice, `SELECT key_version FROM bulkhead.tenants WHERE id = $1`, tn.Tenant.ID).Scan(&published); err != nil {
				return err
			}
			if published > version {
				return fmt.Errorf("published %d > sealed %d before the rotation", published, version)
			}
			close(checked)
			<-commit
			return nil
		})
	}()
	<-checked
	mctx := bulkhead.AsMaintenance(context.Background(), "test rotation")
	rotated := make(chan error, 1)
	go func() {
		_, err := d.DB.RotateKeys(mctx, tn.Tenant.ID, false, 10, nil)
		rotated <- err
	}()
	// Commit once the rotation either finished (the bug: it did not wait)
	// or waits for older transactions (seen in pg_stat_activity).
	admin := mustConnect(t, d.AdminDSN())
	var rotErr error
	finished := false
	for !finished {
		select {
		case rotErr = <-rotated:
			finished = true
			continue
		default:
		}
		var waiting bool
		if err := admin.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
			AND usename = $1 AND query LIKE '%pg_snapshot_xmin%')`, postgres.Maintenance).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(commit)
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	if !finished {
		rotErr = <-rotated
	}
	if rotErr != nil {
		t.Fatal(rotErr)
	}
	fresh := d.Open(t, fieldcrypt.NewKeyring(testdb.KEK(), d.Keys, fieldcrypt.Options{}))
	if got, err := fresh.Document(alice, id); err != nil || got.Content != "in flight" {
		t.Errorf("the in-flight value after the rotation and a restart: %q %v", got.Content, err)
	}
}
