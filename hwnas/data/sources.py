"""Where images come from: scikit-learn's digits (embedded, no download; plain or distorted), CIFAR python
pickles, MNIST-format idx files (MNIST, Fashion-MNIST), image folders.

Each reader returns every image of the source as uint8 (N, 3, R, R) at the requested resolution, labels, class
names and, where the source defines one, its own test split.
"""

from __future__ import annotations

import gzip
import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hwnas.data.transforms import affine_warp, resize, to_uint8
from hwnas.errors import ConfigError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class Source:
    """All images of a dataset at one resolution; `test_mask` marks the source's own test split (None: carve one)."""

    name: str
    images: torch.Tensor  # uint8 (N, 3, R, R)
    labels: torch.Tensor  # int64 (N,)
    classes: tuple[str, ...]
    test_mask: torch.Tensor | None = None
    flip: bool = True  # horizontal flips preserve the label (not for digits)


def read_digits(resolution: int) -> Source:
    """scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), upsampled and repeated to 3 channels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = torch.from_numpy(digits.images.astype(np.float32) * (255.0 / 16.0)).unsqueeze(1)
    images = to_uint8(resize(pixels, resolution)).repeat(1, 3, 1, 1)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    return Source("digits", images, labels, tuple(str(i) for i in range(10)), flip=False)


def read_digits_hard(resolution: int, seed: int = 0) -> Source:
    """The same 1797 digits, each under one fixed (seeded) distortion: rotated, scaled, sheared and shifted, with
    strokes of two other digits as clutter, random fore- and background colours and pixel noise. On plain digits
    every network of a paper space scores ~99%; this set leaves room for architectures to differ."""
    plain = read_digits(resolution)
    strokes = plain.images[:, :1].float() / 255.0
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
    return Source("digits-hard", to_uint8(images * 255.0), plain.labels, plain.classes, flip=False)


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


def read_cifar(root: Path, resolution: int, kind: str) -> Source:
    """CIFAR-10 (`data_batch_1..5`, `test_batch`) or CIFAR-100 (`train`, `test`) python pickles from a folder."""
    if kind == "cifar10":
        parts = [_unpickle(root / f"data_batch_{i}") for i in range(1, 6)]
        test = _unpickle(root / "test_batch")
        label_key, meta, names_key = "labels", _unpickle(root / "batches.meta"), "label_names"
    else:
        parts = [_unpickle(root / "train")]
        test = _unpickle(root / "test")
        label_key, meta, names_key = "fine_labels", _unpickle(root / "meta"), "fine_label_names"
    chunks = [*parts, test]
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
    images = torch.from_numpy(data)
    if resolution != 32:
        images = to_uint8(resize(images, resolution))
    return Source(kind, images, torch.from_numpy(labels), classes, test_mask)


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


def read_idx(root: Path, resolution: int) -> Source:
    """MNIST-format files (`train-images-idx3-ubyte[.gz]`, `t10k-...`; MNIST, Fashion-MNIST), grey repeated to 3
    channels, with the source's own test split."""
    images, labels = [], []
    for split in ("train", "test"):
        image_file, label_file = (_idx_path(root, name) for name in IDX_FILES[split])
        images.append(_read_idx(image_file, 3))
        labels.append(_read_idx(label_file, 1))
        if len(images[-1]) != len(labels[-1]):
            raise ConfigError(f"{image_file}: {len(images[-1])} images but {label_file.name} has "
                              f"{len(labels[-1])} labels")
    pixels = torch.from_numpy(np.concatenate(images)).unsqueeze(1)
    if pixels.shape[-1] != resolution:
        pixels = to_uint8(resize(pixels.float(), resolution))
    all_labels = torch.from_numpy(np.concatenate(labels).astype(np.int64))
    test_mask = torch.zeros(len(all_labels), dtype=torch.bool)
    test_mask[len(images[0]):] = True
    classes = tuple(str(c) for c in range(int(all_labels.max()) + 1))
    return Source(root.name, pixels.repeat(1, 3, 1, 1), all_labels, classes, test_mask, flip=False)


def detect_idx(root: Path) -> bool:
    return any((root / f"{IDX_FILES['train'][0]}{suffix}").is_file() for suffix in ("", ".gz"))


def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _load_image(path: Path, resolution: int) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as error:
        raise ConfigError(f"{path}: cannot read this image ({error})") from None
    tensor = torch.from_numpy(rgb.copy()).permute(2, 0, 1).unsqueeze(0)
    return to_uint8(resize(tensor, resolution))[0]


def read_folder(root: Path, resolution: int) -> Source:
    """Class sub-folders of images (`root/CLASS/*.png`), or `root/train/CLASS` + `root/test/CLASS` for a split."""
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
    images, labels, is_test = [], [], []
    for folder, test in roots:
        for label, name in enumerate(classes):
            files = sorted(p for p in (folder / name).glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            for file in files:
                images.append(_load_image(file, resolution))
                labels.append(label)
                is_test.append(test)
    if len(images) < 2 * len(classes):
        raise ConfigError(f"{root}: {len(images)} image(s) in {len(classes)} class folder(s); too few to split")
    test_mask = torch.tensor(is_test) if any(is_test) else None
    return Source(root.name, torch.stack(images), torch.tensor(labels, dtype=torch.int64), tuple(classes), test_mask)


def read_source(name_or_path: str, resolution: int) -> Source:
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
