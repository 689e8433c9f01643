"""``arcsub bundle check --over-image kaggle``: the bundle installed over a replica of
Kaggle's Python environment (``replica.py``) exactly as the kernel installs it, then
the stack checked there.

In order, each with one pass/fail line:

1. the replica (cached; built once per list and Python) copied to a scratch folder;
2. the bundle's wheels folder (with its install plan) laid out as a Kaggle input, and
   ``kernel/main.py --install-only`` run with the replica's Python, offline, timed;
   what Kaggle would reinstall that the replica skipped (the image's torch carries a
   local label the index lacks, so the replica holds the set's own version) is
   reinstalled with ``--force-reinstall`` and timed too; the sum is checked against
   the smoke run's window (``kernel.smoke_budget_s``): more than half fails;
3. the probes (``image_probes.py``) in the replica's interpreter: imports, a LoRA
   through arcsub's training path with one step, vLLM's config, tokenizer, chat
   template and adapter loading;
4. ``pip check``, each line classified (``pip_check.py``);
5. ``cpu`` only: the kernel's smoke run in the simulator over a fresh replica copy in
   which the kernel installs the whole set itself; it must answer a task by the model.

Everything found goes to ``OUT/over-image.json``. torch and vLLM are imported only in
the replica's interpreter (subprocesses), never here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from packaging.utils import canonicalize_name

from ..io import write_json_atomic
from .build import repository_root
from .check import CheckError, SmokeRun
from .manifest import CONFIG_NAME, KERNEL, MODEL, WHEELS, WHEELS_DATASET, is_wheels_dataset_file, read_manifest

INSTALL_SHARE_LIMIT = 0.5  # of the smoke window: install alone may take at most half
PROBE_TIMEOUT_S = 1800
REPORT = "over-image.json"


def replica_env() -> dict[str, str]:
    """The environment of anything run in the replica: offline pip, no path of this
    checkout (arcsub must come from the bundle's wheel), Hugging Face offline."""
    from .venv import offline_pip_env

    env = offline_pip_env()
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(name, None)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


def lay_out_input(wheels: Path, input_root: Path) -> Path:
    """``input_root/datasets/<owner>/arcsub-wheels``: links to the wheels and the install plan."""
    folder = input_root / "datasets" / "owner" / WHEELS_DATASET
    folder.mkdir(parents=True)
    for entry in sorted(Path(wheels).iterdir()):
        if entry.is_file() and is_wheels_dataset_file(entry.name):
            os.symlink(entry.resolve(), folder / entry.name)
    return folder


def kernel_install(python: Path, kernel: Path, input_root: Path, working: Path, log: Path) -> dict:
    """``kernel/main.py --install-only`` as on Kaggle; what it recorded, plus the wall time."""
    started = time.monotonic()
    with open(log, "w") as output:
        done = subprocess.run(
            [str(python), str(kernel), "--install-only", "--input-root", str(input_root), "--working-root", str(working)],
            stdout=output, stderr=subprocess.STDOUT, env=replica_env(), check=False,
        )  # fmt: skip
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise CheckError(f"the kernel's install over the image failed (exit {done.returncode}): {_tail(log)}")
    record = json.loads((working / "arcsub" / "install.json").read_text())
    return {**record, "wall_s": round(wall, 1)}


def _wheel_key(path: Path) -> tuple[str, str]:
    from packaging.utils import parse_wheel_filename

    name, version, _build, _tags = parse_wheel_filename(path.name)
    return canonicalize_name(name), str(version)


def already_there(record: dict, wheels: Path) -> list[Path]:
    """The set's wheels the replica holds at the same version (pip skips them)."""
    held = {(canonicalize_name(n), v) for n, v in record["packages"].items()}
    return [p for p in sorted(Path(wheels).glob("*.whl")) if _wheel_key(p) in held]


def reinstalled_on_kaggle(record: dict, wheels: Path) -> list[Path]:
    """The set's wheels the replica already held only because of its substitutions (the
    image's version is not on the index): on Kaggle pip replaces the image's copies."""
    changed = {(canonicalize_name(n), w["installed"]) for n, w in record["substituted"].items()}
    changed |= {(canonicalize_name(n), w["version"]) for n, w in record["added"].items()}
    return [p for p in sorted(Path(wheels).glob("*.whl")) if _wheel_key(p) in changed]


def force_reinstall(python: Path, wheels: list[Path]) -> float:
    if not wheels:
        return 0.0
    started = time.monotonic()
    command = [str(python), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--force-reinstall"]
    done = subprocess.run([*command, *map(str, wheels)], capture_output=True, text=True, env=replica_env(), check=False)
    if done.returncode != 0:
        raise CheckError(f"pip --force-reinstall of {len(wheels)} wheels failed: {done.stderr.strip()[-300:]}")
    return time.monotonic() - started


def smoke_window(build: Path) -> float:
    from ..config import load_config

    config = build / MODEL / CONFIG_NAME
    return load_config(config if config.is_file() else None).kernel.smoke_budget_s


def run_probe(python: Path, probe: str, work: Path, *args: str) -> dict:
    result, log = work / f"{probe}.json", work / f"{probe}.log"
    with open(log, "w") as output:
        try:
            done = subprocess.run(
                [str(python), "-m", "arcsub.bundle.image_probes", probe, "--result", str(result), *args],
                stdout=output, stderr=subprocess.STDOUT, env=replica_env(), check=False, timeout=PROBE_TIMEOUT_S,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise CheckError(f"probe {probe} ran past {PROBE_TIMEOUT_S} s (see {log})") from None
    if done.returncode != 0:
        raise CheckError(f"probe {probe} failed: {_tail(log)} (see {log})")
    return json.loads(result.read_text())


def _tail(log: Path, lines: int = 2) -> str:
    text = [ln.strip() for ln in Path(log).read_text(errors="replace").splitlines() if ln.strip()]
    return " | ".join(text[-lines:]) or "no output"


def pip_check(python: Path) -> list[str]:
    done = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True, env=replica_env(),
                          check=False)  # fmt: skip
    return done.stdout.splitlines()


def import_fails(python: Path, module: str) -> str | None:
    """None when ``module`` imports in the replica, else the error's last line."""
    done = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True, text=True,
                          env=replica_env(), check=False)  # fmt: skip
    return None if done.returncode == 0 else (done.stderr.strip().splitlines() or ["?"])[-1]


class _Steps:
    """Pass/fail lines and the failures gathered on the way (a failed step does not stop
    the ones that can still run)."""

    def __init__(self, echo: Callable[[str], None]):
        self.echo, self.failures, self.found = echo, [], {}

    def run(self, name: str, step: Callable[[], dict], line: Callable[[dict], str]) -> dict | None:
        try:
            found = step()
        except CheckError as exc:
            self.failures.append(f"{name}: {exc}")
            self.echo(f"FAIL {name}: {exc}")
            return None
        self.found[name] = found
        self.echo(f"pass {name}: {line(found)}")
        return found


def check_over_image(
    build: Path, image_name: str, *, smoke: SmokeRun, out: Path | None = None, budget_s: float = 300.0,
    echo: Callable[[str], None] | None = None,
) -> dict:  # fmt: skip
    """Install the bundle in ``build`` over a replica of ``image_name`` and check the stack
    there; the cpu target ends with ``smoke`` (``arcsub.simulate.smoke_run``) in a copy of
    the replica."""
    from ..console import say
    from .image_list import ENGINES, OPTIONAL_IMPORTS, image_list_path, read_image_list, set_names
    from .replica import copy_replica, ensure_replica
    from .wheelset import get_target

    echo = echo or say
    build = Path(build)
    manifest = read_manifest(build)
    target = get_target(manifest["target"])
    if not manifest["wheels"].get("complete", True):
        raise CheckError(f"{build}: built without its wheel set (--no-download); rebuild it to check it over the image")
    root = repository_root()
    image = read_image_list(image_list_path(image_name, root))
    echo(f"checking the {target.name} bundle in {build} over a replica of the {image_name} image "
         f"({len(image.packages)} packages, {image.header.get('commit', image.header.get('source', '?'))})")  # fmt: skip
    replica, record = ensure_replica(image, target.name, target.python_version, root, echo=echo)
    echo(f"replica {replica}: CPython {record['python_full']}, pip {record['pip']}, {len(record['packages'])} packages, "
         f"{record['bytes'] / 1e9:.2f} GB, built in {record['build_s']:.0f} s")  # fmt: skip
    for name, what in record["substituted"].items():
        echo(f"  differs from the image: {name} {what['installed']} (the image lists {what['listed']})")
    if record["added"]:
        added = ", ".join(f"{name} {what['version']}" for name, what in record["added"].items())
        echo(f"  added for the index's torch build: {added}")
    if record["skipped"]:
        echo(f"  not in the replica (no wheel for CPython {record['python']}): {', '.join(record['skipped'])}")

    keep_environments = out is not None  # a temporary folder keeps the reports, not 10+ GB of copies
    out = Path(out) if out else Path(tempfile.mkdtemp(prefix="arcsub-over-image-"))
    out.mkdir(parents=True, exist_ok=True)
    echo(f"working in {out}: copying the replica (a minute)")
    python = copy_replica(replica, out / "venv")
    steps = _Steps(echo)
    window = smoke_window(build)
    result: dict = {"target": target.name, "image": image_name, "replica": {"path": str(replica), **record}}

    installed = steps.run(
        "install",
        lambda: install_step(python, build, out, record, window, echo),
        lambda f: (
            f"{f['wall_s']:.0f} s over the replica ({f['wheels'] - f['already_there']} of {f['wheels']} wheels "
            f"installed, the rest there at the same version; pip {f['seconds']:.0f} s; removed first: "
            f"{'; '.join(f['removed']) or 'nothing'}) + {f['kaggle_reinstall_s']:.0f} s of reinstalls Kaggle would make "
            f"= about {f['estimate_s']:.0f} s, {f['share']:.0%} of the smoke window ({f['smoke_budget_s']:.0f} s)"
        ),
    )
    result["install"] = installed
    if installed is None:
        return _finish(result, steps, out, keep_environments, echo)

    model = (build / MODEL).resolve()
    extra = ["--config", str(model / CONFIG_NAME)] if (model / CONFIG_NAME).is_file() else []
    steps.run(
        "imports",
        lambda: run_probe(python, "imports", out),
        lambda f: (
            ", ".join(f"{k} {v}" for k, v in f["versions"].items())
            + f"; torch CUDA build {f['torch_cuda_build']}, GPU {'yes' if f['cuda_available'] else 'no'}, "
            f"vLLM platform {f['vllm_platform']}"
        ),
    )
    lora = steps.run(
        "lora",
        lambda: run_probe(python, "lora", out, "--model", str(model), "--work", str(out), *extra),
        lambda f: (
            f"arcsub.finetune.load_for_training attached a rank-{f['lora_rank']} LoRA "
            f"({f['trainable_parameters']:,} trainable parameters) and took {f['steps']} step "
            f"(loss {f['loss']:.3f}, {f['step_s']:.0f} s) on {f['task']}; torchao in the environment: {f['torchao']}"
        ),
    )
    if lora is not None:
        steps.run(
            "vllm",
            lambda: run_probe(python, "vllm", out, "--model", str(model), "--adapter", lora["adapter"], *extra),
            vllm_line,
        )

    loaded = {}
    for name in ("imports", "lora", "vllm"):
        loaded.update((steps.found.get(name) or {}).get("loaded", {}))
    in_set = set(set_names(root))
    from_image = {n: v for n, v in loaded.items() if canonicalize_name(n) not in in_set | {"arcsub"}}
    result["image_packages_loaded"] = from_image
    if from_image:
        echo(f"image packages the stack loaded (not from the set): {len(from_image)}: "
             + ", ".join(f"{n} {v}" for n, v in sorted(from_image.items())))  # fmt: skip

    kernel_side = {*in_set, *ENGINES, *OPTIONAL_IMPORTS, *loaded}
    steps.run(
        "pip check",
        lambda: pip_check_step(python, target.dropped, kernel_side, echo),
        lambda f: f"{len(f['lines'])} line(s), all harmless",
    )
    if target.name == "cpu":
        smoke_budget_s = budget_s + installed["estimate_s"]
        steps.run("smoke run", lambda: smoke(build, out / "smoke", smoke_budget_s, echo=echo, over_image=image_name),
                  lambda f: f"{f['by_model']} task(s) by the model, score {f['score']}, {f['elapsed_s']:.0f} s "
                  f"(the kernel's own install included)")  # fmt: skip
    return _finish(result, steps, out, keep_environments, echo)


def install_step(python: Path, build: Path, out: Path, record: dict, window: float, echo) -> dict:
    """The kernel's own install over the replica copy, timed, plus what Kaggle would
    reinstall; checked against the smoke window."""
    input_root, working = out / "input", out / "working"
    lay_out_input(build / WHEELS, input_root)
    echo("the kernel installs the bundle over the replica (kernel/main.py --install-only, offline)")
    skipped = already_there(record, build / WHEELS)
    found = kernel_install(python, build / KERNEL / "main.py", input_root, working, out / "install.log")
    found["already_there"] = len(skipped)
    again = reinstalled_on_kaggle(record, build / WHEELS)
    found["kaggle_reinstalls"] = [p.name for p in again]
    if again:
        names = ", ".join(p.name.split("-")[0] for p in again[:4])
        echo(f"reinstalling what Kaggle would replace but the replica skipped: {len(again)} wheels "
             f"({sum(p.stat().st_size for p in again) / 1e9:.2f} GB: {names}, ...)")  # fmt: skip
    found["kaggle_reinstall_s"] = round(force_reinstall(python, again), 1)
    found["estimate_s"] = round(found["wall_s"] + found["kaggle_reinstall_s"], 1)
    found["smoke_budget_s"] = window
    found["share"] = round(found["estimate_s"] / window, 3)
    if found["share"] > INSTALL_SHARE_LIMIT:
        raise CheckError(f"installing takes about {found['estimate_s']:.0f} s, {found['share']:.0%} of the smoke "
                         f"window ({window:.0f} s, kernel.smoke_budget_s); more than half leaves too little for "
                         "the smoke run: raise kernel.smoke_budget_s or shrink the set")  # fmt: skip
    return found


def pip_check_step(python: Path, dropped, kernel_side: set[str], echo) -> dict:
    """``pip check`` in the replica, each line classified; a harmless verdict that
    names a module holds only if that module imports there."""
    from .pip_check import classify

    table = []
    for conflict in classify(pip_check(python), dropped=dropped, kernel_side=kernel_side):
        row = {"line": conflict.line, "harmless": conflict.harmless, "why": conflict.why}
        if conflict.harmless and conflict.module:
            failed = import_fails(python, conflict.module)
            row["imports"] = failed or "yes"
            if failed:
                row.update(harmless=False, why=f"import {conflict.module} fails here: {failed}")
        echo(f"  {'harmless' if row['harmless'] else 'NOT HARMLESS'}: {row['line']} ({row['why']})")
        table.append(row)
    bad = [row["line"] for row in table if not row["harmless"]]
    if bad:
        raise CheckError(f"{len(bad)} conflict(s) on the kernel's side: {'; '.join(bad[:3])}")
    return {"lines": table}


def vllm_line(found: dict) -> str:
    model, template, adapter = found["model_config"], found["chat_template"], found["adapter"]
    gpus = "; ".join(f"{gpu}: {g['dtype']}, {g['attention_backend']}" for gpu, g in found["gpus"].items())
    return (
        f"{model['architectures'][0]} config (max_model_len {model['max_model_len']}, {model['dtype']}), "
        f"{found['tokenizer']['class']}, chat template gives arcsub's {template['arcsub_tokens']} token ids, "
        f"adapter r={adapter['r']} accepted (max_lora_rank {adapter['max_lora_rank']}); {gpus}; "
        f"not run without a GPU: {len(found['gpu_only'])} items (in {REPORT})"
    )


def _finish(result: dict, steps: _Steps, out: Path, keep_environments: bool, echo) -> dict:
    result.update(steps.found, failures=steps.failures)
    write_json_atomic(out / REPORT, result, indent=1)
    if not keep_environments:
        for venv in (out / "venv", out / "smoke" / "venv"):
            shutil.rmtree(venv, ignore_errors=True)
        echo(f"the replica copies are removed (pass --out to keep them); reports and logs stay in {out}")
    if steps.failures:
        raise CheckError(f"over the image: {len(steps.failures)} step(s) failed: " + "; ".join(steps.failures)
                         + f" (details in {out / REPORT})")  # fmt: skip
    return result
