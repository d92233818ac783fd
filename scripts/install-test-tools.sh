#!/bin/sh
# Install the system programs that the deployment tests run: Debian's
# prometheus package, which brings the Prometheus server and promtool.
# Safe to run again: it does nothing when both are already on PATH. When it
# cannot install (not root, no sudo, no apt-get), it prints what to install
# and exits 0, so that only the tests that need the programs fail.
set -eu

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    exit 0
fi

explain() {
    echo "install-test-tools: $1; install Debian's prometheus package" \
        "(apt-get install --no-install-recommends prometheus) as root," \
        "or the tests that run prometheus and promtool will fail" >&2
    exit 0
}

if [ "$(id -u)" -eq 0 ]; then
    as_root=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root="sudo -n"
else
    explain "not root and sudo is not available without a password"
fi
command -v apt-get >/dev/null 2>&1 || explain "apt-get not found"

# The package's maintainer scripts would start a Prometheus daemon listening
# on all interfaces. While a policy-rc.d that exits 101 exists, invoke-rc.d
# starts no service. One is created here only if the machine has none.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    trap '$as_root rm -f "$policy"' EXIT
    printf '#!/bin/sh\nexit 101\n' | $as_root tee "$policy" >/dev/null
    $as_root chmod 755 "$policy"
fi

echo "install-test-tools: installing Debian's prometheus package" >&2
$as_root apt-get update -qq
$as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends prometheus >/dev/null
