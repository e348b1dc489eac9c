"""Where images come from: scikit-learn's digits (embedded, no download; plain or distorted), CIFAR python
pickles, MNIST-format idx files (MNIST, Fashion-MNIST), image folders.

Each reader returns a `Catalog`: labels, class names, the source's own test split where it defines one, and how to
decode image i at the requested resolution as uint8 (3, R, R). Nothing is decoded up front: an image folder's
catalog is its file list, so a folder of any size can be streamed; array sources (CIFAR, idx, digits) keep their
native pixels and resize per image.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import pickle
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hwnas.data.transforms import affine_warp, resize, to_uint8
from hwnas.errors import ConfigError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
RESIZE_CHUNK = 1024  # images resized at once by `read_many` (bounds the float copy of a large array source)


@dataclass(frozen=True, eq=False)
class Catalog:
    """A source's images without their pixels: labels, class names, `test_mask` marking the source's own test
    split (None: carve one), whether horizontal flips keep labels, and `read(i)`: image i at `resolution`."""

    name: str
    resolution: int
    labels: torch.Tensor  # int64 (N,)
    classes: tuple[str, ...]
    test_mask: torch.Tensor | None
    flip: bool  # horizontal flips preserve the label (not for digits)

    decodes_files = False  # True where reading an image means decoding a file (worth worker processes)

    def __len__(self) -> int:
        return len(self.labels)

    def read(self, index: int) -> torch.Tensor:
        """Image `index` as uint8 (3, R, R)."""
        return self.read_many([index])[0]

    def read_many(self, indices: Sequence[int]) -> torch.Tensor:
        """Images `indices` as uint8 (n, 3, R, R)."""
        raise NotImplementedError

    def files(self) -> Iterator[tuple[str, Path]]:
        """(name, path) of every file the images are read from, in a fixed order; none for embedded sets."""
        return iter(())

    def fingerprint(self, mtimes: bool = False) -> str:
        """sha256 of what the source is: classes, labels, test split and its files' names and sizes (and
        modification times with `mtimes`: what a cache of decoded images must notice); pixels where no file is."""
        digest = hashlib.sha256(json.dumps([self.name, list(self.classes), len(self)]).encode())
        digest.update(self.labels.numpy().astype("<i8").tobytes())
        digest.update(b"" if self.test_mask is None else self.test_mask.numpy().tobytes())
        has_files = False
        for name, path in self.files():
            try:
                stat = path.stat()
            except OSError as error:
                raise ConfigError(f"{path}: cannot read ({error.strerror or error})") from None
            line = f"{name}\0{stat.st_size}\0{stat.st_mtime_ns if mtimes else ''}\n"
            digest.update(line.encode("utf-8", "surrogateescape"))
            has_files = True
        if not has_files:
            digest.update(self.read_many(range(len(self))).numpy().tobytes())
        return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class ArrayCatalog(Catalog):
    """A source held as native uint8 pixels (N, 1 or 3, h, w): CIFAR, idx files, digits; resized per image."""

    pixels: np.ndarray | None = None
    sources: tuple[Path, ...] = ()  # the files the pixels were read from

    def read_many(self, indices: Sequence[int]) -> torch.Tensor:
        index = np.asarray(indices, dtype=np.int64)
        chunks = [self._resized(torch.from_numpy(self.pixels[index[start:start + RESIZE_CHUNK]]))
                  for start in range(0, len(index), RESIZE_CHUNK)]
        if not chunks:
            return torch.zeros((0, 3, self.resolution, self.resolution), dtype=torch.uint8)
        return torch.cat(chunks)

    def _resized(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-2:] != (self.resolution, self.resolution):
            images = to_uint8(resize(images, self.resolution))
        return images.expand(-1, 3, -1, -1).contiguous() if images.shape[1] == 1 else images

    def files(self) -> Iterator[tuple[str, Path]]:
        return ((path.name, path) for path in self.sources)


@dataclass(frozen=True, eq=False)
class FolderCatalog(Catalog):
    """Image files under `root`, one per image (`paths`: names relative to root, as bytes: one numpy array rather
    than a million Python strings, which worker processes would copy page by page)."""

    root: Path = Path(".")
    paths: np.ndarray | None = None

    decodes_files = True

    def path(self, index: int) -> Path:
        return self.root / os.fsdecode(bytes(self.paths[index]))

    def read(self, index: int) -> torch.Tensor:
        return _load_image(self.path(int(index)), self.resolution)

    def read_many(self, indices: Sequence[int]) -> torch.Tensor:
        images = [self.read(i) for i in indices]
        if not images:
            return torch.zeros((0, 3, self.resolution, self.resolution), dtype=torch.uint8)
        return torch.stack(images)

    def files(self) -> Iterator[tuple[str, Path]]:
        for name in self.paths:
            text = os.fsdecode(bytes(name))
            yield text, self.root / text


def read_digits(resolution: int) -> ArrayCatalog:
    """scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), upsampled and repeated to 3 channels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = torch.from_numpy(digits.images.astype(np.float32) * (255.0 / 16.0)).unsqueeze(1)
    images = to_uint8(resize(pixels, resolution)).repeat(1, 3, 1, 1)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    return ArrayCatalog("digits", resolution, labels, tuple(str(i) for i in range(10)), None, False, images.numpy())


