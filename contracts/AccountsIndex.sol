// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.20;

import "./Owned.sol";

/// @title AccountsIndex: the set of registered user accounts ("AccountRegistry").
/// @notice Enumerable set of addresses; writers add and remove.
///
/// Event encoding: `AddressAdded(address)` and `AddressRemoved(address)` carry the
/// account in the log DATA (not indexed). CIC's own log consumer decodes the add event
/// as the non-indexed `AddressAdded(address _token)`, so we match that. topic0 is the
/// same either way (0xa226db3f...4d7f for AddressAdded); decoders that want to be
/// lenient can read topics[1] when a log has two topics and the data word otherwise.
contract AccountsIndex is Writable {
    address[] private entries;
    // 1-based position in `entries`; 0 means absent.
    mapping(address => uint256) private positions;

    event AddressAdded(address account);
    event AddressRemoved(address account);

    /// @notice Reverts on a duplicate so that a rerun of an importer cannot silently
    /// register (and trigger gifts for) the same account twice.
    function add(address account) external onlyWriter returns (bool) {
        require(account != address(0), "AccountsIndex: zero address");
        require(positions[account] == 0, "AccountsIndex: already added");
        _add(account);
        return true;
    }

    /// @notice Batch fast path: adds every address not yet present and skips (does not
    /// revert on) duplicates and the zero address. Returns how many were added.
    function addMany(address[] calldata accounts) external onlyWriter returns (uint256 added) {
        for (uint256 i = 0; i < accounts.length; i++) {
            address account = accounts[i];
            if (account == address(0) || positions[account] != 0) {
                continue;
            }
            _add(account);
            added++;
        }
    }

    /// @dev Swap-and-pop: entry order is not stable across removals.
    function remove(address account) external onlyWriter returns (bool) {
        uint256 position = positions[account];
        require(position != 0, "AccountsIndex: not present");
        uint256 last = entries.length;
        if (position != last) {
            address moved = entries[last - 1];
            entries[position - 1] = moved;
            positions[moved] = position;
        }
        entries.pop();
        delete positions[account];
        emit AddressRemoved(account);
        return true;
    }

    function have(address account) external view returns (bool) {
        return positions[account] != 0;
    }

    function entryCount() external view returns (uint256) {
        return entries.length;
    }

    function entry(uint256 index) external view returns (address) {
        require(index < entries.length, "AccountsIndex: index out of range");
        return entries[index];
    }

    function _add(address account) private {
        entries.push(account);
        positions[account] = entries.length;
        emit AddressAdded(account);
    }
}
