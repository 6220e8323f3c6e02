"""Build dist/flowjobs.pyz: flowjobs and its dependencies in one file for `python3 flowjobs.pyz`.

    python scripts/build_dist.py [-o dist/flowjobs.pyz]     (what `make dist` runs)

Run it with the Python 3.11 the file is for (the .pyc files and the native wheels are
CPython 3.11, x86_64 Linux). Steps: `pip install --target` flowjobs and its dependencies
into a scratch folder; leave out what no command uses (console scripts, type stubs, test
suites, RECORD files); compile every module to .pyc (unchecked-hash: nothing stats or hashes
the source at import); then write the zip:

    __main__.py         scripts/pyz_main.py: sets up the paths below, then runs flowjobs
    shim/flowjobs.py    scripts/pyz_shim.py: `python -m flowjobs` in the pyz's own children
    site-packages/      pure-Python packages with a .pyc beside each .py, imported from the zip
    lib.zip             flowjobs and the dependencies' metadata, unpacked at the first start
                        (flowjobs reads its files by path; importlib.metadata reads no zip)
    native/<dist>.zip   each distribution's extension modules and bundled libraries, unpacked
                        when one of them is first imported
    data/stripe.zip     stripe's CA bundle, unpacked when stripe is first imported

What is unpacked is stored as a zip inside the zip: the start reads it through the importer,
which has the outer archive's table (~8,000 entries) in memory already.

Where it unpacks and how to clear it: README.md ("One file: flowjobs.pyz").
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.machinery
import importlib.util
import io
import py_compile
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
PYTHON = (3, 11)  # as in scripts/pyz_main.py
EXTENSION_SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)
UNUSED_DIRS = {"__pycache__", "tests"}  # tests: certifi's and croniter's own
UNUSED_SUFFIXES = (".pyi",)
UNUSED_DIST_INFO = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
# importlib.metadata cannot read a folder inside a zip: what it reads (psycopg's and
# SQLAlchemy's version checks, pydantic's and alembic's plugin entry points) is unpacked with
# flowjobs; the licences stay in the zip
METADATA = {"METADATA", "entry_points.txt", "top_level.txt"}
DATA = {"stripe/data/ca-certificates.crt": ("data/stripe.zip", "ca-certificates.crt")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "dist" / "flowjobs.pyz")
    args = parser.parse_args(argv)
    if sys.version_info[:2] != PYTHON:
        sys.stderr.write(
            f"error: build flowjobs.pyz with Python {PYTHON[0]}.{PYTHON[1]} (this is "
            f"{sys.version_info[0]}.{sys.version_info[1]}): its .pyc files and native wheels "
            "are for the Python that builds it\n"
        )
        return 2
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="flowjobs-dist-") as scratch:
        stage = Path(scratch) / "site-packages"
        # from a clean copy of the sources: setuptools would reuse a stale build/ of the checkout
        # (a module deleted since would still be packed) and leave build/ and *.egg-info behind
        source = Path(scratch) / "source"
        shutil.copytree(
            ROOT / "flowjobs", source / "flowjobs", ignore=shutil.ignore_patterns("__pycache__")
        )
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(ROOT / name, source / name)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile"]
            + ["--disable-pip-version-check", "--target", str(stage), str(source)],
            check=True,
        )
        members = stage_members(stage)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        size = write_pyz(members, args.output)
    print(
        f"{args.output}: {size / 1e6:.1f} MB, {len(flatten(members))} files "
        f"({time.monotonic() - started:.0f} s)"
    )
    return 0


def distributions(stage: Path) -> dict[str, str]:
    """Installed path (relative to the stage) -> the distribution it belongs to (its RECORD)."""
    owner = {}
    for record in stage.glob("*.dist-info/RECORD"):
        dist = record.parent.name.split("-")[0]
        for line in record.read_text().splitlines():
            path = line.rsplit(",", 2)[0]
            if path and not path.startswith(".."):
                owner[path] = dist
    return owner


def stage_members(stage: Path) -> dict[str, Path | dict[str, Path]]:
    """Archive name -> file (or, for what is unpacked, -> {name in the inner zip: file}) for
    everything the pyz carries; compiles the .pyc files."""
    owner = distributions(stage)
    native: dict[str, tuple[str, str]] = {}
    members: dict[str, Path | dict[str, Path]] = {}
    blobs: dict[str, dict[str, Path]] = {}
    for path in sorted(stage.rglob("*")):
        rel = path.relative_to(stage).as_posix()
        parts = rel.split("/")
        if path.is_dir() or UNUSED_DIRS.intersection(parts[:-1]) or rel.endswith(UNUSED_SUFFIXES):
            continue
        if parts[0] == "bin":  # the dependencies' console scripts (alembic, pygmentize, …)
            continue
        if parts[0].endswith(".dist-info") and parts[-1] in UNUSED_DIST_INFO:
            continue
        if parts[0].endswith(".dist-info") and len(parts) == 2 and parts[1] in METADATA:
            blobs.setdefault("lib.zip", {})[rel] = path
        elif parts[0] == "flowjobs":
            lib = blobs.setdefault("lib.zip", {})
            lib[rel] = path
            if rel.endswith(".py"):
                # beside the unpacked source, where the ordinary import system looks
                pyc = compile_pyc(path, Path(importlib.util.cache_from_source(str(path))), rel)
                if pyc is not None:
                    lib[pyc.relative_to(stage).as_posix()] = pyc
        elif rel.endswith(EXTENSION_SUFFIXES) or parts[0].endswith(".libs"):
            dist = owner.get(rel)
            if dist is None:
                raise SystemExit(f"error: {rel} is in no distribution's RECORD")
            blobs.setdefault(f"native/{dist}.zip", {})[rel] = path
            if not parts[0].endswith(".libs"):
                module = rel[: -len(next(s for s in EXTENSION_SUFFIXES if rel.endswith(s)))]
                native[module.replace("/", ".")] = (dist, rel)
        else:
            members[f"site-packages/{rel}"] = path
            if rel in DATA:
                blob, name = DATA[rel]
                blobs.setdefault(blob, {})[name] = path
            if rel.endswith(".py"):
                # zipimport looks for module.pyc beside module.py, not in __pycache__
                pyc = compile_pyc(path, path.with_suffix(".pyc"), f"site-packages/{rel}")
                if pyc is not None:
                    members[f"site-packages/{rel}c"] = pyc
    members.update(blobs)
    boot = (HERE / "pyz_main.py").read_text()
    build = hashlib.sha256()
    for name, file in sorted(flatten(members)):
        build.update(name.encode() + b"\0" + file.read_bytes())
    for placeholder, value in (
        ('BUILD = "dev"', f"BUILD = {build.hexdigest()[:16]!r}"),
        ("NATIVE: dict[str, tuple[str, str]] = {}", f"NATIVE = {native!r}"),
    ):
        if placeholder not in boot:
            raise SystemExit(f"error: scripts/pyz_main.py has no line {placeholder!r}")
        boot = boot.replace(placeholder, value, 1)
    main_py = stage.parent / "__main__.py"
    main_py.write_text(boot)
    members["__main__.py"] = main_py
    members["shim/flowjobs.py"] = HERE / "pyz_shim.py"
    for name in ("__main__.py", "shim/flowjobs.py"):
        source = members[name]
        assert isinstance(source, Path)
        pyc = compile_pyc(source, stage.parent / f"{name.replace('/', '.')}c", name)
        if pyc is not None:
            members[f"{name}c"] = pyc
    return members


def flatten(members: dict[str, Path | dict[str, Path]]) -> list[tuple[str, Path]]:
    out = []
    for name, value in members.items():
        if isinstance(value, dict):
            out += [(f"{name}/{inner}", file) for inner, file in value.items()]
        else:
            out.append((name, value))
    return out


def compile_pyc(source: Path, target: Path, shown_as: str) -> Path | None:
    try:
        py_compile.compile(
            str(source),
            cfile=str(target),
            dfile=f"flowjobs.pyz/{shown_as}",
            doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
    except py_compile.PyCompileError:
        return None  # not Python 3.11 (a template, an example for another version): source only
    return target


def write_pyz(members: dict[str, Path | dict[str, Path]], output: Path) -> int:
    partial = output.with_name(output.name + ".partial")
    with open(partial, "wb") as fh:
        fh.write(b"#!/usr/bin/env python3\n")
        with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, value in sorted(members.items()):
                if isinstance(value, Path):
                    zf.write(value, name)
                    continue
                inner = io.BytesIO()
                with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as blob:
                    for inner_name, file in sorted(value.items()):
                        blob.write(file, inner_name)
                zf.writestr(name, inner.getvalue(), zipfile.ZIP_STORED)  # compressed inside
    partial.chmod(0o755)
    partial.replace(output)
    return output.stat().st_size


if __name__ == "__main__":
    sys.exit(main())
