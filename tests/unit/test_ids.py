"""Every callback, action and block id names one thing: a listener cannot match a second surface by accident."""

from __future__ import annotations

from bot.slack import ids


def test_every_id_value_is_unique_across_every_kind() -> None:
    values = [member.value for kind in ids.ALL_IDS for member in kind]
    repeated = {value for value in values if values.count(value) > 1}
    assert not repeated, f"ids used twice: {sorted(repeated)}"
