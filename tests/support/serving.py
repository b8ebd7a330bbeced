"""What a query worker serves, loaded; a published index exported to shard hosts, a worker on each and a router
over them."""

from __future__ import annotations

from pathlib import Path


def served_index(store, name: str, tmp_path: Path, **settings):
    """What a query worker serves of index `name` in `store`, loaded now (its files cached under tmp_path, a folder
    per store); `settings`: WorkerSettings' others."""
    from lookalike.serve.worker import ServedIndex, WorkerSettings
    cache = tmp_path / "cache" / store.url.rstrip("/").rsplit("/", 1)[-1]
    served = ServedIndex(store, WorkerSettings(name, str(cache), **settings))
    served.start(watch=False)
    return served


def exported_router(stack, store, name: str, tmp_path: Path, shards: int = 2) -> str:
    """Index `name` exported to `shards` host folders, a worker serving each and a router over them (all entered
    into the ExitStack `stack`): the router's URL."""
    from lookalike.core.spark import IN_PROCESS
    from lookalike.core.store import Store
    from lookalike.index.export import ExportConfig
    from lookalike.index.export import run as export
    from lookalike.serve.http_api import create_app, running
    from lookalike.serve.router import RouterSettings, create_router
    hosts = [tmp_path / f"host-{i}" for i in range(shards)]
    export(ExportConfig(store=store.url, name=name, destinations=tuple(map(str, hosts)), master=IN_PROCESS,
                        storage_options=store.options))
    urls = []
    for host in hosts:
        urls.append(stack.enter_context(running(create_app(served_index(Store(str(host)), name, tmp_path)))))
    return stack.enter_context(running(create_router(RouterSettings(tuple(urls)))))
