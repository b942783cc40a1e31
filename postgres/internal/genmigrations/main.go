// Command genmigrations writes the generated migrations of package postgres
// into postgres/migrations. Run it with go generate ./postgres.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/bulkhead-dev/bulkhead/postgres"
)

func main() {
	files, err := postgres.GeneratedMigrations()
	if err != nil {
		fmt.Fprintln(os.Stderr, "genmigrations:", err)
		os.Exit(1)
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join("migrations", name), []byte(body), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "genmigrations:", err)
			os.Exit(1)
		}
	}
}
