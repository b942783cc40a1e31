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
// log's size (0: no log). A log that is not a private regular file is
// ErrNotPrivate, before a byte of it is read (readPrivate). A torn tail
// (see decodeLog) is truncated away, durably, so the next append follows
// the last valid record.
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
	if valid < len(b) {
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
// none, and fsyncs it: when it returns nil the record is durable. On error
// it tries to cut the log back to its size before the call, so a partial
// record never precedes a later one; the caller unloads the collection so
// the next call re-reads what is on disk. The caller holds h.mu for writing.
func (s *Store) appendLog(h *coll, rec []byte) (err error) {
	if h.logBytes == 0 {
		if err := s.createLog(h.key); err != nil {
			return fmt.Errorf("create log: %w", err)
		}
		h.logBytes = logHeaderSize
	}
	path := s.logPath(h.key)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
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
	size := fi.Size()
	defer func() {
		if err != nil {
			if terr := f.Truncate(size); terr == nil {
				f.Sync()
			}
		}
	}()
	if _, err = f.Write(rec); err != nil {
		return fmt.Errorf("append to log: %w", err)
	}
	if err = s.at(stepAppendWritten, path); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("fsync log: %w", err)
	}
	if err := s.at(stepAppendSynced, path); err != nil {
		return err // durable already: nothing to cut back
	}
	h.logBytes = size + int64(len(rec))
	return nil
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
