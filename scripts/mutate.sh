#!/usr/bin/env bash
# Mutation testing of the security-critical packages (docs/TESTING.md).
#
#   make mutate                          # every listed package (hours: postgres alone is slow)
#   make mutate PKGS="./auth ./rls"      # some packages
#   make mutate DIFF=origin/main         # the listed packages with Go files changed since a commit:
#                                        # the before-stop habit (whole packages: gremlins v0.6.0's
#                                        # own --diff compares package-relative mutant paths with
#                                        # repository-relative diff paths and so skips every mutant)
#
# Go code: gremlins v0.6.0 (arithmetic, boundary, negation, ++/--, sign and
# &&/|| mutants) run against each package's own tests, one worker, on real
# PostgreSQL where the package's tests need it. Policies: the verifier's own
# mutation test (postgres/mutation_test.go), which gremlins can't do (the
# policies are SQL).
set -euo pipefail
cd "$(dirname "$0")/.."
GREMLINS="$(go env GOPATH)/bin/gremlins"
if [ ! -x "$GREMLINS" ]; then
	go install github.com/go-gremlins/gremlins/cmd/gremlins@v0.6.0
fi
PKGS=${PKGS:-"./rls ./fieldcrypt ./auth ./vector ./vector/embedded ./retrieval ./httpapi ./postgres"}
if [ -n "${DIFF:-}" ]; then
	changed=$(git diff --name-only "$DIFF" -- '*.go' | { grep -v '_test\.go$' || true; } | xargs -r -n1 dirname | sort -u | sed 's|^|./|')
	keep=""
	for p in $PKGS; do
		if echo "$changed" | grep -qx -- "$p"; then
			keep="$keep $p"
		fi
	done
	echo "== packages changed since $DIFF:${keep:- none}"
	PKGS=$keep
fi
mkdir -p .mutate
summary=.mutate/summary.txt
: > "$summary"
for p in $PKGS; do
	name=$(echo "${p#./}" | tr / _)
	args=(unleash --workers 1 --test-cpu 1 --timeout-coefficient 10 --invert-logical -o ".mutate/$name.json")
	echo "== gremlins $p"
	start=$(date +%s)
	"$GREMLINS" "${args[@]}" "$p" | tee ".mutate/$name.log" | grep -E '^\s*(LIVED|TIMED OUT)|Killed:|Mutator coverage|Test efficacy' || true
	line=$(grep -E 'Killed:' ".mutate/$name.log" | tail -1 || true)
	echo "$p: ${line:-no result} ($(( $(date +%s) - start )) s)" >> "$summary"
done
if [ -z "${DIFF:-}" ]; then
	echo "== policy verifier mutants"
	BULKHEAD_MUTATION=1 go test -count=1 ./postgres -run TestVerifierKillsEveryMutant -v -timeout 30m |
		grep -E "mutation score|survived" | tee -a "$summary"
fi
echo
echo "== summary (.mutate/summary.txt; survivors: LIVED lines in .mutate/*.log)"
cat "$summary"
