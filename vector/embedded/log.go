package embedded

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"strconv"

	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/google/uuid"
)

// The write-ahead log of a collection, "<tenant>.g<gen>.log", next to its
// snapshot "<tenant>.g<gen>.vec". All integers little-endian.
//
// Header (logHeaderSize bytes), written whole through a temporary file and
// a rename, so a log is either absent or starts with a complete header:
//
//	0   8   magic "BHVECLOG"
//	8   4   log format version (1)
//	12  16  tenant UUID (must equal the one in the file name)
//	28  4   generation (must equal the one in the file name)
//	32  4   CRC-32C of bytes 0..31
//
// Then records, each durable before the write it carries is acknowledged:
//
//	0   4   body length n (at most maxRecord)
//	4   4   CRC-32C of the 4 length bytes
//	8   4   CRC-32C of the body
//	12  n   body: op (1 upsert, 2 delete) | count uint32 |
//	        upsert: count × (id [16] | d × float32 | payload, as in the snapshot)
//	        delete: count × id [16]
//
// Replaying a record is idempotent (an upsert sets each point, a delete
// removes the ids that are present), so a log replayed over a snapshot
// that already contains some or all of its records gives the same
// collection: that is what makes a crash between a compaction's rename and
// its truncation of the log harmless.
//
// The file grows by zero-filled extents, written and fsynced before
// records go into them (wal.go, growLog), so what follows the last record
// is zeros: the log's end. A record is written over those zeros and made
// durable with fdatasync before its write is acknowledged.
//
// What a damaged log means (decodeLog):
//   - A torn tail, what a crash during an append leaves, is discarded: a
//     remnant shorter than a record header, a tail of zero bytes, a record
//     whose verified length runs past the end of the file, or a record (a
//     header or a body) that fails its checksum with no whole record
//     anywhere after it (recordAfter). None of them was acknowledged: an
//     append is acknowledged only after its record is durable, and appends
//     are serialised, so only the last record can be unfinished.
//   - Anything else is ErrCorrupt: a bad header, a record that fails its
//     checksum with a whole record after it, a verified length over the
//     limit, a body that does not parse. A damaged record with
//     acknowledged records after it is never skipped silently.
const (
	logMagic      = "BHVECLOG"
	logVersion    = 1
	logHeaderSize = 36
	logExt        = ".log"
	recHeaderSize = 12
	maxRecord     = 1 << 30
	opUpsert      = 1
	opDelete      = 2
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// logName is k's log file name: "<tenant>.g<gen>.log", made like fileName.
func logName(k key) string {
	return k.tenant.String() + ".g" + strconv.FormatUint(uint64(k.gen), 10) + logExt
}

// logRecord is one decoded record: an upsert of points or a delete of ids.
type logRecord struct {
	op     byte
	points []vector.Point
	ids    []uuid.UUID
}

func encodeLogHeader(k key) []byte {
	b := make([]byte, 0, logHeaderSize)
	b = append(b, logMagic...)
	b = binary.LittleEndian.AppendUint32(b, logVersion)
	b = append(b, k.tenant[:]...)
	b = binary.LittleEndian.AppendUint32(b, k.gen)
	return binary.LittleEndian.AppendUint32(b, crc(b))
}

// encodeRecord frames body as a record.
func encodeRecord(body []byte) []byte {
	b := make([]byte, recHeaderSize, recHeaderSize+len(body))
	binary.LittleEndian.PutUint32(b[0:], uint32(len(body)))
	binary.LittleEndian.PutUint32(b[4:], crc(b[0:4]))
	binary.LittleEndian.PutUint32(b[8:], crc(body))
	return append(b, body...)
}

// upsertRecord is the record of an upsert of points (valid, of dimension
// dim, distinct ids).
func upsertRecord(points []vector.Point, dim int) []byte {
	body := make([]byte, 0, 5+len(points)*(16+4*dim+4))
	body = append(body, opUpsert)
	body = binary.LittleEndian.AppendUint32(body, uint32(len(points)))
	for _, p := range points {
		body = append(body, p.ID[:]...)
		for _, x := range p.Vector {
			body = binary.LittleEndian.AppendUint32(body, math.Float32bits(x))
		}
		body = appendPayload(body, p.Payload)
	}
	return encodeRecord(body)
}

// deleteRecord is the record of a delete of ids (distinct).
func deleteRecord(ids []uuid.UUID) []byte {
	body := make([]byte, 0, 5+16*len(ids))
	body = append(body, opDelete)
	body = binary.LittleEndian.AppendUint32(body, uint32(len(ids)))
	for _, id := range ids {
		body = append(body, id[:]...)
	}
	return encodeRecord(body)
}

// decodeLog parses and verifies k's log b for a collection of dimension
// dim. It returns the records and the length of the valid prefix of b: a
// torn tail after it is to be discarded (truncated before the next
// append). Damage that is not a torn tail is ErrCorrupt (see the format
// above).
func decodeLog(b []byte, k key, dim int) ([]logRecord, int, error) {
	if len(b) < logHeaderSize {
		return nil, 0, corrupt(k, "log of %d bytes, shorter than its header", len(b))
	}
	hdr := b[:logHeaderSize]
	if crc(hdr[:32]) != binary.LittleEndian.Uint32(hdr[32:]) {
		return nil, 0, corrupt(k, "log header checksum mismatch")
	}
	if string(hdr[0:8]) != logMagic {
		return nil, 0, corrupt(k, "not a log file")
	}
	if v := binary.LittleEndian.Uint32(hdr[8:]); v != logVersion {
		return nil, 0, corrupt(k, "log format version %d, this build reads %d", v, logVersion)
	}
	owner := key{tenant: uuid.UUID(hdr[12:28]), gen: binary.LittleEndian.Uint32(hdr[28:])}
	if owner != k {
		return nil, 0, corrupt(k, "log belongs to tenant %s generation %d", owner.tenant, owner.gen)
	}
	var recs []logRecord
	pos := logHeaderSize
	for pos < len(b) {
		rem := b[pos:]
		if len(rem) < recHeaderSize || allZero(rem) {
			return recs, pos, nil // torn tail
		}
		n := binary.LittleEndian.Uint32(rem[0:])
		if crc(rem[0:4]) != binary.LittleEndian.Uint32(rem[4:]) {
			if !recordAfter(b, pos+1) {
				return recs, pos, nil // torn tail: a header partly written, no record after it
			}
			return nil, 0, corrupt(k, "log record at offset %d: header checksum mismatch", pos)
		}
		if n > maxRecord {
			return nil, 0, corrupt(k, "log record at offset %d: length %d", pos, n)
		}
		if uint64(n) > uint64(len(rem)-recHeaderSize) {
			return recs, pos, nil // torn tail: the last record is incomplete
		}
		end := recHeaderSize + int(n)
		body := rem[recHeaderSize:end]
		if crc(body) != binary.LittleEndian.Uint32(rem[8:]) {
			if !recordAfter(b, pos+1) {
				return recs, pos, nil // torn tail: the last record's body was not all written
			}
			return nil, 0, corrupt(k, "log record at offset %d: checksum mismatch with %d bytes after it", pos, len(rem)-end)
		}
		r, err := parseRecord(body, dim)
		if err != nil {
			return nil, 0, corrupt(k, "log record at offset %d: %v", pos, err)
		}
		recs = append(recs, r)
		pos += end
	}
	return recs, pos, nil
}

// recordAfter reports whether a whole record (its length in bounds, both
// checksums right) starts at some offset of b at or after from. A record
// that fails its checksum with none after it is a torn tail: appends are
// serialised and each is durable before the next is written, so a crash
// leaves at most one record unfinished, and only the last; its pages may
// reach the disk in any order (zeros, the log's room, may sit among
// them). Failing with a record after it is damage. It is only called
// when a record fails, so scanning every offset is affordable.
func recordAfter(b []byte, from int) bool {
	for off := from; off+recHeaderSize < len(b); off++ {
		n := binary.LittleEndian.Uint32(b[off:])
		if n == 0 || n > maxRecord || uint64(n) > uint64(len(b)-off-recHeaderSize) {
			continue
		}
		if crc(b[off:off+4]) != binary.LittleEndian.Uint32(b[off+4:]) {
			continue
		}
		if crc(b[off+recHeaderSize:off+recHeaderSize+int(n)]) == binary.LittleEndian.Uint32(b[off+8:]) {
			return true
		}
	}
	return false
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// parseRecord parses a record body whose checksum has been verified,
// defensively: bounds are checked before every allocation.
func parseRecord(body []byte, dim int) (logRecord, error) {
	if len(body) < 5 {
		return logRecord{}, fmt.Errorf("body of %d bytes", len(body))
	}
	r := logRecord{op: body[0]}
	n := binary.LittleEndian.Uint32(body[1:])
	rest := body[5:]
	switch r.op {
	case opUpsert:
		minPoint := uint64(16 + 4*dim + 4)
		if uint64(n) > uint64(len(rest))/minPoint {
			return logRecord{}, fmt.Errorf("%d points cannot fit in %d bytes", n, len(rest))
		}
		seen := make(map[uuid.UUID]struct{}, n)
		r.points = make([]vector.Point, 0, n)
		for i := uint32(0); i < n; i++ {
			if uint64(len(rest)) < minPoint {
				return logRecord{}, fmt.Errorf("point %d truncated", i)
			}
			p := vector.Point{ID: uuid.UUID(rest[:16]), Vector: make([]float32, dim)}
			rest = rest[16:]
			for j := range p.Vector {
				p.Vector[j] = math.Float32frombits(binary.LittleEndian.Uint32(rest[4*j:]))
			}
			rest = rest[4*dim:]
			var err error
			if p.Payload, rest, err = readPayload(rest); err != nil {
				return logRecord{}, fmt.Errorf("point %d: %v", i, err)
			}
			if err := p.Validate(dim); err != nil {
				return logRecord{}, fmt.Errorf("point %d: %v", i, err)
			}
			if _, dup := seen[p.ID]; dup {
				return logRecord{}, fmt.Errorf("point %s twice in one record", p.ID)
			}
			seen[p.ID] = struct{}{}
			r.points = append(r.points, p)
		}
	case opDelete:
		if uint64(n) > uint64(len(rest))/16 {
			return logRecord{}, fmt.Errorf("%d ids cannot fit in %d bytes", n, len(rest))
		}
		seen := make(map[uuid.UUID]struct{}, n)
		r.ids = make([]uuid.UUID, 0, n)
		for i := uint32(0); i < n; i++ {
			id := uuid.UUID(rest[:16])
			rest = rest[16:]
			if _, dup := seen[id]; dup {
				return logRecord{}, fmt.Errorf("id %s twice in one record", id)
			}
			seen[id] = struct{}{}
			r.ids = append(r.ids, id)
		}
	default:
		return logRecord{}, fmt.Errorf("unknown op %d", r.op)
	}
	if len(rest) != 0 {
		return logRecord{}, fmt.Errorf("%d trailing bytes", len(rest))
	}
	return r, nil
}

// apply replays r on d. It is idempotent: an upsert sets each point, a
// delete removes the ids present and ignores the others.
func (r logRecord) apply(d *data) {
	switch r.op {
	case opUpsert:
		for _, p := range r.points {
			d.put(p)
		}
	case opDelete:
		for _, id := range r.ids {
			if _, ok := d.index[id]; ok {
				d.remove(id)
			}
		}
	}
}

// encode re-frames r as the record it was decoded from (for the fuzz
// round trip).
func (r logRecord) encode(dim int) []byte {
	if r.op == opDelete {
		return deleteRecord(r.ids)
	}
	return upsertRecord(r.points, dim)
}

// logBytes is the log b holds, re-encoded (for tests).
func logBytes(k key, recs []logRecord, dim int) []byte {
	var out bytes.Buffer
	out.Write(encodeLogHeader(k))
	for _, r := range recs {
		out.Write(r.encode(dim))
	}
	return out.Bytes()
}
