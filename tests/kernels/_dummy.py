"""Shared by the dummy kernels: find the Kaggle tree as a real kernel would, write files.

A kernel run by ``arcsub simulate`` finds its tree at /kaggle (namespace mode) or
through --input-root/--working-root/--temp-root (fallback mode)."""

import argparse
import json
import os
from pathlib import Path


def roots():
    parser = argparse.ArgumentParser()
    parser.add_argument("--input-root", default="/kaggle/input")
    parser.add_argument("--working-root", default="/kaggle/working")
    parser.add_argument("--temp-root", default="/kaggle/temp")
    args, _ = parser.parse_known_args()
    return Path(args.input_root), Path(args.working_root), Path(args.temp_root)


def challenges(input_root):
    (path,) = sorted(input_root.glob("competitions/*/arc-agi_test_challenges.json"))
    return json.loads(path.read_text())


def fallback_submission(tasks):
    """Each test input as both attempts: valid, rarely right."""
    return {
        tid: [{"attempt_1": t["input"], "attempt_2": t["input"]} for t in task["test"]] for tid, task in tasks.items()
    }


def write_json(path, value):
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)
