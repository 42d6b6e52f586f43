"""Parsers of the real datasets, on small files the tests make in the canonical
layouts; the prepared (memory-mapped) cache; TFDS for CIFAR-10 under mock_data."""

from __future__ import annotations

import io
import pickle
import tarfile
import zipfile

import numpy as np
import pytest

from dlcore import data
from dlcore.data import real


@pytest.fixture
def cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("DLCORE_DATA", str(cache))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setenv("DLCORE_OFFLINE", "1")
    return cache


def write_tar(path, members: dict[str, bytes]):
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))


def write_zip(path, members: dict[str, bytes]):
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        for name, body in members.items():
            z.writestr(name, body)


def jpeg(rng, h, w) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


# --- CIFAR-10 -------------------------------------------------------------------


def cifar_batches(rng, n=2):
    """{batch name: (NHWC images, labels)} for the 5 train batches and the test one."""
    return {b: (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8))
            for b in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]}


@pytest.mark.parametrize("flavour", ["binary", "python"])
def test_cifar10_binary_and_pickle_archives(cache, flavour):
    batches = cifar_batches(np.random.default_rng(0))
    members = {}
    for name, (images, labels) in batches.items():
        chw = images.transpose(0, 3, 1, 2).reshape(len(images), -1)  # the files are channel-major
        if flavour == "binary":
            members[f"cifar-10-batches-bin/{name}.bin"] = np.concatenate([labels[:, None], chw], 1).tobytes()
        else:
            members[f"cifar-10-batches-py/{name}"] = pickle.dumps({b"data": chw, b"labels": labels.tolist()})
    fname = "cifar-10-binary.tar.gz" if flavour == "binary" else "cifar-10-python.tar.gz"
    write_tar(cache / "cifar10" / fname, members)
    splits = data.load("cifar10")
    train, test = splits["train"], splits["test"]
    assert train["x"].shape == (10, 32, 32, 3) and train["x"].dtype == np.float32
    expected = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    np.testing.assert_array_equal(train["x"], expected / np.float32(255))
    np.testing.assert_array_equal(test["y"], batches["test_batch"][1])
    assert data.load("cifar10", "test", flatten=True)["x"].shape == (2, 3072)


def test_cifar10_truncated_archive_is_a_clear_error(cache):
    path = cache / "cifar10" / "cifar-10-binary.tar.gz"
    write_tar(path, {"cifar-10-batches-bin/test_batch.bin": bytes(3073 * 2)})
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        data.load("cifar10", "test")


def test_cifar10_from_tfds_under_mock_data(cache, tmp_path):
    import tensorflow_datasets as tfds

    tfds_dir = tmp_path / "tfds"
    builder = tfds.builder("cifar10", data_dir=str(tfds_dir), file_format="array_record")
    builder.data_path.mkdir(parents=True)
    template = tfds.core.ShardedFileTemplate(data_dir=builder.data_path, dataset_name="cifar10",
                                             filetype_suffix="array_record")
    builder.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(name=s, shard_lengths=[n], num_bytes=0, filename_template=template.replace(split=s))
        for s, n in (("train", 5), ("test", 3))]))
    builder.info.write_to_directory(builder.data_path)
    with tfds.testing.mock_data(num_examples=4, data_dir=str(tfds_dir), policy=tfds.testing.MockPolicy.USE_FILES):
        source = tfds.data_source("cifar10", split="test", data_dir=str(tfds_dir), download=False)
        images = np.stack([source[i]["image"] for i in range(4)])
        test = data.load("cifar10", split="test")
    assert test["x"].shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(test["x"], images / np.float32(255))


# --- tables -----------------------------------------------------------------------


def test_california_housing_features_and_split(cache):
    rng = np.random.default_rng(1)
    rows = np.column_stack([
        rng.uniform(-124, -114, 20), rng.uniform(32, 42, 20), rng.integers(1, 52, 20), rng.integers(100, 5000, 20),
        rng.integers(20, 1000, 20), rng.integers(50, 3000, 20), rng.integers(10, 900, 20), rng.uniform(0.5, 15, 20),
        rng.integers(15000, 500001, 20)]).astype(np.float64)
    text = "\n".join(",".join(f"{v:.6f}" for v in r) for r in rows) + "\n"
    write_tar(cache / "california_housing" / "cal_housing.tgz", {"CaliforniaHousing/cal_housing.data": text.encode()})
    splits = data.load("california_housing")
    train, test = splits["train"], splits["test"]
    assert train["x"].shape == (15, 8) and test["x"].shape == (5, 8) and train["y"].shape == (15, 1)
    x = np.concatenate([train["x"], test["x"]])
    y = np.concatenate([train["y"], test["y"]])[:, 0]
    order = np.argsort(x[:, 0])
    ref = rows[np.argsort(rows[:, 7])]
    lon, lat, age, rooms, bedrooms, pop, households, income, value = ref.T
    expected = np.column_stack([income, age, rooms / households, bedrooms / households, pop, pop / households,
                                lat, lon])
    np.testing.assert_allclose(x[order], expected, rtol=1e-6)
    np.testing.assert_allclose(y[order], value / 1e5, rtol=1e-6)


