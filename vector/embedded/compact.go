package embedded

import (
	"fmt"
	"log/slog"
	"os"
)

// DefaultCompactMin is the log size below which a Store made without
// WithCompactMin never compacts a collection.
const DefaultCompactMin = 4 << 20

// WithCompactMin sets the log size (bytes of records) from which a
// collection is compacted: its log is folded into a new snapshot once it
// holds at least this many bytes and at least as many as the snapshot, so
// the bytes written by compactions stay proportional to the bytes appended.
// A negative value disables compaction (tests).
func WithCompactMin(bytes int64) Option {
	return func(s *Store) { s.compactMin = bytes }
}

// maybeCompact starts a background compaction of h if its log has grown
// past the threshold and none is running. The caller holds h.mu for
// writing; the compaction waits for it to be released.
func (s *Store) maybeCompact(h *coll) {
	records := h.logBytes - logHeaderSize
	if s.compactMin < 0 || records < max(s.compactMin, h.snapBytes) {
		return
	}
	if !h.compacting.CompareAndSwap(false, true) {
		return
	}
	s.mu.Lock()
	if s.closing || s.closed {
		s.mu.Unlock()
		h.compacting.Store(false)
		return
	}
	h.pins++ // released by the compaction
	s.compactions.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.compactions.Done()
		defer s.unpin(h)
		defer h.compacting.Store(false)
		if err := s.compactNow(h); err != nil {
			s.compactFailures.Add(1)
			s.lastCompactErr.Store(&err)
			if l := s.logger.Load(); l != nil {
				l.Warn("vector compaction failed; nothing is lost (the log is kept and folded later), but the log keeps growing until one succeeds",
					"collection", h.key.String(), "no_space", isNoSpace(err), "err", err)
			}
		}
	}()
}

// compactNow folds h's log into a new snapshot, under h's read lock:
// searches go on, writes to the collection wait. Steps: write the snapshot
// to a temporary file, fsync it, rename it over the old one, fsync the
// directory (persist), then truncate the log to its header and fsync it.
// A crash before the rename leaves the old snapshot and the whole log; a
// crash after it leaves the new snapshot and a log whose replay is
// idempotent over it (log.go): either way a restart finds every
// acknowledged point. If a step fails, the files are in one of those
// states and the collection in memory is still theirs; the next append
// retries later.
func (s *Store) compactNow(h *coll) error {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.d == nil || h.logBytes <= logHeaderSize {
		return nil // unloaded (evicted, dropped, failed) or nothing to fold
	}
	size, err := persist(s.dir, h.key, h.d, s.at)
	if err != nil {
		return fmt.Errorf("compact collection %s: write snapshot: %w", h.key, err)
	}
	h.snapBytes = size
	path := s.logPath(h.key)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("compact collection %s: open log: %w", h.key, err)
	}
	defer f.Close()
	if err := f.Truncate(logHeaderSize); err != nil {
		return fmt.Errorf("compact collection %s: truncate log: %w", h.key, err)
	}
	h.logBytes = logHeaderSize
	if err := s.at(stepLogTruncated, path); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("compact collection %s: fsync log: %w", h.key, err)
	}
	return s.at(stepCompacted, path)
}

// SetLogger makes s log each failed background compaction to l. It is
// safe for concurrent use.
func (s *Store) SetLogger(l *slog.Logger) { s.logger.Store(l) }

// CompactionFailures returns how many background compactions failed since
// New, and the last failure's error. A failed compaction loses nothing
// (see compactNow); it is reported for monitoring.
func (s *Store) CompactionFailures() (int64, error) {
	var last error
	if p := s.lastCompactErr.Load(); p != nil {
		last = *p
	}
	return s.compactFailures.Load(), last
}
