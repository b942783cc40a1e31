package embedded

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
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
// ErrNotPrivate: the store's directory can't be made private, or a file of
// the store (LOCK, a collection's snapshot or log) is accessible to other
// users or is not a regular file; the error names the file and the chmod
// that fixes it. It matches vector.ErrUnavailable: the collection (or, for
// the directory and LOCK, the store) is refused, never served.
var ErrNotPrivate = fmt.Errorf("embedded vector store is accessible to other users: %w", vector.ErrUnavailable)

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
	logRoomMax      int64          // the most room (zeros) a log grows by; tests set 0 (growLog)
	closing         bool           // Close has begun: no new compactions (mu)
	compactions     sync.WaitGroup // background compactions running
	sweeping        sync.WaitGroup // the temporary-file sweep New starts
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
	logBytes   int64       // end of the log's last record (0: no log), while loaded
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
// Store on the same directory, in this process or another, fails.
//
// Its cost does not depend on how many collections dir holds: it makes dir
// 0700 (an existing one included), locks it, checks that LOCK is private,
// and starts the sweep of temporary files; it lists no directory and
// opens no collection. What it used to check for every file is checked
// where a collection is touched (see load):
//   - Permissions: each time a collection's snapshot or log is read, the
//     file must be a regular file with no group or other permission bits
//     (lstat before opening, fstat of what was opened); else that
//     collection's calls (Search, Stats, Upsert, CreateCollection...)
//     return ErrNotPrivate naming the file and the chmod 600 that fixes it,
//     and the file is not read. Other collections are unaffected.
//   - Format 1: a "<tenant>.vec" file (from before generations) makes
//     every call on that tenant's collections, CreateCollection and
//     DropCollection included, return vector.ErrUnavailable naming the
//     file: this build would not read it, and serving the tenant as having
//     no collection, or creating one beside it, is what the store must
//     never do. Format 1 was never wired into the server, so there is no
//     migration: remove the file. Other tenants are unaffected.
//   - Temporary files a crashed write left behind are never read (nothing
//     reads a temporary file), and a background sweep removes them. A
//     sweep, rather than removal when a collection is first touched,
//     because their names end in os.CreateTemp's random suffix: finding one
//     collection's means listing the directory, which at every first touch
//     would cost what New no longer pays, once per collection; and a sweep
//     also removes the leftovers of collections never touched again (a
//     crashed write's copy of a tenant's vectors does not outlive the
//     restart). The sweep removes a collection's temporary file only under
//     that collection's write lock, so never one a write in progress is
//     making, and Close waits for it to stop (it never works on the
//     directory after the lock is released). A removal that fails is
//     logged (SetLogger) and left for the next start.
//
// It returns vector.ErrUnavailable on I/O errors or when dir is locked
// (ErrLocked), and ErrNotPrivate when dir can't be made 0700 or LOCK is
// accessible to others.
func New(dir string, opts ...Option) (*Store, error) {
	s := &Store{dir: dir, budget: DefaultMemoryBudget, compactMin: DefaultCompactMin, logRoomMax: maxLogExtent, colls: make(map[key]*coll)}
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
	// Tenants' vectors (and the text they encode), and the tenant ids in
	// the file names, are for this process's user only: the directory is
	// made 0700, and bulkhead writes every file 0600, so a looser file was
	// changed by someone else and is refused (LOCK here, a collection's
	// files when they are read).
	if err := os.Chmod(dir, 0o700); err != nil {
		lock.Close()
		return nil, fmt.Errorf("embedded vector store %s: make it private: %w (%w)", dir, ErrNotPrivate, err)
	}
	fi, err := lock.Stat()
	if err == nil {
		err = checkPrivate(lock.Name(), fi)
	}
	if err != nil {
		lock.Close()
		if errors.Is(err, ErrNotPrivate) {
			return nil, fmt.Errorf("embedded vector store %s: %w", dir, err)
		}
		return nil, fmt.Errorf("embedded vector store %s: %w (%w)", dir, vector.ErrUnavailable, err)
	}
	s.lock = lock
	s.sweeping.Add(1)
	go s.sweepTemps()
	return s, nil
}