def test_bank_marketing_from_kaggle_csv(cache):
    header = "age,job,marital,education,default,balance,housing,loan,contact,day,month,duration,campaign,pdays,previous,poutcome,deposit"
    rows = ["59,admin.,married,secondary,no,2343,yes,no,unknown,5,may,1042,1,-1,0,unknown,yes",
            "56,admin.,married,secondary,no,45,no,no,unknown,5,may,1467,1,-1,0,unknown,no"] * 5
    (cache / "bank_marketing").mkdir()
    (cache / "bank_marketing" / "bank.csv").write_text("\n".join([header, *rows]) + "\n")
    splits = data.load("bank_marketing")
    assert splits["train"]["x"].shape == (8, 48) and splits["test"]["y"].shape == (2,)
    names = real.bank_feature_names()
    assert len(names) == 48 and names[:3] == ["age", "balance", "day"]
    x = np.concatenate([splits["train"]["x"], splits["test"]["x"]])
    assert set(x[:, names.index("job=admin.")]) == {1.0} and set(x[:, names.index("housing")]) == {0.0, 1.0}


def test_csv_with_a_missing_column_says_which(cache):
    (cache / "wine_quality").mkdir()
    (cache / "wine_quality" / "winequality-white.csv").write_text(
        '"fixed acidity";"volatile acidity";"quality"\n7;0.27;6\n')
    with pytest.raises(ValueError, match=r"no column\(s\) \['citric acid'.*its columns are \['fixed acidity'"):
        data.load("wine_quality")
    cols = ";".join(f'"{c}"' for c in (*real.WINE_FEATURES, "quality"))
    (cache / "wine_quality" / "winequality-white.csv").write_text(
        cols + "\n" + "\n".join(";".join(str(i + j) for j in range(12)) for i in range(4)) + "\n")
    wine = data.load("wine_quality", "train")
    assert wine["x"].shape == (4, 11) and wine["y"].tolist() == [11, 12, 13, 14]


# --- text ------------------------------------------------------------------------


def test_imdb_archive_is_parsed_once_then_memory_mapped(cache):
    members = {}
    for split in ("train", "test"):
        for label in ("pos", "neg"):
            for i in range(3):
                members[f"aclImdb/{split}/{label}/{i}_7.txt"] = f"{split} {label} review {i} <br />".encode()
    members["aclImdb/train/unsup/0_0.txt"] = b"unlabelled"
    members["aclImdb/README"] = b"readme"
    path = cache / "imdb" / "aclImdb_v1.tar.gz"
    write_tar(path, members)
    train = data.load("imdb", "train")
    assert train["x"].shape == (6,) and train["x"].dtype == object
    assert sorted(train["y"].tolist()) == [0, 0, 0, 1, 1, 1]
    for text, label in zip(train["x"], train["y"]):
        assert text.startswith("train " + ("pos" if label else "neg"))
    path.unlink()  # the prepared arrays are enough now
    again = data.load("imdb", "train")
    np.testing.assert_array_equal(again["x"], train["x"])
    with pytest.raises(data.DatasetNotFoundError):
        data.load("imdb", "test")  # prepared only for train; the archive is gone


def test_shakespeare_wikitext_and_eng_spa(cache):
    text = "".join(chr(ord("a") + i % 26) for i in range(1_070_000))
    (cache / "shakespeare").mkdir()
    (cache / "shakespeare" / "input.txt").write_text(text)
    sh = data.load("shakespeare")
    assert [len(sh[s]["x"][0]) for s in ("train", "valid", "test")] == [1_000_000, 60_000, 10_000]
    assert sh["train"]["x"][0] + sh["valid"]["x"][0] + sh["test"]["x"][0] == text

    write_zip(cache / "wikitext2" / "wikitext-2-v1.zip",
              {f"wikitext-2/wiki.{s}.tokens": f" = {s} = \n words <unk> here \n".encode() for s in ("train", "valid", "test")})
    assert data.load("wikitext2", "valid")["x"][0].startswith(" = valid =")

    pairs = [f"Sentence {i}.\tFrase {i}.\tCC-BY 2.0 (France) Attribution: tatoeba.org #{i}" for i in range(50)]
    write_zip(cache / "eng_spa" / "spa-eng.zip", {"spa-eng/spa.txt": "\n".join(pairs).encode(), "spa-eng/_about.txt": b"x"})
    es = data.load("eng_spa")
    assert [len(es[s]["x"]) for s in ("train", "valid", "test")] == [40, 5, 5]
    for s in es.values():
        for en, sp in zip(s["x"], s["y"]):
            assert en.replace("Sentence", "Frase") == sp