def read_digits_hard(resolution: int, seed: int = 0) -> ArrayCatalog:
    """The same 1797 digits, each under one fixed (seeded) distortion: rotated, scaled, sheared and shifted, with
    strokes of two other digits as clutter, random fore- and background colours and pixel noise. On plain digits
    every network of a paper space scores ~99%; this set leaves room for architectures to differ."""
    plain = read_digits(resolution)
    strokes = torch.from_numpy(plain.pixels[:, :1]).float() / 255.0
    n = len(strokes)
    generator = torch.Generator().manual_seed(seed)

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(shape or (n,), generator=generator)

    digit = affine_warp(strokes, uniform(-math.radians(30), math.radians(30)), uniform(0.7, 1.1),
                        uniform(-0.3, 0.3), uniform(-0.15, 0.15, n, 2))
    ink = digit
    for _ in range(2):
        other = torch.randint(0, n, (n,), generator=generator)
        offset = torch.sign(uniform(-1, 1, n, 2)) * uniform(0.55, 0.8, n, 2)
        fragment = affine_warp(strokes[other], uniform(-math.pi, math.pi), uniform(0.6, 1.0),
                               uniform(-0.3, 0.3), offset)
        ink = torch.maximum(ink, fragment * uniform(0.5, 0.9).view(n, 1, 1, 1))
    background = uniform(0.0, 0.5, n, 3).view(n, 3, 1, 1)
    foreground = uniform(0.5, 1.0, n, 3).view(n, 3, 1, 1)
    noise = 0.12 * torch.randn((n, 3, resolution, resolution), generator=generator)
    images = background + (foreground - background) * ink + noise
    return ArrayCatalog("digits-hard", resolution, plain.labels, plain.classes, None, False,
                        to_uint8(images * 255.0).numpy())


# The only callables a CIFAR batch may name: numpy's array rebuilders (old and new module paths). Anything else in a
# pickle (os.system, builtins.eval, ...) is refused before it is called.
_CIFAR_PICKLE_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                         ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
                         ("numpy", "ndarray"), ("numpy", "dtype")}


class _DataOnlyUnpickler(pickle.Unpickler):
    """Reads numpy arrays, dicts, lists, bytes, str and numbers; refuses every other global, so a file runs no code."""

    def find_class(self, module: str, name: str):
        if (module, name) in _CIFAR_PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: a CIFAR batch holds only arrays and lists")


