"""Keyfiles: decrypt to the derived addresses, mode 0600, parallel, rerun-safe."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import eth_keyfile
import pytest

from cic_seeding.datadir import keyfile_path
from cic_seeding.errors import ConfigError
from cic_seeding.generate.keys import address_of, user_address
from cic_seeding.importers._keyfiles import KeyfileWriter, scrypt_n


def test_keyfiles_decrypt_to_the_users(tmp_path: Path) -> None:
    users = [(i, user_address(7, i)) for i in range(10)]
    users.append((10, user_address(7, 99)))  # index and address disagree
    writer = KeyfileWriter(tmp_path / "keystore", 7, "foo", "light", workers=2)
    try:
        bad = writer.write(users)
        assert list(bad) == [users[-1][1]] and "inconsistent" in bad[users[-1][1]]
        ivs, salts = set(), set()
        for _, address in users[:10]:
            path = keyfile_path(tmp_path / "keystore", address)
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            doc = json.loads(path.read_text())
            ivs.add(doc["crypto"]["cipherparams"]["iv"])
            salts.add(doc["crypto"]["kdfparams"]["salt"])
            assert doc["crypto"]["kdfparams"]["n"] == 2**8
            key = eth_keyfile.decode_keyfile_json(doc, b"foo")
            assert address_of(key) == address
        # a file's own IV; one salt (one scrypt) per chunk of a worker: two workers, two salts
        assert len(ivs) == 10 and len(salts) == 2
        before = keyfile_path(tmp_path / "keystore", users[0][1]).read_bytes()
        assert writer.write(users[:10]) == {}
        assert keyfile_path(tmp_path / "keystore", users[0][1]).read_bytes() == before
        again = KeyfileWriter(tmp_path / "other", 7, "foo", "light", workers=1)
        again.write(users[:2])
        docs = [json.loads(keyfile_path(tmp_path / "other", a).read_text()) for _, a in users[:2]]
        assert docs[0]["crypto"]["kdfparams"]["salt"] == docs[1]["crypto"]["kdfparams"]["salt"]
        assert docs[0]["crypto"]["kdfparams"]["salt"] not in salts  # a fresh salt every run
    finally:
        writer.close()


def test_kdf_choices() -> None:
    assert scrypt_n("production") == 2**18
    with pytest.raises(ConfigError, match="light, production"):
        scrypt_n("fast")
