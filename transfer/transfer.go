package transfer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/fieldcrypt"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/retrieval"
	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/google/uuid"
)

// Bulkhead is one bulkhead's side of a transfer: its database (with the
// keyring that seals its columns; nil keyring means plaintext mode) and
// its knowledge service (vectors).
type Bulkhead struct {
	DB        *postgres.DB
	Knowledge *retrieval.Service
}

// Summary says what an export or import carried.
type Summary struct {
	Tenant        uuid.UUID                       `json:"tenant"`
	Tables        map[string]postgres.TableDigest `json:"tables"`
	Points        int                             `json:"points"`
	Reembedded    *retrieval.ReconcileStats       `json:"reembedded,omitempty"`
	Model         string                          `json:"model,omitempty"`
	SchemaVersion int64                           `json:"schema_version"`
	Recipient     string                          `json:"recipient"`
	// ArchiveSHA256 is the SHA-256 of the archive file's bytes: compare
	// what export and import print to know the file is the one exported.
	ArchiveSHA256 string `json:"archive_sha256"`
	Bytes         int64  `json:"bytes"`
	// ReplacedUnfinished: an earlier import of the tenant had been
	// interrupted after its rows committed (postgres.DB.UnfinishedImport);
	// what it left was deleted before this import wrote anything.
	ReplacedUnfinished bool `json:"replaced_unfinished_import,omitempty"`
}

const rowBatch, pointBatch = 500, 256

