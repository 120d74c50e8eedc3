from dataclasses import dataclass, field
from typing import Literal

import pytest

from codec.config import config_from_dict, config_to_dict


@dataclass(frozen=True)
class Inner:
    ratios: tuple[int, ...] = (8, 5)
    mode: Literal["a", "b"] = "a"


@dataclass(frozen=True)
class Outer:
    rate: int = 16000
    weight: float = 1.0
    flag: bool = True
    name: str | None = None
    inner: Inner = field(default_factory=Inner)


def test_round_trip_through_json_types():
    cfg = Outer(rate=24000, weight=0.5, flag=False, name="x", inner=Inner((2, 4), "b"))
    data = config_to_dict(cfg)
    assert data["inner"]["ratios"] == [2, 4]
    assert config_from_dict(Outer, data) == cfg


def test_int_is_accepted_for_float_but_not_the_reverse():
    assert config_from_dict(Outer, {"weight": 2}).weight == 2.0
    with pytest.raises(ValueError, match=r"config\.rate must be an integer"):
        config_from_dict(Outer, {"rate": 1.5})


@pytest.mark.parametrize("data, message", [
    ({"bogus": 1}, r"unknown key config\.bogus"),
    ({"inner": {"mode": "c"}}, r"config\.inner\.mode must be one of 'a', 'b'"),
    ({"inner": {"ratios": [1, "x"]}}, r"config\.inner\.ratios\[1\] must be an integer"),
    ({"flag": 1}, r"config\.flag must be true or false"),
    ({"name": 3}, r"config\.name must be a string"),
])
def test_bad_values_name_the_key(data, message):
    with pytest.raises(ValueError, match=message):
        config_from_dict(Outer, data)
