"""Named datasets: one entry point, `load`, for embedded and real datasets.

A split is a dict of NumPy arrays: ``"x"`` (inputs) and ``"y"`` (targets).
Images are NHWC float32 in [0, 1]; class labels are int32.

Embedded datasets (``thermometer``, ``digits``, ``diabetes``, ...) are always
available. Real ones (``mnist``, ``cifar10``, ``california_housing``, ...) come
from a prepared TFDS copy, dlcore's cache or a checksummed download (see
`dlcore.data.sources`) and raise `DatasetNotFoundError` when none works;
`load_or_standin` turns that into a fallback on an embedded stand-in.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from dlcore.data import embedded, generated
from dlcore.data import real
from dlcore.data.sources import DatasetNotFoundError, FileDataset, cache_dir
from dlcore.registry import Registry

__all__ = [
    "DatasetInfo",
    "DatasetNotFoundError",
    "cache_dir",
    "info",
    "load",
    "load_or_standin",
    "names",
    "prepare",
]

Split = dict[str, np.ndarray]
Splits = dict[str, Split]

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a named dataset is.

    Attributes:
        name: The name `load` takes.
        description: One or two sentences on the content, shapes and dtypes.
        source: Where the data comes from, as citation text.
        splits: The split names `load` accepts.
        embedded: True when no files are needed (built in, shipped with a
            dependency, or generated); False for datasets read from local files.
        options: The keyword options `load` accepts for this dataset.
        files: For a real dataset, its canonical files as ``(name, urls,
            sha256)``; sha256 is None where no published hash is known for
            certain (it is then recorded on first download).
        standin: For a real dataset, the embedded dataset to use without it.
        sizes: (property) For an embedded dataset, ``{split: examples}`` as
            `load` returns them; the descriptions give fractions, not counts.
    """

    name: str
    description: str
    source: str
    splits: tuple[str, ...]
    embedded: bool
    options: tuple[str, ...] = ()
    files: tuple[tuple[str, tuple[str, ...], str | None], ...] = ()
    standin: str = ""
    # () -> {split: examples}; computed on first use by the loader itself (see `sizes`)
    _sizes: Callable[[], dict[str, int]] | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def sizes(self) -> dict[str, int] | None:
        """``{split: number of examples}`` as ``load(name)`` returns them with its default options.

        For an embedded dataset, computed by building it once (the first call takes up to a second;
        later ones are free), so it always agrees with `load`: the number is ``len(split["x"])``
        (1 for the text corpora, whose ``x`` holds one string). None for a real dataset, whose
        sizes are those of its files (see the description).
        """
        return None if self._sizes is None else dict(self._sizes())


@dataclasses.dataclass(frozen=True)
class _Entry:
    info: DatasetInfo
    # (splits wanted, data_dir, **options) -> {split: Split}, at least `splits`.
    build: Callable[..., Splits]


def _embedded_entry(
    name: str, description: str, source: str, splits: tuple[str, ...], fn: Callable[..., Splits]
) -> _Entry:
    options = tuple(inspect.signature(fn).parameters)

    @functools.cache
    def sizes() -> dict[str, int]:
        # From the loader, not a number written here: a description once said 353/89 for a split
        # that gave 354/88 (sklearn's ceil(0.2 n) test rule there, round(0.8 n) train in the code).
        return {split: len(arrays["x"]) for split, arrays in fn().items()}

    def build(wanted: tuple[str, ...], data_dir: Any, *, download: bool = True,
              progress: bool | None = None, **opts: Any) -> Splits:
        del wanted, data_dir, download, progress  # embedded: every split is cheap, no files
        return fn(**opts)

    return _Entry(DatasetInfo(name, description, source, splits, True, options, _sizes=sizes), build)


