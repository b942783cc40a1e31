package embedded

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// The steps of a write at which the test hook (Store.hook) runs. A crash
// test kills the process at each of them and checks what a restart finds.
const (
	stepSnapshotWritten = "snapshot written"        // temporary snapshot written, not fsynced
	stepSnapshotSynced  = "snapshot synced"         // fsynced, not renamed
	stepSnapshotRenamed = "snapshot renamed"        // renamed, directory not fsynced
	stepLogCreated      = "log header synced"       // new log's temporary file fsynced, not renamed
	stepLogExtended     = "log extended"            // zeros written past the log's end, not fsynced
	stepAppendWritten   = "record written"          // record written to the log, not fsynced
	stepAppendSynced    = "record synced"           // fsynced, not yet acknowledged
	stepLogTruncated    = "log truncated"           // compaction truncated the log, not fsynced
	stepCompacted       = "compaction done"         // compaction complete
	stepLogTailDropped  = "torn log tail truncated" // at load, not fsynced
)

// at runs the test hooks for step (path: the file the step concerns).
func (s *Store) at(step, path string) error {
	if step == stepSnapshotSynced && s.beforeRename != nil {
		if err := s.beforeRename(path); err != nil {
			return err
		}
	}
	if s.hook != nil {
		return s.hook(step, path)
	}
	return nil
}

func (s *Store) logPath(k key) string { return filepath.Join(s.dir, logName(k)) }

// readLog replays k's log into d, loaded from the snapshot, and returns the
// end of its last record (0: no log). A log that is not a private regular
// file is ErrNotPrivate, before a byte of it is read (readPrivate). A torn
// tail (see decodeLog) is truncated away, durably, so the next append
// follows the last valid record; zeros after the last record (the room an
// append made, growLog) are kept for the next appends.
func (s *Store) readLog(k key, d *data) (int64, error) {
	path := s.logPath(k)
	b, err := readPrivate(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read log: %w", err)
	}
	recs, valid, err := decodeLog(b, k, d.dim)
	if err != nil {
		return 0, err
	}
	for _, r := range recs {
		r.apply(d)
	}
	if valid < len(b) && !allZero(b[valid:]) {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return 0, fmt.Errorf("drop torn log tail: %w", err)
		}
		defer f.Close()
		if err := f.Truncate(int64(valid)); err != nil {
			return 0, fmt.Errorf("drop torn log tail: %w", err)
		}
		if err := s.at(stepLogTailDropped, path); err != nil {
			return 0, err
		}
		if err := f.Sync(); err != nil {
			return 0, fmt.Errorf("drop torn log tail: %w", err)
		}
	}
	return int64(valid), nil
}

// createLog makes k's empty log, header only, atomically: a temporary file
// fsynced, renamed, the directory fsynced.
func (s *Store) createLog(k key) (err error) {
	f, err := os.CreateTemp(s.dir, "."+logName(k)+tmpMarker+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(encodeLogHeader(k)); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = s.at(stepLogCreated, tmp); err != nil {
		return err
	}
	if err = os.Rename(tmp, s.logPath(k)); err != nil {
		return err
	}
	return syncDir(s.dir)
}

// appendLog appends rec to h's log, creating the log first if there is
// none, and makes it durable: when it returns nil the record is on disk.
// On error it tries to put the file back as it was (the record's bytes
// zeroed, any extension it added cut off), so a partial record never
// precedes a later one; the caller unloads the collection so the next call
// re-reads what is on disk. The caller holds h.mu for writing.
//
// The log grows by zero-filled extents (growLog), each written and
// fsynced before a record goes into it. A record then overwrites zeros
// the file already holds and is made durable with fdatasync, which on
// such a file flushes the record alone: the file's size and blocks don't
// change, so no metadata (and on ext4 no journal commit) is written per
// record (docs/DECISIONS.md has the measurements). What follows the last
// record is zeros, which a load reads as the log's end (decodeLog).
func (s *Store) appendLog(h *coll, rec []byte) (err error) {
	if h.logBytes == 0 {
		if err := s.createLog(h.key); err != nil {
			return fmt.Errorf("create log: %w", err)
		}
		h.logBytes = logHeaderSize
	}
	path := s.logPath(h.key)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat log: %w", err)
	}
	if err := checkPrivate(path, fi); err != nil {
		return err // made looser since it was read: append nothing to it
	}
	size, at, end := fi.Size(), h.logBytes, h.logBytes+int64(len(rec))
	if size < at {
		return fmt.Errorf("append to log: the file is %d bytes, its records end at %d: changed underneath", size, at)
	}
	defer func() {
		if err != nil {
			// Back to the file as it was: the room zeros again, the
			// extension (if any) cut off.
			var zerr error
			if n := min(end, size) - at; n > 0 {
				_, zerr = f.WriteAt(make([]byte, n), at)
			}
			if terr := f.Truncate(size); terr == nil && zerr == nil {
				f.Sync()
			}
		}
	}()
	if end > size {
		if err = s.growLog(f, path, size, end); err != nil {
			return fmt.Errorf("extend log: %w", err)
		}
	}
	if _, err = f.WriteAt(rec, at); err != nil {
		return fmt.Errorf("append to log: %w", err)
	}
	if err = s.at(stepAppendWritten, path); err != nil {
		return err
	}
	if err = datasync(f); err != nil {
		return fmt.Errorf("fdatasync log: %w", err)
	}
	if err := s.at(stepAppendSynced, path); err != nil {
		return err // durable already: nothing to cut back
	}
	h.logBytes = end
	return nil
}

// Log extents: a log that needs to reach n bytes grows to n plus room of
// n bytes (it doubles), at least minLogExtent and at most maxLogExtent
// (Store.logRoomMax): the zeros it holds beyond its records are at most
// the larger of their size and 16 KiB, and never more than 1 MiB.
const (
	minLogExtent = 16 << 10
	maxLogExtent = 1 << 20
)

// growLog writes zeros from size to past need, and fsyncs the file: its
// new size and blocks are durable before a record is written into them.
func (s *Store) growLog(f *os.File, path string, size, need int64) error {
	to := need + min(max(need, minLogExtent), s.logRoomMax)
	zeros := make([]byte, min(to-size, 64<<10))
	for off := size; off < to; off += int64(len(zeros)) {
		n := min(int64(len(zeros)), to-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return err
		}
	}
	if err := s.at(stepLogExtended, path); err != nil {
		return err
	}
	return f.Sync()
}

// removeLog removes k's log if there is one, and fsyncs the directory.
func (s *Store) removeLog(k key) error {
	err := os.Remove(s.logPath(k))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return syncDir(s.dir)
}
