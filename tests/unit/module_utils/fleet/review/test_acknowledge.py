"""Unit tests of module_utils/fleet/review/acknowledge.py: acknowledgements outside the revision files (fleet-review.yml
beside alembic.ini, the acknowledge option), each mistake one line naming where, the key and what to do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ansible.module_utils.fleet.core.common import FleetError
from ansible.module_utils.fleet.review.acknowledge import (
    OPTION,
    REVIEW_FILE,
    Acknowledgement,
    check_mapping,
    merge,
    read_review_file,
    resolve,
    review_file_path,
)

IDS = ["4d5e6f708192", "4d5e00000000", "5e6f708192a3", "0001"]


def test_the_file_lives_beside_alembic_ini(tmp_path: Path) -> None:
    assert review_file_path(str(tmp_path / "alembic.ini")) == str(tmp_path / REVIEW_FILE)


def test_no_file_means_nothing_acknowledged(tmp_path: Path) -> None:
    assert read_review_file(str(tmp_path / REVIEW_FILE)) == {}


def test_the_file_is_read_and_reasons_collapsed(tmp_path: Path) -> None:
    path = tmp_path / REVIEW_FILE
    path.write_text("acknowledge:\n  5e6f7081:\n    ban-drop-column: >-\n      nothing reads it\n      since 4.2\n")
    assert read_review_file(str(path)) == {"5e6f7081": {"ban-drop-column": "nothing reads it since 4.2"}}


@pytest.mark.parametrize(
    "text, phrase",
    [
        ("acknowledge: [a, b", "is not valid YAML"),
        ("- a\n- b\n", "holds a list"),
        ("acknowledged: {}\n", "unknown key acknowledged"),
        ("acknowledge: [a]\n", "acknowledge is a list"),
    ],
)
def test_a_bad_file_is_one_line_naming_it(tmp_path: Path, text: str, phrase: str) -> None:
    path = tmp_path / REVIEW_FILE
    path.write_text(text)
    with pytest.raises(FleetError) as caught:
        read_review_file(str(path))
    message = str(caught.value)
    assert message.startswith(str(path)) and phrase in message and "\n" not in message, message


@pytest.mark.parametrize(
    "raw, phrase",
    [
        ({"5e6f": {"no-such-rule": "x"}}, "5e6f: 'no-such-rule' is not a rule of the review"),
        ({"5e6f": {"invalid-acknowledgement": "x"}}, "is not a rule of the review"),
        ({"5e6f": {"ban-drop-column": ""}}, "5e6f: ban-drop-column has no reason"),
        ({"5e6f": {"ban-drop-column": 3}}, "has no reason"),
        ({"5e6f": {}}, "5e6f: give a mapping of rule to reason"),
        ({"": {"ban-drop-column": "x"}}, "empty revision key"),
    ],
)
def test_bad_entries(raw: dict[str, Any], phrase: str) -> None:
    with pytest.raises(FleetError, match=r"^the acknowledge option: ") as caught:
        check_mapping(raw, "the acknowledge option")
    assert phrase in str(caught.value)


def test_ids_and_unique_prefixes_of_four_or_more_resolve() -> None:
    given = {"5e6f": {"ban-drop-column": "a"}, "4d5e6f": {"ban-drop-table": "b"}, "0001": {"renaming-table": "c"}}
    assert resolve(given, IDS, "f", REVIEW_FILE) == {
        "5e6f708192a3": {"ban-drop-column": Acknowledgement("a", REVIEW_FILE)},
        "4d5e6f708192": {"ban-drop-table": Acknowledgement("b", REVIEW_FILE)},
        "0001": {"renaming-table": Acknowledgement("c", REVIEW_FILE)},
    }


@pytest.mark.parametrize(
    "key, phrase",
    [
        ("ffff", "ffff names no revision of this project"),
        ("4d5e", "4d5e matches several revisions (4d5e00000000, 4d5e6f708192): give more characters"),
        ("5e6", "5e6 is too short a prefix"),
    ],
)
def test_keys_that_do_not_name_one_revision(key: str, phrase: str) -> None:
    with pytest.raises(FleetError, match=r"^where: acknowledge: ") as caught:
        resolve({key: {"ban-drop-column": "x"}}, IDS, "where", REVIEW_FILE)
    assert phrase in str(caught.value)


def test_the_option_wins_per_revision_and_rule() -> None:
    in_file = {"a": {"ban-drop-column": Acknowledgement("file", REVIEW_FILE), "ban-drop-table": Acknowledgement("file", REVIEW_FILE)}}
    option = {"a": {"ban-drop-column": Acknowledgement("option", OPTION)}, "b": {"renaming-table": Acknowledgement("option", OPTION)}}
    assert merge(in_file, option) == {
        "a": {"ban-drop-column": Acknowledgement("option", OPTION), "ban-drop-table": Acknowledgement("file", REVIEW_FILE)},
        "b": {"renaming-table": Acknowledgement("option", OPTION)},
    }