// hashWriter counts and hashes what passes through it.
type hashWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (h *hashWriter) Write(p []byte) (int, error) {
	n, err := h.w.Write(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	return n, err
}

// Export writes tenant's archive, sealed to to, on w. ctx must be marked
// with bulkhead.AsMaintenance. The export is recorded in the tenant's
// audit_log before any data is read (so the archive carries the record
// too). On error, what was written to w is not an archive that opens.
func Export(ctx context.Context, src Bulkhead, tenant uuid.UUID, to *fieldcrypt.RecipientPublic, w io.Writer) (Summary, error) {
	sum := Summary{Tenant: tenant, Recipient: to.Fingerprint()}
	if _, err := src.DB.TenantByID(ctx, tenant); err != nil {
		return sum, fmt.Errorf("export tenant %s: %w", tenant, err)
	}
	version, err := postgres.SchemaVersion()
	if err != nil {
		return sum, err
	}
	sum.SchemaVersion = version
	tables, err := src.DB.TransferTables(ctx)
	if err != nil {
		return sum, err
	}
	m := Manifest{Format: FormatVersion, Tenant: tenant, SchemaVersion: version, ExportedAt: time.Now().UTC(), Recipient: to.Fingerprint(), Tables: tables}
	var keys []byte
	var keyVersion int64
	if kr := src.DB.Keyring(); kr != nil {
		k, err := kr.ExportKeys(ctx, tenant)
		if err != nil && !errors.Is(err, fieldcrypt.ErrNoKeyset) {
			return sum, fmt.Errorf("export tenant %s: its keys: %w", tenant, err)
		}
		if err == nil {
			m.Encrypted = true
			m.SourceKEK = kr.KEK().ID()
			keyVersion = k.Version()
			if keys, err = k.MarshalBinary(); err != nil {
				return sum, err
			}
		}
	}
	if err := src.DB.AuditTransfer(ctx, tenant, "tenant.export", "to recipient "+to.Fingerprint()); err != nil {
		return sum, fmt.Errorf("export tenant %s: audit: %w", tenant, err)
	}
	hw := &hashWriter{w: w, h: sha256.New()}
	aw, err := fieldcrypt.SealArchive(hw, to)
	if err != nil {
		return sum, err
	}
	enc := json.NewEncoder(aw)
	info, err := src.Knowledge.CollectionInfo(ctx, tenant)
	if err != nil {
		return sum, err
	}
	m.Vectors = info
	sum.Model = info.Model
	if err := enc.Encode(record{Kind: kindManifest, Manifest: &m}); err != nil {
		return sum, err
	}
	if m.Encrypted {
		if err := enc.Encode(record{Kind: kindKeys, Keys: keys}); err != nil {
			return sum, err
		}
	}
	digests, err := src.DB.ExportTenantRows(ctx, tenant, tables, rowBatch, func(table string, rows []json.RawMessage) error {
		return enc.Encode(record{Kind: kindRows, Table: table, Rows: rows})
	})
	if err != nil {
		return sum, err
	}
	sum.Tables = digests
	if m.Encrypted {
		// A rotation that added a key before the rows' snapshot changed
		// the stored keyset's version before any value was sealed with
		// that key: the same version now means the keys exported open
		// every value exported.
		k, err := src.DB.Keyring().ExportKeys(ctx, tenant)
		if err != nil {
			return sum, fmt.Errorf("export tenant %s: its keys: %w", tenant, err)
		}
		if k.Version() != keyVersion {
			return sum, fmt.Errorf("export tenant %s: its keys changed during the export (version %d, then %d): run it again", tenant, keyVersion, k.Version())
		}
	}
	if err := enc.Encode(record{Kind: kindRowsEnd, Digests: digests}); err != nil {
		return sum, err
	}
	got, n, psum, err := src.Knowledge.ExportPoints(ctx, tenant, func(ps []vector.Point) error {
		for len(ps) > 0 {
			k := min(len(ps), pointBatch)
			out := make([]point, k)
			for i, p := range ps[:k] {
				out[i] = point{ID: p.ID, Vector: p.Vector, Payload: p.Payload}
			}
			if err := enc.Encode(record{Kind: kindPoints, Points: out}); err != nil {
				return err
			}
			ps = ps[k:]
		}
		return nil
	})
	if err != nil {
		return sum, err
	}
	if got != info {
		return sum, fmt.Errorf("export tenant %s: its collection changed during the export (%+v, then %+v): run it again", tenant, info, got)
	}
	sum.Points = n
	if err := enc.Encode(record{Kind: kindEnd, PointCount: n, PointSum: psum[:]}); err != nil {
		return sum, err
	}
	if err := aw.Close(); err != nil {
		return sum, fmt.Errorf("export tenant %s: finish archive: %w", tenant, err)
	}
	sum.ArchiveSHA256, sum.Bytes = hex.EncodeToString(hw.h.Sum(nil)), hw.n
	return sum, nil
}

// Options change what Import does.
type Options struct {
	// Reembed embeds the tenant's chunks again with this server's default
	// model instead of importing the archive's vectors (required when the
	// archive's model or dimension is not served here).
	Reembed bool
}

// Import opens the archive at path with rcpt and writes its tenant to dst.
// ctx must be marked with bulkhead.AsMaintenance.
//
// It reads the archive twice. The first pass verifies everything that can
// be known before writing: the archive opens to its end for rcpt
// (fieldcrypt.ErrArchive otherwise), its records are complete and in
// order, its schema version is not newer than this binary's, the tenant
// does not exist here (bulkhead.ErrConflict), the points' checksum holds,
// and its vectors' model and dimension are served here unless
// opts.Reembed (retrieval.ErrModelMismatch); a tenant of that id that an
// interrupted import left behind (postgres.DB.UnfinishedImport) is not a
// conflict: it is deleted first. The second pass writes: the
// rows in one verified transaction (postgres.DB.ImportTenantRows), then
// the keys under this bulkhead's KEK and a new tenant key, then the
// vectors (read back and checked) or a re-embedding, and only then makes
// the tenant live. If a step after the rows' commit fails, the tenant is
// deleted again (collections, keys, rows) and the error says whether that
// cleanup finished.
func Import(ctx context.Context, dst Bulkhead, rcpt *fieldcrypt.Recipient, path string, opts Options) (Summary, error) {
	m, sum, err := verify(ctx, dst, rcpt, path, opts)
	if err != nil {
		return sum, err
	}
	sum, err = apply(ctx, dst, rcpt, path, opts, m, sum)
	return sum, err
}

// openFile opens path as an archive for rcpt and hashes the file's bytes.
func openFile(path string, rcpt *fieldcrypt.Recipient) (*reader, *os.File, hash.Hash, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("open archive: %w", err)
	}
	h := sha256.New()
	pr, err := fieldcrypt.OpenArchive(io.TeeReader(f, h), rcpt)
	if err != nil {
		f.Close()
		return nil, nil, nil, err
	}
	return newReader(pr), f, h, nil
}

