"""What a data directory knows that the settings should follow: the chain its users were made
for (``manifest.json``'s ``chain_spec``).

Import, sync, verify, traffic and doctor call :func:`dataset_settings` on the settings they are
given, so a library caller gets the same chain spec as the command line: the manifest's, unless
a flag (``-i/--chain-spec``), an environment variable or a config file names one; it ranks
above the devnet file and the default (:meth:`Settings.with_fact
<cic_seeding.config.Settings.with_fact>`).
"""

from __future__ import annotations

from cic_seeding.config import Settings
from cic_seeding.datadir.layout import DataDir
from cic_seeding.datadir.manifest import MANIFEST_NAME
from cic_seeding.errors import DataDirError


def manifest_source(data_dir: str) -> str:
    """The source ``config show`` and error messages name for a value of the manifest."""
    return f"{MANIFEST_NAME} ({data_dir})"


def dataset_settings(settings: Settings) -> Settings:
    """``settings`` with the chain spec of ``settings.data_dir``'s manifest where no user
    setting gives one; unchanged without a readable manifest (a command that needs the data
    reports that when it reads it). Idempotent."""
    data = DataDir(settings.data_dir)
    if not data.manifest_path.is_file():
        return settings
    try:
        manifest = data.manifest()
    except DataDirError:
        return settings
    return settings.with_fact("chain_spec", manifest.chain_spec,
                              manifest_source(settings.data_dir))
