#!/bin/sh
# Install the Debian packages scagent needs (run as root on Debian 12).
set -e
cd "$(dirname "$0")"
pkgs=$(grep -v '^#' deps.txt | tr '\n' ' ')
missing=$(dpkg-query -W -f='${Package} ${Status}\n' $pkgs 2>/dev/null | grep -v 'install ok installed' | cut -d' ' -f1 || true)
# dpkg-query says nothing for packages it has never heard of: count those too.
for p in $pkgs; do
	dpkg-query -W "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$(echo $missing)" ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
fi
# Services the packages start on their own would fight the tests for ports.
for s in nginx apache2 pcscd tpm2-abrmd; do
	if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$s" 2>/dev/null; then
		systemctl stop "$s" 2>/dev/null || true
	fi
done