def _unpickle(path: Path) -> dict:
    try:
        with path.open("rb") as handle:
            data = _DataOnlyUnpickler(handle, encoding="latin1").load()
    except FileNotFoundError:
        raise ConfigError(f"{path}: missing; a CIFAR folder holds the python-format pickles") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            MemoryError) as error:
        raise ConfigError(f"{path}: not a CIFAR python pickle ({error})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a CIFAR python pickle (holds {type(data).__name__}, expected a dict)")
    return data


def read_cifar(root: Path, resolution: int, kind: str) -> ArrayCatalog:
    """CIFAR-10 (`data_batch_1..5`, `test_batch`) or CIFAR-100 (`train`, `test`) python pickles from a folder."""
    if kind == "cifar10":
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
        label_key, names_key = "labels", "label_names"
    else:
        names = ["train", "test", "meta"]
        label_key, names_key = "fine_labels", "fine_label_names"
    *chunks, meta = [_unpickle(root / name) for name in names]
    test = chunks[-1]
    try:
        data = np.concatenate([np.asarray(chunk["data"], dtype=np.uint8).reshape(-1, 3, 32, 32) for chunk in chunks])
        labels = np.concatenate([np.asarray(chunk[label_key], dtype=np.int64) for chunk in chunks])
        classes = tuple(str(name) for name in meta[names_key])
    except KeyError as error:
        raise ConfigError(f"{root}: CIFAR pickle lacks key {error}; is this {kind}?") from None
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{root}: CIFAR pickle of unexpected content ({error}); expected uint8 rows of 3072 "
                          "pixels and integer labels") from None
    if len(labels) != len(data) or (len(labels) and not 0 <= labels.min() <= labels.max() < len(classes)):
        raise ConfigError(f"{root}: {len(data)} images and {len(labels)} labels; expected one label per image, each "
                          f"in 0..{len(classes) - 1}")
    test_mask = torch.zeros(len(labels), dtype=torch.bool)
    test_mask[len(labels) - len(test[label_key]):] = True
    return ArrayCatalog(kind, resolution, torch.from_numpy(labels), classes, test_mask, True, data,
                        tuple(root / name for name in names))


def detect_cifar(root: Path) -> str | None:
    if (root / "data_batch_1").exists():
        return "cifar10"
    if (root / "train").is_file() and (root / "meta").is_file():
        return "cifar100"
    return None


IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
IDX_UBYTE = 0x08


def _idx_path(root: Path, name: str) -> Path:
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    expected = ", ".join(name for pair in IDX_FILES.values() for name in pair)
    raise ConfigError(f"{root / name}(.gz): missing; an MNIST-format folder holds {expected}")


def _read_idx(path: Path, dims: int) -> np.ndarray:
    """An idx file of unsigned bytes with `dims` dimensions (the MNIST format: big-endian header, then the data)."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:
        raise ConfigError(f"{path}: cannot read ({error})") from None
    header = 4 + 4 * dims
    if len(raw) < header or raw[:2] != b"\0\0" or raw[2] != IDX_UBYTE or raw[3] != dims:
        raise ConfigError(f"{path}: not an idx file of unsigned bytes with {dims} dimension(s)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    if len(raw) - header != math.prod(shape):
        raise ConfigError(f"{path}: header says {shape} ({math.prod(shape)} bytes), file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def read_idx(root: Path, resolution: int) -> ArrayCatalog:
    """MNIST-format files (`train-images-idx3-ubyte[.gz]`, `t10k-...`; MNIST, Fashion-MNIST), grey repeated to 3
    channels, with the source's own test split."""
    images, labels, files = [], [], []
    for split in ("train", "test"):
        image_file, label_file = (_idx_path(root, name) for name in IDX_FILES[split])
        images.append(_read_idx(image_file, 3))
        labels.append(_read_idx(label_file, 1))
        files += [image_file, label_file]
        if len(images[-1]) != len(labels[-1]):
            raise ConfigError(f"{image_file}: {len(images[-1])} images but {label_file.name} has "
                              f"{len(labels[-1])} labels")
    pixels = np.concatenate(images)[:, None]
    all_labels = torch.from_numpy(np.concatenate(labels).astype(np.int64))
    test_mask = torch.zeros(len(all_labels), dtype=torch.bool)
    test_mask[len(images[0]):] = True
    classes = tuple(str(c) for c in range(int(all_labels.max()) + 1))
    return ArrayCatalog(root.name, resolution, all_labels, classes, test_mask, False, pixels, tuple(files))


