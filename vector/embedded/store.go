package embedded

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/google/uuid"
)

// ErrLocked: another Store (in this process or another, such as a running
// bulkhead serve) has the directory open. It matches vector.ErrUnavailable.
// ErrNotPrivate: a file in the store's directory is accessible to other
// users, or the directory can't be made private.
var ErrNotPrivate = errors.New("embedded vector store is accessible to other users")

var ErrLocked = fmt.Errorf("embedded vector store directory is in use by another process: %w", vector.ErrUnavailable)

// DefaultMemoryBudget is the resident-memory target of a Store made without
// WithMemoryBudget.
const DefaultMemoryBudget = 1 << 30

// Store is the embedded vector backend: one file per tenant and generation
// in a directory,
// loaded on first use, evicted least-recently-used beyond a memory budget,
// searched exactly. It implements vector.Store and is safe for concurrent
// use: searches of one collection run in parallel, writes to it are
// serialised and exclude its searches, and different collections never
// wait for each other except while one is being evicted.
type Store struct {
	dir    string
	budget int64
	lock   *os.File // flock on dir/LOCK: one Store per directory

	mu     sync.Mutex // guards colls, lru, used, closed and every coll's pins, size, elem
	colls  map[key]*coll
	lru    list.List // loaded collections, most recently used first
	used   int64
	closed bool

	loads atomic.Int64

	compactMin      int64          // see WithCompactMin
	closing         bool           // Close has begun: no new compactions (mu)
	compactions     sync.WaitGroup // background compactions running
	compactFailures atomic.Int64
	lastCompactErr  atomic.Pointer[error]
	logger          atomic.Pointer[slog.Logger] // see SetLogger; nil: no log

	beforeRename func(tmp string) error        // test hook, see persist
	hook         func(step, path string) error // test hook, see Store.at
}

var _ vector.Store = (*Store)(nil)

// coll is the handle of one collection (a tenant's generation). At most
// one handle per key is in Store.colls; a handle leaves the map only when
// unloaded and unpinned, so two live handles never hold the same
// collection's data.
type coll struct {
	key key
	mu  sync.RWMutex // guards d, snapBytes, logBytes; taken before Store.mu, never after
	d   *data        // nil: not loaded

	snapBytes  int64       // size of the snapshot file, while loaded
	logBytes   int64       // size of the log file (0: none), while loaded
	compacting atomic.Bool // a background compaction holds a pin

	pins int           // calls using the handle (Store.mu)
	size int64         // bytes counted in Store.used (Store.mu)
	elem *list.Element // position in Store.lru while loaded (Store.mu)
}

// Option configures a Store.
type Option func(*Store)

// WithMemoryBudget sets how many bytes of loaded collections a Store keeps
// resident between calls; least recently used collections beyond it are
// unloaded and reloaded from their file on demand. Collections in use are
// never evicted, so the peak is the budget plus the collections being
// used; a budget smaller than one collection means reloading it every time.
func WithMemoryBudget(bytes int64) Option {
	return func(s *Store) { s.budget = bytes }
}

