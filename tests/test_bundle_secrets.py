from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from arcsub.bundle.secrets import SecretsError, find_secrets, refuse_secrets
from arcsub.errors import ArcsubError

# Fake credentials, assembled at run time so that this file itself holds none verbatim.
HEX32 = "0123456789abcdef" * 2
PEM = "-----BEGIN " + "RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----\n"
STRINGS = {
    "kaggle json content": ('{"username": "alice", "key": "' + HEX32 + '"}', "Kaggle API key"),
    "KAGGLE_KEY": ("export KAGGLE_KEY=" + HEX32 + "\n", "KAGGLE_KEY"),
    "KAGGLE_API_TOKEN": ('KAGGLE_API_TOKEN = "' + "a1b2" * 8 + '"\n', "KAGGLE_API_TOKEN"),
    "KGAT token": ("token: " + "KG" + "AT_" + "Zz9" * 10 + "\n", "Kaggle access token"),
    "Hugging Face": ("HF = '" + "hf" + "_" + "aB3" * 12 + "'\n", "Hugging Face"),
    "GitHub classic": ("gh" + "p_" + "x1Y2" * 9 + "\n", "GitHub token"),
    "GitHub fine-grained": ("github" + "_pat_" + "11ABCDEFG0" * 3 + "_abc\n", "GitHub fine-grained"),
    "AWS": ("aws_access_key_id = " + "AK" + "IA" + "IOSFODNN7EXAMPLE\n", "AWS access key"),
    "private key": (PEM, "private key"),
    "PGP private key": ("-----BEGIN " + "PGP PRIVATE KEY BLOCK-----\nlQOYBF\n", "private key"),
    "KAGGLE_KEY in Python": ('os.environ["KAGGLE_KEY"] = "' + HEX32 + '"\n', "KAGGLE_KEY"),
    "OAuth refresh token": ('{"refresh_token": "' + "r3fr35h" * 4 + '", "username": "alice"}', "refresh token"),
}


