package fieldcrypt

import (
	"bytes"
	"container/list"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/google/uuid"
	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/prf"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// Wrapped is a tenant's keysets as stored: encrypted by the KEK, and by
// the tenant key inside it when HierarchyOf says TenantKey.
type Wrapped struct {
	AEAD    []byte // the AEAD keyset, wrapped
	PRF     []byte // the PRF keyset, wrapped
	KEKID   string // which KEK wrapped them
	Version int64  // bumped on every change (optimistic concurrency)
}

// Store persists wrapped keysets. postgres.KeysetStore implements it, on a
// table only the key service's role can read.
type Store interface {
	// Load returns the tenant's wrapped keysets, or ErrNoKeyset.
	Load(ctx context.Context, tenant uuid.UUID) (Wrapped, error)
	// Save stores w if the stored version is still prev (0: none stored);
	// otherwise it returns an error wrapping bulkhead.ErrConflict. It
	// returns an error wrapping ErrKEKChanged, storing nothing, if w is
	// wrapped by a KEK other than the one the store records (checked in the
	// same transaction as the write, serialised with RecordKEK).
	Save(ctx context.Context, tenant uuid.UUID, w Wrapped, prev int64) error
	// RecordedKEK returns the id of the KEK the store records, if any.
	RecordedKEK(ctx context.Context) (id string, ok bool, err error)
	// RecordKEK records k as the KEK every later Save must wrap with, and
	// ref (a file path or KMS URI, not secret) as where to find it.
	RecordKEK(ctx context.Context, k *KEK, ref string) error
	// Destroy deletes the tenant's keysets and records why; destroying what
	// is already gone is not an error.
	Destroy(ctx context.Context, tenant uuid.UUID, reason string) error
	// Tenants lists the tenants that have keysets.
	Tenants(ctx context.Context) ([]uuid.UUID, error)
}

// Options bound the cache of unwrapped keysets and say how to find a KEK
// the keyring does not hold yet.
type Options struct {
	CacheSize int           // tenants kept unwrapped; default 1024
	CacheTTL  time.Duration // how long; default 10 minutes
	// LoadKEK, if set, loads the KEK with this id when the keyring meets a
	// keyset wrapped by it, or when the store refuses a save because it
	// records that KEK now (after keys rotate-kek): running servers follow
	// a KEK rotation without a restart. It must verify what it loads.
	LoadKEK func(ctx context.Context, id string) (*KEK, error)
	// TenantKeys, if set, is where tenant keys live (outside the database
	// and its backups): new tenants' keysets are wrapped by their tenant
	// key inside and the KEK outside, and Shred destroys the tenant key, so
	// erasure holds against earlier database backups. Keysets wrapped by
	// the KEK only (older tenants) keep opening; MigrateErasure moves them.
	TenantKeys *TenantKeyDir
}

// Keyring seals and opens field values with per-tenant keys.
type Keyring struct {
	store Store
	opts  Options

	kekMu sync.RWMutex
	kek   *KEK            // wraps new and changed keysets
	keks  map[string]*KEK // every KEK it unwraps with, by id (kek included)

	mu    sync.Mutex
	lru   *list.List // of *entry, most recent first
	index map[uuid.UUID]*list.Element

	hits, misses atomic.Int64
}

type entry struct {
	tenant    uuid.UUID
	aead      tink.AEAD
	prf       *prf.Set
	handle    *keyset.Handle // the AEAD keyset, for rotation and status
	prfHandle *keyset.Handle // the PRF keyset, re-wrapped unchanged on rotation
	version   int64          // the stored version it was unwrapped from
	keyIDs    map[uint32]bool
	tk        tink.AEAD // the tenant key (nil: keysets wrapped by the KEK only)
	expires   time.Time
}

// NewKeyring returns a keyring over store using kek.
func NewKeyring(kek *KEK, store Store, opts Options) *Keyring {
	if opts.CacheSize <= 0 {
		opts.CacheSize = 1024
	}
	if opts.CacheTTL <= 0 {
		opts.CacheTTL = 10 * time.Minute
	}
	return &Keyring{kek: kek, keks: map[string]*KEK{kek.id: kek}, store: store, opts: opts, lru: list.New(), index: map[uuid.UUID]*list.Element{}}
}

// KEK returns the key-encryption key the keyring wraps with.
func (k *Keyring) KEK() *KEK {
	k.kekMu.RLock()
	defer k.kekMu.RUnlock()
	return k.kek
}

// UseKEK makes next the KEK the keyring wraps with; the KEKs it held stay
// available for unwrapping keysets not yet re-wrapped.
func (k *Keyring) UseKEK(next *KEK) {
	k.kekMu.Lock()
	defer k.kekMu.Unlock()
	k.keks[next.id] = next
	k.kek = next
}

// kekByID returns the KEK named id, loading it with Options.LoadKEK if the
// keyring does not hold it.
func (k *Keyring) kekByID(ctx context.Context, id string) (*KEK, error) {
	k.kekMu.RLock()
	kek, ok := k.keks[id]
	k.kekMu.RUnlock()
	if ok {
		return kek, nil
	}
	if k.opts.LoadKEK == nil {
		return nil, fmt.Errorf("%w: keys wrapped by KEK %s, which this process does not hold", ErrKEKUnavailable, id)
	}
	kek, err := k.opts.LoadKEK(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("%w: load KEK %s: %v", ErrKEKUnavailable, id, err)
	}
	if kek.id != id {
		return nil, fmt.Errorf("%w: loaded KEK %s, want %s", ErrKEKUnavailable, kek.id, id)
	}
	k.kekMu.Lock()
	k.keks[id] = kek
	k.kekMu.Unlock()
	return kek, nil
}

// followRecordedKEK makes the KEK the store records the one the keyring
// wraps with (after the store refused a save with ErrKEKChanged).
func (k *Keyring) followRecordedKEK(ctx context.Context) error {
	id, ok, err := k.store.RecordedKEK(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: the store records no KEK", ErrKEKChanged)
	}
	kek, err := k.kekByID(ctx, id)
	if err != nil {
		return err
	}
	k.UseKEK(kek)
	return nil
}

func tenantOf(ctx context.Context) (uuid.UUID, error) {
	s, ok := bulkhead.ScopeFrom(ctx)
	if !ok || s.Tenant == uuid.Nil {
		return uuid.Nil, ErrNoScope
	}
	return s.Tenant, nil
}

// Seal encrypts plaintext for field with the primary key of the tenant in
// ctx's scope, as the keyring knows it (see SealAt). It returns ErrNoScope
// or ErrNoKeyset.
func (k *Keyring) Seal(ctx context.Context, f Field, plaintext []byte) ([]byte, error) {
	out, _, err := k.SealAt(ctx, f, plaintext)
	return out, err
}

// SealAt is Seal that also returns the version of the stored keyset whose
// primary key sealed the value. The keyring may hold a cached keyset that a
// rotation has since replaced: a writer that must never store a value under
// a key that is no longer primary (postgres does) compares version with the
// version the database publishes, in the transaction that stores the value,
// and on a mismatch calls Invalidate and seals again.
func (k *Keyring) SealAt(ctx context.Context, f Field, plaintext []byte) ([]byte, int64, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, 0, err
	}
	if err := f.validate(); err != nil {
		return nil, 0, err
	}
	e, err := k.get(ctx, tenant)
	if err != nil {
		return nil, 0, err
	}
	ct, err := e.aead.Encrypt(plaintext, associatedData(tenant, f))
	if err != nil {
		return nil, 0, fmt.Errorf("fieldcrypt: seal %s.%s: %w", f.Table, f.Column, err)
	}
	out := make([]byte, 0, headerLen+len(ct))
	out = append(out, magic[:]...)
	out = append(out, Version)
	return append(out, ct...), e.version, nil
}