// New opens (creating it if needed, mode 0700) the directory dir as an
// embedded store. It takes an exclusive lock on the directory, so a second
// Store on the same directory, in this process or another, fails; and it
// removes temporary files a crashed write left behind (they are never read).
// It returns vector.ErrUnavailable on I/O errors, when dir is locked, or
// when dir holds a collection file of format 1 ("<tenant>.vec", from before
// generations): this build would not read it, and serving its tenant as
// having no collection is what the store must never do. Format 1 was never
// wired into the server, so there is no migration: remove such files to
// open the directory.
func New(dir string, opts ...Option) (*Store, error) {
	s := &Store{dir: dir, budget: DefaultMemoryBudget, compactMin: DefaultCompactMin, colls: make(map[key]*coll)}
	for _, o := range opts {
		o(s)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded vector store %s: %w (%w)", dir, vector.ErrUnavailable, err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		if errors.Is(err, ErrLocked) {
			return nil, fmt.Errorf("embedded vector store %s: %w", dir, err)
		}
		return nil, fmt.Errorf("embedded vector store %s: lock: %w (%w)", dir, vector.ErrUnavailable, err)
	}
	s.lock = lock
	// Tenants' vectors (and the text they encode), and the tenant ids in
	// the file names, are for this process's user only: the directory is
	// made 0700 (an existing one included), and a collection file others
	// can read is refused, not served: bulkhead writes them 0600, so a
	// looser one was changed by someone else.
	if err := os.Chmod(dir, 0o700); err != nil {
		lock.Close()
		return nil, fmt.Errorf("embedded vector store %s: make it private: %w (%w)", dir, ErrNotPrivate, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("embedded vector store %s: %w (%w)", dir, vector.ErrUnavailable, err)
	}
	for _, e := range entries {
		if isLegacy(e.Name()) {
			lock.Close()
			return nil, fmt.Errorf("embedded vector store %s: %s is a collection file of format 1, which this build does not read: %w", dir, e.Name(), vector.ErrUnavailable)
		}
		if fi, err := e.Info(); err == nil && fi.Mode().Perm()&0o077 != 0 {
			lock.Close()
			return nil, fmt.Errorf("embedded vector store %s: %s is accessible to others: chmod 600 %s: %w", dir, e.Name(), filepath.Join(dir, e.Name()), ErrNotPrivate)
		}
		if isTemp(e.Name()) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				lock.Close()
				return nil, fmt.Errorf("embedded vector store %s: remove leftover %s: %w (%w)", dir, e.Name(), vector.ErrUnavailable, err)
			}
		}
	}
	return s, nil
}

// Close unloads every collection and releases the directory lock. Calls
// still in flight must have returned; later calls return
// vector.ErrUnavailable.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closing = true
	s.mu.Unlock()
	s.compactions.Wait() // a compaction writes files: finish before unlocking the directory
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.colls = nil
	s.lru.Init()
	s.used = 0
	return s.lock.Close()
}

// Resident returns how many collections are loaded and the bytes they are
// estimated to hold.
func (s *Store) Resident() (collections int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lru.Len(), s.used
}

// Loads returns how many times a collection file has been read since New
// (first uses plus reloads after eviction).
func (s *Store) Loads() int64 { return s.loads.Load() }

func (s *Store) path(k key) string { return filepath.Join(s.dir, fileName(k)) }

// unavailable wraps an I/O failure of op on k: vector.ErrNoSpace when the
// file system is full, else vector.ErrUnavailable.
func unavailable(op string, k key, err error) error {
	if isNoSpace(err) {
		return fmt.Errorf("%s collection %s: %w (%w)", op, k, vector.ErrNoSpace, err)
	}
	return fmt.Errorf("%s collection %s: %w (%w)", op, k, vector.ErrUnavailable, err)
}

// pin returns k's handle with one more pin, creating it if needed.
func (s *Store) pin(k key) (*coll, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("embedded vector store closed: %w", vector.ErrUnavailable)
	}
	c := s.colls[k]
	if c == nil {
		c = &coll{key: k}
		s.colls[k] = c
	}
	c.pins++
	if c.elem != nil {
		s.lru.MoveToFront(c.elem)
	}
	return c, nil
}

// unpin releases a pin, forgets an unloaded idle handle, then evicts down
// to the budget. The caller holds no collection lock.
func (s *Store) unpin(c *coll) {
	s.mu.Lock()
	c.pins--
	s.forgetLocked(c)
	s.mu.Unlock()
	s.evict()
}

func (s *Store) forgetLocked(c *coll) {
	if c.pins == 0 && c.elem == nil && s.colls[c.key] == c {
		delete(s.colls, c.key)
	}
}

