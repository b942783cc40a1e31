package auth

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// MaxTokenSize is the longest token Verify looks at, in bytes. A longer one
// is refused before any decoding.
const MaxTokenSize = 8 << 10

// maxKIDSize bounds the "kid" header: real key ids are short; a long one is
// refused before any key lookup.
const maxKIDSize = 256

// forbiddenHeaders are JOSE header parameters Verify refuses outright,
// before any key lookup: "crit" names extensions this verifier does not
// implement (RFC 7515 §4.1.11 requires rejecting them), and the others
// would let the token choose its own key or key location. Their URLs are
// never fetched.
var forbiddenHeaders = []string{"crit", "jku", "x5u", "jwk", "x5c"}

// segmentEncoding is the one base64url form accepted: unpadded, and strict
// (non-zero trailing bits are refused), so each byte string has exactly one
// encoding and a token cannot be altered without changing what is signed.
var segmentEncoding = base64.RawURLEncoding.Strict()

// unverified is what Verify reads from a token before choosing the issuer
// whose keys will verify it. Nothing in it is trusted.
type unverified struct {
	alg    string
	kid    string
	hasKID bool
	iss    string
}

// inspect checks a token's shape and header without any key or network
// access and extracts the fields that choose the issuer configuration.
func inspect(token string) (unverified, error) {
	var u unverified
	if len(token) > MaxTokenSize {
		return u, reject(ReasonTooLarge, fmt.Sprintf("%d bytes, limit %d", len(token), MaxTokenSize), nil)
	}
	// Only the base64url alphabet and the two dots: Go's base64 decoders
	// skip CR and LF, so without this a token could be altered (a newline
	// added anywhere) and still verify.
	for i := 0; i < len(token); i++ {
		if !isTokenByte(token[i]) {
			return u, reject(ReasonMalformed, fmt.Sprintf("byte %d is not base64url", i), nil)
		}
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return u, reject(ReasonMalformed, fmt.Sprintf("%d segments, want 3", len(parts)), nil)
	}
	header, err := decodeObject(parts[0])
	if err != nil {
		return u, reject(ReasonMalformed, "header", err)
	}
	for _, name := range forbiddenHeaders {
		if _, ok := header[name]; ok {
			return u, reject(ReasonForbiddenHeader, fmt.Sprintf("header has %q", name), nil)
		}
	}
	rawAlg, ok := header["alg"]
	if !ok {
		return u, reject(ReasonMalformed, "header has no alg", nil)
	}
	if err := json.Unmarshal(rawAlg, &u.alg); err != nil {
		return u, reject(ReasonMalformed, "alg is not a string", nil)
	}
	if strings.EqualFold(strings.TrimSpace(u.alg), "none") {
		return u, reject(ReasonAlgNone, "alg "+quote(u.alg), nil)
	}
	if rawKID, ok := header["kid"]; ok {
		if err := json.Unmarshal(rawKID, &u.kid); err != nil {
			return u, reject(ReasonBadKID, "kid is not a string", nil)
		}
		u.hasKID = true
	}
	claims, err := decodeObject(parts[1])
	if err != nil {
		return u, reject(ReasonMalformed, "payload", err)
	}
	rawIss, ok := claims["iss"]
	if !ok {
		return u, reject(ReasonUnknownIssuer, "no iss claim", nil)
	}
	if err := json.Unmarshal(rawIss, &u.iss); err != nil {
		return u, reject(ReasonUnknownIssuer, "iss is not a string", nil)
	}
	if _, err := segmentEncoding.DecodeString(parts[2]); err != nil {
		return u, reject(ReasonMalformed, "signature", err)
	}
	return u, nil
}

var errDuplicateMember = errors.New("duplicate member")

// decodeObject decodes one strict base64url segment holding exactly one
// JSON object and returns its members. Duplicate member names are refused:
// parsers disagree on which one wins, and a verifier must not read a
// different "alg" or "iss" than the library that checks the signature.
func decodeObject(seg string) (map[string]json.RawMessage, error) {
	b, err := segmentEncoding.DecodeString(seg)
	if err != nil {
		return nil, err
	}
	if !utf8.Valid(b) {
		return nil, errors.New("not UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	members := make(map[string]json.RawMessage)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, ok := tok.(string)
		if !ok {
			return nil, errors.New("member name is not a string")
		}
		if _, dup := members[name]; dup {
			return nil, fmt.Errorf("%w %s", errDuplicateMember, quote(name))
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		members[name] = v
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return members, nil
}

// checkKID refuses key ids no issuer would publish: too long, not UTF-8, or
// holding control characters (NUL included). Others are looked up as
// opaque strings in the issuer's in-memory key set, never used to build a
// path, query or URL.
func checkKID(kid string) error {
	switch {
	case kid == "":
		return reject(ReasonBadKID, "empty kid", nil)
	case len(kid) > maxKIDSize:
		return reject(ReasonBadKID, fmt.Sprintf("kid of %d bytes, limit %d", len(kid), maxKIDSize), nil)
	case !utf8.ValidString(kid):
		return reject(ReasonBadKID, "kid is not UTF-8", nil)
	}
	for _, r := range kid {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return reject(ReasonBadKID, "kid has a control character: "+quote(kid), nil)
		}
	}
	return nil
}

func isTokenByte(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.'
}
