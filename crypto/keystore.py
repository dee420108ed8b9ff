"""Secrets at rest: key files encrypted under a passphrase, written owner-only at creation.

A key file is JSON in the spirit of the Ethereum keystore v3: the secret sealed with
ChaCha20-Poly1305 under a key derived from the passphrase by scrypt, with the KDF's
parameters and salt beside it, so a file says how to open itself:

    {"version": 1, "kind": "ed25519-seed", "public": {"public_key": ..., "address": ...},
     "crypto": {"kdf": "scrypt", "kdfparams": {"n", "r", "p", "salt"},
                "cipher": "chacha20-poly1305", "nonce": ..., "ciphertext": ...}}

The associated data is the file's `version`, `kind` and `public` fields, so a file whose
public part was edited (another address shown for the same secret) fails to open like a
wrong passphrase does. Files are created with os.open(O_CREAT | O_EXCL, 0o600), never
chmod-ed afterwards, so no other user can open them during a window at the umask's mode;
a replacement (a new passphrase) is written the same way beside the old one and renamed
over it. Reading refuses a file that group or others may read (`KeyFileExposed`).

Development clusters seal their keys under DEV_PASSPHRASE with DEV_SCRYPT: a published
passphrase protects nothing, so their KDF is as cheap as scrypt allows (docs/security.md).
"""

from __future__ import annotations

import getpass
import json
import os
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from crypto.errors import BadKey
from crypto.keys import KeyPair

VERSION = 1
SEED = "ed25519-seed"  # the `kind` of a node or account key file
SALT_BYTES = 16
NONCE_BYTES = 12
KEY_BYTES = 32
OWNER_ONLY = 0o600
# Bits of a key file's mode that must be clear: any access by group or others.
EXPOSED_BITS = stat.S_IRWXG | stat.S_IRWXO

# The insecure default of development clusters (make demo, tests), written in their
# DIR/passphrase file; documented in README and docs/security.md. Never for real keys.
DEV_PASSPHRASE = "gridchain-insecure-development-passphrase"
ENV_PASSPHRASE = "GRIDCHAIN_PASSPHRASE"
ENV_PASSPHRASE_FILE = "GRIDCHAIN_PASSPHRASE_FILE"
PASSPHRASE_BYTES_MAX = 4096


class KeystoreError(BadKey):
    """A key file that cannot be opened: wrong passphrase, malformed, or unsafe."""


class WrongPassphrase(KeystoreError):
    def __init__(self, path: Path) -> None:
        super().__init__(f"{path}: wrong passphrase (or the file was altered)")
        self.path = path


class KeyFileExposed(KeystoreError):
    def __init__(self, path: Path, mode: int) -> None:
        super().__init__(f"{path} is readable by group or others (mode {mode:o}); "
                         f"refusing it: run `chmod 600 {path}` if no one else could have read it, "
                         "otherwise replace the key")
        self.path = path
        self.mode = mode


class PlaintextKeyFile(KeystoreError):
    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} holds an unencrypted key; encrypt it with `node.py keys import {path} NEW_FILE`")
        self.path = path


class NoPassphrase(KeystoreError):
    def __init__(self, what: str) -> None:
        super().__init__(f"no passphrase for {what}: give a passphrase file, set ${ENV_PASSPHRASE_FILE} or "
                         f"${ENV_PASSPHRASE}, or run on a terminal to be asked")
        self.what = what


@dataclass(frozen=True)
class ScryptParams:
    n: int  # CPU and memory cost: 128 * r * n bytes of memory
    r: int
    p: int

    def __post_init__(self) -> None:
        if self.n < 2 or self.n & (self.n - 1) or self.r < 1 or self.p < 1:
            raise KeystoreError(f"scrypt parameters n={self.n} r={self.r} p={self.p}: n a power of 2 >= 2, r, p >= 1")


