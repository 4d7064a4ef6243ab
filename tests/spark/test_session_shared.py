"""A lake opened on a caller's Spark session (a notebook's, the tests' shared one) leaves the
session running when it closes, so the next lake opens on it at once."""

from __future__ import annotations

from tests.spark.conftest import copy_lake


def test_a_lake_on_a_shared_session_leaves_it_running(
    shop_pair, open_lake, spark_session, tmp_path
) -> None:
    lake = open_lake(copy_lake(shop_pair.lake, tmp_path / "lake"))
    n = lake.table("events").count().execute()
    assert n > 10_000
    lake.close()
    assert not spark_session.sparkContext._jsc.sc().isStopped()
    again = open_lake(tmp_path / "lake")
    assert again.session is spark_session and again.table("events").count().execute() == n
