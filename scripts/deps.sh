#!/usr/bin/env bash
# Installs what bulkhead needs on a fresh Debian machine with Go: the
# PostgreSQL server binaries and PgBouncer. As root it uses apt-get; as
# anyone else it says what to install and fails.
set -euo pipefail

have_postgres() {
  command -v pg_config >/dev/null 2>&1 && [[ -x "$(pg_config --bindir)/postgres" ]] && return 0
  compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null
}
have_pgbouncer() { command -v pgbouncer >/dev/null 2>&1 || [[ -x /usr/sbin/pgbouncer ]]; }

missing=()
have_postgres || missing+=(postgresql)
have_pgbouncer || missing+=(pgbouncer)
((${#missing[@]} == 0)) && exit 0

if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "deps: installing ${missing[*]} with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The Debian package may start a system cluster; bulkhead never uses it.
  exit 0
fi
echo "deps: missing ${missing[*]}. Install with: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
exit 1
