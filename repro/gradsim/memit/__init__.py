"""MEMIT (Meng et al. 2023, kmeng01/memit), one algorithm step per file, reached through the adapter:

- ``hparams.py``     the hyper-parameters, the edited-layer rule and lambda per model
- ``covariance.py``  C = E[k k^T] of the down-projection inputs over sampled WikiText-2 articles, cached
- ``contexts.py``    context templates and the subject's last token
- ``compute_z.py``   the target vectors z = h + delta of a batch of edits (Adam, KL, weight decay, clamp)
- ``compute_ks.py``  the keys (and current outputs) at the subject's last token, per edit, batched
- ``memit.py``       the closed-form layer-by-layer update, and ``applied(deltas)``
"""

from repro.gradsim.memit.compute_z import EditRequest, compute_z, compute_zs
from repro.gradsim.memit.contexts import context_templates
from repro.gradsim.memit.covariance import second_moments
from repro.gradsim.memit.hparams import MemitHyperParams, covariance_weight, edit_layers
from repro.gradsim.memit.memit import (
    CovarianceSolve,
    MemitEdit,
    applied,
    closed_form_update,
    memit_edit,
    memit_edits,
)

__all__ = [
    "CovarianceSolve",
    "EditRequest",
    "MemitEdit",
    "MemitHyperParams",
    "applied",
    "closed_form_update",
    "compute_z",
    "compute_zs",
    "context_templates",
    "covariance_weight",
    "edit_layers",
    "memit_edit",
    "memit_edits",
    "second_moments",
]
