package embedded

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/bulkhead-dev/bulkhead/vector/vectortest"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

// FuzzDecodeLog feeds arbitrary logs to the log decoder: it never panics,
// and whatever it accepts (the valid prefix) re-encodes to the same bytes.
func FuzzDecodeLog(f *testing.F) {
	k := key{tenant: uuid.MustParse("6ba7b810-9dad-11d1-80b4-00c04fd430c8"), gen: 3}
	const dim = 3
	pts := randomPoints(7, 3, dim)
	full := logBytes(k, []logRecord{
		{op: opUpsert, points: pts},
		{op: opDelete, ids: []uuid.UUID{pts[0].ID, pts[2].ID}},
		{op: opUpsert, points: pts[:1]},
	}, dim)
	f.Add(full)
	f.Add(full[:len(full)-3])
	f.Add(encodeLogHeader(k))
	f.Add(append(encodeLogHeader(k), make([]byte, 20)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, valid, err := decodeLog(b, k, dim)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		if valid < logHeaderSize || valid > len(b) {
			t.Fatalf("valid prefix %d of %d bytes", valid, len(b))
		}
		if out := logBytes(k, recs, dim); !bytes.Equal(out, b[:valid]) {
			t.Fatalf("decode/encode of the valid prefix is not a round trip")
		}
		d := newData(dim, 0)
		for _, r := range recs {
			r.apply(d)
		}
	})
}

// TestTornLogTailDiscarded: what a crash in the middle of an append leaves
// after the log's last record (no acknowledged write is in it), written
// over the log's room of zeros as an append writes, is discarded at load
// and cut off the file (zeros may stay: they are room), so the next append
// follows the last valid record and survives a restart.
func TestTornLogTailDiscarded(t *testing.T) {
	rec := upsertRecord(randomPoints(9, 2, 16), 16)
	badBody := bytes.Clone(rec)
	badBody[len(badBody)-1] ^= 1
	partHeader := bytes.Clone(rec[:recHeaderSize])
	partHeader[6] ^= 1
	for name, tail := range map[string][]byte{
		"half a header":              rec[:7],
		"header, half the body":      rec[:recHeaderSize+40],
		"whole record, body garbled": badBody,
		"zeros":                      make([]byte, 300),
		"garbled header then zeros":  append(partHeader, make([]byte, 100)...),
		// A record after the garbled one, but not whole: still no
		// acknowledged write after the damage.
		"garbled record, then part of another": append(bytes.Clone(badBody), rec[:len(rec)-10]...),
		// The record's pages reached the disk out of order: its first
		// bytes are still the room's zeros.
		"body without its header": append(make([]byte, recHeaderSize), rec[recHeaderSize:]...),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s1 := mustOpen(t, dir, WithCompactMin(-1))
			e := vectortest.NewEnv(t, s1)
			pts := randomPoints(1, 20, 16)
			mustCreate(t, e.CtxA, e.Router, e.CollA, 16, pts)
			if err := e.Router.Upsert(e.CtxA, e.CollA, randomPoints(2, 5, 16)); err != nil {
				t.Fatal(err)
			}
			s1.Close()
			logPath := logPathOf(dir, e.TenantA, 1)
			good := readFile(t, logPath)
			k := key{tenant: e.TenantA, gen: 1}
			_, end, err := decodeLog(good, k, 16)
			if err != nil || !allZero(good[end:]) {
				t.Fatalf("the log before the tear: records end at %d of %d bytes, %v", end, len(good), err)
			}
			torn := bytes.Clone(good[:end])
			torn = append(torn, tail...)
			if len(torn) < len(good) {
				torn = append(torn, good[len(torn):]...) // the rest of the room
			}
			if err := os.WriteFile(logPath, torn, 0o600); err != nil {
				t.Fatal(err)
			}

			s2 := mustOpen(t, dir, WithCompactMin(-1))
			e2 := vectortest.NewEnv(t, s2)
			e2.Regions.Set(e.TenantA, e2.RegionName)
			ctxA, collA := e2.Scoped(t, e.TenantA)
			if st, err := e2.Router.Stats(ctxA, collA); err != nil || st.Points != 25 {
				t.Fatalf("Stats with a torn tail = %+v, %v; want the 25 acknowledged points", st, err)
			}
			if after := readFile(t, logPath); len(after) < end || !bytes.Equal(good[:end], after[:end]) || !allZero(after[end:]) {
				t.Fatal("the torn tail was not cut off the log")
			}
			if err := e2.Router.Upsert(ctxA, collA, randomPoints(3, 5, 16)); err != nil {
				t.Fatal(err)
			}
			s2.Close()
			e3 := vectortest.NewEnv(t, mustOpen(t, dir))
			e3.Regions.Set(e.TenantA, e3.RegionName)
			ctxA, collA = e3.Scoped(t, e.TenantA)
			if st, err := e3.Router.Stats(ctxA, collA); err != nil || st.Points != 30 {
				t.Fatalf("after an append and a restart = %+v, %v; want 30 points", st, err)
			}
		})
	}
}

