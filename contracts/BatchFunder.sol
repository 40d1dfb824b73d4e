// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.20;

import "./Owned.sol";
import "./Interfaces.sol";

/// @title BatchFunder: opt-in fast path that registers and funds many accounts per tx.
/// @notice Only its writers may call it, because it acts with the rights it was given
/// elsewhere: it must be a writer of the AccountsIndex (registerAnd*), of the token
/// (registerAndMint) or of the faucet (giveMany). registerAndFund instead moves the
/// caller's own tokens and needs an allowance: token.approve(batchFunder, total).
/// giveValue needs no rights elsewhere: it splits the caller's own msg.value.
///
/// Rerun safety: registration and funding of one account happen in the same
/// transaction, and an account that is already in the index is skipped entirely (not
/// funded again). So resubmitting a batch after a crash is harmless; accounts that were
/// registered by some other path must be funded by that path.
contract BatchFunder is Writable {
    /// @notice For each account not yet in `index`: index.add(account), then
    /// token.transferFrom(msg.sender, account, amounts[i]) if the amount is non-zero.
    /// Returns how many accounts were newly registered.
    function registerAndFund(address index, address token, address[] calldata accounts, uint256[] calldata amounts)
        external
        onlyWriter
        returns (uint256 added)
    {
        require(accounts.length == amounts.length, "BatchFunder: length mismatch");
        for (uint256 i = 0; i < accounts.length; i++) {
            if (!_register(index, accounts[i])) {
                continue;
            }
            added++;
            if (amounts[i] > 0) {
                require(
                    IERC20Minimal(token).transferFrom(msg.sender, accounts[i], amounts[i]),
                    "BatchFunder: transfer failed"
                );
            }
        }
    }

    /// @notice As registerAndFund, but mints the amounts (BatchFunder must be a token writer).
    function registerAndMint(address index, address token, address[] calldata accounts, uint256[] calldata amounts)
        external
        onlyWriter
        returns (uint256 added)
    {
        require(accounts.length == amounts.length, "BatchFunder: length mismatch");
        for (uint256 i = 0; i < accounts.length; i++) {
            if (!_register(index, accounts[i])) {
                continue;
            }
            added++;
            if (amounts[i] > 0) {
                require(IMintable(token).mintTo(accounts[i], amounts[i]), "BatchFunder: mint failed");
            }
        }
    }

    /// @notice faucet.giveTo(account) for each account that never used the faucet
    /// (nextTime == 0); others are skipped. Returns how many were paid.
    function giveMany(address faucet, address[] calldata accounts) external onlyWriter returns (uint256 paid) {
        for (uint256 i = 0; i < accounts.length; i++) {
            if (IFaucet(faucet).nextTime(accounts[i]) != 0) {
                continue;
            }
            IFaucet(faucet).giveTo(accounts[i]);
            paid++;
        }
    }

    /// @notice Sends amounts[i] wei to accounts[i]; msg.value must be their exact sum.
    /// Not idempotent by itself (unlike the others): one signed transaction pays once
    /// because its nonce makes it single-use.
    function giveValue(address[] calldata accounts, uint256[] calldata amounts) external payable onlyWriter {
        require(accounts.length == amounts.length, "BatchFunder: length mismatch");
        uint256 total = 0;
        for (uint256 i = 0; i < accounts.length; i++) {
            total += amounts[i];
            (bool ok, ) = payable(accounts[i]).call{value: amounts[i]}("");
            require(ok, "BatchFunder: value transfer failed");
        }
        require(total == msg.value, "BatchFunder: msg.value is not the sum of amounts");
    }

    /// @return true if the account was newly added, false if it was already present.
    function _register(address index, address account) private returns (bool) {
        if (IAccountsIndex(index).have(account)) {
            return false;
        }
        require(IAccountsIndex(index).add(account), "BatchFunder: index add failed");
        return true;
    }
}
