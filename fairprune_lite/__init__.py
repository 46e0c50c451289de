"""fairprune-lite: fairness-constrained pruning (BiFP) as a small PyTorch library.

Modules, one per concept (see CONTRIBUTING.md): ``fairness``, ``masks``, ``data``, ``models``,
``train``, ``constraints``, ``bilevel``, ``pruners``, ``experiments``.
"""

__version__ = "0.1.0"
