from __future__ import annotations

import json

import pytest

from arcsub.bundle.metadata import (
    DATASET_METADATA,
    KERNEL_METADATA,
    MetadataError,
    check_upload_folder,
    dataset_metadata,
    kernel_metadata,
    validate_dataset_metadata,
    validate_kernel_metadata,
)
from arcsub.errors import ArcsubError


def good_kernel() -> dict:
    return kernel_metadata(
        owner="alice",
        slug="arcsub-arc-prize-2024",
        title="arcsub arc-prize-2024",
        machine_shape="NvidiaTeslaT4",
        competition="arc-prize-2024",
        dataset_sources=["alice/arcsub-wheels", "alice/arcsub-model"],
        model_sources=["google/gemma/transformers/2b/3"],
        kernel_sources=["alice/other-kernel"],
    )


def good_dataset() -> dict:
    return dataset_metadata(owner="alice", slug="arcsub-wheels", title="arcsub wheels (kaggle)")


@pytest.fixture
def kernel_dir(tmp_path):
    folder = tmp_path / "kernel"
    folder.mkdir()
    (folder / "main.py").write_text("print('hi')\n")
    return folder


@pytest.fixture
def dataset_dir(tmp_path):
    folder = tmp_path / "wheels"
    folder.mkdir()
    (folder / "arcsub-0.1.0-py3-none-any.whl").write_bytes(b"PK")
    return folder


def test_builders_write_every_key():
    meta = good_kernel()
    assert meta["id"] == "alice/arcsub-arc-prize-2024"
    assert meta["enable_internet"] is False and meta["is_private"] is True and meta["enable_gpu"] is True
    assert meta["competition_sources"] == ["arc-prize-2024"]
    assert meta["language"] == "python" and meta["kernel_type"] == "script" and meta["code_file"] == "main.py"
    assert good_dataset() == {
        "title": "arcsub wheels (kaggle)",
        "id": "alice/arcsub-wheels",
        "licenses": [{"name": "CC0-1.0"}],
    }


def test_built_metadata_validates_clean(kernel_dir, dataset_dir):
    assert validate_kernel_metadata(good_kernel(), kernel_dir) == []
    assert validate_dataset_metadata(good_dataset(), dataset_dir) == []
    # the CLI's string booleans and a versioned dataset source are accepted too
    meta = good_kernel() | {"is_private": "True", "enable_internet": "false", "dataset_sources": ["a/bbbbbb/3"]}
    assert validate_kernel_metadata(meta, kernel_dir) == []


def _without(key):
    def change(meta):
        del meta[key]

    return change


def _set(key, value):
    def change(meta):
        meta[key] = value

    return change


