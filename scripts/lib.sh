# Shared helpers for scripts/demo, scripts/test and scripts/bench: check for (and, where we
# can, install) what Voronka needs on a Debian-like machine. Sourced, not run.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

APT_UPDATED=""
apt_install() {
  # Installs Debian packages when we can (root, or passwordless sudo); otherwise says exactly what to run.
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo"; else
      die "missing: $*. Install with: sudo apt-get install -y $*"
    fi
  fi
  command -v apt-get >/dev/null 2>&1 || die "missing: $*. Install them with your system's package manager."
  say "installing $* (apt-get)"
  if [ -z "$APT_UPDATED" ]; then $sudo apt-get update -qq >/dev/null; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

need_cargo() {
  command -v cargo >/dev/null 2>&1 || die "Rust is not installed: see https://rustup.rs (rustup installs cargo)."
}

pg_server_present() {
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1
}

need_pg_server() {
  # Voronka runs its own private PostgreSQL cluster from the server binaries when no
  # database_url is configured. Debian's package would also create and start a cluster of its
  # own on port 5432; we switch that off before installing, as we do not need it.
  pg_server_present && return 0
  if [ -n "${DATABASE_URL:-}" ] || [ -n "${VORONKA_DATABASE_URL:-}" ]; then return 0; fi
  apt_install postgresql-common
  if [ -w /etc/postgresql-common/createcluster.conf ] || [ "$(id -u)" -eq 0 ]; then
    sed -i 's/^#\?\s*create_main_cluster.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf 2>/dev/null || true
  fi
  apt_install postgresql
  pg_server_present || die "the PostgreSQL server binaries are still missing after installing postgresql"
}

need_browser_tools() {
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || apt_install nodejs npm
  [ -x /usr/bin/chromium ] || apt_install chromium
  if [ ! -d tests/browser/node_modules/playwright-core ]; then
    say "installing playwright-core for the browser tests (npm ci; no browser is downloaded)"
    (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
}

need_api_client() {
  # The amoCRM-compatibility acceptance test drives the real Python client aioamocrm 0.1.1
  # (from PyPI) in a virtualenv of its own under tests/api/.venv.
  command -v python3 >/dev/null 2>&1 || apt_install python3
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || apt_install python3-venv
  if [ ! -x tests/api/.venv/bin/python ] || ! tests/api/.venv/bin/python -c 'import aioamocrm' >/dev/null 2>&1; then
    say "installing aioamocrm 0.1.1 for the API acceptance test (python venv in tests/api/.venv)"
    rm -rf tests/api/.venv
    python3 -m venv tests/api/.venv
    tests/api/.venv/bin/pip install -q --disable-pip-version-check 'aioamocrm==0.1.1' >/dev/null \
      || die "could not install aioamocrm 0.1.1 from PyPI into tests/api/.venv"
  fi
}
