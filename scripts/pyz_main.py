"""The start of flowjobs.pyz (its `__main__.py`; scripts/build_dist.py fills in BUILD and NATIVE).

Pure-Python dependencies are imported straight from the archive (`site-packages/` inside it,
with .pyc files compiled at build time, which zipimport uses as they are). Only what cannot
run from a zip is unpacked, into `$FLOWJOBS_PYZ_CACHE/<BUILD>/` (default
`$XDG_CACHE_HOME/flowjobs/pyz`, else `~/.cache/flowjobs/pyz`):

- `lib/`: flowjobs itself and the dependencies' metadata (`*.dist-info/METADATA`, …), at the
  first start (flowjobs reads its migrations, fonts and templates from files, and
  importlib.metadata reads no folder inside a zip; ~5 MB);
- `native/<distribution>/`: the compiled extensions of one distribution (pydantic_core,
  psycopg_binary, pillow, SQLAlchemy's optional ones, …) with the libraries they link to,
  the first time one of its extension modules is imported (`--help` unpacks none);
- `data/stripe/`: stripe's CA bundle, which stripe reads from a file beside its code, when
  stripe is first imported (`stripe.ca_bundle_path` is pointed at it).

Each is unpacked into a temporary folder beside its place and renamed into it, so two
processes starting at once never see half of it. A new build has a new BUILD: delete the old
folders to reclaim the space. Processes that flowjobs starts itself (`run-worker --processes
N`) run `python -m flowjobs`: PYTHONPATH points them at `shim/flowjobs.py` in the archive,
which starts them through this file.
"""

import os
import sys

BUILD = "dev"  # a hash of the archive's contents, written by scripts/build_dist.py
NATIVE: dict[str, tuple[str, str]] = {}  # extension module -> (distribution, path under it)
PYTHON = (3, 11)  # the Python it is built for and runs on (scripts/build_dist.py checks it)
EXIT_UNPACK = 2  # the same status as a bad configuration (README: exit codes)


def _cache_dir() -> str:
    base = os.environ.get("FLOWJOBS_PYZ_CACHE")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(xdg, "flowjobs", "pyz")
    return os.path.join(os.path.abspath(base), BUILD)


def _unpack(blob: str, target: str) -> None:
    """Unpack the zip stored as member `blob` into folder `target` unless it is there: all or
    nothing (a scratch folder beside it, renamed into place)."""
    if os.path.isdir(target):
        return
    import io
    import shutil
    import time
    import zipfile

    parent = os.path.dirname(target)
    scratch = f"{target}.unpacking-{os.getpid()}-{time.monotonic_ns()}"
    try:
        os.makedirs(scratch)
        try:
            # read through the importer: its table of the (large) outer archive is already in memory
            data = __loader__.get_data(blob)  # type: ignore[name-defined]
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                for info in zf.infolist():
                    dest = os.path.join(scratch, info.filename)
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    with open(dest, "wb") as out:
                        out.write(zf.read(info))
                    if info.external_attr >> 16:
                        os.chmod(dest, (info.external_attr >> 16) & 0o755)
            try:
                os.rename(scratch, target)
            except OSError:
                if not os.path.isdir(target):  # not "another process got there first"
                    raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    except OSError as exc:
        sys.stderr.write(
            f"error: cannot unpack flowjobs.pyz into {parent}: {exc.strerror or exc}; "
            "set FLOWJOBS_PYZ_CACHE to a writable folder\n"
        )
        sys.exit(EXIT_UNPACK)


class _NativeFinder:
    """Finds the extension modules listed in NATIVE in their unpacked folder (unpacking it)."""

    cache = ""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        where = NATIVE.get(name)
        if where is None:
            return None
        from importlib.machinery import ExtensionFileLoader
        from importlib.util import spec_from_file_location

        dist, relpath = where
        root = os.path.join(cls.cache, "native", dist)
        _unpack(f"native/{dist}.zip", root)
        filename = os.path.join(root, relpath)
        return spec_from_file_location(name, filename, loader=ExtensionFileLoader(name, filename))

    @classmethod
    def invalidate_caches(cls):
        pass


def _stripe_bundle(module) -> None:
    """stripe reads its CA bundle from a file beside its code: point it at an unpacked copy."""
    bundle = os.path.join(_NativeFinder.cache, "data", "stripe")
    _unpack("data/stripe.zip", bundle)
    module.ca_bundle_path = os.path.join(bundle, "ca-certificates.crt")


FIXUPS = {"stripe": _stripe_bundle}


class _AfterImport:
    """Runs a fix-up on a module right after it is first imported (see _stripe_bundle)."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        fixup = FIXUPS.get(name)
        if fixup is None:
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _ThenFixUp(spec.loader, fixup)
        return spec

    @classmethod
    def invalidate_caches(cls):
        pass


class _ThenFixUp:
    """A module's own loader, followed by its fix-up."""

    def __init__(self, loader, fixup):
        self.loader, self.fixup = loader, fixup

    def __getattr__(self, name):  # get_resource_reader, get_source, … of the real loader
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        self.fixup(module)


def start() -> None:
    if sys.version_info[:2] != PYTHON:  # the .pyc files and compiled extensions are for it
        sys.stderr.write(
            f"error: flowjobs.pyz runs on Python {PYTHON[0]}.{PYTHON[1]}, not "
            f"{sys.version_info[0]}.{sys.version_info[1]}: run it with python{PYTHON[0]}.{PYTHON[1]}\n"
        )
        sys.exit(EXIT_UNPACK)
    archive = os.path.abspath(__loader__.archive)  # type: ignore[name-defined]
    cache = _cache_dir()
    lib = os.path.join(cache, "lib")
    _unpack("lib.zip", lib)
    _NativeFinder.cache = cache
    # the archive itself (sys.path[0]) and the shim of a child process are not import roots
    shim = os.path.join(archive, "shim")
    sys.path[:] = [lib, os.path.join(archive, "site-packages")] + [
        p for p in sys.path if os.path.abspath(p) not in (archive, shim)
    ]  # (importlib.metadata would read the whole archive's table for each lookup)
    sys.meta_path[:0] = [_NativeFinder, _AfterImport]
    inherited = os.environ.get("PYTHONPATH")
    if not inherited or not inherited.startswith(shim):
        os.environ["PYTHONPATH"] = shim + (os.pathsep + inherited if inherited else "")

    from flowjobs.cli.main import main

    main()


if __name__ == "__main__":
    start()
