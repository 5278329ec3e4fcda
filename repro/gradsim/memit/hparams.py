"""MEMIT's hyper-parameters in one dataclass, and the rule that picks the edited layers at any depth.

Defaults are MEMIT's for GPT-2 XL (``hparams/MEMIT/gpt2-xl.json`` in kmeng01/memit) unless noted. They may
be tuned for *efficacy* (does the edit take?) only, never for the correlation the claim is about.
"""

from __future__ import annotations

from dataclasses import dataclass

# MEMIT edits GPT-2 XL at layers 13-17 of 48, GPT-J at 3-8 of 28, EasyEdit's LLaMA-7B at 4-8 of 32: at
# relative depth (layer + 1/2) / n_layers, 0.28-0.36, 0.13-0.30 and 0.14-0.27. The band below covers the
# middle of those ranges: layers 6-10 of SmolLM2's 30 (five, like GPT-2 XL's), layers 2-3 of GPT-2's 12.
EDIT_DEPTH = (0.2, 0.37)


def edit_layers(n_layers: int, depth: tuple[float, float] = EDIT_DEPTH) -> list[int]:
    """The layers whose relative depth (layer + 1/2) / n_layers lies in ``depth`` (at least one)."""
    layers = [layer for layer in range(n_layers) if depth[0] <= (layer + 0.5) / n_layers <= depth[1]]
    if not layers:  # a very shallow model: the layer nearest the band's centre (ROME's one-layer case)
        centre = (depth[0] + depth[1]) / 2 * n_layers - 0.5
        layers = [min(max(round(centre), 0), n_layers - 1)]
    return layers


@dataclass(frozen=True)
class MemitHyperParams:
    layers: tuple[int, ...]  # edited layers, ascending; the last one is where z is defined
    v_num_grad_steps: int = 20  # Adam steps for delta (MEMIT: 20; 25 for GPT-J)
    v_lr: float = 0.5
    v_weight_decay: float = 0.5  # times ||delta|| / ||h||^2, as in MEMIT's compute_z
    clamp_norm_factor: float = 0.75  # ||delta|| <= this * ||h|| ("the most important setting")
    kl_factor: float = 0.0625  # KL on "{subject} is a" at the subject's last token, keeps the subject's essence
    mom2_update_weight: float = 15_000.0  # lambda in solve(lambda C + K K^T, K); MEMIT: 15000 (GPT-J) - 20000 (GPT-2 XL)
    mom2_tokens: int = 100_000  # corpus tokens behind C = E[k k^T] (MEMIT: 100k Wikipedia samples)
    mom2_dtype: str = "float32"
    n_context_templates: int = 5  # generated prefixes, plus the bare prompt: 6 contexts as in MEMIT
    context_length: int = 10  # tokens per generated prefix
    early_stop_loss: float = 5e-2  # MEMIT stops the delta optimisation below this loss

    def __post_init__(self):
        if not self.layers or list(self.layers) != sorted(set(self.layers)):
            raise ValueError(f"MEMIT layers must be distinct and ascending, got {self.layers}.")

    @property
    def z_layer(self) -> int:
        return self.layers[-1]
