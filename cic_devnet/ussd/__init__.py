"""The USSD gateway (devnet service): protocol endpoint, menus, sessions, accounts."""
