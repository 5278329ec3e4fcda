"""MEMIT (Meng et al. 2023, kmeng01/memit), one algorithm step per file, reached through the adapter:

- ``hparams.py``     the hyper-parameters and the edited-layer rule
- ``covariance.py``  C = E[k k^T] of the down-projection inputs over WikiText-2, cached on disk
- ``contexts.py``    context templates and the subject's last token
- ``compute_z.py``   the target vector z = h + delta (Adam, KL, weight decay, norm clamp)
- ``compute_ks.py``  the keys at the subject's last token
- ``memit.py``       the closed-form layer-by-layer update, and ``applied(deltas)``
"""

from repro.gradsim.memit.compute_z import EditRequest
from repro.gradsim.memit.contexts import context_templates
from repro.gradsim.memit.covariance import second_moments
from repro.gradsim.memit.hparams import MemitHyperParams, edit_layers
from repro.gradsim.memit.memit import MemitEdit, applied, closed_form_update, memit_edit

__all__ = [
    "EditRequest",
    "MemitEdit",
    "MemitHyperParams",
    "applied",
    "closed_form_update",
    "context_templates",
    "edit_layers",
    "memit_edit",
    "second_moments",
]
