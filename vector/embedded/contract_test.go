package embedded_test

import (
	"testing"

	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/bulkhead-dev/bulkhead/vector/embedded"
	"github.com/bulkhead-dev/bulkhead/vector/vectortest"
)

func TestContract(t *testing.T) {
	vectortest.Run(t, func(t *testing.T) vector.Store {
		return mustNew(t, t.TempDir())
	})
}

// TestContractTinyBudget runs the contract with a budget that evicts every
// collection after every call, so each call reloads from the file.
func TestContractTinyBudget(t *testing.T) {
	vectortest.Run(t, func(t *testing.T) vector.Store {
		return mustNew(t, t.TempDir(), embedded.WithMemoryBudget(1))
	})
}

func mustNew(t *testing.T, dir string, opts ...embedded.Option) *embedded.Store {
	t.Helper()
	s, err := embedded.New(dir, opts...)
	if err != nil {
		t.Fatalf("embedded.New(%s): %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