// install sets c's data (nil: unload) and its memory accounting. The caller
// holds c.mu for writing.
func (s *Store) install(c *coll, d *data) {
	c.d = d
	var size int64
	if d != nil {
		size = d.resident()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.used += size - c.size
	c.size = size
	switch {
	case d == nil && c.elem != nil:
		s.lru.Remove(c.elem)
		c.elem = nil
	case d != nil && c.elem == nil:
		c.elem = s.lru.PushFront(c)
	case d != nil:
		s.lru.MoveToFront(c.elem)
	}
}

// evict unloads idle collections, least recently used first, until the
// resident total fits the budget. It must be called holding no collection
// lock (it takes the victims' locks).
func (s *Store) evict() {
	for attempts := 0; ; attempts++ {
		s.mu.Lock()
		if s.closed || s.used <= s.budget || attempts > s.lru.Len()+1 {
			s.mu.Unlock()
			return
		}
		var victim *coll
		for e := s.lru.Back(); e != nil; e = e.Prev() {
			if c := e.Value.(*coll); c.pins == 0 {
				victim = c
				break
			}
		}
		if victim == nil {
			s.mu.Unlock()
			return
		}
		victim.pins++ // keeps the handle in the map while we wait for its lock
		s.mu.Unlock()

		victim.mu.Lock()
		s.mu.Lock()
		idle := victim.pins == 1
		s.mu.Unlock()
		if idle && victim.d != nil {
			s.install(victim, nil)
		}
		victim.mu.Unlock()
		s.mu.Lock()
		victim.pins--
		s.forgetLocked(victim)
		s.mu.Unlock()
	}
}

// load reads and verifies h's snapshot, then replays its log (dropping a
// torn tail), and records both files' sizes in h. The caller holds h.mu
// for writing.
func (s *Store) load(ctx context.Context, h *coll) (*data, error) {
	k := h.key
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(s.path(k))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("collection %s: %w", k, vector.ErrNotFound)
	}
	if err != nil {
		return nil, unavailable("load", k, err)
	}
	s.loads.Add(1)
	d, err := decode(b, k)
	if err != nil {
		return nil, err
	}
	logBytes, err := s.readLog(k, d)
	if errors.Is(err, ErrCorrupt) {
		return nil, err
	}
	if err != nil {
		return nil, unavailable("load", k, err)
	}
	h.snapBytes, h.logBytes = int64(len(b)), logBytes
	return d, nil
}

// read runs fn on c's loaded collection under its read lock.
func (s *Store) read(ctx context.Context, c vector.Collection, fn func(*data) error) error {
	if err := vector.CheckAccess(ctx, c); err != nil {
		return err
	}
	h, err := s.pin(keyOf(c))
	if err != nil {
		return err
	}
	defer s.unpin(h)
	h.mu.RLock()
	for h.d == nil { // load, then downgrade; an unload in between (drop, failed write) loops
		h.mu.RUnlock()
		h.mu.Lock()
		if h.d == nil {
			d, err := s.load(ctx, h)
			if err != nil {
				h.mu.Unlock()
				return err
			}
			s.install(h, d)
		}
		h.mu.Unlock()
		h.mu.RLock()
	}
	defer h.mu.RUnlock()
	return fn(h.d)
}

// exclusive runs fn on c's handle under its write lock, after the access
// check.
func (s *Store) exclusive(ctx context.Context, c vector.Collection, fn func(h *coll) error) error {
	if err := vector.CheckAccess(ctx, c); err != nil {
		return err
	}
	h, err := s.pin(keyOf(c))
	if err != nil {
		return err
	}
	defer s.unpin(h)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	return fn(h)
}

// write runs fn on c's handle under its write lock. fn gets the loaded
// collection, or nil with the load error (vector.ErrNotFound for a missing
// file); it mutates and persists through s.save.
func (s *Store) write(ctx context.Context, c vector.Collection, fn func(h *coll, d *data, loadErr error) error) error {
	return s.exclusive(ctx, c, func(h *coll) error {
		var loadErr error
		if h.d == nil {
			var d *data
			if d, loadErr = s.load(ctx, h); loadErr == nil {
				s.install(h, d)
			}
		}
		return fn(h, h.d, loadErr)
	})
}

// appendAndApply makes a write durable, then applies it in memory: it
// appends rec to h's log (fsynced before it returns), then runs apply on
// d and may start a background compaction. If the append fails the
// collection is unloaded, so the next call reloads what is on disk: memory
// never diverges from the files.
func (s *Store) appendAndApply(h *coll, d *data, rec []byte, apply func(), op string) error {
	if err := s.appendLog(h, rec); err != nil {
		s.install(h, nil)
		return unavailable(op, h.key, err)
	}
	apply()
	s.install(h, d)
	s.maybeCompact(h)
	return nil
}

// CreateCollection implements vector.Store.
func (s *Store) CreateCollection(ctx context.Context, c vector.Collection, dim int) error {
	if err := vector.CheckDimension(dim); err != nil {
		return err
	}
	return s.write(ctx, c, func(h *coll, d *data, loadErr error) error {
		switch {
		case errors.Is(loadErr, vector.ErrNotFound):
			// A log left by an interrupted drop must not be replayed
			// into the new collection.
			if err := s.removeLog(h.key); err != nil {
				return unavailable("create", h.key, err)
			}
			size, err := persist(s.dir, h.key, newData(dim, 0), s.at)
			if err != nil {
				return unavailable("create", h.key, err)
			}
			h.snapBytes, h.logBytes = size, 0
			s.install(h, newData(dim, 0))
			return nil
		case loadErr != nil: // never overwrite a file that fails to load
			return loadErr
		case d.dim != dim:
			return fmt.Errorf("create collection %s with dimension %d: exists with %d: %w", h.key, dim, d.dim, vector.ErrDimension)
		}
		return nil
	})
}

// DropCollection implements vector.Store. It removes the snapshot, then
// the log, even if they are corrupt, so an operator can always drop. The
// snapshot goes first: once it is gone the collection is (a log without
// its snapshot is never read), and a log left by a crash in between is
// removed by CreateCollection before it makes a new snapshot, never
// replayed into it.
func (s *Store) DropCollection(ctx context.Context, c vector.Collection) error {
	return s.exclusive(ctx, c, func(h *coll) error {
		s.install(h, nil)
		err := os.Remove(s.path(h.key))
		missing := errors.Is(err, fs.ErrNotExist)
		if missing {
			err = nil
		}
		if err == nil {
			err = syncDir(s.dir)
		}
		if err == nil {
			err = s.removeLog(h.key)
		}
		if err != nil {
			return unavailable("drop", h.key, err)
		}
		if missing {
			return fmt.Errorf("drop collection %s: %w", h.key, vector.ErrNotFound)
		}
		return nil
	})
}

// Upsert implements vector.Store. The points are appended to the
// collection's log as one record, fsynced before it returns, so a call
// costs I/O proportional to the batch, not to the collection (compaction
// folds the log into the snapshot later, in the background). On
// vector.ErrNoSpace (the file system is full: ENOSPC, EDQUOT) nothing of
// the write is kept: the part of the record the file system took is cut
// back, or, if even that fails, dropped as a torn tail at the next load;
// the same write succeeds once space is freed, on the same Store. On
// another vector.ErrUnavailable the write may or may not have reached the
// disk; retrying is safe.
func (s *Store) Upsert(ctx context.Context, c vector.Collection, points []vector.Point) error {
	return s.write(ctx, c, func(h *coll, d *data, loadErr error) error {
		if loadErr != nil {
			return loadErr
		}
		seen := make(map[uuid.UUID]struct{}, len(points))
		for _, p := range points {
			if err := p.Validate(d.dim); err != nil {
				return fmt.Errorf("upsert into collection %s: %w", h.key, err)
			}
			if _, dup := seen[p.ID]; dup {
				return fmt.Errorf("upsert into collection %s: %w", h.key, bulkhead.Invalid("id", "repeated in one upsert: "+p.ID.String()))
			}
			seen[p.ID] = struct{}{}
		}
		if len(points) == 0 {
			return nil
		}
		return s.appendAndApply(h, d, upsertRecord(points, d.dim), func() {
			for _, p := range points {
				d.put(p)
			}
		}, "upsert into")
	})
}