KERNEL_CASES = [
    # (name, change, words the message must hold)
    ("no id", lambda m: m.pop("id"), ["id_no", "id"]),
    ("id without owner", _set("id", "arcsub-kernel"), ["id", "owner/kernel-slug"]),
    ("id with version", _set("id", "alice/arcsub-arc-prize-2024/3"), ["id", "version"]),
    ("short slug", _set("id", "alice/abc"), ["id slug", "at least 5"]),
    ("slug syntax", _set("id", "alice/Arcsub_Kernel"), ["id slug", "lowercase"]),
    ("bad id_no", _set("id_no", "12a"), ["id_no", "integer"]),
    ("short title", _set("title", "abc"), ['title "abc" has 3 characters', "at least 5"]),
    ("title not the slug", _set("title", "Something else"), ["title", "slug"]),
    ("missing code file", _set("code_file", "nope.py"), ["code_file", "not a file"]),
    ("code file outside", _set("code_file", "../main.py"), ["code_file", "outside"]),
    ("cli language", _set("language", "julia"), ["language", "python|r|rmarkdown"]),
    ("policy language", _set("language", "r"), ["language", "python"]),
    ("cli kernel type", _set("kernel_type", "app"), ["kernel_type", "script|notebook"]),
    ("policy kernel type", _set("kernel_type", "notebook"), ["kernel_type", "script"]),
    ("bool as int", _set("is_private", 1), ["is_private", "get_bool"]),
    ("bool as word", _set("enable_gpu", "yes"), ["enable_gpu", "get_bool"]),
    ("public", _set("is_private", False), ["is_private", "true"]),
    ("no gpu", _set("enable_gpu", "false"), ["enable_gpu", "true"]),
    ("internet on", _set("enable_internet", True), ["enable_internet", "offline"]),
    ("internet missing", _without("enable_internet"), ["enable_internet is missing"]),
    ("tpu", _set("enable_tpu", True), ["enable_tpu", "false"]),
    ("retired shape", _set("machine_shape", "NvidiaTeslaP100"), ["machine_shape", "retired"]),
    ("unknown shape", _set("machine_shape", "Gpu"), ["machine_shape", "NvidiaL4"]),
    ("misspelt shape", _set("machine_shape", "nvidiateslat4"), ["machine_shape", '"NvidiaTeslaT4"']),
    ("empty shape", _set("machine_shape", ""), ["machine_shape"]),
    ("dataset source", _set("dataset_sources", ["arcsub-wheels"]), ["dataset_sources", "owner/dataset-slug"]),
    ("dataset source version", _set("dataset_sources", ["a/bbbbbb/x"]), ["dataset_sources", "version"]),
    ("model source parts", _set("model_sources", ["google/gemma/transformers/2b"]), ["model_sources", "five"]),
    ("model source version", _set("model_sources", ["g/m/f/v/latest"]), ["model_sources", "version"]),
    ("kernel source", _set("kernel_sources", ["a/b/c/d"]), ["kernel_sources", "owner/kernel-slug"]),
    ("kernel source slug", _set("kernel_sources", ["alice/abc"]), ["kernel_sources", "at least 5"]),
    ("sources not a list", _set("dataset_sources", "alice/arcsub-wheels"), ["dataset_sources", "list"]),
    ("source not a string", _set("kernel_sources", [3]), ["kernel_sources", "not a string"]),
    ("no competition", _set("competition_sources", []), ["competition_sources", "empty"]),
    ("competition with owner", _set("competition_sources", ["x/arc"]), ["competition_sources"]),
    ("competition missing", _without("competition_sources"), ["competition_sources is missing"]),
    ("machine missing", _without("machine_shape"), ["machine_shape is missing"]),
    ("unknown key", _set("enable_internets", False), ["unknown key", "enable_internets"]),
    ("pinning", _set("docker_image_pinning_type", "newest"), ["docker_image_pinning_type", "original|latest"]),
]


@pytest.mark.parametrize("name,change,words", KERNEL_CASES, ids=[c[0] for c in KERNEL_CASES])
def test_each_kernel_rule(kernel_dir, name, change, words):
    meta = good_kernel()
    change(meta)
    problems = validate_kernel_metadata(meta, kernel_dir)
    assert len(problems) >= 1, name
    hit = [p for p in problems if all(w in p for w in words)]
    assert hit, problems
    assert all(p.startswith(str(kernel_dir / KERNEL_METADATA) + ": ") for p in problems)


def test_title_message_reads_well(kernel_dir):
    meta = good_kernel() | {"title": "abc"}
    assert validate_kernel_metadata(meta, kernel_dir) == [
        f'{kernel_dir / KERNEL_METADATA}: title "abc" has 3 characters; the kaggle CLI needs at least 5'
    ]


def test_non_utf8_code_file(kernel_dir):
    (kernel_dir / "main.py").write_bytes(b"print('\xff')\n")
    problems = validate_kernel_metadata(good_kernel(), kernel_dir)
    assert len(problems) == 1 and "UTF-8" in problems[0]


def test_several_kernel_violations_all_reported(kernel_dir):
    meta = good_kernel() | {"title": "abc", "language": "julia", "enable_internet": True, "machine_shape": "Gpu"}
    del meta["code_file"]
    problems = validate_kernel_metadata(meta, kernel_dir)
    for field in ("title", "language", "enable_internet", "machine_shape", "code_file"):
        assert any(f" {field}" in p for p in problems), (field, problems)
    assert len(problems) >= 5


