// Package migrations embeds bulkhead's SQL migrations, applied by goose in
// version order, one transaction each. 00001, 00006 and 00008 were generated from
// postgres.Tables by the policy generator; do not edit them by hand.
package migrations

import "embed"

// FS holds the *.sql migrations.
//
//go:embed *.sql
var FS embed.FS
