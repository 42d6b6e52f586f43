"""Tuning the Fashion-MNIST MLP: an Optuna search, then the same learning-rate search as one vmapped population.

Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch, ch. 10, Fine-Tuning Neural Network
Hyperparameters with Optuna. The book's objective builds the 784-n-n-10 classifier (both hidden layers
``n_hidden`` wide) with ``learning_rate ~ log-uniform[1e-5, 1e-1]`` and ``n_hidden ~ int[20, 300]``,
trains it with SGD and returns the validation accuracy; the study maximises it with
``TPESampler(seed=42)`` over 5 trials, and ``MedianPruner(n_startup_trials=5, n_warmup_steps=0,
interval_steps=1)`` gets each epoch's validation accuracy (``trial.report``, ``trial.should_prune``).
The book's best: learning rate 0.0853, 116 hidden units, validation accuracy 0.8868. Its text does not
print the epochs or the batch size; dlcore uses those of `fashion_mlp` (20 epochs, batch 32).

Part 1 is that study: `dlcore.tune.create_study` (TPE, seed 42, the median pruner), a
`dlcore.tune.SearchSpace`, and a `Trainer` per trial with `dlcore.tune.PruningCallback`. With 5 trials
and ``n_startup_trials=5`` the median pruner never prunes (it waits for 5 finished trials), as in the book.

Part 2 is what JAX adds: the learning-rate search as a population. 16 learning rates drawn from the
same log-uniform range train at once as one jitted ``vmap`` over 16 stacked models
(`dlcore.tune.successive_halving`); every 5 epochs the better half by validation accuracy goes on
(16, 8, 4, 2). A population varies numbers kept in the optimizer state and the seed, not the model's
structure, so the width is fixed at the study's best ``n_hidden``.

The book's figures come from the real Fashion-MNIST and from Optuna's sampler stream (a TPE sampler
draws its first 10 trials at random), so they compare only in kind; without Fashion-MNIST on this
machine the run uses scikit-learn's 8x8 digits resized to 28x28 (as `fashion_mlp` does) and says so.
`--quick` runs 5 trials of 1 epoch on 512 images and a population of 4 for 2 epochs.

Run: `dlcore run fashion_mlp_tuning` or `python examples/fashion_mlp_tuning.py` (needs Optuna:
``pip install "dlcore[tune]"``; without it part 1 is skipped, said so, and part 2 runs at 116 units).
"""

from __future__ import annotations

import time

import dlcore
from dlcore import losses, optim, tune
from dlcore.examples import fashion_mlp
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="fashion_mlp_tuning",
    title="Optuna search of the Fashion MLP's learning rate and width, then a vmapped population with halving",
    book="Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch",
    section="ch. 10, Fine-Tuning Neural Network Hyperparameters with Optuna",
    source="its objective(trial), TPESampler(seed=42), study.optimize(objective, n_trials=5), MedianPruner",
    data="fashion_mnist",
    standin="digits",
    book_figures={"best_learning_rate": 0.0853, "best_n_hidden": 116, "best_val_accuracy": 0.8868},
)

SPACE = tune.SearchSpace(learning_rate=tune.Param("float", 1e-5, 1e-1, log=True),
                         n_hidden=tune.Param("int", 20, 300))
N_TRIALS, SAMPLER_SEED, BATCH_SIZE, EPOCHS = 5, 42, 32, 20  # the book's trials and seed; fashion_mlp's batch, epochs
MEMBERS, RUNG_EPOCHS = 16, 5  # the population: 16 learning rates, the better half goes on every 5 epochs
BOOK_N_HIDDEN = 116


def _model(n_hidden: int, seed: int = 0, rngs=None):
    """Géron's ImageClassifier(n_inputs=784, n_hidden1=n_hidden, n_hidden2=n_hidden, n_classes=10)."""
    sizes = (28 * 28, n_hidden, n_hidden, 10)
    return dlcore.models.create("mlp", sizes=sizes, rngs=rngs) if rngs is not None else \
        dlcore.models.create("mlp", sizes=sizes, seed=seed)


