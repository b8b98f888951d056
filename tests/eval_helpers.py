"""Image folders shared by the evaluation tests (test_evaluate, test_fid_folders)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

#: Images per domain of the train and val folders.
TRAIN = {"apple": 3, "pear": 4}
VAL = {"apple": 2, "pear": 3}


def write_domain_folder(root: Path, counts: dict[str, int], seed: int) -> Path:
    """``counts`` images per domain folder under ``root`` (40x36 px, the domains differ in brightness)."""
    rng = np.random.default_rng(seed)
    for d, (name, n) in enumerate(counts.items()):
        (root / name).mkdir(parents=True)
        for i in range(n):
            # Sizes other than the model's, so reading resizes; the domains differ in brightness.
            pixels = rng.integers(0, 128, (40, 36, 3)) + 100 * d
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"img{i}.png")
    return root