// TestCorruptLogRecordIsAnError: damage to a record that has records after
// it is never a torn tail: the collection is ErrCorrupt (served neither
// empty nor without the record), writes are refused, the files are left
// alone, other tenants are unaffected, and Drop still works.
func TestCorruptLogRecordIsAnError(t *testing.T) {
	for name, off := range map[string]int{
		"log header":            5,
		"first record length":   logHeaderSize + 1,
		"first record body":     logHeaderSize + recHeaderSize + 30,
		"first record body crc": logHeaderSize + 9,
		// The log cut to the end of its records, as one written before
		// logs had room: the whole record after the damage ends exactly
		// at the end of the file.
		"first record body, no room":   logHeaderSize + recHeaderSize + 30,
		"first record length, no room": logHeaderSize + 1,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s1 := mustOpen(t, dir, WithCompactMin(-1))
			e := vectortest.NewEnv(t, s1)
			mustCreate(t, e.CtxA, e.Router, e.CollA, 16, randomPoints(1, 20, 16))
			if err := e.Router.Upsert(e.CtxA, e.CollA, randomPoints(2, 5, 16)); err != nil {
				t.Fatal(err)
			}
			mustCreate(t, e.CtxB, e.Router, e.CollB, 16, randomPoints(4, 20, 16))
			q := randomPoints(5, 1, 16)[0].Vector
			wantB := mustSearch(t, e.CtxB, e.Router, e.CollB, q, 5)
			s1.Close()
			logPath := logPathOf(dir, e.TenantA, 1)
			if strings.HasSuffix(name, ", no room") {
				b := readFile(t, logPath)
				_, end, err := decodeLog(b, key{tenant: e.TenantA, gen: 1}, 16)
				if err != nil || end == len(b) {
					t.Fatalf("the log has no room to cut (%d of %d bytes): %v", end, len(b), err)
				}
				if err := os.Truncate(logPath, int64(end)); err != nil {
					t.Fatal(err)
				}
			}
			corruptAt(t, logPath, off)
			tampered := readFile(t, logPath)

			e2 := vectortest.NewEnv(t, mustOpen(t, dir))
			e2.Regions.Set(e.TenantA, e2.RegionName)
			e2.Regions.Set(e.TenantB, e2.RegionName)
			ctxA, collA := e2.Scoped(t, e.TenantA)
			ctxB, collB := e2.Scoped(t, e.TenantB)
			if _, err := e2.Router.Search(ctxA, collA, q, 5); !errors.Is(err, ErrCorrupt) || errors.Is(err, vector.ErrNotFound) {
				t.Fatalf("Search with a corrupt log record: %v; want ErrCorrupt", err)
			}
			if err := e2.Router.Upsert(ctxA, collA, randomPoints(3, 1, 16)); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Upsert with a corrupt log record: %v; want ErrCorrupt", err)
			}
			if !bytes.Equal(tampered, readFile(t, logPath)) {
				t.Fatal("the corrupt log was rewritten")
			}
			if diff := cmp.Diff(wantB, mustSearch(t, ctxB, e2.Router, collB, q, 5)); diff != "" {
				t.Fatalf("B after A's corruption (-want +got):\n%s", diff)
			}
			if err := e2.Router.DropCollection(ctxA, collA); err != nil {
				t.Fatalf("Drop with a corrupt log: %v", err)
			}
			if _, err := os.Stat(logPath); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("log after Drop: %v; want it removed", err)
			}
		})
	}
}

