"""One GPU per process, shared by threads; the GIL is released while atrous computes."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import atrous


def test_threads_share_the_gpu(gpu_adapter):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((1, 16, 40, 40), dtype=np.float32)
    w = rng.standard_normal((16, 16, 3, 3), dtype=np.float32)
    expected = atrous.conv2d(x, w, padding=2, dilation=2, device="cpu")
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda device: atrous.conv2d(x, w, padding=2, dilation=2, device=device), ["gpu", "cpu"] * 4))
    for r in results:
        assert atrous.compare(r, expected).agree
    assert atrous.adapter() == gpu_adapter


def test_the_gil_is_released_during_a_computation():
    """A Python thread keeps running while a long CPU convolution runs in another."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((4, 64, 96, 96), dtype=np.float32)
    # 3.5 GFLOP a call: at least 30 ms even at the 2-core machine's peak.
    w = rng.standard_normal((256, 64, 3, 3), dtype=np.float32)
    ticks = 0
    done = threading.Event()

    def count():
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            time.sleep(0.001)

    worker = threading.Thread(target=count)
    worker.start()
    start_ticks, start = ticks, time.perf_counter()
    for _ in range(3):
        atrous.conv2d(x, w, padding=1, device="cpu")
    elapsed = time.perf_counter() - start
    done.set()
    worker.join()
    # Holding the GIL would freeze the counter for the whole computation (a few ticks in all);
    # released, it ticks about once a millisecond.
    assert elapsed > 0.05
    assert ticks - start_ticks > elapsed * 100, (ticks - start_ticks, elapsed)
