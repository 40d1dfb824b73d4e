"""USSD: the gateway protocol, seeded PINs and a client that drives menus.

The gateway itself is a devnet service (:mod:`cic_devnet.ussd`); this package holds what both
sides agree on (:mod:`.texts`), the PIN derivation and hashing (:mod:`.pins`) and the HTTP
client the importer and the checks drive sessions with (:mod:`.client`).
"""
