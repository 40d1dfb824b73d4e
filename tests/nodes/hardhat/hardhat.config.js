// The Hardhat node of the node matrix (tests/nodes): its defaults, nothing configured.
module.exports = {};
