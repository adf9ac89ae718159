#!/bin/sh
# Install the carbonwatch gateway agent on a plant gateway (Debian/Ubuntu, Python >= 3.11):
# a virtual environment with carbonwatch[edge] (no numba, FastAPI or psycopg), a system user,
# a state directory for the outbox, the configuration directory and the systemd unit.
#
#   sudo sh deploy/edge/install.sh                       # from PyPI
#   sudo PACKAGE=./carbonwatch-0.1.0-py3-none-any.whl sh deploy/edge/install.sh
#   then: put the site file at $CONFDIR/site.yaml, systemctl enable --now carbonwatch-edge
#
# Settings (environment): PREFIX (/opt/carbonwatch), CONFDIR (/etc/carbonwatch), STATEDIR
# (/var/lib/carbonwatch), UNITDIR (/etc/systemd/system), SERVICE_USER (carbonwatch), PYTHON
# (python3), PACKAGE ('carbonwatch[edge]': a name, a wheel or a source tree with [edge]), and
# DESTDIR to stage everything under another root (for packaging). SYSTEM=0 (the default without
# root or with DESTDIR) creates no user, changes no owner and does not call systemctl.
set -eu

PREFIX=${PREFIX:-/opt/carbonwatch}
CONFDIR=${CONFDIR:-/etc/carbonwatch}
STATEDIR=${STATEDIR:-/var/lib/carbonwatch}
UNITDIR=${UNITDIR:-/etc/systemd/system}
SERVICE_USER=${SERVICE_USER:-carbonwatch}
PYTHON=${PYTHON:-python3}
PACKAGE=${PACKAGE:-carbonwatch[edge]}
DESTDIR=${DESTDIR:-}
HERE=$(cd "$(dirname "$0")" && pwd)

say() { printf 'carbonwatch-edge install: %s\n' "$*"; }
fail() { say "$*" >&2; exit 1; }

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || fail "$PYTHON is older than 3.11"
system=${SYSTEM:-auto}
if [ "$system" = auto ]; then
  system=0
  if [ -z "$DESTDIR" ] && [ "$(id -u)" -eq 0 ]; then system=1; fi
fi

say "virtual environment in $DESTDIR$PREFIX/venv"
mkdir -p "$DESTDIR$PREFIX"
"$PYTHON" -m venv "$DESTDIR$PREFIX/venv" || fail "cannot create a venv (Debian: apt-get install python3-venv)"
"$DESTDIR$PREFIX/venv/bin/python" -m pip install --quiet --disable-pip-version-check ${PIP_OPTIONS:-} "$PACKAGE"
"$DESTDIR$PREFIX/venv/bin/carbonwatch" --version >/dev/null || fail "carbonwatch does not run after the install"

if [ "$system" -eq 1 ] && ! id "$SERVICE_USER" >/dev/null 2>&1; then
  say "system user $SERVICE_USER"
  useradd --system --home-dir "$STATEDIR" --no-create-home --shell /usr/sbin/nologin "$SERVICE_USER"
fi
mkdir -p "$DESTDIR$CONFDIR" "$DESTDIR$STATEDIR" "$DESTDIR$UNITDIR"
chmod 0750 "$DESTDIR$STATEDIR"
if [ "$system" -eq 1 ]; then
  chown "$SERVICE_USER:$SERVICE_USER" "$STATEDIR"
  chgrp "$SERVICE_USER" "$CONFDIR" && chmod 0750 "$CONFDIR"  # the site file may name credentials
fi

say "unit $DESTDIR$UNITDIR/carbonwatch-edge.service"
sed -e "s|@PREFIX@|$PREFIX|g" -e "s|@CONFDIR@|$CONFDIR|g" -e "s|@STATEDIR@|$STATEDIR|g" \
    -e "s|@USER@|$SERVICE_USER|g" "$HERE/carbonwatch-edge.service" > "$DESTDIR$UNITDIR/carbonwatch-edge.service"
chmod 0644 "$DESTDIR$UNITDIR/carbonwatch-edge.service"

if [ "$system" -eq 1 ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  say "installed; put the site file at $CONFDIR/site.yaml, then: systemctl enable --now carbonwatch-edge"
else
  say "installed (no systemctl here); the unit is at $DESTDIR$UNITDIR/carbonwatch-edge.service"
fi
