// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.20;

import "./Owned.sol";

/// @title FaucetStore: when each account last received a faucet payout.
/// @notice Kept apart from the faucet so that a replacement faucet can be pointed at
/// the same history (and so no account can claim twice across a faucet upgrade).
/// Only writers record times: the faucet must be made a writer (`addWriter(faucet)`)
/// by the store's owner before the faucet can pay anything.
contract FaucetStore is Writable {
    mapping(address => uint256) private times;

    event TimeSet(address indexed account, uint256 time);

    /// @notice Unix time of the account's last payout; 0 if it never had one.
    function timeOf(address account) external view returns (uint256) {
        return times[account];
    }

    function setTime(address account, uint256 time) external onlyWriter returns (bool) {
        times[account] = time;
        emit TimeSet(account, time);
        return true;
    }
}
