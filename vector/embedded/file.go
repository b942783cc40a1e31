package embedded

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/google/uuid"
)

// The collection file format, version 2. All integers little-endian.
//
//	offset  size        field
//	0       8           magic "BHVECCOL"
//	8       4           format version (2)
//	12      4           dimension d
//	16      16          tenant UUID (must equal the one in the file name)
//	32      4           generation (must equal the one in the file name)
//	36      8           point count n
//	44      n records   id [16] | d × float32 (IEEE 754 bits) |
//	                    payload entries m uint32 | m × (klen uint32 | key | vlen uint32 | value)
//	end-32  32          SHA-256 of every byte before it
//
// Version 1 had no generation (header of 40 bytes, count at 32) and its
// files were named "<tenant>.vec"; this build reads neither, and refuses
// to serve a tenant that has one (see checkNoLegacy).
//
// A file is only ever replaced whole, by rename from a fully written and
// fsynced temporary file in the same directory.
const (
	magic         = "BHVECCOL"
	formatVersion = 2
	headerSize    = 44
	trailerSize   = sha256.Size
	fileExt       = ".vec"
	tmpMarker     = ".tmp-"
)

// ErrCorrupt: a collection file fails its checksum, its header or its
// structure, or belongs to another tenant or generation. It matches
// vector.ErrUnavailable: the collection cannot be served, and is never
// served as empty.
var ErrCorrupt = fmt.Errorf("corrupt collection file: %w", vector.ErrUnavailable)

// key names one collection: a tenant's generation. It is the key of
// Store.colls and, through fileName, of the files.
type key struct {
	tenant uuid.UUID
	gen    uint32
}

func keyOf(c vector.Collection) key { return key{tenant: c.Tenant(), gen: c.Generation()} }

// String returns "<tenant>/g<gen>", for errors.
func (k key) String() string { return k.tenant.String() + "/g" + strconv.FormatUint(uint64(k.gen), 10) }

// fileName is the one place a collection's file name is made: the
// canonical (lower-case, hyphenated) string of the tenant UUID taken from a
// router-minted Collection, ".g", the generation in decimal, and the
// extension: "<tenant>.g<gen>.vec". No input string, no hash.
func fileName(k key) string {
	return k.tenant.String() + ".g" + strconv.FormatUint(uint64(k.gen), 10) + fileExt
}

// isTemp reports whether name is a temporary file left by persist.
func isTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, tmpMarker)
}

// tempOwner returns the collection whose snapshot or log the temporary
// file name was to become (persist and createLog name them "." + the
// file's name + tmpMarker + a random suffix), and false for any other
// name, a format-1 temporary file's included.
func tempOwner(name string) (key, bool) {
	base, _, ok := strings.Cut(strings.TrimPrefix(name, "."), tmpMarker)
	if !ok || !strings.HasPrefix(name, ".") || len(base) < 36 {
		return key{}, false
	}
	tenant, err := uuid.Parse(base[:36])
	if err != nil {
		return key{}, false
	}
	rest, ok := strings.CutPrefix(base[36:], ".g")
	if !ok {
		return key{}, false
	}
	g, _, _ := strings.Cut(rest, ".")
	gen, err := strconv.ParseUint(g, 10, 32)
	if err != nil {
		return key{}, false
	}
	k := key{tenant: tenant, gen: uint32(gen)}
	if base != fileName(k) && base != logName(k) {
		return key{}, false
	}
	return k, true
}

// legacyName is the name format 1 gave tenant's collection file,
// "<tenant>.vec" (see checkNoLegacy).
func legacyName(tenant uuid.UUID) string { return tenant.String() + fileExt }

// checkPrivate returns ErrNotPrivate, naming path and the chmod that fixes
// it, unless fi (path's) describes a regular file with no group or other
// permission bits: bulkhead creates its files 0600, so anything else was
// made or changed by someone else. A symlink is refused too (it could
// lead anywhere).
func checkPrivate(path string, fi os.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file (mode %v): %w", filepath.Base(path), fi.Mode(), ErrNotPrivate)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s is accessible to others (mode %v): chmod 600 %s: %w", filepath.Base(path), fi.Mode().Perm(), path, ErrNotPrivate)
	}
	return nil
}