def test_ridership_sorted_deduplicated_and_cut_by_period(cache):
    lines = ["service_date,day_type,bus,rail_boardings,total_rides"]
    days = np.arange(np.datetime64("2018-12-30"), np.datetime64("2019-06-03"))
    for d in days[::-1]:  # reverse order, as a careless export
        y, m, dd = str(d).split("-")
        wd = (d.astype(int) + 3) % 7
        lines.append(f"{m}/{dd}/{y},{'A' if wd == 5 else 'U' if wd == 6 else 'W'},{100 + d.astype(int) % 7},"
                     f"{50 + d.astype(int) % 5},0")
    lines.append(lines[5])  # a duplicated day
    write_tar(cache / "ridership" / "ridership.tgz",
              {"ridership/CTA_-_Ridership_-_Daily_Boarding_Totals.csv": "\n".join(lines).encode()})
    splits = data.load("ridership")
    assert len(splits["all"]["date"]) == len(days)
    assert np.all(np.diff(splits["all"]["date"]).astype(int) == 1)
    assert str(splits["train"]["date"][0]) == "2018-12-30" and len(splits["train"]["date"]) == 2
    assert len(splits["valid"]["date"]) == 151 and str(splits["test"]["date"][-1]) == "2019-06-02"
    first = splits["all"]
    assert first["x"].shape == (len(days), 2) and first["day_type"].dtype == np.int32
    assert first["x"][0].tolist() == [50 + days[0].astype(int) % 5, 100 + days[0].astype(int) % 7]
    sunday = np.datetime64("2019-01-06")
    assert first["day_type"][first["date"] == sunday][0] == 2


# --- photos ------------------------------------------------------------------------


def test_flowers102_prepared_memmap(cache):
    from scipy.io import savemat

    rng = np.random.default_rng(2)
    members = {f"jpg/image_{i:05d}.jpg": jpeg(rng, 30 + i, 40) for i in range(1, 7)}
    write_tar(cache / "flowers102" / "102flowers.tgz", members)
    savemat(cache / "flowers102" / "imagelabels.mat", {"labels": np.array([[1, 2, 3, 102, 5, 6]])})
    savemat(cache / "flowers102" / "setid.mat", {"trnid": np.array([[1, 2]]), "valid": np.array([[3]]),
                                                  "tstid": np.array([[4, 5, 6]])})
    splits = data.load("flowers102", image_size=16)
    assert splits["train"]["x"].shape == (2, 16, 16, 3) and splits["train"]["x"].dtype == np.uint8
    assert splits["test"]["y"].tolist() == [101, 4, 5]
    assert isinstance(splits["test"]["x"], np.memmap)
    assert (cache / "flowers102" / "prepared-image_size16" / "test" / "done.json").is_file()
    with pytest.raises(ValueError, match="image_size must be an int"):
        data.load("flowers102", image_size=2)


def test_cats_vs_dogs_skips_broken_files(cache):
    rng = np.random.default_rng(3)
    members = {f"PetImages/Cat/{i}.jpg": jpeg(rng, 20, 30) for i in range(5)}
    members |= {f"PetImages/Dog/{i}.jpg": jpeg(rng, 25, 20) for i in range(5)}
    members["PetImages/Dog/666.jpg"] = b"not an image"
    members["PetImages/Cat/Thumbs.db"] = b"junk"
    write_zip(cache / "cats_vs_dogs" / "kagglecatsanddogs_5340.zip", members)
    splits = data.load("cats_vs_dogs", image_size=12)
    y = np.concatenate([splits["train"]["y"], splits["test"]["y"]])
    assert splits["train"]["x"].shape == (8, 12, 12, 3) and sorted(y.tolist()) == [0] * 5 + [1] * 5


# --- every real dataset has its stand-in and a not-found message ---------------------


def test_every_real_dataset_names_a_standin_that_exists(cache):
    for name, dataset in real.DATASETS.items():
        meta = data.info(name)
        assert meta.standin == dataset.standin and meta.files
        for fname, urls, sha in meta.files:
            assert urls and all(u.startswith(("https://", "http://")) for u in urls)
            assert sha is None or len(sha) == 64
        if dataset.standin:
            assert data.info(dataset.standin).embedded
        with pytest.raises(data.DatasetNotFoundError, match=name):
            data.load(name)