func verify(ctx context.Context, dst Bulkhead, rcpt *fieldcrypt.Recipient, path string, opts Options) (Manifest, Summary, error) {
	var sum Summary
	r, f, h, err := openFile(path, rcpt)
	if err != nil {
		return Manifest{}, sum, err
	}
	defer f.Close()
	rec, err := r.next()
	if err != nil {
		return Manifest{}, sum, err
	}
	if rec.Manifest == nil {
		return Manifest{}, sum, fmt.Errorf("%w: no manifest", errMalformed)
	}
	m := *rec.Manifest
	if m.Format != FormatVersion || m.Tenant == uuid.Nil {
		return m, sum, fmt.Errorf("%w: manifest format %d, want %d", errMalformed, m.Format, FormatVersion)
	}
	sum = Summary{Tenant: m.Tenant, Tables: map[string]postgres.TableDigest{}, Recipient: m.Recipient, SchemaVersion: m.SchemaVersion, Model: m.Vectors.Model}
	here, err := postgres.SchemaVersion()
	if err != nil {
		return m, sum, err
	}
	if m.SchemaVersion > here {
		return m, sum, fmt.Errorf("the archive comes from schema version %d, this bulkhead is at %d: upgrade bulkhead here first", m.SchemaVersion, here)
	}
	if _, err := dst.DB.TenantByID(ctx, m.Tenant); err == nil {
		// An import of this tenant killed after its rows committed left
		// it disabled and perhaps without keys or vectors: apply replaces
		// it. Any other tenant of that id is refused.
		unfinished, err := dst.DB.UnfinishedImport(ctx, m.Tenant)
		if err != nil {
			return m, sum, err
		}
		if !unfinished {
			return m, sum, fmt.Errorf("tenant %s already exists on this bulkhead (delete it first, or import elsewhere): %w", m.Tenant, bulkhead.ErrConflict)
		}
		sum.ReplacedUnfinished = true
	} else if !errors.Is(err, bulkhead.ErrNotFound) {
		return m, sum, err
	}
	if !opts.Reembed {
		if err := dst.Knowledge.CheckModel(m.Vectors.Model, m.Vectors.Dimension); err != nil {
			return m, sum, fmt.Errorf("%w: import with --reembed to embed the tenant's chunks again with this server's model", err)
		}
	}
	if m.Encrypted && dst.DB.Keyring() == nil {
		return m, sum, errors.New("the archive's tenant has sealed columns and this bulkhead runs without field encryption")
	}
	pc := vector.NewChecksum()
	points, hasKeys := 0, false
records:
	for {
		rec, err := r.next()
		if err != nil {
			return m, sum, err
		}
		switch rec.Kind {
		case kindKeys:
			var k fieldcrypt.TenantKeys
			if err := k.UnmarshalBinary(rec.Keys); err != nil {
				return m, sum, fmt.Errorf("%w: %v", errMalformed, err)
			}
			hasKeys = true
		case kindRowsEnd:
			sum.Tables = rec.Digests
		case kindPoints:
			for _, p := range toPoints(rec.Points) {
				if err := p.Validate(m.Vectors.Dimension); err != nil && !opts.Reembed {
					return m, sum, fmt.Errorf("%w: point %s: %v", errMalformed, p.ID, err)
				}
				pc.Add(p)
			}
			points += len(rec.Points)
		case kindEnd:
			s := pc.Sum()
			if rec.PointCount != points || !bytes.Equal(rec.PointSum, s[:]) {
				return m, sum, fmt.Errorf("%w: the archive says %d points, it holds %d (or their checksum differs)", errMalformed, rec.PointCount, points)
			}
			sum.Points = points
			break records
		}
	}
	if m.Encrypted != hasKeys {
		return m, sum, fmt.Errorf("%w: the manifest says sealed columns %v, keys present %v", errMalformed, m.Encrypted, hasKeys)
	}
	if err := r.finish(); err != nil {
		return m, sum, err
	}
	sum.ArchiveSHA256 = hex.EncodeToString(h.Sum(nil))
	return m, sum, nil
}

