// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.20;

/// @title Owned / Writable: the access control shared by the devnet contracts.
/// @notice One owner (ERC-173 style) plus a set of "writers" that may call the
/// state-changing entry points of a contract. The owner always counts as a writer,
/// so a freshly deployed contract is usable by its deployer without extra calls.
abstract contract Owned {
    address public owner;

    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    constructor() {
        owner = msg.sender;
        emit OwnershipTransferred(address(0), msg.sender);
    }

    modifier onlyOwner() {
        require(msg.sender == owner, "Owned: caller is not the owner");
        _;
    }

    /// @dev Zero is refused: a contract without an owner could never get new writers.
    function transferOwnership(address newOwner) external onlyOwner {
        require(newOwner != address(0), "Owned: new owner is the zero address");
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }
}

abstract contract Writable is Owned {
    mapping(address => bool) private writers;

    event WriterAdded(address writer);
    event WriterDeleted(address writer);

    modifier onlyWriter() {
        require(isWriter(msg.sender), "Writable: caller is not a writer");
        _;
    }

    function isWriter(address account) public view returns (bool) {
        return account == owner || writers[account];
    }

    function addWriter(address writer) external onlyOwner returns (bool) {
        require(writer != address(0), "Writable: zero address");
        writers[writer] = true;
        emit WriterAdded(writer);
        return true;
    }

    /// @dev A writer may also give up its own right (e.g. a retired batch helper).
    function deleteWriter(address writer) external returns (bool) {
        require(msg.sender == owner || msg.sender == writer, "Writable: not owner or self");
        require(writers[writer], "Writable: not a writer");
        writers[writer] = false;
        emit WriterDeleted(writer);
        return true;
    }
}
