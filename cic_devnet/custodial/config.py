"""What an engine process needs, resolved from the settings.

Each value comes from its setting (flag > environment > config file > the devnet file: the
``custodial`` section a devnet started with ``--custodial`` wrote, which the settings loader
reads). A worker on another machine gets the same values from its environment (see the package
documentation).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from cic_seeding.chain.signer import read_password
from cic_seeding.config import Settings
from cic_seeding.custodial import endpoint
from cic_seeding.errors import ConfigError


@dataclass(frozen=True)
class EngineConfig:
    broker_url: str
    queue: str
    db_url: str
    schema: str | None
    passphrase: str = field(repr=False)
    #: Settings whose chain connection signs with the engine's key (see :func:`engine_config`).
    chain: Settings = field(repr=False)


def engine_config(settings: Settings) -> EngineConfig:
    """The engine's configuration; ConfigError naming the missing setting."""
    broker, queue = endpoint(settings)
    db_url = settings.custodial_db_url
    if not db_url:
        raise ConfigError("no database for the custodial engine",
                          hint="set custodial_db_url (CIC_CUSTODIAL_DB_URL) to a postgresql:// "
                          "URL (or sqlite:///PATH for an engine in one process), or use a "
                          "devnet started with --custodial")
    passphrase = settings.custodial_passphrase
    if passphrase is None:
        passphrase_file = settings.custodial_passphrase_file
        if not passphrase_file:
            raise ConfigError("no passphrase for the custodial keys",
                              hint="set CIC_CUSTODIAL_PASSPHRASE or "
                              "CIC_CUSTODIAL_PASSPHRASE_FILE")
        passphrase = read_password(None, passphrase_file, "custodial passphrase")
    keyfile = settings.custodial_keyfile
    if not keyfile:
        raise ConfigError("no signing key for the custodial engine",
                          hint="set custodial_keyfile (CIC_CUSTODIAL_KEYFILE) and "
                          "CIC_CUSTODIAL_KEYFILE_PASSWORD_FILE; the key must be a writer of "
                          "the AccountsIndex (and of the faucet, for faucet payouts)")
    password_file = settings.custodial_keyfile_password_file
    # the engine's own key (a flag: no longer a devnet deployer's), never the main signer's
    # password
    chain = dataclasses.replace(settings.replace(keyfile=keyfile), keyfile_password=None,
                                keyfile_password_file=password_file)
    return EngineConfig(broker, queue, db_url, settings.custodial_db_schema, passphrase, chain)
