"""Data: the embedded digits (plain and distorted), CIFAR python pickles, MNIST-format idx files and image folders;
disjoint fixed splits; torch transforms."""

from __future__ import annotations

import gzip
import math
import pickle

import numpy as np
import pytest
import torch

from hwnas.data import SPLITS, load_dataset, load_splits
from hwnas.data.transforms import affine_warp, random_hflip, random_shift, resize
from hwnas.errors import ConfigError


def _all_indices(splits):
    return {name: {tuple(img.flatten()[:64].tolist()) + (int(lbl),) for img, lbl in zip(d.images, d.labels)}
            for name, d in splits.items()}


def test_digits_splits_are_disjoint_and_fixed():
    splits = load_splits("digits", 16)
    sizes = {name: len(splits[name]) for name in SPLITS}
    assert sizes["train"] == sizes["train_weights"] + sizes["train_arch"]
    assert sizes["train"] + sizes["val"] + sizes["test"] == 1797
    assert abs(sizes["train_arch"] / sizes["train"] - 0.2) < 0.02
    again = load_splits("digits", 16, ("test",))
    assert torch.equal(again["test"].labels, splits["test"].labels)
    assert torch.equal(again["test"].images, splits["test"].images)
    x, y = splits["val"].batch(range(8))
    assert x.shape == (8, 3, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert splits["train"].num_classes == 10 and splits["test"].shift == 0 and splits["train"].shift > 0
    seen = sum(len(yb) for _, yb in splits["test"].batches(100, shuffle=False, augment=False, drop_last=False))
    assert seen == len(splits["test"])


def test_digits_hard_is_a_fixed_distortion_of_digits():
    plain, hard = load_dataset("digits", 16, "test"), load_dataset("digits-hard", 16, "test")
    again = load_dataset("digits-hard", 16, "test")
    assert torch.equal(hard.images, again.images) and torch.equal(hard.labels, plain.labels)
    assert hard.images.shape == plain.images.shape and hard.name == "digits-hard" and not hard.flip
    assert not torch.equal(hard.images[:, 0], hard.images[:, 1]), "colours differ per channel"
    difference = (hard.images.float() - plain.images.float()).abs().mean()
    assert difference > 30, f"distortion too weak: mean pixel change {difference:.1f} of 255"


def test_affine_warp_identity_rotation_and_shift():
    images = torch.rand(2, 1, 9, 9)
    zero, one, still = torch.zeros(2), torch.ones(2), torch.zeros(2, 2)
    assert torch.allclose(affine_warp(images, zero, one, zero, still), images, atol=1e-5)
    quarter = affine_warp(images, torch.full((2,), math.pi / 2), one, zero, still)
    assert torch.allclose(quarter, torch.rot90(images, -1, (-2, -1)), atol=1e-4)  # clockwise: rows run downwards
    one_pixel_right = affine_warp(images, zero, one, zero, torch.tensor([[2 / 9, 0.0]] * 2))
    assert torch.allclose(one_pixel_right[..., 1:], images[..., :-1], atol=1e-5)


def test_weight_and_arch_splits_do_not_share_images():
    splits = load_splits("digits", 8, ("train_weights", "train_arch", "val", "test"))
    keys = _all_indices(splits)
    names = list(keys)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            # identical digit images can occur twice in the source; nearly all must differ
            assert len(keys[a] & keys[b]) <= 2, (a, b)


def test_batches_shard_over_ranks_with_equal_counts():
    data = load_dataset("digits", 8, "train_weights")
    counts = [sum(1 for _ in data.batches(32, seed=1, epoch=2, rank=r, world=3)) for r in range(3)]
    assert len(set(counts)) == 1
    first = [y for _, y in data.batches(32, seed=1, epoch=2)]
    second = [y for _, y in data.batches(32, seed=1, epoch=2)]
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def _write_cifar10(root, per_batch=20):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with (root / name).open("wb") as handle:
            pickle.dump({"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                         "labels": list(rng.integers(0, 10, per_batch))}, handle)
    with (root / "batches.meta").open("wb") as handle:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, handle)


def test_cifar10_pickles(tmp_path):
    _write_cifar10(tmp_path)
    splits = load_splits(str(tmp_path), 32, ("train", "test"))
    assert len(splits["test"]) == 20 and len(splits["train"]) > 70
    assert splits["train"].classes[3] == "class3" and splits["train"].images.shape[1:] == (3, 32, 32)
    assert len(load_dataset(f"cifar10:{tmp_path}", 16, "test").images[0, 0]) == 16


def test_cifar100_pickles(tmp_path):
    rng = np.random.default_rng(1)
    for name, n in (("train", 60), ("test", 10)):
        with (tmp_path / name).open("wb") as handle:
            pickle.dump({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         "fine_labels": list(rng.integers(0, 100, n))}, handle)
    with (tmp_path / "meta").open("wb") as handle:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)]}, handle)
    test = load_dataset(f"cifar100:{tmp_path}", 32, "test")
    assert len(test) == 10 and test.num_classes == 100


