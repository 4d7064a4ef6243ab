"""Domain errors: one line, a hint, and the parameter at fault as the core spells it."""

from __future__ import annotations

import pytest

from jingzhun.errors import ConflictError, InputError, JingzhunError, NotFoundError


def test_an_error_is_one_line_with_its_hint() -> None:
    err = InputError("a\nb  c", hint="fix\r\nit")
    assert (err.message, err.hint, str(err)) == ("a b  c", "fix it", "a b  c; fix it")
    assert err.param is None


@pytest.mark.parametrize("cls", [JingzhunError, InputError, NotFoundError, ConflictError])
def test_every_error_carries_the_parameter_it_is_about(cls: type[JingzhunError]) -> None:
    err = cls("as_of 'x' is not a timestamp", param="as_of")
    assert err.param == "as_of"
    assert str(err) == "as_of 'x' is not a timestamp"  # the message is the core's own words


@pytest.mark.parametrize("param", ["--as-of", "as-of", "", "as of"])
def test_a_parameter_is_named_as_python_spells_it(param: str) -> None:
    with pytest.raises(ValueError, match="must be a parameter name"):
        InputError("bad", param=param)
