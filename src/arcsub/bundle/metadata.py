"""The upload folders' metadata: write it, and check it before anything is uploaded.

``kernel-metadata.json`` (BUILD/kernel) and ``dataset-metadata.json`` (BUILD/wheels,
BUILD/model) are checked against every rule the kaggle CLI 2.2.5 applies on this side
of the upload (``kaggle/api/kaggle_api_extended.py``; each rule below names the CLI
function it comes from), plus arcsub's own policy for a code-competition submission.
The CLI stops at its first complaint, and some mistakes it does not catch at all (it
defaults a missing ``enable_internet`` to true, skips a dataset's subfolders with a
one-line note, and still exits 0 when the server refuses): here every problem is one
message naming the file, the field, what is wrong and the fix.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..errors import ArcsubError
from ..io import read_json

KERNEL_METADATA = "kernel-metadata.json"
DATASET_METADATA = "dataset-metadata.json"
# The owner the build writes when it knows no Kaggle username: a valid name, refused by the push.
PLACEHOLDER_OWNER = "your-kaggle-username"
OLD_DATASET_METADATA = "datapackage.json"  # the CLI's fallback name (get_dataset_metadata_file)

# KaggleApi.valid_push_language_types / valid_push_kernel_types / valid_push_pinning_types.
CLI_LANGUAGES = ("python", "r", "rmarkdown")
CLI_KERNEL_TYPES = ("script", "notebook")
CLI_PINNING_TYPES = ("original", "latest")

# The CLI does not validate machine_shape ("the allowed names are in an enum that is not
# currently included in kagglesdk", kernels_push), so this list is kept by hand from the
# CLI's help and Kaggle's kernels: GPU shapes arcsub can run on ...
GPU_SHAPES = ("NvidiaTeslaT4", "NvidiaTeslaT4Highmem", "NvidiaL4", "NvidiaL4X1", "NvidiaH100")
TPU_SHAPES = ("TpuV5E8",)
# ... and the retired ones the CLI warns about (_RETIRED_ACCELERATORS), with what Kaggle runs instead.
RETIRED_SHAPES = {
    "NvidiaTeslaP100": "NvidiaTeslaT4",
    "TpuV38": "TpuV5E8",
    "Tpu1VmV38": "TpuV5E8",
    "TpuV232": "a CPU",
    "TpuV2256": "a CPU",
}
KNOWN_SHAPES = GPU_SHAPES + TPU_SHAPES + tuple(RETIRED_SHAPES)

# Every key kernels_push reads; anything else is ignored by the CLI, so it is a typo here.
KERNEL_KEYS = frozenset(
    {
        "id", "id_no", "title", "code_file", "language", "kernel_type", "is_private", "enable_gpu",
        "enable_tpu", "enable_internet", "machine_shape", "dataset_sources", "competition_sources",
        "kernel_sources", "model_sources", "keywords", "docker_image_pinning_type", "docker_image",
    }
)  # fmt: skip
# What kernel_metadata() writes: arcsub wants each explicit, never a CLI default.
KERNEL_REQUIRED = (
    "id", "title", "code_file", "language", "kernel_type", "is_private", "enable_gpu", "enable_internet",
    "machine_shape", "competition_sources", "dataset_sources", "model_sources", "kernel_sources",
)  # fmt: skip
# Keys dataset_create_new / dataset_create_version read (privacy is the --public flag, not a key).
DATASET_KEYS = frozenset({"id", "id_no", "title", "subtitle", "description", "licenses", "keywords", "resources"})
# upload_files never uploads these names from a dataset folder.
NOT_UPLOADED = frozenset(
    {
        DATASET_METADATA, OLD_DATASET_METADATA, KERNEL_METADATA, "model-metadata.json",
        "model-instance-metadata.json",
        *(f"dataset-cover-image{ext}" for ext in (".png", ".jpg", ".jpeg", ".webp")),
    }
)  # fmt: skip

# KaggleApi._validate_slug_syntax (the CLI applies it to models; Kaggle's slugs all look so).
_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_OWNER = re.compile(r"^[a-z0-9]+(?:[_-][a-z0-9]+)*$")
_DIGITS = re.compile(r"^[0-9]+$")
# The CLI's booleans (get_bool) and their defaults when the key is missing (kernels_push).
_BOOL_DEFAULTS = {"is_private": True, "enable_gpu": False, "enable_tpu": False, "enable_internet": True}
# What arcsub needs each to be, and why.
_BOOL_POLICY = {
    "is_private": (True, "a competition kernel must stay private until the deadline"),
    "enable_gpu": (True, "arcsub's kernel runs the model on the GPU"),
    "enable_tpu": (False, "arcsub's kernel runs on a GPU, not a TPU"),
    "enable_internet": (False, "a code competition runs offline and rejects a kernel with internet on"),
}


class MetadataError(ArcsubError):
    """An upload folder's metadata breaks a kaggle CLI rule or arcsub's policy."""


# ---------------------------------------------------------------- writing
def kernel_metadata(
    *,
    owner: str,
    slug: str,
    title: str,
    code_file: str = "main.py",
    machine_shape: str,
    competition: str,
    dataset_sources: Iterable[str],
    model_sources: Iterable[str] = (),
    kernel_sources: Iterable[str] = (),
) -> dict:
    """kernel-metadata.json for a private GPU script kernel without internet, every key explicit."""
    return {
        "id": f"{owner}/{slug}",
        "title": title,
        "code_file": code_file,
        "language": "python",
        "kernel_type": "script",
        "is_private": True,
        "enable_gpu": True,
        "enable_internet": False,
        "machine_shape": machine_shape,
        "competition_sources": [competition],
        "dataset_sources": list(dataset_sources),
        "model_sources": list(model_sources),
        "kernel_sources": list(kernel_sources),
    }


def dataset_metadata(*, owner: str, slug: str, title: str, license: str = "CC0-1.0") -> dict:
    """dataset-metadata.json in the layout ``kaggle datasets init`` writes."""
    return {"title": title, "id": f"{owner}/{slug}", "licenses": [{"name": license}]}


def slugify(text: str) -> str:
    """The slug python-slugify (the CLI's) makes of a title, for ASCII-like titles: what
    Kaggle names a new kernel after."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    text = re.sub(r"(?<=\d),(?=\d)", "", text)
    text = re.sub(r"[^-a-z0-9]+", "-", text)
    return re.sub(r"-{2,}", "-", text).strip("-")


# ---------------------------------------------------------------- shared checks
class _Problems:
    """Messages for one metadata file: "<file>: <field> <what is wrong>; <fix>"."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: list[str] = []

    def add(self, field: str, text: str) -> None:
        self.items.append(f"{self.path}: {field} {text}")


def _show(value: object) -> str:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str | int | float | bool) else repr(value)


def _unknown_keys(meta: Mapping, known: frozenset[str], p: _Problems) -> None:
    for key in sorted(set(meta) - known):
        p.add("unknown key", f"{_show(key)}: the kaggle CLI ignores it (a typo?); remove it or use one of "
              f"{', '.join(sorted(known))}")  # fmt: skip


def _required(meta: Mapping, keys: Iterable[str], p: _Problems) -> None:
    for key in keys:
        if key not in meta:
            p.add(key, "is missing; arcsub writes every key explicitly: rebuild the bundle or add it")


def _string_list(meta: Mapping, key: str, p: _Problems) -> list[str]:
    """The list under ``key`` (empty if absent); a non-list or a non-string item is reported.
    The CLI iterates the value as is, so a bare string would be checked letter by letter."""
    value = meta.get(key, [])
    if not isinstance(value, list):
        p.add(key, f"is {_show(value)}, not a list; write a JSON list of strings")
        return []
    items = []
    for item in value:
        if isinstance(item, str):
            items.append(item)
        else:
            p.add(key, f"holds {_show(item)}, not a string; write each source as a string")
    return items


# ---------------------------------------------------------------- kernel-metadata.json
def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kernel_id(meta: Mapping, p: _Problems) -> str | None:
    """The kernel's slug, or None. kernels_push: id or id_no (id_no an int, sent as the
    kernel's number); parse_kernel_string / validate_kernel_string: owner/slug[/version],
    owner and slug non-empty, slug >= 5 characters; kernels_push: no version."""
    if "id_no" in meta and not _is_int(meta["id_no"]):
        p.add("id_no", f"is {_show(meta['id_no'])}; the CLI sends it as the kernel's number: write an integer")
    ref = meta.get("id")
    if ref is None:
        need = "the kaggle CLI needs id or id_no" if "id_no" not in meta else "id_no alone is not enough"
        p.add("id", f'is missing; {need}, and arcsub (push, checks) needs id: write "owner/kernel-slug"')
        return None
    if not isinstance(ref, str) or not ref:
        p.add("id", f'is {_show(ref)}; write "owner/kernel-slug"')
        return None
    parts = ref.split("/")
    if len(parts) == 1:
        # The CLI would take the owner from its config; push.py and the checks need it written.
        p.add("id", f'{_show(ref)} has no owner; write "owner/kernel-slug" with your Kaggle username')
        return None
    if len(parts) > 3 or not parts[0] or not parts[1]:
        p.add("id", f'{_show(ref)} is not "owner/kernel-slug"; the kaggle CLI refuses it')
        return None
    if len(parts) == 3:
        p.add("id", f'{_show(ref)} carries a version; the kaggle CLI refuses one in a push: drop "/{parts[2]}"')
    owner, slug = parts[0], parts[1]
    if len(slug) < 5:
        p.add("id slug", f"{_show(slug)} has {len(slug)} characters; the kaggle CLI needs at least 5")
    if not _OWNER.match(owner):
        p.add("id owner", f"{_show(owner)} is not a Kaggle username: lowercase letters, digits, - or _")
    if not _SLUG.match(slug):
        p.add("id slug", f"{_show(slug)} is not a Kaggle slug: use lowercase letters, digits and single hyphens")
    return slug


def _kernel_title(meta: Mapping, slug: str | None, p: _Problems) -> None:
    """kernels_push: a title has >= 5 characters, and should slugify to the id's slug (the
    CLI warns; Kaggle names a new kernel after its title, so with another slug the push
    lands on a kernel other than the id's)."""
    title = meta.get("title")
    if title is None:
        return
    if not isinstance(title, str):
        p.add("title", f"is {_show(title)}, not a string; write the kernel's title")
    elif len(title) < 5:
        p.add("title", f"{_show(title)} has {len(title)} characters; the kaggle CLI needs at least 5")
    elif slug is not None and slugify(title) != slug:
        p.add(
            "title",
            f"{_show(title)} becomes the slug {_show(slugify(title))}, not the id's {_show(slug)}; Kaggle names a "
            f"new kernel after its title: use a title that slugifies to the id, e.g. {_show(slug.replace('-', ' '))}",
        )


def _code_file(meta: Mapping, folder: Path, p: _Problems) -> None:
    """kernels_push: code_file given and a file in the folder, read as UTF-8; arcsub: inside
    the folder (the folder is what gets pushed)."""
    code = meta.get("code_file")
    if code is None:
        return
    if not isinstance(code, str) or not code:
        p.add("code_file", f'is {_show(code)}; the kaggle CLI needs the script\'s file name, e.g. "main.py"')
        return
    path = folder / code
    if not path.resolve().is_relative_to(folder.resolve()):
        p.add("code_file", f"{_show(code)} lies outside {folder}; put the script in the folder and name it there")
    elif not path.is_file():
        p.add("code_file", f"{_show(code)} is not a file in {folder}; put the script there or fix the name")
    else:
        try:
            path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            p.add("code_file", f"{_show(code)} is not UTF-8 ({exc.reason} at byte {exc.start}); the kaggle CLI "
                  "reads it as UTF-8: save it as UTF-8")  # fmt: skip


def _choice(meta: Mapping, key: str, cli: tuple[str, ...], wanted: str, p: _Problems) -> None:
    """kernels_push: language / kernel_type from the CLI's list; arcsub needs one of them."""
    value = meta.get(key)
    if value is None:
        return
    if value not in cli:
        p.add(key, f"is {_show(value)}; the kaggle CLI accepts {'|'.join(cli)}: set {_show(wanted)}")
    elif value != wanted:
        p.add(key, f"is {_show(value)}; arcsub's kernel (kernel/main.py) is a {wanted} script: set {_show(wanted)}")


def _booleans(meta: Mapping, p: _Problems) -> None:
    """get_bool: JSON booleans, or the strings "true"/"false" in any case, with kernels_push's
    defaults when missing; then the values arcsub needs."""
    for key, default in _BOOL_DEFAULTS.items():
        wanted, why = _BOOL_POLICY[key]
        want = str(wanted).lower()
        if key not in meta:
            if default != wanted:
                p.add(key, f"is missing and the kaggle CLI defaults it to {str(default).lower()}; {why}: "
                      f"set it to {want}")  # fmt: skip
            continue
        value = meta[key]
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        if not isinstance(value, bool):
            p.add(key, f"is {_show(value)}; the kaggle CLI (get_bool) accepts only true or false: set {want}")
        elif value != wanted:
            p.add(key, f"is {str(value).lower()}; {why}: set it to {want}")


def _machine_shape(meta: Mapping, p: _Problems) -> None:
    """No CLI check but _warn_if_retired_accelerator; arcsub needs a current GPU shape."""
    shape = meta.get("machine_shape")
    if shape is None:
        return
    gpus = ", ".join(GPU_SHAPES)
    if not isinstance(shape, str) or shape not in KNOWN_SHAPES:
        near = [s for s in KNOWN_SHAPES if isinstance(shape, str) and s.lower() == shape.strip().lower()]
        hint = f"did you mean {_show(near[0])}? " if near else ""
        p.add("machine_shape", f"{_show(shape)} is not a machine Kaggle knows; {hint}use one of {gpus}")
    elif shape in RETIRED_SHAPES:
        p.add("machine_shape", f"{_show(shape)} is retired (the kaggle CLI warns): Kaggle runs the session on "
              f"{RETIRED_SHAPES[shape]} instead; use one of {gpus}")  # fmt: skip
    elif shape not in GPU_SHAPES:
        p.add("machine_shape", f"{_show(shape)} is a TPU machine; arcsub's kernel needs a GPU: use one of {gpus}")


def _dataset_sources(meta: Mapping, p: _Problems) -> None:
    """validate_dataset_string: owner/slug or owner/slug/version, owner and slug non-empty;
    arcsub: the version, when given, a number."""
    for source in _string_list(meta, "dataset_sources", p):
        parts = source.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            p.add("dataset_sources", f'entry {_show(source)} is not "owner/dataset-slug" or '
                  '"owner/dataset-slug/<version>"')  # fmt: skip
        elif len(parts) == 3 and not _DIGITS.match(parts[2]):
            p.add("dataset_sources", f"entry {_show(source)} has the version {_show(parts[2])}; write a number")


def _kernel_sources(meta: Mapping, p: _Problems) -> None:
    """validate_kernel_string: owner/slug[/version], slug >= 5 characters, version non-empty."""
    for source in _string_list(meta, "kernel_sources", p):
        parts = source.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            p.add("kernel_sources", f'entry {_show(source)} is not "owner/kernel-slug" or '
                  '"owner/kernel-slug/<version>"')  # fmt: skip
        elif len(parts[1]) < 5:
            p.add("kernel_sources", f"entry {_show(source)}: the slug {_show(parts[1])} has {len(parts[1])} "
                  "characters; the kaggle CLI needs at least 5")  # fmt: skip


def _model_sources(meta: Mapping, p: _Problems) -> None:
    """validate_model_instance_version_string: exactly owner/model/framework/variation/version,
    all non-empty, the version an integer."""
    for source in _string_list(meta, "model_sources", p):
        parts = source.split("/")
        if len(parts) != 5 or not all(parts):
            p.add("model_sources", f"entry {_show(source)} has {len(parts)} parts; the kaggle CLI needs exactly five: "
                  '"owner/model/framework/variation/<version>"')  # fmt: skip
        elif not _DIGITS.match(parts[4]):
            p.add("model_sources", f"entry {_show(source)} has the version {_show(parts[4])}; write a number")


def _competition_sources(meta: Mapping, p: _Problems) -> None:
    """No CLI check; arcsub: a non-empty list of competition slugs (the kernel reads its data)."""
    if "competition_sources" not in meta:
        return
    sources = _string_list(meta, "competition_sources", p)
    if meta["competition_sources"] == []:
        p.add("competition_sources", 'is empty; a submission reads the competition\'s data: add its slug, '
              'e.g. "arc-prize-2025"')  # fmt: skip
    for source in sources:
        if not _SLUG.match(source):
            p.add("competition_sources", f'entry {_show(source)} is not a competition slug (e.g. "arc-prize-2025")')


def _other_kernel_keys(meta: Mapping, p: _Problems) -> None:
    """kernels_push: docker_image_pinning_type from its list; keywords become category ids."""
    pinning = meta.get("docker_image_pinning_type")
    if pinning is not None and pinning not in CLI_PINNING_TYPES:
        p.add("docker_image_pinning_type", f"is {_show(pinning)}; the kaggle CLI accepts {'|'.join(CLI_PINNING_TYPES)}")
    if "keywords" in meta:
        _string_list(meta, "keywords", p)


def validate_kernel_metadata(meta: dict, folder: Path) -> list[str]:
    """Every problem with ``folder``'s kernel-metadata.json ``meta``, one message each."""
    folder = Path(folder)
    p = _Problems(folder / KERNEL_METADATA)
    if not isinstance(meta, dict):
        return [f"{p.path}: holds a JSON {type(meta).__name__}, not an object; rebuild the bundle"]
    _unknown_keys(meta, KERNEL_KEYS, p)
    _required(meta, [k for k in KERNEL_REQUIRED if k != "id"], p)  # a missing id: _kernel_id
    slug = _kernel_id(meta, p)
    _kernel_title(meta, slug, p)
    _code_file(meta, folder, p)
    _choice(meta, "language", CLI_LANGUAGES, "python", p)
    _choice(meta, "kernel_type", CLI_KERNEL_TYPES, "script", p)
    _booleans(meta, p)
    _machine_shape(meta, p)
    _competition_sources(meta, p)
    _dataset_sources(meta, p)
    _kernel_sources(meta, p)
    _model_sources(meta, p)
    _other_kernel_keys(meta, p)
    return p.items


# ---------------------------------------------------------------- dataset-metadata.json
def _dataset_id(meta: Mapping, p: _Problems) -> None:
    """dataset_create_new: id (get_or_fail) split into owner/slug, not the template's
    INSERT_SLUG_HERE, slug 6-50 characters; dataset_create_version: validate_dataset_string;
    id_no read with int()."""
    if "id_no" in meta and not _is_int(meta["id_no"]):
        p.add("id_no", f"is {_show(meta['id_no'])}; the kaggle CLI reads it with int(): write an integer")
    ref = meta.get("id")
    if ref is None:
        p.add("id", 'is missing; the kaggle CLI needs "owner/dataset-slug" to create the dataset')
        return
    if not isinstance(ref, str) or ref.count("/") != 1 or not all(ref.split("/")):
        p.add("id", f'is {_show(ref)}; write "owner/dataset-slug" (an owner, no version)')
        return
    owner, slug = ref.split("/")
    if slug == "INSERT_SLUG_HERE":
        p.add("id", "still holds the template's placeholder INSERT_SLUG_HERE; the kaggle CLI refuses it: write a slug")
        return
    if not 6 <= len(slug) <= 50:
        p.add("id slug", f"{_show(slug)} has {len(slug)} characters; the kaggle CLI needs 6 to 50")
    if not _OWNER.match(owner):
        p.add("id owner", f"{_show(owner)} is not a Kaggle username: lowercase letters, digits, - or _")
    if not _SLUG.match(slug):
        p.add("id slug", f"{_show(slug)} is not a Kaggle slug: use lowercase letters, digits and single hyphens")


def _dataset_title(meta: Mapping, p: _Problems) -> None:
    """dataset_create_new: title (get_or_fail), not INSERT_TITLE_HERE, 6-50 characters;
    create and version: a subtitle, when given, 20-80 characters."""
    title = meta.get("title")
    if title is None:
        p.add("title", "is missing; the kaggle CLI needs a title of 6 to 50 characters to create the dataset")
    elif not isinstance(title, str):
        p.add("title", f"is {_show(title)}, not a string; write a title of 6 to 50 characters")
    elif title == "INSERT_TITLE_HERE":
        p.add("title", "still holds the template's placeholder INSERT_TITLE_HERE; the kaggle CLI refuses it")
    elif not 6 <= len(title) <= 50:
        p.add("title", f"{_show(title)} has {len(title)} characters; the kaggle CLI needs 6 to 50")
    subtitle = meta.get("subtitle")
    if subtitle and (not isinstance(subtitle, str) or not 20 <= len(subtitle) <= 80):
        size = f"has {len(subtitle)} characters" if isinstance(subtitle, str) else "is not a string"
        p.add("subtitle", f"{_show(subtitle)} {size}; the kaggle CLI needs 20 to 80: fix or remove it")


def _licenses(meta: Mapping, p: _Problems) -> None:
    """dataset_create_new: licenses (get_or_fail), exactly one, with a name (get_or_fail)."""
    licenses = meta.get("licenses")
    fix = 'write [{"name": "CC0-1.0"}]'
    if licenses is None:
        p.add("licenses", f"is missing; the kaggle CLI needs exactly one license: {fix}")
    elif not isinstance(licenses, list):
        p.add("licenses", f"is {_show(licenses)}, not a list; {fix}")
    elif len(licenses) != 1:
        p.add("licenses", f"holds {len(licenses)} licenses; the kaggle CLI needs exactly one: {fix}")
    elif not isinstance(licenses[0], dict) or not isinstance(licenses[0].get("name"), str) or not licenses[0]["name"]:
        p.add("licenses", f"entry {_show(licenses[0])} has no name; the kaggle CLI needs one: {fix}")


def _resources(meta: Mapping, folder: Path, p: _Problems) -> None:
    """validate_resources: each resource's path is a file in the folder (validate_files_exist),
    none listed twice (validate_no_duplicate_paths)."""
    resources = meta.get("resources")
    if not resources:
        return
    if not isinstance(resources, list):
        p.add("resources", f"is {_show(resources)}, not a list; remove it (arcsub writes none)")
        return
    seen: set[str] = set()
    for item in resources:
        path = item.get("path") if isinstance(item, dict) else None
        if not isinstance(path, str) or not (folder / path).is_file():
            p.add("resources", f"entry {_show(item)}: its path is not a file in {folder}; fix or remove it")
        elif path in seen:
            p.add("resources", f"path {_show(path)} is listed twice; the kaggle CLI refuses duplicates")
        if isinstance(path, str):
            seen.add(path)


def _dataset_files(folder: Path, p: _Problems) -> None:
    """upload_files / _upload_file_or_folder with --dir-mode skip (push.py's): a subfolder,
    or anything neither file nor folder, is skipped with a printed note, and a few names are
    never uploaded; arcsub: a dataset needs at least one file."""
    if not folder.is_dir():
        p.add("folder", f"{folder} is not a folder; build the bundle first")
        return
    uploaded = 0
    for entry in sorted(folder.iterdir()):
        if entry.name in NOT_UPLOADED:
            if entry.name != DATASET_METADATA:
                p.add("folder", f"holds {entry.name}, which the kaggle CLI never uploads from a dataset; remove it")
        elif entry.is_dir():
            p.add("folder", f"holds the subfolder {entry.name}/, which the push (--dir-mode skip) leaves out; "
                  "the dataset must be flat: move its files up or remove it")  # fmt: skip
        elif not entry.is_file():
            p.add("folder", f"holds {entry.name}, neither a file nor a folder (a broken link?), which the kaggle "
                  "CLI skips; fix or remove it")  # fmt: skip
        else:
            uploaded += 1
    if uploaded == 0:
        p.add("folder", f"{folder} holds no files to upload; a dataset needs at least one")


def validate_dataset_metadata(meta: dict, folder: Path) -> list[str]:
    """Every problem with ``folder``'s dataset-metadata.json ``meta`` and with the files it
    would upload, one message each."""
    folder = Path(folder)
    p = _Problems(folder / DATASET_METADATA)
    if not isinstance(meta, dict):
        return [f"{p.path}: holds a JSON {type(meta).__name__}, not an object; rebuild the bundle"]
    _unknown_keys(meta, DATASET_KEYS, p)
    _dataset_id(meta, p)
    _dataset_title(meta, p)
    _licenses(meta, p)
    _resources(meta, folder, p)
    if "keywords" in meta:
        _string_list(meta, "keywords", p)
    _dataset_files(folder, p)
    return p.items


# ---------------------------------------------------------------- an upload folder
def _read_metadata(path: Path) -> dict:
    data = read_json(path, MetadataError, missing="missing; rebuild the bundle", fix="rebuild the bundle")
    if not isinstance(data, dict):
        raise MetadataError(f"{path}: holds a JSON {type(data).__name__}, not an object; rebuild the bundle")
    return data


def _kernel_extras(folder: Path, meta: Mapping) -> list[str]:
    """`kaggle kernels push` uploads code_file alone: anything else in the folder never
    reaches Kaggle (the kernel reads its files from the datasets)."""
    keep = {KERNEL_METADATA, meta.get("code_file")}
    return [
        f"{folder / entry.name}: is not uploaded by `kaggle kernels push` (only code_file is); "
        "move it into a dataset or remove it"
        for entry in sorted(folder.iterdir())
        if entry.name not in keep
    ]


def check_upload_folder(folder: Path) -> dict:
    """Raise :class:`MetadataError` listing every problem of one upload folder: a kernel
    folder or a dataset folder, told apart by its metadata file. Returns the metadata,
    checked (what a push then reads)."""
    folder = Path(folder)
    kernel, dataset = folder / KERNEL_METADATA, folder / DATASET_METADATA
    if not folder.is_dir():
        raise MetadataError(f"{folder}: no such upload folder; build the bundle first")
    if not kernel.is_file() and not dataset.is_file():
        legacy = f" (it holds {OLD_DATASET_METADATA}: rename it)" if (folder / OLD_DATASET_METADATA).is_file() else ""
        raise MetadataError(f"{folder}: neither {KERNEL_METADATA} nor {DATASET_METADATA}{legacy}; rebuild the bundle")
    if kernel.is_file() and dataset.is_file():
        # Each push reads its own file and would ignore the other: which one was meant is a guess.
        raise MetadataError(f"{folder}: holds both {KERNEL_METADATA} and {DATASET_METADATA}; keep the one it is for")
    if kernel.is_file():
        meta, where = _read_metadata(kernel), kernel
        problems = validate_kernel_metadata(meta, folder) + _kernel_extras(folder, meta)
    else:
        meta, where = _read_metadata(dataset), dataset
        problems = validate_dataset_metadata(meta, folder)
    if problems:
        raise MetadataError(f"{len(problems)} problem(s) in {where}:\n" + "\n".join(problems))
    return meta


# ---------------------------------------------------------------- the push: rules across the folders
def placeholder_owner(build: Path, ids: Iterable[tuple[str, str]]) -> str | None:
    """One message when any of ``ids`` ((where, "owner/slug[/version]") pairs) carries the
    build's placeholder owner: nobody on Kaggle is its owner, so the push cannot succeed."""
    carrying = dict.fromkeys(where for where, ref in ids if ref.split("/")[0] == PLACEHOLDER_OWNER)
    if not carrying:
        return None
    return (
        f"{build}: the ids carry the placeholder owner {_show(PLACEHOLDER_OWNER)} (no Kaggle username was known "
        f"at build time): {', '.join(carrying)}; rebuild with yours: python build_kernel.py --owner YOU ..."
    )


def unattached_datasets(kernel_folder: Path, meta: Mapping, uploaded: Iterable[str]) -> str | None:
    """One message when kernel-metadata.json's dataset_sources leaves out a dataset the push
    uploads: neither the CLI nor Kaggle objects, and the kernel then runs without its wheels
    or its model. A pinned version ("owner/slug/3") names the dataset too."""
    sources = meta.get("dataset_sources")
    named = {"/".join(s.split("/")[:2]) for s in sources if isinstance(s, str)} if isinstance(sources, list) else set()
    missing = [ref for ref in uploaded if ref not in named]
    if not missing:
        return None
    listed, it = " and ".join(_show(ref) for ref in missing), "it" if len(missing) == 1 else "them"
    return (
        f"{kernel_folder / KERNEL_METADATA}: dataset_sources lacks {listed}, which this push uploads; the kernel "
        f"would run without {it}: add {it} to dataset_sources (or rebuild: python build_kernel.py writes both)"
    )
