"""The real datasets of the books: canonical files, checksums and parsers.

Each `FileDataset` here records where a dataset is published and how its files
become splits of NumPy arrays. SHA-256 values are the published ones where
dlcore knows them for certain (those recorded by TensorFlow Datasets'
``url_checksums`` and scikit-learn's fetchers for the same URLs); elsewhere the
value is None and the hash is trusted on first use (see
`dlcore.data.download`): computed on the first download, written beside the
file as ``<file>.sha256`` and enforced on every later download.
"""

from __future__ import annotations

import io
import pickle
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from dlcore.checks import check_int
from dlcore.data.idx import read_idx
from dlcore.data.sources import FileDataset, RemoteFile, Split, Splits
from dlcore.data.tabular import TabularEncoder, read_csv, split_indices
from dlcore.data.wordvec import read_vectors

# --- MNIST family: IDX files --------------------------------------------------

_IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _idx_dataset(name: str, bases: tuple[str, ...], hashes: dict[str, tuple[str, int]]) -> FileDataset:
    files = tuple(
        RemoteFile(f"{stem}.gz", tuple(f"{b}{stem}.gz" for b in bases), *hashes[stem], alternatives=(stem,))
        for split in ("train", "test") for stem in _IDX_STEMS[split]
    )
    needs = {s: tuple(f"{stem}.gz" for stem in stems) for s, stems in _IDX_STEMS.items()}

    def parse(paths: dict[str, Path], splits: tuple[str, ...], **_: Any) -> Splits:
        out = {}
        for split in splits:
            img_path, lab_path = (paths[f"{stem}.gz"] for stem in _IDX_STEMS[split])
            images, labels = read_idx(img_path), read_idx(lab_path)
            if labels.ndim != 1:
                raise ValueError(
                    f"{lab_path}: labels must be 1-D (idx1), got shape {labels.shape}; "
                    "check that the images and labels files are not swapped"
                )
            if len(images) != len(labels):
                raise ValueError(
                    f"{img_path.name} holds {len(images)} images but {lab_path.name} holds "
                    f"{len(labels)} labels; the two files in {img_path.parent} come from "
                    "different releases, fetch both again"
                )
            out[split] = _image_split(images, labels, (28, 28, 1), str(img_path), name)
        return out

    return FileDataset(
        name=name, files=files, parse=parse, splits=("train", "test"), needs=needs,
        tfds_name=name, tfds_convert=_tfds_images((28, 28, 1), name), standin="digits",
    )


def _image_split(images: np.ndarray, labels: np.ndarray, shape: tuple[int, int, int], where: str,
                 name: str) -> Split:
    h, w, c = shape
    if images.shape[1:] == (h, w) and c == 1:
        images = images[..., None]  # IDX stores grey images without a channel axis
    if images.shape[1:] != shape or images.dtype != np.uint8:
        raise ValueError(
            f"{where}: expected uint8 images of shape (N, {h}, {w}[, {c}]), got {images.dtype} "
            f"{images.shape}; this is not {name!r} data"
        )
    return {"x": images.astype(np.float32) / np.float32(255.0), "y": labels.astype(np.int32)}


def _tfds_images(shape: tuple[int, int, int], name: str):
    def convert(records: list[dict[str, Any]], where: str, **_: Any) -> Split:
        images = np.stack([np.asarray(r["image"]) for r in records])
        labels = np.asarray([r["label"] for r in records])
        return _image_split(images, labels, shape, where, name)

    return convert


