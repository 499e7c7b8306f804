"""Tiles cover the frame exactly and carry their boxes at native resolution."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.tiling import tile_origins, tile_windows
from training.dataset import YoloDataset, label_path_for, read_label_file
from training.tiles import tile_boxes, tile_dataset


@given(st.integers(1, 9000), st.integers(16, 2048), st.floats(0, 0.9))
def test_tiles_cover_the_frame_with_full_size_tiles(length, tile, overlap):
    starts = tile_origins(length, tile, overlap)
    assert starts[0] == 0 and starts == sorted(set(starts))
    ends = [min(s + tile, length) for s in starts]
    assert ends[-1] == length
    assert all(b <= e for b, e in zip(starts[1:], ends, strict=False))  # no gaps
    if length >= tile:
        assert all(e - s == tile for s, e in zip(starts, ends, strict=True))


def test_tile_windows_4k():
    w = tile_windows(4000, 3000, 640, 0.2)
    assert len(w) == 8 * 6 and (w[:, 2] - w[:, 0] == 640).all() and w[:, 2].max() == 4000 and w[:, 3].max() == 3000
    with pytest.raises(ValueError):
        tile_origins(100, 10, 1.0)


def test_tile_boxes_keeps_mostly_inside_boxes_in_window_coordinates():
    xyxy = np.array([[10, 10, 50, 50], [600, 100, 700, 140], [630, 300, 700, 340], [2000, 10, 2010, 20]], float)
    boxes, keep = tile_boxes(xyxy, np.array([0, 0, 640, 640]), min_visibility=0.4)
    assert keep.tolist() == [0, 1]  # box 2 has 10/70 inside, box 3 is elsewhere
    np.testing.assert_array_equal(boxes, [[10, 10, 50, 50], [600, 100, 640, 140]])
    boxes, keep = tile_boxes(xyxy, np.array([512, 0, 1152, 640]), min_visibility=0.4)
    assert keep.tolist() == [1, 2]
    np.testing.assert_array_equal(boxes[0], [88, 100, 188, 140])


def test_tile_dataset_reproduces_boxes_at_native_size(flight, tmp_path):
    counts = tile_dataset(flight.out, tmp_path / "t", size=320, overlap=0.25, keep_empty=1.0, seed=0,
                          progress=False)
    ds = YoloDataset.open(tmp_path / "t")
    assert counts == {"train": flight.frames * len(tile_windows(960, 540, 320, 0.25))}
    src = YoloDataset.open(flight.out)
    # Every box fully inside some tile appears there with the same size in pixels.
    img = src.images("train")[0]
    xyxy, labels = read_label_file(label_path_for(img), 960, 540, src.names)
    tiles = [p for p in ds.images("train") if p.stem.startswith(img.stem + "_")]
    found = 0
    for box, label in zip(xyxy, labels, strict=True):
        for t in tiles:
            x0, y0 = (int(v[1:]) for v in t.stem.split("_")[-2:])
            if box[0] >= x0 and box[1] >= y0 and box[2] <= x0 + 320 and box[3] <= y0 + 320:
                txyxy, tlabels = read_label_file(label_path_for(t), 320, 320, ds.names)
                match = np.abs(txyxy - (box - [x0, y0, x0, y0])).max(axis=1) < 0.01
                assert match.any() and tlabels[int(np.argmax(match))] == label
                found += 1
                break
    assert found > 0
