package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/google/uuid"
)

// errTooLarge is a body over the configured limit (413).
var errTooLarge = errors.New("request body too large")

// errUnsupportedType is a body that is not JSON (415).
var errUnsupportedType = errors.New("request body must be application/json")

// decode reads one JSON object into v: unknown fields, trailing data, wrong
// types and bodies over limit bytes are errors (400/413/422), never 500s.
func decode(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && ct != "application/json" && !hasPrefix(ct, "application/json;") {
		return errUnsupportedType
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooLarge *http.MaxBytesError
		var syntax *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &tooLarge):
			return errTooLarge
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