// TestAppendCostsTheBatch: below the compaction threshold a write leaves
// the snapshot untouched and grows the log's records by exactly its own;
// the room of zeros after them stays within the log's size.
func TestAppendCostsTheBatch(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	e := vectortest.NewEnv(t, s)
	mustCreate(t, e.CtxA, e.Router, e.CollA, 16, randomPoints(1, 500, 16))
	snap := readFile(t, pathOf(dir, e.TenantA, 1))
	k := key{tenant: e.TenantA, gen: 1}
	records := func() (end, size int) {
		t.Helper()
		b := readFile(t, logPathOf(dir, e.TenantA, 1))
		_, end, err := decodeLog(b, k, 16)
		if err != nil || !allZero(b[end:]) {
			t.Fatalf("log: records end at %d of %d bytes, %v", end, len(b), err)
		}
		return end, len(b)
	}
	logBefore, _ := records()
	batch := randomPoints(2, 3, 16)
	if err := e.Router.Upsert(e.CtxA, e.CollA, batch); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snap, readFile(t, pathOf(dir, e.TenantA, 1))) {
		t.Fatal("an append rewrote the snapshot")
	}
	if fi, err := os.Stat(logPathOf(dir, e.TenantA, 1)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("log mode %v (%v), want 0600 like the snapshot", fi.Mode().Perm(), err)
	}
	got, size := records()
	if want := logBefore + len(upsertRecord(batch, 16)); got != want {
		t.Fatalf("the log's records end at %d after the append, want %d", got, want)
	}
	if size > got+max(got, minLogExtent) {
		t.Fatalf("the log is %d bytes for %d of records: more room than its size", size, got)
	}
}

// TestCompactionFoldsTheLog: a compaction writes every point into the
// snapshot and truncates the log to its header; the collection answers
// the same before, after, and after a restart.
func TestCompactionFoldsTheLog(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, WithCompactMin(0))
	e := vectortest.NewEnv(t, s)
	pts := randomPoints(1, 50, 16)
	mustCreate(t, e.CtxA, e.Router, e.CollA, 16, pts)
	if err := e.Router.Delete(e.CtxA, e.CollA, []uuid.UUID{pts[1].ID, pts[2].ID}); err != nil {
		t.Fatal(err)
	}
	want := mustSearch(t, e.CtxA, e.Router, e.CollA, pts[5].Vector, 10)
	// Whether the delete's record was folded by a background compaction
	// depends on timing (one started by the create may have run first, and
	// the small record alone doesn't reach the threshold): wait for any
	// running compaction, then fold what is left, deterministically.
	s.compactions.Wait()
	s.mu.Lock()
	h := s.colls[key{tenant: e.TenantA, gen: 1}]
	s.mu.Unlock()
	if h == nil {
		t.Fatal("collection not resident")
	}
	if err := s.compactNow(h); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if n, err := s.CompactionFailures(); n != 0 {
		t.Fatalf("compaction failed: %v", err)
	}
	if got := readFile(t, logPathOf(dir, e.TenantA, 1)); !bytes.Equal(got, encodeLogHeader(key{tenant: e.TenantA, gen: 1})) {
		t.Fatalf("log after compaction is %d bytes, want the header alone", len(got))
	}
	d, err := decode(readFile(t, pathOf(dir, e.TenantA, 1)), key{tenant: e.TenantA, gen: 1})
	if err != nil || d.len() != 48 {
		t.Fatalf("snapshot after compaction: %v points, %v; want 48", d.len(), err)
	}
	e2 := vectortest.NewEnv(t, mustOpen(t, dir))
	e2.Regions.Set(e.TenantA, e2.RegionName)
	ctxA, collA := e2.Scoped(t, e.TenantA)
	if diff := cmp.Diff(want, mustSearch(t, ctxA, e2.Router, collA, pts[5].Vector, 10)); diff != "" {
		t.Fatalf("after compaction and a restart (-want +got):\n%s", diff)
	}
}

// TestOrphanLogNeverReplayed: a log whose snapshot is gone (a crash
// between DropCollection's two removals) is not a collection, and a new
// collection of the same name starts empty.
func TestOrphanLogNeverReplayed(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, WithCompactMin(-1))
	e := vectortest.NewEnv(t, s)
	mustCreate(t, e.CtxA, e.Router, e.CollA, 16, randomPoints(1, 10, 16))
	s.Close()
	if err := os.Remove(pathOf(dir, e.TenantA, 1)); err != nil {
		t.Fatal(err)
	}
	e2 := vectortest.NewEnv(t, mustOpen(t, dir))
	e2.Regions.Set(e.TenantA, e2.RegionName)
	ctxA, collA := e2.Scoped(t, e.TenantA)
	if _, err := e2.Router.Stats(ctxA, collA); !errors.Is(err, vector.ErrNotFound) {
		t.Fatalf("Stats with only a log: %v; want ErrNotFound", err)
	}
	if err := e2.Router.CreateCollection(ctxA, collA, 16); err != nil {
		t.Fatal(err)
	}
	if st, err := e2.Router.Stats(ctxA, collA); err != nil || st.Points != 0 {
		t.Fatalf("new collection over an orphan log: %+v, %v; want empty", st, err)
	}
	if _, err := os.Stat(logPathOf(dir, e.TenantA, 1)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("orphan log after CreateCollection: %v; want it removed", err)
	}
}
