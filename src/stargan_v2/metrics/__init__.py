"""Evaluation of translations.

``evaluate`` runs the paper's protocol (every ordered pair of domains, 10 outputs per source, latent and
reference modes) with FID (``fid``: Inception v3 features, Fréchet distance) and LPIPS (``lpips``: AlexNet
with learned linear heads). On the built-in procedural dataset, ``quality`` runs the same protocol and scores
the outputs with ``oracle``, a small network trained on the dataset's ground truth: domain accuracy, kept
pose, copied style, diversity and the Fréchet distance of oracle features.
"""

from .fid import frechet_distance
from .oracle import ORACLE_VERSION, Oracle, OraclePrediction, load_or_train_oracle, train_oracle
from .quality import evaluate_quality, quality_report

__all__ = [
    "ORACLE_VERSION",
    "Oracle",
    "OraclePrediction",
    "evaluate_quality",
    "frechet_distance",
    "load_or_train_oracle",
    "quality_report",
    "train_oracle",
]
