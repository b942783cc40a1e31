package bulkhead

import "log/slog"

// Secret is a string that never prints: String, GoString, MarshalJSON and
// LogValue all redact it, so a secret that reaches a log line, an error, an
// API response or an export shows as "[redacted]". Reveal returns the value
// for the one place that must use it.
type Secret string

const redacted = "[redacted]"

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return string(s) }

// String redacts.
func (Secret) String() string { return redacted }

// GoString redacts.
func (Secret) GoString() string { return redacted }

// MarshalJSON redacts.
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText redacts (map keys, text encoders).
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// LogValue redacts.
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }
