// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.20;

/// @title BatchReader: many reads in one eth_call, for the verifier.
/// @notice Stateless and ownerless; every function is a view. A failing read in
/// `batchRead` is reported, not propagated, so one bad target does not spoil a batch.
/// Keep batches modest (a few hundred calls): eth_call runs under the node's gas cap.
contract BatchReader {
    function batchRead(address[] calldata targets, bytes[] calldata data)
        external
        view
        returns (bool[] memory success, bytes[] memory results)
    {
        require(targets.length == data.length, "BatchReader: length mismatch");
        success = new bool[](targets.length);
        results = new bytes[](targets.length);
        for (uint256 i = 0; i < targets.length; i++) {
            (success[i], results[i]) = targets[i].staticcall(data[i]);
        }
    }

    function nativeBalances(address[] calldata accounts) external view returns (uint256[] memory balances) {
        balances = new uint256[](accounts.length);
        for (uint256 i = 0; i < accounts.length; i++) {
            balances[i] = accounts[i].balance;
        }
    }

    /// @notice Reverts if the token does not answer balanceOf: a wrong token address
    /// must not read as "everyone has zero".
    function tokenBalances(address token, address[] calldata accounts) external view returns (uint256[] memory balances) {
        balances = new uint256[](accounts.length);
        for (uint256 i = 0; i < accounts.length; i++) {
            balances[i] = _readWord(token, abi.encodeWithSignature("balanceOf(address)", accounts[i]));
        }
    }

    /// @notice `have(account)` of an accounts index for each account; reverts like tokenBalances.
    function haveMany(address index, address[] calldata accounts) external view returns (bool[] memory present) {
        present = new bool[](accounts.length);
        for (uint256 i = 0; i < accounts.length; i++) {
            present[i] = _readWord(index, abi.encodeWithSignature("have(address)", accounts[i])) != 0;
        }
    }

    function _readWord(address target, bytes memory call) private view returns (uint256) {
        require(target.code.length > 0, "BatchReader: target has no code");
        (bool ok, bytes memory ret) = target.staticcall(call);
        require(ok && ret.length >= 32, "BatchReader: read failed");
        return abi.decode(ret, (uint256));
    }
}
