#!/usr/bin/env bash
# THE test command for knappval: installs the tools the tests need when they are missing, then checks formatting,
# lints and runs every test (unit, integration over loopback, SIPp interop). Non-interactive; safe under CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export DEBIAN_FRONTEND=noninteractive

# sipp (Debian: sip-tester) is the independent SIP peer; espeak-ng and sox render draft prompts (`knappval prompts
# synth`, tested in tests/prompts.rs); chromium runs the dashboard page in tests/dashboard.rs; systemd-analyze
# reads the shipped unit in tests/packaging.rs.
missing=()
command -v sipp >/dev/null 2>&1 || missing+=(sip-tester)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v sox >/dev/null 2>&1 || missing+=(sox)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
if ((${#missing[@]})); then
    echo "run.sh: installing ${missing[*]}" >&2
    as_root=()
    if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null 2>&1; then
        as_root=(sudo -n)
    fi
    "${as_root[@]}" apt-get update -qq </dev/null
    "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
fi

echo "run.sh: cargo fmt --check" >&2
cargo fmt --all -- --check

echo "run.sh: cargo clippy" >&2
cargo clippy --all-targets --locked -- -D warnings

echo "run.sh: cargo test" >&2
cargo test --all-targets --locked </dev/null
