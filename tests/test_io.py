"""Atomic writes: a failure leaves what was there before, a success the whole new thing."""

import os
import stat

import pytest

from arcsub.errors import ConfigError, DatasetNotFoundError, TaskFormatError
from arcsub.io import atomic_dir, folder_bytes, read_json, read_toml, write_json_atomic, write_text_atomic


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_atomic_dir_replaces_a_folder_whole(tmp_path):
    target = tmp_path / "adapter"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("one")
    assert (target / "a.txt").read_text() == "one"
    assert stat.S_IMODE(target.stat().st_mode) == 0o777 & ~_umask()

    with atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("two")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]  # the old folder's files are gone
    assert _leftovers(tmp_path) == []


def test_atomic_dir_keeps_the_old_folder_when_the_block_fails(tmp_path):
    target = tmp_path / "adapter"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("one")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("crash while writing")
    assert (target / "a.txt").read_text() == "one"
    assert _leftovers(tmp_path) == []


def test_atomic_dir_puts_the_old_folder_back_when_the_swap_fails(tmp_path, monkeypatch):
    target = tmp_path / "adapter"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("one")
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(src).startswith(str(tmp_path / ".adapter.")) and ".old." not in str(src):
            raise OSError("disk full")  # the new folder cannot be moved in
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"), atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("two")
    assert (target / "a.txt").read_text() == "one"
    assert _leftovers(tmp_path) == []


def test_atomic_file_writes_replace_and_leave_no_temp_files(tmp_path):
    path = tmp_path / "sub" / "submission.json"
    write_json_atomic(path, {"a": 1})
    write_text_atomic(path, '{"a": 2}\n')
    assert path.read_text() == '{"a": 2}\n'
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask()
    assert _leftovers(path.parent) == []


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_folder_bytes_counts_each_file_once_and_a_symlink_as_itself(tmp_path):
    folder = tmp_path / "bundle"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"x" * 1000)
    (folder / "sub" / "b.bin").write_bytes(b"y" * 300)
    assert folder_bytes(folder) == 1300

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "big.bin").write_bytes(b"z" * 5000)
    (folder / "to_a").symlink_to(folder / "a.bin")  # a target inside: counted once, under its own name
    (folder / "to_big").symlink_to(outside / "big.bin")  # a target outside: not on this folder's disk
    (folder / "to_dir").symlink_to(outside, target_is_directory=True)  # not entered
    links = sum(os.lstat(folder / name).st_size for name in ("to_a", "to_big", "to_dir"))
    assert 0 < links < 1000
    assert folder_bytes(folder) == 1300 + links
    assert folder_bytes(tmp_path / "missing") == 0


def test_the_reader_names_the_file_and_the_fix_in_one_line(tmp_path):
    good = tmp_path / "good.json"
    good.write_text('{"a": [1, 2]}')
    assert read_json(good, TaskFormatError) == {"a": [1, 2]}
    toml = tmp_path / "c.toml"
    toml.write_text("[prompt]\nmax = 3\n")
    assert read_toml(toml, ConfigError) == {"prompt": {"max": 3}}

    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(TaskFormatError, match=r"broken.json: not valid JSON \(Expecting property name.*\); fix it$"):
        read_json(broken, TaskFormatError, fix="fix it")
    (tmp_path / "bad.toml").write_text("[prompt\n")
    with pytest.raises(ConfigError, match=r"bad.toml: not valid TOML \(") as caught:
        read_toml(tmp_path / "bad.toml", ConfigError)
    assert "\n" not in str(caught.value) and caught.value.__cause__ is None
    (tmp_path / "latin1.json").write_bytes(b'"\xe9"')
    with pytest.raises(TaskFormatError, match="latin1.json: not valid JSON"):
        read_json(tmp_path / "latin1.json", TaskFormatError)
    with pytest.raises(TaskFormatError, match=r"unreadable .*; fix it$"):
        read_json(tmp_path, TaskFormatError, fix="fix it")  # a folder

    with pytest.raises(TaskFormatError, match=r"nope.json: file not found$"):
        read_json(tmp_path / "nope.json", TaskFormatError)
    with pytest.raises(DatasetNotFoundError, match=r"nope.json: no tasks here; pass a file$"):
        read_json(tmp_path / "nope.json", TaskFormatError, missing="no tasks here; pass a file",
                  missing_error=DatasetNotFoundError)  # fmt: skip
