package auth

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// EntityNamespace is the UUIDv5 namespace of entity ids derived from JWTs.
// It is a fixed random UUID chosen once for bulkhead (a constant, so no code
// can change it at run time); changing it changes every derived entity id,
// and so orphans every row keyed by one, which is why a golden test pins a
// derived value.
const EntityNamespace = "a4bff96f-2fb4-4a00-bf3c-472d09064a85"

var entityNamespace = uuid.MustParse(EntityNamespace)

// EntityID returns the entity id of the principal named by subject at
// issuer: UUIDv5(EntityNamespace, issuer + "\x00" + subject).
//
// The NUL separator keeps the pair unambiguous: configured issuers cannot
// contain NUL (NewVerifier refuses them), so ("a", "b\x00c") and
// ("a\x00b", "c") can never both occur. The same subject at two issuers
// yields two unrelated entities, so one issuer can never mint tokens for
// another issuer's users. EntityID is a pure function, safe for concurrent
// use.
func EntityID(issuer, subject string) uuid.UUID {
	return uuid.NewSHA1(entityNamespace, []byte(issuer+"\x00"+subject))
}

// maxNameChars bounds an entity's display name, as the database does.
const maxNameChars = 200

// mapClaims returns the display name and email an external entity gets
// from the token's claims: "" for either when it is unusable. A token
// without the name claim is named after its subject.
func (is *issuer) mapClaims(claims map[string]any, sub string) (name, email string) {
	name = sub
	if raw, ok := claims[is.nameClaim]; ok {
		name, _ = raw.(string)
	}
	if !usableName(name) {
		name = ""
	}
	if raw, ok := claims[is.emailClaim]; ok {
		email, _ = raw.(string)
		if len(email) > 320 || !strings.Contains(email, "@") || !printable(email) {
			email = ""
		}
	}
	return name, email
}

// usableName: 1 to 200 characters, not all blank, valid UTF-8 without
// control characters.
func usableName(s string) bool {
	if strings.TrimSpace(s) == "" || !utf8.ValidString(s) || utf8.RuneCountInString(s) > maxNameChars {
		return false
	}
	return printable(s)
}

func printable(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}
