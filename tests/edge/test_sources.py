"""Frame sources: folder order by EXIF time, video with SRT sidecar, and bad media never raising."""

from __future__ import annotations

import logging
import shutil

import cv2
import numpy as np
import pytest

from edge.sources import open_source

SRT = "".join(
    f"{i + 1}\n00:00:00,{i * 40:03d} --> 00:00:00,{i * 40 + 40:03d}\n<font>FrameCnt: {i + 1}\n"
    f"2026-05-12 10:30:0{i}.000\n[latitude: 25.{i}] [longitude: 102.{i}] [rel_alt: 30.0 abs_alt: 1930.0]</font>\n\n"
    for i in range(5))


def test_folder_is_ordered_by_exif_time_and_skips_bad_frames(flight, tmp_path, caplog):
    folder = tmp_path / "photos"
    folder.mkdir()
    images = sorted((flight.out / "images").glob("*.jpg"))[:4]
    # Names in reverse of capture order: time must win over name.
    for k, img in enumerate(images):
        shutil.copyfile(img, folder / f"IMG_{9 - k}.jpg")
    (folder / "IMG_0.jpg").write_bytes(b"")  # zero-byte frame
    (folder / "IMG_1.jpg").write_bytes(images[0].read_bytes()[:300])  # corrupt (truncated header)
    with caplog.at_level(logging.WARNING):
        frames = list(open_source(folder))
    assert [f.name for f in frames] == ["IMG_9.jpg", "IMG_8.jpg", "IMG_7.jpg", "IMG_6.jpg"]
    times = [f.geotag.time for f in frames]
    assert times == sorted(times) and all(f.geotag.has_pose for f in frames)
    assert "IMG_0.jpg" in caplog.text and "IMG_1.jpg" in caplog.text


@pytest.fixture
def video(tmp_path):
    path = tmp_path / "DJI_0001.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (320, 240))
    rng = np.random.default_rng(0)
    for _ in range(5):  # noise: large frames, so the container header is a small part of the file
        writer.write(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))
    writer.release()
    (tmp_path / "DJI_0001.SRT").write_text(SRT)
    return path


def test_video_with_srt_sidecar(video):
    frames = list(open_source(str(video), tz="+08:00"))
    assert len(frames) == 5
    assert [round(f.geotag.lat, 1) for f in frames] == [25.0, 25.1, 25.2, 25.3, 25.4]
    assert frames[0].geotag.time.isoformat() == "2026-05-12T10:30:00+08:00"


def test_video_that_ends_early_stops_cleanly(video, caplog):
    data = video.read_bytes()
    video.write_bytes(data[: len(data) * 3 // 5])  # the last frames and the index are gone
    with caplog.at_level(logging.WARNING):
        frames = list(open_source(str(video)))
    assert 0 < len(frames) < 5
    assert "ended after" in caplog.text


def test_unreadable_camera_ends_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        assert list(open_source("97")) == []
    assert "cannot open" in caplog.text


def test_unknown_source_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        open_source(str(tmp_path / "nothing-here"))