def _real_entry(
    dataset: FileDataset, description: str, source: str, *, flatten: bool = False,
    options: tuple[str, ...] = (),
) -> _Entry:
    """``flatten`` adds the option to flatten ``x``; ``options`` are passed on
    to the dataset's parser (and name its prepared cache)."""

    def build(wanted: tuple[str, ...], data_dir: Any, *, download: bool = True,
              progress: bool | None = None, **opts: Any) -> Splits:
        flat = opts.pop("flatten", False)
        # Looked up per call, so that a test (or a user) can point a name at
        # another FileDataset by replacing real.DATASETS[name].
        source = real.DATASETS.get(dataset.name, dataset)
        out = source.load(wanted, data_dir=data_dir, download=download, progress=progress, **opts)
        if flat:
            out = {s: {**d, "x": d["x"].reshape(len(d["x"]), -1)} for s, d in out.items()}
        return out

    accepted = (("flatten",) if flatten else ()) + options
    files = tuple((f.name, f.urls, f.sha256) for f in dataset.files)
    info_ = DatasetInfo(dataset.name, description, source, dataset.splits, False, accepted, files, dataset.standin)
    return _Entry(info_, build)


# name -> how to build it; `dlcore data list` shows them all
DATASETS: Registry[_Entry] = Registry("dataset", listing="dlcore data list")
for _e in (
    _embedded_entry(
        "thermometer",
        "11 thermometer readings: x = t_u (unknown units) float32 (11, 1), "
        "y = t_c (Celsius) float32 (11, 1); fit t_c = w * t_u + b.",
        "Deep Learning with PyTorch, 2nd ed. (Manning), chapter 5.",
        ("train",),
        embedded.thermometer,
    ),
    _embedded_entry(
        "digits",
        "1797 handwritten digits, 8x8 grey levels: x float32 (N, 8, 8, 1) in "
        "[0, 1] (or (N, 28, 28, 1) in MNIST's layout with image_size=28), "
        "y int32 in 0..9; fixed 80/20 split (seed 0).",
        "E. Alpaydin and C. Kaynak, Optical Recognition of Handwritten Digits, "
        "UCI Machine Learning Repository (1998); the copy shipped with "
        "scikit-learn (sklearn.datasets.load_digits).",
        ("train", "test"),
        embedded.digits,
    ),
    _embedded_entry(
        "blobs",
        "Isotropic Gaussian blobs: x float32 (N, n_features), y int32 blob "
        "index; shuffled, 80/20 train/test, deterministic in seed.",
        "Synthetic, generated by dlcore with NumPy.",
        ("train", "test"),
        embedded.blobs,
    ),
    _embedded_entry(
        "diabetes",
        "442 diabetes patients: x float32 (N, 10) = age, sex, BMI, blood pressure, "
        "six serum measurements (original units), y float32 (N, 1) disease "
        "progression after a year; fixed 80/20 split (seed 0). Stand-in for "
        "california_housing.",
        "B. Efron, T. Hastie, I. Johnstone and R. Tibshirani, Least Angle "
        "Regression, Annals of Statistics 32 (2004); scikit-learn's load_diabetes.",
        ("train", "test"),
        embedded.diabetes,
    ),
    _embedded_entry(
        "breast_cancer",
        "569 breast tumours: x float32 (N, 30) features of cell nuclei, y int32 "
        "(N,) 1 = benign, 0 = malignant; fixed 80/20 split (seed 0). Stand-in "
        "for bank_marketing.",
        "W. N. Street, W. H. Wolberg and O. L. Mangasarian, Nuclear feature "
        "extraction for breast tumor diagnosis, SPIE 1905 (1993); UCI; "
        "scikit-learn's load_breast_cancer.",
        ("train", "test"),
        embedded.breast_cancer,
    ),
    _embedded_entry(
        "moons",
        "Two interleaving half circles with Gaussian noise: x float32 (N, 2), y "
        "int32 (0 outer, 1 inner); shuffled, 80/20 train/test.",
        "Synthetic, as scikit-learn's make_moons; Géron, Hands-On ML, ch. 8 (DBSCAN).",
        ("train", "test"),
        generated.moons,
    ),
    _embedded_entry(
        "mnist1d",
        "MNIST-1D: 10 classes of 1-D signals made from templates with padding, "
        "shifts, stretch, shear and noise, resampled to 40 points: x float32 "
        "(N, 40), y int32 0..9; 5000 examples, 80/20 train/test.",
        "S. Greydanus and D. Kobak, Scaling Down Deep Learning with MNIST-1D, "
        "ICML 2024 (the procedure, its defaults and templates); dlcore's implementation, standardised.",
        ("train", "test"),
        generated.mnist1d,
    ),
    _embedded_entry(
        "python_docs",
        "A real English corpus shipped with Python: the standard library's help "
        "topics (pydoc_data.topics), ~465k characters, cut 90/5/5 into train, "
        "valid, test; each split {'x': object (1,)} holding the text. Stand-in "
        "for shakespeare and wikitext2.",
        "The Python Language Reference, via the standard library's pydoc_data.",
        ("train", "valid", "test"),
        embedded.python_docs,
    ),
    _embedded_entry(
        "daily_series",
        "A synthetic daily series like Chicago ridership: x float32 (T, 2) "
        "[rail, bus], day_type int32 (T,) 0 W / 1 A / 2 U, date datetime64[D]; "
        "weekly seasonality through day types, a yearly cycle, trend and AR(1) "
        "noise; periods train 2016-2018, valid 2019-01..05, test 2019-06.., all. "
        "Stand-in for ridership.",
        "Synthetic, generated by dlcore with NumPy.",
        ("train", "valid", "test", "all"),
        generated.daily_series,
    ),
    _embedded_entry(
        "synthetic_wine",
        "4898 generated wines with wine_quality's columns: x float32 (N, 11) (fixed acidity .. alcohol, "
        "each with the UCI white wines' mean and spread), y int32 quality 3..9 in the UCI proportions, "
        "driven by a latent score that alcohol follows up and total sulfur dioxide down; one 'train' "
        "split. Stand-in for wine_quality: its figures are not the book's.",
        "Synthetic, generated by dlcore with NumPy (column statistics of Cortez et al., 2009).",
        ("train",),
        generated.synthetic_wine,
    ),
    _embedded_entry(
        "sentence_pairs",
        "1,872 English-Spanish sentence pairs from a small grammar (subjects, "
        "conjugated present-tense verbs, objects, negation, time phrases): x "
        "English, y Spanish, object arrays of str; 80/10/10. Stand-in for eng_spa.",
        "Synthetic, written for dlcore.",
        ("train", "valid", "test"),
        generated.sentence_pairs,
    ),
    _embedded_entry(
        "sentiment_sentences",
        "Short synthetic movie reviews, half positive, a quarter with negation: "
        "x object array of str, y int32 (1 positive); 80/20. Stand-in for imdb.",
        "Synthetic, written for dlcore.",
        ("train", "test"),
        generated.sentiment_sentences,
    ),
    _embedded_entry(
        "sample_photos",
        "scikit-learn's two sample photos (china.jpg, flower.jpg): x float32 "
        "(2, 427, 640, 3) in [0, 1], y int32 [0, 1]; for colour segmentation.",
        "scikit-learn's load_sample_images (photos under CC licences, see its docs).",
        ("train",),
        embedded.sample_photos,
    ),
    _embedded_entry(
        "photo_patches",
        "Random square crops of the two sample photos resized to image_size "
        "(default 64), labelled by photo (0 temple, 1 flower): x float32 (N, S, "
        "S, 3) in [0, 1], y int32; 70/15/15. Stand-in for cats_vs_dogs and flowers102.",
        "Made by dlcore from scikit-learn's load_sample_images.",
        ("train", "valid", "test"),
        embedded.photo_patches,
    ),
    _real_entry(
        real.MNIST,
        "70000 handwritten digits, 28x28 grey levels: x float32 "
        "(N, 28, 28, 1) in [0, 1], y int32 in 0..9; 60000 train, 10000 test.",
        "Y. LeCun, C. Cortes and C. J. C. Burges, The MNIST database of "
        "handwritten digits (1998).",
        flatten=True,
    ),
    _real_entry(
        real.FASHION_MNIST,
        "70000 Zalando article images, 28x28 grey levels, 10 classes: x "
        "float32 (N, 28, 28, 1) in [0, 1], y int32 in 0..9; 60000 train, "
        "10000 test.",
        "H. Xiao, K. Rasul and R. Vollgraf, Fashion-MNIST: a Novel Image "
        "Dataset for Benchmarking Machine Learning Algorithms, "
        "arXiv:1708.07747 (2017).",
        flatten=True,
    ),
    _real_entry(
        real.CIFAR10,
        "60000 colour photos, 32x32, 10 classes (airplane, automobile, bird, cat, "
        "deer, dog, frog, horse, ship, truck): x float32 (N, 32, 32, 3) in [0, 1], "
        "y int32 in 0..9; 50000 train, 10000 test. Stand-in: digits.",
        "A. Krizhevsky, Learning Multiple Layers of Features from Tiny Images, "
        "tech. report, University of Toronto (2009).",
        flatten=True,
    ),
    _real_entry(
        real.CALIFORNIA_HOUSING,
        "20640 California districts (1990 census): x float32 (N, 8) = MedInc, "
        "HouseAge, AveRooms, AveBedrms, Population, AveOccup, Latitude, Longitude; "
        "y float32 (N, 1) median house value in $100,000. Géron's split "
        "train_test_split(random_state=42): 15480 train, 5160 test (his "
        "validation set is train_test_split(train, random_state=42) of train). "
        "Stand-in: diabetes.",
        "R. K. Pace and R. Barry, Sparse Spatial Autoregressions, Statistics and "
        "Probability Letters 33 (1997); scikit-learn's copy (fetch_california_housing).",
    ),
    _real_entry(
        real.WINE_QUALITY,
        "4898 white Vinho Verde wines: x float32 (N, 11) physico-chemical "
        "measurements (fixed acidity .. alcohol), y int32 quality 3..9; one "
        "'train' split, as the book uses all of it. Stand-in: synthetic_wine.",
        "P. Cortez et al., Modeling wine preferences by data mining from "
        "physicochemical properties, Decision Support Systems 47 (2009); UCI.",
    ),
    _real_entry(
        real.IMDB,
        "50000 IMDB movie reviews: x object array of str, y int32 (1 positive); "
        "25000 train, 25000 test. Stand-in: sentiment_sentences.",
        "A. L. Maas et al., Learning Word Vectors for Sentiment Analysis, ACL 2011.",
    ),
    _real_entry(
        real.SHAKESPEARE,
        "Karpathy's tiny Shakespeare, 1,115,394 characters; Géron's cut: train "
        "[:1,000,000], valid [..1,060,000], test the rest; each split {'x': "
        "object (1,)} holding the text. Stand-in: python_docs.",
        "A. Karpathy, char-rnn (2015), data/tinyshakespeare/input.txt.",
    ),
    _real_entry(
        real.WIKITEXT2,
        "WikiText-2 (v1, tokenised, <unk> for rare words): train, valid, test, "
        "each {'x': object (1,)} holding the text. Stand-in: python_docs.",
        "S. Merity, C. Xiong, J. Bradbury and R. Socher, Pointer Sentinel "
        "Mixture Models, arXiv:1609.07843 (2016).",
    ),
    _real_entry(
        real.RIDERSHIP,
        "Chicago Transit Authority daily boardings since 2001: x float32 (T, 2) "
        "[rail, bus], day_type int32 (T,) 0 W / 1 A / 2 U, date datetime64[D]; "
        "sorted, duplicate dates dropped; Géron's periods train 2016-2018, "
        "valid 2019-01..05, test 2019-06.., and all. Stand-in: daily_series.",
        "City of Chicago data portal, CTA - Ridership - Daily Boarding Totals; "
        "Géron's copy (Hands-On ML, ch. 13).",
    ),
    _real_entry(
        real.ENG_SPA,
        "~118k English-Spanish sentence pairs from Tatoeba (manythings.org's "
        "Anki file): x English, y Spanish, object arrays of str; shuffled "
        "(seed 42) 80/10/10. Stand-in: sentence_pairs.",
        "Tatoeba Project (tatoeba.org), via manythings.org/anki; the book uses "
        "the Tatoeba Challenge copy (Hugging Face ageron/tatoeba_mt_train).",
    ),
    _real_entry(
        real.FLOWERS102,
        "8189 flower photos of 102 species, centre-cropped and resized to "
        "image_size (default 224): x uint8 (N, S, S, 3) memory-mapped from "
        "the prepared cache (scale with transforms.to_float), y int32 0..101; "
        "official split 1020 train, 1020 valid, 6149 test. Stand-in: photo_patches.",
        "M.-E. Nilsback and A. Zisserman, Automated Flower Classification over "
        "a Large Number of Classes, ICVGIP 2008.",
        options=("image_size",),
    ),
    _real_entry(
        real.CATS_VS_DOGS,
        "Kaggle/Microsoft cats vs dogs (~23.4k decodable JPEGs), centre-cropped "
        "and resized to image_size (default 224): x uint8 (N, S, S, 3) "
        "memory-mapped, y int32 (1 dog); 80/20 (seed 0). Stand-in: photo_patches.",
        "J. Elson et al., Asirra: A CAPTCHA that Exploits Interest-Aligned "
        "Manual Image Categorization, CCS 2007; Microsoft's download.",
        options=("image_size",),
    ),
    _real_entry(
        real.GLOVE_6B,
        "GloVe 6B word vectors (Wikipedia 2014 + Gigaword 5, 400k lower-cased words): x object (W,) words, "
        "vectors float32 (W, dim), dim 50, 100, 200 or 300 (option dim, default 100); one 'train' split. "
        "For an embedding table of a vocabulary, use dlcore.data.text.pretrained_vectors('glove.6B.100d', vocab).",
        "J. Pennington, R. Socher and C. D. Manning, GloVe: Global Vectors for Word Representation, "
        "EMNLP 2014; glove.6B.zip from nlp.stanford.edu/projects/glove.",
        options=("dim",),
    ),
    _real_entry(
        real.FASTTEXT_SIMPLE,
        "fastText word vectors trained on Simple English Wikipedia (wiki.simple.vec, 300d, "
        "words as written): x object (W,) words, vectors float32 (W, 300); one 'train' split. torchtext's "
        "'fasttext.simple.300d'; for an embedding table use "
        "dlcore.data.text.pretrained_vectors('fasttext.simple.300d', vocab).",
        "P. Bojanowski, E. Grave, A. Joulin and T. Mikolov, Enriching Word Vectors with Subword "
        "Information, TACL 2017; fasttext.cc pretrained-vectors (wiki.simple.vec).",
    ),
    _real_entry(
        real.BANK_MARKETING,
        "Portuguese bank telemarketing calls (UCI bank-full.csv, 45211 rows; or "
        "Kaggle's balanced 11162-row bank.csv the book uses, if put in the "
        "cache): x float32 (N, 48) = 7 numeric, 3 yes/no flags and one-hot job, "
        "marital, education, contact, month, poutcome (unscaled); y int32 (N,) "
        "1 = subscribed a deposit. Fixed 80/20 split (seed 0). Stand-in: breast_cancer.",
        "S. Moro, P. Cortez and P. Rita, A Data-Driven Approach to Predict the "
        "Success of Bank Telemarketing, Decision Support Systems 62 (2014); UCI "
        "Machine Learning Repository.",
    ),
):
    DATASETS.register(_e.info.name, _e)
