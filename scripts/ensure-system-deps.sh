#!/usr/bin/env bash
# Makes sure the system (Debian) packages the tests need are present, installing what is missing
# when run as root. Idempotent; when everything is present it prints nothing and takes milliseconds.
# Called by ./run-tests. One ensure_<thing> function per dependency: add swtpm, mosquitto, chromium…
# the same way (check cheaply, else apt_install the package, else fail naming the package).
set -euo pipefail

is_root() { [ "$(id -u)" = 0 ]; }

die() { echo "ensure-system-deps: $1" >&2; exit 1; }

APT_UPDATED=""
# apt_install WHAT PACKAGE… — installs Debian packages as root (one `apt-get update` per run), or
# fails with a message naming them.
apt_install() {
  local what="$1"; shift
  if ! is_root; then
    die "missing ${what}: install the Debian package(s) '$*' (sudo apt-get install $*), or run ./run-tests as root"
  fi
  command -v apt-get >/dev/null 2>&1 \
    || die "missing ${what}: no apt-get on this system; install the equivalent of the Debian package(s) '$*'"
  echo "ensure-system-deps: installing $* (${what})"
  export DEBIAN_FRONTEND=noninteractive
  local out; out="$(mktemp)"
  if [ -z "$APT_UPDATED" ]; then
    apt-get update >"$out" 2>&1 || { cat "$out" >&2; rm -f "$out"; die "apt-get update failed"; }
    APT_UPDATED=1
  fi
  apt-get install -y --no-install-recommends "$@" >"$out" 2>&1 \
    || { tail -n 30 "$out" >&2; rm -f "$out"; die "apt-get install $* failed"; }
  rm -f "$out"
}

# PostgreSQL server binaries, for test/support/postgres.ts (initdb + pg_ctl of the newest
# /usr/lib/postgresql/N). Not needed when the tests use an existing server or none.
ensure_postgres() {
  if [ "${HEPTAD_TEST_PG:-}" = off ] || [ -n "${HEPTAD_TEST_PG_URL:-}" ]; then return 0; fi
  if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    apt_install "PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb)" postgresql
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null \
      || die "package 'postgresql' installed but /usr/lib/postgresql/*/bin/initdb is still missing"
  fi
  # PostgreSQL refuses to run as root: as root the tests run it as the 'postgres' user, which the
  # Debian package creates.
  if is_root && ! id -u postgres >/dev/null 2>&1; then
    echo "ensure-system-deps: creating system user postgres"
    useradd --system --user-group --home-dir /var/lib/postgresql --no-create-home \
      --shell /bin/bash postgres || die "could not create the 'postgres' user"
  fi
}

# runuser (util-linux): how the tests, as root, run PostgreSQL as the 'postgres' user.
ensure_runuser() {
  if ! is_root || command -v runuser >/dev/null 2>&1 || [ -x /usr/sbin/runuser ] || [ -x /sbin/runuser ]; then
    return 0
  fi
  apt_install "runuser" util-linux
}

# swtpm (a TPM 2.0 simulator) and tpm2-tools with the swtpm TCTI, for test/support/swtpm.ts and the
# TPM interop tests (packages/device/test/tpm-*.test.ts) and bench/tpm-quote.ts. Without them those
# tests skip, unless HEPTAD_REQUIRE_SWTPM is set.
ensure_swtpm() {
  if command -v swtpm >/dev/null 2>&1 && command -v swtpm_setup >/dev/null 2>&1 \
    && command -v tpm2_quote >/dev/null 2>&1 && has_swtpm_tcti; then
    return 0
  fi
  apt_install "swtpm and tpm2-tools (swtpm, swtpm_setup, tpm2_quote, the swtpm TCTI)" \
    swtpm swtpm-tools tpm2-tools libtss2-tcti-swtpm0
  command -v swtpm >/dev/null 2>&1 && command -v tpm2_quote >/dev/null 2>&1 && has_swtpm_tcti \
    || die "packages swtpm, tpm2-tools and libtss2-tcti-swtpm0 installed but swtpm, tpm2_quote or the TCTI is still missing"
}

# The tss2 TCTI library tpm2-tools loads for TPM2TOOLS_TCTI=swtpm:… (Debian: libtss2-tcti-swtpm0).
has_swtpm_tcti() {
  local pattern
  for pattern in '/usr/lib/*/libtss2-tcti-swtpm.so.0*' '/usr/lib/libtss2-tcti-swtpm.so.0*' \
    '/usr/lib64/libtss2-tcti-swtpm.so.0*'; do
    compgen -G "$pattern" >/dev/null && return 0
  done
  return 1
}

# Mosquitto (the broker and its clients), for the interop tests against a configuration written by
# `heptad broker config mosquitto` (packages/cli/test/mosquitto.test.ts) and bench/mqtt.ts. The Debian
# package does not start a service here; the tests start their own on a free loopback port.
ensure_mosquitto() {
  if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then
    command -v mosquitto_pub >/dev/null 2>&1 && return 0
  fi
  apt_install "Mosquitto (mosquitto, mosquitto_pub, mosquitto_sub)" mosquitto mosquitto-clients
  { command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; } && command -v mosquitto_pub >/dev/null 2>&1 \
    || die "packages mosquitto and mosquitto-clients installed but mosquitto or mosquitto_pub is still missing"
}

# nginx, for bench/updates.ts only (the side-by-side baseline): `ensure-system-deps.sh nginx`.
ensure_nginx() {
  if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then return 0; fi
  apt_install "nginx (the benchmark baseline)" nginx
  { command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; } \
    || die "package nginx installed but nginx is still missing"
}

# With arguments: only those (e.g. `nginx` for a benchmark); without: what ./run-tests needs.
if [ "$#" -gt 0 ]; then
  for what in "$@"; do "ensure_${what}"; done
  exit 0
fi

ensure_postgres
ensure_runuser
ensure_swtpm
ensure_mosquitto
