"""Optional dependencies: import one, or say which extra installs it.

The core (``pip install fairprune-lite``) needs torch, torchvision, numpy, scipy, matplotlib,
tqdm, pyyaml and pillow. A few features need more, each behind an extra of ``pyproject.toml``:

==============  ==========================  ===============================================
extra           packages                    needed by
==============  ==========================  ===============================================
``export``      torch-pruning               ``export.to_smaller`` (a physically smaller model)
``nupi``        cooper-optim                ``FairnessConstraint(dual="nupi")``
``postproc``    fairlearn, scikit-learn     the ``postproc`` method (ThresholdOptimizer)
``cluster``     ray                         ``sweep(executor="ray")``
==============  ==========================  ===============================================

Imports nothing of ours.
"""
from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module``; if it is missing, ``ImportError`` naming ``feature`` and the extra
    that installs it (``pip install 'fairprune-lite[extra]'``)."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        raise ImportError(f"{feature} needs the optional package {top!r}: "
                          f"pip install 'fairprune-lite[{extra}]'") from e
