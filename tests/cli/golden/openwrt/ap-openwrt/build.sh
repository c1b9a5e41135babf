#!/bin/sh
# The OpenWrt image of meshstead node ap: run with the directory of an
# unpacked OpenWrt ImageBuilder for target ath79/generic. The image holds
# the node's private keys (files/): keep it like a key, never publish it.
set -e
[ -f "${1:-}/Makefile" ] || { echo "usage: $0 IMAGEBUILDER_DIR" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
make -C "$1" image PROFILE=tplink_archer-c7-v2 'PACKAGES=kmod-batman-adv batctl-default -wpad-basic-mbedtls -wpad-basic-wolfssl wpad-mbedtls tinc ip-tiny yggdrasil' FILES="$here/files"