// Invalidate drops the tenant's cached keys: the next use loads them from
// the store.
func (k *Keyring) Invalidate(tenant uuid.UUID) { k.forget(tenant) }

// Open decrypts an envelope sealed for field, with the keys of the tenant
// in ctx's scope (never a tenant named by the value). It returns
// ErrNotEnvelope, ErrUndecryptable, ErrNoScope or ErrNoKeyset.
func (k *Keyring) Open(ctx context.Context, f Field, envelope []byte) ([]byte, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	if err := f.validate(); err != nil {
		return nil, err
	}
	ct, err := parse(envelope)
	if err != nil {
		return nil, err
	}
	e, err := k.get(ctx, tenant)
	if err != nil {
		return nil, err
	}
	pt, err := e.aead.Decrypt(ct, associatedData(tenant, f))
	if err != nil && !e.keyIDs[binary.BigEndian.Uint32(ct[1:5])] {
		// Sealed under a key this cached keyset lacks: another process
		// rotated the tenant's keys (and may have re-encrypted the value).
		// Reload once; a value that names no key of the stored keyset
		// still fails.
		k.forget(tenant)
		if e, err = k.get(ctx, tenant); err != nil {
			return nil, err
		}
		pt, err = e.aead.Decrypt(ct, associatedData(tenant, f))
	}
	if err != nil {
		return nil, ErrUndecryptable
	}
	return pt, nil
}

