package postgres_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// notifyWait bounds every wait for a notification in these tests.
const notifyWait = 5 * time.Second

func mustAppend(t *testing.T, db *postgres.DB, ctx context.Context, room uuid.UUID, content string) bulkhead.Memory {
	t.Helper()
	m, err := db.AppendMemory(ctx, postgres.NewMemory{RoomID: room, Content: content})
	if err != nil {
		t.Fatalf("append memory: %v", err)
	}
	return m
}

// mustReceive returns the next id from sub, failing after notifyWait.
func mustReceive(t *testing.T, sub *postgres.Subscription) uuid.UUID {
	t.Helper()
	select {
	case id, ok := <-sub.C():
		if !ok {
			t.Fatalf("subscription ended: %v", sub.Err())
		}
		return id
	case <-time.After(notifyWait):
		t.Fatal("no notification")
	}
	return uuid.Nil
}

func mustSubscribe(t *testing.T, n *postgres.Notifier, tenant, room uuid.UUID) *postgres.Subscription {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), notifyWait)
	defer cancel()
	sub, err := n.Subscribe(ctx, tenant, room)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	t.Cleanup(sub.Close)
	return sub
}

func newNotifier(t *testing.T, db *postgres.DB, cfg postgres.NotifierConfig) *postgres.Notifier {
	t.Helper()
	n := postgres.NewNotifier(db, cfg)
	t.Cleanup(n.Close)
	return n
}

// listenAs LISTENs on conn as the notifier does: bulkhead.notify_listen()
// in a transaction with the given context. It returns the channel (empty
// when the database refused).
func listenAs(t *testing.T, conn *pgx.Conn, tenant, entity uuid.UUID) string {
	t.Helper()
	ctx := context.Background()
	var channel *string
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if tenant != uuid.Nil {
			enter(t, tx, bulkhead.Scope{Tenant: tenant, Entity: entity})
		}
		return tx.QueryRow(ctx, "SELECT bulkhead.notify_listen()").Scan(&channel)
	})
	if err != nil {
		t.Fatalf("notify_listen: %v", err)
	}
	if channel == nil {
		return ""
	}
	return *channel
}

// notifyChannelOf computes a tenant's channel name from the key, read as
// the superuser: what the runtime role cannot do.
func notifyChannelOf(t *testing.T, admin *pgx.Conn, tenant uuid.UUID) string {
	t.Helper()
	var inner, outer []byte
	if err := admin.QueryRow(context.Background(), "SELECT inner_pad, outer_pad FROM bulkhead.notify_key").Scan(&inner, &outer); err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(append(slices.Clone(inner), tenant[:]...))
	h = sha256.Sum256(append(slices.Clone(outer), h[:]...))
	return "bulkhead_" + hex.EncodeToString(h[:16])
}

