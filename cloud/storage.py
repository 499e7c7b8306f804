"""The one way to the object store, where flights' photos, telemetry and manifests are kept.

`PLI_OBJECT_STORE` names it: a folder (the default, `<PLI_CLOUD_DIR>/objects`; also `file:///path`)
or an S3-compatible bucket (`s3://bucket/prefix`, through boto3; `PLI_S3_ENDPOINT_URL` for a store
other than AWS, credentials from boto3's usual sources: the environment, a profile, a role).
Keys are paths such as `flights/<flight>/<name>`; objects are written whole, from a local file
whose hash was already checked, so a reader never sees half an object.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from cloud.paths import cloud_dir
from cloud.settings import settings

STORE_ENV = "PLI_OBJECT_STORE"
CHUNK = 1 << 20


class ObjectStore(Protocol):
    def put_file(self, key: str, path: Path) -> None: ...
    def put_bytes(self, key: str, data: bytes) -> None: ...
    def exists(self, key: str) -> bool: ...
    def read(self, key: str) -> bytes: ...
    def stream(self, key: str) -> Iterator[bytes]: ...
    def delete(self, key: str) -> None: ...
    def keys(self) -> Iterator[str]: ...


def _check(key: str) -> str:
    parts = key.split("/")
    if key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"object key {key!r} is not a clean relative path")
    return key


class LocalStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / _check(key)

    def put_file(self, key: str, path: Path) -> None:
        self._put(key, lambda tmp: shutil.copyfile(path, tmp))

    def put_bytes(self, key: str, data: bytes) -> None:
        self._put(key, lambda tmp: tmp.write_bytes(data))

    def _put(self, key: str, write) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".tmp")
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)  # whole or not at all

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def read(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def stream(self, key: str) -> Iterator[bytes]:
        with open(self._path(key), "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def keys(self) -> Iterator[str]:
        """Every object's key (a backup's list); half-written `.tmp` files are not objects."""
        if self.root.is_dir():
            for p in sorted(self.root.rglob("*")):
                if p.is_file() and not p.name.endswith(".tmp"):
                    yield p.relative_to(self.root).as_posix()


class S3Store:
    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None, client=None):
        import boto3

        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.client = client or boto3.client("s3", endpoint_url=endpoint_url)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{_check(key)}" if self.prefix else _check(key)

    def put_file(self, key: str, path: Path) -> None:
        self.client.upload_file(str(path), self.bucket, self._key(key))  # multipart for large photos

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

    def stream(self, key: str) -> Iterator[bytes]:
        body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        yield from body.iter_chunks(CHUNK)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def keys(self) -> Iterator[str]:
        """Every object's key under the prefix, page by page (1,000 a page)."""
        start = f"{self.prefix}/" if self.prefix else ""
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start):
            for obj in page.get("Contents", []):
                yield obj["Key"][len(start):]


def open_store(spec: str | None = None) -> ObjectStore:
    """The store `spec` (else `PLI_OBJECT_STORE`, else the local default) names."""
    spec = spec or settings().object_store or str(cloud_dir() / "objects")
    if spec.startswith("s3://"):
        bucket, _, prefix = spec[5:].partition("/")
        if not bucket:
            raise ValueError(f"{STORE_ENV}={spec!r}: no bucket (s3://bucket/prefix)")
        return S3Store(bucket, prefix, settings().s3_endpoint_url)
    return LocalStore(Path(spec.removeprefix("file://")))


@lru_cache(maxsize=4)
def _cached(spec: str) -> ObjectStore:
    return open_store(spec)


def store() -> ObjectStore:
    """The configured store, made once per process (per configuration)."""
    return _cached(settings().object_store or str(cloud_dir() / "objects"))
