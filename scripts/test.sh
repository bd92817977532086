#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with the Rust toolchain:
# installs what the tests need (Chromium, ChromeDriver, Redis) when missing, checks formatting and
# clippy, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
# House rules first: they fail in seconds, and a red suite after ten minutes of tests for a
# formatting slip helps nobody.
# (rustfmt and clippy come with rustup's default profile; a toolchain without them cannot get
# them here, so say so instead of failing on a missing tool.)
if cargo fmt --version >/dev/null 2>&1; then cargo fmt --check; else echo "test.sh: rustfmt missing; formatting not checked" >&2; fi
if cargo clippy --version >/dev/null 2>&1; then cargo clippy --locked --all-targets -- -D warnings; else echo "test.sh: clippy missing; lints not checked" >&2; fi
cargo test --locked --no-fail-fast "$@"
