"""The nonce allocator against a fake node: no chain needed, real processes and locks."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

from cic_seeding.chain.nonce import NonceAllocator, is_nonce_error

SIGNER = "0x" + "5a" * 20


class FileNode:
    """A node whose pending count lives in a file, shared by processes.

    ``send(nonce)`` accepts only the next nonce in sequence (as a real node would mine it);
    anything else is a "nonce too low" or a gap, counted as an error.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def pending(self) -> int:
        try:
            return int(self.path.read_text() or 0)
        except FileNotFoundError:
            return 0

    def send(self, nonce: int) -> bool:
        if nonce != self.pending():
            with open(self.path.with_suffix(".errors"), "a") as fh:
                fh.write(f"{os.getpid()} {nonce}\n")
            return False
        self.path.write_text(str(nonce + 1))
        return True


def _worker(node_path: str, lock_dir: str, batches: int, size: int) -> None:
    node = FileNode(Path(node_path))
    alloc = NonceAllocator(SIGNER, 8996, node.pending, lock_dir)
    for _ in range(batches):
        with alloc.reserve() as r:
            for _ in range(size):
                node.send(r.next())


def test_two_processes_share_one_sequence(tmp_path: Path) -> None:
    node_path = tmp_path / "node"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(str(node_path), str(tmp_path), 40, 5))
             for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert not node_path.with_suffix(".errors").exists()
    assert FileNode(node_path).pending() == 3 * 40 * 5


def test_rejected_nonce_is_handed_out_again(tmp_path: Path) -> None:
    node = FileNode(tmp_path / "node")
    alloc = NonceAllocator(SIGNER, 1, node.pending, tmp_path)
    with alloc.reserve() as r:
        assert node.send(r.next()) and node.send(r.next())
        r.next()  # signed, never accepted (e.g. the node went away)
    with alloc.reserve() as r:
        assert r.next() == 2


def test_fill_gaps_sends_fillers_up_to_the_stuck_nonce(tmp_path: Path) -> None:
    node = FileNode(tmp_path / "node")
    alloc = NonceAllocator(SIGNER, 1, node.pending, tmp_path)
    sent: list[int] = []

    def filler(nonce: int) -> bool:
        sent.append(nonce)
        return node.send(nonce)

    assert alloc.fill_gaps(3, filler) == 3
    assert sent == [0, 1, 2] and node.pending() == 3
    assert alloc.fill_gaps(3, filler) == 0


def test_lock_file_is_per_signer_and_chain(tmp_path: Path) -> None:
    a = NonceAllocator(SIGNER, 1, lambda: 0, tmp_path)
    b = NonceAllocator(SIGNER.upper().replace("0X", "0x"), 2, lambda: 0, tmp_path)
    assert a.lock_path != b.lock_path and a.lock_path.name == f"1-{SIGNER}.lock"


def test_nonce_error_messages() -> None:
    assert is_nonce_error("nonce too low: next nonce 5, tx nonce 3")
    assert is_nonce_error("Nonce too low")
    assert not is_nonce_error("insufficient funds for gas * price + value")
