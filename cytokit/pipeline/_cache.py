"""Reuse of finished samples: a rerun into the same folder skips samples whose file and settings are unchanged."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import pickle
from pathlib import Path

from ._inputs import SampleSpec
from ._task import SampleResult, Settings

__all__ = ["SampleCache"]

logger = logging.getLogger("cytokit")


@functools.cache
def _code_digest() -> str:
    """Digest of the package's own source files, once per process.

    The version number alone does not change when an editable install (the README's) is updated with
    ``git pull``: results cached by the old code would be reused silently. Hashing ~100 small files
    takes a few milliseconds."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


class SampleCache:
    """Pickled `SampleResult`s in ``<out>/.cache``, keyed by file content, settings, prior, version and
    the package's source code."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._digests: dict[Path, str] = {}  # each file is hashed once per run, however many passes

    def key(self, spec: SampleSpec, settings: Settings, prior: dict | None) -> str | None:
        from .. import __version__

        try:
            if spec.file not in self._digests:
                self._digests[spec.file] = _file_digest(spec.file)
        except OSError:
            return None  # a missing file is never cached; the task reports it
        digest = self._digests[spec.file]
        payload = {
            "file": digest,
            "settings": settings.to_dict(),
            "metadata": spec.metadata(),
            "prior": prior,
            "version": __version__,
            "code": _code_digest(),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()

    def _path(self, spec: SampleSpec, tag: str) -> Path:
        return self.folder / f"{spec.sample}{'.' + tag if tag else ''}.pkl"

    def get(self, spec: SampleSpec, key: str | None, tag: str = "") -> SampleResult | None:
        path = self._path(spec, tag)
        if key is None or not path.is_file():
            return None
        try:
            with open(path, "rb") as fh:
                stored_key, result = pickle.load(fh)
        except Exception:  # a damaged cache entry is recomputed, never fatal
            return None
        if stored_key != key or not _events_present(result):
            return None
        return result

    def put(self, spec: SampleSpec, key: str | None, result: SampleResult, tag: str = "") -> None:
        if key is None or result.status == "failed":
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(spec, tag)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            pickle.dump((key, result), fh, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)


def _events_present(result: SampleResult) -> bool:
    """A cached sample whose clustered events file is gone is recomputed (the run maps those events)."""
    path = (result.cells or {}).get("events_file")
    return path is None or Path(path).is_file()
