// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.20;

import "./Owned.sol";

/// @title GiftableToken: a plain ERC20 whose writers may mint ("gift") new supply.
/// @notice Optional expiry: when `expires` is non-zero, minting and transfers revert
/// from that unix time on, freezing all balances (a voucher that runs out).
contract GiftableToken is Writable {
    string public name;
    string public symbol;
    uint8 public immutable decimals;
    uint256 public immutable expires;

    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);
    event Mint(address indexed minter, address indexed beneficiary, uint256 value);

    constructor(string memory name_, string memory symbol_, uint8 decimals_, uint256 expireTimestamp) {
        require(bytes(symbol_).length > 0 && bytes(symbol_).length <= 32, "GiftableToken: symbol must be 1-32 bytes");
        require(expireTimestamp == 0 || expireTimestamp > block.timestamp, "GiftableToken: expiry in the past");
        name = name_;
        symbol = symbol_;
        decimals = decimals_;
        expires = expireTimestamp;
    }

    modifier notExpired() {
        require(expires == 0 || block.timestamp < expires, "GiftableToken: expired");
        _;
    }

    function mintTo(address beneficiary, uint256 value) external onlyWriter notExpired returns (bool) {
        require(beneficiary != address(0), "GiftableToken: mint to the zero address");
        totalSupply += value;
        balanceOf[beneficiary] += value; // cannot overflow: bounded by totalSupply
        emit Mint(msg.sender, beneficiary, value);
        emit Transfer(address(0), beneficiary, value);
        return true;
    }

    function transfer(address to, uint256 value) external notExpired returns (bool) {
        _transfer(msg.sender, to, value);
        return true;
    }

    /// @dev An allowance of type(uint256).max is treated as unlimited and not decreased.
    function transferFrom(address from, address to, uint256 value) external notExpired returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        if (allowed != type(uint256).max) {
            require(allowed >= value, "GiftableToken: insufficient allowance");
            unchecked {
                allowance[from][msg.sender] = allowed - value;
            }
        }
        _transfer(from, to, value);
        return true;
    }

    function approve(address spender, uint256 value) external returns (bool) {
        require(spender != address(0), "GiftableToken: approve to the zero address");
        allowance[msg.sender][spender] = value;
        emit Approval(msg.sender, spender, value);
        return true;
    }

    function _transfer(address from, address to, uint256 value) private {
        require(to != address(0), "GiftableToken: transfer to the zero address");
        uint256 balance = balanceOf[from];
        require(balance >= value, "GiftableToken: insufficient balance");
        unchecked {
            balanceOf[from] = balance - value;
            balanceOf[to] += value; // cannot overflow: bounded by totalSupply
        }
        emit Transfer(from, to, value);
    }
}
