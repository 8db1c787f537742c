#!/usr/bin/env bash
# One-time setup for the interop suite (tests/interop), Debian or Ubuntu, as
# root or with sudo: installs the servers and clients from the distribution
# without letting the packages start their own Dovecot or Postfix, and
# creates the system user that owns the test mailboxes. .ci/run calls it;
# afterwards `make interop` runs the suite. Nothing else in /etc is changed:
# the suite brings its own configurations and runs them from a temporary
# directory.
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
	swaks fetchmail neomutt curl openssl python3 ca-certificates

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
echo "tests/interop/setup.sh: done"