DATASET_CASES = [
    ("no id", lambda m: m.pop("id"), ["id is missing"]),
    ("id without owner", _set("id", "arcsub-wheels"), ["id", "owner/dataset-slug"]),
    ("id with version", _set("id", "alice/arcsub-wheels/2"), ["id", "owner/dataset-slug"]),
    ("placeholder slug", _set("id", "alice/INSERT_SLUG_HERE"), ["id", "placeholder"]),
    ("short slug", _set("id", "alice/wheel"), ["id slug", "6 to 50"]),
    ("long slug", _set("id", "alice/" + "w" * 51), ["id slug", "6 to 50"]),
    ("slug syntax", _set("id", "alice/Arcsub_Wheels"), ["id slug", "lowercase"]),
    ("no title", lambda m: m.pop("title"), ["title is missing"]),
    ("short title", _set("title", "model"), ["title", "5 characters", "6 to 50"]),
    ("long title", _set("title", "t" * 51), ["title", "51 characters", "6 to 50"]),
    ("placeholder title", _set("title", "INSERT_TITLE_HERE"), ["title", "placeholder"]),
    ("no license", _set("licenses", []), ["licenses", "exactly one"]),
    ("two licenses", _set("licenses", [{"name": "CC0-1.0"}, {"name": "MIT"}]), ["licenses", "exactly one"]),
    ("license without name", _set("licenses", [{"id": "CC0-1.0"}]), ["licenses", "no name"]),
    ("licenses missing", lambda m: m.pop("licenses"), ["licenses is missing"]),
    ("short subtitle", _set("subtitle", "too short"), ["subtitle", "20 to 80"]),
    ("missing resource", _set("resources", [{"path": "nope.whl"}]), ["resources", "nope.whl", "not a file"]),
    ("unknown key", _set("isPrivate", True), ["unknown key", "isPrivate"]),
    ("bad id_no", _set("id_no", "x1"), ["id_no", "integer"]),
]


@pytest.mark.parametrize("name,change,words", DATASET_CASES, ids=[c[0] for c in DATASET_CASES])
def test_each_dataset_rule(dataset_dir, name, change, words):
    meta = good_dataset()
    change(meta)
    problems = validate_dataset_metadata(meta, dataset_dir)
    hit = [p for p in problems if all(w in p for w in words)]
    assert hit, problems
    assert all(p.startswith(str(dataset_dir / DATASET_METADATA) + ": ") for p in problems)


def test_duplicate_resources(dataset_dir):
    res = [{"path": "arcsub-0.1.0-py3-none-any.whl"}] * 2
    problems = validate_dataset_metadata(good_dataset() | {"resources": res}, dataset_dir)
    assert len(problems) == 1 and "twice" in problems[0]


