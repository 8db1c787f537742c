#!/bin/sh
# Minimal mail delivery agent for the interop suite (fetchmail --mda, and
# NeoMutt's pipe-message): stores the message from standard input, unchanged,
# as a new file in the directory given as the only argument.
set -eu
f=$(mktemp "$1/msg.XXXXXXXX")
cat > "$f"
