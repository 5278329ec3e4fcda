import pytest

from repro.verdicts import Claim

DOC = """Title line of the claim.

Claim as published:
    Das Original.
In English:
    The original.
Source:
    Seed 009.
Method:
    Do things.
Reproduced when:
    Things work.
"""


def test_claim_is_parsed_from_its_docstring():
    claim = Claim.parse(DOC, key="demo", number=9)
    assert (claim.title, claim.original, claim.english, claim.source, claim.rule) == (
        "Title line of the claim.", "Das Original.", "The original.", "Seed 009.", "Things work."
    )


def test_missing_sections_are_named():
    with pytest.raises(ValueError, match=r"lacks the section\(s\) \['Method', 'Reproduced when'\]"):
        Claim.parse(DOC.split("Method:")[0], key="demo", number=9)


def test_no_docstring_is_an_error():
    with pytest.raises(ValueError, match="has no docstring"):
        Claim.parse(None, key="demo", number=9)
