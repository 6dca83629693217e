"""Where the runtime finds its data: the location rule (tagger/locations.py) in-process,
the build hook (setup.py) on a copy of the source, and — slow — a real wheel installed
into a clean virtualenv and run from a folder outside the checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tagger import locations
from tagger.config import Settings
from tagger.errors import InvalidInput
from tagger.locations import APP_NAME, Locations, locate

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "models" / "policy-tagger"
PACKAGED = [  # what an installed package must hold, relative to its tagger/ folder
    "_data/models/policy-tagger/manifest.json",
    "_data/models/policy-tagger/model.onnx",
    "_data/models/policy-tagger/userdict.txt",
    "_data/models/policy-tagger/README.md",
    "_data/labels/taxonomy.yaml",
    "_data/labels/overrides.yaml",
    "resources/userdict.txt",
    "static/index.html",
]
OVERRIDES = ("TAGGER_MODEL_DIR", "TAGGER_LABELS_DIR", "TAGGER_VAR_DIR", "TAGGER_MODEL_URI", "TAGGER_DATABASE_URL")


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in OVERRIDES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "home" / "data"))
    return tmp_path / "home" / "data" / APP_NAME


def _fake_checkout(root: Path) -> Path:
    (root / "tagger").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n", encoding="utf-8")
    (root / "models" / "policy-tagger").mkdir(parents=True)
    (root / "models" / "policy-tagger" / "manifest.json").write_text("{}", encoding="utf-8")
    return root / "tagger"


# --- the rule, in-process ---------------------------------------------------------------


def test_checkout_layout_uses_the_checkout_folders(tmp_path, clean_env):
    pkg = _fake_checkout(tmp_path / "clone")
    loc = locate(pkg)
    root = tmp_path / "clone"
    assert loc == Locations("checkout", root / "models" / "policy-tagger", root / "labels", root / "var")
    assert loc.taxonomy_file == root / "labels" / "taxonomy.yaml"


def test_installed_layout_uses_packaged_data_and_the_user_data_folder(tmp_path, clean_env):
    pkg = tmp_path / "venv" / "lib" / "site-packages" / "tagger"
    pkg.mkdir(parents=True)
    loc = locate(pkg)
    assert loc.layout == "installed"
    assert loc.model_dir == pkg / "_data" / "models" / "policy-tagger"
    assert loc.labels_dir == pkg / "_data" / "labels"
    assert loc.taxonomy_file == pkg / "_data" / "labels" / "taxonomy.yaml"
    assert loc.var_dir == clean_env  # platformdirs: $XDG_DATA_HOME/policy-clause-tagger
    assert "site-packages" not in str(loc.var_dir)


@pytest.mark.parametrize("missing", ["pyproject.toml", "models/policy-tagger/manifest.json"])
def test_a_half_checkout_is_not_a_checkout(tmp_path, clean_env, missing):
    """Both markers are needed: a bare pyproject.toml above the package (another project
    vendoring it) or a models/ folder alone does not make a checkout."""
    pkg = _fake_checkout(tmp_path / "clone")
    (tmp_path / "clone" / missing).unlink()
    assert locate(pkg).layout == "installed"


def test_this_checkout_is_a_checkout_and_settings_follow_it(clean_env):
    loc = locations.default_locations()
    assert loc.layout == "checkout"
    assert loc.model_dir == BUNDLE and loc.labels_dir == ROOT / "labels" and loc.var_dir == ROOT / "var"
    st = Settings()
    assert (st.model_dir, st.labels_dir, st.var_dir) == (loc.model_dir, loc.labels_dir, loc.var_dir)
    assert st.taxonomy_file.is_file() and (st.model_dir / "manifest.json").is_file()
    assert st.db_url == f"sqlite:///{ROOT / 'var' / 'tagger.db'}"


def _installed(monkeypatch, tmp_path) -> Locations:
    loc = locate(tmp_path / "site-packages" / "tagger")
    monkeypatch.setattr("tagger.config.default_locations", lambda: loc)
    return loc


def test_settings_in_an_installed_layout(monkeypatch, tmp_path, clean_env):
    loc = _installed(monkeypatch, tmp_path)
    st = Settings()
    assert st.model_dir == loc.model_dir
    assert st.taxonomy_file == loc.labels_dir / "taxonomy.yaml"
    assert st.var_dir == clean_env
    assert st.db_url == f"sqlite:///{clean_env / 'tagger.db'}"
    assert st.tracking_uri == f"sqlite:///{clean_env / 'mlflow.db'}"


@pytest.mark.parametrize("layout", ["checkout", "installed"])
def test_environment_variables_override_both_layouts(monkeypatch, tmp_path, clean_env, layout):
    if layout == "installed":
        _installed(monkeypatch, tmp_path)
    monkeypatch.setenv("TAGGER_MODEL_DIR", str(tmp_path / "m"))
    monkeypatch.setenv("TAGGER_LABELS_DIR", str(tmp_path / "l"))
    monkeypatch.setenv("TAGGER_VAR_DIR", str(tmp_path / "v"))
    st = Settings()
    assert (st.model_dir, st.labels_dir, st.var_dir) == (tmp_path / "m", tmp_path / "l", tmp_path / "v")
    assert st.taxonomy_file == tmp_path / "l" / "taxonomy.yaml"
    assert st.db_url == f"sqlite:///{tmp_path / 'v' / 'tagger.db'}"


def test_a_missing_taxonomy_is_a_one_line_error(monkeypatch, tmp_path):
    from tagger.taxonomy import load_taxonomy

    with pytest.raises(InvalidInput, match="no taxonomy file here; set TAGGER_LABELS_DIR"):
        load_taxonomy(tmp_path / "nowhere" / "taxonomy.yaml")


# --- the build hook ----------------------------------------------------------------------


def _copy_source(dst: Path) -> Path:
    """The files a fresh clone has (tracked + new, not ignored), without build/ or venvs."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        files = [f for f in out.decode().split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        files = [str(p.relative_to(ROOT)) for d in ("tagger", "training", "models", "labels") for p in (ROOT / d).rglob("*")]
        files += ["pyproject.toml", "setup.py", "README.md"]
    for rel in files:
        src = ROOT / rel
        if src.is_file() and "__pycache__" not in src.parts:
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    return dst


