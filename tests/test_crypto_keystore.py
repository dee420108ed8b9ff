"""Key files at rest (crypto/keystore.py): sealed under a passphrase, created owner-only
without a chmod window, refused when others may read them, altered or plaintext; and the
`node.py keys` verbs that manage them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crypto import KeyPair
from crypto.keystore import (
    DEV_SCRYPT,
    ENV_PASSPHRASE,
    ENV_PASSPHRASE_FILE,
    KeyFileExposed,
    KeystoreError,
    NoPassphrase,
    PlaintextKeyFile,
    ScryptParams,
    WrongPassphrase,
    load_key,
    resolve_passphrase,
    save_key,
    write_private,
)

ROOT = Path(__file__).resolve().parent.parent
KEY = KeyPair.from_seed(b"\x11" * 32)


def test_a_saved_key_loads_back_only_under_its_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    save_key(KEY, path, "correct horse", DEV_SCRYPT)
    assert load_key(path, "correct horse").public_key == KEY.public_key
    with pytest.raises(WrongPassphrase):
        load_key(path, "battery staple")
    assert KEY.seed().hex() not in path.read_text()


def test_files_are_created_owner_only_even_under_an_open_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        save_key(KEY, tmp_path / "k.key", "pw", DEV_SCRYPT)
        write_private(tmp_path / "passphrase", b"pw\n")
    finally:
        os.umask(old)
    for name in ("k.key", "passphrase"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.key", "passphrase"]  # no temporary left


def test_a_key_file_is_never_overwritten_unless_replaced_on_purpose(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    save_key(KEY, path, "pw", DEV_SCRYPT)
    other = KeyPair.from_seed(b"\x12" * 32)
    with pytest.raises(FileExistsError):
        save_key(other, path, "pw", DEV_SCRYPT)
    assert load_key(path, "pw").public_key == KEY.public_key
    save_key(other, path, "new", DEV_SCRYPT, replace=True)
    assert load_key(path, "new").public_key == other.public_key


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_key_file_others_may_read_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "k.key"
    save_key(KEY, path, "pw", DEV_SCRYPT)
    path.chmod(mode)
    with pytest.raises(KeyFileExposed) as info:
        load_key(path, "pw")
    assert info.value.mode == mode and "chmod 600" in str(info.value)


def test_an_altered_public_part_fails_like_a_wrong_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    save_key(KEY, path, "pw", DEV_SCRYPT)
    document = json.loads(path.read_text())
    document["public"]["address"] = "0x" + "00" * 20
    path.unlink()
    write_private(path, json.dumps(document).encode())
    with pytest.raises(WrongPassphrase):
        load_key(path, "pw")


@pytest.mark.parametrize("content", [KEY.seed().hex() + "\n", "1" * 64 + "\n"])
def test_a_plaintext_seed_file_is_refused_with_the_way_out(tmp_path: Path, content: str) -> None:
    path = tmp_path / "old.key"
    write_private(path, content.encode())
    with pytest.raises(PlaintextKeyFile, match="keys import"):
        load_key(path, "pw")


@pytest.mark.parametrize("edit", [
    lambda d: d["crypto"]["kdfparams"].update(n=2**30),  # a hostile file asking for 1 TiB of memory
    lambda d: d["crypto"]["kdfparams"].update(n=1000),  # not a power of two
    lambda d: d["crypto"].update(cipher="rot13"),
    lambda d: d.update(kind="agent-identity"),
    lambda d: d["crypto"].pop("nonce"),
])
def test_malformed_key_files_are_refused(tmp_path: Path, edit: object) -> None:
    path = tmp_path / "k.key"
    save_key(KEY, path, "pw", DEV_SCRYPT)
    document = json.loads(path.read_text())
    edit(document)  # type: ignore[operator]
    path.unlink()
    write_private(path, json.dumps(document).encode())
    with pytest.raises(KeystoreError):
        load_key(path, "pw")


def test_scrypt_parameters_are_checked() -> None:
    with pytest.raises(KeystoreError):
        ScryptParams(n=3, r=8, p=1)


def test_the_passphrase_comes_from_a_file_then_the_environment(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    write_private(first, b"from the file\n")
    write_private(second, b"from the env file\n")
    env = {ENV_PASSPHRASE_FILE: str(second), ENV_PASSPHRASE: "from the env"}
    assert resolve_passphrase("k", first, env) == "from the file"
    assert resolve_passphrase("k", None, env) == "from the env file"
    assert resolve_passphrase("k", None, {ENV_PASSPHRASE: "from the env"}) == "from the env"
    if not sys.stdin.isatty():
        with pytest.raises(NoPassphrase):
            resolve_passphrase("k", None, {})
    second.chmod(0o644)  # a passphrase file is guarded like a key
    with pytest.raises(KeyFileExposed):
        resolve_passphrase("k", None, env)


def keys(*args: str, cwd: Path, passphrase: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in (ENV_PASSPHRASE, ENV_PASSPHRASE_FILE)}
    return subprocess.run([sys.executable, str(ROOT / "node.py"), "keys", *args], cwd=cwd, capture_output=True,
                          text=True, env={**env, ENV_PASSPHRASE_FILE: str(passphrase)}, timeout=120)


def test_the_keys_verbs_round_trip_a_key(tmp_path: Path) -> None:
    """import, change-passphrase, export (`new` and `show` are driven by test_cli_errors.py)."""
    old, new = tmp_path / "old", tmp_path / "new"
    write_private(old, b"old passphrase\n")
    write_private(new, b"new passphrase\n")
    write_private(tmp_path / "seed", KEY.seed().hex().encode())
    imported = keys("import", "--dev", "seed", "k.key", cwd=tmp_path, passphrase=old)
    assert imported.returncode == 0, imported.stderr
    shown = json.loads(imported.stdout.splitlines()[-1])
    assert shown == {"publicKey": "0x" + KEY.public_key.hex(), "address": "0x" + KEY.address.hex()}
    assert (tmp_path / "k.key").stat().st_mode & 0o777 == 0o600
    changed = keys("change-passphrase", "--dev", "k.key", "--new-passphrase-file", str(new), cwd=tmp_path,
                   passphrase=old)
    assert changed.returncode == 0, changed.stderr
    refused = keys("export", "k.key", "out", cwd=tmp_path, passphrase=old)
    assert refused.returncode == 1 and refused.stderr.startswith("node.py keys: ")
    assert "wrong passphrase" in refused.stderr and not (tmp_path / "out").exists()
    assert keys("export", "k.key", "out", cwd=tmp_path, passphrase=new).returncode == 0
    assert (tmp_path / "out").read_text().strip() == KEY.seed().hex()
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o600
