"""Evaluation of translations.

``oracle`` is a small network trained on the ground truth of the built-in procedural dataset; ``quality``
runs the paper's protocol (every ordered pair of domains, 10 outputs per source, latent and reference modes)
and scores the outputs with the oracle: domain accuracy, kept pose, copied style, diversity and the Fréchet
distance of oracle features.
"""

from .oracle import ORACLE_VERSION, Oracle, OraclePrediction, load_or_train_oracle, train_oracle
from .quality import evaluate_quality, frechet_distance, quality_report

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
