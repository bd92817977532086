#!/usr/bin/env bash
# Installs what the integration tests need beyond the Rust toolchain, on Debian/Ubuntu:
#   chromium + chromium-driver  (tests/suite/browser.rs drives a headless browser)
#   redis-server                 (needed by the Redis-backed tests)
#   iproute2                     (ip netns, tc: tests/suite/browser_poor_network.rs limits a link)
#   coturn                       (turnserver: tests/suite/turn.rs and tests/suite/browser_restricted_network.rs)
#   iptables                     (tests/suite/browser_restricted_network.rs blocks UDP in a namespace)
# Idempotent: installs only what is missing. Uses sudo only when not already root.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/bin/$1" ]; }

packages=()
# The driver must match the browser version exactly, so the two are always installed together.
if ! have chromium || ! have chromedriver; then
  packages+=(chromium chromium-driver)
fi
if ! have redis-server; then
  packages+=(redis-server)
fi
if ! have ip || ! { have tc || [ -x /usr/sbin/tc ] || [ -x /sbin/tc ]; }; then
  packages+=(iproute2)
fi

if ! have turnserver; then
  packages+=(coturn)
fi
if ! have iptables && [ ! -x /usr/sbin/iptables ] && [ ! -x /sbin/iptables ]; then
  packages+=(iptables)
fi

if [ "${#packages[@]}" -eq 0 ]; then
  echo "install-test-deps: chromium, chromedriver, redis-server, iproute2, coturn and iptables are already installed; nothing to do."
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-test-deps: apt-get not found; please install: ${packages[*]}" >&2
  exit 1
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "install-test-deps: not root and sudo is unavailable; as root run: apt-get install ${packages[*]}" >&2
    exit 1
  fi
  sudo=(sudo)
fi

echo "install-test-deps: missing packages: ${packages[*]}"
echo "install-test-deps: running apt-get update"
"${sudo[@]}" apt-get update
echo "install-test-deps: installing ${packages[*]}"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"
echo "install-test-deps: done"