// readPrivate reads the file at path, refusing it with ErrNotPrivate
// (checkPrivate) before reading a byte: lstat of the path first, so a
// symlink or a FIFO is never opened, then fstat of what was opened, so the
// permissions checked are those of the file read. A missing file is
// fs.ErrNotExist.
func readPrivate(path string) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if err := checkPrivate(path, fi); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return nil, err
	}
	if err := checkPrivate(path, fi); err != nil {
		return nil, err
	}
	// The size fstat gave: the store replaces a snapshot by rename and
	// appends to a log only under the collection's lock, which the caller
	// holds, so the file does not change while it is read.
	b := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, err
	}
	return b, nil
}

func corrupt(k key, format string, args ...any) error {
	return fmt.Errorf("collection %s: %s: %w", k, fmt.Sprintf(format, args...), ErrCorrupt)
}

// encode writes d as k's collection file.
func encode(w io.Writer, k key, d *data) error {
	h := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(w, h), 1<<20)
	var hdr [headerSize]byte
	copy(hdr[0:8], magic)
	binary.LittleEndian.PutUint32(hdr[8:], formatVersion)
	binary.LittleEndian.PutUint32(hdr[12:], uint32(d.dim))
	copy(hdr[16:32], k.tenant[:])
	binary.LittleEndian.PutUint32(hdr[32:], k.gen)
	binary.LittleEndian.PutUint64(hdr[36:], uint64(len(d.ids)))
	bw.Write(hdr[:])
	buf := make([]byte, 0, 16+4*d.dim+64)
	vec := make([]float32, 0, d.dim)
	for i, id := range d.ids {
		buf = append(buf[:0], id[:]...)
		vec = d.appendVector(vec[:0], i)
		for _, x := range vec {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(x))
		}
		buf = appendPayload(buf, d.payloads[i])
		if _, err := bw.Write(buf); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	_, err := w.Write(h.Sum(nil))
	return err
}

// decode parses and verifies k's collection file b: a file whose header
// names another tenant or another generation is ErrCorrupt, so a file
// copied or renamed to another collection's name is never served. The
// checksum is verified before anything else is read; the structure is
// still parsed defensively (bounds checked before every allocation).
func decode(b []byte, k key) (*data, error) {
	if len(b) < headerSize+trailerSize {
		return nil, corrupt(k, "%d bytes, shorter than a header", len(b))
	}
	body, sum := b[:len(b)-trailerSize], b[len(b)-trailerSize:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], sum) {
		return nil, corrupt(k, "checksum mismatch")
	}
	if string(body[0:8]) != magic {
		return nil, corrupt(k, "not a collection file")
	}
	if v := binary.LittleEndian.Uint32(body[8:]); v != formatVersion {
		return nil, corrupt(k, "format version %d, this build reads %d", v, formatVersion)
	}
	dim := int(binary.LittleEndian.Uint32(body[12:]))
	if vector.CheckDimension(dim) != nil {
		return nil, corrupt(k, "dimension %d", dim)
	}
	owner := key{tenant: uuid.UUID(body[16:32]), gen: binary.LittleEndian.Uint32(body[32:])}
	if owner != k {
		return nil, corrupt(k, "file belongs to tenant %s generation %d", owner.tenant, owner.gen)
	}
	n := binary.LittleEndian.Uint64(body[36:])
	rest := body[headerSize:]
	minRecord := uint64(16 + 4*dim + 4)
	if n > uint64(len(rest))/minRecord {
		return nil, corrupt(k, "%d points cannot fit in %d bytes", n, len(rest))
	}
	d := newData(dim, int(n))
	for i := uint64(0); i < n; i++ {
		if uint64(len(rest)) < minRecord {
			return nil, corrupt(k, "point %d truncated", i)
		}
		p := vector.Point{ID: uuid.UUID(rest[:16]), Vector: make([]float32, dim)}
		rest = rest[16:]
		for j := range p.Vector {
			p.Vector[j] = math.Float32frombits(binary.LittleEndian.Uint32(rest[4*j:]))
		}
		rest = rest[4*dim:]
		var err error
		if p.Payload, rest, err = readPayload(rest); err != nil {
			return nil, corrupt(k, "point %d: %v", i, err)
		}
		t, ok, err := p.ValidateTerms(dim)
		if err != nil {
			return nil, corrupt(k, "point %d: %v", i, err)
		}
		if _, dup := d.index[p.ID]; dup {
			return nil, corrupt(k, "point %s stored twice", p.ID)
		}
		d.add(p, t, ok)
	}
	if len(rest) != 0 {
		return nil, corrupt(k, "%d trailing bytes", len(rest))
	}
	return d, nil
}