// BlindIndex returns a keyed HMAC-SHA256 of value for equality lookups on
// an encrypted field (32 bytes), under the tenant's PRF key: equal values
// of one tenant and column index equally; nothing else is revealed.
func (k *Keyring) BlindIndex(ctx context.Context, table, column string, value []byte) ([]byte, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	e, err := k.get(ctx, tenant)
	if err != nil {
		return nil, err
	}
	in := associatedData(tenant, Field{Table: table, Column: column})
	in = append(in, value...)
	return e.prf.ComputePrimaryPRF(in, 32)
}

// get returns the tenant's unwrapped keys, from the cache or the store.
func (k *Keyring) get(ctx context.Context, tenant uuid.UUID) (*entry, error) {
	k.mu.Lock()
	if el, ok := k.index[tenant]; ok {
		e := el.Value.(*entry)
		if time.Now().Before(e.expires) {
			k.lru.MoveToFront(el)
			k.mu.Unlock()
			k.hits.Add(1)
			return e, nil
		}
		k.lru.Remove(el)
		delete(k.index, tenant)
	}
	k.mu.Unlock()
	k.misses.Add(1)
	w, err := k.store.Load(ctx, tenant)
	if err != nil {
		return nil, err
	}
	e, err := k.unwrap(ctx, tenant, w)
	if err != nil {
		return nil, err
	}
	k.put(e)
	return e, nil
}

func (k *Keyring) put(e *entry) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if el, ok := k.index[e.tenant]; ok {
		k.lru.Remove(el)
	}
	k.index[e.tenant] = k.lru.PushFront(e)
	for k.lru.Len() > k.opts.CacheSize {
		last := k.lru.Back()
		k.lru.Remove(last)
		delete(k.index, last.Value.(*entry).tenant)
	}
}

// forget drops a tenant's unwrapped keys from the cache.
func (k *Keyring) forget(tenant uuid.UUID) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if el, ok := k.index[tenant]; ok {
		k.lru.Remove(el)
		delete(k.index, tenant)
	}
}

// CacheStats returns the cache's hits and misses since start.
func (k *Keyring) CacheStats() (hits, misses int64) { return k.hits.Load(), k.misses.Load() }

func wrapAD(tenant uuid.UUID, purpose string) []byte {
	return append([]byte("bulkhead/keyset/"+purpose+"/"), tenant[:]...)
}

// tenantKeyed marks a keyset wrapped by the tenant key inside and the KEK
// outside. A keyset wrapped by the KEK only is a Tink EncryptedKeyset
// message, which starts with byte 0x12, never with this.
var tenantKeyed = []byte("BHTK1")

// Hierarchy says how a stored keyset is wrapped.
type Hierarchy string

const (
	// KEKOnly: wrapped by the KEK alone (tenants created before tenant
	// keys): a database backup plus the KEK opens them after deletion.
	KEKOnly Hierarchy = "kek"
	// TenantKey: wrapped by the tenant key inside and the KEK outside:
	// destroying the tenant key erases them from every backup too.
	TenantKey Hierarchy = "tenant-key"
)

// HierarchyOf returns how w is wrapped.
func HierarchyOf(w Wrapped) Hierarchy {
	if bytes.HasPrefix(w.AEAD, tenantKeyed) {
		return TenantKey
	}
	return KEKOnly
}

func unwrapOne(b []byte, kek *KEK, tk tink.AEAD, ad []byte) (*keyset.Handle, error) {
	if tk == nil {
		return keyset.ReadWithAssociatedData(keyset.NewBinaryReader(bytes.NewReader(b)), kek.aead, ad)
	}
	rest, ok := bytes.CutPrefix(b, tenantKeyed)
	if !ok {
		return nil, errors.New("not wrapped by a tenant key")
	}
	inner, err := kek.aead.Decrypt(rest, ad)
	if err != nil {
		return nil, err
	}
	return keyset.ReadWithAssociatedData(keyset.NewBinaryReader(bytes.NewReader(inner)), tk, ad)
}

