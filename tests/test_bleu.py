"""metrics.bleu: corpus BLEU equal to sacrebleu's default score, and a figure computed by hand."""

import math

import pytest

from dlcore import metrics

sacrebleu = pytest.importorskip("sacrebleu")

CORPORA = {
    "punctuation and numbers": (["The cat sat on the mat.", "It's 3.5-4 km away, isn't it?", "Me gusta el fútbol ."],
                                [["The cat is on the mat.", "It is 3.5-4 km away, isn't it?", "Me gusta el fútbol."]]),
    "no 4-gram match": (["a b c d e", "the the the the"], [["a x b y c", "the cat"]]),
    "two references": (["It is a guide to action which ensures that the military always obeys the commands of the "
                        "party.", "he read the book because he was interested in world history"],
                       [["It is a guide to action that ensures that the military will forever heed Party commands.",
                         "he was interested in world history because he read the book"],
                        ["It is the guiding principle which guarantees the military forces always being under the "
                         "command of the Party.", "he read the book since he liked history"]]),
    "entities and an empty hypothesis": (["&quot;Tom&quot; &amp; Mary-\nran", "", "x"],
                                         [["\"Tom\" & Mary ran", "nothing here", "x y z w"]]),
    "no match at all": (["a b c"], [["d e f"]]),
    "short hypotheses": (["short", "yes"], [["a much longer reference sentence", "yes indeed"]]),
}


@pytest.mark.parametrize("name", CORPORA)
@pytest.mark.parametrize("lowercase", [False, True])
def test_bleu_equals_sacrebleu(name, lowercase):
    hyps, streams = CORPORA[name]
    ours = metrics.bleu(hyps, streams, lowercase=lowercase)
    ref = sacrebleu.corpus_bleu(hyps, streams, lowercase=lowercase)
    assert ours.score == pytest.approx(ref.score, abs=1e-9)
    assert ours.precisions == pytest.approx(ref.precisions, abs=1e-9)
    assert ours.bp == pytest.approx(ref.bp, abs=1e-12)
    assert (ours.sys_len, ours.ref_len) == (ref.sys_len, ref.ref_len)
    if len(streams) == 1:   # one reference per hypothesis may be given as a plain list
        assert metrics.bleu(hyps, streams[0], lowercase=lowercase) == ours


def test_bleu_by_hand():
    # "a b c d e" against "a x b y c": unigrams 3/5; bigrams 0/4 -> 1/(2*4); trigrams 0/3 -> 1/(4*3);
    # 4-grams 0/2 -> 1/(8*2) (exp smoothing halves again for each order without a match); same length, BP 1
    s = metrics.bleu(["a b c d e"], ["a x b y c"])
    expected = [60.0, 100 / 8, 100 / 12, 100 / 16]
    assert s.precisions == pytest.approx(expected)
    assert s.score == pytest.approx(math.exp(sum(math.log(p) for p in expected) / 4))
    assert s.bp == 1.0
    # a hypothesis of 2 tokens against a reference of 4: BP = exp(1 - 4/2)
    s = metrics.bleu(["a b"], ["a b c d"], max_order=2)
    assert s.bp == pytest.approx(math.exp(-1)) and s.score == pytest.approx(100 * math.exp(-1))
    assert metrics.bleu(["x y"], ["x y"], tokenize="none").score == pytest.approx(0.0)   # no 3-gram at all
    assert float(metrics.bleu(["x y z w"], ["x y z w"])) == pytest.approx(100.0)
    assert str(metrics.bleu(["x y z w"], ["x y z w"])).startswith("BLEU = 100.00 100.0/100.0/100.0/100.0")


def test_bad_input_is_one_line():
    for call, needle in [
        (lambda: metrics.bleu([], []), "no hypotheses"),
        (lambda: metrics.bleu(["a", "b"], ["a"]), "2 hypotheses but reference stream 0 has 1"),
        (lambda: metrics.bleu(["a"], [["a"], ["a", "b"]]), "reference stream 1 has 2"),
        (lambda: metrics.bleu([None], ["a"]), "every hypothesis must be a string"),
        (lambda: metrics.bleu(["a"], ["a"], tokenize="spm"), "tokenize"),
        (lambda: metrics.bleu(["a"], ["a"], max_order=0), "max_order"),
    ]:
        with pytest.raises(ValueError) as info:
            call()
        assert needle in str(info.value) and "\n" not in str(info.value)
