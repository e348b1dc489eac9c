"""Streamed splits (torch DataLoader workers decoding from disk) against the in-memory path: the same batches, the
same splits on every run and rank, the on-disk cache of decoded images reused and rebuilt when its source changes,
the automatic choice by size, one-line errors from worker processes, and training on a streamed split."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import hwnas.data as data
from hwnas.config import DataConfig, SearchConfig, from_dict
from hwnas.data import ImageDataset, StreamDataset, load_splits, split_record
from hwnas.data.cache import cache_paths
from hwnas.data.sources import read_catalog
from hwnas.errors import ConfigError
from hwnas.training import train_network

torch.set_num_threads(1)
NAMES = ("train_weights", "train_arch", "val", "test")


def _image_folder(root, per_class=12, test_per_class=4, classes=("ant", "bee", "cat"), seed=0):
    """root/train/CLASS and root/test/CLASS of small random PNGs (20x24, so every load resizes)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("test", test_per_class)):
        for name in classes:
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i:03d}.png")
    return root


def _same_batches(a, b, **options) -> None:
    first, second = list(a.batches(8, **options)), list(b.batches(8, **options))
    assert len(first) == len(second) > 0
    for (xa, ya), (xb, yb) in zip(first, second):
        assert torch.equal(ya, yb) and torch.equal(xa, xb)


def test_stream_delivers_the_same_batches_as_memory(tmp_path):
    root = _image_folder(tmp_path / "images")
    memory = load_splits(str(root), 16, NAMES, loader="memory")
    stream = load_splits(str(root), 16, NAMES, loader="stream", workers=2)
    for name in NAMES:
        m, s = memory[name], stream[name]
        assert isinstance(m, ImageDataset) and isinstance(s, StreamDataset)
        assert (len(m), m.num_classes, m.resolution, m.classes) == (len(s), s.num_classes, s.resolution, s.classes)
        assert (m.mean, m.std, m.shift, m.flip) == (s.mean, s.std, s.shift, s.flip)
        assert torch.equal(m.batch([0, 2, 1])[0], s.batch([0, 2, 1])[0])
    assert memory["train_weights"].shift == 2 and memory["train_weights"].flip and memory["val"].shift == 0
    for rank in range(2):  # augmented, shuffled and sharded as under DDP: the same images, crops and flips
        _same_batches(memory["train_weights"], stream["train_weights"], seed=3, epoch=1, rank=rank, world=2)
    _same_batches(memory["test"], stream["test"], shuffle=False, augment=False, drop_last=False)


def test_cifar_pickles_stream_at_another_resolution(tmp_path):
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with (tmp_path / name).open("wb") as handle:
            pickle.dump({"data": rng.integers(0, 256, (12, 3072), dtype=np.uint8),
                         "labels": list(rng.integers(0, 10, 12))}, handle)
    with (tmp_path / "batches.meta").open("wb") as handle:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, handle)
    memory = load_splits(f"cifar10:{tmp_path}", 24, ("train", "test"), loader="memory")
    stream = load_splits(f"cifar10:{tmp_path}", 24, ("train", "test"), loader="stream", workers=1)
    _same_batches(memory["train"], stream["train"], seed=1, epoch=2)
    assert len(stream["test"]) == 12 and stream["test"].resolution == 24


