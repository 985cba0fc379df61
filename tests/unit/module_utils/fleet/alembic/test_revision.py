"""Unit tests of the revision-target grammar (module_utils/fleet/alembic/revision.py).

Every accepted spelling must come out as the text Alembic expects, and every
mistake must be a FleetError whose message is one line that says what to do.
"""

from __future__ import annotations

import pytest

from ansible.module_utils.fleet.alembic.revision import (
    MIN_PREFIX,
    TargetSpec,
    parse_target_spec,
    resolve_prefix,
)
from ansible.module_utils.fleet.core.common import FleetError

DIRECTIONS = ("upgrade", "downgrade", "stamp")


def rejection(spec: str | None, direction: str) -> str:
    """The FleetError message parse_target_spec gives, checked to be one sentence."""
    with pytest.raises(FleetError) as caught:
        parse_target_spec(spec, direction)
    message = str(caught.value)
    assert "\n" not in message, message
    assert message.endswith("."), message
    return message


# -- accepted forms --------------------------------------------------------
# (written, direction, alembic text, ref, branch, offset)
ACCEPTED: list[tuple[str, str, str, str | None, str | None, int]] = [
    # upgrade
    ("head", "upgrade", "head", "head", None, 0),
    ("HEAD", "upgrade", "head", "head", None, 0),
    ("  head  ", "upgrade", "head", "head", None, 0),
    ("heads", "upgrade", "heads", "heads", None, 0),
    ("Heads", "upgrade", "heads", "heads", None, 0),
    ("a1c3e5f70b21", "upgrade", "a1c3e5f70b21", "a1c3e5f70b21", None, 0),
    ("a1c3", "upgrade", "a1c3", "a1c3", None, 0),
    ("+1", "upgrade", "+1", None, None, 1),
    ("+3", "upgrade", "+3", None, None, 3),
    ("+03", "upgrade", "+3", None, None, 3),
    ("a1c3+2", "upgrade", "a1c3+2", "a1c3", None, 2),
    ("a1c3e5f70b21+1", "upgrade", "a1c3e5f70b21+1", "a1c3e5f70b21", None, 1),
    ("head-1", "upgrade", "head-1", "head", None, -1),
    ("head~1", "upgrade", "head-1", "head", None, -1),
    ("head~2", "upgrade", "head-2", "head", None, -2),
    ("HEAD~1", "upgrade", "head-1", "head", None, -1),
    ("base+1", "upgrade", "base+1", "base", None, 1),
    ("alpha@head", "upgrade", "alpha@head", "head", "alpha", 0),
    ("alpha@head-1", "upgrade", "alpha@head-1", "head", "alpha", -1),
    ("alpha@head~1", "upgrade", "alpha@head-1", "head", "alpha", -1),
    ("alpha@a1c3e5f70b21", "upgrade", "alpha@a1c3e5f70b21", "a1c3e5f70b21", "alpha", 0),
    # downgrade
    ("-1", "downgrade", "-1", None, None, -1),
    ("-2", "downgrade", "-2", None, None, -2),
    ("base", "downgrade", "base", "base", None, 0),
    ("BASE", "downgrade", "base", "base", None, 0),
    ("base+1", "downgrade", "base+1", "base", None, 1),
    ("head-1", "downgrade", "head-1", "head", None, -1),
    ("head~2", "downgrade", "head-2", "head", None, -2),
    ("a1c3", "downgrade", "a1c3", "a1c3", None, 0),
    ("b2d4f6081c32", "downgrade", "b2d4f6081c32", "b2d4f6081c32", None, 0),
    ("b2d4f6081c32-1", "downgrade", "b2d4f6081c32-1", "b2d4f6081c32", None, -1),
    ("b2d4f6081c32~1", "downgrade", "b2d4f6081c32-1", "b2d4f6081c32", None, -1),
    ("alpha@head-1", "downgrade", "alpha@head-1", "head", "alpha", -1),
    # stamp
    ("head", "stamp", "head", "head", None, 0),
    ("heads", "stamp", "heads", "heads", None, 0),
    ("base", "stamp", "base", "base", None, 0),
    ("a1c3e5f70b21", "stamp", "a1c3e5f70b21", "a1c3e5f70b21", None, 0),
    ("a1c3", "stamp", "a1c3", "a1c3", None, 0),
    ("alpha@head", "stamp", "alpha@head", "head", "alpha", 0),
]


