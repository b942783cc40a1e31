#!/usr/bin/env bash
# Installs what bulkhead needs on a fresh Debian machine with Go: the
# PostgreSQL server binaries, PgBouncer, and bulkhead's own PostgreSQL
# extension (pgext/, built against postgresql-server-dev). As root it uses
# apt-get and installs the extension; as anyone else it says what to do and
# fails.
set -euo pipefail
cd "$(dirname "$0")/.."

have_postgres() {
  command -v pg_config >/dev/null 2>&1 && [[ -x "$(pg_config --bindir)/postgres" ]] && return 0
  compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null
}
have_pgbouncer() { command -v pgbouncer >/dev/null 2>&1 || [[ -x /usr/sbin/pgbouncer ]]; }
# The newest installed server, as pgcluster picks it.
major() { ls -d /usr/lib/postgresql/*/bin/postgres 2>/dev/null | sed -E 's|/usr/lib/postgresql/([0-9]+)/.*|\1|' | sort -n | tail -1; }
root() { [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; }

apt_install() {
  echo "deps: installing $* with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  # The Debian package may start a system cluster; bulkhead never uses it.
}

missing=()
have_postgres || missing+=(postgresql)
have_pgbouncer || missing+=(pgbouncer)
if ((${#missing[@]} > 0)); then
  if ! root; then
    echo "deps: missing ${missing[*]}. Install with: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  apt_install "${missing[@]}"
fi

# The bulkhead_context extension: every cluster bulkhead starts preloads it.
v=$(major)
pgc=/usr/lib/postgresql/$v/bin/pg_config
lib=/usr/lib/postgresql/$v/lib/bulkhead_context.so
if ! root; then
  if [[ ! -f $lib ]]; then
    echo "deps: the bulkhead_context extension is not installed for PostgreSQL $v. As root: apt-get install -y postgresql-server-dev-$v && make -C pgext PG_CONFIG=$pgc with_llvm=no install" >&2
    exit 1
  fi
  exit 0
fi
[[ -x $pgc && -f /usr/include/postgresql/$v/server/postgres.h ]] || apt_install "postgresql-server-dev-$v"
make -s -C pgext PG_CONFIG="$pgc" with_llvm=no >/dev/null
# Install each file by an atomic rename, and only when it changed: running
# clusters have the library mapped, and overwriting it in place would crash them.
put() {
  local src=$1 dir=$2
  cmp -s "$src" "$dir/$(basename "$src")" && return 0
  install -m "$3" "$src" "$dir/.$(basename "$src").tmp"
  mv -f "$dir/.$(basename "$src").tmp" "$dir/$(basename "$src")"
  echo "deps: installed $dir/$(basename "$src")" >&2
}
put pgext/bulkhead_context.so "$("$pgc" --pkglibdir)" 755
for f in pgext/bulkhead_context.control pgext/bulkhead_context--*.sql; do
  put "$f" "$("$pgc" --sharedir)/extension" 644
done