func wrapOne(h *keyset.Handle, kek *KEK, tk tink.AEAD, ad []byte) ([]byte, error) {
	var inner bytes.Buffer
	wrapper := kek.aead
	if tk != nil {
		wrapper = tk
	}
	if err := h.WriteWithAssociatedData(keyset.NewBinaryWriter(&inner), wrapper, ad); err != nil {
		return nil, err
	}
	if tk == nil {
		return inner.Bytes(), nil
	}
	outer, err := kek.aead.Encrypt(inner.Bytes(), ad)
	if err != nil {
		return nil, err
	}
	return append(append([]byte{}, tenantKeyed...), outer...), nil
}

func (k *Keyring) unwrap(ctx context.Context, tenant uuid.UUID, w Wrapped) (*entry, error) {
	kek, err := k.kekByID(ctx, w.KEKID)
	if err != nil {
		return nil, fmt.Errorf("fieldcrypt: tenant %s: %w", tenant, err)
	}
	var tk tink.AEAD
	if HierarchyOf(w) == TenantKey {
		if k.opts.TenantKeys == nil {
			return nil, fmt.Errorf("fieldcrypt: tenant %s's keysets are wrapped by a tenant key and no tenant key directory is configured", tenant)
		}
		// A destroyed tenant key (tenant deleted, its keyset restored
		// from a backup) is ErrNoKeyset for this tenant only; a damaged
		// key file an error for this tenant only (not ErrUndecryptable,
		// which callers read as "this one value is damaged").
		if tk, err = k.opts.TenantKeys.Open(tenant); errors.Is(err, ErrNoKeyset) {
			return nil, err
		} else if err != nil {
			return nil, fmt.Errorf("fieldcrypt: tenant %s's tenant key: %v", tenant, err)
		}
	}
	ah, err := unwrapOne(w.AEAD, kek, tk, wrapAD(tenant, "aead"))
	if err != nil {
		return nil, fmt.Errorf("fieldcrypt: tenant %s's AEAD keyset does not unwrap", tenant)
	}
	ph, err := unwrapOne(w.PRF, kek, tk, wrapAD(tenant, "prf"))
	if err != nil {
		return nil, fmt.Errorf("fieldcrypt: tenant %s's PRF keyset does not unwrap", tenant)
	}
	a, err := aead.New(ah)
	if err != nil {
		return nil, err
	}
	p, err := prf.NewPRFSet(ph)
	if err != nil {
		return nil, err
	}
	ids := map[uint32]bool{}
	for _, ki := range ah.KeysetInfo().GetKeyInfo() {
		ids[ki.GetKeyId()] = true
	}
	return &entry{tenant: tenant, aead: a, prf: p, handle: ah, prfHandle: ph, version: w.Version, keyIDs: ids, tk: tk, expires: time.Now().Add(k.opts.CacheTTL)}, nil
}

// wrap wraps the keysets with kek (nil: the keyring's current KEK) and,
// if tk is not nil, the tenant key tk inside it.
func (k *Keyring) wrap(tenant uuid.UUID, ah, ph *keyset.Handle, kek *KEK, tk tink.AEAD) (Wrapped, error) {
	if kek == nil {
		kek = k.KEK()
	}
	a, err := wrapOne(ah, kek, tk, wrapAD(tenant, "aead"))
	if err != nil {
		return Wrapped{}, err
	}
	p, err := wrapOne(ph, kek, tk, wrapAD(tenant, "prf"))
	if err != nil {
		return Wrapped{}, err
	}
	return Wrapped{AEAD: a, PRF: p, KEKID: kek.id}, nil
}

// Provision creates the tenant's keysets if it has none. It is idempotent
// and safe to run concurrently for the same tenant. The keysets are wrapped
// with the KEK the store records (the keyring follows a KEK rotation made
// by another process), never with one the store no longer records.
func (k *Keyring) Provision(ctx context.Context, tenant uuid.UUID) error {
	if _, err := k.store.Load(ctx, tenant); err == nil {
		return nil
	} else if !errors.Is(err, ErrNoKeyset) {
		return err
	}
	ah, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		return err
	}
	ph, err := keyset.NewHandle(prf.HMACSHA256PRFKeyTemplate())
	if err != nil {
		return err
	}
	err = k.storeNew(ctx, tenant, ah, ph, 1)
	if err == nil || errors.Is(err, bulkhead.ErrConflict) { // ErrConflict: provisioned concurrently
		return nil
	}
	return fmt.Errorf("fieldcrypt: provision tenant %s: %w", tenant, err)
}