@pytest.mark.parametrize(
    "written, direction, alembic, ref, branch, offset",
    ACCEPTED,
    ids=["%s-%s" % (row[1], row[0].strip()) for row in ACCEPTED],
)
def test_accepted_target_is_normalised(written: str, direction: str, alembic: str, ref: str | None, branch: str | None, offset: int) -> None:
    spec = parse_target_spec(written, direction)
    assert spec == TargetSpec(given=written.strip(), alembic=alembic, branch=branch, ref=ref, offset=offset)
    assert spec.is_relative_to_current is (ref is None)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_head_and_full_ids_are_valid_in_every_direction(direction: str) -> None:
    assert parse_target_spec("head", direction).alembic == "head"
    assert parse_target_spec("e5f7293c4a65", direction).alembic == "e5f7293c4a65"


def test_the_guides_tilde_spelling_equals_alembics_minus_spelling() -> None:
    for n in (1, 2, 10):
        tilde = parse_target_spec("head~%d" % n, "upgrade")
        minus = parse_target_spec("head-%d" % n, "upgrade")
        assert tilde.alembic == minus.alembic == "head-%d" % n
        assert (tilde.ref, tilde.offset) == (minus.ref, minus.offset)
        assert tilde.given == "head~%d" % n  # messages quote what the operator wrote


# -- rejected forms --------------------------------------------------------
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("written", [None, "", "   ", "\t\n"])
def test_empty_target_is_refused(written: str | None, direction: str) -> None:
    message = rejection(written, direction)
    assert "target is empty" in message
    assert "use head" in message  # says what to write instead


GARBAGE = [
    "head;drop",
    "head; DROP TABLE companies",
    "head drop",
    "head@",
    "@head",
    "head~",
    "~1",
    "head~x",
    "head~-1",
    "1+",
    "++1",
    "+-1",
    "+",
    "-",
    "head+-1",
    "head+1+1",
    "a1c3:b2d4",
    "a1c3..b2d4",
    "a@b@head",
    "héad",
    "$(reboot)",
    "alpha@+1",
]


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("written", GARBAGE)
def test_garbage_is_refused_with_the_grammar(written: str, direction: str) -> None:
    message = rejection(written, direction)
    assert "target '%s' is not a revision target" % written in message
    assert "head-N" in message and "unique prefix of at least 4 characters" in message


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("written", ["+0", "-0", "+00"])
def test_zero_relative_step_is_refused(written: str, direction: str) -> None:
    message = rejection(written, direction)
    assert "moves nowhere" in message
    assert "give +N to go up or -N to go down" in message


@pytest.mark.parametrize("written", ["-1", "-3"])
def test_relative_down_step_is_refused_for_upgrade(written: str) -> None:
    message = rejection(written, "upgrade")
    assert "target '%s' goes down" % written in message
    assert "use the downgrade module" in message


@pytest.mark.parametrize("written", ["+1", "+3"])
def test_relative_up_step_is_refused_for_downgrade(written: str) -> None:
    message = rejection(written, "downgrade")
    assert "target '%s' goes up" % written in message
    assert "use the upgrade module" in message


@pytest.mark.parametrize("written", ["base", "BASE", " base "])
def test_base_is_refused_for_upgrade(written: str) -> None:
    message = rejection(written, "upgrade")
    assert "below every revision" in message
    assert "use the downgrade module to go to base" in message


@pytest.mark.parametrize("written", ["+1", "-1", "head-1", "head~1", "a1c3+1", "a1c3e5f70b21-1", "base+1", "alpha@head-1"])
def test_relative_target_is_refused_for_stamp(written: str) -> None:
    message = rejection(written, "stamp")
    assert "target '%s' is relative" % written in message
    assert "stamp takes an absolute revision" in message


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("written", ["heads+1", "heads-1", "heads~1", "x@heads", "alpha@heads"])
def test_heads_takes_no_branch_or_offset(written: str, direction: str) -> None:
    message = rejection(written, direction)
    assert "'heads' takes no branch or offset" in message
    assert "use <branch>@head or head-N" in message


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("written", ["base-1", "base~1", "alpha@base"])
def test_nothing_lies_below_base(written: str, direction: str) -> None:
    message = rejection(written, direction)
    assert "nothing lies below base" in message


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("written", ["abc", "a", "a1c", "abc+1", "abc-1", "abc~1"])
def test_revision_prefix_shorter_than_four_characters_is_refused(written: str, direction: str) -> None:
    message = rejection(written, direction)
    assert "too short to name a revision" in message
    assert "at least %d characters" % MIN_PREFIX in message


def test_prefix_of_exactly_the_minimum_length_is_accepted() -> None:
    assert MIN_PREFIX == 4
    assert parse_target_spec("abcd", "upgrade").ref == "abcd"


@pytest.mark.parametrize("written", ["head\ndrop", "a1c3\r\n+1"])
def test_rejection_message_stays_on_one_line_for_multiline_input(written: str) -> None:
    with pytest.raises(FleetError) as caught:
        parse_target_spec(written, "upgrade")
    assert "\n" not in str(caught.value)


