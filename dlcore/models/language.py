"""Language models: the char-RNN of Géron's ch. 14 and the word LSTM language model of Rao and McMahan's ch. 7, registered by name."""

from __future__ import annotations
