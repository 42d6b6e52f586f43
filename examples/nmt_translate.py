"""English to Spanish translation with an encoder-decoder, beam search and Luong attention, Géron, ch. 14.

Recipe (Hands-On Machine Learning with Scikit-Learn and PyTorch, ch. 14, "An Encoder-Decoder Network for Neural
Machine Translation", "Beam Search", "Attention Mechanisms"): the Tatoeba English-Spanish pairs shuffled
(seed 42) and cut 80/10/10; one BPE tokenizer of 10,000 pieces trained on both languages with the specials
<pad> <unk> <s> </s>; the decoder reads "<s> target" and predicts "target </s>" (teacher forcing), the loss
ignores padding; a shared `Embedding(V, 512)`, a GRU encoder and a GRU decoder of 2 x 512; NAdam lr 1e-3,
batch 32, 10 epochs. Translations greedy, then with beam width 3; then the same model with Luong's dot-product
attention over the encoder's outputs, concatenated with the decoder's outputs before the output layer.

The book prints translations, not scores: "I like soccer." -> "Me gusta el fútbol . </s>"; the longer
"I like to play soccer with my friends." loses "soccer" greedily ("Me gusta jugar con mis amigos .") and gets
it with beam width 3 ("Me gusta jugar al fútbol con mis amigos ."); "I like to play soccer with my friends at
the beach." needs attention. dlcore prints the same sentences with the real data, or three test sentences
(the shortest, a middling and the longest) on the stand-in, and scores every model with corpus BLEU on the
test split (sacrebleu's default, `dlcore.metrics.bleu`), which the book names but does not report.

dlcore's changes, each a fix: padding keys are masked in the attention; translation runs the encoder once and
the decoder one token per step (the book re-runs the whole model on the growing prefix for every token).

Stand-in: without the Tatoeba file, `sentence_pairs` (1,872 pairs from a small English-Spanish grammar);
being regular, it is much easier than Tatoeba, so its BLEU is not comparable with a real corpus's.

Run: `dlcore run nmt_translate` or `python examples/nmt_translate.py`.
"""

from __future__ import annotations

import numpy as np
from flax import nnx

import dlcore
from dlcore import metrics, optim
from dlcore.data import text
from dlcore.models.seq2seq import Seq2Seq, shift_targets, token_loss, translate
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="nmt_translate",
    title="English to Spanish: encoder-decoder GRUs, beam search, Luong attention, BLEU",
    book="Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch",
    section="ch. 14, An Encoder-Decoder Network for Neural Machine Translation; Beam Search; Attention Mechanisms",
    source="NmtModel, translate(), beam_search() and attention() of those sections",
    data="eng_spa",
    standin="sentence_pairs",
    book_figures={},
)

BOOK_SENTENCES = {
    "I like soccer.": "Me gusta el fútbol .",
    "I like to play soccer with my friends.": "Me gusta jugar con mis amigos . (greedy); Me gusta jugar al "
                                              "fútbol con mis amigos . (beam 3)",
    "I like to play soccer with my friends at the beach.": "Me gusta jugar fu tbol con mis amigos en la playa . "
                                                           "(attention)",
}


def _split(tok, s: dict, bos: int, eos: int) -> dict:
    # padded to the split's longest sentence (encode_batch's max_length would pad every row to 256)
    src = tok.encode_batch(list(s["x"]))
    tgt = tok.encode_batch(list(s["y"]))
    if src.ids.shape[1] > 256 or tgt.ids.shape[1] > 255:   # the book's tokenizer truncates at 256 tokens
        src, tgt = tok.encode_batch(list(s["x"]), max_length=256), tok.encode_batch(list(s["y"]), max_length=255)
    tgt_in, tgt_out = shift_targets(tgt.ids, tgt.lengths, bos, eos, tok.pad_id)
    return {"x": (src.ids, src.lengths, tgt_in), "y": tgt_out}


def run(ctx: Context) -> dict[str, float]:
    splits = ctx.load()
    train, valid, test = splits["train"], splits["valid"], splits["test"]
    if ctx.quick:
        train = {k: v[:256] for k, v in train.items()}
        valid, test = ({k: v[:64] for k, v in s.items()} for s in (valid, test))
    tok = text.train_bpe(list(train["x"]) + list(train["y"]), 10_000)
    bos, eos = tok.token_to_id(text.BOS), tok.token_to_id(text.EOS)
    ctx.print(f"shared BPE tokenizer: {len(tok)} pieces (the recipe's cap: 10,000)")
    tr, va = _split(tok, train, bos, eos), _split(tok, valid, bos, eos)
    size = 64 if ctx.quick else 512
    epochs = ctx.n_epochs(10, quick=1)

    real = ctx.dataset == EXAMPLE.data
    if real:
        probes = list(BOOK_SENTENCES)
    else:
        by_length = np.argsort([len(s) for s in test["x"]], kind="stable")
        probes = [str(test["x"][i]) for i in (by_length[0], by_length[len(by_length) // 2], by_length[-1])]

    results: dict[str, float] = {}
    sources, references = [str(s) for s in test["x"]], [str(s) for s in test["y"]]
    for attention in (None, "dot"):
        tag = "attention" if attention else "plain"
        model = Seq2Seq(len(tok), size, size, 2, pad_id=tok.pad_id, attention=attention, rngs=nnx.Rngs(ctx.seed))
        trainer = dlcore.Trainer(model, optim.nadam(lr=1e-3), token_loss, batch_size=32,
                                 **ctx.trainer_kwargs({"attention": tag, "size": size, "epochs": epochs}, tag=tag))
        history = trainer.fit(tr, epochs=epochs, validation=va)
        results[f"{tag}_val_loss"] = float(history["val_loss"][-1])
        widths = (1, 3) if attention is None else (1,)
        for width in widths:
            name = f"{tag}_greedy" if width == 1 else f"{tag}_beam{width}"
            # the test split and the probe sentences in one call: one compilation per decoder
            out = translate(model, tok, sources + probes, max_len=12 if ctx.quick else 40, beam_width=width)
            score = metrics.bleu(out[:len(sources)], references)
            results[f"{name}_test_bleu"] = score.score
            ctx.print(f"{name}: test {score}")
            for src, hyp in zip(probes, out[len(sources):]):
                book = f"   (book: {BOOK_SENTENCES[src]})" if real else ""
                ctx.print(f"  {src!r} -> {hyp!r}{book}")
    if not real:
        ctx.print("the book's sentences need the Tatoeba pairs (its words are not in the stand-in's grammar); "
                  "its translations: " + "; ".join(f"{k!r} -> {v!r}" for k, v in BOOK_SENTENCES.items()))
    return results


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
