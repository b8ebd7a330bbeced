"""For demos, tests and benchmarks: the demo, real public image sets from registry packages, synthetic vectors."""
