"""Runs `atrous bench` and reads its records: shared by the scripts in benches/."""

import json
import os
import subprocess
import tempfile


def bench_by_dilation(atrous, flags, env=None):
    """`atrous bench FLAGS --json …` (its table silenced): the records, by dilation."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.json")
        subprocess.run([atrous, "bench", *flags, "--json", path], env=env, check=True, stdout=subprocess.DEVNULL)
        with open(path) as f:
            return {r["dilation"]: r for r in json.load(f)}
