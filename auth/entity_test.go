package auth

import (
	"crypto/sha1"
	"fmt"
	"testing"

	"github.com/google/uuid"
)

// TestEntityIDGolden pins the derivation: a change to the namespace, the
// separator or the hash changes every entity id in every database, so it
// must break this test. The expected values were computed once (and agree
// with Python's uuid.uuid5).
func TestEntityIDGolden(t *testing.T) {
	t.Parallel()
	if got, want := EntityNamespace, "a4bff96f-2fb4-4a00-bf3c-472d09064a85"; got != want {
		t.Fatalf("EntityNamespace = %s, want %s", got, want)
	}
	tests := []struct{ iss, sub, want string }{
		{"https://accounts.example.com", "248289761001", "83d38448-6266-5c92-b4cd-5d02e798d348"},
		{"https://idp-a.test", "user-42", "4137c5b4-32cf-58bf-ac53-888ba8a6f959"},
		{"", "", "7dd0ec37-8b44-56ff-bfac-5f9d415c5edc"},
	}
	for _, tt := range tests {
		if got := EntityID(tt.iss, tt.sub).String(); got != tt.want {
			t.Errorf("EntityID(%q, %q) = %s, want %s", tt.iss, tt.sub, got, tt.want)
		}
	}
}

// TestEntityIDDerivation recomputes UUIDv5 by hand (RFC 9562 §5.5), so the
// golden values are not merely whatever the uuid package returns.
func TestEntityIDDerivation(t *testing.T) {
	t.Parallel()
	for _, c := range [][2]string{{"https://idp-a.test", "user-42"}, {"iss", "sub\x00with nul"}, {"i", ""}} {
		h := sha1.New()
		ns := uuid.MustParse(EntityNamespace)
		h.Write(ns[:])
		h.Write([]byte(c[0] + "\x00" + c[1]))
		var want uuid.UUID
		copy(want[:], h.Sum(nil))
		want[6] = want[6]&0x0f | 0x50 // version 5
		want[8] = want[8]&0x3f | 0x80 // RFC 4122 variant
		if got := EntityID(c[0], c[1]); got != want {
			t.Errorf("EntityID(%q, %q) = %s, want %s", c[0], c[1], got, want)
		}
		if got := EntityID(c[0], c[1]); got.Version() != 5 || got.Variant() != uuid.RFC4122 {
			t.Errorf("version %d variant %v", got.Version(), got.Variant())
		}
	}
}

func TestEntityIDSeparation(t *testing.T) {
	t.Parallel()
	pairs := [][2]string{{"ab", "c"}, {"a", "bc"}, {"a", "b\x00c"}, {"https://a.test", "u"}, {"https://b.test", "u"}}
	seen := map[uuid.UUID][2]string{}
	for _, p := range pairs {
		id := EntityID(p[0], p[1])
		if prev, dup := seen[id]; dup {
			t.Fatalf("%q and %q share entity %s", prev, p, id)
		}
		seen[id] = p
	}
}

func ExampleEntityID() {
	fmt.Println(EntityID("https://accounts.example.com", "248289761001"))
	// Output: 83d38448-6266-5c92-b4cd-5d02e798d348
}
