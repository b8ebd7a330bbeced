"""Which URIs a query worker reads for `/search/uris`: an allow-list of folders and URL prefixes, compared by
structure, never as strings. Local paths are resolved (`..`, symlinks) before the check; URLs are parsed into
scheme, host, port and a percent-decoded path; userinfo, fsspec's '::' chains and control characters are
refused; redirects are not followed; reads time out."""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from lookalike.core.errors import ConfigError, LookalikeError

LOCAL_SCHEMES = ("", "file", "local")
DEFAULT_PORTS = {"http": 80, "https": 443}


class UriRefused(LookalikeError):
    """A URI outside the worker's allow-list, or one written to slip past it; the message quotes only the URI."""


@dataclass(frozen=True)
class _Location:
    scheme: str         # "" for a local path
    host: str           # lower case; "" for a local path
    port: int | None
    path: str           # absolute and normalised; resolved for local paths

    def within(self, root: _Location) -> bool:
        if (self.scheme, self.host, self.port) != (root.scheme, root.host, root.port):
            return False
        # Whole path segments: /srv/allowed does not admit /srv/allowed-secret.
        return root.path == "/" or self.path == root.path or self.path.startswith(root.path + "/")


def _locate(uri: str, what: str) -> _Location:
    """The location a URI names, judged as the filesystem layer will open it."""
    if "::" in uri:
        # fsspec chains filesystems on '::' (url_to_fs follows each link of the chain): no check of the text
        # before it says where the chain leads, so a chained URL is never read.
        raise UriRefused(f"{what} {uri!r} holds '::', which chains filesystems as the worker reads a URI (an IPv6 "
                         "host written with '::' is read that way too: give its name): not accepted")
    if any(ord(c) < 32 or ord(c) == 127 for c in uri):
        raise UriRefused(f"{what} {uri!r} holds control characters: not accepted")
    if "://" not in uri:
        if not uri.startswith("/"):
            raise UriRefused(f"{what} {uri!r} is neither an absolute path nor a URL")
        return _Location("", "", None, os.path.realpath(uri))
    try:
        parts = urlsplit(uri)
        hostname = parts.hostname
    except ValueError as e:  # an unclosed or invalid IPv6 host, say
        raise UriRefused(f"{what} {uri!r} is not a well-formed URL: {e}") from e
    scheme = parts.scheme.lower()
    if scheme in LOCAL_SCHEMES:
        if parts.netloc not in ("", "localhost"):
            raise UriRefused(f"{what} {uri!r} names a host: a file URL is file:///absolute/path")
        return _Location("", "", None, os.path.realpath(parts.path))
    if "@" in parts.netloc:
        raise UriRefused(f"{what} {uri!r} carries user information (user@host): not accepted")
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError as e:
        raise UriRefused(f"{what} {uri!r} has a malformed port") from e
    path = unquote(parts.path) or "/"
    # A server may resolve dot segments or encoded separators differently from us: refuse them outright.
    if "\\" in path or any(segment in (".", "..") for segment in path.split("/")):
        raise UriRefused(f"{what} {uri!r} has '.' or '..' segments or a backslash in its path")
    return _Location(scheme, (hostname or "").lower(), port, posixpath.normpath("/" + path.lstrip("/")))


class UriAllowList:
    """`check(uri)` returns the location to read (a local path resolved) or raises UriRefused."""

    def __init__(self, prefixes: tuple[str, ...] | list[str]):
        try:
            self.roots = [_locate(p, "--allow-uri") for p in prefixes]
        except UriRefused as e:
            raise ConfigError(str(e)) from e
        self.prefixes = tuple(prefixes)

    def check(self, uri: str) -> str:
        if not self.roots:
            raise UriRefused("this worker reads no URI: start it with --allow-uri PREFIX to allow search by URI")
        location = _locate(uri, "URI")
        if not any(location.within(root) for root in self.roots):
            raise UriRefused(f"this worker reads no URI outside {list(self.prefixes)}: {uri!r} (a worker reads "
                             "under the prefixes it was started with, --allow-uri PREFIX)")
        return location.path if location.scheme == "" else uri


def read_options(uri: str, store_options: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """fsspec options for reading one allowed URI: redirects off (a redirect could lead outside the allow-list),
    and a time limit of its own, so a server that never answers does not hold a thread after the request
    gave up."""
    scheme = urlsplit(uri).scheme.lower() if "://" in uri else ""
    if scheme in ("http", "https"):
        import aiohttp  # fsspec's HTTP filesystem runs on aiohttp; only HTTP reads need it
        return {"allow_redirects": False,
                "client_kwargs": {"timeout": aiohttp.ClientTimeout(total=timeout_s)}}
    if scheme in ("s3", "s3a"):
        config = dict(store_options.get("config_kwargs") or {})
        config.setdefault("connect_timeout", timeout_s)
        config.setdefault("read_timeout", timeout_s)
        return {**store_options, "config_kwargs": config}
    return dict(store_options)