def test_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(2)
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / label / f"{i}.png")
    splits = load_splits(str(tmp_path), 16, ("train", "test"))
    assert splits["train"].classes == ("cat", "dog")
    assert len(splits["train"]) + len(splits["test"]) <= 12 and splits["train"].images.shape[-1] == 16


def _write_idx(path, array, compress):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path.with_name(path.name + ".gz"), "wb") if compress else path.open("wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def _write_mnist(root, train=30, test=12, compress=True):
    rng = np.random.default_rng(3)
    for prefix, n in (("train", train), ("t10k", test)):
        _write_idx(root / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), compress)
        _write_idx(root / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10, compress)


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_format_idx_files(tmp_path, compress):
    _write_mnist(tmp_path, compress=compress)
    splits = load_splits(str(tmp_path), 32, ("train", "test"))
    assert len(splits["test"]) == 12 and splits["test"].labels.tolist() == [i % 10 for i in range(12)]
    assert splits["train"].images.shape[1:] == (3, 32, 32) and splits["train"].num_classes == 10
    native = load_dataset(str(tmp_path), 28, "test")
    with (gzip.open if compress else open)(tmp_path / f"t10k-images-idx3-ubyte{'.gz' if compress else ''}", "rb") as f:
        raw = np.frombuffer(f.read()[16:], np.uint8)
    assert torch.equal(native.images[:, 0], torch.from_numpy(raw.reshape(12, 28, 28).copy()))
    assert torch.equal(native.images[:, 0], native.images[:, 2])


def test_train_limit_keeps_every_test_and_val_image(tmp_path):
    _write_mnist(tmp_path, train=60)
    names = ("train", "train_weights", "train_arch", "val", "test")
    whole = load_splits(str(tmp_path), 28, names)
    cut = load_splits(str(tmp_path), 28, names, train_limit=20)
    assert len(cut["train"]) == 20 < len(whole["train"])
    assert len(cut["train_weights"]) + len(cut["train_arch"]) == 20 and len(cut["train_arch"]) > 0
    for name in ("val", "test"):
        assert torch.equal(cut[name].images, whole[name].images)
    kept = {tuple(img.flatten().tolist()) for img in whole["train"].images}
    assert all(tuple(img.flatten().tolist()) in kept for img in cut["train"].images)
    with pytest.raises(ConfigError, match="train_limit -1"):
        load_splits(str(tmp_path), 28, names, train_limit=-1)


def test_broken_idx_files_are_one_line(tmp_path):
    _write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ConfigError, match="t10k-labels-idx1-ubyte.*missing"):
        load_dataset(str(tmp_path), 28)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(5), compress=True)
    with pytest.raises(ConfigError, match="12 images but t10k-labels-idx1-ubyte.gz has 5 labels"):
        load_dataset(str(tmp_path), 28)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\0\0\x08\x01" + (99).to_bytes(4, "big")))
    with pytest.raises(ConfigError, match="header says"):
        load_dataset(str(tmp_path), 28)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"PK\x03\x04 not idx"))
    with pytest.raises(ConfigError, match="not an idx file"):
        load_dataset(str(tmp_path), 28)


@pytest.mark.parametrize("source,message", [("nowhere/at/all", "not 'digits'"),
                                            ("cifar10:/nonexistent", "not a folder")])
def test_bad_sources(source, message):
    with pytest.raises(ConfigError, match=message):
        load_dataset(source, 16)


def test_broken_image_is_one_line(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("x.png", "y.png"):  # two: a folder of one image is refused before any is read (too few to split)
        (tmp_path / "a" / name).write_text("not an image")
    with pytest.raises(ConfigError, match="cannot read this image"):
        load_dataset(str(tmp_path), 16)


def test_transforms():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    assert resize(images, 4).shape == (2, 3, 4, 4)
    generator = torch.Generator().manual_seed(0)
    shifted = random_shift(images, 2, generator)
    assert shifted.shape == images.shape and not torch.equal(shifted, images)
    flipped = random_hflip(images, torch.Generator().manual_seed(1))
    assert all(torch.equal(f, i) or torch.equal(f, i.flip(-1)) for f, i in zip(flipped, images))
    assert torch.equal(random_shift(images, 0, generator), images)
