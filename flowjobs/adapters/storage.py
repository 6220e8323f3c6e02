"""Document storage: where rendered PDFs go. `local` keeps them under `[documents] dir`.

Keys are `invoices/<org>/<invoice>/<id>.pdf` and `receipts/<org>/<payment>/receipt_<id>.pdf`
(upstream's R2 layout); a file is written to a temporary name and renamed, so a reader never
sees half a PDF. URLs are `file://` URLs of the stored files.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class LocalStorage:
    def __init__(self, root: Path):
        self.root = Path(root).resolve()

    def put(self, key: str, data: bytes) -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path.as_uri()

    def delete_url(self, url: str | None) -> bool:
        """Best effort: remove a file this storage wrote; anything else is left alone."""
        if not url or not url.startswith(self.root.as_uri() + "/"):
            return False
        try:
            Path(url.removeprefix("file://")).unlink()
            return True
        except OSError:
            return False

    def read(self, url: str) -> bytes:
        return Path(url.removeprefix("file://")).read_bytes()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise ValueError(f"storage key escapes the documents folder: {key!r}")
        return path
