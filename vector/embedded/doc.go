// Package embedded is the default vector backend: every collection (one
// generation of one tenant's vectors) is a snapshot file and a log in a
// data directory,
// loaded on first use, kept in memory under a budget and searched exactly
// with SIMD matrix products (github.com/viterin/vek). It implements
// vector.Store and passes vectortest.Run.
//
// Guarantees:
//   - Naming: a collection's file is "<tenant UUID>.g<generation>.vec",
//     made in one function from the canonical lower-case string of the
//     tenant id and the decimal generation of a router-minted
//     vector.Collection. No request string and no hash ever becomes a path
//     (chromem-go named files by 32 bits of a hash, and tenants whose names
//     collided read each other's vectors). The file header repeats the
//     tenant id and the generation; a file that names another tenant or
//     another generation (copied or renamed from another collection's name)
//     is refused as ErrCorrupt.
//   - Generations are separate collections: separate files, dimensions,
//     points, stats and memory accounting; dropping or corrupting one
//     leaves the others untouched.
//   - Integrity: the file has a versioned header (magic, format version 2,
//     dimension, tenant, generation, count) and ends with a SHA-256 of
//     everything before it, verified before the content is parsed. A file
//     that fails is ErrCorrupt (matching vector.ErrUnavailable): it is never
//     served as an empty collection, never overwritten by CreateCollection
//     or Upsert, and other collections are unaffected. The log's header
//     (magic, version, tenant, generation, CRC-32C) binds it the same way. DropCollection still
//     removes it. A tenant with a format-1 file ("<tenant UUID>.vec", from
//     before generations, which this build does not read) is refused
//     rather than served as having no collection (see Format 1).
//   - Writes cost the batch: a collection is a snapshot file
//     ("<tenant>.g<gen>.vec", replaced whole) and an append-only log
//     ("<tenant>.g<gen>.log", log.go). Upsert and Delete append one record
//     (length, CRC-32C of the length, CRC-32C of the body), make it
//     durable, and only then apply the write in memory and return: a
//     write is durable when it returns, and all or nothing (one record).
//     The log grows by zero-filled extents, written and fsynced ahead of
//     the records (at most the larger of its records' size and 16 KiB,
//     and never more than 1 MiB), so a record
//     overwrites blocks the file already has and fdatasync makes it
//     durable without a metadata (journal) write: 239–243 µs per batch
//     where an fsync of a growing file took 287–296 (BenchmarkIngest,
//     log only). Loading reads the snapshot and replays the log.
//   - Compaction: once a log holds at least WithCompactMin bytes and at
//     least as many as the snapshot, a background goroutine folds it into
//     a new snapshot (temporary file, fsync, rename, fsync the directory),
//     then truncates the log to its header and fsyncs it. Replay is
//     idempotent, so a crash between the rename and the truncation replays
//     records the snapshot already holds, harmlessly. Searches go on during
//     a compaction; writes to that collection wait for it. Close waits for
//     running compactions.
//   - Crashes: a crash at any step (tested by SIGKILL at each one) leaves
//     every acknowledged write and at most the one in flight. A torn tail
//     of the log (an incomplete or garbled last record, zeros) was never
//     acknowledged and is discarded and cut off at load (zeros stay, as
//     room); a damaged record with a whole record after it is ErrCorrupt,
//     never skipped. Temporary files
//     (snapshots, new logs) are never read and are removed by the sweep
//     New starts (see Leftover temporary files). If an append fails, the
//     log is cut back and the collection unloaded, so memory never
//     diverges from the files. A log without its snapshot
//     (a crash inside DropCollection, which removes the snapshot first) is
//     never read, and CreateCollection removes it before making a new
//     snapshot.
//   - Start-up costs the same however many collections the directory
//     holds: New makes the directory 0700, locks it, refuses a LOCK file
//     others can access (ErrNotPrivate), starts a background sweep and
//     returns; it lists nothing and opens no collection. The checks that
//     used to run on every file at start-up run where a collection is
//     touched, and fail closed for that collection only; other
//     collections are served:
//   - Privacy: a collection's snapshot and log are read only if they are
//     regular files with no group or other permission bits (bulkhead
//     writes them 0600), checked each time they are read from disk (first
//     use, reload after eviction), by lstat of the path and fstat of the
//     opened file, before a byte is read; an append checks the log again.
//     Otherwise every call on that collection (Search, Stats, Scroll,
//     Upsert, Delete, CreateCollection, which never overwrites it) returns
//     ErrNotPrivate (matching vector.ErrUnavailable), naming the file and
//     "chmod 600 <path>", and the file is left as it is. A file that is
//     not a collection's is not looked at (nothing reads it).
//   - Format 1: a "<tenant UUID>.vec" file makes every call on that
//     tenant's collections (any generation, CreateCollection and
//     DropCollection included) return vector.ErrUnavailable naming the
//     file: never "no collection", never a new collection beside it.
//     Checked (one lstat) each time one of the tenant's collections is
//     read from disk, and by DropCollection. Removing the file serves the
//     tenant again, without a restart.
//   - Leftover temporary files: never read; removed by a background sweep
//     New starts and Close waits for. The sweep removes a collection's
//     temporary file only under that collection's write lock, so never the
//     file of a write in progress. Their names end in a random suffix, so
//     finding one collection's would mean listing the directory at each
//     first use; one sweep lists it once, off the start-up path, and also
//     clears collections never used again. Until it has passed, a
//     leftover only takes disk space.
//   - No auto-create: Upsert, Delete, Search, Stats and Scroll on a
//     collection without a file (a tenant's generation never created, or
//     dropped) return vector.ErrNotFound and create nothing.
//   - Memory: collections load lazily and are evicted least recently used
//     once the resident total exceeds the budget (WithMemoryBudget), then
//     reloaded, and re-verified, on demand. Collections in use are never
//     evicted.
//   - Search is an exact scan (cosine via a precomputed inverse norm per
//     point; vectors kept dimension-major in blocks of 1,024 points, each
//     block scored by one vek32.MatMul_Into, only over the query's nonzero
//     components when they are fewer than half; best k kept in a bounded
//     heap), so recall is 1.0. There is deliberately no approximate index; see the
//     vector package documentation for the measurements behind that.
//   - Concurrency: a Store is safe for concurrent use. Searches of one
//     collection run in parallel under its read lock; writes to it are
//     serialised under its write lock; collections do not wait for each
//     other. New takes an flock on the directory, so two Stores (or two
//     processes) never write the same files.
package embedded