MNIST = _idx_dataset(
    "mnist",
    ("https://storage.googleapis.com/cvdf-datasets/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/"),
    {
        "train-images-idx3-ubyte": ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
        "train-labels-idx1-ubyte": ("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
        "t10k-images-idx3-ubyte": ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
        "t10k-labels-idx1-ubyte": ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
    },
)

FASHION_MNIST = _idx_dataset(
    "fashion_mnist",
    ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
     "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
    {
        "train-images-idx3-ubyte": ("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26421880),
        "train-labels-idx1-ubyte": ("a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29515),
        "t10k-images-idx3-ubyte": ("346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4422102),
        "t10k-labels-idx1-ubyte": ("67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5148),
    },
)

# --- CIFAR-10: binary records or Python pickles in a tar.gz -------------------

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_CIFAR_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}


def _parse_cifar10(paths: dict[str, Path], splits: tuple[str, ...], **_: Any) -> Splits:
    path = paths["cifar-10-binary.tar.gz"]
    wanted = {b: s for s in splits for b in _CIFAR_BATCHES[s]}
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                stem = Path(member.name).name
                binary = stem.endswith(".bin")
                stem = stem.removesuffix(".bin")
                if not member.isfile() or stem not in wanted:
                    continue
                raw = tar.extractfile(member).read()
                found[stem] = _cifar_binary(raw, member.name) if binary else _cifar_pickle(raw, member.name)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ValueError(f"{path}: corrupt or truncated archive ({err}); delete it and fetch it again") from None
    out = {}
    for split in splits:
        missing = [b for b in _CIFAR_BATCHES[split] if b not in found]
        if missing:
            raise ValueError(f"{path}: no batch(es) {missing} inside; this is not a CIFAR-10 archive")
        images = np.concatenate([found[b][0] for b in _CIFAR_BATCHES[split]])
        labels = np.concatenate([found[b][1] for b in _CIFAR_BATCHES[split]])
        out[split] = _image_split(images, labels, (32, 32, 3), str(path), "cifar10")
    return out


def _cifar_binary(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    # Each record: 1 label byte, then 3072 pixel bytes, channel-major (R, G, B planes of 32x32).
    if len(raw) % 3073:
        raise ValueError(f"{where}: {len(raw)} bytes is not a whole number of 3073-byte CIFAR records")
    records = np.frombuffer(raw, np.uint8).reshape(-1, 3073)
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # NCHW -> NHWC
    return np.ascontiguousarray(images), records[:, 0].copy()


def _cifar_pickle(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    # The "python version" of CIFAR-10, accepted when a user put it in the cache.
    # Unpickling runs code from the file: only files the user placed there (or
    # that passed a checksum) reach this point.
    batch = pickle.loads(raw, encoding="bytes")
    data = np.asarray(batch[b"data"], np.uint8)
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), np.asarray(batch[b"labels"], np.uint8)


CIFAR10 = FileDataset(
    name="cifar10",
    files=(
        RemoteFile(
            "cifar-10-binary.tar.gz",
            ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",),
            "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
            170052171,
            alternatives=("cifar-10-python.tar.gz",),
        ),
    ),
    parse=_parse_cifar10,
    splits=("train", "test"),
    tfds_name="cifar10",
    tfds_convert=_tfds_images((32, 32, 3), "cifar10"),
    standin="digits",
)

# --- California housing (scikit-learn's copy of the StatLib data) --------------

CALIFORNIA_FEATURES = ("MedInc", "HouseAge", "AveRooms", "AveBedrms", "Population", "AveOccup",
                       "Latitude", "Longitude")
CALIFORNIA_SEED = 42  # Géron's train_test_split(random_state=42)


def _parse_california(paths: dict[str, Path], splits: tuple[str, ...], **_: Any) -> Splits:
    path = paths["cal_housing.tgz"]
    raw = _read_member(path, "cal_housing.data")
    table = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.float64)
    if table.ndim != 2 or table.shape[1] != 9:
        raise ValueError(f"{path}: cal_housing.data should have 9 columns, got shape {table.shape}")
    # File columns: longitude, latitude, housingMedianAge, totalRooms,
    # totalBedrooms, population, households, medianIncome, medianHouseValue.
    lon, lat, age, rooms, bedrooms, pop, households, income, value = table.T
    x = np.stack([income, age, rooms / households, bedrooms / households, pop, pop / households, lat, lon], 1)
    y = value / 100_000.0  # in units of $100,000, as scikit-learn and the book
    return _regression_splits(x, y, splits, CALIFORNIA_SEED)


def _regression_splits(x: np.ndarray, y: np.ndarray, splits: tuple[str, ...], seed: int,
                       test_size: float | None = None) -> Splits:
    from sklearn.model_selection import train_test_split

    x_train, x_test, y_train, y_test = train_test_split(x, y, random_state=seed, test_size=test_size)
    parts = {"train": (x_train, y_train), "test": (x_test, y_test)}
    return {s: {"x": parts[s][0].astype(np.float32), "y": parts[s][1].astype(np.float32).reshape(-1, 1)}
            for s in splits}


CALIFORNIA_HOUSING = FileDataset(
    name="california_housing",
    files=(
        RemoteFile(
            "cal_housing.tgz",
            ("https://ndownloader.figshare.com/files/5976036",),
            # As published by scikit-learn's fetch_california_housing.
            "aaa5c9a6afe2225cc2aed2723682ae403280c4a3695a2ddda4ffb5d8215ea681",
        ),
    ),
    parse=_parse_california,
    splits=("train", "test"),
    standin="diabetes",
)

# --- Bank marketing (UCI; the book uses a balanced Kaggle subset) ---------------

BANK_NUMERIC = ("age", "balance", "day", "duration", "campaign", "pdays", "previous")
BANK_BINARY = ("default", "housing", "loan")
BANK_CATEGORICAL = ("job", "marital", "education", "contact", "month", "poutcome")
BANK_SEED = 0
# UCI's documented categories, so that x always has the same 48 columns.
BANK_CATEGORIES = {
    "job": ("admin.", "blue-collar", "entrepreneur", "housemaid", "management", "retired",
            "self-employed", "services", "student", "technician", "unemployed", "unknown"),
    "marital": ("divorced", "married", "single"),
    "education": ("primary", "secondary", "tertiary", "unknown"),
    "contact": ("cellular", "telephone", "unknown"),
    "month": ("apr", "aug", "dec", "feb", "jan", "jul", "jun", "mar", "may", "nov", "oct", "sep"),
    "poutcome": ("failure", "other", "success", "unknown"),
}


def _bank_csv(path: Path) -> tuple[bytes, str]:
    if path.suffix == ".csv":
        return path.read_bytes(), str(path)
    # UCI's archive: bank+marketing.zip -> bank.zip -> bank-full.csv.
    try:
        with zipfile.ZipFile(path) as outer:
            names = outer.namelist()
            for member in names:
                if Path(member).name == "bank-full.csv":
                    return outer.read(member), f"{path}:{member}"
            for member in names:
                if Path(member).name == "bank.zip":
                    with zipfile.ZipFile(io.BytesIO(outer.read(member))) as inner:
                        for m in inner.namelist():
                            if Path(m).name == "bank-full.csv":
                                return inner.read(m), f"{path}:{member}:{m}"
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ValueError(f"{path}: corrupt or truncated zip ({err}); delete it and fetch it again") from None
    raise ValueError(f"{path}: no bank-full.csv inside; this is not UCI's bank marketing archive")


def _parse_bank(paths: dict[str, Path], splits: tuple[str, ...], **_: Any) -> Splits:
    raw, where = _bank_csv(paths["bank+marketing.zip"])
    table = read_csv(io.BytesIO(raw), name=where)
    target = "deposit" if "deposit" in table else "y"  # Kaggle's copy renames UCI's "y"
    wanted = (*BANK_NUMERIC, *BANK_BINARY, *BANK_CATEGORICAL, target)
    missing = [c for c in wanted if c not in table]
    if missing:
        raise ValueError(f"{where}: no column(s) {missing}; its columns are {list(table)}")
    # As the book: yes/no columns become 0/1 flags, the rest one-hot; no
    # scaling (standardise with TabularEncoder fitted on the train split).
    encoder = TabularEncoder(numeric=BANK_NUMERIC, binary={c: "yes" for c in BANK_BINARY},
                             categorical=BANK_CATEGORICAL, standardize=False, categories=BANK_CATEGORIES)
    x = encoder.fit_transform(table)
    y = (table[target] == "yes").astype(np.int32)
    train_idx, test_idx = split_indices(len(y), (0.8,), seed=BANK_SEED)
    parts = {"train": train_idx, "test": test_idx}
    return {s: {"x": x[parts[s]], "y": y[parts[s]]} for s in splits}


def bank_feature_names() -> list[str]:
    """The 48 names of the columns of ``load("bank_marketing")["x"]``."""
    return [*BANK_NUMERIC, *BANK_BINARY, *(f"{c}={v}" for c in BANK_CATEGORICAL for v in BANK_CATEGORIES[c])]


BANK_MARKETING = FileDataset(
    name="bank_marketing",
    files=(
        RemoteFile(
            "bank+marketing.zip",
            ("https://archive.ics.uci.edu/static/public/222/bank+marketing.zip",),
            None,  # not known for certain: recorded on first use
            alternatives=("bank-full.csv", "bank.csv"),
        ),
    ),
    parse=_parse_bank,
    splits=("train", "test"),
    standin="breast_cancer",
)


# --- Wine quality (UCI, white wines) -------------------------------------------

WINE_FEATURES = ("fixed acidity", "volatile acidity", "citric acid", "residual sugar", "chlorides",
                 "free sulfur dioxide", "total sulfur dioxide", "density", "pH", "sulphates", "alcohol")


def _parse_wine(paths: dict[str, Path], splits: tuple[str, ...], **_: Any) -> Splits:
    path = paths["winequality-white.csv"]
    table = read_csv(path, delimiter=";", columns=(*WINE_FEATURES, "quality"))
    x = np.stack([table[c] for c in WINE_FEATURES], axis=1).astype(np.float32)
    return {"train": {"x": x, "y": table["quality"].astype(np.int32)}}


# SHA-256 and size: TensorFlow Datasets' url_checksums for this UCI URL (structured/wine_quality/checksums.tsv);
# the copy in the book's repository (deep-learning-with-pytorch/dlwpt-code, data/p1ch4/tabular-wine) has the
# same bytes, so it serves as a mirror.
WINE_QUALITY = FileDataset(
    name="wine_quality",
    files=(RemoteFile("winequality-white.csv", (
        "https://archive.ics.uci.edu/ml/machine-learning-databases/wine-quality/winequality-white.csv",
        "https://raw.githubusercontent.com/deep-learning-with-pytorch/dlwpt-code/master/data/p1ch4/"
        "tabular-wine/winequality-white.csv"),
        "76c3f809815c17c07212622f776311faeb31e87610d52c26d87d6e361b169836", 264426),),
    parse=_parse_wine,
    splits=("train",),
    standin="synthetic_wine",
)

# --- IMDB movie reviews ----------------------------------------------------------


def _parse_imdb(paths: dict[str, Path], splits: tuple[str, ...], **_: Any) -> Splits:
    path = paths["aclImdb_v1.tar.gz"]
    found: dict[str, list[tuple[str, str, int]]] = {s: [] for s in splits}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                parts = member.name.split("/")  # aclImdb/<split>/<pos|neg>/<id>_<rating>.txt
                if (member.isfile() and len(parts) == 4 and parts[1] in found and parts[2] in ("pos", "neg")
                        and parts[3].endswith(".txt")):
                    text = tar.extractfile(member).read().decode("utf-8")
                    found[parts[1]].append((member.name, text, int(parts[2] == "pos")))
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ValueError(f"{path}: corrupt or truncated archive ({err}); delete it and fetch it again") from None
    out = {}
    for split, items in found.items():
        if not items:
            raise ValueError(f"{path}: no aclImdb/{split}/pos|neg/*.txt inside; this is not the IMDB archive")
        items.sort()
        out[split] = {"x": _text_array([t for _, t, _ in items]), "y": np.array([y for *_, y in items], np.int32)}
    return out


def _tfds_imdb(records: list[dict[str, Any]], where: str, **_: Any) -> Split:
    return {"x": _text_array([_decode(r["text"]) for r in records]),
            "y": np.array([r["label"] for r in records], np.int32)}


IMDB = FileDataset(
    name="imdb",
    files=(RemoteFile("aclImdb_v1.tar.gz", ("https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",),
                      "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe", 84125825),),
    parse=_parse_imdb,
    splits=("train", "test"),
    tfds_name="imdb_reviews",
    tfds_convert=_tfds_imdb,
    standin="sentiment_sentences",
    prepared=True,
)

# --- Text corpora: tiny Shakespeare and WikiText-2 --------------------------------

SHAKESPEARE_CUTS = (1_000_000, 1_060_000)  # Géron's train/valid/test boundaries


def _parse_shakespeare(paths: dict[str, Path], splits: tuple[str, ...], **_: Any) -> Splits:
    text = paths["input.txt"].read_text(encoding="utf-8")
    a, b = SHAKESPEARE_CUTS
    parts = {"train": text[:a], "valid": text[a:b], "test": text[b:]}
    return {s: {"x": _text_array([parts[s]])} for s in splits}


SHAKESPEARE = FileDataset(
    name="shakespeare",
    files=(RemoteFile("input.txt", ("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",),
                      "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed", 1115394),),
    parse=_parse_shakespeare,
    splits=("train", "valid", "test"),
    standin="python_docs",
)


def _parse_wikitext2(paths: dict[str, Path], splits: tuple[str, ...], **_: Any) -> Splits:
    path = paths["wikitext-2-v1.zip"]
    return {s: {"x": _text_array([_read_member(path, f"wiki.{s}.tokens").decode("utf-8")])} for s in splits}


WIKITEXT2 = FileDataset(
    name="wikitext2",
    files=(RemoteFile("wikitext-2-v1.zip", ("https://wikitext.smerity.com/wikitext-2-v1.zip",
                                            "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip")),),
    parse=_parse_wikitext2,
    splits=("train", "valid", "test"),
    standin="python_docs",
)

# --- Chicago transit ridership ------------------------------------------------------

DAY_TYPES = ("W", "A", "U")  # weekday, Saturday, Sunday or holiday
RIDERSHIP_PERIODS = {  # Géron's periods, inclusive
    "train": ("2016-01-01", "2018-12-31"),
    "valid": ("2019-01-01", "2019-05-31"),
    "test": ("2019-06-01", "9999-12-31"),
    "all": ("0001-01-01", "9999-12-31"),
}


def _parse_ridership(paths: dict[str, Path], splits: tuple[str, ...], **_: Any) -> Splits:
    path = paths["ridership.tgz"]
    raw = _read_member(path, "CTA_-_Ridership_-_Daily_Boarding_Totals.csv")
    table = read_csv(io.BytesIO(raw), columns=("service_date", "day_type", "bus", "rail_boardings"),
                     name=f"{path}:CTA_-_Ridership_-_Daily_Boarding_Totals.csv")
    dates = np.array([f"{d[6:10]}-{d[0:2]}-{d[3:5]}" for d in table["service_date"]], dtype="datetime64[D]")
    unknown = sorted(set(table["day_type"]) - set(DAY_TYPES))
    if unknown:
        raise ValueError(f"{path}: unknown day types {unknown}; expected {DAY_TYPES}")
    day = np.array([DAY_TYPES.index(t) for t in table["day_type"]], np.int32)
    values = np.stack([table["rail_boardings"], table["bus"]], axis=1)
    order = np.argsort(dates, kind="stable")
    dates, day, values = dates[order], day[order], values[order]
    # The file repeats some months (2011-10, 2014-07): keep each date once.
    keep = np.concatenate([[True], dates[1:] != dates[:-1]])
    dates, day, values = dates[keep], day[keep], values[keep]
    out = {}
    for s in splits:
        lo, hi = (np.datetime64(d) for d in RIDERSHIP_PERIODS[s])
        m = (dates >= lo) & (dates <= hi)
        out[s] = {"x": values[m].astype(np.float32), "day_type": day[m], "date": dates[m]}
    return out


RIDERSHIP = FileDataset(
    name="ridership",
    files=(RemoteFile("ridership.tgz", ("https://github.com/ageron/data/raw/main/ridership.tgz",)),),
    parse=_parse_ridership,
    splits=("train", "valid", "test", "all"),
    standin="daily_series",
)

# --- English-Spanish sentence pairs (Tatoeba, via manythings.org's Anki files) ----

ENG_SPA_SEED = 42


def _parse_eng_spa(paths: dict[str, Path], splits: tuple[str, ...], **_: Any) -> Splits:
    path = paths["spa-eng.zip"]
    lines = _read_member(path, "spa.txt").decode("utf-8").splitlines()
    pairs = [line.split("\t")[:2] for line in lines if line.count("\t") >= 1]
    if not pairs:
        raise ValueError(f"{path}: spa.txt holds no tab-separated pairs; delete it and fetch it again")
    eng = _text_array([p[0] for p in pairs])
    spa = _text_array([p[1] for p in pairs])
    train, valid, test = split_indices(len(pairs), (0.8, 0.1), seed=ENG_SPA_SEED)
    parts = {"train": train, "valid": valid, "test": test}
    return {s: {"x": eng[parts[s]], "y": spa[parts[s]]} for s in splits}


ENG_SPA = FileDataset(
    name="eng_spa",
    files=(RemoteFile("spa-eng.zip", ("https://storage.googleapis.com/download.tensorflow.org/data/spa-eng.zip",)),),
    parse=_parse_eng_spa,
    splits=("train", "valid", "test"),
    standin="sentence_pairs",
)

# --- Photos: Oxford Flowers 102, Kaggle cats vs dogs ---------------------------------


def _square_uint8(data: bytes | Any, size: int) -> np.ndarray:
    """Decodes an image, centre-crops it to a square and resizes it to ``size``.

    Returns:
        uint8 ``(size, size, 3)``.
    """
    from PIL import Image

    img = Image.open(io.BytesIO(data)) if isinstance(data, bytes) else Image.fromarray(np.asarray(data))
    img = img.convert("RGB")
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img, np.uint8)


def _parse_flowers(paths: dict[str, Path], splits: tuple[str, ...], *, image_size: int = 224) -> Splits:
    from scipy.io import loadmat

    size = check_int(image_size, "image_size", low=8, high=1024)
    labels = loadmat(paths["imagelabels.mat"])["labels"].ravel().astype(np.int32) - 1  # 1..102 -> 0..101
    ids = loadmat(paths["setid.mat"])
    wanted = {"train": ids["trnid"].ravel(), "valid": ids["valid"].ravel(), "test": ids["tstid"].ravel()}
    need = {int(i) for s in splits for i in wanted[s]}
    images: dict[int, np.ndarray] = {}
    path = paths["102flowers.tgz"]
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                name = Path(member.name).name  # image_00001.jpg
                if member.isfile() and name.startswith("image_") and name.endswith(".jpg"):
                    i = int(name[6:11])
                    if i in need:
                        images[i] = _square_uint8(tar.extractfile(member).read(), size)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ValueError(f"{path}: corrupt or truncated archive ({err}); delete it and fetch it again") from None
    lost = sorted(need - set(images))
    if lost:
        raise ValueError(f"{path}: {len(lost)} image(s) missing (e.g. image_{lost[0]:05d}.jpg); fetch it again")
    return {s: {"x": np.stack([images[int(i)] for i in wanted[s]]), "y": labels[wanted[s] - 1]} for s in splits}


def _tfds_photos(records: list[dict[str, Any]], where: str, *, image_size: int = 224) -> Split:
    size = check_int(image_size, "image_size", low=8, high=1024)
    return {"x": np.stack([_square_uint8(r["image"], size) for r in records]),
            "y": np.array([r["label"] for r in records], np.int32)}


_FLOWERS = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"
FLOWERS102 = FileDataset(
    name="flowers102",
    files=(
        RemoteFile("102flowers.tgz", (_FLOWERS + "102flowers.tgz",),
                   "2d01ecc807db462958cfe3d92f57a8c252b4abd240eb955770201e45f783b246", 344862509),
        RemoteFile("imagelabels.mat", (_FLOWERS + "imagelabels.mat",),
                   "4903e94206bac23bf772aadf06451916df56b58fc483a62db32a97b82656651d", 502),
        RemoteFile("setid.mat", (_FLOWERS + "setid.mat",),
                   "46b8678f91fd95d3c8f4feab80d271a6c834a1dd896fe29fd3e6ad9ce5c8dccd", 14989),
    ),
    parse=_parse_flowers,
    splits=("train", "valid", "test"),
    tfds_name="oxford_flowers102",
    tfds_splits={"valid": "validation"},
    tfds_convert=_tfds_photos,
    standin="photo_patches",
    prepared=True,
)

CATS_VS_DOGS_SEED = 0


def _parse_cats_vs_dogs(paths: dict[str, Path], splits: tuple[str, ...], *, image_size: int = 224) -> Splits:
    size = check_int(image_size, "image_size", low=8, high=1024)
    path = paths["kagglecatsanddogs_5340.zip"]
    names, images, labels = [], [], []
    skipped = 0
    try:
        with zipfile.ZipFile(path) as z:
            for member in sorted(z.namelist()):
                parts = member.split("/")  # PetImages/<Cat|Dog>/<n>.jpg
                if len(parts) != 3 or parts[1] not in ("Cat", "Dog") or not parts[2].endswith(".jpg"):
                    continue
                raw = z.read(member)
                # As TFDS: the archive holds ~1700 files that are not JPEG (JFIF) images.
                if b"JFIF" not in raw[:10]:
                    skipped += 1
                    continue
                try:
                    images.append(_square_uint8(raw, size))
                except OSError:
                    skipped += 1
                    continue
                names.append(member)
                labels.append(int(parts[1] == "Dog"))
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise ValueError(f"{path}: corrupt or truncated zip ({err}); delete it and fetch it again") from None
    if not images:
        raise ValueError(f"{path}: no PetImages/Cat|Dog/*.jpg inside; this is not the cats vs dogs archive")
    x, y = np.stack(images), np.array(labels, np.int32)
    train, test = split_indices(len(y), (0.8,), seed=CATS_VS_DOGS_SEED)
    parts_ = {"train": train, "test": test}
    return {s: {"x": x[np.sort(parts_[s])], "y": y[np.sort(parts_[s])]} for s in splits}


CATS_VS_DOGS = FileDataset(
    name="cats_vs_dogs",
    files=(RemoteFile(
        "kagglecatsanddogs_5340.zip",
        ("https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/kagglecatsanddogs_5340.zip",),
        "b7974bd00a84a99921f36ee4403f089853777b5ae8d151c76a86e64900334af9", 824887076),),
    parse=_parse_cats_vs_dogs,
    splits=("train", "test"),
    tfds_name="cats_vs_dogs",
    tfds_splits={"train": "train[:80%]", "test": "train[80%:]"},
    tfds_convert=_tfds_photos,
    standin="photo_patches",
    prepared=True,
)


# --- Pretrained word vectors: fastText (Wikipedia, Simple English) and GloVe 6B ----------------------
# No SHA-256 is published for these files, and dlcore found none pinned elsewhere: sha256 is None, so the
# hash is recorded on first download. What is published is a SHA-1 of each file, pinned by Apache MXNet
# (python/mxnet/contrib/text/_constants.py, apache/mxnet): dlcore.data.text checks it after a download.
# GloVe 6B's size (862,182,613 bytes) is the server's Content-Length as logged by wget.

VECTOR_SHA1 = {
    "glove.6B.zip": "b64e54f1877d2f735bdd000c1d7d771e25c7dfdc",
    "wiki.simple.vec": "55267c50fbdf4e4ae0fbbda5c73830a379d68795",
}
GLOVE_6B_DIMS = (50, 100, 200, 300)


def _read_vectors_split(path: Path, member: str | None) -> Splits:
    words, vectors = read_vectors(path, member=member)
    return {"train": {"x": _text_array(words), "vectors": vectors}}


def _parse_glove6b(paths: dict[str, Path], splits: tuple[str, ...], *, dim: int = 100, **_: Any) -> Splits:
    if dim not in GLOVE_6B_DIMS:
        raise ValueError(f"glove6b has vectors of dim {list(GLOVE_6B_DIMS)}, got dim={dim!r}")
    return _read_vectors_split(paths["glove.6B.zip"], f"glove.6B.{dim}d.txt")


def _parse_fasttext_simple(paths: dict[str, Path], splits: tuple[str, ...], **_: Any) -> Splits:
    return _read_vectors_split(paths["wiki.simple.vec"], None)


GLOVE_6B = FileDataset(
    name="glove6b",
    files=(RemoteFile("glove.6B.zip", ("https://nlp.stanford.edu/data/glove.6B.zip",
                                       "https://downloads.cs.stanford.edu/nlp/data/glove.6B.zip"),
                      None, 862182613),),
    parse=_parse_glove6b,
    splits=("train",),
)

FASTTEXT_SIMPLE = FileDataset(
    name="fasttext_simple",
    files=(RemoteFile("wiki.simple.vec", ("https://dl.fbaipublicfiles.com/fasttext/vectors-wiki/wiki.simple.vec",
                                          "https://s3-us-west-1.amazonaws.com/fasttext-vectors/wiki.simple.vec")),),
    parse=_parse_fasttext_simple,
    splits=("train",),
)


def _text_array(texts: list[str]) -> np.ndarray:
    """A 1-D object array of Python strings (no fixed width: reviews vary a lot)."""
    out = np.empty(len(texts), dtype=object)
    out[:] = texts
    return out


def _decode(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


# --- helpers ------------------------------------------------------------------


def _read_member(path: Path, name: str) -> bytes:
    """Reads the member whose file name is ``name`` from a tar or zip archive."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                for member in z.namelist():
                    if Path(member).name == name:
                        return z.read(member)
        else:
            with tarfile.open(path, "r:*") as tar:
                for member in tar:
                    if member.isfile() and Path(member.name).name == name:
                        return tar.extractfile(member).read()
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as err:
        raise ValueError(f"{path}: corrupt or truncated archive ({err}); delete it and fetch it again") from None
    raise ValueError(f"{path}: no {name} inside; this is not the expected archive, delete it and fetch it again")


DATASETS: dict[str, FileDataset] = {
    d.name: d
    for d in (MNIST, FASHION_MNIST, CIFAR10, CALIFORNIA_HOUSING, BANK_MARKETING, WINE_QUALITY, IMDB,
              SHAKESPEARE, WIKITEXT2, RIDERSHIP, ENG_SPA, FLOWERS102, CATS_VS_DOGS, GLOVE_6B,
              FASTTEXT_SIMPLE)
}
