package postgres

import (
	"time"

	"github.com/bulkhead-dev/bulkhead"
)

// TokenAt exposes token to the tests: a token for s made at now.
func (k ContextKey) TokenAt(s bulkhead.Scope, now time.Time) []byte { return k.token(s, now) }

// Translate exposes translate to the tests.
var Translate = translate
