"""Near-duplicate clusters: the connected components of the pairs a self-join kept above its threshold."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from lookalike.core.store import Store


def connected_clusters(store: Store, pair_keys: list[str]) -> tuple[pa.Table, dict[str, int]]:
    """(cluster_id, image_id, cluster_size) for every image in a cluster of two or more, largest clusters
    first, and counts. Pairs are read two string columns at a time; the graph is a sparse matrix over
    dictionary codes, so 100M pairs fit in a few GB of driver memory."""
    tables = [store.read_parquet(k, ["query_id", "neighbor_id"]) for k in pair_keys]
    pairs = pa.concat_tables(tables) if tables else pa.table({"query_id": pa.array([], pa.string()),
                                                              "neighbor_id": pa.array([], pa.string())})
    ids = pc.unique(pa.concat_arrays([pairs["query_id"].combine_chunks(), pairs["neighbor_id"].combine_chunks()]))
    n = len(ids)
    if n == 0:
        empty = pa.table({"cluster_id": pa.array([], pa.int64()), "image_id": pa.array([], pa.string()),
                          "cluster_size": pa.array([], pa.int64())})
        return empty, {"clusters": 0, "clustered_images": 0, "largest_cluster": 0}
    a = pc.index_in(pairs["query_id"], value_set=ids).to_numpy()
    b = pc.index_in(pairs["neighbor_id"], value_set=ids).to_numpy()
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels)
    # Number clusters by size (largest first), ties by their smallest image id, so reruns give the same ids.
    smallest = {}
    for label, image_id in zip(labels.tolist(), ids.to_pylist(), strict=True):
        if label not in smallest or image_id < smallest[label]:
            smallest[label] = image_id
    order = sorted(range(len(sizes)), key=lambda c: (-sizes[c], smallest[c]))
    cluster_of = np.empty(len(sizes), dtype=np.int64)
    cluster_of[order] = np.arange(len(sizes))
    table = pa.table({"cluster_id": cluster_of[labels], "image_id": ids, "cluster_size": sizes[labels]})
    table = table.sort_by([("cluster_id", "ascending"), ("image_id", "ascending")])
    return table, {"clusters": len(sizes), "clustered_images": n, "largest_cluster": int(sizes.max())}
