"""scripts/wheels_check.py, the checks scripts/wheels.sh runs on the wheel and the sdist: a
distribution as maturin lays it out passes, and each defect they exist to catch is refused
with a message naming it. The distributions are assembled here from the source tree itself."""

from __future__ import annotations

import base64
import hashlib
import io
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import zipfile
from pathlib import Path

import duckdb
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "wheels_check.py"
VERSION = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["version"]
REQUIRES_PYTHON = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
PY_TAG = f"cp{sys.version_info[0]}{sys.version_info[1]}"
EXT_SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")
PLATFORM = "manylinux_2_28_x86_64"
DIST_INFO = f"headwater-{VERSION}.dist-info"


def run_check(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True
    )


def git_files(*paths: str) -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "--", *paths],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.split()


def package_files() -> dict[str, bytes]:
    """The package as a wheel holds it: the tracked sources and the extension built from them."""
    files = {
        name.removeprefix("python/"): (ROOT / name).read_bytes()
        for name in git_files("python/headwater")
    }
    extension = f"headwater/_core{EXT_SUFFIX}"
    files[extension] = (ROOT / "python" / extension).read_bytes()
    return files


def write_wheel(
    directory: Path,
    files: dict[str, bytes],
    *,
    platform: str = PLATFORM,
    requires_python: str = REQUIRES_PYTHON,
    corrupt_record: str | None = None,
) -> Path:
    tag = f"{PY_TAG}-{PY_TAG}-{platform}"
    meta = {
        f"{DIST_INFO}/METADATA": (
            f"Metadata-Version: 2.4\nName: headwater\nVersion: {VERSION}\n"
            f"Requires-Python: {requires_python}\n"
        ).encode(),
        f"{DIST_INFO}/WHEEL": (
            f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: {tag}\n"
        ).encode(),
    }
    contents = {**files, **meta}
    record = io.StringIO()
    for name, data in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        if name == corrupt_record:
            digest = "0" * len(digest)
        record.write(f"{name},sha256={digest},{len(data)}\n")
    record.write(f"{DIST_INFO}/RECORD,,\n")
    contents[f"{DIST_INFO}/RECORD"] = record.getvalue().encode()
    path = directory / f"headwater-{VERSION}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in contents.items():
            zf.writestr(name, data)
    return path


def check_wheel(path: Path) -> subprocess.CompletedProcess[str]:
    return run_check(
        "wheel",
        path,
        "--root",
        ROOT,
        "--python-tag",
        PY_TAG,
        "--platform-tag",
        PLATFORM,
        "--extension-suffix",
        EXT_SUFFIX,
    )


def test_a_wheel_of_exactly_the_package_passes(tmp_path: Path) -> None:
    result = check_wheel(write_wheel(tmp_path, package_files()))
    assert result.returncode == 0, result.stderr
    assert "tags and metadata as expected" in result.stdout


def test_stray_and_missing_files_are_named(tmp_path: Path) -> None:
    files = package_files()
    del files["headwater/py.typed"]
    files["headwater/_core.cpython-399-x86_64-linux-gnu.so"] = b"\x7fELF"
    files["headwater/__pycache__/batch.cpython-311.pyc"] = b""
    result = check_wheel(write_wheel(tmp_path, files))
    assert result.returncode == 1
    assert "missing headwater/py.typed" in result.stderr
    assert "stray file headwater/_core.cpython-399-x86_64-linux-gnu.so" in result.stderr
    assert "stray file headwater/__pycache__/batch.cpython-311.pyc" in result.stderr


def test_a_wheel_without_its_extension_or_stub_is_refused(tmp_path: Path) -> None:
    files = package_files()
    del files[f"headwater/_core{EXT_SUFFIX}"]
    del files["headwater/_core.pyi"]
    result = check_wheel(write_wheel(tmp_path, files))
    assert result.returncode == 1
    assert f"missing headwater/_core{EXT_SUFFIX}" in result.stderr
    assert "missing headwater/_core.pyi" in result.stderr


