"""The base layer: errors, the store (the only fsspec user), the layout of every store key, manifests, schemas,
Spark as a scheduler, the lease. It knows no model and no index."""
