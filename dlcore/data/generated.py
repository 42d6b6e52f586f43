"""Generated datasets: made offline from a seed, the same seed giving the same arrays.

``moons`` (clustering), ``mnist1d`` (a 1-D stand-in for MNIST), ``daily_series``
(a stand-in for the Chicago ridership series), ``sentence_pairs`` (a stand-in
for English-Spanish translation), ``sentiment_sentences`` (a stand-in for
IMDB) and ``synthetic_wine`` (a stand-in for the UCI white wines). Each
returns ``{split: {name: array}}`` with fresh arrays.
"""

from __future__ import annotations

import numpy as np

from dlcore.checks import check_float, check_int

__all__ = ["daily_series", "mnist1d", "moons", "sentence_pairs", "sentiment_sentences", "synthetic_wine"]


def _objects(items: list[str]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _split(arrays: dict[str, np.ndarray], fractions: tuple[float, ...], names: tuple[str, ...],
           rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
    n = len(next(iter(arrays.values())))
    perm = rng.permutation(n)
    cuts = np.round(np.cumsum(fractions) * n).astype(int)
    return {name: {k: v[idx] for k, v in arrays.items()} for name, idx in zip(names, np.split(perm, cuts))}


# --- moons ---------------------------------------------------------------------


def moons(*, n_samples: int = 1000, noise: float = 0.1, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Two interleaving half circles (as scikit-learn's ``make_moons``).

    The outer moon is ``(cos t, sin t)``, the inner ``(1 - cos t, 0.5 - sin t)``
    for ``t`` evenly spaced in ``[0, pi]``; Gaussian noise of std ``noise`` is
    added, then the points are shuffled and split 80/20.

    Args:
        n_samples: Total number of points (>= 2); the outer moon gets the odd one.
        noise: Standard deviation of the added noise (>= 0).
        seed: Seed of the generator.

    Returns:
        ``{"train", "test"}`` with ``x`` float32 ``(N, 2)``, ``y`` int32 (0
        outer, 1 inner).
    """
    n = check_int(n_samples, "n_samples", low=2, who="moons")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"moons: noise must be a float >= 0, got {noise!r}")
    rng = np.random.default_rng(check_int(seed, "seed", low=0, who="moons"))
    n_out = n - n // 2
    t_out, t_in = np.linspace(0, np.pi, n_out), np.linspace(0, np.pi, n // 2)
    x = np.concatenate([np.stack([np.cos(t_out), np.sin(t_out)], 1),
                        np.stack([1 - np.cos(t_in), 0.5 - np.sin(t_in)], 1)])
    y = np.concatenate([np.zeros(n_out, np.int32), np.ones(n // 2, np.int32)])
    x = x + noise * rng.standard_normal(x.shape)
    return _split({"x": x.astype(np.float32), "y": y}, (0.8,), ("train", "test"), rng)


# --- MNIST-1D --------------------------------------------------------------------

# The ten 12-point 1-D "digits" of MNIST-1D as the paper draws them (Greydanus and Kobak, 2024,
# Figure 1; the published generator's templates), on a baseline of 5. The digits differ by design
# in small ways (2 and 3, 8 and 9 share their first halves), which is part of what makes the set hard.
_MNIST1D_TEMPLATES = np.array([
    [5, 6, 6.5, 6.75, 7, 7, 7, 7, 6.75, 6.5, 6, 5],
    [5, 3, 3, 3.4, 3.8, 4.2, 4.6, 5, 5.4, 5.8, 5, 5],
    [5, 6, 6.5, 6.5, 6, 5.25, 4.75, 4, 3.5, 3.5, 4, 5],
    [5, 6, 6.5, 6.5, 6, 5, 5, 6, 6.5, 6.5, 6, 5],
    [5, 4.4, 3.8, 3.2, 2.6, 2.6, 5, 5, 5, 5, 5, 5],
    [5, 3, 3, 3, 3, 5, 6, 6.5, 6.5, 6, 4.5, 5],
    [5, 4, 3.5, 3.25, 3, 3, 3, 3, 3.25, 3.5, 4, 5],
    [5, 7, 7, 6.6, 6.2, 5.8, 5.4, 5, 4.6, 4.2, 5, 5],
    [5, 4, 3.5, 3.5, 4, 5, 5, 4, 3.5, 3.5, 4, 5],
    [5, 4, 3.5, 3.5, 4, 5, 5, 5, 5, 4.7, 4.3, 5],
])


def _resample(x: np.ndarray, n_out: int) -> np.ndarray:
    """Linearly resamples each row of ``x`` (N, L) to ``n_out`` points spanning the same interval."""
    n_in = x.shape[1]
    pos = np.linspace(0, n_in - 1, n_out)
    lo = np.minimum(np.floor(pos).astype(int), n_in - 2)
    frac = pos - lo
    return x[:, lo] * (1 - frac) + x[:, lo + 1] * frac


def _gaussian_smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of each row of ``x`` (N, L), kernel radius 4 sigma, edges mirrored."""
    r = int(4 * sigma + 0.5)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    padded = np.pad(x, ((0, 0), (r, r)), mode="symmetric")                # (N, L + 2r): a b | a b .. y z | z y
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * r + 1, axis=1)  # (N, L, 2r + 1)
    return windows @ (k / k.sum())


def mnist1d(
    *,
    n_samples: int = 5000,
    length: int = 40,
    seed: int = 42,
    padding: tuple[int, int] = (36, 60),
    max_translation: int = 48,
    scale_coeff: float = 0.4,
    shear_scale: float = 0.75,
    corr_noise_scale: float = 0.25,
    iid_noise_scale: float = 2e-2,
) -> dict[str, dict[str, np.ndarray]]:
    """MNIST-1D: ten classes of 1-D signals, hard enough to tell models apart.

    dlcore's implementation of the generating procedure of Greydanus and Kobak, Scaling Down Deep
    Learning with MNIST-1D (ICML 2024), with the paper's templates and defaults. Each template (12
    points, standardised, starting and ending at 0, divided by 6) is, per example:

    1. padded on the right with a random number of zeros in ``padding`` (36..60) and resampled to
       ``12 + padding[1]`` = 72 points, which stretches the digit by a random factor;
    2. scaled in amplitude by a random factor in ``1 +- scale_coeff / 2``;
    3. shifted circularly by a random 0..``max_translation - 1`` steps;
    4. given correlated noise (Gaussian noise of std ``corr_noise_scale`` smoothed with a Gaussian
       of sigma 2) where it is 0, i.e. off the digit, then i.i.d. noise of std ``iid_noise_scale``
       everywhere;
    5. sheared: a ramp ``c * linspace(-0.5, 0.5)`` with ``c`` uniform in ``+- shear_scale / 2`` is
       subtracted;
    6. resampled to ``length`` (40) points.

    The whole set is then centred and scaled to standard deviation 1 (one mean and one std over all
    examples and points, as the paper does). The random draws are dlcore's own (NumPy's
    ``default_rng(seed)``), so the arrays are not the published file's, but the distribution is the
    same: the published benchmark accuracies apply.

    Args:
        n_samples: examples in all (>= 10); ``y = i % 10`` makes the classes balanced.
        length: points per example (>= 4).
        seed: seed of the generator: the same seed gives the same arrays.
        padding: (low, high) zeros appended to a template before it is resampled.
        max_translation: circular shifts are drawn from 0..max_translation - 1 (1..72).
        scale_coeff, shear_scale, corr_noise_scale, iid_noise_scale: the paper's noise knobs.

    Returns:
        ``{"train", "test"}`` (80/20, shuffled: 4000/1000 by default) with ``x`` float32
        ``(N, length)`` and ``y`` int32 in 0..9.
    """
    who = "mnist1d"
    n = check_int(n_samples, "n_samples", low=10, who=who)
    length = check_int(length, "length", low=4, who=who)
    rng = np.random.default_rng(check_int(seed, "seed", low=0, who=who))
    if not isinstance(padding, (tuple, list)) or len(padding) != 2:
        raise ValueError(f"mnist1d: padding must be a pair (low, high) of zeros to append, got {padding!r}")
    lo_pad = check_int(padding[0], "padding[0]", low=0, who=who)
    hi_pad = check_int(padding[1], "padding[1]", low=lo_pad, who=who)
    t_len = _MNIST1D_TEMPLATES.shape[1]
    width = t_len + hi_pad                                                  # 72: the working length
    check_int(max_translation, "max_translation", low=1, high=width, who=who)
    for name, v in (("scale_coeff", scale_coeff), ("shear_scale", shear_scale),
                    ("corr_noise_scale", corr_noise_scale), ("iid_noise_scale", iid_noise_scale)):
        check_float(v, name, low=0, who=who)

    tpl = _MNIST1D_TEMPLATES - _MNIST1D_TEMPLATES.mean(1, keepdims=True)
    tpl = tpl / tpl.std(1, keepdims=True)
    tpl = (tpl - tpl[:, :1]) / 6.0                                          # (10, 12), 0 at both ends
    # a tiny offset keeps the digit's own zeros apart from the padding, which alone gets corr. noise
    tpl = tpl + 1e-8

    y = np.arange(n, dtype=np.int32) % 10
    pad = rng.integers(lo_pad, hi_pad + 1, n)                               # (N,) zeros appended
    amp = 1 + scale_coeff * (rng.random(n) - 0.5)                           # (N,)
    shift = rng.integers(0, max_translation, n)                             # (N,)
    corr = _gaussian_smooth(corr_noise_scale * rng.standard_normal((n, width)), 2.0)
    iid = iid_noise_scale * rng.standard_normal((n, width))
    shear = shear_scale * (rng.random(n) - 0.5)                             # (N,)

    # 1. template + pad zeros (12 + pad points) resampled to `width`: point j of the output reads the
    # padded signal at j * (11 + pad) / (width - 1); beyond the template's last point it is 0.
    src = np.linspace(0, 1, width)[None] * (t_len - 1 + pad)[:, None]       # (N, width) source positions
    ext = np.concatenate([tpl, np.zeros((10, 1))], 1)                       # (10, 13): one zero after
    x = np.empty((n, width))
    for label in range(10):
        rows = y == label
        x[rows] = np.interp(np.minimum(src[rows], t_len), np.arange(t_len + 1), ext[label])
    x = x * amp[:, None]                                                    # 2. amplitude
    cols = (np.arange(width)[None] - shift[:, None]) % width                # 3. roll right by `shift`
    x = np.take_along_axis(x, cols, 1)
    x = np.where(x != 0, x, corr) + iid                                     # 4. noise
    x = x - shear[:, None] * np.linspace(-0.5, 0.5, width)[None]            # 5. shear
    x = _resample(x, length)                                                # 6. (N, length)
    x = ((x - x.mean()) / x.std()).astype(np.float32)
    return _split({"x": x, "y": y}, (0.8,), ("train", "test"), rng)


# --- daily series (stand-in for Chicago ridership) ----------------------------------

_HOLIDAYS = ("01-01", "07-04", "12-25", "12-31")


def daily_series(*, start: str = "2001-01-01", end: str = "2019-12-31", seed: int = 0
                 ) -> dict[str, dict[str, np.ndarray]]:
    """A synthetic daily series shaped like Chicago's transit ridership.

    Two series, "rail" and "bus", with a strong weekly seasonality through the
    day type (W weekday, A Saturday, U Sunday or one of four fixed holidays),
    a yearly cycle, a slow trend and AR(1) noise. Periods as Géron's: train
    2016-01..2018-12, valid 2019-01..2019-05, test 2019-06 on, and "all".

    Returns:
        ``{split: {"x": float32 (T, 2) [rail, bus] boardings, "day_type":
        int32 (T,) 0 W / 1 A / 2 U (the next day's type is the book's
        covariate), "date": datetime64[D] (T,)}}``.
    """
    rng = np.random.default_rng(check_int(seed, "seed", low=0, who="daily_series"))
    try:
        dates = np.arange(np.datetime64(start, "D"), np.datetime64(end, "D") + 1)
    except ValueError:
        raise ValueError(f"daily_series: start and end must be ISO dates, got {start!r}, {end!r}") from None
    if len(dates) < 60:
        raise ValueError(f"daily_series: needs at least 60 days, got {len(dates)} ({start} .. {end})")
    weekday = (dates.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday: 0 = Monday
    md = np.array([str(d)[5:] for d in dates])
    day = np.where(weekday == 5, 1, np.where(weekday == 6, 2, 0))
    day = np.where(np.isin(md, _HOLIDAYS), 2, day).astype(np.int32)
    n = len(dates)
    years = np.arange(n) / 365.25
    yearly = 1 + 0.08 * np.sin(2 * np.pi * (years - 0.3))
    noise = np.zeros((n, 2))
    eps = rng.standard_normal((n, 2)) * 0.03
    for i in range(1, n):
        noise[i] = 0.7 * noise[i - 1] + eps[i]
    level = {"rail": np.array([1.0, 0.55, 0.4]), "bus": np.array([1.0, 0.6, 0.45])}
    rail = 520_000 * (1 + 0.01 * years) * level["rail"][day] * yearly * (1 + noise[:, 0])
    bus = 800_000 * (1 - 0.015 * years) * level["bus"][day] * yearly * (1 + noise[:, 1])
    x = np.stack([rail, bus], 1).astype(np.float32)
    periods = {"train": ("2016-01-01", "2018-12-31"), "valid": ("2019-01-01", "2019-05-31"),
               "test": ("2019-06-01", "9999-12-31"), "all": ("0001-01-01", "9999-12-31")}
    out = {}
    for name, (lo, hi) in periods.items():
        m = (dates >= np.datetime64(lo)) & (dates <= np.datetime64(hi))
        if not m.any():  # a custom range may miss a period: fall back to thirds
            m = np.zeros(n, bool)
            third = n // 3
            sl = {"train": slice(0, third), "valid": slice(third, 2 * third), "test": slice(2 * third, n),
                  "all": slice(0, n)}[name]
            m[sl] = True
        out[name] = {"x": x[m], "day_type": day[m], "date": dates[m]}
    return out


# --- synthetic wines (stand-in for the UCI white wine quality table) -----------------------

# Per column of wine_quality's x (fixed acidity .. alcohol): mean, standard deviation, smallest value, and the
# correlation with quality, rounded from the 4,898 UCI white wines (Cortez et al., 2009).
_WINE_COLUMNS = np.array([
    (6.855, 0.844, 3.8, -0.11), (0.278, 0.101, 0.08, -0.19), (0.334, 0.121, 0.0, -0.01),
    (6.391, 5.072, 0.6, -0.10), (0.0458, 0.0218, 0.009, -0.21), (35.31, 17.01, 2.0, 0.01),
    (138.36, 42.49, 9.0, -0.17), (0.99403, 0.00300, 0.9871, -0.31), (3.188, 0.151, 2.72, 0.10),
    (0.490, 0.114, 0.22, 0.05), (10.514, 1.231, 8.0, 0.44)])
_WINE_QUALITY_COUNTS = np.array([20, 163, 1457, 2198, 880, 175, 5])  # quality 3 .. 9


def synthetic_wine(*, n_samples: int = 4898, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Generated wines with the UCI white wine table's columns, spreads and quality proportions.

    A latent score ``z ~ N(0, 1)`` sets each wine's quality (cut at the UCI proportions of qualities 3 to
    9) and moves each column by its correlation with quality in the real table (alcohol up, density and
    total sulfur dioxide down, ...); the rest of each column is independent Gaussian noise, kept above the
    real table's minimum. Total and free sulfur dioxide share part of their noise, as in the real data.
    A stand-in for ``wine_quality``: a threshold rule or a model behaves alike on it, but no figure is the
    book's.

    Returns:
        ``{"train": {"x": float32 (N, 11), "y": int32 (N,) quality in 3..9}}``.
    """
    n = check_int(n_samples, "n_samples", low=1, who="synthetic_wine")
    rng = np.random.default_rng(check_int(seed, "seed", low=0, who="synthetic_wine"))
    mean, std, low, corr = _WINE_COLUMNS.T
    z = rng.standard_normal(n)
    noise = rng.standard_normal((n, len(mean)))
    noise[:, 6] = 0.6 * noise[:, 5] + 0.8 * noise[:, 6]  # total SO2 contains the free SO2
    x = mean + std * (corr * z[:, None] + np.sqrt(1.0 - corr ** 2) * noise)
    x = np.maximum(x, low).astype(np.float32)
    cuts = np.quantile(z, np.cumsum(_WINE_QUALITY_COUNTS)[:-1] / _WINE_QUALITY_COUNTS.sum())
    y = (3 + np.searchsorted(cuts, z)).astype(np.int32)
    return {"train": {"x": x, "y": y}}


# --- sentence pairs (stand-in for English-Spanish translation) -----------------------

_SUBJECTS = [  # English, Spanish, person index into the conjugation tables, 3rd singular?
    ("I", "Yo", 0), ("You", "Tú", 1), ("He", "Él", 2), ("She", "Ella", 2),
    ("We", "Nosotros", 3), ("They", "Ellos", 4),
]
_VERBS = {  # English base, English 3rd singular, Spanish forms (yo, tú, él, nosotros, ellos), objects
    "eat": ("eats", ("como", "comes", "come", "comemos", "comen"), ("apple", "bread", "fish", "soup")),
    "drink": ("drinks", ("bebo", "bebes", "bebe", "bebemos", "beben"), ("water", "milk", "coffee", "soup")),
    "read": ("reads", ("leo", "lees", "lee", "leemos", "leen"), ("book", "letter", "newspaper")),
    "write": ("writes", ("escribo", "escribes", "escribe", "escribimos", "escriben"), ("book", "letter")),
    "buy": ("buys", ("compro", "compras", "compra", "compramos", "compran"),
            ("apple", "bread", "book", "car", "house", "newspaper", "milk")),
    "see": ("sees", ("veo", "ves", "ve", "vemos", "ven"), ("dog", "cat", "car", "house", "sea")),
    "want": ("wants", ("quiero", "quieres", "quiere", "queremos", "quieren"),
             ("apple", "water", "coffee", "book", "car", "house", "dog", "cat")),
    "have": ("has", ("tengo", "tienes", "tiene", "tenemos", "tienen"),
             ("book", "car", "house", "dog", "cat", "letter")),
}
_NOUNS = {
    "apple": "la manzana", "bread": "el pan", "fish": "el pescado", "soup": "la sopa", "water": "el agua",
    "milk": "la leche", "coffee": "el café", "book": "el libro", "letter": "la carta",
    "newspaper": "el periódico", "car": "el coche", "house": "la casa", "dog": "el perro", "cat": "el gato",
    "sea": "el mar",
}
_TIMES = [("", ""), (" today", " hoy"), (" every day", " todos los días"), (" now", " ahora")]


def sentence_pairs(*, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Small English-Spanish sentence pairs from a hand-written grammar.

    Every combination of subject, verb (present tense, conjugated), a fitting
    object, optional negation and a time phrase, e.g. "She does not eat the
    apple today." -> "Ella no come la manzana hoy." (1,872 pairs).
    Shuffled and split 80/10/10.

    Returns:
        ``{"train", "valid", "test"}`` with ``x`` (English) and ``y``
        (Spanish), object arrays of ``str`` ``(N,)``.
    """
    rng = np.random.default_rng(check_int(seed, "seed", low=0, who="sentence_pairs"))
    eng, spa = [], []
    for subj_en, subj_es, person in _SUBJECTS:
        third = subj_en in ("He", "She")
        for verb, (verb3, forms, objects) in _VERBS.items():
            for obj in objects:
                for negate in (False, True):
                    for time_en, time_es in _TIMES:
                        if negate:
                            v_en = ("does not " if third else "do not ") + verb
                            v_es = "no " + forms[person]
                        else:
                            v_en = verb3 if third else verb
                            v_es = forms[person]
                        eng.append(f"{subj_en} {v_en} the {obj}{time_en}.")
                        spa.append(f"{subj_es} {v_es} {_NOUNS[obj]}{time_es}.")
    return _split({"x": _objects(eng), "y": _objects(spa)}, (0.8, 0.1), ("train", "valid", "test"), rng)


# --- sentiment sentences (stand-in for IMDB) ------------------------------------------

_POSITIVE = ("good", "great", "wonderful", "brilliant", "moving", "funny", "beautiful", "excellent", "superb")
_NEGATIVE = ("bad", "boring", "awful", "dull", "terrible", "weak", "clumsy", "tedious", "poor")
_TOPICS = ("movie", "film", "plot", "acting", "story", "ending", "cast", "script", "music", "direction")
_TEMPLATES = (
    "The {t} was {a}.", "I thought the {t} was {a}.", "What a {a} {t}!", "Honestly, the {t} is {a}.",
    "The {t} was {a} and the {t2} was {a2}.", "Everyone said the {t} was {a}, and it was.",
)


def sentiment_sentences(*, n_samples: int = 2000, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Short synthetic movie reviews labelled by sentiment.

    Each review fills a template with topics and adjectives of one polarity;
    a quarter say "not" before an adjective of the other polarity ("The plot
    was not boring." is positive), so word order matters. Split 80/20.

    Returns:
        ``{"train", "test"}`` with ``x`` object array of ``str`` ``(N,)`` and
        ``y`` int32 ``(N,)``: 1 positive, 0 negative.
    """
    n = check_int(n_samples, "n_samples", low=2, who="sentiment_sentences")
    rng = np.random.default_rng(check_int(seed, "seed", low=0, who="sentiment_sentences"))
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        same, other = (_POSITIVE, _NEGATIVE) if label else (_NEGATIVE, _POSITIVE)
        negated = rng.random() < 0.25
        pick = lambda words: words[rng.integers(len(words))]  # noqa: E731
        a, a2 = (("not " + pick(other)) if negated else pick(same)), pick(same)
        template = _TEMPLATES[rng.integers(len(_TEMPLATES))]
        if negated and template.startswith("What a"):
            template = "The {t} was {a}."
        texts.append(template.format(t=pick(_TOPICS), t2=pick(_TOPICS), a=a, a2=a2))
        labels.append(label)
    return _split({"x": _objects(texts), "y": np.array(labels, np.int32)}, (0.8,), ("train", "test"), rng)
