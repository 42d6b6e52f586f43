"""The download path of dlcore.data against a real HTTP server on 127.0.0.1.

The server serves bytes the tests make; it honours ``Range`` (unless told not
to) and can cut a connection midway, after sending part of the body.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import struct
import zipfile

import numpy as np
import pytest

from dlcore import data
from dlcore.data import download, real
from dlcore.data.download import ChecksumError, DownloadError


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def leftovers(directory):
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# --- fetch ----------------------------------------------------------------------


def test_good_file_downloads_and_verifies(server, tmp_path):
    body = np.random.default_rng(0).bytes(300_000)
    server.files["/f.bin"] = body
    dest = tmp_path / "d" / "f.bin"
    got = download.fetch(server.url + "/f.bin", dest, sha256=sha(body), size=len(body), progress=False)
    assert got == dest and dest.read_bytes() == body
    assert leftovers(dest.parent) == ["f.bin", "f.bin.lock"]
    # Present: no second request.
    download.fetch(server.url + "/f.bin", dest, sha256=sha(body), progress=False)
    assert len(server.requests) == 1


def test_wrong_checksum_leaves_nothing(server, tmp_path):
    body = b"not the file you want" * 1000
    server.files["/f.bin"] = body
    dest = tmp_path / "d" / "f.bin"
    with pytest.raises(ChecksumError, match=rf"f.bin .* has SHA-256 {sha(body)}, but the published hash is 0+"):
        download.fetch(server.url + "/f.bin", dest, sha256="0" * 64, progress=False)
    assert not dest.exists() and not dest.with_name("f.bin.part").exists()
    assert isinstance(ChecksumError("x"), ValueError)


def test_cut_connection_leaves_no_file_and_the_next_call_resumes(server, tmp_path):
    body = np.random.default_rng(1).bytes(200_000)
    server.files["/f.bin"] = body
    server.cut_after["/f.bin"] = 70_000
    dest = tmp_path / "d" / "f.bin"
    with pytest.raises(DownloadError, match="70000 of 200000 bytes"):
        download.fetch(server.url + "/f.bin", dest, sha256=sha(body), progress=False)
    assert not dest.exists()
    part = dest.with_name("f.bin.part")
    assert part.read_bytes() == body[:70_000]  # a prefix, never under the final name
    download.fetch(server.url + "/f.bin", dest, sha256=sha(body), progress=False)
    assert dest.read_bytes() == body and not part.exists()
    assert server.requests[-1] == ("/f.bin", "bytes=70000-")  # resumed, not restarted


def test_server_without_range_restarts_cleanly(server, tmp_path):
    body = np.random.default_rng(2).bytes(100_000)
    server.files["/f.bin"] = body
    server.honour_range = False
    dest = tmp_path / "f.bin"
    dest.with_name("f.bin.part").write_bytes(b"garbage from an older, different attempt")
    download.fetch(server.url + "/f.bin", dest, sha256=sha(body), progress=False)
    assert dest.read_bytes() == body


def test_leftover_as_long_as_the_file_restarts(server, tmp_path):
    body = b"0123456789" * 100
    server.files["/f.bin"] = body
    dest = tmp_path / "f.bin"
    dest.with_name("f.bin.part").write_bytes(b"x" * len(body))  # server answers 416
    download.fetch(server.url + "/f.bin", dest, sha256=sha(body), progress=False)
    assert dest.read_bytes() == body


def test_mirrors_are_tried_in_order_and_errors_are_reported(server, tmp_path):
    body = b"abc" * 10
    server.files["/good"] = body
    dest = tmp_path / "f"
    download.fetch([server.url + "/missing", server.url + "/good"], dest, sha256=sha(body), progress=False)
    assert dest.read_bytes() == body
    with pytest.raises(DownloadError, match="HTTP 404.*127.0.0.1:1/x: .*refused"):
        download.fetch([server.url + "/nothing", "http://127.0.0.1:1/x"], tmp_path / "g", progress=False)
    assert not (tmp_path / "g").exists()
    with pytest.raises(ValueError, match="64 lowercase hex"):
        download.fetch(server.url + "/good", tmp_path / "h", sha256="abc")


def test_unknown_hash_is_recorded_on_first_use_then_enforced(server, tmp_path):
    body = b"first version" * 100
    server.files["/f.txt"] = body
    dest = tmp_path / "f.txt"
    download.fetch(server.url + "/f.txt", dest, progress=False)
    assert download.recorded_sha256(dest) == sha(body)
    assert (tmp_path / "f.txt.sha256").read_text() == f"{sha(body)}  f.txt\n"
    # The file is lost and upstream changed: the recorded hash catches it.
    dest.unlink()
    server.files["/f.txt"] = b"changed upstream" * 100
    with pytest.raises(ChecksumError, match="recorded on first use"):
        download.fetch(server.url + "/f.txt", dest, progress=False)
    assert not dest.exists() and not (tmp_path / "f.txt.part").exists()


def test_progress_bar_is_drawn(server, tmp_path, capsys):
    server.files["/p"] = b"z" * 50_000
    download.fetch(server.url + "/p", tmp_path / "p", progress=True)
    assert "p:" in capsys.readouterr().err


# --- load through the registry ------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def test_load_mnist_downloads_verifies_and_parses(server, cache, monkeypatch):
    rng = np.random.default_rng(3)
    payloads, arrays = {}, {}
    for split, n in (("train", 6), ("test", 4)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        arrays[split] = (images, labels)
        for stem, a in zip(real._IDX_STEMS[split], (images, labels)):
            payloads[f"{stem}.gz"] = gzip.compress(idx_bytes(a))
    for name, body in payloads.items():
        server.files[f"/mnist/{name}"] = body
    files = tuple(dataclasses.replace(f, urls=(f"{server.url}/mnist/{f.name}",), sha256=sha(payloads[f.name]),
                                      size=len(payloads[f.name])) for f in real.MNIST.files)
    monkeypatch.setitem(real.DATASETS, "mnist", dataclasses.replace(real.MNIST, files=files))

    test = data.load("mnist", "test", progress=False)
    assert {p for p, _ in server.requests} == {f"/mnist/{s}.gz" for s in real._IDX_STEMS["test"]}
    np.testing.assert_array_equal(test["x"][..., 0], arrays["test"][0] / np.float32(255))
    np.testing.assert_array_equal(test["y"], arrays["test"][1])
    both = data.load("mnist", progress=False)
    np.testing.assert_array_equal(both["train"]["y"], arrays["train"][1])
    assert len(server.requests) == 4  # each file fetched once

    # A tampered file: clear error, not a fallback, nothing cached.
    server.files["/mnist/train-images-idx3-ubyte.gz"] = b"tampered"
    (cache / "mnist" / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(ChecksumError, match="train-images-idx3-ubyte.gz"):
        data.load_or_standin("mnist", "digits", progress=False)
    assert not (cache / "mnist" / "train-images-idx3-ubyte.gz").exists()
    assert not (cache / "mnist" / "train-images-idx3-ubyte.gz.part").exists()


def test_mirror_env_and_download_flag(server, cache, monkeypatch):
    """bank_marketing has no known hash: downloaded through DLCORE_MIRROR, its
    hash is recorded on first use; download=False and DLCORE_OFFLINE stop it."""
    header = "age;job;marital;education;default;balance;housing;loan;contact;day;month;duration;campaign;pdays;previous;poutcome;y"
    rows = [
        '30;"admin.";"married";"secondary";"no";100;"yes";"no";"cellular";5;"may";200;1;-1;0;"unknown";"no"',
        '45;"technician";"single";"tertiary";"no";2500;"no";"yes";"unknown";17;"jun";90;3;100;2;"success";"yes"',
    ] * 10
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("bank-full.csv", "\n".join([header, *rows]) + "\n")
    outer = io.BytesIO()
    with zipfile.ZipFile(outer, "w") as z:
        z.writestr("bank.zip", inner.getvalue())
    server.files["/bank_marketing/bank+marketing.zip"] = outer.getvalue()

    with pytest.raises(data.DatasetNotFoundError, match="download=False"):
        data.load("bank_marketing", download=False)
    monkeypatch.setenv("DLCORE_OFFLINE", "1")
    with pytest.raises(data.DatasetNotFoundError, match="DLCORE_OFFLINE"):
        data.load("bank_marketing")
    monkeypatch.delenv("DLCORE_OFFLINE")
    monkeypatch.setenv("DLCORE_MIRROR", server.url + "/")
    splits = data.load("bank_marketing", progress=False)
    assert splits["train"]["x"].shape == (16, 48) and splits["test"]["x"].shape == (4, 48)
    names = real.bank_feature_names()
    row = splits["train"]["x"][splits["train"]["y"] == 1][0]
    on = {n for n, v in zip(names, row) if v == 1.0}
    assert {"loan", "job=technician", "marital=single", "month=jun", "poutcome=success"} <= on
    assert row[names.index("balance")] == 2500
    y = np.concatenate([splits["train"]["y"], splits["test"]["y"]])
    assert sorted(np.bincount(y)) == [10, 10]
    recorded = (cache / "bank_marketing" / "bank+marketing.zip.sha256").read_text().split()[0]
    assert recorded == sha(outer.getvalue())


def test_unreachable_network_is_not_found_and_falls_back(cache, monkeypatch):
    monkeypatch.setenv("DLCORE_MIRROR", "http://127.0.0.1:1")
    files = tuple(dataclasses.replace(f, urls=("http://127.0.0.1:1/nope",)) for f in real.CALIFORNIA_HOUSING.files)
    monkeypatch.setitem(real.DATASETS, "california_housing",
                        dataclasses.replace(real.CALIFORNIA_HOUSING, files=files))
    with pytest.raises(data.DatasetNotFoundError, match="download failed.*refused") as excinfo:
        data.load("california_housing")
    assert "\n" not in str(excinfo.value) and "diabetes" in str(excinfo.value)
    splits, used = data.load_or_standin("california_housing", "diabetes")
    assert used == "diabetes" and splits["train"]["x"].shape == (354, 10)
    assert leftovers(cache / "california_housing") in ([], ["cal_housing.tgz.lock"])
