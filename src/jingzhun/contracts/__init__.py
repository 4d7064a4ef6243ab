"""The ground floor: definitions every stage and :mod:`jingzhun.config` share.

What lives here is what two or more layers must agree on and none of them owns:

- :mod:`~jingzhun.contracts.events`: the event names and the fields of events, users and
  items, one definition per field;
- :mod:`~jingzhun.contracts.time`: the clock and the parsing of user-given times (naive UTC);
- :mod:`~jingzhun.contracts.models`: the names of the models settings may name;
- :mod:`~jingzhun.contracts.estimator`: the estimator contract every model family follows;
- :mod:`~jingzhun.contracts.results`: typed results, as stage facades return them.

These modules import nothing of jingzhun but :mod:`jingzhun.errors`, :mod:`jingzhun.checks`
and each other, so anything may import them without forming a cycle; ``tests/test_layering.py``
holds them to it.
"""
