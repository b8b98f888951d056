"""Domain names: what a model's labels ``0..K-1`` are called, and resolving a name (or label) to its label.

A checkpoint may store its domains' names (our files' ``domains`` metadata); otherwise the released models'
names are used for the released architectures, and ``domain0, domain1, ...`` for any other. References for
the style encoder are labelled by the folder they lie in (:func:`find_references`, :meth:`DomainNames.labels_of`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from .checkpoint import EMA_FORMAT, TRAINING_FORMAT, checkpoint_kind, read_domains
from .config import ModelConfig, preset
from .images import PathLike, find_images, list_images, no_images_error

#: A domain, by name or by label.
Domain = str | int

#: The domain names of the released models, used when a checkpoint has the released architecture and no names.
RELEASED_DOMAINS: dict[str, tuple[str, ...]] = {"afhq": ("cat", "dog", "wild"), "celeba_hq": ("female", "male")}


def default_domains(config: ModelConfig) -> tuple[str, ...]:
    """Names for a model whose checkpoint stores none: the released models' (``cat, dog, wild`` for the AFHQ
    architecture, ``female, male`` for CelebA-HQ's), otherwise ``domain0, domain1, ...``."""
    for name, domains in RELEASED_DOMAINS.items():
        if config == preset(name).model:
            return domains
    return tuple(f"domain{k}" for k in range(config.num_domains))


def checkpoint_domains(path: PathLike, config: ModelConfig, domains: Sequence[str] | None = None) -> tuple[str, ...]:
    """The domain names of a checkpoint: ``domains`` if given, else the names stored in the file (the ``domains``
    metadata of our files), else ``default_domains(config)``."""
    if domains is not None:
        return tuple(domains)
    if checkpoint_kind(path) in (EMA_FORMAT, TRAINING_FORMAT):
        stored = read_domains(path)
        if stored is not None:
            return stored
    return default_domains(config)


class DomainNames:
    """The names of a model's ``num_domains`` domains, in label order, and the lookups by name."""

    def __init__(self, names: Sequence[str], num_domains: int) -> None:
        names = tuple(names)
        if len(names) != num_domains or len(set(names)) != len(names):
            raise ValueError(
                f"domains must be {num_domains} distinct names (the model has {num_domains} domains), got {list(names)}"
            )
        self.names: tuple[str, ...] = names

    def __len__(self) -> int:
        return len(self.names)

    def index(self, domain: Domain) -> int:
        """The label of a domain given by name (exact, else case-insensitive) or by label (``1`` or ``"1"``);
        a ValueError lists the valid names otherwise."""
        if isinstance(domain, bool) or not isinstance(domain, (int, str)):
            raise TypeError(f"a domain is a name or an index, got {type(domain).__name__}")
        if isinstance(domain, int):
            if not 0 <= domain < len(self):
                raise ValueError(f"domain index {domain} is out of range: this model has {len(self)} domains")
            return domain
        if domain in self.names:
            return self.names.index(domain)
        folded = [d.lower() for d in self.names]
        if folded.count(domain.lower()) == 1:
            return folded.index(domain.lower())
        if domain.isdigit():  # a label typed on the command line
            return self.index(int(domain))
        raise ValueError(f"unknown domain '{domain}': this model's domains are {', '.join(self.names)}")

    def labels_of(self, paths: Sequence[Path | None], domain: Domain | Sequence[Domain] | None = None) -> Tensor:
        """The labels of references: ``domain`` (one for all, or one per reference), else the name of the folder
        each reference file lies in (``refs/dog/rex.jpg`` is a dog); any reference of a one-domain model."""
        if domain is not None:
            given = [domain] * len(paths) if isinstance(domain, (str, int)) else list(domain)
            if len(given) != len(paths):
                raise ValueError(f"got {len(given)} reference domains for {len(paths)} references")
            return torch.tensor([self.index(d) for d in given], dtype=torch.long)
        return torch.tensor([self._folder_label(i, path) for i, path in enumerate(paths)], dtype=torch.long)

    def _folder_label(self, i: int, path: Path | None) -> int:
        folder = path.parent.name if path is not None else None
        if folder is not None and folder in self.names:
            return self.names.index(folder)
        if len(self) == 1:
            return 0
        where = f"reference {path}" if path is not None else f"reference {i}"
        raise ValueError(
            f"{where}: the style encoder needs the reference's domain; pass domain=... (one of "
            f"{', '.join(self.names)}) or keep references in folders named after their domains"
        )


def _subfolder_labels(path: Path, domains: Sequence[str]) -> dict[str, int]:
    """The label of each domain sub-folder of ``path``: by name if they are the model's domains, else by sorted
    position as in training."""
    index = {name: k for k, name in enumerate(domains)}
    subdirs = sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not subdirs:
        raise ValueError(
            f"{path} has no domain sub-folders: pass the references' domain (--domain NAME / domain=...) "
            f"or sort them into sub-folders named {', '.join(domains)}"
        )
    if all(d in index for d in subdirs):
        return {d: index[d] for d in subdirs}
    if len(subdirs) == len(domains):
        return {d: k for k, d in enumerate(subdirs)}  # training's rule: sorted folder names give the labels
    raise ValueError(
        f"the sub-folders of {path} ({', '.join(subdirs)}) are neither the model's domains "
        f"({', '.join(domains)}) nor as many: rename them, or pass --domain NAME for a single domain"
    )


def find_references(path: PathLike, domains: Sequence[str], domain: str | None = None) -> tuple[list[Path], list[int]]:
    """Reference images and their domain labels from a file or folder, sorted by domain, then by name.

    A folder with one sub-folder per domain (like training data) labels each image by its sub-folder: by name
    when the sub-folders are named after the model's domains, else by sorted position as in training. With
    ``domain`` given, only that domain's sub-folder is used if there is one, else every image under ``path``
    is taken to be of that domain. A single file needs ``domain`` unless its folder is named after a domain.
    """
    path = Path(path)
    index = {name: k for k, name in enumerate(domains)}
    if domain is not None:
        if domain not in index:
            raise ValueError(
                f"unknown domain '{domain}' for references in {path}: the domains are {', '.join(domains)}"
            )
        if path.is_dir() and (path / domain).is_dir():
            path = path / domain
        found = list_images(path)
        return found, [index[domain]] * len(found)
    if path.is_dir():
        labels = _subfolder_labels(path, domains)
        files: list[Path] = []
        ks: list[int] = []
        for d in sorted(labels, key=lambda d: labels[d]):
            found = find_images(path / d)
            files += found
            ks += [labels[d]] * len(found)
        if not files:
            raise no_images_error(path)
        return files, ks
    files = list_images(path)  # a single file
    if path.parent.name not in index:
        raise ValueError(
            f"reference {path}: the style encoder needs the reference's domain; pass --domain NAME (domain=...), "
            f"one of {', '.join(domains)}, or keep references in folders named after their domains"
        )
    return files, [index[path.parent.name]]
