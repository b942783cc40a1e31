package postgres

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// LivePolicy is one policy as PostgreSQL holds it: pg_policies, whose
// expressions are PostgreSQL's own deparse of the stored parse trees.
type LivePolicy struct {
	Table      string   `json:"table"`
	Name       string   `json:"name"`
	Permissive string   `json:"permissive"`
	Roles      []string `json:"roles"`
	Command    string   `json:"command"`
	Using      string   `json:"using,omitempty"`
	Check      string   `json:"check,omitempty"`
}

// ExpectedPolicies is the generator's policies for Tables as PostgreSQL
// deparses them, recorded by TestExpectedPoliciesAreTheGenerators on a
// database migrated from the generated migration (go test ./postgres -run
// TestExpectedPoliciesAreTheGenerators -update rewrites it; the test fails
// whenever it differs from what the generator's SQL becomes in PostgreSQL).
// The self-check compares a live database with it, expression by expression.
type ExpectedPolicies struct {
	ServerMajor int          `json:"server_major"`
	Policies    []LivePolicy `json:"policies"`
}

//go:embed policies_expected.json
var expectedPoliciesJSON []byte

// LoadExpectedPolicies returns the recorded expectations.
func LoadExpectedPolicies() (ExpectedPolicies, error) {
	var e ExpectedPolicies
	if err := json.Unmarshal(expectedPoliciesJSON, &e); err != nil {
		return e, fmt.Errorf("expected policies: %w", err)
	}
	return e, nil
}

// ReadPolicies returns the live policies of the declared tables.
func ReadPolicies(ctx context.Context, q Querier) ([]LivePolicy, error) {
	rows, err := q.Query(ctx, livePoliciesSQL, declaredNames())
	if err != nil {
		return nil, err
	}
	vals, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]any, error) { return r.Values() })
	if err != nil {
		return nil, err
	}
	return livePolicies(vals), nil
}

// livePoliciesSQL reads the policies of the declared tables.
const livePoliciesSQL = `
	SELECT schemaname || '.' || tablename, policyname, permissive, roles::text[], cmd, coalesce(qual, ''), coalesce(with_check, '')
	FROM pg_policies WHERE schemaname || '.' || tablename = ANY($1)
	ORDER BY 1, 2`

// comparePolicies reports every difference in meaning between live and
// want: expressions, command, mode and roles, per table and policy.
func comparePolicies(live, want []LivePolicy, add func(check, obj, detail string)) {
	key := func(p LivePolicy) string { return p.Table + " " + p.Name }
	have := map[string]LivePolicy{}
	for _, p := range live {
		have[key(p)] = p
	}
	for _, w := range want {
		g, ok := have[key(w)]
		if !ok {
			continue // reported by the name check
		}
		diff := func(what, got, want string) {
			if got != want {
				add("policy", w.Table, fmt.Sprintf("policy %s: %s differs from the generator's\n    database:  %s\n    generator: %s", w.Name, what, got, want))
			}
		}
		diff("USING", g.Using, w.Using)
		diff("WITH CHECK", g.Check, w.Check)
		diff("command", g.Command, w.Command)
		diff("mode", g.Permissive, w.Permissive)
		diff("roles", strings.Join(g.Roles, ","), strings.Join(w.Roles, ","))
	}
}