del _e


def names() -> list[str]:
    """Returns the names `load` accepts, sorted."""
    return DATASETS.names()


def info(name: str) -> DatasetInfo:
    """Describes the dataset ``name``; ``info(name).sizes`` counts an embedded one's splits.

    Raises:
        ValueError: If ``name`` is unknown.
    """
    return _entry(name).info


def load(
    name: str,
    split: str | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    progress: bool | None = None,
    **options: Any,
) -> Splits | Split:
    """Loads a named dataset.

    A real dataset comes from a prepared TFDS copy, else dlcore's cache, else
    a checksummed download of its canonical files into the cache (see
    `dlcore.data.sources`); an embedded one is made in memory.

    Args:
        name: One of `names`.
        split: One split name from ``info(name).splits``, or None for all.
        data_dir: TFDS data dir to search for real datasets (default:
            ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``); ignored by
            embedded ones.
        download: Download missing files of a real dataset (also off when
            ``$DLCORE_OFFLINE`` is set).
        progress: Progress bars while downloading; None: only on a terminal.
        **options: Dataset options, listed in ``info(name).options`` (e.g.
            ``image_size=28`` for digits, ``n_samples=`` for blobs).

    Returns:
        With ``split``: one split, ``{"x": (N, ...), "y": (N, ...)}``.
        Without: ``{split_name: split}`` for every split.

    Raises:
        ValueError: For an unknown name, split or option.
        DatasetNotFoundError: For a real dataset with no local copy that
            could not be downloaded (a `ValueError`).
        ChecksumError: For a downloaded file with the wrong SHA-256 (a
            `ValueError`; nothing is left in the cache).
    """
    entry = _entry(name)
    splits = entry.info.splits
    if split is not None and split not in splits:
        raise ValueError(
            f"dataset {name!r} has no split {split!r}; its splits are {list(splits)}"
        )
    unknown = sorted(set(options) - set(entry.info.options))
    if unknown:
        accepted = list(entry.info.options) or "none"
        raise ValueError(
            f"dataset {name!r} has no option(s) {unknown}; accepted options: {accepted}"
        )
    wanted = splits if split is None else (split,)
    out = entry.build(wanted, data_dir, download=download, progress=progress, **options)
    return out[split] if split is not None else {s: out[s] for s in splits}


