package fieldcrypt

import (
	"bytes"
	"testing"

	"github.com/google/uuid"
	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
)

// TestAssociatedDataBindsEachPart seals under one key and opens with the
// associated data of another place, one part changed at a time. With the
// same key, only the associated data can refuse: per-tenant keys would
// otherwise hide a tenant missing from it.
func TestAssociatedDataBindsEachPart(t *testing.T) {
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		t.Fatal(err)
	}
	a, err := aead.New(h)
	if err != nil {
		t.Fatal(err)
	}
	tenant, row := uuid.New(), uuid.New()
	f := Field{Table: "agents", Column: "secrets", Row: row}
	ct, err := a.Encrypt([]byte("secret"), associatedData(tenant, f))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := a.Decrypt(ct, associatedData(tenant, f)); err != nil || !bytes.Equal(pt, []byte("secret")) {
		t.Fatalf("the right place: %q, %v", pt, err)
	}
	elsewhere := map[string][]byte{
		"another tenant": associatedData(uuid.New(), f),
		"another table":  associatedData(tenant, Field{Table: "documents", Column: f.Column, Row: row}),
		"another column": associatedData(tenant, Field{Table: f.Table, Column: "system_prompt", Row: row}),
		"another row":    associatedData(tenant, Field{Table: f.Table, Column: f.Column, Row: uuid.New()}),
		// Length prefixes: the boundary between table and column can't move.
		"table|column shifted": associatedData(tenant, Field{Table: "agentss", Column: "ecrets", Row: row}),
	}
	for name, ad := range elsewhere {
		if _, err := a.Decrypt(ct, ad); err == nil {
			t.Errorf("%s: opened", name)
		}
	}
}
