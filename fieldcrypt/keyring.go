package fieldcrypt

import (
	"bytes"
	"container/list"
	"context"
	"errors"
	"fmt"
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

// Wrapped is a tenant's keysets as stored: encrypted by the KEK.
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
	// otherwise it returns an error wrapping bulkhead.ErrConflict.
	Save(ctx context.Context, tenant uuid.UUID, w Wrapped, prev int64) error
	// Destroy deletes the tenant's keysets and records why; destroying what
	// is already gone is not an error.
	Destroy(ctx context.Context, tenant uuid.UUID, reason string) error
	// Tenants lists the tenants that have keysets.
	Tenants(ctx context.Context) ([]uuid.UUID, error)
}

// Options bound the cache of unwrapped keysets.
type Options struct {
	CacheSize int           // tenants kept unwrapped; default 1024
	CacheTTL  time.Duration // how long; default 10 minutes
}

// Keyring seals and opens field values with per-tenant keys.
type Keyring struct {
	kek   *KEK
	store Store
	opts  Options

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
	return &Keyring{kek: kek, store: store, opts: opts, lru: list.New(), index: map[uuid.UUID]*list.Element{}}
}

// KEK returns the keyring's key-encryption key.
func (k *Keyring) KEK() *KEK { return k.kek }

func tenantOf(ctx context.Context) (uuid.UUID, error) {
	s, ok := bulkhead.ScopeFrom(ctx)
	if !ok || s.Tenant == uuid.Nil {
		return uuid.Nil, ErrNoScope
	}
	return s.Tenant, nil
}

// Seal encrypts plaintext for field with the primary key of the tenant in
// ctx's scope. It returns ErrNoScope or ErrNoKeyset.
func (k *Keyring) Seal(ctx context.Context, f Field, plaintext []byte) ([]byte, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	if err := f.validate(); err != nil {
		return nil, err
	}
	e, err := k.get(ctx, tenant)
	if err != nil {
		return nil, err
	}
	ct, err := e.aead.Encrypt(plaintext, associatedData(tenant, f))
	if err != nil {
		return nil, fmt.Errorf("fieldcrypt: seal %s.%s: %w", f.Table, f.Column, err)
	}
	out := make([]byte, 0, headerLen+len(ct))
	out = append(out, magic[:]...)
	out = append(out, Version)
	return append(out, ct...), nil
}

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
	e, err := k.unwrap(tenant, w)
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

func (k *Keyring) unwrap(tenant uuid.UUID, w Wrapped) (*entry, error) {
	if w.KEKID != k.kek.id {
		return nil, fmt.Errorf("fieldcrypt: tenant %s's keys are wrapped by KEK %s, not %s", tenant, w.KEKID, k.kek.id)
	}
	ah, err := keyset.ReadWithAssociatedData(keyset.NewBinaryReader(bytes.NewReader(w.AEAD)), k.kek.aead, wrapAD(tenant, "aead"))
	if err != nil {
		return nil, fmt.Errorf("fieldcrypt: tenant %s's AEAD keyset does not unwrap", tenant)
	}
	ph, err := keyset.ReadWithAssociatedData(keyset.NewBinaryReader(bytes.NewReader(w.PRF)), k.kek.aead, wrapAD(tenant, "prf"))
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
	return &entry{tenant: tenant, aead: a, prf: p, handle: ah, prfHandle: ph, expires: time.Now().Add(k.opts.CacheTTL)}, nil
}

func (k *Keyring) wrap(tenant uuid.UUID, ah, ph *keyset.Handle) (Wrapped, error) {
	var a, p bytes.Buffer
	if err := ah.WriteWithAssociatedData(keyset.NewBinaryWriter(&a), k.kek.aead, wrapAD(tenant, "aead")); err != nil {
		return Wrapped{}, err
	}
	if err := ph.WriteWithAssociatedData(keyset.NewBinaryWriter(&p), k.kek.aead, wrapAD(tenant, "prf")); err != nil {
		return Wrapped{}, err
	}
	return Wrapped{AEAD: a.Bytes(), PRF: p.Bytes(), KEKID: k.kek.id}, nil
}

// Provision creates the tenant's keysets if it has none. It is idempotent
// and safe to run concurrently for the same tenant.
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
	w, err := k.wrap(tenant, ah, ph)
	if err != nil {
		return err
	}
	w.Version = 1
	if err := k.store.Save(ctx, tenant, w, 0); err != nil {
		if errors.Is(err, bulkhead.ErrConflict) { // provisioned concurrently
			return nil
		}
		return fmt.Errorf("fieldcrypt: provision tenant %s: %w", tenant, err)
	}
	return nil
}