// storeNew wraps a tenant's new keysets and stores them as version, for a
// tenant that has none. With tenant keys on, the tenant key is durable
// (fsynced, directory fsynced) before any keyset wrapped by it is stored;
// a key left by an earlier failed or concurrent attempt is reused, never
// replaced (a concurrent writer may have stored a keyset under it), and a
// key left with no keyset opens nothing (Shred removes it). A KEK rotation
// recorded meanwhile is followed (twice at most). The store's error is
// returned as is: keysets stored concurrently are bulkhead.ErrConflict.
func (k *Keyring) storeNew(ctx context.Context, tenant uuid.UUID, ah, ph *keyset.Handle, version int64) error {
	var tk tink.AEAD
	if k.opts.TenantKeys != nil {
		var err error
		if tk, err = k.opts.TenantKeys.Create(tenant); errors.Is(err, os.ErrExist) {
			tk, err = k.opts.TenantKeys.Open(tenant)
		}
		if err != nil {
			return fmt.Errorf("tenant key: %w", err)
		}
	}
	for attempt := 0; ; attempt++ {
		w, err := k.wrap(tenant, ah, ph, nil, tk)
		if err != nil {
			return err
		}
		w.Version = version
		err = k.store.Save(ctx, tenant, w, 0)
		if errors.Is(err, ErrKEKChanged) && attempt < 2 {
			if err := k.followRecordedKEK(ctx); err != nil {
				return err
			}
			continue
		}
		return err
	}
}

// KeyStatus describes a tenant's AEAD keyset.
type KeyStatus struct {
	Primary uint32
	Keys    []uint32 // every key id still in the keyset (enabled or not)
	Version int64    // the stored keyset's version
	// Hierarchy: how the keysets are wrapped (KEKOnly, TenantKey).
	Hierarchy Hierarchy
}

// Status returns the tenant's key ids, read from the store (not the cache).
func (k *Keyring) Status(ctx context.Context, tenant uuid.UUID) (KeyStatus, error) {
	w, err := k.store.Load(ctx, tenant)
	if err != nil {
		return KeyStatus{}, err
	}
	e, err := k.unwrap(ctx, tenant, w)
	if err != nil {
		return KeyStatus{}, err
	}
	info := e.handle.KeysetInfo()
	st := KeyStatus{Primary: info.GetPrimaryKeyId(), Version: w.Version, Hierarchy: HierarchyOf(w)}
	for _, ki := range info.GetKeyInfo() {
		st.Keys = append(st.Keys, ki.GetKeyId())
	}
	return st, nil
}

// Rotate adds a new AES-256-GCM key to the tenant's keyset and makes it
// primary: new values are sealed with it; values sealed with older keys
// keep opening until those keys are retired. It returns the new key id.
// Other processes learn of the new key through the version the caller
// publishes (postgres.DB.RotateKeys does all of it).
func (k *Keyring) Rotate(ctx context.Context, tenant uuid.UUID) (uint32, error) {
	var id uint32
	err := k.update(ctx, tenant, 0, func(m *keyset.Manager) error {
		var err error
		if id, err = m.Add(aead.AES256GCMKeyTemplate()); err != nil {
			return err
		}
		return m.SetPrimary(id)
	})
	return id, err
}

// Retire deletes from the tenant's keyset every key that is not primary and
// not in inUse (the key ids some stored value still uses), if the stored
// keyset is still at version (0: any version); otherwise it changes
// nothing and returns an error wrapping bulkhead.ErrConflict, since inUse
// was counted for another keyset. It returns the retired ids. Values
// sealed with a retired key never open again: the caller must make sure
// no writer can still store one (postgres.DB.RotateKeys does).
func (k *Keyring) Retire(ctx context.Context, tenant uuid.UUID, version int64, inUse map[uint32]bool) ([]uint32, error) {
	var retired []uint32
	err := k.update(ctx, tenant, version, func(m *keyset.Manager) error {
		retired = retired[:0]
		h, err := m.Handle()
		if err != nil {
			return err
		}
		info := h.KeysetInfo()
		for _, ki := range info.GetKeyInfo() {
			id := ki.GetKeyId()
			if id == info.GetPrimaryKeyId() || inUse[id] {
				continue
			}
			if err := m.Delete(id); err != nil {
				return err
			}
			retired = append(retired, id)
		}
		return nil
	})
	return retired, err
}

