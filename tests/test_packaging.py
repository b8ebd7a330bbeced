"""The package as a user installs it: a wheel that holds the spark-submit entry points, its type information, the
licence and the shipped models; extras that match the roles; a role without its extra told what to install."""

import email
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

from lookalike._version import __version__
from lookalike.dev.imagefactory import PHOTOS, write_photo_crops

REPO = Path(__file__).parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(REPO)], check=True, capture_output=True, timeout=300)
    [built] = out.glob("lookalike-*.whl")
    return zipfile.ZipFile(built)


@pytest.mark.slow
def test_the_wheel_holds_the_entry_points_types_licence_and_models(wheel):
    names = set(wheel.namelist())
    jobs = {p.name for p in (REPO / "jobs").glob("*.py")}
    assert {f"lookalike/jobs/{name}" for name in jobs} <= names and "lookalike/jobs/reindex.py" in names
    assert {"lookalike/py.typed", "lookalike/core/log4j2.properties", "lookalike/serve/static/search.html",
            "lookalike/model/artefacts/lite0-marks.pt", "lookalike/model/artefacts/lite0-marks.json"} <= names
    info = f"lookalike-{__version__}.dist-info"
    assert any(n.startswith(f"{info}/") and n.endswith("LICENSE") for n in names)
    metadata = email.message_from_bytes(wheel.read(f"{info}/METADATA"))
    assert metadata["Version"] == __version__ and metadata["License"] == "Apache-2.0"
    assert {"spark", "serve", "words", "train", "report", "all"} <= set(metadata.get_all("Provides-Extra"))
    assert "Typing :: Typed" in metadata.get_all("Classifier")
    assert "lookalike = lookalike.cli.main:main" in wheel.read(f"{info}/entry_points.txt").decode()
    # A serving host installs no Spark, an executor no web server: neither is a base dependency.
    base = " ".join(metadata.get_all("Requires-Dist"))
    assert all(f"{name}" in base for name in ("torch", "faiss-cpu", "pyarrow", "httpx"))
    assert not any(r.startswith(("pyspark", "fastapi", "sentence-transformers", "matplotlib"))
                   for r in metadata.get_all("Requires-Dist") if "extra ==" not in r)


def test_every_package_of_the_library_is_in_the_wheel_list():
    found = {".".join(("lookalike", *p.parent.relative_to(REPO / "lib" / "lookalike").parts)).rstrip(".")
             for p in (REPO / "lib" / "lookalike").rglob("__init__.py")}
    assert set(PYPROJECT["tool"]["setuptools"]["packages"]) == found | {"lookalike.jobs"}


def test_python_m_lookalike_jobs_names_the_file_to_submit():
    done = subprocess.run([sys.executable, "-m", "lookalike.jobs", "reindex"], capture_output=True, text=True)
    assert done.returncode == 0 and Path(done.stdout.strip()).read_text().count('main(["reindex"') == 1
    wrong = subprocess.run([sys.executable, "-m", "lookalike.jobs", "nope"], capture_output=True, text=True)
    assert wrong.returncode == 2 and "similarity_join" in wrong.stderr and "__main__" not in wrong.stderr


@pytest.mark.slow
def test_a_role_without_its_extra_is_told_what_to_install_and_small_folders_need_no_spark(tmp_path):
    def without(modules: tuple[str, ...], *args: str) -> subprocess.CompletedProcess:
        blocked = "".join(f"sys.modules[{m!r}] = None; " for m in modules)
        code = f"import sys; {blocked}from lookalike.cli.main import main; sys.exit(main({list(args)!r}))"
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)

    (tmp_path / "marks").mkdir()
    write_photo_crops(tmp_path / "marks", PHOTOS[:2], per_photo=2)
    served = without(("fastapi",), "serve", "--store", str(tmp_path), "--index", "marks")
    assert served.returncode == 2 and "pip install 'lookalike[serve]'" in served.stderr, served.stderr
    spark = without(("pyspark",), "embed", "--images", str(tmp_path / "marks"), "--store", str(tmp_path / "s"),
                    "--master", "local[2]")
    assert spark.returncode == 2 and "pip install 'lookalike[spark]'" in spark.stderr, spark.stderr
    alone = without(("pyspark", "fastapi"), "reindex", "--images", str(tmp_path / "marks"), "--store",
                    str(tmp_path / "store"), "--index", "marks", "--master", "in-process")
    assert alone.returncode == 0 and "PUBLISHED" in alone.stdout, alone.stderr[-2000:]
