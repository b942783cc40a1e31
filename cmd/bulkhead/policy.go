package main

import (
	"fmt"
	"time"

	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/rls/model"
	"github.com/spf13/cobra"
)

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Review the isolation rules",
	}
	var format string
	show := &cobra.Command{
		Use:   "show",
		Short: "Print who may do what on every tenant table (table × command × caller), from the reference model",
		Long: `show prints the reference model's matrix: for each tenant table and each caller
relation of the model's fixture, the rows a SELECT returns and the writes
PostgreSQL accepts. It needs no database: it is the model the verifier
compares the generated policies with. docs/POLICIES.md is its markdown form.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ms := model.Matrix(postgres.Tables, model.NewFixture(time.Now()))
			switch format {
			case "markdown":
				return model.WriteMarkdown(cmd.OutOrStdout(), ms)
			case "json":
				return model.WriteJSON(cmd.OutOrStdout(), ms)
			}
			return fmt.Errorf("--format %q: want markdown or json", format)
		},
	}
	show.Flags().StringVar(&format, "format", "markdown", "markdown or json")
	cmd.AddCommand(show)
	return cmd
}
