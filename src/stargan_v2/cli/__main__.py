"""``python -m stargan_v2.cli ...`` runs the ``stargan-v2`` command."""

import sys

from .command import main

if __name__ == "__main__":
    sys.exit(main())