def _study(ctx: Context, train: dict, val: dict, epochs: int):
    """Part 1: the book's study. Returns (study, seconds), or None without Optuna."""
    try:
        import optuna
    except ImportError:
        ctx.print('optuna: not installed (pip install "dlcore[tune]"): the Optuna search is skipped')
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the trials table below says what its log lines say
    pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0, interval_steps=1)
    study = tune.create_study(direction="maximize", seed=SAMPLER_SEED, pruner=pruner)

    def objective(trial):
        p = SPACE.suggest(trial)
        model = _model(p["n_hidden"], seed=ctx.seed)
        hyper = {"learning_rate": p["learning_rate"], "n_hidden": p["n_hidden"], "batch_size": BATCH_SIZE,
                 "epochs": epochs}
        kwargs = ctx.trainer_kwargs(hyper, tag=f"trial_{trial.number}")
        kwargs["callbacks"].append(tune.PruningCallback(trial, "val_accuracy"))
        trainer = dlcore.Trainer(model, optim.sgd(lr=p["learning_rate"]), losses.cross_entropy,
                                 metrics=["accuracy"], batch_size=BATCH_SIZE, **kwargs)
        history = trainer.fit(train, epochs=epochs, validation=val, resume=ctx.resume)
        return history["val_accuracy"][-1]

    t0 = time.perf_counter()
    study.optimize(objective, n_trials=N_TRIALS)
    return study, time.perf_counter() - t0


def run(ctx: Context) -> dict[str, float]:
    train, val = fashion_mlp.splits(ctx)
    epochs = ctx.n_epochs(EPOCHS, quick=1)
    figures: dict[str, float] = {}

    # -- part 1: Optuna (TPE, median pruner), one Trainer per trial ---------------------------------------
    found = _study(ctx, train, val, epochs)
    n_hidden = BOOK_N_HIDDEN
    if found is not None:
        study, seconds = found
        ctx.print(f"Optuna: {N_TRIALS} trials, TPE sampler (seed {SAMPLER_SEED}), median pruner, SGD, {epochs} "
                  f"epoch(s) each, {seconds:.1f} s")
        ctx.print(" trial  learning_rate  n_hidden  val_accuracy  state")
        for t in study.trials:
            value = t.value if t.value is not None else max(t.intermediate_values.values(), default=float("nan"))
            where = f" at epoch {t.user_attrs['pruned_epoch']}" if "pruned_epoch" in t.user_attrs else ""
            ctx.print(f"{t.number:>6}  {t.params['learning_rate']:>13.3g}  {t.params['n_hidden']:>8}  "
                      f"{value:>12.4f}  {t.state.name.lower()}{where}")
        best = study.best_trial
        n_hidden = best.params["n_hidden"]
        ctx.print(f"best: learning_rate {best.params['learning_rate']:.4g}, n_hidden {n_hidden}, val_accuracy "
                  f"{best.value:.4f} (the book's on Fashion-MNIST: 0.0853, 116, 0.8868"
                  + ("" if ctx.dataset == EXAMPLE.data else f"; this run is on {ctx.dataset}, not comparable")
                  + ")")
        figures.update(best_learning_rate=best.params["learning_rate"], best_n_hidden=n_hidden,
                       best_val_accuracy=best.value,
                       pruned_trials=sum(t.state.name == "PRUNED" for t in study.trials))

    # -- part 2: the learning-rate search as one vmapped population, with successive halving ----------------
    members, rungs = (4, 1) if ctx.quick else (MEMBERS, RUNG_EPOCHS)
    pop_epochs = 2 if ctx.quick and ctx.epochs is None else epochs
    lrs = SPACE.params["learning_rate"].sample(members, seed=ctx.seed)
    t0 = time.perf_counter()
    result = tune.successive_halving(
        lambda rngs: _model(n_hidden, rngs=rngs), optim.injectable("sgd", lr=0.01), train, val,
        hyperparams={"lr": lrs}, seeds=ctx.seed, epochs=pop_epochs, rungs=rungs, batch_size=BATCH_SIZE,
        loss_fn=losses.cross_entropy, metrics=["accuracy"], monitor="val_accuracy")
    seconds = time.perf_counter() - t0
    ctx.print(f"population: {members} learning rates (log-uniform in [1e-5, 1e-1]) at n_hidden {n_hidden}, one "
              f"vmapped step for all, the better half kept every {rungs} epoch(s) over {pop_epochs} epochs, "
              f"{seconds:.1f} s")
    ctx.print(result.table())
    best_lr = result.best_params["lr"]
    ctx.print(f"population best: learning_rate {best_lr:.4g}, val_accuracy {result.best_value:.4f} after "
              f"{pop_epochs} epochs (member {result.best}; * above)")
    epochs_run = sum(len(h["loss"]) for h in result.history)
    figures.update(population_members=members, population_best_learning_rate=best_lr,
                   population_best_val_accuracy=result.best_value,
                   population_member_epochs=epochs_run,  # what halving saved: members * epochs without it
                   population_full_epochs=members * pop_epochs)
    return figures


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
