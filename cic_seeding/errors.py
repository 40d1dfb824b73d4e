"""The one exception tree of cic-seeding.

Every error a user can cause is a :class:`CicSeedError`. The CLI turns one into a single line
(``error: <message>``) and a non-zero exit; ``-vv`` adds the traceback. Each class says whether
it is *transient* (worth retrying with backoff: the same call may succeed later) or *terminal*
(stop and explain: retrying cannot help).

::

    CicSeedError                      (terminal unless marked)
    ├── UsageError                    bad command-line use: unknown name, value out of range
    ├── ConfigError                   config file / environment variable / settings invalid
    ├── DataDirError                  the data directory as a whole
    │   ├── DataDirExistsError        target exists and neither -f nor --reset was given
    │   ├── ManifestError             manifest missing, unreadable or from a future schema
    │   └── RecordError               one record (file) is corrupt or fails the schema
    ├── ChainError                    talking to the EVM node and its contracts
    │   ├── RpcUnavailableError       transient: connection refused, timeout, 5xx, rate limit
    │   ├── RpcError                  the node answered with an error that retrying won't fix
    │   ├── RegistryLookupError       an identifier or token symbol resolves to the zero address
    │   ├── ContractError             a call reverted / a contract is missing at an address
    │   ├── SignerError               keyfile unreadable, wrong password, not a writer, no gas
    │   └── TransactionError          a transaction failed or was never mined
    ├── StateError                    the per-user import state store
    │   └── StateUnavailableError     transient: the state database's connection broke
    ├── ImporterError                 an importer could not do its job (names the importer)
    ├── SyncError                     the block syncer (timeout, users left undone)
    ├── VerifyError                   the verifier could not run (not: checks failed)
    ├── MetadataError                 the metadata server (HTTP) and its documents
    │   ├── MetadataUnavailableError  transient: refused, timeout, 5xx, 429 (names the URL)
    │   └── MetadataRequestError      the server refused the request (4xx, its message)
    ├── UssdError                     the USSD gateway (HTTP) and its accounts
    │   └── UssdUnavailableError      transient: refused, timeout, 5xx (names the URL)
    └── ServiceError                  a devnet service (anvil, workers, HTTP servers)
        ├── ServiceUnavailableError   transient: the service does not answer (yet)
        └── CustodialError            the custodial engine refused or failed a request
            ├── CustodialUnavailableError  transient: broker, database or workers unreachable
            ├── CustodialTimeoutError      transient: no reply in time (names user and task id)
            ├── CustodialReplyError        a reply the client does not understand
            └── CustodialKeyError          a key cannot be sealed or opened (wrong passphrase)

A message says what was tried, what was expected and what to do next.
"""

from __future__ import annotations


class CicSeedError(Exception):
    """Root of every error cic-seeding raises on purpose.

    ``transient`` tells retry loops whether trying again may help. ``exit_code`` is what the
    CLI exits with (2 for usage/configuration, 1 otherwise).
    """

    transient: bool = False
    exit_code: int = 1
    #: Set on a transient error whose own layer already retried it to the end: outer retry
    #: loops pass it on instead of multiplying the attempts.
    exhausted: bool = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}; {self.hint}"
        return self.message


class UsageError(CicSeedError):
    """The command line asks for something that does not exist or is out of range."""

    exit_code = 2


class ConfigError(CicSeedError):
    """A setting (flag, environment variable, config file) is invalid or missing."""

    exit_code = 2


class DataDirError(CicSeedError):
    """The data directory cannot be used as asked."""


class DataDirExistsError(DataDirError):
    """The target data directory exists and neither append (-f) nor --reset was given."""

    exit_code = 2


class ManifestError(DataDirError):
    """manifest.json is missing, unreadable or of an unknown schema version."""


class RecordError(DataDirError):
    """One record of the data directory is corrupt; ``path`` names it."""

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path


class ChainError(CicSeedError):
    """Talking to the chain failed."""


class RpcUnavailableError(ChainError):
    """The JSON-RPC endpoint did not answer usefully (refused, timeout, 5xx, rate limited)."""

    transient = True


class RpcError(ChainError):
    """The node answered with an error that retrying will not fix."""


class RegistryLookupError(ChainError):
    """A registry identifier or token symbol resolved to the zero address."""


class ContractError(ChainError):
    """A contract call reverted, or no contract lives at the address."""


class SignerError(ChainError):
    """The signing key cannot be used: unreadable keyfile, wrong password, no rights, no gas."""


class TransactionError(ChainError):
    """A transaction reverted or was not mined in time."""


class StateError(CicSeedError):
    """The per-user import state store cannot be read or written."""


class StateUnavailableError(StateError):
    """The state store's database went away (restart, network): reconnecting may help."""

    transient = True


class ImporterError(CicSeedError):
    """An importer could not complete its work."""


class SyncError(CicSeedError):
    """The block syncer stopped before every user was done."""


class VerifyError(CicSeedError):
    """The verifier could not run at all (a failing check is a result, not an error)."""


class MetadataError(CicSeedError):
    """Reading or writing the metadata server failed."""


class MetadataUnavailableError(MetadataError):
    """The metadata server did not answer usefully (refused, timeout, 5xx, 429)."""

    transient = True


class MetadataRequestError(MetadataError):
    """The metadata server refused a request (4xx); ``status`` is its HTTP status.

    ``fatal``: no request to this server can succeed (a wrong token, not a metadata server):
    the run stops instead of failing user after user."""

    def __init__(self, message: str, *, status: int, hint: str | None = None,
                 fatal: bool = False) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.fatal = fatal or status in (401, 403)


class UssdError(CicSeedError):
    """Talking to the USSD gateway failed, or it answered outside the protocol."""


class UssdUnavailableError(UssdError):
    """The USSD gateway did not answer usefully (refused, timeout, 5xx)."""

    transient = True


class ServiceError(CicSeedError):
    """A devnet service could not be started, stopped or used."""


class ServiceUnavailableError(ServiceError):
    """A service does not answer (yet); retrying may help."""

    transient = True


class CustodialError(ServiceError):
    """The custodial engine (or the way to it) failed a request; the message says which."""


class CustodialUnavailableError(CustodialError):
    """The engine's broker, database or workers do not answer; retrying may help."""

    transient = True


class CustodialTimeoutError(CustodialError):
    """No reply came for a request in time; ``task_id`` and ``user`` name it."""

    transient = True

    def __init__(self, message: str, *, task_id: str = "", user: str = "",
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.task_id = task_id
        self.user = user


class CustodialReplyError(CustodialError):
    """A reply came that the client cannot understand (unknown status, missing fields)."""


class CustodialKeyError(CustodialError):
    """A custodial key cannot be sealed or opened: wrong passphrase, or a corrupt row."""