func appendPayload(b []byte, m map[string]string) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(m)))
	for _, k := range sortedKeys(m) {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(k)))
		b = append(b, k...)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(m[k])))
		b = append(b, m[k]...)
	}
	return b
}

func readPayload(b []byte) (map[string]string, []byte, error) {
	next := func() (string, error) {
		if len(b) < 4 {
			return "", errors.New("payload truncated")
		}
		n := binary.LittleEndian.Uint32(b)
		if uint64(n) > uint64(len(b)-4) || n > vector.MaxPayload {
			return "", errors.New("payload string overruns the file")
		}
		s := string(b[4 : 4+n])
		b = b[4+n:]
		return s, nil
	}
	if len(b) < 4 {
		return nil, b, errors.New("payload truncated")
	}
	m := binary.LittleEndian.Uint32(b)
	b = b[4:]
	if m == 0 {
		return nil, b, nil
	}
	if uint64(m) > uint64(len(b))/8 {
		return nil, b, errors.New("payload entry count overruns the file")
	}
	p := make(map[string]string, m)
	prev := ""
	for i := range m {
		k, err := next()
		if err != nil {
			return nil, b, err
		}
		v, err := next()
		if err != nil {
			return nil, b, err
		}
		if i > 0 && k <= prev { // keys are written sorted: the encoding is canonical
			return nil, b, fmt.Errorf("payload key %q out of order or repeated", k)
		}
		p[k], prev = v, k
	}
	return p, b, nil
}

// persist atomically replaces k's collection file with d and returns the
// new file's size: write a temporary file in the same directory, fsync it,
// rename it over the old one, fsync the directory. A crash at any point
// leaves either the old or the new file, never a mix; a leftover temporary
// file is never read and is removed by the sweep New starts (its name,
// "." + fileName(k) + tmpMarker + a random suffix, is what tempOwner
// parses; the caller holds k's lock, see removeTemp). at, if not nil, runs at each
// step (stepSnapshotWritten, stepSnapshotSynced, stepSnapshotRenamed) with
// the temporary file's path: tests use it to stop or kill the writer there.
func persist(dir string, k key, d *data, at func(step, tmp string) error) (size int64, err error) {
	if at == nil {
		at = func(string, string) error { return nil }
	}
	f, err := os.CreateTemp(dir, "."+fileName(k)+tmpMarker+"*")
	if err != nil {
		return 0, err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = encode(f, k, d); err != nil {
		return 0, err
	}
	if err = at(stepSnapshotWritten, tmp); err != nil {
		return 0, err
	}
	if err = f.Sync(); err != nil {
		return 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if err = f.Close(); err != nil {
		return 0, err
	}
	if err = at(stepSnapshotSynced, tmp); err != nil {
		return 0, err
	}
	if err = os.Rename(tmp, filepath.Join(dir, fileName(k))); err != nil {
		return 0, err
	}
	if err = at(stepSnapshotRenamed, tmp); err != nil {
		return 0, err // the deferred cleanup finds no temporary file left
	}
	return fi.Size(), syncDir(dir)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
