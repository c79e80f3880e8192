"""wsol: weakly supervised object localization with CutMix and baselines.

The data flows one way: records on disk (:mod:`wsol.data`) -> mixing and training
(:mod:`wsol.mixing`, :mod:`wsol.train`) -> CAMs (:mod:`wsol.cam`) -> boxes (:mod:`wsol.localize`)
-> metrics (:mod:`wsol.metrics`) -> tables, curves and galleries (:mod:`wsol.report`,
:mod:`wsol.gallery`).
"""

__version__ = "0.1.0"
