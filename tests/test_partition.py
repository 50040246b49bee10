"""Label partitions for semi-supervised runs: deterministic, disjoint, covering, nested, reloadable."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import pytest

from slimseg_ros.errors import SlimsegError
from slimseg_ros.training.partition import (
    list_unlabeled_folder,
    load_partition,
    make_partition,
    parse_fraction,
    save_partition,
    split_stems,
)

STEMS = [f"seq_{i:04d}" for i in range(367)]  # CamVid train size
DATA = Path(os.environ.get("SLIMSEG_DATA", Path(__file__).resolve().parents[1].parent / "shared/data/camvid"))


@pytest.mark.parametrize("fraction", ["1/16", "1/8", "1/4", "1/2"])
def test_partition_disjoint_covering_and_sized(fraction: str) -> None:
    p = make_partition(STEMS, fraction, seed=3)
    assert set(p.labeled).isdisjoint(p.unlabeled)
    assert set(p.labeled) | set(p.unlabeled) == set(STEMS)
    assert len(p.labeled) == round(367 * Fraction(fraction))


def test_partition_deterministic_and_seed_dependent() -> None:
    a = make_partition(STEMS, "1/8", seed=7)
    b = make_partition(list(reversed(STEMS)), 0.125, seed=7)  # input order must not matter
    c = make_partition(STEMS, "1/8", seed=8)
    assert a == b
    assert a.labeled != c.labeled


def test_smaller_fractions_nested_in_larger() -> None:
    sets = [set(make_partition(STEMS, f, seed=1).labeled) for f in ("1/16", "1/8", "1/4", "1/2")]
    assert sets[0] < sets[1] < sets[2] < sets[3]


def test_bad_fraction_and_empty_split_are_clear_errors() -> None:
    with pytest.raises(SlimsegError, match="not supported"):
        parse_fraction("1/3")
    with pytest.raises(SlimsegError, match="not a number"):
        parse_fraction("eighth")
    with pytest.raises(SlimsegError, match="empty"):
        make_partition([], "1/8")
    with pytest.raises(SlimsegError, match="duplicate"):
        make_partition(["a", "a"], "1/2")


def test_save_and_load_roundtrip(tmp_path: Path) -> None:
    p = make_partition(STEMS, "1/16", seed=0)
    save_partition(p, tmp_path / "run")
    assert (tmp_path / "run/labeled.txt").read_text().split() == list(p.labeled)
    assert (tmp_path / "run/unlabeled.txt").read_text().split() == list(p.unlabeled)
    assert load_partition(tmp_path / "run") == p
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(SlimsegError, match="malformed"):
        load_partition(tmp_path / "bad.json")
    with pytest.raises(SlimsegError, match="not found"):
        load_partition(tmp_path / "missing.json")


def test_unlabeled_folder_listing(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("b.jpg", "sub/a.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_unlabeled_folder(tmp_path)] == ["b.jpg", "a.png"]
    with pytest.raises(SlimsegError, match="no images"):
        list_unlabeled_folder(_empty(tmp_path))


def _empty(tmp_path: Path) -> Path:
    d = tmp_path / "empty"
    d.mkdir()
    return d


@pytest.mark.skipif(not DATA.is_dir(), reason=f"CamVid not found at {DATA} (set SLIMSEG_DATA)")
def test_partition_of_real_camvid_train() -> None:
    stems = split_stems(DATA, "train")
    assert len(stems) == 367
    p = make_partition(stems, "1/8", seed=0)
    assert len(p.labeled) == 46 and len(p.unlabeled) == 321
