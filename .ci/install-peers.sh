#!/usr/bin/env bash
# Install the real mail programs the integration tests talk to: Postfix (an
# upstream for PureProxy, and a sending MTA relaying to our server, each run
# by the tests from its own configuration directory; libsasl2-modules gives
# its SMTP client the PLAIN and LOGIN mechanisms), swaks, msmtp and curl (SMTP
# clients), openssl (s_client), opendkim-tools (a DKIM signer besides
# dkimpy), chromium and chromium-driver (the HTML preview, opened headless).
#
# Exim is the sending MTA that speaks BDAT (Postfix's SMTP client has none).
# Debian's exim4 packages conflict with postfix (both are the system's
# mail-transport-agent), so it is not installed: exim4-daemon-light is
# downloaded and unpacked into $EXIM_DIR, its libraries installed, and the
# Debian-exim user its binary looks up at start created. The tests run that
# binary with their own configuration (-C); nothing else uses it.
#
# Idempotent: when every package is installed, the binary unpacked and the
# user there already, it changes nothing.
# Runs as root (CI); as another user it uses sudo.
set -euo pipefail

packages=(postfix libsasl2-modules swaks msmtp curl openssl opendkim-tools chromium chromium-driver)
EXIM_DIR=/opt/exim4-peer
exim_binary="$EXIM_DIR/usr/sbin/exim4"
exim_user=Debian-exim

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo)
fi

# The packages not installed yet, of those given.
not_installed() {
    local package
    for package in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
            echo "$package"
        fi
    done
}

apt_updated=
apt_update() {
    if [ -z "$apt_updated" ]; then
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
        apt_updated=1
    fi
}

mapfile -t missing < <(not_installed "${packages[@]}")
if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-peers: already installed: ${packages[*]}"
else
    # Postfix would ask how to configure the system's mail: not at all. The
    # tests write their own main.cf; no system-wide instance is set up.
    echo "postfix postfix/main_mailer_type select No configuration" | "${sudo[@]}" debconf-set-selections
    apt_update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

if [ -x "$exim_binary" ]; then
    echo "install-peers: already unpacked: $exim_binary"
else
    apt_update
    download=$(mktemp -d)
    trap 'rm -rf "$download"' EXIT
    # No sandbox user: apt's _apt could not write to this private directory.
    (cd "$download" && apt-get download -q -o APT::Sandbox::User=root exim4-daemon-light)
    deb=$(echo "$download"/exim4-daemon-light_*.deb)
    # Its libraries (first of each alternative, versions dropped), not
    # exim4-base or debconf, which only the installed package needs.
    mapfile -t libraries < <(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed -e 's/|.*//' -e 's/(.*)//' -e 's/ //g' |
        grep -v -x -e exim4-base -e debconf)
    mapfile -t missing < <(not_installed "${libraries[@]}")
    if [ "${#missing[@]}" -gt 0 ]; then
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    fi
    # Unpacked beside, then moved: an interrupted run leaves no half a tree.
    "${sudo[@]}" rm -rf "$EXIM_DIR.new"
    "${sudo[@]}" dpkg-deb -x "$deb" "$EXIM_DIR.new"
    "${sudo[@]}" rm -rf "$EXIM_DIR"
    "${sudo[@]}" mv "$EXIM_DIR.new" "$EXIM_DIR"
    echo "install-peers: unpacked $(basename "$deb") into $EXIM_DIR"
fi

if ! getent passwd "$exim_user" >/dev/null; then
    "${sudo[@]}" useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$exim_user"
    echo "install-peers: created the user $exim_user"
fi
