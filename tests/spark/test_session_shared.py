"""The shared session: a lake opened on a caller's session leaves it running when closed."""

from __future__ import annotations

from jingzhun.config import Settings
from jingzhun.profile.build import build_on_lake


def test_a_lake_on_a_shared_session_leaves_it_running(shop_pair, open_lake, tmp_path) -> None:
    from tests.spark.conftest import copy_lake

    lake = open_lake(copy_lake(shop_pair.lake, tmp_path / "lake"))
    assert lake.table("events").count().execute() > 10_000
    lake.close()
    again = open_lake(tmp_path / "lake")
    result = build_on_lake(again, Settings(), shop_pair.as_of)
    assert result.users > 1_000
    assert "profiles" in again.tables()