def test_splits_are_disjoint_and_stable_across_runs_and_ranks(tmp_path):
    root = _image_folder(tmp_path / "images", per_class=30)
    splits = load_splits(str(root), 16, NAMES, loader="stream", workers=0)
    sets = {name: set(splits[name].indices.tolist()) for name in NAMES}
    assert all(not sets[a] & sets[b] for i, a in enumerate(NAMES) for b in NAMES[i + 1:])
    assert sum(map(len, sets.values())) == 3 * 34 and len(sets["test"]) == 12  # the folder's own test split

    torch.manual_seed(123)  # the global generator (a search seed) has no say in the splits
    record = split_record(str(root), 16)
    assert json.loads(json.dumps(record)) == record  # JSON-ready
    sizes = {**{n: len(sets[n]) for n in NAMES}, "train": len(sets["train_weights"] | sets["train_arch"])}
    assert {k: v["size"] for k, v in record["splits"].items()} == sizes
    code = f"import json; from hwnas.data import split_record; print(json.dumps(split_record({str(root)!r}, 16)))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONHASHSEED": "7"})
    assert other.returncode == 0, other.stderr[-2000:]
    assert json.loads(other.stdout) == record  # another process (another rank, a later run): the same splits

    other_seed = split_record(str(root), 16, split_seed=1)
    assert other_seed["fingerprint"] == record["fingerprint"] and other_seed["splits"] != record["splits"]
    shards = [torch.cat([index for index, _ in data.index_batches(len(splits["train_weights"]), 4, seed=5, epoch=0,
                                                                  rank=r, world=3)]) for r in range(3)]
    assert len({len(s) for s in shards}) == 1
    assert len(set(torch.cat(shards).tolist())) == sum(len(s) for s in shards)  # ranks share no image in an epoch

    (root / "train" / "ant" / "000.png").unlink()  # the source changed: its fingerprint and splits say so
    changed = split_record(str(root), 16)
    assert changed["fingerprint"] != record["fingerprint"] and changed["splits"]["train"] != record["splits"]["train"]


def test_cache_is_reused_then_rebuilt_when_its_source_changes(tmp_path):
    from PIL import Image

    root = _image_folder(tmp_path / "images", per_class=6, test_per_class=2)
    cache = tmp_path / "cache"
    first = load_splits(str(root), 16, ("train", "test"), loader="stream", workers=0, cache=str(cache))
    pixels, key = cache_paths(read_catalog(str(root), 16), str(root), cache)
    assert pixels.stat().st_size == 24 * 3 * 16 * 16 and json.loads(key.read_text())["images"] == 24
    built = pixels.stat().st_mtime_ns, pixels.stat().st_ino
    plain = load_splits(str(root), 16, ("train", "test"), loader="memory")
    _same_batches(first["train"], plain["train"], seed=2)  # cached pixels are the decoded pixels

    again = load_splits(str(root), 16, ("train",), loader="memory", cache=str(cache))
    assert (pixels.stat().st_mtime_ns, pixels.stat().st_ino) == built  # reused, not rebuilt
    assert torch.equal(again["train"].images, plain["train"].images)

    position = int(first["train"].indices[1])
    target = read_catalog(str(root), 16).path(position)  # same name, new content: its size and mtime differ
    Image.fromarray(np.full((20, 24, 3), 200, dtype=np.uint8)).save(target)
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))
    changed = load_splits(str(root), 16, ("train",), loader="stream", workers=0, cache=str(cache))
    assert pixels.stat().st_ino != built[1]  # rebuilt (a new file renamed over the old one)
    assert torch.all(changed["train"].reader.read(position) == 200)
    fresh = load_splits(str(root), 16, ("train",), loader="memory")["train"]
    assert torch.equal(changed["train"].batch([1])[0], fresh.batch([1])[0])
    assert not torch.equal(changed["train"].batch([1])[0], first["train"].batch([1])[0])

    Image.fromarray(np.zeros((20, 24, 3), dtype=np.uint8)).save(root / "train" / "cat" / "new.png")
    grown = load_splits(str(root), 16, ("train",), loader="stream", workers=0, cache=str(cache))
    assert len(grown["train"].reader) == 25 and pixels.stat().st_size == 25 * 3 * 16 * 16
    load_splits(str(root), 8, ("train",), loader="stream", workers=0, cache=str(cache))  # another resolution
    assert len(list(cache.glob("*.u8"))) == 2 and not list(cache.glob("*.partial"))


