"""Where the default model bundle, the taxonomy and the writable ``var/`` folder are.

One explicit rule, decided once from where the ``tagger`` package itself lies (never
from the working directory):

* **checkout** — the folder above the package holds ``pyproject.toml`` and
  ``models/policy-tagger/manifest.json`` (a git clone, with or without
  ``pip install -e .``): the checkout's ``models/policy-tagger/``, ``labels/`` and
  ``var/`` are used, as they always were.
* **installed** — anything else (``pip install .`` or a wheel, the package lies in
  ``site-packages``): the copies that the build put inside the package,
  ``tagger/_data/models/policy-tagger/`` and ``tagger/_data/labels/taxonomy.yaml``, and
  ``var/`` is the user data folder ``platformdirs.user_data_dir("policy-clause-tagger")``
  (``~/.local/share/policy-clause-tagger`` on Linux, honouring ``XDG_DATA_HOME``).

``TAGGER_MODEL_DIR``, ``TAGGER_LABELS_DIR`` and ``TAGGER_VAR_DIR`` override each folder
in both layouts (see :mod:`tagger.config`). The packaged copies are not in git: the
build (``setup.py``) copies ``models/policy-tagger/`` and ``labels/taxonomy.yaml`` into
the package's build folder, so a wheel carries them and the repository holds them once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "APP_NAME",
    "BUNDLE_NAME",
    "DATA_DIRNAME",
    "PACKAGE_DIR",
    "Locations",
    "locate",
    "default_locations",
    "checkout_root",
    "packaged_data_dir",
    "user_data_dir",
]

APP_NAME = "policy-clause-tagger"  # the distribution name; names the user data folder
BUNDLE_NAME = "policy-tagger"
DATA_DIRNAME = "_data"  # tagger/_data/: filled by the build, absent from the source tree
PACKAGE_DIR = Path(__file__).resolve().parent

CHECKOUT = "checkout"
INSTALLED = "installed"


@dataclass(frozen=True)
class Locations:
    """The default folders; environment variables are applied on top by ``Settings``."""

    layout: str  # "checkout" or "installed"
    model_dir: Path
    labels_dir: Path
    var_dir: Path

    @property
    def taxonomy_file(self) -> Path:
        return self.labels_dir / "taxonomy.yaml"


def checkout_root(package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The project checkout the package runs from, or None for an installed package."""
    root = Path(package_dir).parent
    if (root / "pyproject.toml").is_file() and (root / "models" / BUNDLE_NAME / "manifest.json").is_file():
        return root
    return None


def packaged_data_dir(package_dir: Path = PACKAGE_DIR) -> Path:
    """``tagger/_data`` of an installed package (the build's copies of models and taxonomy)."""
    if Path(package_dir) == PACKAGE_DIR:
        # importlib.resources names the folder the import system actually uses; a wheel
        # is always unpacked, so this is a real folder (zip imports are not supported).
        from importlib.resources import files

        res = files(__package__)
        if isinstance(res, Path):
            return res / DATA_DIRNAME
    return Path(package_dir) / DATA_DIRNAME


def user_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def locate(package_dir: Path = PACKAGE_DIR) -> Locations:
    """Apply the rule to a package folder (a parameter so that tests can fake layouts)."""
    root = checkout_root(package_dir)
    if root is not None:
        return Locations(CHECKOUT, root / "models" / BUNDLE_NAME, root / "labels", root / "var")
    data = packaged_data_dir(package_dir)
    return Locations(INSTALLED, data / "models" / BUNDLE_NAME, data / "labels", user_data_dir())


def default_locations() -> Locations:
    """The rule for this package (not cached: ``Settings`` is, and tests change HOME)."""
    return locate(PACKAGE_DIR)
