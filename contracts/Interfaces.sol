// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.20;

/// @notice The minimal views of other contracts that the devnet contracts call.

interface IERC20Minimal {
    function symbol() external view returns (string memory);
    function balanceOf(address account) external view returns (uint256);
    function transfer(address to, uint256 value) external returns (bool);
    function transferFrom(address from, address to, uint256 value) external returns (bool);
}

interface IMintable {
    function mintTo(address beneficiary, uint256 value) external returns (bool);
}

interface IAccountsIndex {
    function add(address account) external returns (bool);
    function have(address account) external view returns (bool);
}

interface IFaucet {
    function giveTo(address recipient) external returns (uint256);
    function nextTime(address account) external view returns (uint256);
}
