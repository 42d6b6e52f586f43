"""Optimizers by name with PyTorch's arguments and PyTorch's update rules, built from optax.

Each factory takes ``torch.optim``'s arguments (same names, same defaults) and returns an
``optax.GradientTransformation`` whose trajectory matches ``torch.optim`` given the same initial
parameters and gradients. They are optax chains, so they compose with every optax tool (``chain``,
``multi_transform``, ``inject_hyperparams``, ``MultiSteps``).

Where optax's own optimizer differs from PyTorch's, the factory composes optax transforms in PyTorch's
order, or (each place said in its docstring and in ``transforms``) uses a small custom transform:

* weight decay is *coupled* (L2: ``g + wd * p`` before anything else) in every PyTorch optimizer but
  AdamW, which decays the weights directly (``p -= lr * wd * p``);
* SGD with ``dampening``: PyTorch's momentum buffer starts as the raw gradient (custom transform);
* Adam/AdamW: PyTorch computes the bias corrections ``1 - b**t`` in double precision (optax in float32,
  1e-5 off), and its ``amsgrad`` keeps the maximum of the *raw* second moment, bias-corrected with the
  current step (optax: the maximum of the bias-corrected moments) (custom transform);
* Adagrad: ``eps`` outside the square root and a zero initial accumulator (optax: inside, 0.1), plus
  ``lr_decay`` (custom transform and a schedule);
* RMSprop: ``alpha`` is optax's ``decay``, ``eps`` sits outside the square root
  (``eps_in_sqrt=False``), and the momentum buffer holds unscaled steps, so a learning-rate schedule
  multiplies the whole buffer as in PyTorch (optax's ``rmsprop`` scales before the trace);
* AdaMax: optax's rule with PyTorch's double-precision bias correction (custom transform);
* NAdam: PyTorch's (Dozat's) momentum schedule ``mu_t``, which optax.nadam lacks (custom transform).

``lr`` may be a number or an optax schedule ``step -> lr`` (step counts updates from 0; see
``dlcore.schedules``), equivalent to a PyTorch scheduler stepped after every ``optimizer.step()``; SGD's
and RMSprop's ``momentum`` and the Adam family's beta1 may be schedules too (1cycle's momentum
cycling). Transforms with weight decay need the parameters: call ``tx.update(grads, state, params)``.
For per-epoch changes, ``injectable(name, ...)`` keeps the hyperparameters in the optimizer state, where
``set_hyperparams`` (and the callbacks of ``dlcore.train.lr``) change them without recompiling.

One concept per module:

* ``optimizers``: the factories (``sgd``, ``adam``, ``adamw``, ``adamax``, ``nadam``, ``rmsprop``,
  ``adadelta``, ``adagrad``), ``create`` and ``names`` (the ``OPTIMIZERS`` registry);
* ``transforms``: the custom transforms where PyTorch's rule differs from optax's;
* ``hyperparams``: ``injectable``, ``get_hyperparams``, ``set_hyperparams``;
* ``paths``: parameters by dotted path (``named_leaves``, ``path_str``), patterns (``path_matcher``)
  and masks (``mask_of``, ``decay_mask``; ``no_decay`` / ``weights_only`` leave biases and
  normalisation parameters out of weight decay);
* ``groups``: parameter groups by path pattern (``param_groups``): per-group learning rate, weight
  decay, freezing;
* ``penalties``: ``add_l1``, ``add_l2`` (the book's manual penalties), ``max_norm`` (after each step),
  ``keep_masks`` (keeps pruned weights at zero);
* ``clipping``: gradient clipping as transforms (``clip_grad_norm``, ``clip_grad_value``,
  ``with_clipping``) and as pure functions on gradient pytrees (``clip_by_norm``, ``clip_by_value``);
* ``accumulation``: gradient accumulation over k batches (``accumulate``);
* ``lbfgs``: L-BFGS (``LBFGS``, ``lbfgs_minimize``): PyTorch's iteration, with or without the
  strong-Wolfe line search, driven from the host as PyTorch's is.

References:
    Géron, Hands-On Machine Learning, PyTorch ed., ch. 11, Faster Optimizers, Gradient Clipping and
    Avoiding Overfitting Through Regularization;
    Ketkar & Moolayil, Deep Learning with Python, 2nd ed., ch. 3, Practical Implementation with PyTorch
    (Listing 3-5, the optimizer comparison);
    the ``torch.optim`` documentation for the exact update rules.
"""

from dlcore.optim.accumulation import accumulate
from dlcore.optim.clipping import clip_by_norm, clip_by_value, clip_grad_norm, clip_grad_value, with_clipping
from dlcore.optim.groups import param_groups
from dlcore.optim.hyperparams import get_hyperparams, injectable, set_hyperparams
from dlcore.optim.lbfgs import LBFGS, lbfgs_minimize
from dlcore.optim.optimizers import (
    OPTIMIZERS,
    ScalarOrSchedule,
    adadelta,
    adagrad,
    adam,
    adamax,
    adamw,
    create,
    nadam,
    names,
    rmsprop,
    sgd,
)
from dlcore.optim.paths import (
    Pattern,
    decay_mask,
    mask_of,
    named_leaves,
    no_decay,
    path_matcher,
    as_params,
    path_str,
    weights_only,
)
from dlcore.optim.penalties import add_l1, add_l2, keep_masks, max_norm
from dlcore.optim.transforms import (
    TorchAdagradState,
    TorchAdamaxState,
    TorchAdamState,
    TorchMomentumState,
    TorchNAdamState,
)

# Private names dlcore.nn.regularization imports from here to select parameters.

__all__ = [
    "LBFGS",
    "OPTIMIZERS",
    "accumulate",
    "adadelta",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "add_l1",
    "add_l2",
    "clip_by_norm",
    "clip_by_value",
    "clip_grad_norm",
    "clip_grad_value",
    "create",
    "decay_mask",
    "get_hyperparams",
    "injectable",
    "keep_masks",
    "lbfgs_minimize",
    "mask_of",
    "max_norm",
    "nadam",
    "named_leaves",
    "names",
    "no_decay",
    "param_groups",
    "path_matcher",
    "as_params",
    "path_str",
    "rmsprop",
    "set_hyperparams",
    "sgd",
    "weights_only",
    "with_clipping",
]
