"""Claim 5 (seed 004): RNN / LSTM / Transformer word LMs on PTB and WikiText-2; fine-tuning on PubMedQA.

- ``run.py``: the two pipelines, ``run_architectures`` and ``run_finetune``
- ``result.py``: their result objects (``measurement()``, ``snapshot()``)
- ``verdict.py``: the rules and the seed's numbers
- ``plots.py``, ``benchmark.py``, ``cli.py``: figures, ``nox -s bench`` rows, ``python -m repro lm``
- ``corpus.py``: tokenisation, vocabulary, batchify, BPTT windows
- ``models.py``: the three models behind one ``forward(ids, state) -> (logits, state)``
- ``trainer.py``: the seed's recipe, checkpoints, resume
- ``generation.py``: seeded temperature sampling and sample measures
- ``finetune.py``: PubMedQA fine-tuning of a pretrained causal LM
"""

from repro.lm.result import ArchitecturesResult, FinetuneResult
from repro.lm.run import run_architectures, run_finetune

__all__ = ["ArchitecturesResult", "FinetuneResult", "run_architectures", "run_finetune"]
