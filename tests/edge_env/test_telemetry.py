"""Telemetry sidecars: DJI SRT variants seen in the wild, CSV logs, time zones, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.telemetry import TelemetryError, load_track, parse_csv, parse_srt, parse_tz

# Mini 3 / Air 2S / Mavic 3: bracketed fields, rel_alt and abs_alt in one bracket, <font> tags.
NEW = """1
00:00:00,000 --> 00:00:00,033
<font size="28">FrameCnt: 1, DiffTime: 33ms
2023-04-15 14:22:31.123
[iso: 100] [shutter: 1/1000.0] [fnum: 2.8] [ev: 0] [color_md: default] [focal_len: 24.00] [latitude: 22.543210] [longitude: 113.943210] [rel_alt: 50.200 abs_alt: 120.300] [ct: 5500] </font>

2
00:00:00,033 --> 00:00:00,066
<font size="28">FrameCnt: 2, DiffTime: 33ms
2023-04-15 14:22:31.156
[iso: 100] [shutter: 1/1000.0] [fnum: 2.8] [ev: 0] [latitude: 22.543215] [longitude: 113.943220] [rel_alt: 50.300 abs_alt: 120.400] </font>
"""

# Mavic 2: spaced colons, the `longtitude` typo, one altitude, microseconds after the ms.
MAVIC2 = """1
00:00:00,000 --> 00:00:00,033
<font size="36">SrtCnt : 1, DiffTime : 33ms
2019-03-22 16:02:30,442,775
[iso : 100] [shutter : 1/400.0] [fnum : 280] [ev : 0] [ct : 5400] [color_md : default] [focal_len : 280] [latitude : 47.6205] [longtitude : -122.3493] [altitude: 56.000000] </font>
"""

# Phantom 4 / Mavic Pro: GPS(lon, lat, alt), dotted date, fields over several lines.
OLD = """1
00:00:00,000 --> 00:00:01,000
HOME(113.9432,22.5432) 2017.08.05 14:11:51
GPS(113.9433,22.5433,16) ISO:100 Shutter:60 EV:0 F-NUM:2.2
BAROMETER:30.0

2
00:00:01,000 --> 00:00:02,000
HOME(113.9432,22.5432) 2017.08.05 14:11:52
GPS(113.9435,22.5436,17) ISO:100
Shutter:60 EV:0 F-NUM:2.2 BAROMETER:30.5
"""

# Before GPS lock DJI writes zeros: not a position.
NO_FIX = """1
00:00:00,000 --> 00:00:00,033
<font size="28">FrameCnt: 1, DiffTime: 33ms
2023-04-15 14:22:31.123
[iso: 100] [latitude: 0.000000] [longitude: 0.000000] [rel_alt: 0.000 abs_alt: 0.000] </font>
"""


def test_new_layout():
    a, b = parse_srt(NEW, parse_tz("+08:00"))
    assert (a.frame, a.lat, a.lon, a.alt, a.rel_alt) == (1, 22.54321, 113.94321, 120.3, 50.2)
    assert a.to_json()["time"] == "2023-04-15T06:22:31.123000Z"
    assert b.frame == 2 and b.lat == 22.543215


def test_mavic2_spaced_colons_and_longtitude_typo():
    (f,) = parse_srt(MAVIC2, parse_tz("America/Los_Angeles"))
    assert (f.frame, f.lat, f.lon, f.alt) == (1, 47.6205, -122.3493, 56.0)
    assert f.time == datetime(2019, 3, 22, 23, 2, 30, 442775, tzinfo=UTC)  # PDT = UTC-7 on that day


def test_old_gps_lon_lat_alt_and_multiline_fields():
    a, b = parse_srt(OLD)
    assert (a.lat, a.lon, a.alt, a.rel_alt) == (22.5433, 113.9433, 16.0, 30.0)
    assert (b.frame, b.lat, b.lon, b.alt, b.rel_alt) == (2, 22.5436, 113.9435, 17.0, 30.5)
    assert a.time == datetime(2017, 8, 5, 14, 11, 51) and a.to_json()["time"] == "2017-08-05T14:11:51"  # no Z


def test_windows_line_endings_and_bom():
    (f, _) = parse_srt("\ufeff" + NEW.replace("\n", "\r\n"))
    assert f.lat == 22.54321


def test_csv_with_offsets_in_the_file_and_header_aliases():
    text = "Time,Latitude,Longitude,Altitude\n2026-05-12T02:30:00Z,25.1,102.7,1900.5\n" \
           "2026-05-12T10:30:01+08:00,25.2,102.8,1901\n"
    a, b = parse_csv(text, parse_tz("+05:00"))  # the file's own offsets win
    assert a.to_json() == {"frame": 0, "time": "2026-05-12T02:30:00Z", "lat": 25.1, "lon": 102.7, "alt": 1900.5}
    assert b.time.astimezone(UTC) == datetime(2026, 5, 12, 2, 30, 1, tzinfo=UTC)


def test_synthetic_flight_telemetry_round_trips(flight_telemetry):
    fixes = load_track(flight_telemetry)
    assert len(fixes) == 3 and fixes[0].time.tzinfo is not None


@pytest.fixture
def flight_telemetry(tmp_path):
    path = tmp_path / "telemetry.csv"
    t0 = datetime(2026, 5, 12, 2, 30, tzinfo=UTC)
    rows = [f"{i},{(t0 + timedelta(seconds=i)).isoformat().replace('+00:00', 'Z')},25.{i},102.{i},19{i}0"
            for i in range(3)]
    path.write_text("frame,time,lat,lon,alt\n" + "\n".join(rows) + "\n")
    return path


def test_no_position_is_a_clear_error_and_exit_2(tmp_path):
    for name, text in (("nofix.srt", NO_FIX), ("empty.srt", ""), ("other.csv", "a,b\n1,2\n")):
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(TelemetryError, match="no position"):
            load_track(path)
        out = subprocess.run([sys.executable, "-m", "pli", "telemetry", str(path)], capture_output=True, text=True)
        assert out.returncode == 2 and out.stdout == ""
        assert out.stderr.count("\n") == 1 and "no position" in out.stderr


def test_cli_prints_json_lines(tmp_path):
    path = tmp_path / "DJI_0001.SRT"
    path.write_text(NEW)
    out = subprocess.run([sys.executable, "-m", "pli", "telemetry", str(path), "--tz", "Asia/Shanghai"],
                         capture_output=True, text=True, check=True)
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [d["frame"] for d in lines] == [1, 2]
    assert lines[0] == {"frame": 1, "time": "2023-04-15T06:22:31.123000Z", "lat": 22.54321, "lon": 113.94321,
                        "alt": 120.3, "rel_alt": 50.2}


def test_time_zones():
    assert parse_tz("+0530") == timezone(timedelta(hours=5, minutes=30))
    assert parse_tz("UTC") is UTC
    with pytest.raises(TelemetryError):
        parse_tz("Mars/Olympus")


@settings(max_examples=300)
@given(st.text(alphabet=st.sampled_from(list("[]():,.-+ \n\r<>/0123456789GPSlatitudelongtude_absrelFrameCnt")),
               max_size=400))
def test_any_text_parses_or_fails_with_our_error_only(text):
    for parse in (parse_srt, parse_csv):
        try:
            fixes = parse(text)
        except TelemetryError:
            continue
        for fix in fixes:
            assert -90 <= fix.lat <= 90 and -180 <= fix.lon <= 180
