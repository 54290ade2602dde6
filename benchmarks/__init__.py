"""djsupervisor's benchmarks: each figure beside its peer, measured in the same run.

Run ``python -m benchmarks`` from the repository root; see benchmarks/README.md.
Benchmarks are never collected by pytest.
"""
