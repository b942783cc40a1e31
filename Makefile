# The two commands that matter: `make run` and `make test`. Both install
# what they need first (scripts/deps.sh).
GO      ?= go
BIN     := bin/bulkhead
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: deps build run test lint bench generate mutate policy-lock policy-check

deps:
	@./scripts/deps.sh

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/bulkhead

run: deps build
	./$(BIN) serve --log-format text

test: deps
	$(GO) test -race -shuffle=on -count=1 -timeout 15m ./...

# Mutation testing (docs/TESTING.md): PKGS="./auth ./rls" or DIFF=<commit> to narrow it.
mutate: deps
	PKGS="$(PKGS)" DIFF="$(DIFF)" ./scripts/mutate.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

generate:
	$(GO) generate ./...

bench: deps build
	./$(BIN) bench rls --write docs/BENCHMARKS.md
	./$(BIN) bench crypto --write docs/BENCHMARKS.md
	./$(BIN) bench api --write docs/BENCHMARKS.md
	./$(BIN) bench vector --write docs/BENCHMARKS.md
	./$(BIN) bench retrieval --write docs/BENCHMARKS.md
	./$(BIN) bench tenants --write docs/BENCHMARKS.md
	./$(BIN) bench crash --duration 60s --interval 12s --write docs/RELIABILITY.md
	./$(BIN) bench overload --write docs/RELIABILITY.md

# The policy gate: policies.lock records the policies, grants, definer
# functions and visibility matrix that postgres/migrations produce (applied
# to a throwaway PostgreSQL). Regenerate it with every intended policy
# change and commit it; CI runs policy-check.
policy-lock: deps build
	./$(BIN) policy lock --migrations postgres/migrations --log-format text

policy-check: deps build
	./$(BIN) policy check --migrations postgres/migrations --log-format text
