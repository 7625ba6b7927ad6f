#!/usr/bin/env bash
# Install the Fashion-MNIST IDX files for `make demo` where that is possible.
#
# Uses the Debian package `dataset-fashion-mnist` (files land in
# /usr/share/datasets/fashion-mnist). Needs root (or passwordless sudo) and apt.
# Never fails: without the package the demo uses scikit-learn's bundled digits.
# GRASSMANN_CLS_NO_INSTALL=1 only reports (used by the tests).
set -u

DIR=/usr/share/datasets/fashion-mnist
PACKAGE=dataset-fashion-mnist
FALLBACK="the demo will use scikit-learn's bundled digits instead"

if [ -n "${GRASSMANN_CLS_DATA:-}" ]; then
    echo "data: GRASSMANN_CLS_DATA=${GRASSMANN_CLS_DATA} is set; the demo looks for Fashion-MNIST there first"
fi
if [ -f "$DIR/train-images-idx3-ubyte.gz" ] || [ -f "$DIR/train-images-idx3-ubyte" ]; then
    echo "data: Fashion-MNIST found in $DIR"
    exit 0
fi
if [ -n "${GRASSMANN_CLS_NO_INSTALL:-}" ]; then
    echo "data: GRASSMANN_CLS_NO_INSTALL is set, not installing $PACKAGE; $FALLBACK"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "data: apt-get not available, cannot install $PACKAGE; $FALLBACK"
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "data: not root and no passwordless sudo, cannot install $PACKAGE"
    echo "data: run 'sudo apt-get install $PACKAGE' yourself to use Fashion-MNIST; $FALLBACK"
    exit 0
fi
echo "data: installing the Debian package $PACKAGE (Fashion-MNIST, about 30 MB) with apt-get"
if $SUDO apt-get install -y -q "$PACKAGE" >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q "$PACKAGE" >/dev/null 2>&1; }; then
    echo "data: Fashion-MNIST installed in $DIR"
else
    echo "data: apt-get could not install $PACKAGE (offline, or not in your distribution); $FALLBACK"
fi
exit 0
