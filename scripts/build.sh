#!/bin/sh
# Configure and build in the source tree with warnings as errors.
set -e
cd "$(dirname "$0")/.."
[ -x configure ] || ./autogen.sh >/dev/null 2>&1
[ -f Makefile ] || ./configure --enable-werror --sysconfdir=/etc >/dev/null
make -j"$(nproc)" >/dev/null
