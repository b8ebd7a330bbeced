"""Models: the spec and fingerprint (no torch), backbones, pooling and whitening heads, loading, and the one
forward pass."""
