package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// WriteText writes the report for people: findings by check, then the
// checks that could not run.
func WriteText(w io.Writer, r *Report) error {
	var b strings.Builder
	fmt.Fprintf(&b, "bulkhead audit: database %s as %s, PostgreSQL %s\n", r.Database, r.User, r.Server)
	rt := r.RuntimeRole
	if rt == "" {
		rt = "(none: runtime-role checks skipped)"
	}
	fmt.Fprintf(&b, "runtime role %s, tenant column %s, %d tenant tables, %d checks, %s\n", rt, r.TenantColumn, len(r.TenantTables), r.Checks, r.Duration)
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	last := ""
	for _, f := range r.Findings {
		if f.Check != last {
			c, _ := CheckByID(f.Check)
			fmt.Fprintf(&b, "\n%s %s [%s] %s\n", strings.ToUpper(f.Severity.String()), c.ID, c.Name, c.Title)
			last = f.Check
		}
		fmt.Fprintf(&b, "  %s %s: %s\n", f.Object.Kind, f.Object, f.Detail)
		if f.File != "" {
			fmt.Fprintf(&b, "    at %s:%d\n", f.File, f.Line)
		}
		for _, l := range strings.Split(f.Fix, "\n") {
			fmt.Fprintf(&b, "    fix: %s\n", l)
		}
	}
	if len(r.Skipped) > 0 {
		b.WriteString("\nnot run:\n")
		for _, s := range r.Skipped {
			fmt.Fprintf(&b, "  %s: %s\n", s.Check, s.Reason)
		}
	}
	counts := map[Severity]int{}
	for _, f := range r.Findings {
		counts[f.Severity]++
	}
	fmt.Fprintf(&b, "\n%d errors, %d warnings, %d notes; %d of %d checks ran\n", counts[Error], counts[Warn], counts[Info], r.Checks-len(r.Skipped), r.Checks)
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the report as indented JSON.
func WriteJSON(w io.Writer, r *Report) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}

// Fingerprint is a finding's stable identity across runs: the check and
// the object's logical name (not the detail, file or line, which change
// with unrelated edits).
func Fingerprint(f Finding) string {
	h := sha256.Sum256([]byte(f.Check + "\x00" + f.Object.Kind + "\x00" + f.Object.String()))
	return hex.EncodeToString(h[:16])
}

func sarifLevel(s Severity) string {
	switch s {
	case Error:
		return "error"
	case Warn:
		return "warning"
	}
	return "note"
}

// WriteSARIF writes the report as SARIF 2.1.0 for code scanning: one rule
// per check (with properties.security-severity), one result per finding
// with a logical location (schema.table.name), a physical location (the
// migration that created the object, else a stable pseudo-file named
// after the object) and partialFingerprints.
func WriteSARIF(w io.Writer, r *Report, version string) error {
	type obj = map[string]any
	var rules []obj
	index := map[string]int{}
	for i, c := range Checks {
		index[c.ID] = i
		rules = append(rules, obj{
			"id":                   c.ID,
			"name":                 sarifName(c.Name),
			"shortDescription":     obj{"text": c.Title},
			"fullDescription":      obj{"text": c.Rationale},
			"help":                 obj{"text": c.Rationale, "markdown": "**" + c.Title + "**\n\n" + c.Rationale + "\n\nSee docs/AUDIT.md#" + strings.ToLower(c.ID)},
			"defaultConfiguration": obj{"level": sarifLevel(c.Severity)},
			"properties": obj{
				"security-severity": c.SecuritySeverity(),
				"tags":              []string{"security", "multi-tenant", "row-level-security"},
				"precision":         "high",
			},
		})
	}
	results := []obj{}
	for _, f := range r.Findings {
		uri, region := f.File, obj(nil)
		if uri != "" {
			region = obj{"startLine": f.Line}
		} else {
			uri = "database/" + pseudoPath(f.Object) + ".sql"
		}
		phys := obj{"artifactLocation": obj{"uri": uri}}
		if region != nil {
			phys["region"] = region
		} else {
			phys["region"] = obj{"startLine": 1}
		}
		results = append(results, obj{
			"ruleId":    f.Check,
			"ruleIndex": index[f.Check],
			"level":     sarifLevel(f.Severity),
			"message":   obj{"text": f.Object.Kind + " " + f.Object.String() + ": " + f.Detail + "\nFix:\n" + f.Fix},
			"locations": []obj{{
				"physicalLocation": phys,
				"logicalLocations": []obj{{"fullyQualifiedName": f.Object.String(), "name": lastPart(f.Object), "kind": logicalKind(f.Object.Kind)}},
			}},
			"partialFingerprints": obj{"bulkheadAudit/v1": Fingerprint(f)},
			"properties":          obj{"fix": f.Fix, "object-kind": f.Object.Kind},
		})
	}
	var notes []obj
	for _, s := range r.Skipped {
		level := "note"
		if s.Privilege {
			level = "warning"
		}
		notes = append(notes, obj{"level": level, "message": obj{"text": s.Check + " not run: " + s.Reason}, "descriptor": obj{"id": s.Check}})
	}
	inv := obj{"executionSuccessful": !r.Incomplete()}
	if len(notes) > 0 {
		inv["toolExecutionNotifications"] = notes
	}
	log := obj{
		"$schema": "https://json.schemastore.org/sarif-2.1.0.json",
		"version": "2.1.0",
		"runs": []obj{{
			"tool": obj{"driver": obj{
				"name": "bulkhead-audit", "informationUri": "https://github.com/bulkhead-dev/bulkhead",
				"version": version, "rules": rules,
			}},
			"automationDetails": obj{"id": "bulkhead-audit/" + r.Database + "/"},
			"invocations":       []obj{inv},
			"results":           results,
		}},
	}
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(log)
}

func sarifName(slug string) string {
	var b strings.Builder
	for _, p := range strings.Split(slug, "-") {
		if p != "" {
			b.WriteString(strings.ToUpper(p[:1]) + p[1:])
		}
	}
	return b.String()
}

func pseudoPath(o Object) string {
	var parts []string
	for _, p := range []string{o.Schema, o.Table, o.Name} {
		if p != "" {
			parts = append(parts, strings.NewReplacer("/", "_", " ", "_", "\"", "", "(", "_", ")", "_", ",", "_", "@", "_", "=", "_").Replace(p))
		}
	}
	if len(parts) == 0 {
		parts = []string{o.Kind}
	}
	return strings.Join(parts, "/")
}

func lastPart(o Object) string {
	for _, p := range []string{o.Name, o.Table, o.Schema} {
		if p != "" {
			return p
		}
	}
	return o.Kind
}

func logicalKind(k string) string {
	switch k {
	case "function":
		return "function"
	case "schema":
		return "namespace"
	case "table", "view", "foreign table", "relation":
		return "type"
	}
	return "member"
}
