"""``python -m grassmann_cls`` runs the ``grassmann-cls`` command line."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