// KeyStatus describes a tenant's AEAD keyset.
type KeyStatus struct {
	Primary uint32
	Keys    []uint32 // every key id still in the keyset (enabled or not)
}

// Status returns the tenant's key ids.
func (k *Keyring) Status(ctx context.Context, tenant uuid.UUID) (KeyStatus, error) {
	w, err := k.store.Load(ctx, tenant)
	if err != nil {
		return KeyStatus{}, err
	}
	e, err := k.unwrap(tenant, w)
	if err != nil {
		return KeyStatus{}, err
	}
	info := e.handle.KeysetInfo()
	st := KeyStatus{Primary: info.GetPrimaryKeyId()}
	for _, ki := range info.GetKeyInfo() {
		st.Keys = append(st.Keys, ki.GetKeyId())
	}
	return st, nil
}

// Rotate adds a new AES-256-GCM key to the tenant's keyset and makes it
// primary: new values are sealed with it; values sealed with older keys
// keep opening until those keys are retired. It returns the new key id.
func (k *Keyring) Rotate(ctx context.Context, tenant uuid.UUID) (uint32, error) {
	var id uint32
	err := k.update(ctx, tenant, func(m *keyset.Manager) error {
		var err error
		if id, err = m.Add(aead.AES256GCMKeyTemplate()); err != nil {
			return err
		}
		return m.SetPrimary(id)
	})
	return id, err
}

// Retire deletes from the tenant's keyset every key that is not primary and
// not in inUse (the key ids some stored value still uses). It returns the
// retired ids. Values sealed with a retired key never open again.
func (k *Keyring) Retire(ctx context.Context, tenant uuid.UUID, inUse map[uint32]bool) ([]uint32, error) {
	var retired []uint32
	err := k.update(ctx, tenant, func(m *keyset.Manager) error {
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
// if another process changed it meanwhile.
func (k *Keyring) update(ctx context.Context, tenant uuid.UUID, f func(*keyset.Manager) error) error {
	for attempt := 0; ; attempt++ {
		w, err := k.store.Load(ctx, tenant)
		if err != nil {
			return err
		}
		e, err := k.unwrap(tenant, w)
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
		nw, err := k.wrap(tenant, ah, e.prfHandle)
		if err != nil {
			return err
		}
		nw.Version = w.Version + 1
		err = k.store.Save(ctx, tenant, nw, w.Version)
		if errors.Is(err, bulkhead.ErrConflict) && attempt < 5 {
			continue
		}
		k.forget(tenant)
		return err
	}
}

// Rewrap re-wraps every tenant's keysets under next (KEK rotation). Data is
// not touched: field keys don't change. It is resumable: keysets already
// under next are skipped. The caller switches to next afterwards.
func (k *Keyring) Rewrap(ctx context.Context, next *KEK, progress func(done, total int)) error {
	tenants, err := k.store.Tenants(ctx)
	if err != nil {
		return err
	}
	nk := NewKeyring(next, k.store, k.opts)
	for i, t := range tenants {
		w, err := k.store.Load(ctx, t)
		if err != nil {
			return err
		}
		if w.KEKID != next.id {
			e, err := k.unwrap(t, w)
			if err != nil {
				return err
			}
			nw, err := nk.wrap(t, e.handle, e.prfHandle)
			if err != nil {
				return err
			}
			nw.Version = w.Version + 1
			if err := k.store.Save(ctx, t, nw, w.Version); err != nil {
				return fmt.Errorf("rewrap tenant %s: %w", t, err)
			}
			k.forget(t)
		}
		if progress != nil {
			progress(i+1, len(tenants))
		}
	}
	return nil
}

// Shred destroys the tenant's keysets (crypto-shredding): every value
// sealed for it, in the database, in dumps or in backups, stops opening for
// good. It is idempotent.
func (k *Keyring) Shred(ctx context.Context, tenant uuid.UUID, reason string) error {
	k.forget(tenant)
	if err := k.store.Destroy(ctx, tenant, reason); err != nil {
		return fmt.Errorf("fieldcrypt: shred tenant %s: %w", tenant, err)
	}
	k.forget(tenant)
	return nil
}