// update changes the tenant's AEAD keyset with f and stores it, retrying
// if another process changed it meanwhile (unless want, the version f was
// meant for, is set: then a changed keyset is a conflict).
func (k *Keyring) update(ctx context.Context, tenant uuid.UUID, want int64, f func(*keyset.Manager) error) error {
	defer k.forget(tenant)
	for attempt := 0; ; attempt++ {
		w, err := k.store.Load(ctx, tenant)
		if err != nil {
			return err
		}
		if want != 0 && w.Version != want {
			return fmt.Errorf("%w: tenant %s's keyset changed (version %d, want %d)", bulkhead.ErrConflict, tenant, w.Version, want)
		}
		e, err := k.unwrap(ctx, tenant, w)
		if err != nil {
			return err
		}
		m := keyset.NewManagerFromHandle(e.handle)
		if err := f(m); err != nil {
			return err
		}
		ah, err := m.Handle()
		if err != nil {
			return err
		}
		nw, err := k.wrap(tenant, ah, e.prfHandle, nil, e.tk)
		if err != nil {
			return err
		}
		nw.Version = w.Version + 1
		err = k.store.Save(ctx, tenant, nw, w.Version)
		if errors.Is(err, ErrKEKChanged) && attempt < 5 {
			if err := k.followRecordedKEK(ctx); err != nil {
				return err
			}
			continue
		}
		if errors.Is(err, bulkhead.ErrConflict) && want == 0 && attempt < 5 {
			continue
		}
		return err
	}
}

// RewrapReport is what Rewrap did.
type RewrapReport struct {
	Rewrapped int                 // keysets re-wrapped now
	Skipped   int                 // already under the new KEK
	Failed    map[uuid.UUID]error // tenants whose keysets could not be re-wrapped
}

// Rewrap makes next the KEK (KEK rotation) while any number of processes
// keep serving: it first records next in the store (ref says where to find
// it), so that from then on no process can store a keyset wrapped by
// another KEK (they load next through Options.LoadKEK and retry); then it
// re-wraps every tenant's keysets under next. Field keys and data are not
// touched. A keyset that does not unwrap fails only its tenant (listed in
// Failed); the others are re-wrapped. It is resumable: keysets already
// under next are skipped, and a keyring holding next and the previous KEK
// finishes an interrupted run.
func (k *Keyring) Rewrap(ctx context.Context, next *KEK, ref string, progress func(done, total int)) (RewrapReport, error) {
	rep := RewrapReport{Failed: map[uuid.UUID]error{}}
	if err := k.store.RecordKEK(ctx, next, ref); err != nil {
		return rep, fmt.Errorf("fieldcrypt: record KEK %s: %w", next.id, err)
	}
	k.UseKEK(next)
	// Listed after recording next: a keyset saved before then is listed
	// (the store serialises saves with RecordKEK), one saved after is
	// already wrapped by next.
	tenants, err := k.store.Tenants(ctx)
	if err != nil {
		return rep, err
	}
	for i, t := range tenants {
		if err := k.rewrapOne(ctx, t, next, &rep); err != nil {
			rep.Failed[t] = err
		}
		if progress != nil {
			progress(i+1, len(tenants))
		}
	}
	return rep, nil
}

func (k *Keyring) rewrapOne(ctx context.Context, t uuid.UUID, next *KEK, rep *RewrapReport) error {
	defer k.forget(t)
	for attempt := 0; ; attempt++ {
		w, err := k.store.Load(ctx, t)
		if errors.Is(err, ErrNoKeyset) { // shredded meanwhile
			return nil
		}
		if err != nil {
			return err
		}
		if w.KEKID == next.id {
			rep.Skipped++
			return nil
		}
		e, err := k.unwrap(ctx, t, w)
		if err != nil {
			return err
		}
		nw, err := k.wrap(t, e.handle, e.prfHandle, next, e.tk)
		if err != nil {
			return err
		}
		nw.Version = w.Version + 1
		err = k.store.Save(ctx, t, nw, w.Version)
		if errors.Is(err, bulkhead.ErrConflict) && attempt < 5 {
			continue
		}
		if err != nil {
			return fmt.Errorf("rewrap tenant %s: %w", t, err)
		}
		rep.Rewrapped++
		return nil
	}
}

