"""The MNIST-1D baselines (Greydanus and Kobak, 2024): logistic regression, MLP, CNN and GRU, registered by name."""

from __future__ import annotations
