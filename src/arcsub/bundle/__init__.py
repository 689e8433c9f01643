"""The offline bundle: pinned wheel sets, the three upload folders (wheels dataset,
model dataset, kernel), their metadata and secret checks, the offline-install proof,
and the push to Kaggle.

The public entry (what the other packages use), each name loaded from its module on
first use: the bundle's tools bring in the kernel and ``packaging``, and ``arcsub``
builds its parser from two of these names on every command.

  ``build_bundle(BuildOptions(...))``  the three upload folders and ``bundle.json`` (``build.py``)
  ``read_manifest(build)`` and the folder names  what a built bundle is (``manifest.py``)
  ``check_bundle(build, smoke=...)`` / ``check_over_image(build, image, smoke=...)``  the
        offline proofs; the smoke run is the simulator's (``check.py``, ``over_image.py``)
  ``push(build, ...)``  the upload to Kaggle (``push.py``)
  ``get_target`` / ``lock``  the pinned wheel sets (``wheelset.py``); environments made
        from them (``venv.py``); Kaggle's image as data and its replica (``image_list.py``,
        ``replica.py``)
"""

from importlib import import_module

# A name that is also one of this package's modules is bound here: importing the module
# would otherwise set the package's attribute to the module, hiding the name from __getattr__.
from .push import push

# name -> the module of this package that defines it
_WHERE = {
    "BuildOptions": "build",
    "build_bundle": "build",
    "git_commit": "build",
    "repository_root": "build",
    "CheckError": "check",
    "check_bundle": "check",
    "DEFAULT_SOURCE": "image_list",
    "IMAGES": "image_list",
    "image_list_path": "image_list",
    "read_image_list": "image_list",
    "refresh": "image_list",
    "BuildError": "manifest",
    "DEFAULT_BUILD": "manifest",
    "KERNEL": "manifest",
    "MANIFEST": "manifest",
    "MODEL": "manifest",
    "WHEELS": "manifest",
    "WHEELS_DATASET": "manifest",
    "is_wheels_dataset_file": "manifest",
    "read_manifest": "manifest",
    "check_over_image": "over_image",
    "copy_replica": "replica",
    "ensure_replica": "replica",
    "base_venv": "venv",
    "offline_pip_env": "venv",
    "overlay_venv": "venv",
    "get_target": "wheelset",
    "lock": "wheelset",
}

__all__ = [
    "DEFAULT_BUILD",
    "DEFAULT_SOURCE",
    "IMAGES",
    "KERNEL",
    "MANIFEST",
    "MODEL",
    "WHEELS",
    "WHEELS_DATASET",
    "BuildError",
    "BuildOptions",
    "CheckError",
    "base_venv",
    "build_bundle",
    "check_bundle",
    "check_over_image",
    "copy_replica",
    "ensure_replica",
    "get_target",
    "git_commit",
    "image_list_path",
    "is_wheels_dataset_file",
    "lock",
    "offline_pip_env",
    "overlay_venv",
    "push",
    "read_image_list",
    "read_manifest",
    "refresh",
    "repository_root",
]


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value