def detect_idx(root: Path) -> bool:
    return any((root / f"{IDX_FILES['train'][0]}{suffix}").is_file() for suffix in ("", ".gz"))


def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_names(folder: Path) -> list[str]:
    """Names of the image files in `folder`, sorted (none when it does not exist)."""
    if not folder.is_dir():
        return []
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if Path(e.name).suffix.lower() in IMAGE_SUFFIXES and e.is_file())


def _load_image(path: Path, resolution: int) -> torch.Tensor:
    """One image file as uint8 (3, R, R); a JPEG much larger than R is decoded at a reduced scale first (draft)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.draft("RGB", (resolution, resolution))
            rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as error:
        raise ConfigError(f"{path}: cannot read this image ({error})") from None
    tensor = torch.from_numpy(rgb.copy()).permute(2, 0, 1).unsqueeze(0)
    return to_uint8(resize(tensor, resolution))[0]


def read_folder(root: Path, resolution: int) -> FolderCatalog:
    """Class sub-folders of images (`root/CLASS/*.png`), or `root/train/CLASS` + `root/test/CLASS` for a split.
    Only the file names are read here; images are decoded when asked for."""
    split_roots = {"train": root / "train", "test": root / "test"}
    if split_roots["train"].is_dir():
        roots = [(split_roots["train"], False)]
        if split_roots["test"].is_dir():
            roots.append((split_roots["test"], True))
    else:
        roots = [(root, False)]
    classes = [p.name for p in _class_folders(roots[0][0])]
    if not classes:
        raise ConfigError(f"{roots[0][0]}: no class sub-folders (expected FOLDER/CLASS/image.png)")
    paths, labels, is_test = [], [], []
    for folder, test in roots:
        prefix = folder.relative_to(root)
        for label, name in enumerate(classes):
            names = _image_names(folder / name)
            paths += [os.fsencode(prefix / name / file) for file in names]
            labels += [label] * len(names)
            is_test += [test] * len(names)
    if len(paths) < 2 * len(classes):
        raise ConfigError(f"{root}: {len(paths)} image(s) in {len(classes)} class folder(s); too few to split")
    test_mask = torch.tensor(is_test) if any(is_test) else None
    return FolderCatalog(root.name, resolution, torch.tensor(labels, dtype=torch.int64), tuple(classes), test_mask,
                         True, root, np.array(paths))


def read_catalog(name_or_path: str, resolution: int) -> Catalog:
    """`digits`, `digits-hard`, `cifar10:PATH`, `cifar100:PATH`, or a folder (CIFAR pickles, MNIST-format idx files
    or class sub-folders)."""
    if name_or_path == "digits":
        return read_digits(resolution)
    if name_or_path == "digits-hard":
        return read_digits_hard(resolution)
    kind, _, rest = name_or_path.partition(":")
    if kind in ("cifar10", "cifar100") and rest:
        root = Path(rest)
        if not root.is_dir():
            raise ConfigError(f"--data {name_or_path}: {root} is not a folder")
        return read_cifar(root, resolution, kind)
    root = Path(name_or_path)
    if not root.is_dir():
        raise ConfigError(f"--data '{name_or_path}': not 'digits', 'digits-hard', cifar10:PATH, cifar100:PATH or an "
                          "image folder")
    cifar = detect_cifar(root)
    if cifar:
        return read_cifar(root, resolution, cifar)
    return read_idx(root, resolution) if detect_idx(root) else read_folder(root, resolution)
