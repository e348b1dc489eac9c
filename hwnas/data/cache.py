"""An on-disk cache of decoded images at the search resolution: one numpy memmap of uint8 (N, 3, R, R) per source
and resolution in a cache folder, built once (worker processes decode, a progress bar shows it) and reused while
the source is unchanged: its key is the source's fingerprint with file names, sizes and modification times, and
the resolution; a source that changed is decoded again into the same file."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from hwnas.data.sources import Catalog
from hwnas.data.streaming import decode_batches, spans
from hwnas.errors import ConfigError

CACHE_FORMAT = 1  # bump when the layout or the decoding changes: older caches are then rebuilt
BUILD_BATCH = 256  # images per decoded batch while building


class CachedImages:
    """A built cache: `read(i)` like the catalog's, from the memmap (opened once per process, so worker
    processes, forked or spawned, map the file rather than copy it)."""

    decodes_files = False

    def __init__(self, path: Path, count: int, resolution: int):
        self.path, self.count, self.resolution = path, count, resolution
        self._array: np.memmap | None = None

    def __len__(self) -> int:
        return self.count

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_array": None}

    def array(self) -> np.memmap:
        if self._array is None:
            self._array = np.memmap(self.path, np.uint8, "r", shape=(self.count, 3, self.resolution, self.resolution))
        return self._array

    def read(self, index: int) -> torch.Tensor:
        return torch.from_numpy(np.array(self.array()[int(index)]))

    def read_many(self, indices: Sequence[int]) -> torch.Tensor:
        return torch.from_numpy(self.array()[np.asarray(indices, dtype=np.int64)])


def cache_key(catalog: Catalog) -> str:
    """What the cached pixels depend on: the source (files, sizes, modification times), the resolution, the format."""
    return hashlib.sha256(f"{catalog.fingerprint(mtimes=True)}:{catalog.resolution}:{CACHE_FORMAT}".encode()
                          ).hexdigest()


def cache_paths(catalog: Catalog, source: str, folder: Path) -> tuple[Path, Path]:
    """(pixels, key file) of `source` at the catalog's resolution: one pair per source and resolution."""
    where = source if ":" in source or not Path(source).exists() else str(Path(source).resolve())
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", catalog.name)[:40] or "source"
    stem = f"{slug}-{catalog.resolution}px-{hashlib.sha256(where.encode()).hexdigest()[:12]}"
    return folder / f"{stem}.u8", folder / f"{stem}.json"


def _is_current(data: Path, meta: Path, key: str, count: int, resolution: int) -> bool:
    try:
        stored = json.loads(meta.read_text())
        size = data.stat().st_size
    except (OSError, ValueError):
        return False
    return (isinstance(stored, dict) and stored.get("key") == key
            and size == count * 3 * resolution * resolution)


def open_cache(catalog: Catalog, source: str, folder: str | Path, workers: int = 2) -> CachedImages:
    """The cache of `catalog`'s images in `folder`, built first when missing or when the source changed. Under
    torch.distributed rank 0 builds it while the other ranks wait."""
    folder = Path(folder)
    data, meta = cache_paths(catalog, source, folder)
    key = cache_key(catalog)
    count, resolution = len(catalog), catalog.resolution
    distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    if not _is_current(data, meta, key, count, resolution) and (not distributed or dist.get_rank() == 0):
        _build(catalog, data, meta, key, workers)
    if distributed:
        dist.barrier()
    if not _is_current(data, meta, key, count, resolution):
        raise ConfigError(f"{meta}: the cache of {source} at {resolution}px does not match the source; delete it")
    return CachedImages(data, count, resolution)


def _build(catalog: Catalog, data: Path, meta: Path, key: str, workers: int) -> None:
    """Decode every image of `catalog` into `data` (written under another name, renamed when complete, the key
    file last), so an interrupted build is never taken for a cache."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    count, resolution = len(catalog), catalog.resolution
    size = count * 3 * resolution * resolution
    partial = data.with_name(data.name + ".partial")
    try:
        data.parent.mkdir(parents=True, exist_ok=True)
        meta.unlink(missing_ok=True)
        with partial.open("wb") as handle:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(handle.fileno(), 0, size)  # a full disk fails here, not as a crash while writing
            else:
                handle.truncate(size)
        array = np.memmap(partial, np.uint8, "r+", shape=(count, 3, resolution, resolution))
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise ConfigError(f"cache folder {data.parent}: cannot hold {size / 1e9:.2f} GB of decoded images "
                          f"({error.strerror or error})") from None
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
            task = progress.add_task(f"caching {catalog.name} at {resolution}px", total=count)
            start = 0
            for images in decode_batches(catalog, [list(span) for span in spans(count, BUILD_BATCH)], workers):
                array[start:start + len(images)] = images.numpy()
                start += len(images)
                progress.advance(task, len(images))
        array.flush()
        del array
        os.replace(partial, data)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    meta.write_text(json.dumps({"key": key, "source": catalog.name, "images": count, "resolution": resolution,
                                "format": CACHE_FORMAT}) + "\n")
