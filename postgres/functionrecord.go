package postgres

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"

	"github.com/jackc/pgx/v5"
)

// LiveFunction is one function of bulkhead's schema as pg_proc holds it:
// what decides what it does and with whose rights.
type LiveFunction struct {
	// Signature is name(argument types), the types as format_type prints
	// them, comma-separated without spaces.
	Signature string `json:"signature"`
	Result    string `json:"result"`
	Language  string `json:"language"`
	// Owner is empty for a function of an extension (Extension): its
	// owner is whoever created the extension, a superuser the operator
	// chooses.
	Owner     string `json:"owner,omitempty"`
	Extension string `json:"extension,omitempty"`
	Definer   bool   `json:"security_definer"`
	Leakproof bool   `json:"leakproof,omitempty"`
	// Config is the function's SET clauses (search_path pinned).
	Config []string `json:"config,omitempty"`
	// Body is the SHA-256 of prosrc and probin: the text of an SQL or
	// PL/pgSQL body (stored verbatim), or a C function's symbol and
	// library.
	Body string `json:"body_sha256"`
}

// ExpectedFunctions is every function the migrations leave in bulkhead's
// schema, recorded by TestExpectedFunctionsAreTheMigrations on a freshly
// migrated database (go test ./postgres -run
// TestExpectedFunctionsAreTheMigrations -update rewrites it; the test fails
// whenever it differs). It is the self-check's one comparison of functions:
// the generator's helpers (TestGeneratedMigrationsUpToDate keeps the
// migrations equal to the generator), the context functions every policy
// calls, the per-request access check, the authentication and notification
// definers, the extension's C functions.
type ExpectedFunctions struct {
	Functions []LiveFunction `json:"functions"`
}

//go:embed functions_expected.json
var expectedFunctionsJSON []byte

// LoadExpectedFunctions returns the recorded functions.
func LoadExpectedFunctions() (ExpectedFunctions, error) {
	var e ExpectedFunctions
	if err := json.Unmarshal(expectedFunctionsJSON, &e); err != nil {
		return e, fmt.Errorf("expected functions: %w", err)
	}
	return e, nil
}

// liveFunctionsSQL reads every function of schema $1. Every role may read
// pg_proc, the runtime role included.
const liveFunctionsSQL = `
	SELECT p.proname || '(' || replace(oidvectortypes(p.proargtypes), ', ', ',') || ')', pg_get_function_result(p.oid), l.lanname,
	       pg_get_userbyid(p.proowner), p.prosecdef, p.proleakproof, coalesce(p.proconfig, '{}'),
	       p.prosrc, coalesce(p.probin, ''), coalesce(e.extname, '')
	FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
	LEFT JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
	LEFT JOIN pg_extension e ON d.refclassid = 'pg_extension'::regclass AND e.oid = d.refobjid
	WHERE n.nspname = $1
	ORDER BY 1`

// ReadFunctions returns the functions of bulkhead's schema, by signature.
func ReadFunctions(ctx context.Context, q Querier) ([]LiveFunction, error) {
	rows, err := q.Query(ctx, liveFunctionsSQL, Schema)
	if err != nil {
		return nil, fmt.Errorf("read functions: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (LiveFunction, error) {
		var f LiveFunction
		var src, bin string
		if err := r.Scan(&f.Signature, &f.Result, &f.Language, &f.Owner, &f.Definer, &f.Leakproof, &f.Config, &src, &bin, &f.Extension); err != nil {
			return f, err
		}
		if f.Extension != "" {
			f.Owner = ""
		}
		if len(f.Config) == 0 {
			f.Config = nil
		}
		sum := sha256.Sum256([]byte(src + "\x00" + bin))
		f.Body = hex.EncodeToString(sum[:])
		return f, nil
	})
}

// compareRecordedFunctions reports every function of the schema that is
// not the migrations' (missing, added, or with another body, owner, result,
// language or attributes).
func compareRecordedFunctions(live, want []LiveFunction, add func(check, obj, detail string)) {
	got := map[string]LiveFunction{}
	for _, f := range live {
		got[f.Signature] = f
	}
	seen := map[string]bool{}
	for _, w := range want {
		seen[w.Signature] = true
		obj := Schema + "." + w.Signature
		g, ok := got[w.Signature]
		switch {
		case !ok:
			add("function", obj, "missing: the migrations make it")
		case g.Body != w.Body:
			add("function", obj, "body differs from the migrations' (edited by hand or by an unknown migration)")
		case g.Owner != w.Owner:
			add("function", obj, "owned by "+g.Owner+", the migrations' owner is "+w.Owner)
		case g.Extension != w.Extension || g.Language != w.Language || g.Result != w.Result || g.Definer != w.Definer || g.Leakproof != w.Leakproof || !slices.Equal(g.Config, w.Config):
			add("function", obj, fmt.Sprintf("differs from the migrations' (extension %q, language %s, returns %s, security definer %t, leakproof %t, config %v; the migrations': %q, %s, %s, %t, %t, %v)",
				g.Extension, g.Language, g.Result, g.Definer, g.Leakproof, g.Config, w.Extension, w.Language, w.Result, w.Definer, w.Leakproof, w.Config))
		}
	}
	var extra []string
	for sig := range got {
		if !seen[sig] {
			extra = append(extra, sig)
		}
	}
	sort.Strings(extra)
	for _, sig := range extra {
		add("function", Schema+"."+sig, "not made by the migrations: every function of the schema is bulkhead's, and a policy or the request path may call it")
	}
}
