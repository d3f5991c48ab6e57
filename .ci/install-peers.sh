#!/usr/bin/env bash
# Install the real mail programs the integration tests talk to: Postfix (an
# upstream for PureProxy, and a sending MTA relaying to our server, each run
# by the tests from its own configuration directory; libsasl2-modules gives
# its SMTP client the PLAIN and LOGIN mechanisms), swaks, msmtp and curl (SMTP
# clients), openssl (s_client).
#
# Idempotent: when every package is installed already it changes nothing.
# Runs as root (CI); as another user it uses sudo.
set -euo pipefail

packages=(postfix libsasl2-modules swaks msmtp curl openssl)

missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-peers: already installed: ${packages[*]}"
    exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo)
fi

# Postfix would ask how to configure the system's mail: not at all. The
# tests write their own main.cf; no system-wide instance is set up.
echo "postfix postfix/main_mailer_type select No configuration" | "${sudo[@]}" debconf-set-selections
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