func apply(ctx context.Context, dst Bulkhead, rcpt *fieldcrypt.Recipient, path string, opts Options, m Manifest, sum Summary) (Summary, error) {
	r, f, h, err := openFile(path, rcpt)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	if _, err := r.next(); err != nil { // the manifest, verified already
		return sum, err
	}
	if sum.ReplacedUnfinished {
		// Asked again right before deleting: only what an interrupted
		// import left is ever removed. Not forced: if its collections
		// can't be dropped, nothing is deleted and the import stops.
		if unfinished, err := dst.DB.UnfinishedImport(ctx, m.Tenant); err != nil || !unfinished {
			return sum, fmt.Errorf("import tenant %s: the unfinished earlier import changed meanwhile (run again): %w", m.Tenant, errors.Join(err, bulkhead.ErrConflict))
		}
		if _, err := dst.Knowledge.DeleteTenant(ctx, m.Tenant, false); err != nil {
			return sum, fmt.Errorf("import tenant %s: remove what an interrupted import left: %w", m.Tenant, err)
		}
	}
	var keys *fieldcrypt.TenantKeys
	var pending bool
	pending, err = dst.DB.ImportTenantRows(ctx, m.Tenant, m.Tables, func(insert postgres.ImportRows) (map[string]postgres.TableDigest, error) {
		for {
			rec, err := r.next()
			if err != nil {
				return nil, err
			}
			switch rec.Kind {
			case kindKeys:
				keys = new(fieldcrypt.TenantKeys)
				if err := keys.UnmarshalBinary(rec.Keys); err != nil {
					return nil, fmt.Errorf("%w: %v", errMalformed, err)
				}
			case kindRows:
				if err := insert(rec.Table, rec.Rows); err != nil {
					return nil, err
				}
			case kindRowsEnd:
				return rec.Digests, nil
			}
		}
	})
	if err != nil {
		return sum, err
	}
	// The rows are committed (the tenant disabled): from here on, a failure
	// deletes the tenant again.
	undo := func(cause error) (Summary, error) {
		cctx := context.WithoutCancel(ctx)
		if _, derr := dst.Knowledge.DeleteTenant(cctx, m.Tenant, true); derr != nil {
			return sum, fmt.Errorf("import tenant %s: %w; removing what was imported failed too (finish with bulkhead tenant delete --force %s): %v", m.Tenant, cause, m.Tenant, derr)
		}
		return sum, fmt.Errorf("import tenant %s (nothing kept): %w", m.Tenant, cause)
	}
	if m.Encrypted {
		if keys == nil {
			return undo(fmt.Errorf("%w: the manifest says the tenant's columns are sealed and the archive has no keys", errMalformed))
		}
		if err := dst.DB.Keyring().ImportKeys(ctx, m.Tenant, *keys); err != nil {
			return undo(err)
		}
	}
	if opts.Reembed {
		for rec := (record{}); rec.Kind != kindEnd; {
			if rec, err = r.next(); err != nil {
				return undo(err)
			}
		}
		if err := r.finish(); err != nil {
			return undo(err)
		}
		st, err := dst.Knowledge.ReembedImported(ctx, m.Tenant)
		if err != nil {
			return undo(err)
		}
		sum.Reembedded = &st
	} else {
		err := dst.Knowledge.ImportPoints(ctx, m.Tenant, func(upsert func([]vector.Point) error) (int, [sha256.Size]byte, error) {
			var s [sha256.Size]byte
			for {
				rec, err := r.next()
				if err != nil {
					return 0, s, err
				}
				switch rec.Kind {
				case kindPoints:
					if err := upsert(toPoints(rec.Points)); err != nil {
						return 0, s, err
					}
				case kindEnd:
					if err := r.finish(); err != nil {
						return 0, s, err
					}
					copy(s[:], rec.PointSum)
					return rec.PointCount, s, nil
				}
			}
		})
		if err != nil {
			return undo(err)
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum.ArchiveSHA256 {
		return undo(fmt.Errorf("the archive file changed between verifying and importing it (sha256 %s, then %s)", sum.ArchiveSHA256, got))
	}
	if err := dst.DB.FinishImport(ctx, m.Tenant, pending); err != nil {
		return undo(err)
	}
	return sum, nil
}
