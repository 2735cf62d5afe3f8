"""FAISS and torch in one process: no deadlock, no lost torch threads, and a fork()ed child that uses
both finishes (GNU OpenMP hangs there without fi_resources.index's fork guard).

Each scenario runs in a fresh interpreter with a timeout, because a hang is the failure being tested
and import order decides whether the two libraries share one OpenMP runtime."""

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import multiprocessing as mp, os, sys, tempfile
    from pathlib import Path
    if sys.argv[1] == "torch_first":
        import torch
        from fi_resources.index import TemplateIndex, build_index
    else:
        from fi_resources.index import TemplateIndex, build_index
        import torch
    import faiss
    import numpy as np

    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 32)).astype("float32")
    folder = Path(tempfile.mkdtemp())

    def work(tag):
        a = torch.randn(256, 256)
        for round_ in range(2):
            (a @ a).sum().item()                                        # torch (OpenMP + MKL)
            build_index(x, [str(i) for i in range(len(x))], folder / f"{tag}{round_}",
                        kind="ivf_flat", threads=1)                     # faiss k-means training
            (a @ a).sum().item()
            hits = TemplateIndex(folder / f"{tag}{round_}").search(x[:64], 3, threads=1)
            assert [h[0][0] for h in hits] == [str(i) for i in range(64)]
        print(tag, "torch_threads", torch.get_num_threads(), flush=True)

    if __name__ == "__main__":
        work("parent")
        child = mp.get_context("fork").Process(target=work, args=("child",))
        child.start()
        child.join(60)
        if child.is_alive():
            child.kill()
            print("child HUNG", flush=True)
            sys.exit(3)
        sys.exit(child.exitcode)
    """
)


@pytest.mark.parametrize("order", ["torch_first", "faiss_first"])
def test_torch_and_faiss_interleaved_then_forked(order, tmp_path):
    script = tmp_path / "interleave.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script), order], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.split("\n")
    # omp_threads() restored torch's 2 threads after every FAISS call in the parent...
    assert "parent torch_threads 2" in lines
    # ...and the fork guard ran the child on one thread instead of hanging.
    assert "child torch_threads 1" in lines