def test_build_py_puts_the_bundle_and_taxonomy_where_the_rule_looks(tmp_path, clean_env):
    pytest.importorskip("setuptools")  # the slow wheel test below builds in isolation instead
    src = _copy_source(tmp_path / "src")
    lib = tmp_path / "lib"
    res = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(lib)], cwd=src, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    for rel in PACKAGED:
        assert (lib / "tagger" / rel).is_file(), rel
    assert (lib / "tagger" / "_data" / "models" / "policy-tagger" / "model.onnx").read_bytes() == (BUNDLE / "model.onnx").read_bytes()
    loc = locate(lib / "tagger")  # no pyproject.toml above build/lib/tagger: installed layout
    assert loc.layout == "installed"
    assert (loc.model_dir / "manifest.json").is_file() and loc.taxonomy_file.is_file()
    assert not (src / "tagger" / "_data").exists()  # the source tree holds the files once


# --- slow: a real wheel in a clean virtualenv ----------------------------------------------


def _bin(venv: Path, name: str) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin") / name


@pytest.mark.slow
def test_wheel_installed_in_a_clean_venv_finds_its_data(tmp_path):
    src = _copy_source(tmp_path / "src")
    dist = tmp_path / "dist"
    # An isolated build (setuptools and wheel from the index or pip's cache), as `pip install .` does.
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)], capture_output=True, text=True, timeout=900
    )
    assert res.returncode == 0, res.stderr[-3000:]
    (wheel,) = dist.glob("policy_clause_tagger-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for rel in PACKAGED:
        assert f"tagger/{rel}" in names, rel
    assert not [n for n in names if n.startswith(("models/", "labels/", "var/", "tests/"))]

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=300)
    cfg = (venv / "pyvenv.cfg").read_text(encoding="utf-8")
    assert "include-system-site-packages = false" in cfg
    # Dependencies from the index; pip's own cache (the caller's HOME) keeps this quick.
    res = subprocess.run([str(_bin(venv, "python")), "-m", "pip", "install", "-q", str(wheel)], capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stderr[-3000:]

    home = tmp_path / "home"
    data_home = home / ".local" / "share"
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAGGER_") and k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(HOME=str(home), XDG_DATA_HOME=str(data_home), PATH=f"{_bin(venv, '')}{os.pathsep}{env.get('PATH', '')}")

    def run(*args: str):
        return subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=600)

    # The installed package, not the checkout: where it lies and what it holds.
    probe = run(
        str(_bin(venv, "python")),
        "-c",
        "import json, tagger; from tagger.config import Settings; from tagger.locations import default_locations;"
        "from tagger.model.features import DEFAULT_USERDICT; from tagger.api.routes.clauses import labels; s = Settings();"
        "print(json.dumps({'pkg': tagger.__file__, 'layout': default_locations().layout, 'model_dir': str(s.model_dir),"
        "'taxonomy': str(s.taxonomy_file), 'var_dir': str(s.var_dir), 'userdict': str(DEFAULT_USERDICT),"
        "'labels': {h: len(v) for h, v in labels().items()}}))",
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    info = json.loads(probe.stdout)
    pkg = Path(info["pkg"]).parent
    assert pkg.resolve().is_relative_to(venv.resolve()) and "site-packages" in pkg.parts
    assert info["layout"] == "installed"
    assert Path(info["model_dir"]) == pkg / "_data" / "models" / "policy-tagger"
    assert Path(info["taxonomy"]) == pkg / "_data" / "labels" / "taxonomy.yaml"
    assert Path(info["var_dir"]) == data_home / APP_NAME
    for rel in PACKAGED:
        assert (pkg / rel).is_file(), rel
    assert Path(info["userdict"]) == pkg / "resources" / "userdict.txt"
    assert all(info["labels"].values())  # what /v1/labels answers

    # tagger tag from a folder outside the checkout, with the bundled model
    version = json.loads((BUNDLE / "manifest.json").read_text(encoding="utf-8"))["version"]
    # The packaged override rules are applied and stamped, as in the checkout.
    from tagger.model.overrides import load_overrides

    version = load_overrides(ROOT / "labels" / "overrides.yaml").version(version)
    texts = ["对人工智能企业给予最高500万元资金补助。", "支持建设算力基础设施和公共数据平台。", "对引进的高层次人才给予住房补贴。"]
    (work / "some.jsonl").write_text("".join(json.dumps({"id": f"c{i}", "text": t}, ensure_ascii=False) + "\n" for i, t in enumerate(texts)), encoding="utf-8")
    res = run(str(_bin(venv, "tagger")), "tag", "some.jsonl", "-o", "out.jsonl", "--workers", "1")
    assert res.returncode == 0, res.stderr[-3000:]
    out = [json.loads(line) for line in (work / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in out] == ["c0", "c1", "c2"]
    assert all(r["model"] == version and {"topic", "measure", "industry", "scores"} <= set(r) for r in out)
    assert "grant" in out[0]["measure"]

    # tagger ingest: the SQLite store lands in the user data folder, not in site-packages
    (work / "doc.txt").write_text(
        "关于支持人工智能产业发展的若干措施\n\n一、对人工智能企业给予最高500万元资金补助。\n二、支持建设算力基础设施。\n", encoding="utf-8"
    )
    res = run(str(_bin(venv, "tagger")), "ingest", "doc.txt")
    assert res.returncode == 0, res.stderr[-3000:]
    assert (data_home / APP_NAME / "tagger.db").is_file()
    assert not list(venv.rglob("tagger.db")) and not (pkg.parent / "var").exists()
    assert not (work / "var").exists()

    # checkout-only data: a one-line error, not a traceback
    res = run(str(_bin(venv, "tagger")), "labels", "validate")
    assert res.returncode == 1 and "no such file" in res.stderr and "Traceback" not in res.stderr


def test_packages_export_their_public_names_lazily():
    """Each concern is a package with a small public surface; importing one module (the
    tokeniser, say) must not drag in the model, the store or the CLI."""
    code = (
        "import sys, tagger.model.features; "
        "loaded = sorted(m for m in sys.modules if m.startswith('tagger.') and m.count('.') > 1); "
        "from tagger.model import Tagger, load_tagger; from tagger.ingest import Document, load_documents; "
        "from tagger.store import Store, ClauseQuery; from tagger.cli import main; import tagger.ingest; "
        "print(loaded, Tagger.__module__, load_documents.__module__, Store.__module__, main.__module__, callable(main))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [
        "['tagger.ingest.textnorm',", "'tagger.model.features']",
        "tagger.model.inference", "tagger.ingest.documents", "tagger.store.db", "tagger.cli.commands", "True",
    ]
    r = subprocess.run([sys.executable, "-c", "import tagger.model; tagger.model.nothing"], capture_output=True, text=True, timeout=60)
    assert "module 'tagger.model' has no attribute 'nothing'" in r.stderr