// Shred destroys the tenant's key material and drops it from this
// process's cache: first the tenant key (file removed, directory fsynced),
// then the keysets stored in the database. It is idempotent.
//
// What holds afterwards: every sealed value of the tenant, in the live
// database and in any earlier backup or dump of it, stops opening for a
// tenant whose keysets were wrapped by a tenant key (Hierarchy TenantKey),
// provided no copy of its tenant key file survives (a backup of the
// tenant key directory). For a tenant still on KEKOnly (created before
// tenant keys, not migrated), only the live database is erased: a backup
// holding its wrapped keyset opens with the same KEK (docs/SECURITY.md).
func (k *Keyring) Shred(ctx context.Context, tenant uuid.UUID, reason string) error {
	k.forget(tenant)
	if k.opts.TenantKeys != nil {
		if err := k.opts.TenantKeys.Destroy(tenant); err != nil {
			return fmt.Errorf("fieldcrypt: shred tenant %s's tenant key: %w", tenant, err)
		}
	}
	if err := k.store.Destroy(ctx, tenant, reason); err != nil {
		return fmt.Errorf("fieldcrypt: shred tenant %s: %w", tenant, err)
	}
	k.forget(tenant)
	return nil
}

// MigrateReport is what MigrateErasure did.
type MigrateReport struct {
	Migrated int                 // keysets moved to TenantKey now
	Skipped  int                 // already on TenantKey
	Failed   map[uuid.UUID]error // tenants that could not be moved
}

// MigrateErasure moves every tenant whose keysets are wrapped by the KEK
// only to the TenantKey hierarchy, online: for each tenant it makes (or
// reuses) its tenant key, durable before anything uses it, then re-wraps
// the same keysets (field keys and data untouched) with a compare-and-swap
// on the stored version, so a concurrent rotation makes it retry rather
// than lose a key. A failure fails only its tenant (listed in Failed); it
// is resumable: tenants already moved are skipped. Processes serving
// meanwhile must have the same tenant key directory configured: they open
// moved keysets through it. Backups of the database taken before a
// tenant's migration still hold its KEK-only keyset: erasure holds against
// backups taken after it.
func (k *Keyring) MigrateErasure(ctx context.Context, progress func(done, total int)) (MigrateReport, error) {
	rep := MigrateReport{Failed: map[uuid.UUID]error{}}
	if k.opts.TenantKeys == nil {
		return rep, errors.New("fieldcrypt: no tenant key directory configured")
	}
	tenants, err := k.store.Tenants(ctx)
	if err != nil {
		return rep, err
	}
	for i, t := range tenants {
		if err := k.migrateOne(ctx, t, &rep); err != nil {
			rep.Failed[t] = err
		}
		if progress != nil {
			progress(i+1, len(tenants))
		}
	}
	return rep, nil
}

func (k *Keyring) migrateOne(ctx context.Context, t uuid.UUID, rep *MigrateReport) error {
	defer k.forget(t)
	for attempt := 0; ; attempt++ {
		w, err := k.store.Load(ctx, t)
		if errors.Is(err, ErrNoKeyset) { // shredded meanwhile
			return nil
		}
		if err != nil {
			return err
		}
		if HierarchyOf(w) == TenantKey {
			rep.Skipped++
			return nil
		}
		e, err := k.unwrap(ctx, t, w)
		if err != nil {
			return err
		}
		tk, err := k.opts.TenantKeys.Create(t)
		if errors.Is(err, os.ErrExist) { // an interrupted run made it
			tk, err = k.opts.TenantKeys.Open(t)
		}
		if err != nil {
			return fmt.Errorf("migrate tenant %s: tenant key: %w", t, err)
		}
		nw, err := k.wrap(t, e.handle, e.prfHandle, nil, tk)
		if err != nil {
			return err
		}
		nw.Version = w.Version + 1
		err = k.store.Save(ctx, t, nw, w.Version)
		if errors.Is(err, ErrKEKChanged) && attempt < 5 {
			if err := k.followRecordedKEK(ctx); err != nil {
				return err
			}
			continue
		}
		if errors.Is(err, bulkhead.ErrConflict) && attempt < 5 {
			continue
		}
		if err != nil {
			return fmt.Errorf("migrate tenant %s: %w", t, err)
		}
		rep.Migrated++
		return nil
	}
}
