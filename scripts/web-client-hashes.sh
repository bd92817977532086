#!/bin/sh
# Prints the SHA-256 of every file of the web client, to publish with a release so people can
# check that what their browser loaded is what was published (docs/threat-model.md). The
# base64 form is what a Subresource Integrity attribute (integrity="sha256-…") takes.
set -eu
cd "$(dirname "$0")/../web-client"
find . -type f | LC_ALL=C sort | while read -r f; do
  hex=$(sha256sum "$f" | cut -d' ' -f1)
  sri=$(openssl dgst -sha256 -binary "$f" | openssl base64 -A)
  printf '%s  sha256-%s  %s\n' "$hex" "$sri" "${f#./}"
done
