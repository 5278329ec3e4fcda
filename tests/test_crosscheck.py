"""repro.crosscheck without TransformerLens (it lives in nox -s crosscheck's own environment): the pairs,
our side's shapes, the comparison rule, the table, bad input, and the report's link."""

import importlib.util

import pytest
import torch

from repro import crosscheck
from repro.ioi.vocabulary import TEMPLATES
from repro.models import gpt2_tokenizer, load_model
from repro.report import crosscheck_section


def test_pairs_come_from_one_template_as_one_batch():
    tokenizer = gpt2_tokenizer()
    batch = crosscheck.pairs_batch(tokenizer, n_pairs=3, template=1)
    assert batch.size == 3 and batch.first_difference() < batch.n_pos
    prefix = TEMPLATES[1].split("{A}")[0].strip()  # "When"
    assert all(tokenizer.decode(row).startswith(prefix) for row in batch.clean)


def test_our_side_gives_raw_logit_diffs_in_transformer_lens_shapes():
    lm = load_model("gpt2-random")
    batch = crosscheck.pairs_batch(lm.tokenizer, n_pairs=1, template=0)
    out = crosscheck.ours(lm, batch)
    n = lm.adapter.n_layers, lm.adapter.n_heads
    assert out["heads"].shape == out["heads_final"].shape == (*n, 1)
    assert out["resid"].shape == (n[0], batch.n_pos, 1) and out["clean"].shape == (1,)
    # before the first token that differs, patching the residual stream changes nothing
    assert torch.equal(out["resid"][:, 0], out["corrupted"].expand(n[0], 1))
    assert not torch.equal(out["resid"][0, -1], out["corrupted"])  # at the end it brings the clean run back


def test_a_difference_beyond_the_tolerance_or_a_shape_mismatch_fails():
    a, corrupted = torch.zeros(2, 3), torch.zeros(3)
    assert crosscheck.compare("x", "f", "g", a, a + crosscheck.TOLERANCE / 2, corrupted).passed
    assert not crosscheck.compare("x", "f", "g", a, a + 3 * crosscheck.TOLERANCE, corrupted).passed
    assert not crosscheck.compare("x", "f", "g", a, torch.zeros(3, 2), corrupted).passed
    assert crosscheck.compare("x", "f", "g", a + 0.5, a + 0.5, corrupted).max_effect == 0.5


def test_the_table_names_each_comparison_and_the_verdict():
    corrupted = torch.zeros(4)
    ok = crosscheck.compare("heads", "head_patched_ld", "get_act_patch_attn_head_out_all_pos",
                            torch.ones(12, 12, 4), torch.ones(12, 12, 4), corrupted)
    bad = crosscheck.compare("resid", "resid_patched_ld", "get_act_patch_resid_pre",
                             torch.zeros(12, 15, 4), torch.full((12, 15, 4), 1e-3), corrupted)
    context = {"pairs": 4, "tokens": 15, "template": 0, "example": "After Mary ...",
               "seconds": {"ours": 1.0, "TransformerLens": 9.0}}
    text = crosscheck.render([ok, bad], context)
    assert "**FAIL**: 1 of 2 comparisons agree within 1e-05; the largest |difference| is 1.00e-03." in text
    assert "| heads | `head_patched_ld` | `get_act_patch_attn_head_out_all_pos` | 12×12×4 | 1.00e+00 | 0.00e+00 | pass |" in text


@pytest.mark.parametrize("argv, message", [
    (["--n-pairs", "0"], "--n-pairs must be in [1, 16], got 0."),
    (["--template", "99"], "--template must be in [0, 15], got 99."),
    ([], "transformer_lens is not installed in this environment; run `nox -s crosscheck`"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert crosscheck.main([*argv, "--out", str(tmp_path / "c.md")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m repro.crosscheck: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "c.md").exists()


def test_the_report_links_the_latest_crosscheck(tmp_path):
    assert "None for profile `cpu`: `nox -s crosscheck`" in crosscheck_section("cpu", tmp_path)
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "crosscheck.md").write_text("# Cross-check\n\n**PASS**: 5 of 5 comparisons agree.\n")
    assert crosscheck_section("cpu", tmp_path).endswith(
        "**PASS**: 5 of 5 comparisons agree. Table: [`crosscheck.md`](crosscheck.md)."
    )
