// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.20;

import "./Owned.sol";
import "./Interfaces.sol";

/// @title TokenUniqueSymbolIndex: tokens by symbol ("TokenRegistry").
/// @notice The key of a token is its `symbol()` as UTF-8 bytes right-padded with zero
/// bytes to 32 bytes, so `addressOf(bytes32("GFT"))` finds the GFT token. A symbol can
/// be registered once; the index trusts the token's own `symbol()` rather than a
/// caller-supplied key so the two can never disagree.
contract TokenUniqueSymbolIndex is Writable {
    address[] private tokens;
    mapping(bytes32 => address) private bySymbol;

    event AddressKey(bytes32 indexed key, address addr);
    event AddressAdded(address token);

    function register(address token) external onlyWriter returns (bool) {
        require(token != address(0), "TokenIndex: zero address");
        bytes memory symbol = bytes(IERC20Minimal(token).symbol());
        require(symbol.length > 0 && symbol.length <= 32, "TokenIndex: symbol must be 1-32 bytes");
        bytes32 key = bytes32(symbol); // right-padded with zero bytes
        require(bySymbol[key] == address(0), "TokenIndex: symbol already registered");
        bySymbol[key] = token;
        tokens.push(token);
        emit AddressKey(key, token);
        emit AddressAdded(token);
        return true;
    }

    /// @notice Zero means "not registered"; callers must report which symbol was missing.
    function addressOf(bytes32 symbol) external view returns (address) {
        return bySymbol[symbol];
    }

    function entryCount() external view returns (uint256) {
        return tokens.length;
    }

    function entry(uint256 index) external view returns (address) {
        require(index < tokens.length, "TokenIndex: index out of range");
        return tokens[index];
    }
}
