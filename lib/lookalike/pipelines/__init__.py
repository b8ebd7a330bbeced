"""Multi-step jobs: the nightly reindex (lease, embed, build, publish, report) and which whitening it uses."""