// sweepTemps removes the temporary files crashed writes left in the
// directory (see New), reading the directory in batches so its memory does
// not grow with it. It stops at the next batch once Close begins.
func (s *Store) sweepTemps() {
	defer s.sweeping.Done()
	f, err := os.Open(s.dir)
	if err != nil {
		s.sweepFailed("list the directory", err)
		return
	}
	defer f.Close()
	for {
		s.mu.Lock()
		stop := s.closing
		s.mu.Unlock()
		if stop {
			return
		}
		names, err := f.Readdirnames(1024)
		for _, name := range names {
			if isTemp(name) {
				if err := s.removeTemp(name); err != nil {
					s.sweepFailed("remove leftover "+name, err)
				}
			}
		}
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			s.sweepFailed("list the directory", err)
			return
		}
	}
}

// removeTemp removes the temporary file name. If it is a collection's (a
// snapshot's or a log's, named by persist or createLog), it does so under
// that collection's write lock: every write that makes such a file holds
// the lock (for writing, or for reading in a compaction) from creating it
// to renaming or removing it, so the file found is a crashed write's, or
// gone. Other temporary names are not made by this build: no lock needed.
func (s *Store) removeTemp(name string) error {
	if k, ok := tempOwner(name); ok {
		h, err := s.pin(k)
		if err != nil {
			return err
		}
		defer s.unpin(h)
		h.mu.Lock()
		defer h.mu.Unlock()
	}
	err := os.Remove(filepath.Join(s.dir, name))
	if errors.Is(err, fs.ErrNotExist) { // renamed or removed by its own write
		return nil
	}
	return err
}

func (s *Store) sweepFailed(what string, err error) {
	if l := s.logger.Load(); l != nil {
		l.Warn("vector store: sweeping temporary files failed; they are never read, only taking space, and the next start retries",
			"dir", s.dir, "step", what, "err", err)
	}
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
	s.sweeping.Wait()    // so does the sweep (it stops at its next batch)
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

// checkNoLegacy returns vector.ErrUnavailable, naming the file, if k's
// tenant has a format-1 collection file ("<tenant>.vec"): one lstat, so
// the check costs the same however many tenants the directory holds.
func (s *Store) checkNoLegacy(k key) error {
	name := legacyName(k.tenant)
	_, err := os.Lstat(filepath.Join(s.dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return unavailable("check for a format-1 file of", k, err)
	}
	return fmt.Errorf("collection %s: %s is a collection file of format 1, which this build does not read; remove it to serve the tenant: %w", k, name, vector.ErrUnavailable)
}

// unavailable wraps an I/O failure of op on k: vector.ErrNoSpace when the
// file system is full, else vector.ErrUnavailable. ErrNotPrivate, which
// matches vector.ErrUnavailable already, is only given the context.
func unavailable(op string, k key, err error) error {
	if errors.Is(err, ErrNotPrivate) {
		return fmt.Errorf("%s collection %s: %w", op, k, err)
	}
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
// for writing. This is where the checks New does not make happen, each
// time a collection is read from disk (first use, reload after eviction,
// the write that follows a failed one): a format-1 file of the tenant
// (vector.ErrUnavailable, see checkNoLegacy), a snapshot or log that is not
// a private regular file (ErrNotPrivate, see readPrivate), both before a
// byte of the collection is read.
func (s *Store) load(ctx context.Context, h *coll) (*data, error) {
	k := h.key
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.checkNoLegacy(k); err != nil {
		return nil, err
	}
	b, err := readPrivate(s.path(k))
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
// replayed into it. A tenant with a format-1 file is refused
// (vector.ErrUnavailable, see New) and nothing is removed.
func (s *Store) DropCollection(ctx context.Context, c vector.Collection) error {
	return s.exclusive(ctx, c, func(h *coll) error {
		if err := s.checkNoLegacy(h.key); err != nil {
			return err
		}
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
		parsed := make([]vector.Terms, len(points))
		hasTerms := make([]bool, len(points))
		for i, p := range points {
			var err error
			if parsed[i], hasTerms[i], err = p.ValidateTerms(d.dim); err != nil {
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
			for i, p := range points {
				d.putTerms(p, parsed[i], hasTerms[i])
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
