"""The `pli` command as a user runs it: subcommands, help, tables, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pli.cli import main


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pli", *args], capture_output=True, text=True)


@pytest.mark.parametrize("cmd", [[], ["data"], ["data", "import"], ["data", "synth"], ["data", "augment"],
                                 ["data", "stats"]])
def test_every_command_has_help(cmd):
    out = run(*cmd, "--help")
    assert out.returncode == 0 and "usage: pli" in out.stdout


def test_synth_then_stats(tmp_path):
    out = run("data", "synth", "--out", str(tmp_path / "f"), "--frames", "3", "--size", "480x270", "--seed", "8")
    assert out.returncode == 0, out.stderr
    assert "flight synth0008: 3 frames of 480x270" in out.stdout
    stats = run("data", "stats", str(tmp_path / "f"), "--json")
    assert stats.returncode == 0, stats.stderr
    doc = json.loads(stats.stdout)
    assert doc["all"]["images"] == 3
    assert sum(doc["all"]["boxes"].values()) == sum(
        len(p.read_text().splitlines()) for p in (tmp_path / "f/labels").glob("*.txt"))
    table = run("data", "stats", str(tmp_path / "f"))
    assert "S/M/L" in table.stdout and "insulator" in table.stdout


def test_relative_dataset_paths(flight, tmp_path, monkeypatch):
    import shutil

    shutil.copytree(flight.out, tmp_path / "here" / "flight")
    monkeypatch.chdir(tmp_path / "here")
    out = run("data", "stats", "flight", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["all"]["images"] == flight.frames


def test_import_prints_per_split_table(tmp_path, flight):
    out = run("data", "import", str(flight.out), "--format", "yolo", "--out", str(tmp_path / "d"),
              "--split", "0.8,0.2")
    assert out.returncode == 0, out.stderr
    rows = {line.split()[1]: line.split()[3] for line in out.stdout.splitlines() if line.startswith("│")}
    assert rows["train"] == "8" and rows["val"] == "2" and rows["all"] == str(flight.frames)
    assert "warnings" not in out.stdout
    # One flight is one group: with --group-by parent it cannot straddle train and val.
    grouped = run("data", "import", str(flight.out), "--format", "yolo", "--out", str(tmp_path / "g"),
                  "--split", "0.8,0.2", "--group-by", "parent")
    rows = {line.split()[1] for line in grouped.stdout.splitlines() if line.startswith("│")}
    assert rows == {"train", "all"}


@pytest.mark.parametrize("args,message", [
    (["data", "import", "/nonexistent", "--format", "voc", "--out", "x"], "no such file"),
    (["data", "synth", "--out", "x", "--frames", "2", "--size", "big"], "WIDTHxHEIGHT"),
    (["data", "import", ".", "--format", "voc", "--out", "x", "--split", "0.5,0.6"], "summing to 1"),
    (["data", "stats", "/nonexistent"], "no data.yaml"),
])
def test_user_errors_are_one_line_and_exit_2(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pli: error:") and message in err[0]
