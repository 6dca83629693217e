"""Build hook: the wheel carries the default model bundle, the taxonomy and the override
rules as package data.

They live once in git (``models/policy-tagger/``, ``labels/taxonomy.yaml``,
``labels/overrides.yaml``). ``build_py``
copies them into the package's build folder as ``tagger/_data/...``, where
``tagger.locations`` finds them in an installed package; ``get_source_files`` puts them in
the sdist, so a wheel built from the sdist has them too. An editable install skips the
copy: it runs from the checkout and uses the checkout's files. Everything else about the
package is declared in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py as _build_py
from setuptools.errors import FileError

# Source (relative to the project root) -> destination inside the build folder.
PACKAGED = {
    "models/policy-tagger": "tagger/_data/models/policy-tagger",
    "labels/taxonomy.yaml": "tagger/_data/labels/taxonomy.yaml",
    # The reviewed override rules (tagger/model/overrides.py): part of what an installed tagger
    # outputs, so they travel with the bundle; TAGGER_OVERRIDES_FILE replaces them.
    "labels/overrides.yaml": "tagger/_data/labels/overrides.yaml",
}
DATA_ROOT = "tagger/_data"
REQUIRED = ("models/policy-tagger/manifest.json", "models/policy-tagger/model.onnx", "models/policy-tagger/userdict.txt", "labels/taxonomy.yaml")


def packaged_files() -> list[tuple[str, str]]:
    """(source, destination) pairs, relative, '/'-separated; fails if a required file is missing."""
    missing = [p for p in REQUIRED if not Path(p).is_file()]
    if missing:
        raise FileError(f"cannot package the default model and taxonomy: {', '.join(missing)} missing (build from a checkout or the sdist)")
    pairs = []
    for src, dst in PACKAGED.items():
        path = Path(src)
        if path.is_file():
            pairs.append((src, dst))
            continue
        for f in sorted(path.rglob("*")):
            rel = f.relative_to(path)
            if f.is_file() and not any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
                pairs.append((f"{src}/{rel.as_posix()}", f"{dst}/{rel.as_posix()}"))
    return pairs


class build_py(_build_py):
    def _copy_packaged(self) -> bool:
        return not getattr(self, "editable_mode", False)

    def run(self) -> None:
        super().run()
        if not self._copy_packaged():
            return
        data_root = Path(self.build_lib) / DATA_ROOT
        if data_root.exists():
            shutil.rmtree(data_root)  # no stale files from an earlier build
        for src, dst in packaged_files():
            target = Path(self.build_lib) / dst
            target.parent.mkdir(parents=True, exist_ok=True)
            self.copy_file(src, str(target), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        out = list(super().get_outputs(include_bytecode))
        if self._copy_packaged():
            out += [str(Path(self.build_lib) / dst) for _, dst in packaged_files()]
        return out

    def get_source_files(self) -> list[str]:
        return list(super().get_source_files()) + [src for src, _ in packaged_files()]


# The sparse path's compiled loops (tagger/model/_kernels.c: linear gather-and-sum and QuickScorer
# trees, ~3.5x the numpy code's speed). Optional: where no C compiler is found the install
# still succeeds and tagger/model/sparse.py runs the same computation in numpy.
KERNELS = Extension("tagger.model._kernels", ["tagger/model/_kernels.c"], optional=True, extra_compile_args=["-O3"])

setup(cmdclass={"build_py": build_py}, ext_modules=[KERNELS])
