"""``python -m stargan_v2 ...`` (and ``torchrun ... -m stargan_v2 train ...``) runs the ``stargan-v2`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