# -- resolve_prefix ----------------------------------------------------------
IDS = ("a1c3e5f70b21", "b2d4f6081c32", "b2d4aa000000", "c3e5071a2d43", "c3e5071a2d44", "c3e5999999aa")


@pytest.mark.parametrize(
    "written, direction, alembic, ref",
    [
        ("a1c3", "upgrade", "a1c3e5f70b21", "a1c3e5f70b21"),
        ("a1c3e5", "stamp", "a1c3e5f70b21", "a1c3e5f70b21"),
        ("b2d4f", "downgrade", "b2d4f6081c32", "b2d4f6081c32"),
        ("a1c3+2", "upgrade", "a1c3e5f70b21+2", "a1c3e5f70b21"),
        ("b2d4f-1", "downgrade", "b2d4f6081c32-1", "b2d4f6081c32"),
        ("b2d4f~1", "downgrade", "b2d4f6081c32-1", "b2d4f6081c32"),
        ("alpha@a1c3", "upgrade", "alpha@a1c3e5f70b21", "a1c3e5f70b21"),
        ("alpha@a1c3+1", "upgrade", "alpha@a1c3e5f70b21+1", "a1c3e5f70b21"),
    ],
)
def test_unique_prefix_expands_to_the_full_id(written: str, direction: str, alembic: str, ref: str) -> None:
    parsed = parse_target_spec(written, direction)
    resolved = resolve_prefix(parsed, IDS)
    assert resolved.alembic == alembic
    assert resolved.ref == ref
    assert resolved.given == parsed.given
    assert resolved.branch == parsed.branch
    assert resolved.offset == parsed.offset


def test_revision_ids_may_be_any_iterable() -> None:
    resolved = resolve_prefix(parse_target_spec("a1c3", "upgrade"), (rev for rev in IDS))
    assert resolved.alembic == "a1c3e5f70b21"


@pytest.mark.parametrize("written", ["head", "heads", "+2", "head-1", "alpha@head", "a1c3e5f70b21"])
def test_symbols_relative_steps_and_full_ids_pass_unchanged(written: str) -> None:
    parsed = parse_target_spec(written, "upgrade")
    assert resolve_prefix(parsed, IDS) == parsed


def test_full_id_wins_over_a_longer_id_it_prefixes() -> None:
    ids = ("abcd1234", "abcd12345678")
    parsed = parse_target_spec("abcd1234", "upgrade")
    assert resolve_prefix(parsed, ids).alembic == "abcd1234"


@pytest.mark.parametrize(
    "written, candidates",
    [
        ("b2d4", ["b2d4aa000000", "b2d4f6081c32"]),
        ("c3e5", ["c3e5071a2d43", "c3e5071a2d44", "c3e5999999aa"]),
        ("c3e5071a2d4", ["c3e5071a2d43", "c3e5071a2d44"]),
        ("c3e5+1", ["c3e5071a2d43", "c3e5071a2d44", "c3e5999999aa"]),
    ],
)
def test_ambiguous_prefix_lists_every_candidate(written: str, candidates: list[str]) -> None:
    with pytest.raises(FleetError) as caught:
        resolve_prefix(parse_target_spec(written, "upgrade"), IDS)
    message = str(caught.value)
    assert "\n" not in message
    assert "is ambiguous" in message
    assert "it matches %s;" % ", ".join(candidates) in message
    assert "give more characters" in message
    for other in set(IDS) - set(candidates):
        assert other not in message


@pytest.mark.parametrize("written", ["ffff", "zzzz", "a1c4", "A1C3"])
def test_unknown_revision_says_so(written: str) -> None:
    with pytest.raises(FleetError) as caught:
        resolve_prefix(parse_target_spec(written, "upgrade"), IDS)
    message = str(caught.value)
    assert "\n" not in message
    assert "unknown revision '%s'" % written in message
    assert "run the status module" in message


def test_unknown_revision_when_project_has_no_revisions() -> None:
    with pytest.raises(FleetError, match="unknown revision 'a1c3'"):
        resolve_prefix(parse_target_spec("a1c3", "upgrade"), ())


@pytest.mark.parametrize("written", ["alpha", "alpha+1", "alpha-1"])
def test_branch_labels_pass_through(written: str) -> None:
    parsed = parse_target_spec(written, "downgrade" if written.endswith("-1") else "upgrade")
    assert resolve_prefix(parsed, IDS, ["alpha", "beta"]) == parsed


def test_branch_label_unknown_to_the_project_is_an_unknown_revision() -> None:
    with pytest.raises(FleetError, match="unknown revision 'alpha'"):
        resolve_prefix(parse_target_spec("alpha", "upgrade"), IDS, ["beta"])
