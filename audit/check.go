package audit

// Check is one audit rule. ID is stable (SARIF ruleId); Name is a short
// slug; Rationale is the paragraph docs/AUDIT.md and SARIF show.
type Check struct {
	ID        string
	Name      string
	Title     string
	Severity  Severity
	Rationale string
	// Needs lists the catalog reads the check depends on.
	Needs []string
	// Runtime is set when the check is about what --runtime-role can do.
	Runtime bool
	// Splinter and Pgrls name the rules of those linters that this check
	// covers (for docs/AUDIT.md), empty when none does.
	Splinter, Pgrls string
	run             func(*snapshot) []Finding
}

// SecuritySeverity is the numeric score GitHub code scanning reads
// (properties.security-severity): error 8.0, warn 5.0, info 2.0.
func (c Check) SecuritySeverity() string {
	switch c.Severity {
	case Error:
		return "8.0"
	case Warn:
		return "5.0"
	}
	return "2.0"
}

// CheckByID returns the check with id.
func CheckByID(id string) (Check, bool) {
	for _, c := range Checks {
		if c.ID == id {
			return c, true
		}
	}
	return Check{}, false
}
