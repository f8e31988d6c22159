"""Where the SDK finds its server and token: arguments first, then NOID_URL, NOID_TOKEN and
NOID_CA_FILE, then the CLI's config file (what ``noid auth setup`` saved)."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .errors import InvalidArgument, Unauthenticated

DEFAULT_URL = "http://127.0.0.1:7777"


@dataclass
class Settings:
    target: str
    tls: bool
    token: str
    ca_file: Optional[str]


def _config_file() -> Path:
    if os.environ.get("NOID_CONFIG_FILE"):
        return Path(os.environ["NOID_CONFIG_FILE"])
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config")
    return Path(base) / "noid" / "config.toml"


def resolve(url: Optional[str], token: Optional[str], ca_file: Optional[str]) -> Settings:
    saved: dict = {}
    path = _config_file()
    if path.exists():
        with open(path, "rb") as f:
            saved = tomllib.load(f)
    url = url or os.environ.get("NOID_URL") or saved.get("url") or DEFAULT_URL
    token = token or os.environ.get("NOID_TOKEN") or saved.get("token")
    ca_file = ca_file or os.environ.get("NOID_CA_FILE") or saved.get("ca_file")
    if not token:
        raise Unauthenticated(
            "no token: pass token=..., set NOID_TOKEN, or run `noid auth setup`",
            "UNAUTHENTICATED",
        )
    if url.startswith("https://"):
        tls, target = True, url[len("https://"):]
    elif url.startswith("http://"):
        tls, target = False, url[len("http://"):]
        if ca_file:
            raise InvalidArgument(
                f"a CA file was given for {url}, which is not https://", "INVALID_ARGUMENT"
            )
    else:
        raise InvalidArgument(
            f"the server URL must start with http:// or https://, got {url!r}", "INVALID_ARGUMENT"
        )
    return Settings(target.rstrip("/"), tls, token, ca_file)


def credentials(settings: Settings):
    """Channel credentials for a TLS server: its CA file, else the system's CAs."""
    import grpc

    root = None
    if settings.ca_file:
        with open(settings.ca_file, "rb") as f:
            root = f.read()
    return grpc.ssl_channel_credentials(root_certificates=root)