# OWASP's recommendation for scrypt (128 MiB, about 0.5 s on a server core; 2 s on the
# shared 2-core test machine under load). Paid once per node start or CLI signature.
STRONG_SCRYPT = ScryptParams(n=2**17, r=8, p=1)
DEV_SCRYPT = ScryptParams(n=2**4, r=8, p=1)
# Refused when reading: a hostile file must not make us allocate gigabytes.
SCRYPT_N_MAX = 2**20
SCRYPT_R_MAX = 32
SCRYPT_P_MAX = 16


# --- passphrases ------------------------------------------------------------------------


def read_passphrase_file(path: Path) -> str:
    """The passphrase in `path` (its first line); the file must be owner-only like a key."""
    data = read_private(path)
    if len(data) > PASSPHRASE_BYTES_MAX:
        raise KeystoreError(f"{path}: a passphrase file holds one line, not {len(data)} bytes")
    try:
        line = data.decode().splitlines()[0] if data.strip() else ""
    except UnicodeDecodeError as exc:
        raise KeystoreError(f"{path}: the passphrase is not UTF-8") from exc
    if not line:
        raise KeystoreError(f"{path}: the passphrase file is empty")
    return line


def resolve_passphrase(what: str, file: Path | None = None, env: Mapping[str, str] = os.environ,
                       confirm: bool = False) -> str:
    """The passphrase for `what` (a file name, for the prompt), from the first of: `file`,
    $GRIDCHAIN_PASSPHRASE_FILE, $GRIDCHAIN_PASSPHRASE, a prompt when stdin is a terminal
    (`confirm`: asked twice, for a new key)."""
    if file is not None:
        return read_passphrase_file(file)
    if env.get(ENV_PASSPHRASE_FILE):
        return read_passphrase_file(Path(env[ENV_PASSPHRASE_FILE]))
    if env.get(ENV_PASSPHRASE):
        return env[ENV_PASSPHRASE]
    if not sys.stdin.isatty():
        raise NoPassphrase(what)
    passphrase = getpass.getpass(f"passphrase for {what}: ")
    if confirm and getpass.getpass("again: ") != passphrase:
        raise KeystoreError("the two passphrases differ")
    if not passphrase:
        raise KeystoreError("an empty passphrase protects nothing")
    return passphrase


# --- files ------------------------------------------------------------------------------


