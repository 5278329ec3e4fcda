"""MEMIT's hyper-parameters in one dataclass, the rule that picks the edited layers at any depth, and the
rule that sets the covariance weight lambda per model.

Defaults are MEMIT's for GPT-2 XL (``hparams/MEMIT/gpt2-xl.json`` in kmeng01/memit) unless noted. They may
be tuned for *efficacy* (does the edit take?) only, never for the correlation the claim is about.

lambda (``mom2_update_weight``) is rescaled by the MLP width, not copied. With one key k the update writes
the share s / (1 + s) of the wanted change at k, where s = k^T C^-1 k / lambda (``memit.py``). C = E[k k^T],
so for a key like the corpus's E[k^T C^-1 k] = d_mlp whatever the activations' scale: the share depends on
lambda / d_mlp, and a lambda copied from a model of another width writes another share. MEMIT's GPT-J
setting (lambda 15,000, d_mlp 16,384: 0.92) is kept; GPT-2 XL's (20,000 / 6,400 = 3.1) writes less.
Copied unchanged, 15,000 is 9.8 x d_mlp for SmolLM2 (d_mlp 1,536) and wrote ~19% of delta at the last
edited layer in claim 2's review (issue 15): "edits" that left the old answer more likely than the new one.
Rescaled: 1,406 for SmolLM2-135M, 2,813 for GPT-2 small (d_mlp 3,072). The rule was fixed before any
ripple was measured; each edit's efficacy is measured and recorded (``ripple.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

# MEMIT edits GPT-2 XL at layers 13-17 of 48, GPT-J at 3-8 of 28, EasyEdit's LLaMA-7B at 4-8 of 32: at
# relative depth (layer + 1/2) / n_layers, 0.28-0.36, 0.13-0.30 and 0.14-0.27. The band below covers the
# middle of those ranges: layers 6-10 of SmolLM2's 30 (five, like GPT-2 XL's), layers 2-3 of GPT-2's 12.
EDIT_DEPTH = (0.2, 0.37)
LAMBDA_PER_D_MLP = 15_000 / 16_384  # MEMIT's GPT-J: mom2_update_weight / d_mlp


def edit_layers(n_layers: int, depth: tuple[float, float] = EDIT_DEPTH) -> list[int]:
    """The layers whose relative depth (layer + 1/2) / n_layers lies in ``depth`` (at least one)."""
    layers = [layer for layer in range(n_layers) if depth[0] <= (layer + 0.5) / n_layers <= depth[1]]
    if not layers:  # a very shallow model: the layer nearest the band's centre (ROME's one-layer case)
        centre = (depth[0] + depth[1]) / 2 * n_layers - 0.5
        layers = [min(max(round(centre), 0), n_layers - 1)]
    return layers


def covariance_weight(d_mlp: int) -> float:
    """lambda for a model whose down-projection reads ``d_mlp`` inputs (see the module docstring)."""
    return round(LAMBDA_PER_D_MLP * d_mlp, 1)


@dataclass(frozen=True)
class MemitHyperParams:
    layers: tuple[int, ...]  # edited layers, ascending; the last one is where z is defined
    mom2_update_weight: float  # lambda in solve(lambda C + K K^T, K): ``covariance_weight(d_mlp)``
    v_num_grad_steps: int = 20  # Adam steps for delta (MEMIT: 20; 25 for GPT-J)
    v_lr: float = 0.5
    v_weight_decay: float = 0.5  # times ||delta|| / ||h||^2, as in MEMIT's compute_z
    clamp_norm_factor: float = 0.75  # ||delta|| <= this * ||h|| ("the most important setting")
    kl_factor: float = 0.0625  # KL on "{subject} is a" at the subject's last token, keeps the subject's essence
    mom2_tokens: int = 100_000  # corpus tokens behind C = E[k k^T]
    mom2_dtype: str = "float32"
    n_context_templates: int = 5  # generated prefixes, plus the bare prompt: 6 contexts as in MEMIT
    context_length: int = 10  # tokens per generated prefix
    early_stop_loss: float = 5e-2  # MEMIT stops the delta optimisation below this loss

    def __post_init__(self):
        if not self.layers or list(self.layers) != sorted(set(self.layers)):
            raise ValueError(f"MEMIT layers must be distinct and ascending, got {self.layers}.")
        if not self.mom2_update_weight > 0:
            raise ValueError(f"mom2_update_weight must be positive, got {self.mom2_update_weight}.")

    @property
    def z_layer(self) -> int:
        return self.layers[-1]
