"""TUF signing keys: root keys are offline files (a threshold of them signs a root), the online
roles' keys (targets, snapshot, timestamp) come from the environment, never from the repository.

A key file is an Ed25519 private key in PEM (mode 0600); beside it, `<name>.pub.json` holds the
public key as TUF writes it, so the cloud can name root keys without holding them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import CryptoSigner, Key, SSlibKey

ONLINE_ROLES = ("targets", "snapshot", "timestamp")


def generate(path: Path) -> Key:
    """A new Ed25519 key: the private half to `path` (0600), the public half beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public = SSlibKey.from_crypto(private.public_key())
    public_path(path).write_text(json.dumps({"keyid": public.keyid, **public.to_dict()}, indent=1))
    return public


def public_path(path: Path) -> Path:
    return Path(path).with_suffix(".pub.json")


def load_public(path: Path) -> Key:
    """A public key from its `.pub.json` (or from the private key file itself)."""
    path = Path(path)
    if path.suffix == ".pem":
        return signer_from_pem(path.read_bytes()).public_key
    doc = json.loads(path.read_text())
    return Key.from_dict(doc.pop("keyid"), doc)


def signer_from_pem(pem: bytes) -> CryptoSigner:
    private = serialization.load_pem_private_key(pem, password=None)
    return CryptoSigner(private)


def load_signer(path: Path) -> CryptoSigner:
    return signer_from_pem(Path(path).read_bytes())


def online_signer(role: str) -> CryptoSigner:
    """The online role's key: `PLI_TUF_<ROLE>_KEY` (the PEM itself) or `PLI_TUF_<ROLE>_KEY_FILE`."""
    name = f"PLI_TUF_{role.upper()}_KEY"
    if os.environ.get(name):
        return signer_from_pem(os.environ[name].encode())
    if os.environ.get(name + "_FILE"):
        return load_signer(Path(os.environ[name + "_FILE"]))
    raise KeyError(f"no {role} key: set {name} (PEM) or {name}_FILE")


def online_signers() -> dict[str, CryptoSigner]:
    """The online roles' signers (targets, snapshot, timestamp), from the environment or key files."""
    return {r: online_signer(r) for r in ONLINE_ROLES}