// TestNotifyTriggerAnnouncesIDsOnly listens as the runtime role in the
// notifier's context (a tenant, no entity), as the server does: a
// committed insert is announced on the tenant's own channel (an HMAC of the
// tenant id under the database's key) as room:id and nothing else; a
// rolled-back one is not announced at all. The trigger function is a
// SECURITY DEFINER one (it reads the key) with a pinned search_path that
// nobody may call directly.
func TestNotifyTriggerAnnouncesIDsOnly(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	ctx := context.Background()
	admin := mustConnect(t, d.AdminDSN())
	conn := mustConnect(t, d.AppDSN())
	channel := listenAs(t, conn, demo.T1.Tenant.ID, uuid.Nil)
	if want := notifyChannelOf(t, admin, demo.T1.Tenant.ID); channel != want {
		t.Fatalf("T1's channel is %q, want HMAC-SHA256(key, tenant) %q", channel, want)
	}
	bob := as(t, demo.T1.Tenant.ID, demo.T1.Bob, uuid.Nil)
	errRollback := errors.New("roll back")
	err := d.DB.InScope(bob, func(tx pgx.Tx) error {
		if _, err := tx.Exec(bob, `INSERT INTO bulkhead.memories (tenant_id, id, room_id, author_id, content) VALUES ($1, $2, $3, $4, 'never committed')`,
			demo.T1.Tenant.ID, uuid.New(), demo.T1.Room1, demo.T1.Bob); err != nil {
			return err
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		t.Fatalf("rolled-back insert: %v", err)
	}
	secret := "content-" + uuid.NewString()
	m := mustAppend(t, d.DB, bob, demo.T1.Room1, secret)
	wctx, cancel := context.WithTimeout(ctx, notifyWait)
	defer cancel()
	note, err := conn.WaitForNotification(wctx)
	if err != nil {
		t.Fatal(err)
	}
	want := demo.T1.Room1.String() + ":" + m.ID.String()
	if note.Channel != channel || note.Payload != want {
		t.Errorf("first notification %s %q, want %s %q (the rolled-back insert must not be announced)", note.Channel, note.Payload, channel, want)
	}
	if strings.Contains(note.Payload, secret) || strings.Contains(note.Payload, demo.T1.Tenant.ID.String()) {
		t.Error("the notification carries the content or the tenant id")
	}

	for fn, want := range map[string]struct {
		definer bool
		owner   string
	}{
		"bulkhead.notify_memory_inserted()": {true, postgres.Definer},
		"bulkhead.notify_channel(uuid)":     {false, postgres.Definer},
	} {
		var definer, canExecute bool
		var config, owner string
		err = admin.QueryRow(ctx, `SELECT p.prosecdef, coalesce(array_to_string(p.proconfig, ','), ''), pg_get_userbyid(p.proowner),
			has_function_privilege($1, p.oid, 'EXECUTE')
			FROM pg_proc p WHERE p.oid = $2::regprocedure`, postgres.Runtime, fn).Scan(&definer, &config, &owner, &canExecute)
		if err != nil {
			t.Fatal(err)
		}
		if definer != want.definer || config != "search_path=pg_catalog, pg_temp" || owner != want.owner || canExecute {
			t.Errorf("%s: security definer %v, config %q, owner %s, runtime role may execute %v; want %v, pinned search_path, %s, false",
				fn, definer, config, owner, canExecute, want.definer, want.owner)
		}
	}
}

// TestNotifyRevealsNothingAcrossTenants is finding 2 of issue 11: a session
// of the runtime role that is not the notifier of T1 (no context, another
// tenant's context, an entity of T1) hears nothing of T1's new memories: not
// on the old shared channel, not on any channel it can get a name for, and
// it can't read the key the names are made from. Notifications arrive in
// commit order, so a marker committed after T1's insert is the first thing
// each listener receives if T1's insert reached none of them.
func TestNotifyRevealsNothingAcrossTenants(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	t1, t2 := demo.T1, demo.T2
	ctx := context.Background()

	noContext := mustConnect(t, d.AppDSN())
	if ch := listenAs(t, noContext, uuid.Nil, uuid.Nil); ch != "" {
		t.Errorf("notify_listen with no context returned channel %q", ch)
	}
	entityOfT1 := mustConnect(t, d.AppDSN())
	if ch := listenAs(t, entityOfT1, t1.Tenant.ID, t1.Charlie); ch != "" {
		t.Errorf("notify_listen with an entity of T1 in context returned channel %q", ch)
	}
	otherTenant := mustConnect(t, d.AppDSN())
	t2Channel := listenAs(t, otherTenant, t2.Tenant.ID, uuid.Nil)
	if t2Channel == "" {
		t.Fatal("T2's notifier context got no channel")
	}
	// Every name the attacker could guess from what it knows.
	guesses := []string{"bulkhead_memories", "bulkhead_" + strings.ReplaceAll(t1.Tenant.ID.String(), "-", ""), t1.Tenant.ID.String(), "bulkhead_" + t1.Tenant.ID.String()}
	for _, c := range []*pgx.Conn{noContext, entityOfT1, otherTenant} {
		for _, g := range guesses {
			if _, err := c.Exec(ctx, "LISTEN "+pgx.Identifier{g}.Sanitize()); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The key is out of the runtime role's reach, and so is the function
	// computing names from it.
	if _, err := noContext.Exec(ctx, "SELECT * FROM bulkhead.notify_key"); sqlState(err) != "42501" {
		t.Errorf("runtime role reads the notify key: %v, want 42501", err)
	}
	if _, err := noContext.Exec(ctx, "SELECT bulkhead.notify_channel($1)", t1.Tenant.ID); sqlState(err) != "42501" {
		t.Errorf("runtime role computes a channel name: %v, want 42501", err)
	}

	m := mustAppend(t, d.DB, as(t, t1.Tenant.ID, t1.Bob, uuid.Nil), t1.Room1, "T1 secret")
	// Markers, committed after T1's insert.
	t2m := mustAppend(t, d.DB, as(t, t2.Tenant.ID, t2.Bob, uuid.Nil), t2.Room1, "T2 marker")
	admin := mustConnect(t, d.AdminDSN())
	if _, err := admin.Exec(ctx, "SELECT pg_notify($1, 'marker')", "bulkhead_memories"); err != nil {
		t.Fatal(err)
	}

	leaked := func(name string, c *pgx.Conn, wantChannel, wantPayload string) {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, notifyWait)
		defer cancel()
		note, err := c.WaitForNotification(wctx)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, id := range []uuid.UUID{t1.Tenant.ID, t1.Room1, m.ID} {
			if strings.Contains(note.Channel+note.Payload, id.String()) || strings.Contains(note.Channel, strings.ReplaceAll(id.String(), "-", "")) {
				t.Errorf("%s received %s %q: it names T1's %s", name, note.Channel, note.Payload, id)
			}
		}
		if note.Channel != wantChannel || note.Payload != wantPayload {
			t.Errorf("%s: first notification %s %q, want %s %q", name, note.Channel, note.Payload, wantChannel, wantPayload)
		}
	}
	leaked("no context", noContext, "bulkhead_memories", "marker")
	leaked("an entity of T1", entityOfT1, "bulkhead_memories", "marker")
	leaked("T2's context", otherTenant, t2Channel, t2.Room1.String()+":"+t2m.ID.String())
}

// TestNotifierRoutesAndRLSDecides: notifications reach the subscribers of
// their tenant and room only, in commit order, and the content comes only
// from a read in the reader's scope, which row-level security decides.
func TestNotifierRoutesAndRLSDecides(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	t1, t2 := demo.T1, demo.T2
	// Pings every 20 ms: the connection must keep delivering across them.
	n := newNotifier(t, d.DB, postgres.NotifierConfig{PingInterval: 20 * time.Millisecond})
	room1 := mustSubscribe(t, n, t1.Tenant.ID, t1.Room1)
	room2 := mustSubscribe(t, n, t1.Tenant.ID, t1.Room2)
	otherTenant := mustSubscribe(t, n, t2.Tenant.ID, t2.Room1)
	// The other tenant's subscription keyed by T1's room: routing is by
	// tenant and room, so it must see nothing either.
	spoofed := mustSubscribe(t, n, t2.Tenant.ID, t1.Room1)
	time.Sleep(100 * time.Millisecond) // a few pings

	bob1 := as(t, t1.Tenant.ID, t1.Bob, uuid.Nil)
	secret := "room1-" + uuid.NewString()
	m1 := mustAppend(t, d.DB, bob1, t1.Room1, secret)
	m2 := mustAppend(t, d.DB, bob1, t1.Room2, "room2")
	m3 := mustAppend(t, d.DB, as(t, t2.Tenant.ID, t2.Bob, uuid.Nil), t2.Room1, "T2 room1")

	if got := mustReceive(t, room1); got != m1.ID {
		t.Errorf("room1 subscriber got %s, want %s", got, m1.ID)
	}
	// Each subscriber's first id is the one for its own room: the earlier
	// commits in other rooms and tenants were never routed to it.
	if got := mustReceive(t, room2); got != m2.ID {
		t.Errorf("room2 subscriber got %s first, want room2's %s", got, m2.ID)
	}
	if got := mustReceive(t, otherTenant); got != m3.ID {
		t.Errorf("T2 subscriber got %s first, want T2's %s", got, m3.ID)
	}
	select {
	case id := <-spoofed.C():
		t.Errorf("a T2 subscription keyed by T1's room received %s", id)
	default:
	}

	// The read decides: the owner side sees it, nobody else does.
	got, err := d.DB.RoomMemory(as(t, t1.Tenant.ID, t1.Alice, uuid.Nil), t1.Room1, m1.ID)
	if err != nil || got.Content != secret || got.AuthorID != t1.Bob {
		t.Errorf("Alice (room1) reads the memory: %+v %v", got, err)
	}
	for name, ctx := range map[string]context.Context{
		"T1 Charlie (not in room1)": as(t, t1.Tenant.ID, t1.Charlie, uuid.Nil),
		"T2 Alice":                  as(t, t2.Tenant.ID, t2.Alice, uuid.Nil),
		"T2 Bob":                    as(t, t2.Tenant.ID, t2.Bob, uuid.Nil),
	} {
		if m, err := d.DB.RoomMemory(ctx, t1.Room1, m1.ID); !errors.Is(err, bulkhead.ErrNotFound) {
			t.Errorf("%s reads T1's memory: %+v %v, want ErrNotFound", name, m, err)
		}
	}
	if _, err := d.DB.RoomMemory(context.Background(), t1.Room1, m1.ID); !errors.Is(err, bulkhead.ErrUnauthenticated) {
		t.Errorf("no scope: %v, want ErrUnauthenticated", err)
	}
}

// TestNotifierReconnects kills the listening connection: live
// subscriptions end (they may have missed something), and new ones are
// served by the reconnected listener.
func TestNotifierReconnects(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	n := newNotifier(t, d.DB, postgres.NotifierConfig{MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	sub := mustSubscribe(t, n, demo.T1.Tenant.ID, demo.T1.Room1)
	admin := mustConnect(t, d.AdminDSN())
	var killed int
	if err := admin.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = 'bulkhead notifier' AND datname = current_database()`).Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("terminated %d listeners (%v), want 1", killed, err)
	}
	select {
	case _, ok := <-sub.C():
		if ok || !errors.Is(sub.Err(), postgres.ErrNotificationsLost) {
			t.Fatalf("after the connection broke: open %v, err %v; want closed with ErrNotificationsLost", ok, sub.Err())
		}
	case <-time.After(notifyWait):
		t.Fatal("the subscription outlived its connection")
	}
	again := mustSubscribe(t, n, demo.T1.Tenant.ID, demo.T1.Room1)
	m := mustAppend(t, d.DB, as(t, demo.T1.Tenant.ID, demo.T1.Bob, uuid.Nil), demo.T1.Room1, "after the reconnect")
	if got := mustReceive(t, again); got != m.ID {
		t.Errorf("after the reconnect got %s, want %s", got, m.ID)
	}
}

// TestNotifierEndsSlowSubscribersAndCloses: a subscriber that falls behind
// its buffer is ended, not waited for; Close ends the rest; the listening
// connection goes away when nobody is subscribed.
func TestNotifierEndsSlowSubscribersAndCloses(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	n := newNotifier(t, d.DB, postgres.NotifierConfig{Buffer: 2, IdleTimeout: 20 * time.Millisecond})
	slow := mustSubscribe(t, n, demo.T1.Tenant.ID, demo.T1.Room1)
	bob := as(t, demo.T1.Tenant.ID, demo.T1.Bob, uuid.Nil)
	for i := range 3 {
		mustAppend(t, d.DB, bob, demo.T1.Room1, "burst "+string(rune('a'+i)))
	}
	// Read nothing until it is ended, then find exactly the buffer's worth.
	for start := time.Now(); slow.Err() == nil; time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > notifyWait {
			t.Fatal("the slow subscriber was never ended")
		}
	}
	received := 0
	for range slow.C() {
		received++
	}
	if received != 2 || !errors.Is(slow.Err(), postgres.ErrNotificationsLost) {
		t.Errorf("slow subscriber: %d ids then %v; want 2 then ErrNotificationsLost", received, slow.Err())
	}

	// Nobody is subscribed: the connection closes after the idle timeout.
	admin := mustConnect(t, d.AdminDSN())
	listeners := func() int {
		var k int
		if err := admin.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'bulkhead notifier' AND datname = current_database()`).Scan(&k); err != nil {
			t.Fatal(err)
		}
		return k
	}
	for start := time.Now(); listeners() != 0; time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > notifyWait {
			t.Fatal("the idle listening connection stays open")
		}
	}

	sub := mustSubscribe(t, n, demo.T1.Tenant.ID, demo.T1.Room2)
	n.Close()
	if _, ok := <-sub.C(); ok || !errors.Is(sub.Err(), postgres.ErrNotifierClosed) {
		t.Errorf("after Close: open %v, err %v", ok, sub.Err())
	}
	if _, err := n.Subscribe(context.Background(), demo.T1.Tenant.ID, demo.T1.Room2); !errors.Is(err, postgres.ErrNotifierClosed) {
		t.Errorf("Subscribe after Close: %v", err)
	}
	for start := time.Now(); listeners() != 0; time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > notifyWait {
			t.Fatal("the listening connection outlives Close")
		}
	}
}
