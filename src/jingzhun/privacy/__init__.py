"""The protect stage: data-subject rights (find, export, erase), the audit log, key rotation.

Personal values live encrypted in the vault (:mod:`jingzhun.store.vault`); this package is
what a shop does with them on a customer's request — ``ws.privacy`` is its facade.
"""
