"""The save_load example (Géron ch. 10, Saving and Loading PyTorch Models; Compiling): its claims, checked."""

from __future__ import annotations


def test_save_load_rebuilds_identically_exports_and_quantizes(quick_run):
    report, text = quick_run("save_load")
    m = report["metrics"]
    assert m["reload_max_abs_diff"] == 0.0                 # the book's claim: the rebuilt model predicts the same
    assert "predictions identical" in text and "batch sizes 1 and" in text
    assert m["export_max_abs_diff"] <= 1e-5                 # the reloaded exported function, two batch sizes
    # mnist_convnet's kernels: 300,304 float32 weights (1,201,216 bytes) -> int8 plus 122 float32 scales
    assert m["kernel_bytes_float32"] == 1_201_216 and m["kernel_bytes_int8"] == 300_304 + 4 * 122
    assert 3.5 < m["export_bytes_float32"] / m["export_bytes_int8"] < 4.0
    assert abs(m["int8_test_accuracy"] - m["convnet_test_accuracy"]) <= 0.02
    assert m["test_accuracy"] > 0.2                         # one quick epoch of the MLP learned something (10 classes)
