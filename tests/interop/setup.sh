#!/usr/bin/env bash
# One-time setup for the interop suite (tests/interop), Debian or Ubuntu, as
# root or with sudo: installs the servers and clients from the distribution
# without letting the packages start their own Dovecot or Postfix, and
# creates the system user that owns the test mailboxes; installs the Node.js
# clients (nodemailer, imapflow) and the OAuth2 part's authorisation server
# (oauth2-mock-server) with npm into build/interop-node. .ci/run
# calls it; afterwards `make interop` runs the suite. Nothing else in /etc is
# changed: the suite brings its own configurations and runs them from a
# temporary directory.
set -euo pipefail

MAIL_USER=${INTEROP_MAIL_USER:-mailtlsd-interop}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

# Postfix asks how to configure the system's mail: not at all.
echo "postfix postfix/main_mailer_type select No configuration" |
	$SUDO debconf-set-selections

# A policy-rc.d that forbids every service start while the packages are
# installed (invoke-rc.d honours it with or without an init system); any
# existing one is put back afterwards.
POLICY=/usr/sbin/policy-rc.d
SAVED=$POLICY.interop-saved
restore_policy() {
	$SUDO rm -f "$POLICY"
	if [ -e "$SAVED" ]; then $SUDO mv "$SAVED" "$POLICY"; fi
}
if [ -e "$POLICY" ]; then $SUDO mv "$POLICY" "$SAVED"; fi
trap restore_policy EXIT
printf '#!/bin/sh\n# tests/interop/setup.sh: no service starts\nexit 101\n' |
	$SUDO tee "$POLICY" >/dev/null
$SUDO chmod 0755 "$POLICY"

$SUDO apt-get update -qq
$SUDO apt-get install -y --no-install-recommends \
	dovecot-imapd dovecot-pop3d dovecot-lmtpd postfix \
	swaks fetchmail neomutt curl openssl python3 ca-certificates \
	msmtp mpop isync
# Node.js and npm from Debian, unless this machine has them already (from
# another source, whose nodejs package Debian's npm would conflict with).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	$SUDO apt-get install -y --no-install-recommends nodejs npm
fi

# The packages' own servers must not run: policy-rc.d kept them from
# starting; should something else have started them, stop them (they use
# the standard ports and /etc's configuration, not the suite's).
if pgrep -x -f '/usr/sbin/dovecot( -F)?( -c /etc/dovecot/dovecot.conf)?' \
	>/dev/null; then
	echo "setup.sh: stopping the distribution's Dovecot" >&2
	$SUDO doveadm stop || true
fi
if $SUDO postfix status >/dev/null 2>&1; then
	echo "setup.sh: stopping the distribution's Postfix" >&2
	$SUDO postfix stop || true
fi

# The owner of the test mailboxes: Dovecot refuses mail access as root.
if ! getent passwd "$MAIL_USER" >/dev/null; then
	$SUDO useradd --system --user-group --no-create-home \
		--home-dir /nonexistent --shell /usr/sbin/nologin "$MAIL_USER"
fi
# The Node.js clients, pinned, into build/interop-node (never committed;
# INTEROP_NODE_DIR moves it; run.py finds it there). Their current releases
# need Node.js 20; Debian 12's nodejs is 18, which gets the last releases
# that declare no such requirement.
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
NODE_DIR=${INTEROP_NODE_DIR:-$ROOT/build/interop-node}
NODE_MAJOR=$(node -p 'process.versions.node.split(".")[0]')
if [ "$NODE_MAJOR" -ge 20 ]; then
	NODE_PKGS="nodemailer@10.6.1 imapflow@2.10.2"
else
	NODE_PKGS="nodemailer@7.0.9 imapflow@1.7.8"
fi
# The OAuth2 part's authorisation server (oauth2-idp.js builds on it):
# 7.2.1 is the last release that runs on Node.js 18 (and 20, 22); later
# ones need 20.19 or 22.12.
NODE_PKGS="$NODE_PKGS oauth2-mock-server@7.2.1"
NEW_BUILD=""
[ -d "$ROOT/build" ] || NEW_BUILD=1
mkdir -p "$NODE_DIR"
# shellcheck disable=SC2086
(cd "$NODE_DIR" && npm install --no-audit --no-fund --no-save \
	--no-package-lock --prefix "$NODE_DIR" $NODE_PKGS)
# run with sudo from a checkout: build/ stays the user's
if [ -n "$NEW_BUILD" ] && [ -n "${SUDO_UID:-}" ]; then
	chown -R "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" "$ROOT/build"
fi
echo "tests/interop/setup.sh: done"