// Delete implements vector.Store.
func (s *Store) Delete(ctx context.Context, c vector.Collection, ids []uuid.UUID) error {
	return s.write(ctx, c, func(h *coll, d *data, loadErr error) error {
		if loadErr != nil {
			return loadErr
		}
		uniq := make(map[uuid.UUID]struct{}, len(ids))
		var list []uuid.UUID
		for _, id := range ids {
			if _, ok := d.index[id]; !ok {
				return fmt.Errorf("delete point %s from collection %s: %w", id, h.key, vector.ErrNotFound)
			}
			if _, dup := uniq[id]; !dup {
				uniq[id] = struct{}{}
				list = append(list, id)
			}
		}
		if len(list) == 0 {
			return nil
		}
		return s.appendAndApply(h, d, deleteRecord(list), func() {
			for _, id := range list {
				d.remove(id)
			}
		}, "delete from")
	})
}

// Search implements vector.Store with an exact scan (see the package doc).
func (s *Store) Search(ctx context.Context, c vector.Collection, query []float32, k int) ([]vector.Hit, error) {
	var hits []vector.Hit
	err := s.read(ctx, c, func(d *data) error {
		if err := vector.CheckQuery(query, d.dim, k); err != nil {
			return fmt.Errorf("search collection %s: %w", keyOf(c), err)
		}
		top, err := d.search(query, k, ctx.Err)
		if err != nil {
			return err
		}
		hits = make([]vector.Hit, len(top))
		for i, t := range top {
			hits[i] = vector.Hit{
				ID:      d.ids[t.row],
				Score:   max(-1, min(1, t.score)),
				Payload: maps.Clone(d.payloads[t.row]),
				Tenant:  c.Tenant(),
			}
		}
		return nil
	})
	return hits, err
}

// SearchTerms implements vector.TermSearcher: an exact ranking of the
// collection's points by vector.TermScore through its lexical index, in
// time proportional to the postings of query's tokens (not to the
// collection). It returns vector.ErrNoTermIndex while the collection holds
// points stored without terms.
func (s *Store) SearchTerms(ctx context.Context, c vector.Collection, query []uint64, k int) ([]vector.Hit, error) {
	if err := vector.CheckTermQuery(query, k); err != nil {
		return nil, err
	}
	var hits []vector.Hit
	err := s.read(ctx, c, func(d *data) error {
		if d.lex.unindexed > 0 {
			return fmt.Errorf("search terms in collection %s: %d points have no terms: %w", keyOf(c), d.lex.unindexed, vector.ErrNoTermIndex)
		}
		top, err := d.lex.search(d.ids, query, k, ctx.Err)
		if err != nil {
			return err
		}
		hits = make([]vector.Hit, len(top))
		for i, t := range top {
			hits[i] = vector.Hit{ID: d.ids[t.row], Score: t.score, Payload: maps.Clone(d.payloads[t.row]), Tenant: c.Tenant()}
		}
		return nil
	})
	return hits, err
}

// Stats implements vector.Store. It loads the collection (verifying its
// checksum) if it is not resident.
func (s *Store) Stats(ctx context.Context, c vector.Collection) (vector.Stats, error) {
	var st vector.Stats
	err := s.read(ctx, c, func(d *data) error {
		st = vector.Stats{Dimension: d.dim, Points: d.len(), Bytes: d.size()}
		return nil
	})
	return st, err
}

// Scroll implements vector.Store.
func (s *Store) Scroll(ctx context.Context, c vector.Collection, after uuid.UUID, limit int) ([]vector.Point, error) {
	if err := vector.CheckScrollLimit(limit); err != nil {
		return nil, err
	}
	var out []vector.Point
	err := s.read(ctx, c, func(d *data) error {
		out = d.scroll(after, limit)
		return nil
	})
	return out, err
}
