#!/usr/bin/env bash
# Make a local copy of MathJax 2 available to the docs build (never a CDN).
#
# Order of preference:
#   1. Debian's libjs-mathjax, already installed (/usr/share/javascript/mathjax);
#   2. Debian's libjs-mathjax, installed now with apt-get (needs root);
#   3. the copy shipped inside the PyPI package jupyter-server-mathjax,
#      installed without its dependencies into the project's virtualenv.
# docs/conf.py looks in the same places (docs/_ext/local_mathjax.py) and copies
# the files it needs into the built site. If all three fail the docs still
# build; formulas then show as TeX source.
set -uo pipefail

DEBIAN_DIR=/usr/share/javascript/mathjax
PIP="${PIP:-.venv/bin/pip}"

if [ -f "$DEBIAN_DIR/MathJax.js" ]; then
    exit 0
fi

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing libjs-mathjax with apt-get" >&2
    if apt-get update -qq >/dev/null \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libjs-mathjax >/dev/null; then
        [ -f "$DEBIAN_DIR/MathJax.js" ] && exit 0
    fi
    echo "apt-get could not install libjs-mathjax; trying PyPI" >&2
fi

if "$PIP" install --quiet --no-deps "jupyter-server-mathjax>=0.2.6"; then
    exit 0
fi

echo "warning: no local MathJax could be installed; formulas will show as TeX source" >&2
exit 0
