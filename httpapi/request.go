package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/google/uuid"
)

// errTooLarge is a body over the configured limit (413).
var errTooLarge = errors.New("request body too large")

// errUnsupportedType is a body that is not JSON (415).
var errUnsupportedType = errors.New("request body must be application/json")

// decode reads one JSON object into v: unknown fields, trailing data, wrong
// types and bodies over limit bytes are errors (400/413/415), never 500s.
// Every string in the body, keys and values at any depth (json.RawMessage
// fields included), must be valid UTF-8 without NUL characters or
// unpaired UTF-16 surrogate escapes: PostgreSQL text can hold none of them,
// and encoding/json would otherwise pass a \u0000 through and silently
// replace the others with U+FFFD. Such a body is a 400 whose problems name
// the top-level field holding the string.
func decode(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && ct != "application/json" && !hasPrefix(ct, "application/json;") {
		return errUnsupportedType
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return errTooLarge
		}
		return bulkhead.Invalid("body", "could not be read")
	}
	if err := checkStrings(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var syntax *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &typ):
			return bulkhead.Invalid(typ.Field, "wrong type: want "+typ.Type.String())
		case errors.As(err, &syntax), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
			return bulkhead.Invalid("body", "not a JSON object")
		default:
			// Unknown fields and similar: the decoder's message names the field only.
			return bulkhead.Invalid("body", trimDecodeError(err.Error()))
		}
	}
	if dec.More() {
		return bulkhead.Invalid("body", "trailing data after the JSON object")
	}
	return nil
}

// checkStrings walks body's tokens and returns a *ValidationError naming
// each top-level field (or "body") that holds a string, as key or value at
// any depth, with a NUL character or invalid UTF-8. It checks the raw bytes
// of each token, since the decoder replaces invalid UTF-8. A body that is
// not JSON is left to the decoder to report.
func checkStrings(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	type frame struct{ object, wantKey bool }
	var stack []frame
	field := "body" // the top-level field being read
	var problems []bulkhead.FieldProblem
	seen := map[string]bool{}
	for {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			break // io.EOF, or a syntax error the decoder reports
		}
		top := len(stack) - 1
		switch t := tok.(type) {
		case json.Delim:
			if t == '{' || t == '[' {
				stack = append(stack, frame{object: t == '{', wantKey: t == '{'})
				continue
			}
			stack = stack[:top]
		case string:
			bad := ""
			switch {
			case !utf8.Valid(body[start:dec.InputOffset()]):
				bad = "not valid UTF-8"
			case strings.ContainsRune(t, 0):
				bad = "contains a NUL character (\\u0000)"
			case strings.ContainsRune(t, utf8.RuneError) && loneSurrogate(body[start:dec.InputOffset()]):
				bad = "contains an unpaired UTF-16 surrogate escape"
			}
			if top == 0 && stack[0].object && stack[0].wantKey {
				field = t
				if bad != "" {
					field = "body"
				}
			}
			if bad != "" && !seen[field] {
				seen[field] = true
				problems = append(problems, bulkhead.FieldProblem{Field: field, Detail: bad})
			}
			if top >= 0 && stack[top].object && stack[top].wantKey {
				stack[top].wantKey = false // a key: its value comes next
				continue
			}
		}
		// A value is complete: the enclosing object expects a key next.
		if n := len(stack) - 1; n >= 0 && stack[n].object {
			stack[n].wantKey = true
		}
	}
	if problems != nil {
		return &bulkhead.ValidationError{Problems: problems}
	}
	return nil
}

// loneSurrogate reports whether raw JSON text holds a \uD800-\uDFFF escape
// that is not half of a surrogate pair (the decoder would silently turn it
// into U+FFFD, and PostgreSQL's jsonb refuses it).
func loneSurrogate(raw []byte) bool {
	hex4 := func(i int) (rune, bool) {
		if i+6 > len(raw) || raw[i] != '\\' || raw[i+1] != 'u' {
			return 0, false
		}
		var r rune
		for _, c := range raw[i+2 : i+6] {
			switch {
			case '0' <= c && c <= '9':
				r = r<<4 | rune(c-'0')
			case 'a' <= c && c <= 'f':
				r = r<<4 | rune(c-'a'+10)
			case 'A' <= c && c <= 'F':
				r = r<<4 | rune(c-'A'+10)
			default:
				return 0, false
			}
		}
		return r, true
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		r, ok := hex4(i)
		if !ok {
			i++ // another escape: skip the escaped character
			continue
		}
		switch {
		case 0xD800 <= r && r <= 0xDBFF:
			if lo, ok := hex4(i + 6); !ok || lo < 0xDC00 || lo > 0xDFFF {
				return true
			}
			i += 11 // the pair
		case 0xDC00 <= r && r <= 0xDFFF:
			return true
		default:
			i += 5
		}
	}
	return false
}

func hasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }

func trimDecodeError(s string) string {
	const p = "json: "
	if hasPrefix(s, p) {
		s = s[len(p):]
	}
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}

// pathID parses the {name} path value as a UUID (400 otherwise).
func pathID(r *http.Request, name string) (uuid.UUID, error) {
	return bulkhead.ParseID(name, r.PathValue(name))
}

// page reads ?limit= and ?cursor= (400 for bad values).
func page(r *http.Request) (postgres.Page, error) {
	p := postgres.Page{After: r.URL.Query().Get("cursor")}
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > postgres.MaxPageSize {
			return p, bulkhead.Invalid("limit", fmt.Sprintf("an integer from 1 to %d", postgres.MaxPageSize))
		}
		p.Limit = n
	}
	return p, nil
}

// list is a page of items and the cursor of the next page ("" at the end).
type list[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

func newList[T any](items []T, next string) list[T] {
	if items == nil {
		items = []T{}
	}
	return list[T]{Items: items, NextCursor: next}
}
