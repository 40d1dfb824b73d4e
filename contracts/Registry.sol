// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.20;

import "./Owned.sol";

/// @title Registry: the single entry point of a CIC network.
/// @notice Maps well-known identifiers (UTF-8 names right-padded with zero bytes to
/// 32 bytes, e.g. "AccountRegistry") to contract addresses. The set of identifiers is
/// fixed at deployment so a typo in a `set` call fails loudly instead of creating a
/// key nobody will ever look up.
contract Registry is Owned {
    bytes32[] private identifiers;
    mapping(bytes32 => bool) private declared;
    mapping(bytes32 => address) private entries;

    event AddressKey(bytes32 indexed key, address addr);

    constructor(bytes32[] memory identifiers_) {
        for (uint256 i = 0; i < identifiers_.length; i++) {
            bytes32 key = identifiers_[i];
            require(key != bytes32(0), "Registry: empty identifier");
            require(!declared[key], "Registry: duplicate identifier");
            declared[key] = true;
            identifiers.push(key);
        }
    }

    /// @notice Zero means "not set"; callers must turn that into an error naming the key.
    function addressOf(bytes32 key) external view returns (address) {
        return entries[key];
    }

    /// @dev Overwriting is allowed (the owner may redeploy a component); every change
    /// is visible as an AddressKey event.
    function set(bytes32 key, address addr) external onlyOwner returns (bool) {
        require(declared[key], "Registry: identifier not declared");
        require(addr != address(0), "Registry: zero address");
        entries[key] = addr;
        emit AddressKey(key, addr);
        return true;
    }

    function identifier(uint256 index) external view returns (bytes32) {
        require(index < identifiers.length, "Registry: index out of range");
        return identifiers[index];
    }

    function identifierCount() external view returns (uint256) {
        return identifiers.length;
    }
}
