"""Sequence models: the time-series forecasting models of Géron's ch. 13 (Processing Sequences Using RNNs and CNNs), registered by name."""

from __future__ import annotations
