package postgres_test

import (
	"context"
	"errors"
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

// TestNotifyTriggerAnnouncesIDsOnly listens as the runtime role, as the
// server does: a committed insert is announced as tenant:room:id and
// nothing else; a rolled-back one is not announced at all. The trigger
// function is an ordinary one with a pinned search_path that nobody may
// call directly.
func TestNotifyTriggerAnnouncesIDsOnly(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	ctx := context.Background()
	conn := mustConnect(t, d.AppDSN())
	if _, err := conn.Exec(ctx, "LISTEN "+postgres.NotifyChannel); err != nil {
		t.Fatal(err)
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
	want := demo.T1.Tenant.ID.String() + ":" + demo.T1.Room1.String() + ":" + m.ID.String()
	if note.Channel != postgres.NotifyChannel || note.Payload != want {
		t.Errorf("first notification %s %q, want %s %q (the rolled-back insert must not be announced)", note.Channel, note.Payload, postgres.NotifyChannel, want)
	}
	if strings.Contains(note.Payload, secret) {
		t.Error("the notification carries the content")
	}

	admin := mustConnect(t, d.AdminDSN())
	var definer, canExecute bool
	var config, owner string
	err = admin.QueryRow(ctx, `SELECT p.prosecdef, coalesce(array_to_string(p.proconfig, ','), ''), pg_get_userbyid(p.proowner),
		has_function_privilege($1, p.oid, 'EXECUTE')
		FROM pg_proc p WHERE p.oid = 'bulkhead.notify_memory_inserted()'::regprocedure`, postgres.Runtime).Scan(&definer, &config, &owner, &canExecute)
	if err != nil {
		t.Fatal(err)
	}
	if definer || config != "search_path=pg_catalog, pg_temp" || owner != postgres.Owner || canExecute {
		t.Errorf("trigger function: security definer %v, config %q, owner %s, runtime role may execute %v; want false, pinned search_path, %s, false",
			definer, config, owner, canExecute, postgres.Owner)
	}
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
		admin.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'bulkhead notifier' AND datname = current_database()`).Scan(&k)
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
