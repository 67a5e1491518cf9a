"""shadow.cli.flags: a library error about a setting is shown as the flag that set it."""

from __future__ import annotations

from shadow.cli.flags import FLAGS, user_message
from shadow.errors import ConfigError, ReplayError, UsageError


def test_a_setting_at_the_start_becomes_its_flag() -> None:
    """`rate has value 0` is what the library says; the user typed --rate."""
    error = UsageError("rate has value 0; it must be > 0", setting="rate")
    assert user_message(error) == "--rate has value 0; it must be > 0"


def test_a_setting_named_elsewhere_is_put_in_front() -> None:
    """A message that does not start with the setting still says which flag it is about."""
    error = UsageError("the schedule needs a positive start_at", setting="start_at")
    assert user_message(error) == "--start-at: the schedule needs a positive start_at"


def test_errors_without_a_known_setting_are_shown_as_they_are() -> None:
    """Config keys, unknown settings and operational errors keep their own words."""
    assert user_message(ConfigError("replay.speed has value -3")) == "replay.speed has value -3"
    unknown = UsageError("colour has value 'red'", setting="colour")
    assert user_message(unknown) == "colour has value 'red'"
    assert user_message(ReplayError("the target went away")) == "the target went away"


def test_every_flag_is_spelled_as_the_cli_spells_it() -> None:
    """Each table entry is the setting's name with dashes, as click derives flag names."""
    for setting, flag in FLAGS.items():
        assert flag == "--" + setting.replace("_", "-")
