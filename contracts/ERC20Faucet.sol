// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.20;

import "./Owned.sol";
import "./Interfaces.sol";

interface IFaucetStore {
    function timeOf(address account) external view returns (uint256);
    function setTime(address account, uint256 time) external returns (bool);
}

/// @title ERC20Faucet: pays a fixed amount of one token to registered accounts.
/// @notice Pays out of its own token balance (fund it with a transfer or a mint).
/// Recipients must be present in the accounts index.
///
/// Cooldown: `period` seconds between payouts to one account. The default period 0
/// means ONE payout per account, ever. `nextTime(a)` is 0 for an account that never
/// used the faucet, type(uint256).max once it has (period 0), or last payout + period.
/// The last-payout times live in a separate FaucetStore, of which this faucet must be
/// a writer.
contract ERC20Faucet is Writable {
    address public immutable token;
    address public immutable store;
    address public immutable accountsIndex;

    uint256 public tokenAmount;
    uint256 public period;

    event FaucetAmountChange(uint256 amount);
    event FaucetPeriodChange(uint256 period);
    // Same signature (and so topic0) as CIC's faucet payout event.
    event Give(address indexed recipient, address indexed token, uint256 amount);

    constructor(address token_, address store_, address accountsIndex_) {
        require(token_ != address(0) && store_ != address(0) && accountsIndex_ != address(0), "Faucet: zero address");
        token = token_;
        store = store_;
        accountsIndex = accountsIndex_;
    }

    function giveTo(address recipient) external onlyWriter returns (uint256) {
        return _give(recipient);
    }

    function gimme() external returns (uint256) {
        return _give(msg.sender);
    }

    /// @notice 0: may use the faucet now (never used). Otherwise the earliest unix time
    /// of the next payout; type(uint256).max means never again.
    function nextTime(address account) public view returns (uint256) {
        uint256 last = IFaucetStore(store).timeOf(account);
        if (last == 0) {
            return 0;
        }
        if (period == 0) {
            return type(uint256).max;
        }
        if (period > type(uint256).max - last) {
            return type(uint256).max;
        }
        return last + period;
    }

    function setAmount(uint256 amount) external onlyWriter returns (bool) {
        tokenAmount = amount;
        emit FaucetAmountChange(amount);
        return true;
    }

    function setPeriod(uint256 seconds_) external onlyOwner returns (bool) {
        period = seconds_;
        emit FaucetPeriodChange(seconds_);
        return true;
    }

    /// @notice Lets the owner take back tokens the faucet holds (e.g. when retiring it).
    function withdraw(address to, uint256 amount) external onlyOwner returns (bool) {
        require(IERC20Minimal(token).transfer(to, amount), "Faucet: transfer failed");
        return true;
    }

    function _give(address recipient) private returns (uint256) {
        uint256 amount = tokenAmount;
        require(amount > 0, "Faucet: amount is zero");
        require(IAccountsIndex(accountsIndex).have(recipient), "Faucet: recipient not in accounts index");
        uint256 next = nextTime(recipient);
        require(next == 0 || (next != type(uint256).max && block.timestamp >= next), "Faucet: cooldown");
        // Record first: the token is trusted, but checks-effects-interactions costs nothing.
        IFaucetStore(store).setTime(recipient, block.timestamp);
        require(IERC20Minimal(token).transfer(recipient, amount), "Faucet: transfer failed");
        emit Give(recipient, token, amount);
        return amount;
    }
}