def test_a_wrong_platform_tag_or_python_requirement_is_refused(tmp_path: Path) -> None:
    result = check_wheel(
        write_wheel(tmp_path, package_files(), platform="linux_x86_64", requires_python=">=3.10")
    )
    assert result.returncode == 1
    assert f"file name platform tags is 'linux_x86_64', expected '{PLATFORM}'" in result.stderr
    assert f"METADATA Requires-Python is '>=3.10', expected '{REQUIRES_PYTHON}'" in result.stderr


def test_a_record_hash_that_does_not_match_is_refused(tmp_path: Path) -> None:
    result = check_wheel(
        write_wheel(tmp_path, package_files(), corrupt_record="headwater/__init__.py")
    )
    assert result.returncode == 1
    assert "RECORD has the wrong hash for headwater/__init__.py" in result.stderr


def sdist_files() -> dict[str, bytes]:
    """What maturin puts in the sdist: the build files, every crate and the Python sources."""
    names = ["pyproject.toml", "Cargo.toml", "Cargo.lock", "README.md"]
    names += git_files("rust", "python/headwater")
    files = {name: (ROOT / name).read_bytes() for name in names}
    files["PKG-INFO"] = f"Metadata-Version: 2.4\nName: headwater\nVersion: {VERSION}\n".encode()
    return files


def write_sdist(directory: Path, files: dict[str, bytes]) -> Path:
    path = directory / f"headwater-{VERSION}.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(f"headwater-{VERSION}/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_an_sdist_with_every_crate_and_source_passes(tmp_path: Path) -> None:
    result = run_check("sdist", write_sdist(tmp_path, sdist_files()), "--root", ROOT)
    assert result.returncode == 0, result.stderr
    assert "rust/headwater-core" in result.stdout
    assert "rust/headwater-python" in result.stdout


def test_an_sdist_missing_build_inputs_or_holding_build_output_is_refused(
    tmp_path: Path,
) -> None:
    files = sdist_files()
    del files["Cargo.lock"]
    del files["rust/headwater-core/src/lib.rs"]
    files["target/debug/lib_core.so"] = b"\x7fELF"
    files[f"python/headwater/_core{EXT_SUFFIX}"] = b"\x7fELF"
    result = run_check("sdist", write_sdist(tmp_path, files), "--root", ROOT)
    assert result.returncode == 1
    assert "missing Cargo.lock" in result.stderr
    assert "missing rust/headwater-core/src/lib.rs" in result.stderr
    assert "build output or cache target/debug/lib_core.so" in result.stderr
    assert f"build output or cache python/headwater/_core{EXT_SUFFIX}" in result.stderr


def test_an_sdist_with_another_lock_file_is_refused(tmp_path: Path) -> None:
    files = sdist_files()
    files["Cargo.lock"] += b"\n# edited\n"
    result = run_check("sdist", write_sdist(tmp_path, files), "--root", ROOT)
    assert result.returncode == 1
    assert "Cargo.lock differs from the source tree's" in result.stderr


def make_demo_database(path: Path, issues_parents: list[int]) -> None:
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE demo_repos (id INT, _cq_id INT)")
        con.execute("CREATE TABLE demo_issues (repo_id INT, _cq_parent_id INT)")
        con.execute("INSERT INTO demo_repos VALUES (1, 10), (2, 20)")
        for parent in issues_parents:
            con.execute("INSERT INTO demo_issues VALUES (?, ?)", [parent // 10, parent])


@pytest.mark.parametrize(
    ("parents", "expect", "message"),
    [
        ([10, 20, 20], '{"demo_repos": 2, "demo_issues": 3}', None),
        ([10, 20], '{"demo_repos": 2, "demo_issues": 3}', "demo_issues has 2 rows, expected 3"),
        ([10, 20, 30], '{"demo_repos": 2, "demo_issues": 3}', "1 demo_issues rows have no parent"),
    ],
)
def test_rows_counts_rows_and_finds_orphans(
    tmp_path: Path, parents: list[int], expect: str, message: str | None
) -> None:
    database = tmp_path / "smoke.duckdb"
    make_demo_database(database, parents)
    result = run_check("rows", database, "--expect", expect)
    if message is None:
        assert result.returncode == 0, result.stderr
        assert "demo_repos 2 rows, demo_issues 3 rows" in result.stdout
    else:
        assert result.returncode == 1
        assert message in result.stderr