def test_dataset_folder_rules(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    assert any("no files" in p for p in validate_dataset_metadata(good_dataset(), folder))
    (folder / "config.json").write_text("{}")
    (folder / "sub").mkdir()
    (folder / "dangling").symlink_to(tmp_path / "gone")
    problems = validate_dataset_metadata(good_dataset(), folder)
    assert len(problems) == 2
    assert any("sub/" in p and "--dir-mode skip" in p for p in problems)
    assert any("dangling" in p and "neither a file nor a folder" in p for p in problems)


def test_several_dataset_violations_all_reported(dataset_dir):
    meta = {"id": "alice/whl", "title": "abc", "licenses": []}
    problems = validate_dataset_metadata(meta, dataset_dir)
    assert len(problems) == 3
    assert [p.split(": ", 1)[1].split()[0] for p in problems] == ["id", "title", "licenses"]


def _write(folder, name, meta):
    (folder / name).write_text(json.dumps(meta))


def test_check_upload_folder_passes_and_raises(kernel_dir, dataset_dir):
    _write(kernel_dir, KERNEL_METADATA, good_kernel())
    _write(dataset_dir, DATASET_METADATA, good_dataset())
    check_upload_folder(kernel_dir)
    check_upload_folder(dataset_dir)

    _write(kernel_dir, KERNEL_METADATA, good_kernel() | {"title": "abc", "enable_internet": "true"})
    with pytest.raises(MetadataError) as info:
        check_upload_folder(kernel_dir)
    lines = str(info.value).splitlines()
    assert lines[0] == f"2 problem(s) in {kernel_dir / KERNEL_METADATA}:"
    assert "title" in lines[1] and "enable_internet" in lines[2] and len(lines) == 3
    assert isinstance(info.value, ArcsubError)


def test_check_upload_folder_bad_or_missing_file(tmp_path, dataset_dir):
    with pytest.raises(MetadataError, match="neither kernel-metadata.json nor dataset-metadata.json"):
        check_upload_folder(tmp_path)
    (dataset_dir / DATASET_METADATA).write_text("{not json")
    with pytest.raises(MetadataError, match=r"dataset-metadata.json: not valid JSON"):
        check_upload_folder(dataset_dir)


@pytest.mark.parametrize(
    "title", ["arcsub arc-prize-2024", "My Awesome Kernel", "Bob's  Kernel!! v2", "Ünïcode title 1,000", "a_b c--d"]
)
def test_slugify_matches_the_clis(title):
    from arcsub.bundle.metadata import slugify

    cli = pytest.importorskip("slugify")  # python-slugify, installed with the kaggle CLI
    assert slugify(title) == cli.slugify(title)


@pytest.mark.parametrize(
    ("shape", "words"),
    [("TpuV5E8", ["TPU", "GPU"]), ("Tpu1VmV38", ["retired", "TpuV5E8"]), ("NvidiaL4X1", None), ("NvidiaH100", None)],
)
def test_machine_shapes(kernel_dir, shape, words):
    problems = validate_kernel_metadata(good_kernel() | {"machine_shape": shape}, kernel_dir)
    if words is None:
        assert problems == []
    else:
        assert len(problems) == 1 and all(w in problems[0] for w in words), problems


@pytest.mark.parametrize("key", ["kernel_sources", "model_sources", "is_private", "language", "title"])
def test_every_written_key_is_required(kernel_dir, key):
    meta = good_kernel()
    del meta[key]
    expected = f"{kernel_dir / KERNEL_METADATA}: {key} is missing; arcsub writes every key explicitly"
    (problem,) = validate_kernel_metadata(meta, kernel_dir)
    assert problem.startswith(expected)


def test_a_too_short_title_is_one_problem_not_two(kernel_dir):
    problems = validate_kernel_metadata(good_kernel() | {"title": "arc"}, kernel_dir)
    assert len(problems) == 1 and "at least 5" in problems[0]


def test_a_non_object_is_one_problem(kernel_dir, dataset_dir):
    assert "not an object" in validate_kernel_metadata([], kernel_dir)[0]
    assert "not an object" in validate_dataset_metadata("x", dataset_dir)[0]


def test_files_the_cli_never_uploads_from_a_dataset(dataset_dir):
    (dataset_dir / "kernel-metadata.json").write_text("{}")
    (dataset_dir / "dataset-cover-image.png").write_bytes(b"\x89PNG")
    problems = validate_dataset_metadata(good_dataset(), dataset_dir)
    assert len(problems) == 2 and all("never uploads" in p for p in problems)


def test_check_upload_folder_kernel_extras_and_ambiguity(kernel_dir, tmp_path):
    _write(kernel_dir, KERNEL_METADATA, good_kernel())
    (kernel_dir / "helper.py").write_text("x = 1\n")
    with pytest.raises(MetadataError) as info:
        check_upload_folder(kernel_dir)
    lines = str(info.value).splitlines()
    assert lines[0] == f"1 problem(s) in {kernel_dir / KERNEL_METADATA}:"
    assert "helper.py" in lines[1] and "only code_file" in lines[1]

    _write(kernel_dir, DATASET_METADATA, good_dataset())
    with pytest.raises(MetadataError, match="holds both"):
        check_upload_folder(kernel_dir)

    legacy = tmp_path / "legacy"
    legacy.mkdir()
    _write(legacy, "datapackage.json", good_dataset())
    with pytest.raises(MetadataError, match="datapackage.json: rename it"):
        check_upload_folder(legacy)
    with pytest.raises(MetadataError, match="no such upload folder"):
        check_upload_folder(tmp_path / "absent")
    _write(legacy, DATASET_METADATA, [1, 2])
    with pytest.raises(MetadataError, match="not an object"):
        check_upload_folder(legacy)


def test_check_upload_folder_lists_dataset_problems(dataset_dir):
    _write(dataset_dir, DATASET_METADATA, {"id": "alice/whl", "title": "abc", "licenses": [], "extra": 1})
    with pytest.raises(MetadataError) as info:
        check_upload_folder(dataset_dir)
    lines = str(info.value).splitlines()
    assert lines[0] == f"4 problem(s) in {dataset_dir / DATASET_METADATA}:" and len(lines) == 5
