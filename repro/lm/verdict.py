"""The rules that decide claim 5's verdicts (stated in ``claims/test_perplexity.py``), and the seed's numbers."""

from __future__ import annotations

import math

from repro.lm.models import NAMES
from repro.verdicts import Estimate, Gate, Part, Region, Ruling, Verdict, combine_parts, judge

# Seed 004 as quoted in the claim-5 issue.
PUBLISHED = {
    # Part A: final (train, validation) loss on Penn Treebank
    "ptb_losses": {"transformer": (4.0, 4.6), "lstm": (4.5, 5.1), "rnn": (4.5, 5.2)},
    # Part B: validation perplexity on WikiText-2
    "wikitext2_val_ppl": {"transformer": 346.8285, "lstm": 390.0218, "rnn": 411.1751},
    # Part C: GPT-2 small fine-tuned on PubMedQA (~600 steps)
    "finetune": {"loss_before": 3.09, "loss_after": 2.25, "ppl_before": 28.32, "ppl_after": 8.78, "factor": 3.2,
                 "steps": 600},
}
PUBLISHED_RATIOS = {  # other ÷ Transformer perplexity in the seed's numbers
    "ptb": {k: math.exp(PUBLISHED["ptb_losses"][k][1] - PUBLISHED["ptb_losses"]["transformer"][1]) for k in ("lstm", "rnn")},
    "wikitext2": {k: PUBLISHED["wikitext2_val_ppl"][k] / PUBLISHED["wikitext2_val_ppl"]["transformer"] for k in ("lstm", "rnn")},
}
OTHERS = ("lstm", "rnn")  # the models the Transformer must beat
LOWER = Region(low=1.0)  # other ÷ Transformer perplexity above 1: the Transformer is lower
MARGIN = 1.03  # ... and by at least 3% for REPRODUCED
FINETUNE_FACTOR = 2.0  # content-token perplexity must fall at least 2x (the seed: 3.2x)
GROUPS = {"ptb": "PTB ordering", "convergence": "converges fastest", "wikitext2": "WikiText-2 ordering"}


def part_name(group: str, other: str) -> str:
    return f"{GROUPS[group]}: {NAMES[other]} ÷ Transformer perplexity"


def ordering_verdict(ratios: dict[str, Estimate]) -> Verdict:
    """``ratios[other]`` = other ÷ Transformer perplexity with its interval. REPRODUCED when every interval
    lies above 1 and every ratio is at least ``MARGIN``; NOT_REPRODUCED when another model is lower with its
    interval below 1; INCONCLUSIVE otherwise."""
    decided = [LOWER.decide(e.interval) for e in ratios.values()]
    if Verdict.NOT_REPRODUCED in decided:
        return Verdict.NOT_REPRODUCED
    if all(v == Verdict.REPRODUCED for v in decided) and all(e.value >= MARGIN for e in ratios.values()):
        return Verdict.REPRODUCED
    return Verdict.INCONCLUSIVE


def architecture_ruling(groups: dict[str, dict[str, Estimate]], gates: list[Gate],
                        units_by_profile: dict[str, int] | None = None) -> Ruling:
    """``groups[group][other]`` for the groups in ``GROUPS``: each group decided by ``ordering_verdict``, the
    groups combined by ``repro.verdicts.combine_parts`` (all R -> R, all N -> N, any INCONCLUSIVE -> INCONCLUSIVE,
    else PARTIAL). A model that does not beat the unigram fails its gate: INCONCLUSIVE naming it."""
    parts = [Part(part_name(g, k), e, LOWER) for g, by_other in groups.items() for k, e in by_other.items()]
    return judge(parts, gates, combine=lambda _: combine_parts([ordering_verdict(r) for r in groups.values()]),
                 units_by_profile=units_by_profile)


def unigram_gate(kind: str, ratios: dict[str, Estimate]) -> Gate:
    """``ratios[where]`` = unigram ÷ model perplexity for every seed and evaluation set: each interval above 1."""
    passed = all(LOWER.decide(e.interval) == Verdict.REPRODUCED for e in ratios.values())
    detail = "; ".join(f"{where} {e.value:.3f} [{e.interval.low:.3f}, {e.interval.high:.3f}]" for where, e in ratios.items())
    return Gate(f"{NAMES[kind]} beats the unigram", passed, f"unigram ÷ {NAMES[kind]} perplexity, needs every interval > 1: {detail}")


FINETUNE_PARTS = ("content-token perplexity factor (before ÷ after)",
                  "domain adaptation: content-token factor ÷ WikiText-2 control factor")


def finetune_ruling(content: Estimate, domain: Estimate, template: Estimate) -> Ruling:
    """NOT_REPRODUCED when the content-token factor lies below ``FINETUNE_FACTOR`` (domain adaptation and any
    repair together fall short); REPRODUCED when it and the factor net of the control both lie above it;
    INCONCLUSIVE otherwise. Gate: the fine-tune took (the template tokens' factor lies above 1)."""
    parts = [Part(FINETUNE_PARTS[0], content, Region(low=FINETUNE_FACTOR)),
             Part(FINETUNE_PARTS[1], domain, Region(low=FINETUNE_FACTOR))]

    def combine(verdicts: dict[str, Verdict]) -> Verdict:
        content_v, domain_v = verdicts[FINETUNE_PARTS[0]], verdicts[FINETUNE_PARTS[1]]
        if content_v == Verdict.NOT_REPRODUCED:
            return Verdict.NOT_REPRODUCED
        if content_v == domain_v == Verdict.REPRODUCED:
            return Verdict.REPRODUCED
        return Verdict.INCONCLUSIVE

    took = Gate("the fine-tune took", LOWER.decide(template.interval) == Verdict.REPRODUCED,
                f"template-token perplexity factor {template.value:.3f} [{template.interval.low:.3f}, "
                f"{template.interval.high:.3f}], needs the interval > 1")
    return judge(parts, [took], combine=combine)