def test_auto_streams_above_the_threshold_and_options_are_checked(tmp_path, monkeypatch):
    root = _image_folder(tmp_path / "images", per_class=4, test_per_class=1)
    assert isinstance(load_splits(str(root), 16, ("train",))["train"], ImageDataset)
    monkeypatch.setattr(data, "IN_MEMORY_BYTES", 3 * 16 * 16 * 5)  # fewer bytes than the 12 training images need
    assert isinstance(load_splits(str(root), 16, ("train",), workers=0)["train"], StreamDataset)
    assert isinstance(load_splits(str(root), 16, ("train",), limit=4)["train"], ImageDataset)  # 4 images fit
    assert isinstance(load_splits(str(root), 16, ("train",), loader="memory")["train"], ImageDataset)
    with pytest.raises(ConfigError, match="loader 'disk': expected one of auto, memory, stream"):
        load_splits(str(root), 16, loader="disk")
    with pytest.raises(ConfigError, match="workers -1"):
        load_splits(str(root), 16, workers=-1)
    config = from_dict(SearchConfig, {"data": {"loader": "stream", "workers": 0, "cache": None}}, "config.yaml")
    assert config.data.load_options() == {**config.data.split_options(), "loader": "stream", "workers": 0,
                                          "cache": None}
    with pytest.raises(ConfigError, match="key 'workers' must be int"):
        from_dict(DataConfig, {"workers": "two"}, "config.yaml")


def test_an_unreadable_image_in_a_worker_is_one_line(tmp_path):
    root = _image_folder(tmp_path / "images", per_class=4, test_per_class=1)
    for path in (root / "train" / "bee").iterdir():
        path.write_text("not an image")
    with pytest.raises(ConfigError) as caught:  # while measuring the channel statistics, or at the first batch
        stream = load_splits(str(root), 16, ("train",), loader="stream", workers=2)
        list(stream["train"].batches(4, shuffle=False, augment=False, drop_last=False))
    message = str(caught.value)
    assert "cannot read this image" in message and "\n" not in message and "Traceback" not in message


def test_training_on_a_streamed_split_matches_memory(tmp_path):
    root = _image_folder(tmp_path / "images", per_class=10, test_per_class=2)

    def trained(split):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
        steps = []
        records = train_network(model, split, epochs=2, batch_size=8, lr=0.05, momentum=0.9, weight_decay=0.0,
                                seed=1, on_step=lambda epoch, step, total: steps.append((epoch, step, total)))
        return [(r.loss, r.train_acc) for r in records], steps

    memory = load_splits(str(root), 16, ("train",), loader="memory")["train"]
    stream = load_splits(str(root), 16, ("train",), loader="stream", workers=2)["train"]
    assert trained(memory) == trained(stream)
    assert trained(stream)[1][-1] == (1, 2, 3)  # 24 training images, batches of 8: three steps an epoch


@pytest.mark.slow  # two searches
def test_a_search_on_a_streamed_folder_equals_the_search_in_memory(folder, tmp_path, monkeypatch):
    """The search loop (weight and architecture steps, validation with batch-norm recalibration) cannot tell a
    streamed split from one in memory: the same history and the same architecture."""
    from hwnas.search.runner import run_search
    from tests.search_helpers import tiny_search_config

    root = _image_folder(tmp_path / "images", per_class=16, test_per_class=2)
    config = tiny_search_config(folder, "fbnet", data=DataConfig(source=str(root), resolution=16, batch_size=8))
    memory = run_search(config, tmp_path / "memory")
    streamed_batches = []
    original = StreamDataset.batches

    def counted(self, *args, **kwargs):
        streamed_batches.append(self.split)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StreamDataset, "batches", counted)
    monkeypatch.setattr(data, "IN_MEMORY_BYTES", 0)  # 'auto' now streams every split
    streamed = run_search(config, tmp_path / "stream")
    assert {"train_weights", "train_arch", "val"} <= set(streamed_batches)
    keys = ("weight_loss", "arch_loss", "train_acc", "val_acc", "arch_steps")
    assert [[row[k] for k in keys] for row in streamed.history] == [[row[k] for k in keys] for row in memory.history]
    assert streamed.summary["arch"] == memory.summary["arch"]