def load_or_standin(
    name: str,
    standin: str,
    *,
    split: str | None = None,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    standin_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> tuple[Splits | Split, str]:
    """Loads ``name`` or, when it has no local copy, the stand-in ``standin``.

    Only `DatasetNotFoundError` triggers the fallback: a corrupt file or a bad
    option still raises, so a broken setup is never silently replaced.

    Args:
        name: The dataset wanted, e.g. ``"mnist"``.
        standin: An (embedded) dataset with the same splits, e.g. ``"digits"``.
        split: As in `load`; used for both datasets.
        data_dir: As in `load`, for ``name``.
        download: As in `load`: try downloading ``name`` before falling back.
        standin_options: Options for the stand-in, e.g. ``{"image_size": 28}``.
        **options: Options for ``name``.

    Returns:
        ``(data, used_name)``: what `load` returns, and the name actually loaded.

    Raises:
        ValueError: If either name is unknown, or ``split`` is not a split of
            the dataset that ends up loaded.
    """
    _entry(standin)  # a typo in the stand-in must fail now, not on the day it is needed
    try:
        return load(name, split, data_dir=data_dir, download=download, **options), name
    except DatasetNotFoundError as err:
        _log.info("%s; using stand-in %r instead", err, standin)
    return load(standin, split, **dict(standin_options or {})), standin


def prepare(name: str, *, data_dir: str | os.PathLike | None = None, progress: bool | None = True,
            **options: Any) -> str:
    """Gets a real dataset ready for offline use: downloads and parses every split.

    After this, `load` needs no network (copy ``cache_dir() / name`` to
    another machine to use it there). Embedded datasets need nothing.

    Args:
        name: One of `names`.
        data_dir: As in `load`.
        progress: Progress bars for the downloads.
        **options: As in `load` (e.g. ``image_size`` for prepared photos).

    Returns:
        Where the data lives: the cache directory, or ``"embedded"``.

    Raises:
        DatasetNotFoundError: If a file could not be downloaded.
        ChecksumError: If a downloaded file has the wrong SHA-256.
    """
    entry = _entry(name)
    if entry.info.embedded:
        return "embedded"
    load(name, data_dir=data_dir, progress=progress, **options)
    return str(cache_dir() / name)


def _entry(name: str) -> _Entry:
    """The entry of dataset `name`; an unknown name raises `UnknownNameError` (a `ValueError`)."""
    return DATASETS.get(name)