def write_private(path: Path, data: bytes, replace: bool = False) -> None:
    """Write `data` to a new owner-only file `path` (FileExistsError if it exists, unless
    `replace`), atomically: a crash leaves the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not replace and path.exists():
        raise FileExistsError(f"{path} exists; a key file is never overwritten")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, OWNER_ONLY)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)  # fails if `path` appeared meanwhile: never overwrite
            os.unlink(temporary)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def read_private(path: Path) -> bytes:
    """The bytes of an owner-only file; KeyFileExposed when group or others may read it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise KeystoreError(f"cannot read {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode  # of the file opened, not of a path swapped meanwhile
        if mode & EXPOSED_BITS:
            raise KeyFileExposed(path, stat.S_IMODE(mode))
        return handle.read()


# --- sealing ----------------------------------------------------------------------------


def _derive(passphrase: str, salt: bytes, params: ScryptParams) -> bytes:
    return Scrypt(salt=salt, length=KEY_BYTES, n=params.n, r=params.r, p=params.p).derive(passphrase.encode())


def _associated(document: Mapping[str, Any]) -> bytes:
    header = {"version": document["version"], "kind": document["kind"], "public": document["public"]}
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def seal(secret: bytes, kind: str, public: dict[str, str], passphrase: str, params: ScryptParams) -> dict[str, Any]:
    """The key-file document holding `secret` under `passphrase`."""
    salt, nonce = os.urandom(SALT_BYTES), os.urandom(NONCE_BYTES)
    document: dict[str, Any] = {"version": VERSION, "kind": kind, "public": public}
    ciphertext = ChaCha20Poly1305(_derive(passphrase, salt, params)).encrypt(nonce, secret, _associated(document))
    document["crypto"] = {"kdf": "scrypt", "kdfparams": {"n": params.n, "r": params.r, "p": params.p,
                                                          "salt": salt.hex()},
                          "cipher": "chacha20-poly1305", "nonce": nonce.hex(), "ciphertext": ciphertext.hex()}
    return document


def unseal(document: Any, kind: str, passphrase: str, path: Path) -> bytes:
    """The secret of a key-file document of `kind`; WrongPassphrase or KeystoreError."""
    try:
        if document["version"] != VERSION or document["kind"] != kind:
            raise KeystoreError(f"{path}: a {document['kind']!r} file of version {document['version']!r}, "
                                f"not a {kind!r} file of version {VERSION}")
        box = document["crypto"]
        kdf = box["kdfparams"]
        if box["kdf"] != "scrypt" or box["cipher"] != "chacha20-poly1305":
            raise KeystoreError(f"{path}: unknown kdf {box['kdf']!r} or cipher {box['cipher']!r}")
        params = ScryptParams(int(kdf["n"]), int(kdf["r"]), int(kdf["p"]))
        if params.n > SCRYPT_N_MAX or params.r > SCRYPT_R_MAX or params.p > SCRYPT_P_MAX:
            raise KeystoreError(f"{path}: scrypt parameters {params} above the limits this node accepts")
        salt, nonce = bytes.fromhex(kdf["salt"]), bytes.fromhex(box["nonce"])
        ciphertext = bytes.fromhex(box["ciphertext"])
        associated = _associated(document)
    except (KeyError, TypeError, ValueError) as exc:
        raise KeystoreError(f"{path}: not a gridchain key file ({type(exc).__name__}: {exc})") from exc
    if len(nonce) != NONCE_BYTES:
        raise KeystoreError(f"{path}: the nonce is not {NONCE_BYTES} bytes")
    try:
        return ChaCha20Poly1305(_derive(passphrase, salt, params)).decrypt(nonce, ciphertext, associated)
    except InvalidTag as exc:
        raise WrongPassphrase(path) from exc


# --- Ed25519 key files ------------------------------------------------------------------


def key_public(key: KeyPair) -> dict[str, str]:
    return {"public_key": key.public_key.hex(), "address": "0x" + key.address.hex()}


def save_key(key: KeyPair, path: Path, passphrase: str, params: ScryptParams = STRONG_SCRYPT,
             replace: bool = False) -> None:
    """Write `key` encrypted under `passphrase` to a new owner-only file."""
    document = seal(key.seed(), SEED, key_public(key), passphrase, params)
    write_private(path, (json.dumps(document, indent=2) + "\n").encode(), replace=replace)


def read_document(path: Path) -> Any:
    data = read_private(path)
    if _is_hex_seed(data):  # before JSON: 64 decimal digits would parse as a number
        raise PlaintextKeyFile(path)
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KeystoreError(f"{path}: not a gridchain key file (not JSON)") from exc


def load_key(path: Path, passphrase: str) -> KeyPair:
    """The Ed25519 key in `path`; the file must be owner-only and open under `passphrase`."""
    document = read_document(path)
    key = KeyPair.from_seed(unseal(document, SEED, passphrase, path))
    if document["public"] != key_public(key):
        raise KeystoreError(f"{path}: the public key written in the file is not the key's")
    return key


def _is_hex_seed(data: bytes) -> bool:
    try:
        return len(bytes.fromhex(data.decode().strip())) == KEY_BYTES
    except (UnicodeDecodeError, ValueError):
        return False


def read_plain_seed(path: Path) -> KeyPair:
    """A key from an unencrypted hex seed file (`keys import`), owner-only like any key."""
    data = read_private(path)
    if not _is_hex_seed(data):
        raise KeystoreError(f"{path}: not a hex Ed25519 seed (64 hex digits)")
    return KeyPair.from_seed(bytes.fromhex(data.decode().strip()))