def _zip(path: Path, members: dict[str, str | bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _one(folder: Path, *words: str) -> str:
    findings = find_secrets(folder)
    assert len(findings) == 1, findings
    assert all(w in findings[0] for w in words), findings
    return findings[0]


@pytest.mark.parametrize(
    "name",
    [
        "kaggle.json",
        ".env",
        "prod.env",
        "access_token",
        "access_token.txt",
        "kaggle.token",
        ".netrc",
        ".git-credentials",
        "id_rsa",
        "id_ed25519",
        "credentials.json",
        ".env.local",
        "Kaggle.JSON",
        ".pypirc",
    ],
)
def test_refused_file_names(tmp_path, name):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / name).write_text("harmless\n")
    _one(tmp_path, str(tmp_path / "sub" / name) + ": ")


@pytest.mark.parametrize("kind", list(STRINGS))
def test_credential_strings(tmp_path, kind):
    text, words = STRINGS[kind]
    (tmp_path / "notes.txt").write_text("some text\n" + text)
    finding = _one(tmp_path, "notes.txt", words)
    assert "line 2" in finding
    assert HEX32 not in finding  # the secret itself is never echoed


def test_kaggle_json_inside_arcsub_wheel(tmp_path):
    _zip(tmp_path / "arcsub-0.1.0-py3-none-any.whl", {"arcsub/__init__.py": "", "arcsub/kaggle.json": "{}"})
    _one(tmp_path, "arcsub-0.1.0-py3-none-any.whl!arcsub/kaggle.json", "Kaggle API key file")


def test_credential_string_inside_arcsub_wheel(tmp_path):
    text, words = STRINGS["Hugging Face"]
    _zip(tmp_path / "arcsub-0.1.0-py3-none-any.whl", {"arcsub/config.py": text})
    _one(tmp_path, "arcsub-0.1.0-py3-none-any.whl!arcsub/config.py", words)


def test_refused_name_inside_third_party_wheel(tmp_path):
    _zip(tmp_path / "somepkg-1.0-py3-none-any.whl", {"somepkg/__init__.py": "", "somepkg/.env": "A=1"})
    _one(tmp_path, "somepkg-1.0-py3-none-any.whl!somepkg/.env", "environment file")


def test_unreadable_wheel_is_reported(tmp_path):
    (tmp_path / "broken-1.0-py3-none-any.whl").write_bytes(b"not a zip")
    _one(tmp_path, "broken-1.0-py3-none-any.whl", "cannot be read")


def test_clean_folder(tmp_path):
    # a fake safetensors file: binary, a JSON header, then weights
    (tmp_path / "model.safetensors").write_bytes(b"\x08\x00\x00\x00{}\x00\x01" + bytes(range(256)) * 64)
    (tmp_path / "config.json").write_text('{"hidden_size": 576, "key": "value"}')
    (tmp_path / "main.py").write_text('import os\nkey = os.environ.get("KAGGLE_KEY")\n')
    # third-party wheels carry test keys in their sources: their contents are not scanned
    _zip(tmp_path / "cryptography-44.0.0-cp39-abi3-manylinux_2_28_x86_64.whl", {"cryptography/tests.py": PEM})
    _zip(tmp_path / "arcsub-0.1.0-py3-none-any.whl", {"arcsub/__init__.py": "x = 1\n"})
    assert find_secrets(tmp_path) == []
    refuse_secrets([tmp_path])  # no raise


def test_arcsub_sources_are_clean():
    # arcsub's wheel is content-scanned at build time, so its own sources (this scanner's
    # patterns included) must not look like credentials
    src = Path(__file__).resolve().parents[1] / "src" / "arcsub"
    assert find_secrets(src) == []


def test_a_large_text_file_is_scanned_whole(tmp_path):
    lines = 200_000  # 9.4 MB: past the 8 MB the scan once stopped at
    (tmp_path / "big.log").write_text("a line of a long training log, nothing secret\n" * lines + STRINGS["AWS"][0])
    _one(tmp_path, f"big.log: line {lines + 1}: ", "AWS access key")
    _zip(tmp_path / "arcsub-0.1.0-py3-none-any.whl", {"arcsub/big.txt": "x" * 9_000_000 + STRINGS["Hugging Face"][0]})
    assert any("arcsub/big.txt: line 1: " in f and "Hugging Face" in f for f in find_secrets(tmp_path))


def test_binary_files_are_scanned_with_byte_offsets(tmp_path):
    weights = b"\x08\x00\x00\x00{}\x00\x01" + bytes(range(256)) * 4  # NUL bytes: not text
    (tmp_path / "model.safetensors").write_bytes(weights + PEM.encode() + weights)
    _one(tmp_path, f"model.safetensors: byte {len(weights)}: ", "private key")
    (tmp_path / "model.safetensors").unlink()
    latin1 = "poids: \xe9\xe8\n".encode("latin-1")  # no NUL, but not UTF-8
    (tmp_path / "notes.bin").write_bytes(latin1 + STRINGS["GitHub classic"][0].encode())
    _one(tmp_path, f"notes.bin: byte {len(latin1)}: ", "GitHub token")


@pytest.mark.parametrize(
    ("kind", "starts_with"),
    [("AWS", "AK" + "IA"), ("Hugging Face", "hf" + "_"), ("kaggle json content", '"username"'), ("private key", "---")],
)
def test_a_token_across_a_chunk_boundary_is_found_once(tmp_path, monkeypatch, kind, starts_with):
    from arcsub.bundle import secrets

    chunk = 2 * secrets.OVERLAP_BYTES
    monkeypatch.setattr(secrets, "CHUNK_BYTES", chunk)
    token = STRINGS[kind][0].encode()
    for before in range(chunk - len(token) - 1, chunk + 2):  # ends before the boundary, crosses it, starts after it
        (tmp_path / "weights.bin").write_bytes(b"\x00" * before + token + b"\x00" * 64)
        _one(tmp_path, f"weights.bin: byte {before + token.index(starts_with.encode())}: ", STRINGS[kind][1])


def test_the_overlap_covers_the_longest_match_a_pattern_can_make():
    import re._parser

    from arcsub.bundle.secrets import CHUNK_BYTES, CONTENT_PATTERNS, OVERLAP_BYTES

    for pattern, why in CONTENT_PATTERNS:
        longest = re._parser.parse(pattern.pattern, pattern.flags).getwidth()[1]
        assert longest < OVERLAP_BYTES < CHUNK_BYTES, why  # also one byte of look-ahead past the match


def test_a_zip_that_is_not_a_wheel_is_scanned_inside(tmp_path):
    _zip(tmp_path / "extras.zip", {"notes/keys.txt": "first line\n" + STRINGS["KGAT token"][0]})
    _one(tmp_path, "extras.zip!notes/keys.txt: line 2: ", "Kaggle access token")


def test_symlinks_followed_without_looping(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "kaggle.json").write_text("{}")
    upload = tmp_path / "upload"
    upload.mkdir()
    (upload / "linked").symlink_to(outside)  # a linked folder
    (upload / "loop").symlink_to(upload)  # a link back up must not loop
    (upload / "creds.txt").symlink_to(outside / "kaggle.json")  # a linked file, renamed
    (upload / "dangling").symlink_to(tmp_path / "gone")
    findings = find_secrets(upload)
    assert any("linked/kaggle.json" in f for f in findings), findings
    assert len(findings) == 1


def test_hard_link_is_scanned(tmp_path):
    source = tmp_path / "a.txt"
    source.write_text(STRINGS["AWS"][0])
    upload = tmp_path / "upload"
    upload.mkdir()
    (upload / "b.txt").hardlink_to(source)
    _one(upload, "b.txt", "AWS")


def test_refuse_secrets_lists_every_finding(tmp_path):
    one, two = tmp_path / "wheels", tmp_path / "model"
    one.mkdir()
    two.mkdir()
    (one / "kaggle.json").write_text("{}")
    (two / "notes.md").write_text(STRINGS["Hugging Face"][0] + STRINGS["AWS"][0])
    with pytest.raises(SecretsError) as info:
        refuse_secrets([one, two])
    lines = str(info.value).splitlines()
    assert "refuses to carry credentials" in lines[0]
    assert "~/.kaggle" in lines[0] and "environment" in lines[0] and "upload folders" in lines[0]
    assert len(lines) == 4
    assert "kaggle.json" in lines[1] and "Hugging Face" in lines[2] and "AWS" in lines[3]
    assert isinstance(info.value, ArcsubError)


def test_look_alikes_are_not_credentials(tmp_path):
    # a checksum "key" without a username, variable references and lookups, a public certificate
    (tmp_path / "cache.json").write_text('{"key": "' + HEX32 + '", "size": 3}')
    (tmp_path / "run.sh").write_text("export KAGGLE_KEY=$KAGGLE_SECRET\nkaggle datasets list\n")
    (tmp_path / "main.py").write_text('token = os.environ["KAGGLE_API_TOKEN"]\nfrom .hf_backend import X\n')
    (tmp_path / "cacert.pem").write_text("-----BEGIN " + "CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    assert find_secrets(tmp_path) == []


def test_third_party_wheel_contents_are_not_scanned(tmp_path):
    text, _ = STRINGS["Hugging Face"]
    _zip(tmp_path / "huggingface_hub-0.30.0-py3-none-any.whl", {"huggingface_hub/tests/const.py": text})
    assert find_secrets(tmp_path) == []
    # ... but a refused name in it is always found, whatever the wheel
    _zip(tmp_path / "torch-2.5.0-cp311-cp311-linux_x86_64.whl", {"torch/kaggle.json": "{}"})
    _one(tmp_path, "torch-2.5.0-cp311-cp311-linux_x86_64.whl!torch/kaggle.json")


def test_a_missing_folder_holds_nothing(tmp_path):
    assert find_secrets(tmp_path / "absent") == []
